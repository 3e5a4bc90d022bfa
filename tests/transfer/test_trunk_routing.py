"""Trunk selection: only numbers a trunk's allow patterns permit go out, with the company number."""

from __future__ import annotations

import pytest

from ivr.sip.trunk import Trunk, TrunkRefused, Trunks, is_external, pattern_allows

MOBILES = Trunk("carrier", "198.51.100.7", 5080, username="acme", password="s3cret", caller_id="+41435435570",
                allow=("+4179*", "+4178*"))
LOCAL = Trunk("local", "192.0.2.10", allow=("0800??????", "112"))


def test_patterns() -> None:
    assert pattern_allows("+4179*", "+41791234567")
    assert not pattern_allows("+4179*", "+41901234567")
    assert pattern_allows("0800??????", "0800123456") and not pattern_allows("0800??????", "08001234567")
    assert pattern_allows("112", "112") and not pattern_allows("112", "1123")
    assert is_external("+41791234567") and is_external("0800123456")
    assert not is_external("sales") and not is_external("sip:x@y") and not is_external("+")


def test_route_presents_the_company_number_and_uses_the_allowing_trunk() -> None:
    trunks = Trunks([LOCAL, MOBILES])
    route = trunks.route("+41791234567", local_host="203.0.113.5")
    assert route.trunk is MOBILES
    assert route.uri == "sip:+41791234567@198.51.100.7:5080"
    assert route.address == ("198.51.100.7", 5080)
    assert route.from_uri == "sip:+41435435570@198.51.100.7"
    assert ("P-Asserted-Identity", "<sip:+41435435570@198.51.100.7>") in route.headers
    assert trunks.auth(MOBILES) is not None and trunks.auth(LOCAL) is None
    assert trunks.route("0800123456", local_host="203.0.113.5").from_uri == "sip:ivr@203.0.113.5"


def test_numbers_no_trunk_allows_are_refused_with_a_reason() -> None:
    with pytest.raises(TrunkRefused, match=r"\+41901234567 is not allowed by any trunk's allow patterns \(local, carrier\)"):
        Trunks([LOCAL, MOBILES]).choose("+41901234567")
    with pytest.raises(TrunkRefused, match="no trunk is configured to dial"):
        Trunks([]).choose("+41791234567")
    with pytest.raises(TrunkRefused, match="is not a telephone number"):
        Trunks([MOBILES]).choose("sip:evil@example.com")
