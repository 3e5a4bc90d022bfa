"""CPython's cyclic garbage collector in ``ivr serve``: every collection timed, the long ones logged.

A collection holds the GIL for as long as it walks the objects of the generations it
collects, and every thread of the process (the event loop, so every caller's audio)
waits.  A full (generation 2) collection walks every tracked object that is not frozen:
with a thousand calls up that is tens of milliseconds, a gap every caller hears.
:class:`GcWatch` owns seeing that: installed in ``gc.callbacks``, it times each collection
(wall and thread CPU), counts collections and the objects they freed per generation, and
logs a ``gc_pause`` record for each one longer than ``threshold`` (the loop watchdog's
``stall_threshold``); the totals go into the ``stopped`` record.

How the server keeps collections short: after start-up (and after a reload has prepared
its generation) everything alive is collected once and frozen (:func:`settle`), so the
flows, codec tables and prompts are never walked again; and the full collections, which
walk every live call, run when :class:`FullCollections` says (when the last call has ended,
and at most every ``[server] gc_full_interval`` while calls stay up), not when CPython's
counters say.  That is safe for memory because calls leave no reference cycles behind
(tests/runtime/test_gcwatch.py checks a whole call leaves none): what a call allocates is
freed by reference counting as it ends.
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from collections import deque
from typing import Any

from ivr.runtime.calllog import CallLog

GENERATIONS = 3


class GcWatch:
    """Times every garbage collection (``gc.callbacks``) and logs those over ``threshold``.

    Callbacks run on whichever thread's allocation started the collection; the record goes
    through the call log's queue, which any thread may use.
    """

    def __init__(self, calllog: CallLog, *, threshold: float = 0.02) -> None:
        self.calllog = calllog
        self.threshold = threshold
        self.collections = [0] * GENERATIONS
        self.collected = [0] * GENERATIONS  # objects freed, per generation
        self.seconds = [0.0] * GENERATIONS  # wall time spent collecting, per generation
        self.longest = [0.0] * GENERATIONS
        self.running: int | None = None  # the generation being collected now
        self.recent: deque[tuple[float, float]] = deque(maxlen=16)  # (time.monotonic() at the end, pause)
        self._started = 0.0
        self._cpu = 0.0
        self._thread = 0
        self.tracked_at_start = 0  # objects the collector tracks (not frozen) once settled

    def settled(self) -> None:
        """Note how many objects the collector tracks now (start-up frozen): what calls add shows at the end."""
        self.tracked_at_start = len(gc.get_objects())

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def remove(self) -> None:
        if self in gc.callbacks:
            gc.callbacks.remove(self)

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self.running, self._thread = info["generation"], threading.get_ident()
            self._started, self._cpu = time.monotonic(), time.thread_time()
            return
        if self.running is None or self._thread != threading.get_ident():
            return  # installed during a collection: its start was not seen
        end = time.monotonic()
        pause, cpu = end - self._started, time.thread_time() - self._cpu
        generation, self.running = info["generation"], None
        self.recent.append((end, pause))
        self.collections[generation] += 1
        self.collected[generation] += info["collected"]
        self.seconds[generation] += pause
        self.longest[generation] = max(self.longest[generation], pause)
        if pause >= self.threshold:
            self.calllog.server(
                "gc_pause", f"garbage collection of generation {generation} held every thread for {pause * 1000:.0f} ms",
                generation=generation, pause_ms=round(pause * 1000, 1), cpu_ms=round(cpu * 1000, 1),
                collected=info["collected"],
            )

    def paused_since(self, since: float) -> float:
        """Seconds of collections that ended after ``since`` (``time.monotonic()``): what of a stall was the collector's.

        The watchdog's thread cannot look during a collection (the collector holds the GIL), so it
        asks afterwards.
        """
        return sum(pause for end, pause in list(self.recent) if end > since)

    def summary(self) -> dict[str, Any]:
        """Collections, objects freed and pause times per generation, for the ``stopped`` record.

        Then uninstalled, it collects once more: ``gc_tracked`` is the objects tracked once
        settled and now, ``gc_garbage`` the unreachable objects (cycles) that last collection
        found, which the calls left for the collector.
        """
        tracked = len(gc.get_objects())
        self.remove()
        return {
            "gc_tracked": [self.tracked_at_start, tracked],
            "gc_garbage": gc.collect(),
            "gc_collections": list(self.collections),
            "gc_collected": list(self.collected),
            "gc_ms": [round(s * 1000, 1) for s in self.seconds],
            "gc_longest_ms": [round(s * 1000, 2) for s in self.longest],
        }


#: The oldest generation's threshold while ivr decides when full collections run: never by count.
NEVER = 2**31 - 1
#: Once the last call has ended, a full collection, unless one ran this recently (seconds).
IDLE_GAP = 5.0


def settle() -> None:
    """Collect what start-up left and freeze the survivors (a reload: :meth:`FullCollections.reloaded`).

    Frozen objects (flow tables, codec tables, prompts, the speech model) are never walked
    again by any collection; they are still freed by reference counting if dropped.
    """
    gc.collect()
    gc.freeze()


class FullCollections:
    """When the full (generation 2) collections run in ``ivr serve``: not whenever CPython counts enough.

    A full collection walks every live call's objects and holds every thread while it does
    (tens of milliseconds with a thousand calls up).  Calls leave no reference cycles, so
    reference counting frees them as they end and nothing needs a full collection to stay
    bounded; what cyclic garbage other paths leave (rare: an exception kept with its
    traceback) is found by a full collection run when the last call has ended (nobody hears
    it), and while calls stay up without a break, once every ``interval`` seconds.  The
    younger generations are collected as CPython decides: short collections of young objects.
    ``interval`` 0 leaves full collections to CPython as well.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.last = time.monotonic()
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._saved = gc.get_threshold()
        self._thaw = False  # a reload froze objects that may become garbage: look at them when idle

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        if not self.interval:
            return
        young, middle, _ = self._saved
        gc.set_threshold(young, middle, NEVER)
        self._loop = loop
        self._handle = loop.call_later(self.interval, self._due)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
            gc.set_threshold(*self._saved)

    def reloaded(self) -> None:
        """A reload has switched generations: freeze what is alive now without walking it.

        Only the young generations are collected first (short); the old generation's flows and
        services are frozen with the calls still using them, and looked at again (unfrozen) by
        the next collection when idle, once they may have become garbage.  With ``interval`` 0
        (CPython decides) nothing is frozen: nothing here would look at it again.
        """
        if self._loop is None:
            return
        gc.collect(1)
        gc.freeze()
        self._thaw = True

    def idle(self) -> None:
        """The last call has ended: collect soon (once its teardown is done), unless a full
        collection ran in the last IDLE_GAP seconds."""
        if self._loop is not None and time.monotonic() - self.last >= IDLE_GAP:
            self.last = time.monotonic()
            self._loop.call_soon(self._when_idle)

    def _when_idle(self) -> None:
        if self._handle is not None:  # not stopped meanwhile
            self.collect(thaw=self._thaw)

    def collect(self, *, thaw: bool = False) -> None:
        if thaw:
            gc.unfreeze()
            self._thaw = False
        gc.collect()
        if thaw:
            gc.freeze()
        self.last = time.monotonic()

    def _due(self) -> None:
        assert self._loop is not None
        wait = self.last + self.interval - time.monotonic()
        if wait <= 0:
            self.collect(thaw=self._thaw)
            wait = self.interval
        self._handle = self._loop.call_later(wait, self._due)
