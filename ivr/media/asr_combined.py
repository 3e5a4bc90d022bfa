"""The ``combined`` speech engine: pocketsphinx and moonshine on the same audio, their verdicts joined.

The two engines fail differently on telephone audio (docs/directory.md has the figures):
pocketsphinx rarely rejects a name but hears strangers and near names as directory names;
moonshine rarely picks the wrong name but rejects many.  Every utterance goes to both: the
frames reach pocketsphinx (which decodes as they arrive) and moonshine (which buffers), and on
``finish`` moonshine's decode runs in a worker thread while pocketsphinx finishes in the
caller's, so the result costs about what moonshine alone costs.

:func:`combine` decides, from pocketsphinx's phrase and moonshine's best phrase with its
log-probability margin over its filler (:class:`~ivr.media.asr_moonshine.Scored`):

* **agree**: both name the same phrase, and moonshine's margin is above :data:`AGREE_MARGIN`
  (by default any margin: the other engine's vote stands in for moonshine's own threshold);
* **moonshine alone** is sure (margin above :data:`SURE_MARGIN`): its phrase, and when
  pocketsphinx heard another phrase, that one as the rival (``alternatives``), so the
  dialogue asks "Did you mean A or B?";
* anything else is no match: pocketsphinx alone is where strangers get through.

The thresholds are chosen on the benchmark's tuning split (``bench/directory_speech.py
--engine combined``, which prints the curve) and reported on its held-out split.
"""

from __future__ import annotations

import concurrent.futures
import math
import threading
import time
from collections.abc import Callable, Sequence
from typing import TypeVar

from ivr.media.asr_moonshine import FILLER_MARGIN, MoonshineRecognizer, MoonshineSession
from ivr.media.asr_utterance import NOTHING, Scored
from ivr.media.recognizer import PCM16, Recognition, Recognizer, RecognizerError, RecognizerSession

_T = TypeVar("_T")

#: Moonshine's margin over its filler above which its phrase, when pocketsphinx heard the same, is taken.
#: Any: on the tuning split every threshold tried only lost names, never a stranger or a wrong person.
AGREE_MARGIN = -math.inf
#: Moonshine's margin above which its phrase is taken even when pocketsphinx heard nothing or another.
SURE_MARGIN = FILLER_MARGIN
#: Confidence reported when both engines heard the same phrase.
AGREED = 0.95


def combine(heard: str, scored: Scored, agree: float | None = None, sure: float | None = None) -> Recognition:
    """The joint verdict on pocketsphinx's phrase ``heard`` ("" for none) and moonshine's ``scored``."""
    agree = AGREE_MARGIN if agree is None else agree
    sure = SURE_MARGIN if sure is None else sure
    if heard and scored.text == heard and scored.margin > agree:
        return Recognition(heard, max(AGREED, scored.posterior))
    if scored.text and scored.margin > sure:
        rivals = (heard,) if heard and heard != scored.text else ()
        return Recognition(scored.text, scored.posterior, rivals)
    return Recognition("", 0.0)


class CombinedRecognizer:
    """pocketsphinx and moonshine, each loaded once; sessions run both on every utterance."""

    engine = "combined"

    def __init__(self, pocketsphinx: Recognizer, moonshine: MoonshineRecognizer) -> None:
        self.pocketsphinx = pocketsphinx
        self.moonshine = moonshine
        # moonshine's decode of one utterance runs here while pocketsphinx finishes in the caller's thread
        self._pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="ivr-asr-moonshine")

    def check(self, phrases: Sequence[str]) -> list[str]:
        return self.pocketsphinx.check(phrases) + self.moonshine.check(phrases)

    def session(self, phrases: Sequence[str]) -> CombinedSession:
        return CombinedSession(self.pocketsphinx.session(phrases), self.moonshine.session(phrases), self._pool)


class CombinedSession:
    """One utterance through both engines; :meth:`finish_candidates` gives the joint verdict."""

    def __init__(
        self, pocketsphinx: RecognizerSession, moonshine: MoonshineSession, pool: concurrent.futures.Executor
    ) -> None:
        self._pocketsphinx = pocketsphinx
        self._moonshine = moonshine
        self._pool = pool
        self._lock = threading.Lock()
        self._done = False
        #: How long each engine's ``finish`` took (seconds), for the benchmark and logs.
        self.seconds: dict[str, float] = {}

    def accept(self, pcm16_8k: PCM16) -> None:
        with self._lock:
            if self._done:
                raise RecognizerError("combined: accept() after finish()")
            self._moonshine.accept(pcm16_8k)
            self._pocketsphinx.accept(pcm16_8k)

    def finish_parts(self) -> tuple[str, Scored]:
        """pocketsphinx's phrase and moonshine's scored best phrase, decoded side by side."""
        with self._lock:
            if self._done:
                return "", NOTHING
            self._done = True
        later = self._pool.submit(self._timed, "moonshine", self._moonshine.finish_scored)
        heard, _ = self._timed("pocketsphinx", self._pocketsphinx.finish)
        return heard, later.result()

    def _timed(self, engine: str, finish: Callable[[], _T]) -> _T:
        start = time.perf_counter()
        try:
            return finish()
        finally:
            self.seconds[engine] = time.perf_counter() - start

    def finish_candidates(self) -> Recognition:
        return combine(*self.finish_parts())

    def finish(self) -> tuple[str, float]:
        found = self.finish_candidates()
        return found.text, found.confidence

    def close(self) -> None:
        with self._lock:
            self._done = True
        self._pocketsphinx.close()
        self._moonshine.close()
