"""REFER (RFC 3515) in the sans-IO user agent: sending it in a confirmed dialog, its response,
and the NOTIFYs with sipfrag bodies that report how the transfer went."""

from __future__ import annotations

from ivr.sip.events import ReferProgress
from ivr.sip.message import Request, Response, build_response
from ivr.sip.ua import UserAgent
from tests.sip.ua_harness import BARESIP, answered_call, confirmed_call, events, in_dialog, sent


def notify(invite: Request, ok: Response, cseq: int, frag: bytes, state: str, event: str = "refer") -> bytes:
    return in_dialog("NOTIFY", invite, ok, cseq=invite.cseq[0] + cseq, branch=f"z9hG4bKn{cseq}", body=frag,
                     content_type="message/sipfrag;version=2.0",
                     extra=(("Event", event), ("Subscription-State", state)))


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
    ua, invite, ok = answered_call()
    assert not ua.refer(invite.call_id, "sip:201@192.0.2.20", 0.2)  # no ACK yet: no REFER
    assert sent(ua) == []
    ua.receive(in_dialog("ACK", invite, ok, cseq=invite.cseq[0], branch="z9hG4bKa"), BARESIP, "udp", 0.3)
    assert ua.refer(invite.call_id, "sip:201@192.0.2.20", 1.0)
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
