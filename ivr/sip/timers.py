"""SIP timer values and a sans-IO timer queue (RFC 3261 section 17, table 4).

Nothing here reads a clock: deadlines are absolute times on the caller's
``now`` scale.  :class:`TimerQueue` is the single place the user agent keeps
every transaction and dialog timer, so the transport arms exactly one
``loop.call_at`` at :meth:`TimerQueue.next_deadline` (aioquic style).
"""

from __future__ import annotations

import heapq
import itertools
from collections.abc import Hashable
from dataclasses import dataclass


@dataclass(frozen=True)
class TimerValues:
    """T1, T2, T4 and the timers derived from them (RFC 3261 table 4)."""

    t1: float = 0.5
    t2: float = 4.0
    t4: float = 5.0

    @property
    def b(self) -> float:  # INVITE client transaction timeout
        return 64 * self.t1

    @property
    def d(self) -> float:  # wait time for response retransmits (at least 32 s over UDP)
        return max(32.0, 64 * self.t1)

    @property
    def f(self) -> float:  # non-INVITE client transaction timeout
        return 64 * self.t1

    @property
    def h(self) -> float:  # wait time for ACK receipt
        return 64 * self.t1

    @property
    def i(self) -> float:  # wait time for ACK retransmits
        return self.t4

    @property
    def j(self) -> float:  # wait time for non-INVITE request retransmits
        return 64 * self.t1

    @property
    def k(self) -> float:  # wait time for response retransmits
        return self.t4

    @property
    def l(self) -> float:  # noqa: E743 -- RFC 6026 Timer L: accepted INVITE server
        return 64 * self.t1

    @property
    def m(self) -> float:  # RFC 6026 Timer M: accepted INVITE client
        return 64 * self.t1


class TimerQueue:
    """Named deadlines with lazy deletion: ``set`` replaces, ``cancel`` forgets.

    Keys are any hashable (the UA uses ``(owner, name)`` tuples).
    """

    def __init__(self) -> None:
        self._deadline: dict[Hashable, float] = {}
        self._heap: list[tuple[float, int, Hashable]] = []
        self._seq = itertools.count()

    def set(self, key: Hashable, deadline: float) -> None:
        self._deadline[key] = deadline
        heapq.heappush(self._heap, (deadline, next(self._seq), key))
        if len(self._heap) > 1024 and len(self._heap) > 4 * len(self._deadline):
            self._compact()

    def _compact(self) -> None:
        """Drop replaced and cancelled entries (re-armed timers leave them behind)."""
        live = [entry for entry in self._heap if self._deadline.get(entry[2]) == entry[0]]
        heapq.heapify(live)
        self._heap = live

    def cancel(self, key: Hashable) -> None:
        self._deadline.pop(key, None)

    def get(self, key: Hashable) -> float | None:
        return self._deadline.get(key)

    def __contains__(self, key: Hashable) -> bool:
        return key in self._deadline

    def __len__(self) -> int:
        return len(self._deadline)

    def _prune(self) -> None:
        while self._heap:
            deadline, _, key = self._heap[0]
            if self._deadline.get(key) == deadline:
                return
            heapq.heappop(self._heap)

    def next_deadline(self) -> float | None:
        self._prune()
        return self._heap[0][0] if self._heap else None

    def pop_due(self, now: float) -> list[Hashable]:
        """Keys whose deadline is ``<= now``, earliest first, removed from the queue."""
        due: list[Hashable] = []
        while True:
            self._prune()
            if not self._heap or self._heap[0][0] > now:
                return due
            _, _, key = heapq.heappop(self._heap)
            del self._deadline[key]
            due.append(key)
