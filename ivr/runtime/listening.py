"""Speech input of one call: the endpointer on the loop, the recogniser in the executor.

:class:`SpeechListener` serves one ``Listen(phrases=...)`` of the flow or a dialogue (see
its docstring); the call runner feeds it the caller's audio while it listens and gets a
``Speech`` event back through ``post``.  A ``recognized`` record gives the recogniser's
latency: from the end of the caller's speech to its answer (``/metrics`` reads it).
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from typing import Any, Protocol

import numpy as np

from ivr.dsl import events as ev
from ivr.media.recognizer import Recognition, finish_recognition
from ivr.runtime.context import CallContext

log = logging.getLogger("ivr.runtime.call")


class Call(CallContext, Protocol):
    """What a speech listener needs from the call it serves (the call runner)."""

    @property
    def listener(self) -> SpeechListener | None: ...

    @listener.setter
    def listener(self, value: SpeechListener | None) -> None: ...

    def post(self, event: ev.Event) -> None: ...


class SpeechListener:
    """Speech input for one ``Listen(phrases=...)``: endpointer on the loop, recogniser in the pool.

    The recogniser session (grammar compilation) is built in the pool, never on the loop;
    frames go to the endpointer as they arrive and, once the caller speaks, are batched to
    the session in the pool (one job at a time, in order).  When the endpointer says the
    utterance is over, ``finish()`` runs in the pool and the matched phrase (or ``""``)
    becomes a ``Speech`` event.  No speech within the endpointer's window: listening goes on
    with a fresh session until the flow's own timer decides.  With no phrases (a menu whose
    only speech option is ``speech ->``) there is no grammar to decode against: the
    endpointer alone decides, and a finished utterance is ``Speech("")``, which such a menu
    takes as its ``speech`` branch.
    """

    BATCH = 10  # frames (200 ms) per decoder job
    PREROLL = 15  # frames (300 ms) before the endpointer is sure speech began, handed over too

    def __init__(self, runner: Call, phrases: tuple[str, ...], language: str = "") -> None:
        self.runner = runner
        self.phrases = phrases
        self.language = language  # the call's language: its recogniser decodes
        self.closed = False
        self._begin()

    def _begin(self) -> None:
        from ivr.media.vad import Endpointer

        loop = asyncio.get_running_loop()
        services = self.runner.services
        phrases = list(self.phrases)
        self.endpointer = Endpointer()
        self.batch: list[np.ndarray] = []
        self.preroll: deque[np.ndarray] = deque(maxlen=self.PREROLL)
        self.session: asyncio.Future[Any]
        if phrases:
            self.session = loop.run_in_executor(services.executor, lambda: services.recognizer(self.language).session(phrases))
        else:
            self.session = loop.create_future()
            self.session.set_result(None)
        self.chain: asyncio.Future[Any] = self.session

    def feed(self, pcm: np.ndarray) -> None:
        if self.closed:
            return
        state = self.endpointer.feed(pcm)
        if state == "waiting":
            self.preroll.append(pcm)  # the VAD needs a few voiced frames to be sure: keep them
            return
        if state == "no_speech":
            self._begin()
            return
        if self.preroll:
            self.batch.extend(self.preroll)
            self.preroll.clear()
        self.batch.append(pcm)
        if state == "done" or len(self.batch) >= self.BATCH:
            self._submit(np.concatenate(self.batch))
            self.batch = []
        if state == "done":
            self.closed = True
            asyncio.ensure_future(self._finish())

    def _submit(self, pcm: np.ndarray) -> None:
        if not self.phrases:
            return  # endpointing only: nothing to decode
        loop = asyncio.get_running_loop()
        previous, session = self.chain, self.session

        async def job() -> None:
            await previous
            decoder = await session
            await loop.run_in_executor(self.runner.services.executor, decoder.accept, pcm)

        self.chain = asyncio.ensure_future(job())

    async def _finish(self) -> None:
        loop = asyncio.get_running_loop()
        began = loop.time()  # the caller stopped speaking: how long they wait for the answer
        try:
            await self.chain
            decoder = await self.session
            if decoder is None:
                heard = Recognition("", 1.0)
            else:
                heard = await loop.run_in_executor(self.runner.services.executor, finish_recognition, decoder)
        except Exception as exc:  # a recogniser failure is a no-match, never a dead call
            log.exception("call %s: speech recognition failed", self.runner.call_id)
            self.runner.log(event="speech_error", error=str(exc))
            heard = Recognition("", 0.0)
        if self.phrases:
            self.runner.log(event="recognized", latency_ms=round((loop.time() - began) * 1000, 1))
        if self.runner.listener is self and not self.runner.ended:
            self.runner.listener = None
            self.runner.post(ev.Speech(heard.text, heard.confidence, heard.alternatives))

    def close(self) -> None:
        self.closed = True
