"""Virtual time for the call runtime: an asyncio loop whose clock jumps instead of waiting.

``ivr simulate`` and ``ivr test`` run the server's own call runtime (timers with
``loop.call_at``, tasks, ``run_in_executor``) on a :class:`VirtualLoop`.  The loop's
``time()`` is a number the loop moves forward itself: when nothing is ready to run and the
next timer is due in *t* seconds, the clock jumps *t* seconds at once instead of sleeping.
A one-minute ring plan therefore takes microseconds, and every run of the same scenario
takes the same steps.

Before the clock jumps, the loop asks its ``on_idle`` hook whether the outside world wants
to act first (the simulated caller presses a key when the flow is waiting, say); the hook
returns True when it scheduled something, and the loop runs that before any time passes.

Work handed to an executor runs inline (:class:`InlineExecutor`), so no thread races the
virtual clock: a TTS rendering "takes no time", as if the server's pool were infinitely
fast, which is the one way both runs can agree to the millisecond on when a prompt starts.
"""

from __future__ import annotations

import asyncio
import selectors
from collections.abc import Callable
from concurrent.futures import Executor, Future
from typing import Any, TypeVar

T = TypeVar("T")


class InlineExecutor(Executor):
    """Runs each submitted call at once in the calling thread; the future is already done."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # noqa: BLE001 -- handed to whoever awaits the future
            future.set_exception(exc)
        return future


class _VirtualSelector(selectors.DefaultSelector):
    """The loop's selector: real file descriptors are polled, time passes virtually."""

    def __init__(self) -> None:
        super().__init__()
        self.loop: VirtualLoop | None = None

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        ready = super().select(0)  # the self-pipe of call_soon_threadsafe, nothing else
        if ready or timeout == 0 or self.loop is None:
            return ready
        self.loop._idle(timeout)
        return ready


class VirtualLoop(asyncio.SelectorEventLoop):
    """An event loop on a virtual clock (see the module docstring).

    ``on_idle(deadline)`` is called whenever the loop would wait; ``deadline`` is the loop
    time of the next timer, or None when no timer is pending.  It returns True when it made
    something ready (then no time passes).  With no hook, or when it returns False and no
    timer is pending, :attr:`stalled` becomes True and the loop stops: nothing could ever
    happen again.
    """

    def __init__(self, start: float = 0.0) -> None:
        selector = _VirtualSelector()
        super().__init__(selector)
        selector.loop = self
        self._now = start
        self.on_idle: Callable[[float | None], bool] | None = None
        self.stalled = False
        self._default_executor = InlineExecutor()  # type: ignore[assignment]  # a pool would race the clock

    def time(self) -> float:
        return self._now

    def advance(self, seconds: float) -> None:
        """Move the clock forward (never back)."""
        if seconds > 0:
            self._now += seconds

    def _idle(self, timeout: float | None) -> None:
        deadline = None if timeout is None else self._now + timeout
        if self.on_idle is not None and self.on_idle(deadline):
            return
        if timeout is None:
            self.stalled = True
            self.stop()
            return
        self.advance(timeout)


def run_virtual(main: Callable[[], Any], start: float = 0.0, loop: VirtualLoop | None = None) -> Any:
    """Run the coroutine ``main()`` to its end on a (new) virtual loop; returns its result."""
    loop = loop or VirtualLoop(start)
    try:
        asyncio.set_event_loop(loop)
        return loop.run_until_complete(main())
    finally:
        asyncio.set_event_loop(None)
        loop.close()
