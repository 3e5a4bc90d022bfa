"""What every speech engine shares: the recognizer interface, grammars of whole phrases, filler words.

A :class:`Recognizer` is loaded once per process and shared by every call; each
utterance gets its own :class:`RecognizerSession` for a grammar of whole
phrases (:func:`grammar_phrases` normalises them).  The engines live in their
own modules (pocketsphinx and vosk in :mod:`ivr.media.asr`, which also picks
the engine by name, moonshine in :mod:`ivr.media.asr_moonshine`) and import
this one, never each other.

An engine that can hear an utterance two ways (the ``combined`` engine, when its two
models disagree) also implements :class:`CandidateSession`; :func:`finish_recognition`
gives every session's result as a :class:`Recognition` with those alternatives.

Filler words (:func:`distinct_filler`): common names that catch what a caller
says outside the grammar, so it is no match rather than the nearest phrase;
words one phone or less from a grammar word are left out, as they would steal
that word's callers.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from ivr.media.g2p import cmudict, normalize_phrase

PCM16 = npt.NDArray[np.int16]
INPUT_RATE = 8000  # what sessions accept: the call's G.711 audio, decoded
FILLER_MIN_DISTANCE = 1  # filler words this many phones or fewer from a grammar word are left out


class RecognizerError(Exception):
    """A recognizer or grammar that cannot be used; the message names the engine and the cause."""


class RecognizerSession(Protocol):
    def accept(self, pcm16_8k: PCM16) -> None: ...

    def finish(self) -> tuple[str, float]: ...

    def close(self) -> None: ...


class Recognizer(Protocol):
    engine: str

    def session(self, phrases: Sequence[str]) -> RecognizerSession: ...

    def check(self, phrases: Sequence[str]) -> list[str]: ...


@dataclass(frozen=True)
class Recognition:
    """One utterance's result: the phrase ("" for no match), its confidence, and rival phrases.

    ``alternatives`` are phrases heard about as surely as ``text`` (the combined engine's two
    models disagreed): a dialogue asks the caller which one was meant instead of choosing.
    """

    text: str
    confidence: float
    alternatives: tuple[str, ...] = ()


@runtime_checkable
class CandidateSession(RecognizerSession, Protocol):
    """A session that can report rival phrases as well as the best one."""

    def finish_candidates(self) -> Recognition: ...


def finish_recognition(session: RecognizerSession) -> Recognition:
    """``session``'s result, with rival phrases when the engine can hear two (else none)."""
    if isinstance(session, CandidateSession):
        return session.finish_candidates()
    text, confidence = session.finish()
    return Recognition(text, confidence)


def grammar_phrases(phrases: Sequence[str]) -> tuple[str, ...]:
    """Normalized, deduplicated phrases in their given order (empty ones dropped)."""
    seen: dict[str, None] = {}
    for p in phrases:
        n = normalize_phrase(p)
        if n:
            seen.setdefault(n, None)
    if not seen:
        raise RecognizerError("a grammar needs at least one phrase with letters")
    return tuple(seen)


@functools.lru_cache(maxsize=1)
def filler_words() -> tuple[str, ...]:
    """The filler vocabulary (``asr_filler.txt``), restricted to words cmudict can pronounce."""
    text = Path(__file__).with_name("asr_filler.txt").read_text(encoding="utf-8")
    words = [w for line in text.splitlines() if not line.startswith("#") for w in line.split()]
    return tuple(w for w in words if w in cmudict())


def distinct_filler(lexicon: dict[str, tuple[str, ...]]) -> list[str]:
    """Filler words that sound unlike every word of the grammar (more than one phone apart).

    A filler word one phone from a grammar word ("johnston" for "johnson", "adam" for "adams",
    "rice" for "price") steals that word's callers instead of catching outsiders.
    """
    own = {tuple(p.split()) for prons in lexicon.values() for p in prons}
    return [
        w
        for w in filler_words()
        if w not in lexicon and all(_phones_apart(tuple(p.split()), o) > FILLER_MIN_DISTANCE for p in cmudict()[w] for o in own)
    ]


def _phones_apart(a: tuple[str, ...], b: tuple[str, ...]) -> int:
    """Levenshtein distance between two phone strings (capped: only "close or not" matters)."""
    if abs(len(a) - len(b)) > FILLER_MIN_DISTANCE:
        return FILLER_MIN_DISTANCE + 1
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return row[-1]
