"""Admission control of ``ivr serve``: which new requests the server takes while it is loaded.

One event loop carries every call's signalling and media, so work spent on a flood of new
calls is taken from the calls already up.  :class:`Admission` is the policy the user agent
asks (as its :class:`~ivr.sip.throttle.Gate`) before it parses an INVITE, REGISTER or
OPTIONS; it owns two rules, applied at that cheapest point, before a transaction, a port
pair or a flow is spent on the request:

* per address: a :class:`~ivr.sip.throttle.RateLimiter` (``[overload] rate`` and
  ``burst``; ``trusted`` addresses exempt).  An INVITE over its address's rate is shed
  (503 with Retry-After), a REGISTER or OPTIONS dropped unread (a scanner gets silence);
* under load: while the event loop lags (the smoothed lateness of the watchdog's
  heartbeat and of the media clock's tick, above ``max_lag``) new INVITEs are shed with
  503 and Retry-After, in the spirit of RFC 7339's overload control: the callers, or the
  proxy in front, try again later or elsewhere, and calls already up keep their quality.
  So that a flood starves no one, the heavy senders go first: a source sending well
  within its rate (a caller; :meth:`~ivr.sip.throttle.RateLimiter.within_rate`) still
  gets its calls until the lag is :data:`SEVERE` times ``max_lag``; then every new
  INVITE is shed (a flood from many addresses, each within its rate).  Trusted addresses
  speak for many callers and count as heavy.  With no call up there is no one to protect
  (a lag then is start-up work or another program): nothing is shed.  Shedding lasts at least :data:`MIN_SHED`
  seconds and ends when the lag is below half of ``max_lag`` (hysteresis).

Sans-IO: it is told the time and the lag (:meth:`Admission.beat`, from the watchdog's
heartbeat on the loop), and hands back the log records to write: one when shedding
starts and ends, and one per refused address and ``log_interval``, not one per request.
"""

from __future__ import annotations

from typing import Any

from ivr.config import OverloadConfig
from ivr.sip.throttle import RateLimiter, Refusals, RefusalTally, Verdict

#: Weight of the newest lag sample in the smoothed lag: one late beat (the process not
#: scheduled for 50 ms on a busy machine) does not shed calls, a lag that lasts does.
SMOOTHING = 0.25
#: Once shedding starts it lasts at least this long (seconds).
MIN_SHED = 1.0
#: Above this many times ``max_lag`` (a loop that far behind is collapsing), callers within
#: their rate are shed too: a flood from many addresses, each within its rate.
SEVERE = 4.0

Record = tuple[str, str, dict[str, Any]]  # (event, message, fields) for CallLog.server


class Admission:
    """The :class:`~ivr.sip.throttle.Gate` of ``ivr serve``: per-address rates and load shedding."""

    def __init__(self, config: OverloadConfig) -> None:
        self.lag = 0.0  # smoothed loop lag, seconds
        self.shedding = False
        self._since = 0.0
        self.shed = 0  # new INVITEs shed while the loop lagged, in all
        self.calls = 0  # calls up, told by the server: with none, shedding protects no one
        self.limited = 0  # requests refused over their address's rate, in all
        self.configure(config)

    def configure(self, config: OverloadConfig) -> None:
        """Take (new) settings; a reload starts every address with a full bucket."""
        self.config = config
        self.retry_after = config.retry_after
        self.limiter = RateLimiter(config.rate, config.burst, trusted=config.trusted) if config.rate else None
        self.tally = RefusalTally(config.log_interval)

    def check(self, method: str, ip: str, now: float) -> Verdict:
        """Take, drop or shed a request from ``ip`` (called before it is parsed)."""
        if self.limiter is not None and not self.limiter.allow(ip, now):
            self.limited += 1
            self.tally.refuse(ip, "rate", now)
            return Verdict.SHED if method == "INVITE" else Verdict.DROP
        if self.shedding and self.calls and method == "INVITE" and not self._spared(ip, now):
            self.shed += 1
            self.tally.refuse(ip, "overload", now)
            return Verdict.SHED
        return Verdict.TAKE

    def _spared(self, ip: str, now: float) -> bool:
        """While shedding, a source within its rate keeps its calls unless the lag is severe."""
        light = self.limiter is not None and self.limiter.within_rate(ip, now)
        return light and self.lag <= SEVERE * self.config.max_lag

    def beat(self, lag: float, now: float) -> list[Record]:
        """One heartbeat of the loop, ``lag`` seconds late: update the state, return what to log."""
        records = self._observe(lag, now)
        records.extend(self._describe(r) for r in self.tally.due(now))
        return records

    def _observe(self, lag: float, now: float) -> list[Record]:
        self.lag += SMOOTHING * (lag - self.lag)
        limit = self.config.max_lag
        if not limit:
            return []
        lag_ms = round(self.lag * 1000, 1)
        if not self.shedding and self.lag > limit:
            self.shedding, self._since = True, now
            return [("overload", f"event loop lags {lag_ms} ms: new calls get 503", {"lag_ms": lag_ms})]
        if self.shedding and self.lag < limit / 2 and now - self._since >= MIN_SHED:
            self.shedding = False
            return [("overload_over", f"event loop lags {lag_ms} ms: taking new calls again",
                     {"lag_ms": lag_ms, "shed": self.shed})]
        return []

    def _describe(self, refused: Refusals) -> Record:
        why = (f"over its rate limit ({self.config.rate:g}/s, burst {self.config.burst})" if refused.reason == "rate"
               else "the event loop lags")
        seconds = round(refused.last - refused.first, 1)
        return ("refused", f"refused {refused.count} request(s) from {refused.source} in {seconds} s: {why}",
                {"source": refused.source, "count": refused.count, "reason": refused.reason, "seconds": seconds})
