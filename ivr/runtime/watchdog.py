"""The event loop's watchdog: every stall of the loop of ``ivr serve`` becomes a ``loop_stall`` record.

One loop carries every call's SIP, media clock and flow; when it stops turning for more
than ``[server] stall_threshold`` (20 ms by default: one packet time), every caller hears a
gap in their audio.  :class:`LoopWatchdog` owns noticing that from outside the loop (a
heartbeat the loop keeps, checked by a thread) and saying where the loop's thread was
stuck, so operators can find the code that held it.  The heartbeat also measures how late
the loop runs it and hands that lag to ``on_beat`` (admission control,
:mod:`ivr.runtime.overload`).
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import traceback
from collections.abc import Callable

from ivr.runtime.calllog import CallLog
from ivr.runtime.gcwatch import GcWatch


class LoopWatchdog:
    """Reports event-loop stalls: a heartbeat on the loop, checked by a thread.

    When the loop has not run the heartbeat for ``threshold`` seconds, the thread logs a
    ``loop_stall`` record with where the loop's thread is stuck (the innermost frames), once
    per stall.  Every caller hears a stall as a gap in their audio, so operators must see it.
    """

    def __init__(
        self,
        calllog: CallLog,
        *,
        threshold: float = 0.02,
        period: float = 0.005,
        on_beat: Callable[[float, float], None] | None = None,
    ) -> None:
        self.calllog = calllog
        self.threshold = threshold
        self.period = period
        self.on_beat = on_beat  # on_beat(lag, now): each heartbeat, with how late the loop ran it
        self.beat = time.monotonic()
        self._due = 0.0
        self.loop_thread = threading.get_ident()
        self._stop = threading.Event()
        self._handle: asyncio.TimerHandle | None = None
        self.gc: GcWatch | None = None  # the server's: a stall says how much of it was garbage collection

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._tick(loop)
        threading.Thread(target=self._watch, name="ivr-watchdog", daemon=True).start()

    def stop(self) -> None:
        self._stop.set()
        if self._handle is not None:
            self._handle.cancel()

    def _tick(self, loop: asyncio.AbstractEventLoop) -> None:
        self.beat = time.monotonic()
        now = loop.time()
        lag, self._due = max(0.0, now - self._due) if self._due else 0.0, now + self.period
        self._handle = loop.call_at(self._due, self._tick, loop)
        if self.on_beat is not None:
            self.on_beat(lag, now)

    def _watch(self) -> None:
        reported = 0.0
        while not self._stop.wait(self.period):
            late = time.monotonic() - self.beat
            if late < self.threshold or self.beat == reported:
                continue
            reported = self.beat
            frame = sys._current_frames().get(self.loop_thread)
            where = traceback.format_stack(frame, limit=6) if frame is not None else []
            collector = self.gc.paused_since(self.beat) if self.gc is not None else 0.0
            self.calllog.server(
                "loop_stall", f"event loop stalled for {late * 1000:.0f} ms",
                stalled_ms=round(late * 1000), where=[w.strip().replace("\n", " | ") for w in where],
                **({"gc_ms": round(collector * 1000, 1)} if collector else {}),
            )
