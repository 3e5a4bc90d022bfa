"""A UserAgent on a fake clock fed captured wire bytes: the helpers its tests share
(tests/sip/test_ua.py, tests/transfer/test_refer_ua.py)."""

from __future__ import annotations

from pathlib import Path

from ivr.sip.events import CallConfirmed, IncomingCall, UAEvent
from ivr.sip.message import Headers, Request, Response, parse_message
from ivr.sip.ua import Outgoing, UserAgent

DATA = Path(__file__).resolve().parents[1] / "data" / "sip"
SDP = b"v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=ivr\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0 101\r\na=rtpmap:101 telephone-event/8000\r\n"
BARESIP = ("127.0.0.1", 5062)


def capture(name: str) -> bytes:
    return (DATA / f"{name}.sip").read_bytes()


def make_ua(**kwargs: object) -> UserAgent:
    return UserAgent(local_host="127.0.0.1", local_port=5060, **kwargs)  # type: ignore[arg-type]


def sent(ua: UserAgent) -> list[tuple[Request | Response, Outgoing]]:
    return [(parse_message(o.data), o) for o in ua.outgoing()]


def responses(ua: UserAgent) -> list[Response]:
    return [m for m, _ in sent(ua) if isinstance(m, Response)]


def events(ua: UserAgent) -> list[UAEvent]:
    out = []
    while (event := ua.next_event()) is not None:
        out.append(event)
    return out


def in_dialog(method: str, invite: Request, response: Response, *, cseq: int, branch: str,
              body: bytes = b"", content_type: str = "application/sdp",
              extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    """A request from the caller inside the dialog set up by ``response``."""
    h = Headers()
    h.add("Via", f"{invite.headers.get_all('Via')[0].split(';')[0]};branch={branch};rport")
    h.add("Max-Forwards", "70")
    h.add("From", invite.headers["From"])
    h.add("To", response.headers["To"])
    h.add("Call-ID", invite.call_id)
    h.add("CSeq", f"{cseq} {method}")
    for name, value in extra:
        h.add(name, value)
    if body:
        h.add("Content-Type", content_type)
    target = response.contact[0].uri if response.contact else invite.uri
    return bytes(Request(method, str(target), h, body))


def answered_call(name: str = "baresip_invite", source: tuple[str, int] = BARESIP,
                  **ua_kwargs: object) -> tuple[UserAgent, Request, Response]:
    """A captured INVITE, answered by us with ``SDP`` (the ACK not yet in)."""
    ua = make_ua(**ua_kwargs)
    invite = parse_message(capture(name))
    assert isinstance(invite, Request)
    ua.receive(capture(name), source, "udp", 0.0)
    incoming = events(ua)
    assert isinstance(incoming[0], IncomingCall)
    ua.outgoing()
    ua.answer(invite.call_id, SDP, 0.1)
    (ok,) = responses(ua)
    return ua, invite, ok


def confirmed_call(name: str = "baresip_invite", source: tuple[str, int] = BARESIP,
                   **ua_kwargs: object) -> tuple[UserAgent, Request, Response]:
    """:func:`answered_call` and its ACK: a confirmed dialog."""
    ua, invite, ok = answered_call(name, source, **ua_kwargs)
    ua.receive(in_dialog("ACK", invite, ok, cseq=invite.cseq[0], branch="z9hG4bKack1"), source, "udp", 0.2)
    assert events(ua) == [CallConfirmed(invite.call_id, None)]
    return ua, invite, ok
