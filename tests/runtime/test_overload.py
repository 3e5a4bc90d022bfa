"""Admission control of ``ivr serve`` (ivr.runtime.overload) on a fake clock, and through the real
user agent on captured INVITE bytes: a flood from one address is refused while another address's
calls are taken; new INVITEs are shed while the loop lags; the log says so once per address and
interval."""

from __future__ import annotations

from ivr.config import OverloadConfig
from ivr.runtime.overload import MIN_SHED, Admission
from ivr.sip.events import IncomingCall
from ivr.sip.throttle import Verdict
from tests.sip.test_overload import invite
from tests.sip.ua_harness import events, make_ua, responses

FLOOD, CALLER, PROXY = "127.0.0.2", "127.0.0.3", "10.0.0.5"


def admission(**overrides: object) -> Admission:
    adm = Admission(OverloadConfig(**{"rate": 10.0, "burst": 5, "trusted": (PROXY,), **overrides}))  # type: ignore[arg-type]
    adm.calls = 10  # calls up, as the server tells it
    return adm


def beats(adm: Admission, lag: float, start: float, seconds: float) -> list[str]:
    """Heartbeats every 10 ms for ``seconds``, each ``lag`` late; the events logged."""
    out = []
    for n in range(round(seconds * 100)):
        out += [event for event, _, _ in adm.beat(lag, start + n / 100)]
    return out


def test_a_flood_from_one_address_is_refused_while_another_address_is_taken() -> None:
    adm = admission()
    flood = [adm.check("INVITE", FLOOD, n / 400) for n in range(400)]  # 400/s for 1 s
    assert flood.count(Verdict.TAKE) == 5 + 9  # the burst, then 10/s
    assert set(flood[5:]) - {Verdict.TAKE} == {Verdict.SHED}  # INVITEs over the rate get 503
    assert [adm.check("INVITE", CALLER, 0.5 + n / 2) for n in range(4)] == [Verdict.TAKE] * 4
    assert adm.check("OPTIONS", FLOOD, 0.9975) is Verdict.DROP  # the rest of its requests: silence
    assert adm.check("REGISTER", FLOOD, 0.9975) is Verdict.DROP


def test_a_trusted_proxy_is_never_rate_limited() -> None:
    adm = admission()
    assert all(adm.check("INVITE", PROXY, n / 1000) is Verdict.TAKE for n in range(1000))


def test_rate_zero_turns_the_per_address_limit_off() -> None:
    adm = admission(rate=0.0)
    assert all(adm.check("INVITE", FLOOD, 0.0) is Verdict.TAKE for _ in range(1000))


def test_one_late_beat_does_not_shed_but_a_lasting_lag_does() -> None:
    adm = admission(max_lag=0.03)
    assert adm.beat(0.06, 0.0) == []  # the process was not scheduled once: calls go on
    assert not adm.shedding
    assert beats(adm, 0.04, 0.01, 0.1)[:1] == ["overload"]
    assert adm.shedding
    assert adm.check("INVITE", PROXY, 0.2) is Verdict.SHED  # a proxy speaks for many: it goes elsewhere
    assert adm.check("REGISTER", PROXY, 0.2) is Verdict.TAKE  # only new calls cost a flow


def test_while_shedding_heavy_senders_go_first_and_callers_within_their_rate_last() -> None:
    adm = admission(max_lag=0.03)  # rate 10/s, burst 5
    beats(adm, 0.05, 0.0, 0.2)  # smoothed lag near 50 ms: shedding, not yet severe
    flood = [adm.check("INVITE", FLOOD, 0.2 + n / 100) for n in range(8)]  # 100/s: over its rate
    assert flood[-3:] == [Verdict.SHED] * 3
    assert [adm.check("INVITE", CALLER, 0.3 + n / 2) for n in range(3)] == [Verdict.TAKE] * 3  # 2/s: spared
    beats(adm, 0.15, 1.5, 0.3)  # now above four times max_lag: severe
    assert adm.lag > 0.12
    assert adm.check("INVITE", CALLER, 1.9) is Verdict.SHED


def test_shedding_lasts_a_while_and_ends_when_the_lag_is_half_the_limit() -> None:
    adm = admission(max_lag=0.03)
    assert beats(adm, 0.05, 0.0, 0.2) == ["overload"]
    assert beats(adm, 0.0, 0.2, MIN_SHED - 0.3) == []  # the lag is gone, but not for long enough
    assert adm.shedding
    assert beats(adm, 0.0, MIN_SHED, 0.2) == ["overload_over"]
    assert adm.check("INVITE", CALLER, MIN_SHED + 0.3) is Verdict.TAKE


def test_with_no_call_up_nothing_is_shed() -> None:
    adm = admission(max_lag=0.03)
    adm.calls = 0  # a lag at start-up, or another program's: no call to protect
    beats(adm, 0.2, 0.0, 0.5)
    assert adm.shedding
    assert adm.check("INVITE", PROXY, 0.5) is Verdict.TAKE
    adm.calls = 1
    assert adm.check("INVITE", PROXY, 0.5) is Verdict.SHED


def test_max_lag_zero_never_sheds() -> None:
    adm = admission(max_lag=0.0)
    assert beats(adm, 0.5, 0.0, 1.0) == []
    assert adm.check("INVITE", CALLER, 1.0) is Verdict.TAKE


def test_the_log_says_it_once_per_address_and_interval() -> None:
    adm = admission(log_interval=10.0)
    records = []
    for n in range(2500):  # 100 INVITEs a second for 25 s, a heartbeat each 10 ms
        now = n / 100
        adm.check("INVITE", FLOOD, now)
        records += adm.beat(0.0, now)
    refused = [fields for event, _, fields in records if event == "refused"]
    assert [(r["source"], r["reason"]) for r in refused] == [(FLOOD, "rate")] * 3  # at 0.05 s, 10.05 s, 20.05 s
    assert sum(r["count"] for r in refused) < adm.limited  # the last 5 s are reported at the next interval
    event, message, fields = next(r for r in records if r[0] == "refused")
    assert message == "refused 1 request(s) from 127.0.0.2 in 0.0 s: over its rate limit (10/s, burst 5)"


def test_a_reload_takes_new_limits() -> None:
    adm = admission()
    assert [adm.check("INVITE", FLOOD, 0.0) for _ in range(6)][-1] is Verdict.SHED
    adm.configure(OverloadConfig(rate=10.0, burst=5, trusted=(FLOOD,)))
    assert adm.check("INVITE", FLOOD, 0.0) is Verdict.TAKE


def test_through_the_user_agent_the_flood_gets_503_and_the_caller_gets_a_call() -> None:
    ua = make_ua()
    ua.gate = adm = admission(retry_after=3)
    statuses = []
    for n in range(100):  # 100 INVITEs in 0.25 s from one address
        ua.receive(invite(n), (FLOOD, 5061), "udp", n / 400)
        statuses += [r.status for r in responses(ua)]
    ua.receive(invite(1000), (CALLER, 5061), "udp", 0.3)
    assert statuses.count(100) == 5 + 2 and statuses.count(503) == 100 - 7
    assert len(ua.calls) == 8  # what the flood got through, and the caller's call
    assert [e.source[0] for e in events(ua) if isinstance(e, IncomingCall)][-1] == CALLER
    assert adm.limited == 93
