"""ivr.sip.replaces on desk-phone messages: which of the agent's dialogs a Replaces names
(RFC 3891 section 3), from a REFER's Refer-To (attended transfer) or an INVITE's header."""

from __future__ import annotations

import dataclasses

import pytest

from ivr.sip.message import Headers, Request, parse_message
from ivr.sip.refer import ReferTarget, Replaces, parse_refer
from ivr.sip.replaces import Replaced, ReplacesError, match, parse_header
from ivr.sip.ua import UserAgent
from tests.sip.ua_harness import SDP, answered_call, capture, confirmed_call, events, make_ua

YEALINK = ("192.168.10.42", 5062)
CONSULTATION = "0_2740196744@192.168.10.42"  # yealink_invite.sip: 201's call through ivr


def request(name: str) -> Request:
    message = parse_message(capture(name))
    assert isinstance(message, Request)
    return message


def test_a_desk_phones_attended_transfer_names_its_consultation_call() -> None:
    target = parse_refer(request("yealink_refer_replaces"))
    assert target == ReferTarget("sip:202@192.168.10.1:5060", "202",
                                 Replaces(CONSULTATION, "7a3f09c2e1", "1318483129"))


def test_the_replaces_header_of_a_blf_pickup() -> None:
    assert parse_header(request("yealink_invite_replaces")) == Replaces(
        "8d0a5b1e44c2@192.168.10.1", "0c7e31f2a9", "2291847716", early_only=True)
    assert parse_header(request("yealink_invite")) is None


@pytest.mark.parametrize("values, message", [
    (["a@h;to-tag=1;from-tag=2", "b@h;to-tag=1;from-tag=2"], "an INVITE may carry one Replaces, got 2"),
    (["a@h;from-tag=2"], "Replaces needs a Call-ID, to-tag and from-tag: 'a@h;from-tag=2'"),
])
def test_a_bad_replaces_header_is_400(values: list[str], message: str) -> None:
    invite = request("yealink_invite")
    headers = Headers([*invite.headers.items(), *(("Replaces", v) for v in values)])
    with pytest.raises(ReplacesError) as info:
        parse_header(Request("INVITE", invite.uri, headers, invite.body))
    assert (info.value.status, str(info.value)) == (400, message)


def consultation() -> tuple[UserAgent, Replaces]:
    """ivr answered 201's call (yealink_invite.sip): the Replaces of the REFER, with ivr's real tag."""
    ua, invite, ok = confirmed_call("yealink_invite", YEALINK)
    named = parse_refer(request("yealink_refer_replaces")).replaces
    assert named is not None and invite.call_id == named.call_id
    return ua, dataclasses.replace(named, to_tag=ok.to.tag or "")


def test_the_refer_names_the_confirmed_call_ivr_answered() -> None:
    ua, named = consultation()
    assert ua.replaced(named) == Replaced(CONSULTATION, "uas", True)


@pytest.mark.parametrize("change, status, message", [
    ({"call_id": "other@h"}, 481, "no dialog other@h with to-tag {to} and from-tag 1318483129"),
    ({"from_tag": "99"}, 481, "no dialog 0_2740196744@192.168.10.42 with to-tag {to} and from-tag 99"),
    ({"early_only": True}, 486, "dialog 0_2740196744@192.168.10.42 is confirmed and the Replaces is early-only"),
])
def test_refusals_of_rfc_3891(change: dict[str, object], status: int, message: str) -> None:
    ua, named = consultation()
    with pytest.raises(ReplacesError) as info:
        ua.replaced(dataclasses.replace(named, **change))  # type: ignore[arg-type]
    assert (info.value.status, str(info.value)) == (status, message.format(to=named.to_tag))


def test_an_early_dialog_we_did_not_initiate_is_481() -> None:
    ua = make_ua()
    invite = request("yealink_invite")
    ua.receive(capture("yealink_invite"), YEALINK, "udp", 0.0)
    events(ua)
    ua.ringing(invite.call_id, 0.1)
    ringing = [parse_message(o.data) for o in ua.outgoing()][-1]
    with pytest.raises(ReplacesError) as info:
        ua.replaced(Replaces(invite.call_id, ringing.to.tag or "", "1318483129"))
    assert (info.value.status, str(info.value)) == (
        481, "dialog 0_2740196744@192.168.10.42 is an early dialog we did not initiate")


def test_a_leg_ivr_is_ringing_can_be_picked_up_with_replaces() -> None:
    ua = make_ua()
    call_id = ua.invite("sip:201@192.168.10.42:5062", SDP, 0.0, from_uri="sip:ivr@192.168.10.1",
                        destination=YEALINK)
    (invite,) = [parse_message(o.data) for o in ua.outgoing()]
    ours = invite.from_.tag or ""
    assert match(ua.calls, Replaces(call_id, ours, "2291847716", early_only=True)) == Replaced(call_id, "uac", False)


def test_a_call_being_ended_is_603_and_one_ended_481() -> None:
    ua, invite, ok = answered_call("yealink_invite", YEALINK)
    ua.hangup(invite.call_id, 1.0)  # answered, not yet ACKed: the BYE waits for the ACK
    named = Replaces(invite.call_id, ok.to.tag or "", "1318483129")
    with pytest.raises(ReplacesError) as info:
        match(ua.calls, named)
    assert (info.value.status, str(info.value)) == (603, "dialog 0_2740196744@192.168.10.42 is over")
    ua, named = consultation()
    ua.hangup(named.call_id, 1.0)
    with pytest.raises(ReplacesError) as info:
        match(ua.calls, named)
    assert info.value.status == 481
