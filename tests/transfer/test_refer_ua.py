"""REFER (RFC 3515) in the sans-IO user agent: sending it in a confirmed dialog, its response,
and the NOTIFYs with sipfrag bodies that report how the transfer went."""

from __future__ import annotations

from pathlib import Path

from ivr.sip.message import Headers, Request, Response, build_response, parse_message
from ivr.sip.ua import CallConfirmed, IncomingCall, Outgoing, ReferProgress, UAEvent, UserAgent

DATA = Path(__file__).resolve().parents[1] / "data" / "sip"
SDP = b"v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=ivr\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"
BARESIP = ("127.0.0.1", 5062)


def sent(ua: UserAgent) -> list[tuple[Request | Response, Outgoing]]:
    return [(parse_message(o.data), o) for o in ua.outgoing()]


def events(ua: UserAgent) -> list[UAEvent]:
    out = []
    while (event := ua.next_event()) is not None:
        out.append(event)
    return out


def in_dialog(method: str, invite: Request, response: Response, *, cseq: int, branch: str,
              extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A request from baresip inside the dialog our 200 set up."""
    h = Headers()
    h.add("Via", f"{invite.headers.get_all('Via')[0].split(';')[0]};branch={branch};rport")
    h.add("Max-Forwards", "70")
    h.add("From", invite.headers["From"])
    h.add("To", response.headers["To"])
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{cseq} {method}")
    for name, value in extra:
        h.add(name, value)
    target = response.contact[0].uri if response.contact else invite.uri
    return bytes(Request(method, str(target), h, b""))


def confirmed_call() -> tuple[UserAgent, Request, Response]:
    """A real baresip INVITE (tests/data/sip), answered by us and ACKed."""
    ua = UserAgent(local_host="127.0.0.1", local_port=5060)
    raw = (DATA / "baresip_invite.sip").read_bytes()
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    ua.receive(raw, BARESIP, "udp", 0.0)
    assert isinstance(events(ua)[0], IncomingCall)
    ua.outgoing()
    ua.answer(invite.call_id, SDP, 0.1)
    [ok] = [m for m, _ in sent(ua) if isinstance(m, Response)]
    ua.receive(in_dialog("ACK", invite, ok, cseq=invite.cseq[0], branch="z9hG4bKack1"), BARESIP, "udp", 0.2)
    assert events(ua) == [CallConfirmed(invite.call_id, None)]
    return ua, invite, ok


def notify(invite: Request, ok: Response, cseq: int, frag: bytes, state: str, event: str = "refer") -> bytes:
    raw = in_dialog("NOTIFY", invite, ok, cseq=invite.cseq[0] + cseq, branch=f"z9hG4bKn{cseq}",
                    extra=(("Event", event), ("Subscription-State", state),
                           ("Content-Type", "message/sipfrag;version=2.0")))
    head, _, _ = raw.partition(b"\r\n\r\n")
    head = head.replace(b"Content-Length: 0", f"Content-Length: {len(frag)}".encode())
    return head + b"\r\n\r\n" + frag


def refer_sent() -> tuple[UserAgent, Request, Response, Request]:
    ua, invite, ok = confirmed_call()
    assert ua.refer(invite.call_id, "sip:201@192.0.2.20:5062", 1.0, referred_by="sip:ivr@127.0.0.1")
    [(refer, out)] = sent(ua)
    assert isinstance(refer, Request) and refer.method == "REFER"
    assert out.dest == BARESIP
    return ua, invite, ok, refer


def test_refer_carries_refer_to_in_the_dialog_and_202_is_reported() -> None:
    ua, invite, ok, refer = refer_sent()
    assert refer.headers["Refer-To"] == "<sip:201@192.0.2.20:5062>"
    assert refer.headers["Referred-By"] == "<sip:ivr@127.0.0.1>"
    assert refer.call_id == invite.call_id and refer.to.tag and refer.from_.tag == ok.to.tag
    ua.receive(bytes(build_response(refer, 202)), BARESIP, "udp", 1.1)
    assert events(ua) == [ReferProgress(invite.call_id, "response", 202)]


def test_notify_sipfrag_progress_then_final_answer() -> None:
    ua, invite, ok, refer = refer_sent()
    ua.receive(bytes(build_response(refer, 202)), BARESIP, "udp", 1.1)
    events(ua)
    ua.receive(notify(invite, ok, 10, b"SIP/2.0 100 Trying\r\n", "active;expires=60"), BARESIP, "udp", 1.2)
    ua.receive(notify(invite, ok, 11, b"SIP/2.0 200 OK\r\n", "terminated;reason=noresource"), BARESIP, "udp", 3.0)
    assert events(ua) == [
        ReferProgress(invite.call_id, "notify", 100),
        ReferProgress(invite.call_id, "notify", 200, final=True),
    ]
    replies = [m for m, _ in sent(ua) if isinstance(m, Response)]
    assert [r.status for r in replies] == [200, 200]
    # The subscription is over: a later NOTIFY is not accepted any more.
    ua.receive(notify(invite, ok, 12, b"SIP/2.0 200 OK\r\n", "terminated"), BARESIP, "udp", 3.5)
    [(late, _)] = sent(ua)
    assert isinstance(late, Response) and late.status == 405


def test_refused_refer_and_bad_notifies() -> None:
    ua, invite, ok, refer = refer_sent()
    ua.receive(notify(invite, ok, 10, b"garbage", "active"), BARESIP, "udp", 1.05)
    ua.receive(notify(invite, ok, 11, b"SIP/2.0 100 Trying\r\n", "active", event="presence"), BARESIP, "udp", 1.06)
    assert [m.status for m, _ in sent(ua) if isinstance(m, Response)] == [400, 489]
    ua.receive(bytes(build_response(refer, 603)), BARESIP, "udp", 1.1)
    assert events(ua) == [ReferProgress(invite.call_id, "response", 603, final=True)]


def test_refer_needs_a_confirmed_call() -> None:
    ua, invite, ok = confirmed_call()
    assert not ua.refer("no-such-call", "sip:201@192.0.2.20", 1.0)


def test_unanswered_refer_times_out_as_408() -> None:
    ua, invite, ok, refer = refer_sent()
    seen: list[object] = []
    for _ in range(100):  # Timer E retransmissions, then Timer F after 64*T1
        deadline = ua.next_timer()
        if deadline is None or deadline > 60:
            break
        ua.handle_timer(deadline)
        ua.outgoing()
        seen += events(ua)
    assert ReferProgress(invite.call_id, "response", 408, final=True) in seen
