"""Failed-authentication throttling per source IP address.

SIP scanners ("friendly-scanner", sipvicious) try thousands of passwords per
minute.  :class:`AuthThrottle` counts wrong passwords and unknown users per
source address; after ``max_failures`` inside ``window`` seconds the address
is blocked for ``cooldown`` seconds, during which the server drops its
requests (or answers 403).  Memory is bounded by ``max_sources``: when full,
addresses that are neither blocked nor recently failing go first, then the
least recently seen.  Sans-IO: every call is told ``now``.
"""

from __future__ import annotations

from collections import OrderedDict, deque
from dataclasses import dataclass, field

__all__ = ["AuthThrottle"]


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
