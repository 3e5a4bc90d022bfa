"""Registering with a trunk, sans-IO: challenge answered once per nonce, refresh at 80 %, retry on
failure; and the user agent's send_request that carries those REGISTERs."""

from __future__ import annotations

from ivr.sip.auth import DigestChallenger, DigestClient
from ivr.sip.events import RequestResult
from ivr.sip.message import Request, build_response, parse_message
from ivr.sip.trunk import Trunk, TrunkRegistration
from ivr.sip.ua import UserAgent

TRUNK = Trunk("carrier", "198.51.100.7", 5080, username="acme", password="s3cret", register=True)
CONTACT = "<sip:acme@203.0.113.5:5060>"


def registration(password: str = "s3cret") -> TrunkRegistration:
    return TrunkRegistration(TRUNK, CONTACT, "reg-1@203.0.113.5", auth=DigestClient("acme", password))


def header(headers: list[tuple[str, str]], name: str) -> str | None:
    return next((v for n, v in headers if n == name), None)


def test_challenge_answered_then_refreshed_at_80_percent() -> None:
    reg, trunk = registration(), DigestChallenger("carrier.example", "k")
    first = reg.request(0.0)
    assert first.uri == "sip:198.51.100.7:5080"
    assert header(first.headers, "CSeq") == "1 REGISTER" and header(first.headers, "Authorization") is None
    assert (header(first.headers, "From") or "").startswith("<sip:acme@198.51.100.7>;tag=")
    challenge = [("WWW-Authenticate", v) for v in trunk.challenge(0.0, algorithms=("MD5",))]
    assert reg.response(401, challenge, 0.1) == "challenged" and reg.next_at == 0.1
    second = reg.request(0.1)
    assert header(second.headers, "CSeq") == "2 REGISTER" and header(second.headers, "Call-ID") == "reg-1@203.0.113.5"
    authorization = header(second.headers, "Authorization")
    assert authorization is not None
    assert trunk.verify("REGISTER", second.uri, authorization, {"acme": "s3cret"}.get, 0.1).ok
    granted = [("Contact", "<sip:acme@203.0.113.5:5060>;expires=600"), ("Expires", "3600")]
    assert reg.response(200, granted, 0.2) == "registered"
    assert reg.registered_until == 600.2 and reg.next_at == 0.2 + 480


def test_the_same_challenge_twice_means_a_wrong_password_no_loop() -> None:
    reg, trunk = registration("wrong"), DigestChallenger("carrier.example", "k")
    challenge = [("WWW-Authenticate", v) for v in trunk.challenge(0.0, algorithms=("MD5",))]
    reg.request(0.0)
    assert reg.response(401, challenge, 0.1) == "challenged"
    reg.request(0.1)
    assert reg.response(401, challenge, 0.2) == "failed"
    assert reg.next_at == 60.2 and reg.registered_until is None
    third = reg.request(60.2)
    assert header(third.headers, "Authorization") is None  # a fresh start after the pause


def test_a_stale_nonce_is_answered_again() -> None:
    reg, trunk = registration(), DigestChallenger("carrier.example", "k")
    challenge = [("WWW-Authenticate", v) for v in trunk.challenge(0.0, algorithms=("MD5",))]
    reg.request(0.0)
    assert reg.response(401, challenge, 0.1) == "challenged"
    reg.request(0.1)
    stale = [(n, v + ", stale=TRUE") for n, v in challenge]  # same nonce, but the password was right
    assert reg.response(401, stale, 0.2) == "challenged"


def test_the_grant_is_read_from_our_own_contact() -> None:
    reg = registration()
    reg.request(0.0)
    granted = [
        ("Contact", '<sip:other@203.0.113.9>;expires=30, "ivr" <SIP:acme@203.0.113.5:5060;ob>;Expires=900'),
        ("Expires", "3600"),
    ]
    assert reg.response(200, granted, 1.0) == "registered" and reg.registered_until == 901.0
    reg.request(reg.next_at or 0.0)
    assert reg.response(200, [("Contact", "<sip:other@203.0.113.9>;expires=30"), ("Expires", "120")], 800.0)
    assert reg.registered_until == 920.0


def test_refusal_and_timeout_retry_later() -> None:
    reg = registration()
    reg.request(0.0)
    assert reg.response(403, [], 1.0) == "failed" and reg.next_at == 61.0
    reg.request(61.0)
    assert reg.next_at is None  # waiting for the answer
    assert reg.response(408, [], 93.0) == "failed" and reg.next_at == 153.0


def test_user_agent_sends_the_request_and_reports_the_final_answer() -> None:
    ua = UserAgent(local_host="203.0.113.5", local_port=5060)
    reg = registration()
    request = reg.request(0.0)
    ua.send_request("REGISTER", request.uri, request.headers, 0.0, destination=("198.51.100.7", 5080))
    [out] = ua.outgoing()
    assert out.dest == ("198.51.100.7", 5080)
    sent = parse_message(out.data)
    assert isinstance(sent, Request) and sent.method == "REGISTER" and sent.top_via.branch
    assert sent.headers["Contact"] == CONTACT
    ua.receive(bytes(build_response(sent, 100)), ("198.51.100.7", 5080), "udp", 0.05)
    assert ua.next_event() is None
    ua.receive(bytes(build_response(sent, 200, headers=[("Expires", "300")])), ("198.51.100.7", 5080), "udp", 0.1)
    event = ua.next_event()
    assert isinstance(event, RequestResult) and event.status == 200 and event.call_id == "reg-1@203.0.113.5"
    assert event.response is not None and event.response.headers["Expires"] == "300"


def test_unregister_on_stop_uses_expires_0_and_the_last_challenge() -> None:
    reg, trunk = registration(), DigestChallenger("carrier.example", "k")
    assert reg.unregister(0.0) is None  # never registered: nothing to remove
    reg.request(0.0)
    reg.response(401, [("WWW-Authenticate", v) for v in trunk.challenge(0.0, algorithms=("MD5",))], 0.1)
    reg.request(0.1)
    reg.response(200, [("Expires", "600")], 0.2)
    bye = reg.unregister(100.0)
    assert bye is not None
    assert header(bye.headers, "Expires") == "0" and header(bye.headers, "CSeq") == "3 REGISTER"
    authorization = header(bye.headers, "Authorization")
    assert authorization is not None and "nc=00000002" in authorization
    assert trunk.verify("REGISTER", bye.uri, authorization, {"acme": "s3cret"}.get, 100.0).ok
    assert reg.unregister(101.0) is None and reg.next_at is None  # once, and no more refreshes
