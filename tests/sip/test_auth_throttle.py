"""Failed-auth throttling per source address."""

from __future__ import annotations

import pytest

from ivr.sip.throttle import AuthThrottle


def test_blocks_after_n_failures_inside_the_window() -> None:
    t = AuthThrottle(max_failures=3, window=60, cooldown=300)
    assert [t.record_failure("198.51.100.9", 1000 + i) for i in range(3)] == [False, False, True]
    assert t.blocked("198.51.100.9", 1003)
    assert t.blocked("198.51.100.9", 1299.9)
    assert not t.blocked("198.51.100.9", 1302)
    assert t.blocked_until("198.51.100.9") == 1302
    assert not t.blocked("198.51.100.10", 1003)


def test_slow_failures_outside_the_window_do_not_block() -> None:
    t = AuthThrottle(max_failures=3, window=60, cooldown=300)
    for i in range(10):
        assert not t.record_failure("192.0.2.1", 1000 + 31 * i)
    assert not t.blocked("192.0.2.1", 1400)


def test_after_the_cooldown_counting_starts_again() -> None:
    t = AuthThrottle(max_failures=2, window=60, cooldown=100)
    t.record_failure("192.0.2.1", 0)
    assert t.record_failure("192.0.2.1", 1)
    assert not t.blocked("192.0.2.1", 101)
    assert not t.record_failure("192.0.2.1", 102)
    assert t.record_failure("192.0.2.1", 103)
    assert t.blocked("192.0.2.1", 104)


def test_success_clears_failures() -> None:
    t = AuthThrottle(max_failures=3, window=60, cooldown=300)
    t.record_failure("192.0.2.1", 0)
    t.record_failure("192.0.2.1", 1)
    t.record_success("192.0.2.1")
    assert len(t) == 0
    assert not t.record_failure("192.0.2.1", 2)
    assert not t.record_failure("192.0.2.1", 3)
    assert t.record_failure("192.0.2.1", 4)


def test_memory_is_bounded_and_blocked_sources_survive_a_scan() -> None:
    t = AuthThrottle(max_failures=2, window=10, cooldown=1000, max_sources=100)
    t.record_failure("203.0.113.66", 0)
    assert t.record_failure("203.0.113.66", 1)
    # A scan from 5,000 addresses, one failure each, spread over time.
    for i in range(5000):
        t.record_failure(f"10.{i // 65536}.{i // 256 % 256}.{i % 256}", 2 + i * 0.01)
        assert len(t) <= 100
    assert t.blocked("203.0.113.66", 60)


def test_bad_limits_are_refused() -> None:
    with pytest.raises(ValueError, match="at least 1"):
        AuthThrottle(max_failures=0)
