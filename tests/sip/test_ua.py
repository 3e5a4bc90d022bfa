"""The sans-IO UserAgent fed real wire bytes (softphones, PBXs, a carrier) on a fake clock."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgress,
    ReOffer,
    ReOfferAnswer,
    RequestReceived,
)
from ivr.sip.message import Request, Response, SipParseError, build_response, parse_message
from ivr.sip.ua import Outgoing, UserAgent
from tests.sip.ua_harness import (
    BARESIP,
    DATA,
    SDP,
    answered_call,
    capture,
    confirmed_call,
    events,
    in_dialog,
    make_ua,
    responses,
    sent,
)

# --------------------------------------------------------------------------- a baresip call, byte by byte


def test_baresip_call_trying_ringing_ok_ack_bye() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0.0)
    (trying, out), = sent(ua)
    assert isinstance(trying, Response) and (trying.status, trying.reason) == (100, "Trying")
    assert out.dest == BARESIP and out.transport == "udp"
    # RFC 3581: rport filled with the source port, received added
    assert trying.headers["Via"] == "SIP/2.0/UDP 127.0.0.1:5062;branch=z9hG4bK6a8e2d1f3c5b7a9e;rport=5062;received=127.0.0.1"
    assert trying.headers["To"] == "<sip:100@127.0.0.1:5060>"  # no tag on 100
    assert trying.headers["CSeq"] == "19283 INVITE" and trying.call_id == "6c8d2e4f1a3b5c7d"

    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall)
    assert (incoming.call_id, incoming.caller, incoming.called, incoming.source) == (
        "6c8d2e4f1a3b5c7d", "alice", "100", BARESIP)
    assert incoming.offer is not None and incoming.offer.startswith(b"v=0\r\no=- 1733560982")

    ua.ringing("6c8d2e4f1a3b5c7d", 0.05)
    (ringing,) = responses(ua)
    assert ringing.status == 180 and ringing.to.tag
    ua.answer("6c8d2e4f1a3b5c7d", SDP, 0.1)
    (ok,) = responses(ua)
    assert ok.status == 200 and ok.to.tag == ringing.to.tag
    assert ok.headers["Contact"] == "<sip:ivr@127.0.0.1:5060>"
    assert ok.headers["Content-Type"] == "application/sdp" and ok.body == SDP
    assert int(ok.headers["Content-Length"]) == len(SDP)
    assert "INVITE" in ok.headers["Allow"] and "timer" in ok.header_tokens("Supported")
    assert "Session-Expires" not in ok.headers  # baresip does not support timer

    invite = parse_message(capture("baresip_invite"))
    assert isinstance(invite, Request)
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKa1"), BARESIP, "udp", 0.2)
    assert events(ua) == [CallConfirmed("6c8d2e4f1a3b5c7d", None)]
    assert ua.outgoing() == []

    ua.receive(in_dialog("BYE", invite, ok, cseq=19284, branch="z9hG4bKb1"), BARESIP, "udp", 5.0)
    (bye_ok,) = responses(ua)
    assert (bye_ok.status, bye_ok.cseq) == (200, (19284, "BYE"))
    assert bye_ok.to.tag == ok.to.tag
    assert events(ua) == [CallEnded("6c8d2e4f1a3b5c7d", "bye")]
    assert "6c8d2e4f1a3b5c7d" not in ua.calls


def test_invite_retransmission_is_not_a_new_call() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0.0)
    assert [r.status for r in responses(ua)] == [100]
    assert len(events(ua)) == 1
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0.5)
    assert [r.status for r in responses(ua)] == [100]  # the last response, resent
    assert events(ua) == []
    ua.answer("6c8d2e4f1a3b5c7d", SDP, 0.6)
    responses(ua)
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0.7)
    assert [r.status for r in responses(ua)] == [200]
    assert events(ua) == []


def test_2xx_retransmitted_until_ack() -> None:
    ua, invite, ok = answered_call()
    stamps = []
    now = 0.1
    while (deadline := ua.next_timer()) is not None and deadline < 10:
        now = deadline
        ua.handle_timer(now)
        stamps += [round(now, 2) for r in responses(ua) if r.status == 200]
    assert stamps == [0.6, 1.6, 3.6, 7.6]  # T1 doubling, capped at T2 = 4 s
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKa"), BARESIP, "udp", now)
    assert events(ua) == [CallConfirmed(invite.call_id, None)]
    ua.handle_timer(20)
    assert [r.status for r in responses(ua)] == []


def test_no_ack_means_bye_after_64_t1() -> None:
    ua, invite, ok = answered_call()
    now = 0.1
    while (deadline := ua.next_timer()) is not None and deadline <= 32.1:
        now = deadline
        ua.handle_timer(now)
    messages = [m for m, _ in sent(ua)]
    retransmits = [m for m in messages if isinstance(m, Response) and m.status == 200]
    assert len(retransmits) == 10  # 0.6 1.6 3.6 7.6 11.6 ... 31.6
    byes = [m for m in messages if isinstance(m, Request) and m.method == "BYE"]
    assert len(byes) == 1
    bye = byes[0]
    assert bye.uri == "sip:alice-0x55d3c8a1b2c0@127.0.0.1:5062;transport=udp"  # the Contact
    assert bye.from_.tag == ok.to.tag and bye.to.tag == "4f1d3e7a9b2c5d8e"
    assert bye.cseq == (1, "BYE") and bye.call_id == invite.call_id
    assert events(ua) == [CallEnded(invite.call_id, "ack_timeout")]


def test_late_offer_answer_arrives_in_ack() -> None:
    ua = make_ua()
    raw = capture("baresip_invite")
    head = raw.split(b"\r\n\r\n")[0].replace(b"Content-Type: application/sdp\r\n", b"")
    head = re.sub(rb"Content-Length: \d+", b"Content-Length: 0", head)
    invite = parse_message(head + b"\r\n\r\n")
    assert isinstance(invite, Request) and invite.body == b""
    ua.receive(bytes(invite), BARESIP, "udp", 0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall) and incoming.offer is None
    ua.answer(invite.call_id, SDP, 0.1)  # our offer
    ok = [r for r in responses(ua) if r.status == 200][0]
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKl", body=b"v=0\r\n"), BARESIP, "udp", 0.2)
    assert events(ua) == [CallConfirmed(invite.call_id, b"v=0\r\n")]


# --------------------------------------------------------------------------- response routing


def test_response_routing_without_rport_uses_via_port_and_received() -> None:
    ua = make_ua()
    ua.receive(capture("yealink_invite"), ("203.0.113.9", 40000), "udp", 0)
    (trying, out), = sent(ua)
    assert out.dest == ("203.0.113.9", 5062)  # received host, Via port (no rport)
    assert trying.headers["Via"].endswith(";received=203.0.113.9")


def test_response_routing_same_host_adds_nothing() -> None:
    ua = make_ua()
    ua.receive(capture("yealink_invite"), ("192.168.10.42", 5062), "udp", 0)
    (trying, out), = sent(ua)
    assert out.dest == ("192.168.10.42", 5062)
    assert trying.headers["Via"] == "SIP/2.0/UDP 192.168.10.42:5062;branch=z9hG4bK1783402843"


def test_tcp_responses_go_back_on_the_connection() -> None:
    ua = make_ua()
    raw = capture("kamailio_options").replace(b"SIP/2.0/UDP 10.0.0.9", b"SIP/2.0/TCP 10.0.0.9")
    ua.receive(raw, ("10.0.0.9", 41234), "tcp", 0)
    (ok, out), = sent(ua)
    assert out == Outgoing(out.data, ("10.0.0.9", 41234), "tcp")


# --------------------------------------------------------------------------- carrier, Record-Route, session timers


def test_carrier_call_record_route_and_session_timer() -> None:
    ua, invite, ok = answered_call("carrier_invite", ("198.51.100.20", 5060))
    assert ok.headers.get_all("Record-Route") == ["<sip:198.51.100.20;lr;ftag=as5a7c1b2d;did=8a3.b2c1>"]
    assert ok.headers["Session-Expires"] == "1800;refresher=uac"
    assert ok.headers["Require"] == "timer"
    ua.receive(in_dialog("ACK", invite, ok, cseq=102, branch="z9hG4bKack"), ("198.51.100.20", 5060), "udp", 0.2)
    assert isinstance(events(ua)[0], CallConfirmed)
    ua.hangup(invite.call_id, 10)
    (bye, out), = sent(ua)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert bye.uri == "sip:+12125550123@198.51.100.30:5060"  # remote target from Contact
    assert bye.headers.get_all("Route") == ["<sip:198.51.100.20;lr;ftag=as5a7c1b2d;did=8a3.b2c1>"]
    assert out.dest == ("198.51.100.20", 5060)  # loose routing: to the first route
    assert events(ua) == [CallEnded(invite.call_id, "local")]


def test_session_expires_when_the_refresher_is_silent() -> None:
    ua, invite, ok = confirmed_call("asterisk_invite", ("10.0.0.2", 5060))
    assert ok.headers["Session-Expires"] == "1800;refresher=uac"
    ua.handle_timer(1767.0)
    assert [m for m, _ in sent(ua)] == []
    ua.handle_timer(1768.3)  # 0.2 + 1800 - 32
    (bye, _), = sent(ua)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert events(ua) == [CallEnded(invite.call_id, "session_expired")]


def test_update_refresh_is_answered_by_the_ua_and_rearms_the_timer() -> None:
    ua, invite, ok = confirmed_call("freeswitch_invite", ("10.0.0.3", 5060))
    refresh = capture("freeswitch_update_refresh").replace(b"tag=0a1b2c3d4e", b"tag=" + (ok.to.tag or "").encode())
    ua.receive(refresh, ("10.0.0.3", 5060), "udp", 1000.0)
    (answer,) = responses(ua)
    assert answer.status == 200 and answer.headers["Session-Expires"] == "1800;refresher=uac"
    assert events(ua) == []
    ua.handle_timer(1800.0)  # would have expired without the refresh
    assert sent(ua) == [] and events(ua) == []
    ua.handle_timer(1000.0 + 1768.0)
    assert events(ua) == [CallEnded(invite.call_id, "session_expired")]


def test_session_interval_too_small_is_422_with_min_se() -> None:
    ua = make_ua(min_se=120)
    raw = capture("asterisk_invite").replace(b"Session-Expires: 1800", b"Session-Expires: 90")
    ua.receive(raw, ("10.0.0.2", 5060), "udp", 0)
    final = responses(ua)[-1]
    assert (final.status, final.reason, final.headers["Min-SE"]) == (422, "Session Interval Too Small", "120")
    assert events(ua) == []


def test_we_refresh_when_the_peer_lacks_timer_support() -> None:
    raw = capture("yealink_invite").replace(b"Supported: replaces", b"Session-Expires: 600")
    ua = make_ua()
    ua.receive(raw, ("192.168.10.42", 5062), "udp", 0)
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    events(ua)
    ua.answer(invite.call_id, SDP, 0)
    ok = [r for r in responses(ua) if r.status == 200][0]
    assert ok.headers["Session-Expires"] == "600;refresher=uas" and "Require" not in ok.headers
    ua.receive(in_dialog("ACK", invite, ok, cseq=2, branch="z9hG4bKa"), ("192.168.10.42", 5062), "udp", 0)
    events(ua)
    ua.handle_timer(300)
    (update, _), = sent(ua)  # Yealink allows UPDATE: refresh without SDP
    assert isinstance(update, Request) and update.method == "UPDATE" and update.body == b""
    assert update.headers["Session-Expires"] == "600;refresher=uac"  # we are its UAC (RFC 4028 7.4)
    reply = Response(200, "OK", update.headers.copy())
    reply.headers.set("To", update.headers["To"])
    ua.receive(bytes(reply), ("192.168.10.42", 5062), "udp", 300.1)
    ua.handle_timer(300.1 + 600 - 200 - 0.5)  # the old expiry has moved
    assert events(ua) == []


def test_refresh_by_reinvite_when_update_is_not_allowed() -> None:
    raw = capture("baresip_invite").replace(b"Supported: replaces,norefersub", b"Session-Expires: 300")
    raw = raw.replace(b",UPDATE\r\n", b"\r\n")
    ua = make_ua()
    ua.receive(raw, BARESIP, "udp", 0)
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    events(ua)
    ua.answer(invite.call_id, SDP, 0)
    ok = [r for r in responses(ua) if r.status == 200][0]
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKa"), BARESIP, "udp", 0)
    events(ua)
    ua.handle_timer(150)
    (reinvite, _), = sent(ua)
    assert isinstance(reinvite, Request) and reinvite.method == "INVITE" and reinvite.body == SDP
    # glare: the caller's own re-INVITE while ours is pending gets 491
    ua.receive(in_dialog("INVITE", invite, ok, cseq=19284, branch="z9hG4bKg", body=b"v=0\r\n"), BARESIP, "udp", 150.1)
    assert [r.status for r in responses(ua)] == [100, 491]
    # their 200 to our re-INVITE: we ACK it
    reply = Response(200, "OK", reinvite.headers.copy(), SDP)
    ua.receive(bytes(reply), BARESIP, "udp", 150.2)
    (ack, _), = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.cseq == (reinvite.cseq[0], "ACK")


# --------------------------------------------------------------------------- CANCEL


def test_cancel_before_answer() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0)
    ua.ringing("6c8d2e4f1a3b5c7d", 0.1)
    ringing = responses(ua)[-1]
    events(ua)
    ua.receive(capture("baresip_cancel"), BARESIP, "udp", 1.0)
    got = responses(ua)
    assert [(r.status, r.cseq[1]) for r in got] == [(200, "CANCEL"), (487, "INVITE")]
    assert got[1].to.tag == ringing.to.tag
    assert events(ua) == [CallCancelled("6c8d2e4f1a3b5c7d")]
    # the caller ACKs the 487 with the INVITE's branch: absorbed by the transaction
    ack = capture("baresip_cancel").replace(b"CANCEL sip", b"ACK sip").replace(b"19283 CANCEL", b"19283 ACK")
    ack = ack.replace(b"To: <sip:100@127.0.0.1:5060>", f"To: {got[1].headers['To']}".encode())
    ua.receive(ack, BARESIP, "udp", 1.1)
    assert ua.outgoing() == [] and events(ua) == []
    ua.answer("6c8d2e4f1a3b5c7d", SDP, 1.2)  # the runner lost the race: ignored
    assert ua.outgoing() == []


def test_cancel_crossing_our_200_is_answered_200_and_the_call_proceeds() -> None:
    ua, invite, ok = answered_call()
    ua.receive(capture("baresip_cancel"), BARESIP, "udp", 0.15)
    assert [(r.status, r.cseq[1]) for r in responses(ua)] == [(200, "CANCEL")]
    assert events(ua) == []
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKa"), BARESIP, "udp", 0.2)
    assert events(ua) == [CallConfirmed(invite.call_id, None)]


def test_cancel_for_nothing_is_481() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_cancel"), BARESIP, "udp", 0)
    assert [r.status for r in responses(ua)] == [481]


# --------------------------------------------------------------------------- in-dialog requests


def test_bye_for_unknown_dialog_is_481() -> None:
    ua = make_ua()
    ua.receive(capture("yealink_bye"), ("192.168.10.42", 5062), "udp", 0)
    assert [r.status for r in responses(ua)] == [481]


def test_lower_cseq_is_500() -> None:
    ua, invite, ok = confirmed_call()
    ua.receive(in_dialog("INFO", invite, ok, cseq=19283, branch="z9hG4bKlow"), BARESIP, "udp", 1)
    (reply,) = responses(ua)
    assert reply.status == 500 and reply.reason == "CSeq 19283 not above 19283"


def test_info_dtmf_from_yealink() -> None:
    ua, invite, ok = confirmed_call("yealink_invite", ("192.168.10.42", 5062))
    info = capture("yealink_info_dtmf").replace(b"tag=5b7d9f1e3a", b"tag=" + (ok.to.tag or "").encode())
    ua.receive(info, ("192.168.10.42", 5062), "udp", 3)
    assert [r.status for r in responses(ua)] == [200]
    assert events(ua) == [DtmfInfo(invite.call_id, "5", 160)]


def test_info_with_a_bad_dtmf_body_is_400_and_no_key() -> None:
    ua, invite, ok = confirmed_call()
    info = in_dialog("INFO", invite, ok, cseq=19284, branch="z9hG4bKbadkey", body=b"Signal=X\r\n",
                     content_type="application/dtmf-relay")
    ua.receive(info, BARESIP, "udp", 1)
    (reply,) = responses(ua)
    assert (reply.status, reply.reason) == (400, "Bad DTMF Body")
    assert events(ua) == []


def test_reinvite_hold_from_zoiper() -> None:
    ua, invite, ok = confirmed_call("zoiper_invite", ("10.0.0.50", 52468))
    hold = capture("zoiper_reinvite_hold").replace(b"tag=8c2d4e6f10", b"tag=" + (ok.to.tag or "").encode())
    ua.receive(hold, ("10.0.0.50", 52468), "udp", 10)
    assert [r.status for r in responses(ua)] == [100]
    (reoffer,) = events(ua)
    assert isinstance(reoffer, ReOffer) and reoffer.method == "INVITE"
    assert reoffer.offer is not None and b"a=sendonly" in reoffer.offer
    ua.accept_reoffer(invite.call_id, SDP.replace(b"m=audio", b"a=recvonly\r\nm=audio"), 10.1)
    (reply,) = responses(ua)
    assert reply.status == 200 and b"a=recvonly" in reply.body and reply.cseq == (2, "INVITE")
    assert reply.to.tag == ok.to.tag
    reinvite = parse_message(hold)
    assert isinstance(reinvite, Request)
    ua.receive(in_dialog("ACK", reinvite, reply, cseq=2, branch="z9hG4bKack2"), ("10.0.0.50", 52468), "udp", 10.2)
    assert events(ua) == [] and ua.outgoing() == []  # nothing more to say; no CallConfirmed twice


def test_reinvite_without_sdp_offer_in_200_answer_in_ack() -> None:
    ua, invite, ok = confirmed_call()
    ua.receive(in_dialog("INVITE", invite, ok, cseq=19284, branch="z9hG4bKr"), BARESIP, "udp", 10)
    responses(ua)
    assert events(ua) == [ReOffer(invite.call_id, None, "INVITE")]
    ua.accept_reoffer(invite.call_id, SDP, 10.1)
    (reply,) = responses(ua)
    assert reply.body == SDP
    ua.receive(in_dialog("ACK", invite, ok, cseq=19284, branch="z9hG4bKa2", body=b"v=0\r\nanswer"), BARESIP, "udp", 10.2)
    assert events(ua) == [ReOfferAnswer(invite.call_id, b"v=0\r\nanswer")]


def test_reject_reoffer_and_overlapping_reinvite() -> None:
    ua, invite, ok = confirmed_call()
    ua.receive(in_dialog("INVITE", invite, ok, cseq=19284, branch="z9hG4bKr1", body=b"v=0\r\n"), BARESIP, "udp", 10)
    ua.receive(in_dialog("INVITE", invite, ok, cseq=19285, branch="z9hG4bKr2", body=b"v=0\r\n"), BARESIP, "udp", 10)
    got = responses(ua)
    assert [r.status for r in got] == [100, 100, 500]  # 14.2: a second INVITE while one is pending
    assert "Retry-After" in got[2].headers
    ua.reject_reoffer(invite.call_id, 488, 10.1)
    (reply,) = responses(ua)
    assert (reply.status, reply.cseq) == (488, (19284, "INVITE"))


def test_in_dialog_options_and_unsupported_method() -> None:
    ua, invite, ok = confirmed_call()
    ua.receive(in_dialog("OPTIONS", invite, ok, cseq=19290, branch="z9hG4bKo"), BARESIP, "udp", 1)
    ua.receive(in_dialog("REFER", invite, ok, cseq=19291, branch="z9hG4bKr"), BARESIP, "udp", 1)
    got = responses(ua)
    assert [r.status for r in got] == [200, 405]
    assert "Allow" in got[1].headers


# --------------------------------------------------------------------------- out-of-dialog requests


def test_options_ping_and_draining() -> None:
    ua = make_ua()
    ua.receive(capture("kamailio_options"), ("10.0.0.9", 5060), "udp", 0)
    (ok,) = responses(ua)
    assert ok.status == 200
    assert ok.headers["Accept"] == "application/sdp" and "timer" in ok.header_tokens("Supported")
    assert "OPTIONS" in ok.header_tokens("Allow") or "options" in ok.header_tokens("Allow")
    assert "100rel" not in ok.header_tokens("Supported")
    ua.draining = True
    ping = capture("kamailio_options").replace(b"z9hG4bK3b4a", b"z9hG4bK3b4b").replace(b"CSeq: 10", b"CSeq: 11")
    ua.receive(ping, ("10.0.0.9", 5060), "udp", 1)
    (busy,) = responses(ua)
    assert busy.status == 503 and busy.headers["Retry-After"] == "30"
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 1)
    assert [r.status for r in responses(ua)] == [100, 503]
    assert events(ua) == []


def test_require_100rel_is_420() -> None:
    ua = make_ua()
    raw = capture("baresip_invite").replace(b"Supported: replaces,norefersub", b"Require: 100rel")
    ua.receive(raw, BARESIP, "udp", 0)
    final = responses(ua)[-1]
    assert (final.status, final.headers["Unsupported"]) == (420, "100rel")
    assert events(ua) == []


def test_known_but_disallowed_method_is_405_with_allow() -> None:
    ua = make_ua()
    raw = capture("kamailio_options").replace(b"OPTIONS sip", b"SUBSCRIBE sip").replace(b"10 OPTIONS", b"10 SUBSCRIBE")
    ua.receive(raw, ("10.0.0.9", 5060), "udp", 0)
    (reply,) = responses(ua)
    assert reply.status == 405 and reply.headers["Allow"] == "INVITE, ACK, CANCEL, BYE, OPTIONS, INFO, UPDATE, REGISTER"


def test_register_is_surfaced_and_answered_through_respond() -> None:
    ua = make_ua()
    ua.receive(capture("zoiper_register"), ("10.0.0.50", 52468), "udp", 0)
    (event,) = events(ua)
    assert isinstance(event, RequestReceived) and event.request.method == "REGISTER"
    assert event.source == ("10.0.0.50", 52468) and event.transport == "udp"
    assert ua.outgoing() == []
    ua.respond(event.handle, 200, 0.01, headers=[("Contact", "<sip:carol@10.0.0.50:52468>;expires=60")])
    (ok, out), = sent(ua)
    assert isinstance(ok, Response) and ok.status == 200 and ok.to.tag
    assert ok.headers["Contact"] == "<sip:carol@10.0.0.50:52468>;expires=60"
    assert out.dest == ("10.0.0.50", 52468)
    ua.receive(capture("zoiper_register"), ("10.0.0.50", 52468), "udp", 0.5)  # retransmission
    assert [r.status for r in responses(ua)] == [200] and events(ua) == []


def test_merged_request_is_482() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0)
    forked = capture("baresip_invite").replace(b"z9hG4bK6a8e2d1f3c5b7a9e", b"z9hG4bKfork2")
    ua.receive(forked, BARESIP, "udp", 0.01)
    assert [r.status for r in responses(ua)] == [100, 100, 482]
    assert len(events(ua)) == 1


def test_malformed_request_gets_400_with_warning() -> None:
    ua = make_ua()
    raw = re.sub(rb"Content-Length: \d+", b"Content-Length: -9", capture("baresip_invite"))
    ua.receive(raw, BARESIP, "udp", 0)
    (reply, out), = sent(ua)
    assert isinstance(reply, Response) and reply.status == 400
    assert reply.headers["Warning"] == "399 127.0.0.1 \"invalid Content-Length '-9'\""
    assert out.dest == BARESIP


# --------------------------------------------------------------------------- hangup


def test_hangup_before_answer_is_480() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0)
    events(ua)
    ua.hangup("6c8d2e4f1a3b5c7d", 1)
    assert [r.status for r in responses(ua)] == [100, 480]
    assert events(ua) == [CallEnded("6c8d2e4f1a3b5c7d", "local")]


def test_hangup_before_ack_waits_for_the_ack() -> None:
    ua, invite, ok = answered_call()
    ua.hangup(invite.call_id, 0.15)
    assert events(ua) == [CallEnded(invite.call_id, "local")]
    assert ua.outgoing() == []  # section 15: no BYE before the ACK
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKa"), BARESIP, "udp", 0.2)
    (bye, _), = sent(ua)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert events(ua) == []


def test_bye_we_send_is_retransmitted_over_udp() -> None:
    ua, invite, ok = confirmed_call()
    ua.hangup(invite.call_id, 1)
    (bye, out), = sent(ua)
    assert isinstance(bye, Request) and out.dest == BARESIP
    ua.handle_timer(1.5)
    assert [m.method for m, _ in sent(ua) if isinstance(m, Request)] == ["BYE"]
    reply = Response(200, "OK", bye.headers.copy())
    ua.receive(bytes(reply), BARESIP, "udp", 1.6)
    ua.handle_timer(3)
    assert ua.outgoing() == []


# --------------------------------------------------------------------------- UAC and the UA pair


class UAPair:
    """Two user agents wired back to back on one fake clock (h11's ConnectionPair idea)."""

    def __init__(self) -> None:
        self.a = UserAgent(local_host="127.0.0.1", local_port=5070)  # ivr placing a call
        self.b = UserAgent(local_host="127.0.0.1", local_port=5080)  # the called party
        self.now = 0.0
        self.drop = lambda data: False

    def pump(self) -> None:
        moved = True
        while moved:
            moved = False
            for src, dst, addr in ((self.a, self.b, ("127.0.0.1", 5070)), (self.b, self.a, ("127.0.0.1", 5080))):
                for out in src.outgoing():
                    moved = True
                    if not self.drop(out.data):
                        dst.receive(out.data, addr, out.transport, self.now)

    def advance(self, until: float) -> None:
        while True:
            deadlines = [d for d in (self.a.next_timer(), self.b.next_timer()) if d is not None]
            if not deadlines or min(deadlines) > until:
                self.now = until
                return
            self.now = min(deadlines)
            self.a.handle_timer(self.now)
            self.b.handle_timer(self.now)
            self.pump()


def test_outgoing_call_through_the_pair() -> None:
    pair = UAPair()
    call_id = pair.a.invite("sip:201@127.0.0.1:5080", SDP, 0.0, from_uri="sip:ivr@127.0.0.1",
                            destination=("127.0.0.1", 5080))
    pair.pump()
    (incoming,) = events(pair.b)
    assert isinstance(incoming, IncomingCall) and incoming.call_id == call_id and incoming.offer == SDP
    assert incoming.called == "201" and incoming.caller == "ivr"
    pair.b.ringing(call_id, 0.1)
    pair.pump()
    assert events(pair.a) == [OutgoingCallProgress(call_id, 180)]
    pair.b.answer(call_id, b"v=0\r\nanswer\r\n", 0.2)
    pair.pump()
    assert events(pair.a) == [OutgoingCallAnswered(call_id, b"v=0\r\nanswer\r\n")]
    assert events(pair.b) == [CallConfirmed(call_id, None)]
    pair.b.hangup(call_id, 5)
    pair.pump()
    assert events(pair.a) == [CallEnded(call_id, "bye")]
    assert events(pair.b) == [CallEnded(call_id, "local")]


def test_pair_2xx_retransmission_and_ack_timeout() -> None:
    pair = UAPair()
    pair.drop = lambda data: data.startswith(b"ACK ")
    call_id = pair.a.invite("sip:201@127.0.0.1:5080", SDP, 0.0, from_uri="sip:ivr@127.0.0.1",
                            destination=("127.0.0.1", 5080))
    pair.pump()
    events(pair.b)
    pair.b.answer(call_id, SDP, 0.0)
    pair.pump()
    assert events(pair.a) == [OutgoingCallAnswered(call_id, SDP)]
    seen: list[float] = []
    original = pair.drop

    def drop(data: bytes) -> bool:
        if data.startswith(b"SIP/2.0 200 OK") and b" INVITE\r\n" in data:
            seen.append(pair.now)
        return original(data)

    pair.drop = drop
    pair.advance(40)
    assert seen == [0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert events(pair.b) == [CallEnded(call_id, "ack_timeout")]
    assert events(pair.a) == [CallEnded(call_id, "bye")]


def test_outgoing_call_rejected_and_timed_out() -> None:
    pair = UAPair()
    call_id = pair.a.invite("sip:201@127.0.0.1:5080", SDP, 0.0, from_uri="sip:ivr@127.0.0.1",
                            destination=("127.0.0.1", 5080))
    pair.pump()
    events(pair.b)
    pair.b.reject(call_id, 486, 0.1)
    pair.pump()
    assert events(pair.a) == [OutgoingCallFailed(call_id, 486, "Busy Here")]
    assert call_id not in pair.b.calls
    # nobody answers at all: timer B
    lonely = UserAgent(local_host="127.0.0.1", local_port=5070)
    other = lonely.invite("sip:9@192.0.2.1", SDP, 0.0, from_uri="sip:ivr@127.0.0.1", destination=("192.0.2.1", 5060))
    while (deadline := lonely.next_timer()) is not None and deadline <= 32:
        lonely.handle_timer(deadline)
    invites = [o for o in lonely.outgoing() if o.data.startswith(b"INVITE ")]
    assert len(invites) == 7
    assert events(lonely) == [OutgoingCallFailed(other, 408, "Request Timeout")]


def test_cancel_outgoing_call() -> None:
    pair = UAPair()
    call_id = pair.a.invite("sip:201@127.0.0.1:5080", SDP, 0.0, from_uri="sip:ivr@127.0.0.1",
                            destination=("127.0.0.1", 5080))
    pair.a.hangup(call_id, 0.0)  # before any provisional: CANCEL waits (9.1)
    assert [o for o in pair.a.outgoing() if o.data.startswith(b"CANCEL")] == []
    # deliver the INVITE (re-sent from the transaction's first transmission)
    invite = pair.a._client_tx[next(iter(pair.a._client_tx))].request  # noqa: SLF001
    pair.b.receive(bytes(invite), ("127.0.0.1", 5070), "udp", 0.0)
    events(pair.b)
    pair.b.ringing(call_id, 0.1)
    pair.pump()
    # the runner hears CallEnded at once; the 180 and the final 487 are not reported after it
    assert events(pair.a) == [CallEnded(call_id, "local"), OutgoingCallProgress(call_id, 180)]
    assert events(pair.b) == [CallCancelled(call_id)]
    assert call_id not in pair.a.calls and call_id not in pair.b.calls


# --------------------------------------------------------------------------- never raises


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=500))
def test_receive_never_raises_on_garbage(data: bytes) -> None:
    ua = make_ua()
    ua.receive(data, ("192.0.2.1", 5060), "udp", 0.0)
    ua.handle_timer(100.0)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.sampled_from(sorted(DATA.glob("*.sip"))), st.data())
def test_receive_never_raises_on_mutated_captures(path: Path, data: st.DataObject) -> None:
    ua = make_ua()
    raw = bytearray(path.read_bytes())
    for _ in range(data.draw(st.integers(1, 5))):
        pos = data.draw(st.integers(0, len(raw) - 1))
        raw[pos] = data.draw(st.sampled_from(b"\x00\r\n :;,<>\"@=/0123xZ"))
    try:
        parse_message(bytes(raw))
        well_formed = True
    except SipParseError:
        well_formed = False
    ua.receive(bytes(raw), ("192.0.2.1", 5060), "udp", 0.0)
    while (event := ua.next_event()) is not None:
        if isinstance(event, IncomingCall):
            ua.answer(event.call_id, SDP, 0.1)
        elif isinstance(event, RequestReceived):
            ua.respond(event.handle, 200, 0.1)
    ua.handle_timer(100.0)
    for out in ua.outgoing():
        if well_formed:
            parse_message(out.data)  # what we build from a valid message is valid


# --------------------------------------------------------------------------- safety nets


def test_unanswered_invite_expires_with_487() -> None:
    ua = make_ua()
    raw = capture("baresip_invite").replace(b"Supported:", b"Expires: 30\r\nSupported:")
    ua.receive(raw, BARESIP, "udp", 0)
    events(ua)
    responses(ua)
    ua.handle_timer(29.9)
    assert responses(ua) == []
    ua.handle_timer(30.0)
    assert [r.status for r in responses(ua)] == [487]
    assert events(ua) == [CallEnded("6c8d2e4f1a3b5c7d", "transaction_timeout")]


def test_request_the_runner_never_answers_is_forgotten() -> None:
    ua = make_ua()
    ua.receive(capture("zoiper_register"), ("10.0.0.50", 52468), "udp", 0)
    (event,) = events(ua)
    assert isinstance(event, RequestReceived)
    ua.handle_timer(32.0)
    ua.respond(event.handle, 200, 40.0)  # too late: ignored
    assert ua.outgoing() == []
    assert ua.next_timer() is None  # nothing left behind


def test_update_with_sdp_in_early_dialog() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0)
    events(ua)
    ua.ringing("6c8d2e4f1a3b5c7d", 0.1)
    ringing = responses(ua)[-1]
    invite = parse_message(capture("baresip_invite"))
    assert isinstance(invite, Request)
    update = in_dialog("UPDATE", invite, ringing, cseq=19284, branch="z9hG4bKu", body=b"v=0\r\n")
    ua.receive(update, BARESIP, "udp", 0.2)
    assert events(ua) == [ReOffer("6c8d2e4f1a3b5c7d", b"v=0\r\n", "UPDATE")]
    ua.accept_reoffer("6c8d2e4f1a3b5c7d", SDP, 0.3)
    (reply,) = responses(ua)
    assert (reply.status, reply.cseq, reply.body) == (200, (19284, "UPDATE"), SDP)


# --------------------------------------------------------------------------- recorded real peers


@pytest.mark.parametrize(
    "prefix, our_tag, source",
    [("baresip_real", "b2cfaf3ea4", ("127.0.0.1", 5062)), ("sipp_uac", "9a6ba53c57", ("127.0.0.1", 5098))],
)
def test_replay_recorded_call(monkeypatch: pytest.MonkeyPatch, prefix: str, our_tag: str,
                              source: tuple[str, int]) -> None:
    """INVITE, ACK and BYE exactly as baresip / sipp sent them to ivr on this machine."""
    monkeypatch.setattr("ivr.sip.ua._tag", lambda: our_tag)  # the tag ivr gave them then
    ua = UserAgent(local_host="127.0.0.1", local_port=5099)
    ua.receive(capture(f"{prefix}_invite"), source, "udp", 0.0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall) and incoming.offer is not None
    ua.ringing(incoming.call_id, 0.0)
    ua.answer(incoming.call_id, SDP, 0.0)
    got = responses(ua)
    assert [r.status for r in got] == [100, 180, 200]
    assert all(r.to.tag == our_tag for r in got[1:])
    ua.receive(capture(f"{prefix}_ack"), source, "udp", 0.01)
    assert events(ua) == [CallConfirmed(incoming.call_id, None)]
    ua.handle_timer(5.0)
    assert responses(ua) == []  # the ACK stopped the 2xx retransmissions
    ua.receive(capture(f"{prefix}_bye"), source, "udp", 6.0)
    (ok,) = responses(ua)
    assert (ok.status, ok.cseq[1]) == (200, "BYE")
    assert events(ua) == [CallEnded(incoming.call_id, "bye")]


# --------------------------------------------------------------------------- UAC details


def _lone_invite(ua: UserAgent, **kwargs: object) -> tuple[str, Request]:
    call_id = ua.invite("sip:+15551230000@trunk.example.net", SDP, 0.0, from_uri="sip:ivr@203.0.113.10",
                        destination=("198.51.100.1", 5060), **kwargs)  # type: ignore[arg-type]
    (invite, out), = sent(ua)
    assert isinstance(invite, Request) and out.dest == ("198.51.100.1", 5060)
    return call_id, invite


def test_outgoing_invite_answers_a_digest_challenge_once() -> None:
    from ivr.sip.auth import DigestClient

    ua = make_ua()
    call_id, invite = _lone_invite(ua, auth=DigestClient("trunk", "s3cret", cnonce=lambda: "c0ffee"))
    challenge = build_response(invite, 407, to_tag="x", headers=[
        ("Proxy-Authenticate", 'Digest realm="trunk.example.net", nonce="abc123", qop="auth", algorithm=MD5')])
    ua.receive(bytes(challenge), ("198.51.100.1", 5060), "udp", 0.1)
    (ack, _), (again, _) = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.to.tag == "x"
    assert isinstance(again, Request) and again.method == "INVITE" and again.cseq == (2, "INVITE")
    assert again.top_via.branch != invite.top_via.branch and again.call_id == call_id
    assert again.from_.tag == invite.from_.tag
    credentials = again.headers["Proxy-Authorization"]
    assert credentials.startswith('Digest username="trunk", realm="trunk.example.net", nonce="abc123"')
    assert 'cnonce="c0ffee"' in credentials and "nc=00000001" in credentials
    assert events(ua) == []
    # a second challenge for the same call is not answered again
    ua.receive(bytes(build_response(again, 407, to_tag="y", headers=challenge.headers.items()[-1:])),
               ("198.51.100.1", 5060), "udp", 0.2)
    assert events(ua) == [OutgoingCallFailed(call_id, 407, "Proxy Authentication Required")]


def test_outgoing_invite_without_credentials_fails_on_401() -> None:
    ua = make_ua()
    call_id, invite = _lone_invite(ua)
    ua.receive(bytes(build_response(invite, 401, to_tag="x", headers=[("WWW-Authenticate", 'Digest realm="r", nonce="n"')])),
               ("198.51.100.1", 5060), "udp", 0.1)
    assert events(ua) == [OutgoingCallFailed(call_id, 401, "Unauthorized")]


def test_forked_2xx_is_acked_and_released() -> None:
    ua = make_ua()
    call_id, invite = _lone_invite(ua)
    first = build_response(invite, 200, to_tag="fork1", body=SDP, headers=[
        ("Contact", "<sip:a@198.51.100.2>"), ("Content-Type", "application/sdp")])
    ua.receive(bytes(first), ("198.51.100.1", 5060), "udp", 0.1)
    (ack1, _), = sent(ua)
    assert isinstance(ack1, Request) and ack1.method == "ACK" and ack1.to.tag == "fork1"
    assert events(ua) == [OutgoingCallAnswered(call_id, SDP)]
    ua.receive(bytes(first), ("198.51.100.1", 5060), "udp", 0.6)  # retransmitted 2xx: the same ACK
    (ack1_again, _), = sent(ua)
    assert bytes(ack1_again) == bytes(ack1)
    second = build_response(invite, 200, to_tag="fork2", headers=[("Contact", "<sip:b@198.51.100.3>")], body=SDP)
    ua.receive(bytes(second), ("198.51.100.1", 5060), "udp", 0.7)
    (ack2, out2), (bye2, _) = sent(ua)
    assert isinstance(ack2, Request) and ack2.method == "ACK" and ack2.to.tag == "fork2"
    assert out2.dest == ("198.51.100.3", 5060)
    assert isinstance(bye2, Request) and bye2.method == "BYE" and bye2.to.tag == "fork2"
    assert events(ua) == [] and ua.calls[call_id].state == "confirmed"


def test_peer_min_se_raises_our_interval() -> None:
    ua = make_ua()
    raw = capture("freeswitch_invite").replace(b"Supported: timer", b"Min-SE: 2000\r\nSupported: timer")
    ua.receive(raw, ("10.0.0.3", 5060), "udp", 0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall)
    ua.answer(incoming.call_id, SDP, 0.1)
    ok = responses(ua)[-1]
    assert ok.headers["Session-Expires"] == "2000;refresher=uac"


def test_refresh_rejected_422_is_retried_with_min_se() -> None:
    raw = capture("yealink_invite").replace(b"Supported: replaces", b"Session-Expires: 600")
    ua = make_ua()
    ua.receive(raw, ("192.168.10.42", 5062), "udp", 0)
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    events(ua)
    ua.answer(invite.call_id, SDP, 0)
    ok = [r for r in responses(ua) if r.status == 200][0]
    ua.receive(in_dialog("ACK", invite, ok, cseq=2, branch="z9hG4bKa"), ("192.168.10.42", 5062), "udp", 0)
    ua.handle_timer(300)
    (update, _), = sent(ua)
    assert isinstance(update, Request)
    too_small = build_response(update, 422, headers=[("Min-SE", "1200")])
    ua.receive(bytes(too_small), ("192.168.10.42", 5062), "udp", 300.1)
    (retry, _), = sent(ua)
    assert isinstance(retry, Request) and retry.method == "UPDATE"
    assert retry.headers["Session-Expires"] == "1200;refresher=uac" and retry.cseq[0] == update.cseq[0] + 1


def test_call_over_tcp_uses_the_connection_and_no_retransmissions() -> None:
    ua = make_ua()
    raw = capture("baresip_real_invite").replace(b"SIP/2.0/UDP", b"SIP/2.0/TCP")
    source = ("127.0.0.1", 40321)  # the caller's ephemeral port of its connection
    ua.receive(raw, source, "tcp", 0.0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall)
    ua.answer(incoming.call_id, SDP, 0.1)
    got = sent(ua)
    assert [(m.status, o.dest, o.transport) for m, o in got if isinstance(m, Response)] == [
        (100, source, "tcp"), (200, source, "tcp")]
    ok = got[-1][0]
    assert isinstance(ok, Response) and ok.headers["Contact"] == "<sip:ivr@127.0.0.1:5060;transport=tcp>"
    ua.handle_timer(5.0)
    assert ua.outgoing() == []  # no 2xx retransmission over a reliable transport
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    ack = in_dialog("ACK", invite, ok, cseq=invite.cseq[0], branch="z9hG4bKt").replace(b"/UDP", b"/TCP")
    ua.receive(ack, source, "tcp", 5.1)
    assert events(ua) == [CallConfirmed(incoming.call_id, None)]
    ua.hangup(incoming.call_id, 6.0)
    (bye, out), = sent(ua)
    assert isinstance(bye, Request) and bye.method == "BYE"
    assert (out.dest, out.transport) == (source, "tcp")
    assert bye.top_via.transport == "TCP"
    ua.handle_timer(7.0)
    assert ua.outgoing() == []  # no timer E over TCP


def test_early_media_then_reject() -> None:
    ua = make_ua()
    ua.receive(capture("baresip_invite"), BARESIP, "udp", 0)
    events(ua)
    ua.progress("6c8d2e4f1a3b5c7d", SDP, 0.1)
    (early,) = responses(ua)[-1:]
    assert (early.status, early.reason, early.body) == (183, "Session Progress", SDP)
    assert early.headers["Content-Type"] == "application/sdp" and early.to.tag
    assert "Require" not in early.headers  # unreliable provisional: no 100rel
    ua.reject("6c8d2e4f1a3b5c7d", 480, 8.0, headers=[("Retry-After", "3600")])
    (final,) = responses(ua)
    assert (final.status, final.headers["Retry-After"], final.to.tag) == (480, "3600", early.to.tag)
    assert events(ua) == []


def test_cancelled_reinvite_gets_487_and_the_call_goes_on() -> None:
    ua, invite, ok = confirmed_call()
    reinvite = in_dialog("INVITE", invite, ok, cseq=19290, branch="z9hG4bKre", body=b"v=0\r\n")
    ua.receive(reinvite, BARESIP, "udp", 1)
    assert isinstance(events(ua)[0], ReOffer)
    cancel = reinvite.replace(b"INVITE sip", b"CANCEL sip").replace(b"19290 INVITE", b"19290 CANCEL")
    cancel = re.sub(rb"Content-Type: application/sdp\r\nContent-Length: \d+\r\n\r\n.*", b"Content-Length: 0\r\n\r\n",
                    cancel, flags=re.S)
    ua.receive(cancel, BARESIP, "udp", 1.1)
    assert [(r.status, r.cseq[1]) for r in responses(ua)] == [(100, "INVITE"), (200, "CANCEL"), (487, "INVITE")]
    ua.accept_reoffer(invite.call_id, SDP, 1.2)  # too late: nothing pending any more
    assert ua.outgoing() == []
    assert events(ua) == [] and ua.calls[invite.call_id].state == "confirmed"


def test_cancelled_outgoing_call_without_final_response_is_forgotten() -> None:
    ua = make_ua()
    call_id, invite = _lone_invite(ua)
    ua.receive(bytes(build_response(invite, 180, to_tag="r")), ("198.51.100.1", 5060), "udp", 0.1)
    events(ua)
    ua.hangup(call_id, 1.0)
    (cancel, _), = sent(ua)
    assert isinstance(cancel, Request) and cancel.method == "CANCEL" and cancel.cseq == (1, "CANCEL")
    assert cancel.top_via.branch == invite.top_via.branch
    assert events(ua) == [CallEnded(call_id, "local")]
    ua.receive(bytes(build_response(cancel, 200, to_tag="r")), ("198.51.100.1", 5060), "udp", 1.1)
    ua.handle_timer(32.9)
    assert call_id in ua.calls  # still waiting for the 487
    ua.handle_timer(33.0)
    assert call_id not in ua.calls and events(ua) == []
    ua.handle_timer(100.0)
    assert ua.next_timer() is None


@pytest.mark.parametrize(
    "ruri, frm, called, caller",
    [
        ("sip:%2B41435435570@10.0.0.1", "<sip:%2B41790000000@gw>;tag=1", "+41435435570", "+41790000000"),
        ("tel:+15551234;phone-context=example.com", "<tel:+15559999>;tag=1", "+15551234", "+15559999"),
        ("sip:10.0.0.1:5060", '"Bob" <sip:200@pbx>;tag=1', "100", "200"),
        ("sip:5551234;phone-context=+1@gw.example.net;user=phone", "<sip:anonymous@anonymous.invalid>;tag=1",
         "5551234", "anonymous"),
    ],
)
def test_caller_and_called_numbers(ruri: str, frm: str, called: str, caller: str) -> None:
    raw = capture("yealink_invite").replace(b"INVITE sip:100@192.168.10.1:5060 SIP/2.0", f"INVITE {ruri} SIP/2.0".encode())
    raw = raw.replace(b'From: "Reception" <sip:201@192.168.10.1:5060>;tag=1318483129', f"From: {frm}".encode())
    ua = make_ua()
    ua.receive(raw, ("192.168.10.42", 5062), "udp", 0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall)
    assert (incoming.called, incoming.caller) == (called, caller)


# --------------------------------------------------------------------------- any sequence


_STEPS = st.one_of(
    st.tuples(st.just("receive"), st.sampled_from(sorted(p.name for p in DATA.glob("*.sip"))), st.integers(0, 3)),
    st.tuples(st.just("command"), st.sampled_from(["ringing", "progress", "answer", "reject", "hangup",
                                                   "accept_reoffer", "reject_reoffer", "respond", "invite",
                                                   "refer"]), st.integers(0, 3)),
    st.tuples(st.just("time"), st.sampled_from(["0.01", "0.5", "4", "33", "1800"]), st.integers(0, 0)),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(_STEPS, max_size=30))
def test_any_sequence_of_network_input_and_commands_never_raises(steps: list[tuple[str, str, int]]) -> None:
    """Peers and the runner race: whatever order things happen in, the UA neither raises
    nor sends what it cannot parse back."""
    ua = make_ua()
    now = 0.0
    handles: list[int] = []
    for kind, what, n in steps:
        if kind == "receive":
            ua.receive((DATA / what).read_bytes(), ("10.0.0.2", 5060 + n), "udp" if n < 3 else "tcp", now)
        elif kind == "time":
            now += float(what)
            ua.handle_timer(now)
        else:
            call_ids = sorted(ua.calls) or ["gone"]
            call_id = call_ids[n % len(call_ids)]
            if what == "answer":
                ua.answer(call_id, SDP, now)
            elif what == "progress":
                ua.progress(call_id, SDP, now)
            elif what == "ringing":
                ua.ringing(call_id, now)
            elif what == "reject":
                ua.reject(call_id, 486, now)
            elif what == "hangup":
                ua.hangup(call_id, now)
            elif what == "accept_reoffer":
                ua.accept_reoffer(call_id, SDP, now)
            elif what == "reject_reoffer":
                ua.reject_reoffer(call_id, 488, now)
            elif what == "respond" and handles:
                ua.respond(handles.pop(), 200, now)
            elif what == "invite":
                ua.invite("sip:1@10.0.0.2", SDP, now, from_uri="sip:ivr@127.0.0.1", destination=("10.0.0.2", 5060))
            elif what == "refer":
                ua.refer(call_id, "sip:2@10.0.0.2", now)
        while (event := ua.next_event()) is not None:
            if isinstance(event, RequestReceived):
                handles.append(event.handle)
        for out in ua.outgoing():
            parse_message(out.data)


def test_ipv6_call() -> None:
    ua = UserAgent(local_host="::1", local_port=5060)
    raw = capture("baresip_real_invite").replace(b"127.0.0.1:5062", b"[::1]:5062")
    ua.receive(raw, ("::1", 5062), "udp", 0.0)
    (incoming,) = events(ua)
    assert isinstance(incoming, IncomingCall)
    ua.answer(incoming.call_id, SDP, 0.1)
    got = sent(ua)
    ok, out = got[-1]
    assert isinstance(ok, Response) and out.dest == ("::1", 5062)
    assert ok.headers["Contact"] == "<sip:ivr@[::1]:5060>"
    assert ok.top_via.params["received"] == "::1" and ok.top_via.rport == 5062
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    ua.receive(in_dialog("ACK", invite, ok, cseq=invite.cseq[0], branch="z9hG4bK6"), ("::1", 5062), "udp", 0.2)
    events(ua)
    ua.hangup(incoming.call_id, 1.0)
    (bye, bye_out), = sent(ua)
    assert isinstance(bye, Request) and bye.top_via.host == "[::1]" and bye.top_via.port == 5060
    assert bye_out.dest == ("::1", 5062)


def test_our_refresh_meeting_glare_is_retried() -> None:
    raw = capture("baresip_invite").replace(b"Supported: replaces,norefersub", b"Session-Expires: 300")
    raw = raw.replace(b",UPDATE\r\n", b"\r\n")
    ua = make_ua()
    ua.receive(raw, BARESIP, "udp", 0)
    invite = parse_message(raw)
    assert isinstance(invite, Request)
    events(ua)
    ua.answer(invite.call_id, SDP, 0)
    ok = [r for r in responses(ua) if r.status == 200][0]
    ua.receive(in_dialog("ACK", invite, ok, cseq=19283, branch="z9hG4bKa"), BARESIP, "udp", 0)
    ua.handle_timer(150)
    (reinvite, _), = sent(ua)
    assert isinstance(reinvite, Request) and reinvite.method == "INVITE"
    ua.receive(bytes(build_response(reinvite, 491, to_tag="x")), BARESIP, "udp", 150.1)
    assert [m.method for m, _ in sent(ua) if isinstance(m, Request)] == ["ACK"]  # the transaction's ACK
    ua.handle_timer(152.1)
    assert sent(ua) == []
    ua.handle_timer(154.2)
    (again, _), = sent(ua)
    assert isinstance(again, Request) and again.method == "INVITE" and again.cseq[0] == reinvite.cseq[0] + 1
    moved = build_response(again, 200, to_tag="x", body=SDP, headers=[
        ("Contact", "<sip:alice@127.0.0.1:6000>"), ("Content-Type", "application/sdp")])
    ua.receive(bytes(moved), BARESIP, "udp", 154.3)
    (ack, out), = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri == "sip:alice@127.0.0.1:6000"


def test_outgoing_call_against_recorded_sipp_uas() -> None:
    """ivr's INVITE answered by sipp's built-in uas scenario: its 180, 200 and the 200 to our
    BYE as recorded, with the identifiers of this run put in place of the recorded ones."""
    ua = make_ua()
    call_id = ua.invite("sip:service@127.0.0.1:5096", SDP, 0.0, from_uri="sip:ivr@127.0.0.1",
                        destination=("127.0.0.1", 5096))
    (invite, _), = sent(ua)
    assert isinstance(invite, Request)

    def as_this_run(name: str, branch: str) -> bytes:
        data = capture(name).replace(b"c9eb8cf581fffd0e91aeb459@127.0.0.1", call_id.encode())
        data = data.replace(b"tag=92848d430d", f"tag={invite.from_.tag}".encode())
        return data.replace(b"z9hG4bK7a8a2186e1f698c6" if b"INVITE" in data else b"z9hG4bKd6f24912e5e089a0",
                            branch.encode())

    sipp = ("127.0.0.1", 5096)
    ua.receive(as_this_run("sipp_uas_180", invite.top_via.branch or ""), sipp, "udp", 0.01)
    assert events(ua) == [OutgoingCallProgress(call_id, 180)]
    ua.receive(as_this_run("sipp_uas_200", invite.top_via.branch or ""), sipp, "udp", 0.02)
    (answered,) = events(ua)
    assert isinstance(answered, OutgoingCallAnswered) and answered.answer.startswith(b"v=0\r\no=user1")
    (ack, ack_out), = sent(ua)
    assert isinstance(ack, Request) and ack.method == "ACK" and ack.uri == "sip:127.0.0.1:5096;transport=UDP"
    assert ack.to.tag == "10986SIPpTag011" and ack_out.dest == sipp
    ua.hangup(call_id, 1.0)
    (bye, _), = sent(ua)
    assert isinstance(bye, Request) and bye.method == "BYE" and bye.cseq == (2, "BYE")
    ua.receive(as_this_run("sipp_uas_bye_200", bye.top_via.branch or ""), sipp, "udp", 1.01)
    ua.handle_timer(1.6)
    assert ua.outgoing() == []  # the 200 matched our BYE: no retransmission
    assert events(ua) == [CallEnded(call_id, "local")]
