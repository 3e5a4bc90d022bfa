"""The virtual-time event loop the simulator runs the call runtime on."""

from __future__ import annotations

import asyncio
import time

import pytest

from ivr.runtime.virtual import InlineExecutor, VirtualLoop, run_virtual


def test_an_hour_of_timers_takes_no_real_time() -> None:
    async def main() -> tuple[float, list[float]]:
        loop = asyncio.get_running_loop()
        fired: list[float] = []
        for delay in (3600.0, 5.0, 60.0):
            loop.call_later(delay, lambda: fired.append(loop.time()))
        await asyncio.sleep(3601)
        return loop.time(), fired

    began = time.monotonic()
    now, fired = run_virtual(main, start=100.0)
    assert now == pytest.approx(100.0 + 3601)
    assert fired == pytest.approx([105.0, 160.0, 3700.0])  # in deadline order, each at its time
    assert time.monotonic() - began < 5


def test_executor_work_runs_inline_and_its_errors_reach_the_awaiter() -> None:
    async def main() -> int:
        loop = asyncio.get_running_loop()
        before = loop.time()
        value = await loop.run_in_executor(InlineExecutor(), lambda: 21 * 2)
        assert loop.time() == before  # work in the pool takes no virtual time
        with pytest.raises(ZeroDivisionError):
            await loop.run_in_executor(None, lambda: 1 / 0)
        return value

    assert run_virtual(main) == 42


def test_the_idle_hook_acts_before_time_passes() -> None:
    loop = VirtualLoop()
    seen: list[tuple[float, float | None]] = []

    def idle(deadline: float | None) -> bool:
        seen.append((loop.time(), deadline))
        if len(seen) == 1:  # the first time the loop would wait: act now, at t=0
            loop.call_soon(done.set_result, loop.time())
            return True
        return False

    async def main() -> float:
        loop.call_later(10.0, lambda: None)
        return await done

    done: asyncio.Future[float] = loop.create_future()
    loop.on_idle = idle
    assert run_virtual(main, loop=loop) == 0.0
    assert seen == [(0.0, 10.0)]


def test_a_loop_with_nothing_left_to_happen_stops_as_stalled() -> None:
    loop = VirtualLoop()
    loop.on_idle = lambda deadline: False

    async def main() -> None:
        await loop.create_future()  # nobody will ever set it

    with pytest.raises(RuntimeError):
        run_virtual(main, loop=loop)
    assert loop.stalled
