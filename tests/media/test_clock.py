"""The media clock on a fake loop (exact deadlines, stalls) and on a real one."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import pytest

from ivr.media.clock import MediaClock, get_clock


class FakeHandle:
    def __init__(self, loop: FakeLoop, when: float, callback: Callable[[], object]) -> None:
        self.loop, self.when, self.callback = loop, when, callback
        self.cancelled = False

    def cancel(self) -> None:
        self.cancelled = True


class FakeLoop:
    """Time is set by the test; ``run_until(t)`` fires due timers, each at a chosen lateness."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start
        self.timers: list[FakeHandle] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> FakeHandle:
        handle = FakeHandle(self, when, callback)
        self.timers.append(handle)
        return handle

    def fire_next(self, late: float = 0.0) -> float:
        """Run the earliest pending timer, ``late`` seconds after its deadline; returns that deadline."""
        pending = [h for h in self.timers if not h.cancelled]
        handle = min(pending, key=lambda h: h.when)
        self.timers.remove(handle)
        self.now = max(self.now, handle.when + late)
        handle.callback()
        return handle.when


class Recorder:
    def __init__(self, log: list[tuple[str, int]], name: str) -> None:
        self.log, self.name = log, name

    def on_tick(self, tick_no: int, now: float) -> None:
        self.log.append((self.name, tick_no))

    def advance(self, tick_no: int) -> None:
        self.log.append((self.name, tick_no))


def test_ticks_follow_absolute_deadlines_without_drift() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop, interval=0.02)
    clock.start()
    deadlines = [loop.fire_next(late=0.004) for _ in range(100)]  # every tick 4 ms late
    assert deadlines == pytest.approx([1000.0 + 0.02 * k for k in range(100)])
    assert clock.ticks == 100 and clock.late_ticks == 0
    assert clock.max_lateness == pytest.approx(0.004)


def test_a_stall_skips_missed_ticks_and_never_bursts() -> None:
    log: list[tuple[str, int]] = []
    loop = FakeLoop()
    clock = MediaClock(loop)
    clock.add(Recorder(log, "s"))
    clock.start()
    loop.fire_next()
    loop.fire_next()
    loop.fire_next(late=0.105)  # tick 2's callback runs 105 ms late: ticks 2..6 are due
    assert log == [("s", 0), ("s", 1), ("s", 7)]
    assert clock.late_ticks == 5
    assert clock.max_lateness == pytest.approx(0.005)  # measured against tick 7's deadline
    assert loop.fire_next() == pytest.approx(1000.0 + 8 * 0.02)  # back on the grid
    assert log[-1] == ("s", 8)


def test_shared_sources_advance_once_per_tick_before_streams() -> None:
    log: list[tuple[str, int]] = []
    loop = FakeLoop()
    clock = MediaClock(loop)
    music = Recorder(log, "music")
    clock.add(Recorder(log, "call1"))
    clock.add_shared(music)
    clock.add_shared(music)  # two listeners, one position
    clock.add(Recorder(log, "call2"))
    clock.start()
    loop.fire_next()
    assert log == [("music", 0), ("call1", 0), ("call2", 0)]
    clock.remove_shared(music)
    loop.fire_next()
    assert ("music", 1) in log  # still one listener
    clock.remove_shared(music)
    loop.fire_next()
    assert ("music", 2) not in log


def test_streams_added_or_removed_during_a_tick_take_effect_next_tick() -> None:
    log: list[tuple[str, int]] = []
    loop = FakeLoop()
    clock = MediaClock(loop)
    late = Recorder(log, "late")

    class Remover:
        def on_tick(self, tick_no: int, now: float) -> None:
            log.append(("remover", tick_no))
            clock.remove(self)
            clock.add(late)

    clock.add(Remover())
    clock.start()
    loop.fire_next()
    loop.fire_next()
    assert log == [("remover", 0), ("late", 1)]
    assert clock.streams == 1


def test_a_failing_stream_does_not_stop_the_others() -> None:
    log: list[tuple[str, int]] = []
    loop = FakeLoop()
    clock = MediaClock(loop)

    class Broken:
        def on_tick(self, tick_no: int, now: float) -> None:
            raise RuntimeError("boom")

    clock.add(Broken())
    clock.add(Recorder(log, "ok"))
    clock.start()
    loop.fire_next()
    loop.fire_next()
    assert log == [("ok", 0), ("ok", 1)] and clock.errors == 2


def test_stop_cancels_the_pending_tick() -> None:
    loop = FakeLoop()
    clock = MediaClock(loop)
    clock.start()
    clock.start()  # idempotent
    assert len(loop.timers) == 1
    clock.stop()
    assert loop.timers[0].cancelled and not clock.running


def test_get_clock_is_one_running_clock_per_loop() -> None:
    async def main() -> tuple[int, int]:
        clock = get_clock()
        assert get_clock() is clock and clock.running
        ticks: list[int] = []
        done = asyncio.get_running_loop().create_future()

        class Counter:
            def on_tick(self, tick_no: int, now: float) -> None:
                ticks.append(tick_no)
                if len(ticks) == 5 and not done.done():
                    done.set_result(None)

        clock.add(Counter())
        await asyncio.wait_for(done, 5)
        clock.stop()
        return ticks[0], ticks[-1]

    first, last = asyncio.run(main())
    assert last - first >= 4
    assert asyncio.run(_stopped_clock()) is not asyncio.run(_stopped_clock())  # one per loop


async def _stopped_clock() -> MediaClock:
    clock = get_clock()
    clock.stop()
    return clock
