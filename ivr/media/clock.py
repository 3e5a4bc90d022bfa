"""The media clock: one 20 ms tick per event loop that paces every call's RTP.

Every media stream of the process is driven by the same tick, scheduled with
``loop.call_at`` on absolute deadlines ``start + n * interval`` so pacing
never drifts.  When the loop stalls past one or more deadlines the missed
ticks are skipped and counted (``late_ticks``), never replayed: a stream
sends at most one packet per tick, so a stall costs a gap, not a burst.
The tick number keeps counting through skipped ticks, so RTP timestamps
derived from it follow real time.

Shared sources (hold music: everyone hears the same position) are advanced
once per tick before the streams read from them.
"""

from __future__ import annotations

import asyncio
import logging
import math
from collections import deque
from collections.abc import Callable
from typing import Protocol

log = logging.getLogger(__name__)

LATENESS_SAMPLES = 65536  # ticks of lateness kept for percentiles (about 22 minutes)


class Stream(Protocol):
    def on_tick(self, tick_no: int, now: float) -> None: ...


class SharedSource(Protocol):
    def advance(self, tick_no: int) -> None: ...


class TimerHandle(Protocol):
    def cancel(self) -> None: ...


class Loop(Protocol):
    """What the clock needs of an event loop (a fake one in tests)."""

    def time(self) -> float: ...

    def call_at(self, when: float, callback: Callable[[], object]) -> TimerHandle: ...


class MediaClock:
    """One periodic tick on absolute deadlines, shared by all streams of a loop.

    ``add(stream)``: ``stream.on_tick(tick_no, now)`` is called once per tick.
    ``add_shared(source)``: ``source.advance(tick_no)`` once per tick, before
    the streams; reference-counted, so several listeners may add the same
    source and it advances while at least one holds it.
    Stats: ``ticks`` run, ``late_ticks`` skipped, ``max_lateness`` seconds,
    ``lateness`` (recent per-tick lateness, for percentiles).
    """

    def __init__(self, loop: Loop | None = None, interval: float = 0.020) -> None:
        self.loop: Loop = loop if loop is not None else asyncio.get_event_loop()
        self.interval = interval
        self._streams: dict[Stream, None] = {}  # insertion ordered set
        self._shared: dict[SharedSource, int] = {}
        self._snapshot: tuple[Stream, ...] = ()
        self._shared_snapshot: tuple[SharedSource, ...] = ()
        self._handle: TimerHandle | None = None
        self._start = 0.0
        self._next = 0  # the tick number due next
        self.ticks = 0
        self.late_ticks = 0
        self.max_lateness = 0.0
        self.lateness: deque[float] = deque(maxlen=LATENESS_SAMPLES)
        self.errors = 0

    # -- membership

    def add(self, stream: Stream) -> None:
        self._streams[stream] = None
        self._snapshot = tuple(self._streams)

    def remove(self, stream: Stream) -> None:
        if self._streams.pop(stream, 0) is None:
            self._snapshot = tuple(self._streams)

    def add_shared(self, source: SharedSource) -> None:
        self._shared[source] = self._shared.get(source, 0) + 1
        self._shared_snapshot = tuple(self._shared)

    def remove_shared(self, source: SharedSource) -> None:
        count = self._shared.get(source, 0) - 1
        if count > 0:
            self._shared[source] = count
        else:
            self._shared.pop(source, None)
        self._shared_snapshot = tuple(self._shared)

    @property
    def last_lateness(self) -> float:
        """How late the latest tick ran, seconds (0 before the first)."""
        return self.lateness[-1] if self.lateness else 0.0

    @property
    def streams(self) -> int:
        return len(self._snapshot)

    # -- running

    @property
    def running(self) -> bool:
        return self._handle is not None

    def start(self) -> None:
        if self._handle is not None:
            return
        self._start = self.loop.time()
        self._next = 0
        self._handle = self.loop.call_at(self._start, self._tick)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None

    def tick_time(self, tick_no: int) -> float:
        """The deadline of tick ``tick_no`` on the loop's clock."""
        return self._start + tick_no * self.interval

    @property
    def current_tick(self) -> int:
        """The last tick run (or about to run)."""
        return max(self._next - 1, 0)

    def _tick(self) -> None:
        now = self.loop.time()
        due = max(self._next, math.floor((now - self._start) / self.interval + 1e-9))
        if due > self._next:
            self.late_ticks += due - self._next  # skipped, never replayed
        lateness = max(0.0, now - self.tick_time(due))  # call_at may fire a hair early
        self.lateness.append(lateness)
        if lateness > self.max_lateness:
            self.max_lateness = lateness
        self._next = due + 1
        self.ticks += 1
        self._handle = self.loop.call_at(self.tick_time(self._next), self._tick)
        self._run(due, now)

    def _run(self, tick_no: int, now: float) -> None:
        for source in self._shared_snapshot:
            try:
                source.advance(tick_no)
            except Exception:
                self._failed(source)
        for stream in self._snapshot:
            try:
                stream.on_tick(tick_no, now)
            except Exception:
                self._failed(stream)

    def _failed(self, what: object) -> None:
        # One broken call must not stop the media of all the others.
        self.errors += 1
        if self.errors <= 10 or self.errors % 1000 == 0:
            log.exception(
                "media clock: %r failed in its tick (%d errors so far)", what, self.errors
            )


def single_threaded_numerics() -> None:
    """Keep numpy's BLAS on the thread that calls it, for the whole process.

    The media loop's matrix products (every listening call's in-band DTMF analysed in one a
    tick) are small; OpenBLAS hands them to worker threads that spin for the cores the loop
    itself needs, which doubled a listening call's CPU (bench/media_clock.py --blas-threads).
    Called by ``ivr serve`` at start-up; numpy may be loaded already, so the limit is set
    through the library (threadpoolctl), not the environment.
    """
    from threadpoolctl import threadpool_limits

    threadpool_limits(limits=1, user_api="blas")


_CLOCKS: dict[asyncio.AbstractEventLoop, MediaClock] = {}


def get_clock() -> MediaClock:
    """The running loop's clock, created and started on first use."""
    loop = asyncio.get_running_loop()
    clock = _CLOCKS.get(loop)
    if clock is None:
        for old in [lp for lp in _CLOCKS if lp.is_closed()]:  # loops of earlier asyncio.run()s
            del _CLOCKS[old]
        clock = _CLOCKS[loop] = MediaClock(loop)
        clock.start()
    return clock
