"""Latch: the SDP's remote, moved once to a plausible source early in the call; RTCP's destination."""

from __future__ import annotations

import pytest

from ivr.media.latch import LATCH_SECONDS, Latch

SDP = ("192.0.2.10", 4000)  # what the phone's SDP says (behind a NAT: its private address)


def configured(now: float = 100.0, **kwargs: object) -> Latch:
    latch = Latch()
    assert latch.configure(SDP, now=now, **kwargs)  # type: ignore[arg-type]
    return latch


def test_a_new_sdp_address_opens_the_window_and_rtcp_goes_to_the_next_port() -> None:
    latch = configured()
    assert latch.open and not latch.latched
    assert (latch.sdp_remote, latch.rtcp_remote) == (SDP, ("192.0.2.10", 4001))
    assert not latch.configure(SDP, now=101.0)  # the same SDP again (a re-INVITE for hold): no change


def test_a_nat_that_rewrote_the_port_is_latched_to_once() -> None:
    latch = configured()
    assert latch.move(("192.0.2.10", 62000), now=100.5) == ("192.0.2.10", 62000)
    assert latch.latched and not latch.open
    assert latch.rtcp_remote == ("192.0.2.10", 62001)
    assert latch.move(("192.0.2.10", 62002), now=100.6) is None  # never again


def test_the_signalling_source_is_plausible_other_addresses_are_not() -> None:
    latch = configured(signalling_host="198.51.100.7")
    for junk in (("203.0.113.66", 4000), ("198.51.100.8", 4000)):
        assert latch.move(junk, now=100.1) is None
    assert latch.open  # junk does not use up the window
    assert latch.move(("198.51.100.7", 30000), now=100.2) == ("198.51.100.7", 30000)


def test_the_window_closes_after_latch_seconds() -> None:
    latch = configured()
    assert latch.move(("192.0.2.10", 62000), now=100.0 + LATCH_SECONDS + 0.1) is None
    assert not latch.open and not latch.latched


def test_a_reinvite_to_a_new_address_opens_a_new_window() -> None:
    latch = configured()
    latch.move(("192.0.2.10", 62000), now=101.0)
    assert latch.configure(("192.0.2.20", 5000), now=200.0)
    assert latch.open and not latch.latched and latch.rtcp_remote == ("192.0.2.20", 5001)


def test_rtcp_is_answered_where_it_came_from_unless_a_rtcp_fixed_it() -> None:
    latch = configured()
    latch.rtcp_from(("192.0.2.10", 62001))
    latch.rtcp_from(("192.0.2.10", 63001))  # once only
    assert latch.rtcp_remote == ("192.0.2.10", 62001)
    fixed = configured(rtcp=("192.0.2.10", 4100))
    fixed.move(("192.0.2.10", 62000), now=100.5)
    fixed.rtcp_from(("192.0.2.10", 62001))
    assert fixed.rtcp_remote == ("192.0.2.10", 4100)


@pytest.mark.parametrize(
    "host, port, remote",
    [("0.0.0.0", 4000, None), ("::", 4000, None), ("[::1]", 4000, ("::1", 4000)), ("192.0.2.10", "4000", SDP)],
)
def test_addresses_are_compared_as_the_socket_reports_them(host: str, port: int, remote: object) -> None:
    latch = Latch()
    latch.configure((host, port), now=0.0)
    assert latch.sdp_remote == remote and latch.open == (remote is not None)


def test_a_host_name_is_refused() -> None:
    with pytest.raises(ValueError) as info:
        Latch().configure(("phone.example.com", 4000), now=0.0)
    assert str(info.value) == "remote media host 'phone.example.com' is not an IP address (resolve it first)"
