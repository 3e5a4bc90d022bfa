"""The prompt queue of one call: Say, Play and Tone in the flow's order, loaded off the loop.

Rendering a ``say`` (TTS) or decoding a file takes time, so it runs in the services'
executor while earlier prompts play; :class:`PromptQueue` hands each loaded source to the
media session in the order the flow asked for them.  A source already in memory (a flow's
text, rendered at start-up) with nothing queued before it goes to the media session at
once, without a task.  A prompt that cannot be loaded is
logged (``prompt_error``) and reported done, so the flow goes on as if it had played.
Prompts dropped before they were loaded (the flow stopped them) are reported done too:
whoever started a prompt always learns that it is over.
"""

from __future__ import annotations

import asyncio
import logging
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.runtime.context import CallContext

log = logging.getLogger("ivr.runtime.call")


class Call(CallContext, Protocol):
    """What the prompt queue needs from the call it serves (the call runner)."""

    def prompt_finished(self, media_id: int) -> None: ...


@dataclass
class PendingPrompt:
    media_id: int
    barge_in: bool
    load: Callable[[], Any]  # runs in the thread pool: returns a Clip (or a shared player)
    label: str
    ready: Callable[[], Any] | None = None  # on the loop, no I/O: the source if in memory already, else None


class PromptQueue:
    """Say/Play/Tone in the order the flow gave them, although TTS renders in a thread.

    Each item is loaded (rendered, decoded) in the pool while earlier ones play,
    then handed to the media session, which queues it after what is playing.
    A failed load is logged and reported as done, so the flow goes on.
    """

    def __init__(self, runner: Call) -> None:
        # The call holds its queue; a weak reference back leaves no cycle, so an ended call is
        # freed when the server drops it, not by the cyclic garbage collector (ivr.runtime.gcwatch).
        self._runner = weakref.ref(runner)
        self.pending: deque[PendingPrompt] = deque()
        self.task: asyncio.Task[None] | None = None

    @property
    def runner(self) -> Call:
        runner = self._runner()
        if runner is None:  # the queue's task is cancelled when its call ends
            raise ReferenceError("the call of this prompt queue is gone")
        return runner

    def add(self, item: PendingPrompt) -> None:
        self.pending.append(item)
        if self.task is None or self.task.done():
            if len(self.pending) == 1 and self._play_ready(item):
                return
            self.task = asyncio.get_running_loop().create_task(self._work())

    def _play_ready(self, item: PendingPrompt) -> bool:
        """Play a source that is in memory already, with nothing queued before it: no task and
        no turn of the loop for the common case (a flow's text, rendered when the server started)."""
        runner = self.runner
        if item.ready is None or runner.ended or runner.media is None:
            return False
        try:
            source = item.ready()
        except Exception:  # noqa: BLE001 -- the task tries again and reports it as it always did
            return False
        if source is None:
            return False
        self.pending.popleft()
        runner.media.play(source, prompt_id=item.media_id, barge_in=item.barge_in)
        return True

    def stop(self, *, only_barge_in: bool = True) -> None:
        """Drop prompts not loaded yet; each is over for whoever started it (PromptDone)."""
        kept: deque[PendingPrompt] = deque()
        dropped: list[PendingPrompt] = []
        for item in self.pending:
            (kept if only_barge_in and not item.barge_in else dropped).append(item)
        self.pending = kept
        for item in dropped:
            self.runner.prompt_finished(item.media_id)

    def cancel(self) -> None:
        self.pending.clear()
        if self.task is not None:
            # Dropped as well: a cancelled task keeps its CancelledError, whose traceback holds
            # the frames that hold this queue, a cycle only the garbage collector would free.
            self.task.cancel()
            self.task = None

    async def _work(self) -> None:
        loop = asyncio.get_running_loop()
        while self.pending:
            item = self.pending[0]
            source = item.ready() if item.ready is not None else None
            if source is None:
                source = await self._load(loop, item)
            if not self.pending or self.pending[0] is not item:
                continue  # stopped (barge-in) while loading
            self.pending.popleft()
            if self.runner.ended or self.runner.media is None:
                return
            if source is None:
                self.runner.prompt_finished(item.media_id)
            else:
                self.runner.media.play(source, prompt_id=item.media_id, barge_in=item.barge_in)

    async def _load(self, loop: asyncio.AbstractEventLoop, item: PendingPrompt) -> Any:
        try:
            return await loop.run_in_executor(self.runner.services.executor, item.load)
        except Exception as exc:  # noqa: BLE001 -- a missing prompt must not end the call
            log.warning("call %s: cannot load %s: %s", self.runner.call_id, item.label, exc)
            self.runner.log(event="prompt_error", prompt=item.label, error=str(exc))
            return None
