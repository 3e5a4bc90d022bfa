"""A REFER received from the phone of a call ivr placed (ivr.sip.refer and the UA's hook):
202 and ReferReceived, 400 for a bad Refer-To, NOTIFY with a sipfrag, and a caller's
REFER on its own inbound call still refused."""

from __future__ import annotations

import pytest

from ivr.sip.events import OutgoingCallAnswered, ReferReceived
from ivr.sip.message import Headers, Request, Response, build_response
from ivr.sip.refer import ReferError, ReferTarget, Replaces, parse_refer, sipfrag
from ivr.sip.ua import UserAgent
from tests.sip.ua_harness import SDP, confirmed_call, events, in_dialog, make_ua, responses, sent

PHONE = ("127.0.0.1", 5062)


def refer_request(refer_to: list[str]) -> Request:
    h = Headers([("Via", "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKr"), ("From", "<sip:201@x>;tag=a"),
                 ("To", "<sip:ivr@x>;tag=b"), ("Call-ID", "c1"), ("CSeq", "2 REFER")])
    for value in refer_to:
        h.add("Refer-To", value)
    return Request("REFER", "sip:ivr@127.0.0.1", h, b"")


def test_refer_to_blind_and_attended() -> None:
    assert parse_refer(refer_request(["<sip:202@127.0.0.1;transport=udp>"])) == ReferTarget(
        "sip:202@127.0.0.1;transport=udp", "202")
    attended = parse_refer(refer_request(
        ["<sip:202@10.0.0.2?Replaces=abc%40h%3Bto-tag%3Dt1%3Bfrom-tag%3Df1&Require=replaces>"]))
    assert attended == ReferTarget("sip:202@10.0.0.2", "202", Replaces("abc@h", "t1", "f1"))


@pytest.mark.parametrize("values, message", [
    ([], "a REFER needs exactly one Refer-To, got 0"),
    (["<sip:1@h>", "<sip:2@h>"], "a REFER needs exactly one Refer-To, got 2"),
    (["<tel:+41791112233>"], "Refer-To is not a sip: URI: '<tel:+41791112233>'"),
    (["<sip:2@h?Replaces=abc%3Bto-tag%3Dt1>"], "Replaces needs a Call-ID, to-tag and from-tag: 'abc;to-tag=t1'"),
])
def test_bad_refer_to_is_400(values: list[str], message: str) -> None:
    with pytest.raises(ReferError) as info:
        parse_refer(refer_request(values))
    assert (info.value.status, str(info.value)) == (400, message)


def test_sipfrag() -> None:
    assert sipfrag(100) == b"SIP/2.0 100 Trying\r\n"
    assert sipfrag(486) == b"SIP/2.0 486 Busy Here\r\n"
    assert sipfrag(403, "Not allowed") == b"SIP/2.0 403 Not allowed\r\n"


def leg_call() -> tuple[UserAgent, str, Request, Response]:
    """ivr calls a phone, which answers: a confirmed UAC dialog."""
    ua = make_ua()
    call_id = ua.invite("sip:201@127.0.0.1:5062", SDP, 0.0, from_uri="sip:ivr@127.0.0.1", destination=PHONE)
    (invite, _), = sent(ua)
    assert isinstance(invite, Request)
    ok = build_response(invite, 200, to_tag="phone", body=SDP,
                        headers=[("Contact", "<sip:201@127.0.0.1:5062>"), ("Content-Type", "application/sdp")])
    ua.receive(bytes(ok), PHONE, "udp", 0.1)
    sent(ua)
    assert events(ua) == [OutgoingCallAnswered(call_id, SDP)]
    return ua, call_id, invite, ok


def from_phone(method: str, invite: Request, ok: Response, cseq: int, extra: tuple[tuple[str, str], ...]) -> bytes:
    """A request the phone sends in the dialog (its From is the INVITE's To)."""
    h = Headers([("Via", f"SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bKp{cseq};rport"), ("Max-Forwards", "70"),
                 ("From", ok.headers["To"]), ("To", invite.headers["From"]), ("Call-ID", invite.call_id),
                 ("CSeq", f"{cseq} {method}"), *extra])
    return bytes(Request(method, "sip:ivr@127.0.0.1:5060", h, b""))


def test_phone_refer_is_202_then_notify_sipfrag() -> None:
    ua, call_id, invite, ok = leg_call()
    refer = (("Refer-To", "<sip:202@127.0.0.1>"), ("Referred-By", "<sip:201@127.0.0.1>"))
    ua.receive(from_phone("REFER", invite, ok, 5, refer), PHONE, "udp", 1.0)
    (accepted,) = responses(ua)
    assert (accepted.status, accepted.cseq) == (202, (5, "REFER"))
    assert events(ua) == [ReferReceived(call_id, ReferTarget("sip:202@127.0.0.1", "202"), "<sip:201@127.0.0.1>")]
    assert ua.notify_refer(call_id, 100, 1.1)
    assert ua.notify_refer(call_id, 403, 1.2)
    (trying, _), (final, _) = sent(ua)
    assert isinstance(trying, Request) and isinstance(final, Request)
    assert (trying.method, trying.body, trying.headers["Event"]) == ("NOTIFY", b"SIP/2.0 100 Trying\r\n", "refer")
    assert trying.headers["Subscription-State"] == "active;expires=60"
    assert trying.headers["Content-Type"] == "message/sipfrag;version=2.0"
    assert final.body == b"SIP/2.0 403 Forbidden\r\n"
    assert final.headers["Subscription-State"] == "terminated;reason=noresource"
    assert final.to.tag == "phone" and final.cseq[0] > trying.cseq[0]


def test_phone_refer_without_refer_to_is_400() -> None:
    ua, call_id, invite, ok = leg_call()
    ua.receive(from_phone("REFER", invite, ok, 5, ()), PHONE, "udp", 1.0)
    (refused,) = responses(ua)
    assert (refused.status, refused.reason) == (400, "a REFER needs exactly one Refer-To, got 0")
    assert events(ua) == []


def test_a_callers_refer_on_its_inbound_call_stays_405() -> None:
    ua, invite, ok = confirmed_call()
    ua.receive(in_dialog("REFER", invite, ok, cseq=19291, branch="z9hG4bKr",
                         extra=(("Refer-To", "<sip:202@127.0.0.1>"),)), PHONE, "udp", 1)
    (refused,) = responses(ua)
    assert refused.status == 405 and events(ua) == []
    assert not ua.notify_refer(invite.call_id + "x", 100, 1.1)
