"""Per-address request limits and the user agent's gate, on captured wire bytes and a fake clock.

The policy behind the gate is the runtime's (tests/runtime/test_overload.py); here the gate is
a fixed verdict, to show what the agent does with each: a shed INVITE gets a stateless 503 with
Retry-After and leaves no transaction and no call; a dropped request leaves nothing at all; a
retransmission or a re-INVITE of a call already taken is never shed.
"""

from __future__ import annotations

import pytest

from ivr.sip.events import IncomingCall, ReOffer
from ivr.sip.message import Request, Response, parse_message
from ivr.sip.throttle import RateLimiter, Refusals, RefusalTally, Verdict
from ivr.sip.ua import UserAgent
from tests.sip.ua_harness import (
    BARESIP,
    capture,
    confirmed_call,
    events,
    in_dialog,
    make_ua,
    responses,
)

FLOOD = ("127.0.0.2", 5061)


def invite(n: int) -> bytes:
    """sipp's uac INVITE as captured, made the n-th call (own Call-ID and branch)."""
    data = capture("sipp_uac_invite")
    return data.replace(b"1-28279@", f"{n}-28279@".encode()).replace(b"z9hG4bK-28279-1-0", f"z9hG4bK-28279-{n}-0".encode())


class FixedGate:
    """A gate that always says the same (the policy is tested with the runtime)."""

    retry_after = 7

    def __init__(self, verdict: Verdict) -> None:
        self.verdict = verdict
        self.asked: list[tuple[str, str, float]] = []

    def check(self, method: str, ip: str, now: float) -> Verdict:
        self.asked.append((method, ip, now))
        return self.verdict


def gated(verdict: Verdict) -> tuple[UserAgent, FixedGate]:
    ua = make_ua()
    ua.gate = gate = FixedGate(verdict)
    return ua, gate


# --------------------------------------------------------------------------- RateLimiter

def test_a_source_gets_its_burst_then_its_rate() -> None:
    limiter = RateLimiter(rate=10, burst=3)
    assert [limiter.allow("127.0.0.2", 0.0) for _ in range(4)] == [True, True, True, False]
    assert limiter.allow("127.0.0.2", 0.05) is False  # half a token back
    assert limiter.allow("127.0.0.2", 0.1) is True  # a whole one
    assert limiter.allow("127.0.0.3", 0.1) is True  # another address has its own bucket


def test_a_bucket_refills_no_further_than_its_burst() -> None:
    limiter = RateLimiter(rate=10, burst=2)
    assert limiter.allow("10.0.0.1", 0.0)
    assert [limiter.allow("10.0.0.1", 100.0) for _ in range(3)] == [True, True, False]


def test_trusted_addresses_and_networks_are_never_limited() -> None:
    limiter = RateLimiter(rate=1, burst=1, trusted=["10.0.0.5", "192.168.0.0/16", "::1"])
    for ip in ("10.0.0.5", "192.168.7.9", "::1"):
        assert all(limiter.allow(ip, 0.0) for _ in range(100))
    assert len(limiter) == 0  # nothing remembered for them
    assert [limiter.allow("10.0.0.6", 0.0) for _ in range(2)] == [True, False]


def test_within_rate_tells_a_caller_from_a_flood() -> None:
    limiter = RateLimiter(rate=10, burst=20, trusted=["10.0.0.5"])
    for n in range(4):  # one request every half second: its bucket stays full
        limiter.allow("10.0.0.1", n / 2)
    assert limiter.within_rate("10.0.0.1", 1.5)
    for _ in range(9):  # phones registering together: a few requests at once, half the burst left
        limiter.allow("10.0.0.3", 0.0)
    assert limiter.within_rate("10.0.0.3", 0.0)
    for n in range(15):  # 100 a second
        limiter.allow("10.0.0.2", n / 100)
    assert not limiter.within_rate("10.0.0.2", 0.15)
    assert limiter.within_rate("10.0.0.4", 0.0)  # never seen
    assert not limiter.within_rate("10.0.0.5", 0.0)  # a trusted proxy speaks for many


def test_a_bad_trusted_entry_is_refused() -> None:
    with pytest.raises(ValueError, match="does not appear to be an IPv4 or IPv6 network"):
        RateLimiter(rate=1, burst=1, trusted=["kamailio.local"])


def test_memory_is_bounded_and_full_buckets_go_first() -> None:
    limiter = RateLimiter(rate=1, burst=2, max_sources=10)
    limiter.allow("10.0.0.99", 0.0)
    limiter.allow("10.0.0.99", 0.0)  # empty bucket: worth keeping
    for n in range(20):
        limiter.allow(f"10.0.1.{n}", 5.0 + n)
    assert len(limiter) <= 10
    assert limiter.allow("10.0.1.19", 24.0) is True


# --------------------------------------------------------------------------- RefusalTally

def test_refusals_are_reported_once_per_address_and_interval() -> None:
    tally = RefusalTally(interval=10.0)
    tally.refuse("127.0.0.2", "rate", 0.0)
    assert tally.due(0.0) == [Refusals("127.0.0.2", 1, "rate", 0.0, 0.0)]
    for n in range(1, 1000):
        tally.refuse("127.0.0.2", "rate", n / 100)
    assert tally.due(9.99) == []
    assert tally.due(10.0) == [Refusals("127.0.0.2", 999, "rate", 0.01, 9.99)]
    assert tally.due(30.0) == []  # nothing refused since


def test_each_address_has_its_own_interval() -> None:
    tally = RefusalTally(interval=10.0)
    tally.refuse("10.0.0.1", "rate", 0.0)
    assert [r.source for r in tally.due(0.0)] == ["10.0.0.1"]
    tally.refuse("10.0.0.2", "overload", 5.0)
    assert [r.source for r in tally.due(5.0)] == ["10.0.0.2"]
    tally.refuse("10.0.0.1", "rate", 6.0)
    tally.refuse("10.0.0.2", "overload", 6.0)
    assert [r.source for r in tally.due(10.0)] == ["10.0.0.1"]
    assert [r.source for r in tally.due(15.0)] == ["10.0.0.2"]


# --------------------------------------------------------------------------- the agent's gate

def test_a_shed_invite_gets_a_stateless_503_with_retry_after() -> None:
    ua, gate = gated(Verdict.SHED)
    ua.receive(invite(1), FLOOD, "udp", 1.0)
    (response,) = responses(ua)
    assert (response.status, response.headers["Retry-After"]) == (503, "7")
    assert response.call_id == "1-28279@127.0.0.1" and response.to.tag
    assert response.top_via.received == "127.0.0.2"  # the Via as received (18.2.1)
    assert events(ua) == []
    assert ua.calls == {} and ua._server_tx == {} and ua.next_timer() is None  # nothing kept
    assert gate.asked == [("INVITE", "127.0.0.2", 1.0)]


def test_a_dropped_request_is_not_answered_and_leaves_nothing() -> None:
    ua, gate = gated(Verdict.DROP)
    for data in (invite(1), capture("kamailio_options"), capture("zoiper_register")):
        ua.receive(data, FLOOD, "udp", 1.0)
    assert ua.outgoing() == [] and events(ua) == [] and ua._server_tx == {}
    assert [m for m, _, _ in gate.asked] == ["INVITE", "OPTIONS", "REGISTER"]


def test_a_shed_options_or_register_is_taken_as_usual() -> None:
    """Only a new INVITE is shed; the policy drops other requests when it means to."""
    ua, _ = gated(Verdict.SHED)
    ua.receive(capture("kamailio_options"), FLOOD, "udp", 1.0)
    assert [r.status for r in responses(ua)] == [200]


def test_the_gate_is_asked_only_about_invite_register_and_options() -> None:
    ua, gate = gated(Verdict.DROP)
    ua.receive(capture("sipp_uac_bye"), FLOOD, "udp", 1.0)
    ua.receive(capture("sipp_uac_ack"), FLOOD, "udp", 1.0)
    assert gate.asked == []
    assert [r.status for r in responses(ua)] == [481]  # the BYE, as without a gate


def test_a_retransmitted_invite_of_a_call_being_set_up_is_not_shed() -> None:
    ua, gate = gated(Verdict.TAKE)
    ua.receive(invite(1), FLOOD, "udp", 1.0)
    assert isinstance(events(ua)[0], IncomingCall)
    assert [r.status for r in responses(ua)] == [100]
    gate.verdict = Verdict.SHED
    ua.receive(invite(1), FLOOD, "udp", 1.5)  # the caller did not hear our 100
    assert [r.status for r in responses(ua)] == [100]  # the transaction answers again, no 503
    assert "1-28279@127.0.0.1" in ua.calls


def test_a_reinvite_of_a_call_already_up_is_not_shed() -> None:
    ua, invite_, ok = confirmed_call()
    ua.gate = FixedGate(Verdict.SHED)
    sdp = capture("baresip_invite").split(b"\r\n\r\n", 1)[1]
    ua.receive(in_dialog("INVITE", invite_, ok, cseq=invite_.cseq[0] + 1, branch="z9hG4bKre1", body=sdp),
               BARESIP, "udp", 1.0)
    assert [type(e) for e in events(ua)] == [ReOffer]
    assert [r.status for r in responses(ua)] == [100]


def test_the_503_goes_back_along_the_via_with_rport() -> None:
    ua, _ = gated(Verdict.SHED)
    data = invite(3).replace(b"branch=z9hG4bK-28279-3-0", b"branch=z9hG4bK-28279-3-0;rport")
    ua.receive(data, ("192.0.2.7", 40000), "udp", 0.0)
    ((message, out),) = [(parse_message(o.data), o) for o in ua.outgoing()]
    assert isinstance(message, Response) and message.status == 503
    assert out.dest == ("192.0.2.7", 40000)
    assert not isinstance(message, Request)
