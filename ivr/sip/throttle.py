"""Throttling per source IP address: failed logins, request rates, and saying so once.

Three sans-IO pieces, each told ``now``, each with memory bounded by ``max_sources``:

* :class:`AuthThrottle` blocks an address after too many wrong passwords;
* :class:`RateLimiter` is a token bucket per address for the requests that cost a server
  work before any authentication (INVITE, REGISTER, OPTIONS), like Kamailio's ``pike``;
  trusted addresses (a proxy in front) are never limited;
* :class:`RefusalTally` counts what was refused per address so a log says it once per
  address and interval, not once per request.

:class:`Gate` is what the user agent asks before it parses an INVITE, REGISTER or OPTIONS
(:data:`GATED`): take it, drop it unread, or shed it (a new INVITE gets a stateless 503
with Retry-After); the policy behind it is the runtime's (``ivr.runtime.overload``).

Failed logins: SIP scanners ("friendly-scanner", sipvicious) try thousands of passwords per
minute.  :class:`AuthThrottle` counts wrong passwords and unknown users per
source address; after ``max_failures`` inside ``window`` seconds the address
is blocked for ``cooldown`` seconds, during which the server drops its
requests (or answers 403).  Memory is bounded by ``max_sources``: when full,
addresses that are neither blocked nor recently failing go first, then the
least recently seen.  Sans-IO: every call is told ``now``.
"""

from __future__ import annotations

import enum
import ipaddress
from collections import OrderedDict, deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Protocol

__all__ = ["GATED", "AuthThrottle", "Gate", "RateLimiter", "RefusalTally", "Refusals", "Verdict"]

#: The requests a gate is asked about: what a server spends on before any authentication.
GATED = frozenset((b"INVITE", b"REGISTER", b"OPTIONS"))


class Verdict(enum.Enum):
    TAKE = "take"
    DROP = "drop"  # ignore it unread: no answer, no state
    SHED = "shed"  # a new INVITE is answered 503 with Retry-After and forgotten


class Gate(Protocol):
    """Admission at the user agent's entry, asked with the request's method before parsing."""

    retry_after: int  # seconds, in the 503 of a shed INVITE

    def check(self, method: str, ip: str, now: float) -> Verdict: ...


@dataclass
class _Source:
    failures: deque[float] = field(default_factory=deque)
    blocked_until: float = float("-inf")


class AuthThrottle:
    """Per-IP failure counter with a cool-down (like fail2ban, in memory)."""

    def __init__(
        self,
        max_failures: int = 5,
        window: float = 60.0,
        cooldown: float = 300.0,
        *,
        max_sources: int = 10_000,
    ) -> None:
        if max_failures < 1 or max_sources < 1:
            raise ValueError("max_failures and max_sources must be at least 1")
        self.max_failures = max_failures
        self.window = window
        self.cooldown = cooldown
        self.max_sources = max_sources
        self._sources: OrderedDict[str, _Source] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sources)

    def blocked(self, ip: str, now: float) -> bool:
        """True while ``ip`` is cooling down: refuse its request without looking at it."""
        src = self._sources.get(ip)
        return src is not None and now < src.blocked_until

    def blocked_until(self, ip: str) -> float | None:
        src = self._sources.get(ip)
        return src.blocked_until if src is not None and src.blocked_until > float("-inf") else None

    def record_failure(self, ip: str, now: float) -> bool:
        """Count one wrong password from ``ip``; True when this failure starts a block."""
        src = self._sources.get(ip)
        if src is None:
            src = self._sources[ip] = _Source(deque(maxlen=self.max_failures))
        self._sources.move_to_end(ip)
        src.failures.append(now)
        full = len(src.failures) == self.max_failures
        starts_block = full and now - src.failures[0] <= self.window and now >= src.blocked_until
        if starts_block:
            src.blocked_until = now + self.cooldown
            src.failures.clear()
        self._bound(now)
        return starts_block

    def record_success(self, ip: str) -> None:
        """A correct login clears the address's failures (not an ongoing block)."""
        src = self._sources.get(ip)
        if src is not None and src.blocked_until == float("-inf"):
            del self._sources[ip]
        elif src is not None:
            src.failures.clear()

    def _bound(self, now: float) -> None:
        if len(self._sources) <= self.max_sources:
            return
        # Shrink to 90% in one O(n) pass so a scan pays for it once per many inserts:
        # first addresses with nothing to remember, then unblocked ones, oldest first.
        target = self.max_sources * 9 // 10
        for keep_blocked in (self._idle, self._unblocked):
            for ip in [ip for ip, s in self._sources.items() if keep_blocked(s, now)]:
                if len(self._sources) <= target:
                    return
                del self._sources[ip]
        while len(self._sources) > target:
            self._sources.popitem(last=False)

    @staticmethod
    def _unblocked(src: _Source, now: float) -> bool:
        return now >= src.blocked_until

    def _idle(self, src: _Source, now: float) -> bool:
        recent = src.failures and now - src.failures[-1] <= self.window
        return now >= src.blocked_until and not recent


class RateLimiter:
    """A token bucket per source address: ``rate`` requests a second, ``burst`` at once.

    Each address starts with a full bucket of ``burst`` tokens, refilled at ``rate`` per
    second up to ``burst``; a request takes one token or is refused.  ``trusted`` holds
    addresses and networks ("10.0.0.5", "10.1.0.0/16") that are never limited: a proxy in
    front carries every caller's requests from one address.  Buckets that would be full
    again are forgotten first when ``max_sources`` is reached (they hold no state worth
    keeping), then the least recently seen.
    """

    def __init__(
        self, rate: float, burst: float, *, trusted: Iterable[str] = (), max_sources: int = 10_000
    ) -> None:
        if rate <= 0 or burst < 1 or max_sources < 1:
            raise ValueError("rate must be positive, burst and max_sources at least 1")
        self.rate = rate
        self.burst = float(burst)
        self.max_sources = max_sources
        self._trusted_ips, self._trusted_nets = _addresses(trusted)
        self._buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # ip -> (tokens, at)

    def __len__(self) -> int:
        return len(self._buckets)

    def trusted(self, ip: str) -> bool:
        if ip in self._trusted_ips:
            return True
        if not self._trusted_nets:
            return False
        try:
            address = ipaddress.ip_address(ip)
        except ValueError:
            return False
        return any(address in net for net in self._trusted_nets)

    def allow(self, ip: str, now: float) -> bool:
        """Take one token for a request from ``ip``; False when its bucket is empty."""
        if self.trusted(ip):
            return True
        tokens, at = self._buckets.pop(ip, (self.burst, now))
        tokens = min(self.burst, tokens + (now - at) * self.rate)
        allowed = tokens >= 1.0
        self._buckets[ip] = (tokens - 1.0 if allowed else tokens, now)
        if len(self._buckets) > self.max_sources:
            self._bound(now)
        return allowed

    def within_rate(self, ip: str, now: float) -> bool:
        """True when ``ip`` is not trusted and its bucket is at least half full: it has been
        sending within its rate, as callers (and phones registering) do; a flood, or a proxy
        speaking for many, has not."""
        if self.trusted(ip):
            return False
        tokens, at = self._buckets.get(ip, (self.burst, now))
        return min(self.burst, tokens + (now - at) * self.rate) >= self.burst / 2

    def _bound(self, now: float) -> None:
        target = self.max_sources * 9 // 10
        refill = self.burst / self.rate  # seconds after which any bucket is full again
        for ip in [ip for ip, (_, at) in self._buckets.items() if now - at >= refill]:
            if len(self._buckets) <= target:
                return
            del self._buckets[ip]
        while len(self._buckets) > target:
            self._buckets.popitem(last=False)


def _addresses(items: Iterable[str]) -> tuple[frozenset[str], tuple[ipaddress.IPv4Network | ipaddress.IPv6Network, ...]]:
    """Plain addresses (compared as strings: the fast path) and networks, from "a.b.c.d" or "a.b.c.d/n"."""
    ips: set[str] = set()
    nets = []
    for item in items:
        net = ipaddress.ip_network(item, strict=False)  # ValueError names the bad entry
        if net.num_addresses == 1 and "/" not in item:
            ips.add(str(net.network_address))
        else:
            nets.append(net)
    return frozenset(ips), tuple(nets)


@dataclass(frozen=True)
class Refusals:
    """What was refused from one address since it was last reported."""

    source: str
    count: int
    reason: str
    first: float
    last: float


class RefusalTally:
    """Counts refusals per address; :meth:`due` hands each address's count out once per ``interval``.

    The first refusal of an address is due at once; later ones are summed and due when
    ``interval`` has passed since that address's last report.  A flood of a thousand
    requests a second thus costs one log line per address and interval.
    """

    def __init__(self, interval: float = 10.0, *, max_sources: int = 4096) -> None:
        self.interval = interval
        self.max_sources = max_sources
        self._pending: dict[str, Refusals] = {}
        self._reported: OrderedDict[str, float] = OrderedDict()  # ip -> when last reported
        self._next_due = float("inf")

    def refuse(self, ip: str, reason: str, now: float) -> None:
        old = self._pending.get(ip)
        if old is None:
            if len(self._pending) >= self.max_sources:
                return  # so many sources at once that one more line would say nothing new
            self._pending[ip] = Refusals(ip, 1, reason, now, now)
            self._next_due = min(self._next_due, self._reported.get(ip, float("-inf")) + self.interval)
        else:
            self._pending[ip] = Refusals(ip, old.count + 1, reason, old.first, now)

    def due(self, now: float) -> list[Refusals]:
        """The refusals to report now (each address at most once per ``interval``)."""
        if now < self._next_due:
            return []
        out: list[Refusals] = []
        self._next_due = float("inf")
        for ip, refusals in list(self._pending.items()):
            at = self._reported.get(ip, float("-inf")) + self.interval
            if now >= at:
                out.append(refusals)
                del self._pending[ip]
                self._reported.pop(ip, None)
                self._reported[ip] = now
            else:
                self._next_due = min(self._next_due, at)
        while len(self._reported) > self.max_sources:
            self._reported.popitem(last=False)
        return out
