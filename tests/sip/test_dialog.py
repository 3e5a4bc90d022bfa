"""Dialog state (RFC 3261 section 12) and session-timer arithmetic (RFC 4028) on real messages."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.sip.dialog import (
    Dialog,
    DialogError,
    SessionTimer,
    negotiate_uac,
    negotiate_uas,
    parse_session_expires,
)
from ivr.sip.message import Request, Response, build_response, parse_message

DATA = Path(__file__).parent.parent / "data" / "sip"


def request(name: str) -> Request:
    msg = parse_message((DATA / f"{name}.sip").read_bytes())
    assert isinstance(msg, Request)
    return msg


def response(name: str) -> Response:
    msg = parse_message((DATA / f"{name}.sip").read_bytes())
    assert isinstance(msg, Response)
    return msg


def test_uas_dialog_from_carrier_invite() -> None:
    invite = request("carrier_invite")
    d = Dialog.as_uas(invite, "ourtag", "<sip:ivr@203.0.113.10:5060>")
    assert (d.call_id, d.local_tag, d.remote_tag) == (invite.call_id, "ourtag", "as5a7c1b2d")
    assert d.remote_target == "sip:+12125550123@198.51.100.30:5060"
    assert d.route_set == ["<sip:198.51.100.20;lr;ftag=as5a7c1b2d;did=8a3.b2c1>"]
    assert d.remote_seq == 102 and d.local_seq == 0
    assert d.local_uri == "<sip:+14155550100@203.0.113.10>"
    assert d.remote_uri == "<sip:+12125550123@198.51.100.30>"
    assert d.destination() == ("198.51.100.20", 5060)


def test_in_dialog_request_with_loose_route() -> None:
    d = Dialog.as_uas(request("carrier_invite"), "ourtag", "<sip:ivr@203.0.113.10:5060>")
    bye = d.create_request("BYE", "SIP/2.0/UDP 203.0.113.10:5060;branch=z9hG4bKb1")
    assert bye.uri == "sip:+12125550123@198.51.100.30:5060"
    assert bye.headers.get_all("Route") == ["<sip:198.51.100.20;lr;ftag=as5a7c1b2d;did=8a3.b2c1>"]
    assert bye.headers["From"] == "<sip:+14155550100@203.0.113.10>;tag=ourtag"
    assert bye.headers["To"] == "<sip:+12125550123@198.51.100.30>;tag=as5a7c1b2d"
    assert bye.cseq == (1, "BYE")
    assert d.create_request("INFO", "SIP/2.0/UDP h;branch=z9hG4bKi").cseq == (2, "INFO")
    ack = d.create_request("ACK", "SIP/2.0/UDP h;branch=z9hG4bKa", cseq=1)
    assert ack.cseq == (1, "ACK") and d.local_seq == 2  # ACK does not consume a number
    reparsed = parse_message(bytes(bye))
    assert isinstance(reparsed, Request) and reparsed.method == "BYE"


def test_strict_route_puts_first_route_in_request_uri() -> None:
    d = Dialog(call_id="c", local_tag="l", remote_tag="r", local_uri="<sip:a@h>", remote_uri="<sip:b@h>",
               local_contact="<sip:a@h>", remote_target="sip:b@10.0.0.5",
               route_set=["<sip:proxy1.example.com>", "<sip:proxy2.example.com;lr>"])
    bye = d.create_request("BYE", "SIP/2.0/UDP h;branch=z9hG4bKx")
    assert bye.uri == "sip:proxy1.example.com"
    assert bye.headers.get_all("Route") == ["<sip:proxy2.example.com;lr>", "<sip:b@10.0.0.5>"]
    assert d.destination() == ("proxy1.example.com", 5060)


def test_uac_dialog_reverses_record_route() -> None:
    invite = request("baresip_invite")
    ok = build_response(invite, 200, to_tag="theirs", headers=[
        ("Record-Route", "<sip:p2.example.com;lr>"), ("Record-Route", "<sip:p1.example.com;lr>"),
        ("Contact", "<sip:bob@192.0.2.9:5070>")])
    d = Dialog.as_uac(invite, ok)
    assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert (d.local_tag, d.remote_tag, d.local_seq) == ("4f1d3e7a9b2c5d8e", "theirs", 19283)
    assert d.remote_target == "sip:bob@192.0.2.9:5070"
    assert d.destination() == ("p1.example.com", 5060)


def test_matches_and_cseq_checks() -> None:
    invite = request("yealink_invite")
    d = Dialog.as_uas(invite, "5b7d9f1e3a", "<sip:ivr@192.168.10.1>")
    bye = request("yealink_bye")
    assert d.matches(bye)
    d.check_remote_cseq(bye)
    assert d.remote_seq == 4
    with pytest.raises(DialogError) as err:
        d.check_remote_cseq(bye)
    assert (err.value.status, err.value.reason) == (500, "CSeq 4 not above 4")
    other = Dialog.as_uas(invite, "someoneelse", "<sip:ivr@192.168.10.1>")
    assert not other.matches(bye)


def test_target_refresh_from_reinvite_contact() -> None:
    d = Dialog.as_uas(request("zoiper_invite"), "t", "<sip:ivr@10.0.0.1>")
    reinvite = request("zoiper_reinvite_hold")
    reinvite.headers.set("Contact", "<sip:carol@10.0.0.77:6000>")
    d.refresh_target(reinvite)
    assert d.remote_target == "sip:carol@10.0.0.77:6000" and d.destination() == ("10.0.0.77", 6000)


def test_sips_target_default_port() -> None:
    d = Dialog(call_id="c", local_tag="l", remote_tag="r", local_uri="<sip:a@h>", remote_uri="<sip:b@h>",
               local_contact="<sip:a@h>", remote_target="sips:b@secure.example.com")
    assert d.destination() == ("secure.example.com", 5061)


# --------------------------------------------------------------------------- RFC 4028


def test_parse_session_expires() -> None:
    assert parse_session_expires("1800;refresher=uac") == (1800, "uac")
    assert parse_session_expires(" 90 ") == (90, None)
    assert parse_session_expires("600; refresher = UAS") == (600, "uas")
    with pytest.raises(ValueError):
        parse_session_expires("soon")


def test_negotiate_uas_peer_refreshes() -> None:
    timer = negotiate_uas(request("carrier_invite"), min_se=90, default_interval=1800, now=10.0)
    assert timer == SessionTimer(1800, "uac", False, True, 10.0)
    assert timer.header() == "1800;refresher=uac"
    assert timer.refresh_at() == 910.0 and timer.expire_at() == 1778.0


def test_negotiate_uas_asterisk_without_refresher_param() -> None:
    timer = negotiate_uas(request("asterisk_invite"), min_se=90, default_interval=1800, now=0)
    assert timer is not None and (timer.interval, timer.refresher, timer.we_refresh) == (1800, "uac", False)


def test_negotiate_uas_too_small_is_422() -> None:
    with pytest.raises(DialogError) as err:
        negotiate_uas(request("carrier_invite"), min_se=3600, default_interval=3600, now=0)
    assert (err.value.status, err.value.reason) == (422, "Session Interval Too Small")


def test_negotiate_uas_peer_without_timer_support() -> None:
    invite = request("yealink_invite")
    assert negotiate_uas(invite, min_se=90, default_interval=1800, now=0) is None
    invite.headers.add("Session-Expires", "600")  # inserted by a proxy
    timer = negotiate_uas(invite, min_se=90, default_interval=1800, now=0)
    assert timer is not None and (timer.refresher, timer.we_refresh, timer.peer_supports) == ("uas", True, False)


def test_negotiate_uas_supported_timer_without_session_expires() -> None:
    timer = negotiate_uas(request("freeswitch_invite"), min_se=90, default_interval=1800, now=0)
    assert timer is not None and (timer.interval, timer.refresher, timer.we_refresh) == (1800, "uac", False)


def test_short_interval_expiry_margin() -> None:
    timer = SessionTimer(90, "uac", False, True, 0.0)
    assert timer.expire_at() == 60.0  # interval - interval/3 when that is under 32 s


def test_negotiate_uac() -> None:
    ok = response("asterisk_200_ok")
    assert negotiate_uac(ok, 0) is None
    ok.headers.add("Session-Expires", "900;refresher=uas")
    timer = negotiate_uac(ok, 5.0)
    assert timer is not None and (timer.interval, timer.we_refresh) == (900, False)
    ok.headers.set("Session-Expires", "900;refresher=uac")
    timer = negotiate_uac(ok, 5.0)
    assert timer is not None and timer.we_refresh
