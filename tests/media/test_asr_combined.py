"""The combined engine: pocketsphinx and moonshine on the same audio, their verdicts joined."""

from __future__ import annotations

import math
import threading

import numpy as np
import pytest

from ivr.media.asr import get_recognizer
from ivr.media.asr_combined import (
    AGREE_MARGIN,
    SURE_MARGIN,
    CombinedRecognizer,
    CombinedSession,
    combine,
)
from ivr.media.asr_moonshine import default_model
from ivr.media.asr_utterance import NOTHING, Scored
from ivr.media.recognizer import Recognition, RecognizerError, finish_recognition
from tests.media.test_asr import STAFF, call_audio

needs_model = pytest.mark.skipif(default_model() is None, reason="moonshine-cpp is not installed (make deps)")


def scored(text: str, margin: float) -> Scored:
    return Scored(text, margin, 0.8)


# ---------------------------------------------------------------- the rules


def test_both_hearing_the_same_phrase_is_taken_even_below_moonshines_own_margin() -> None:
    assert AGREE_MARGIN == -math.inf  # chosen on the bench's tuning split
    assert combine("alice johnson", scored("alice johnson", -30.0)) == Recognition("alice johnson", 0.95)
    assert combine("alice johnson", scored("alice johnson", -1.5), agree=-2.0) == Recognition("alice johnson", 0.95)
    assert combine("alice johnson", scored("alice johnson", -2.5), agree=-2.0) == Recognition("", 0.0)


def test_moonshine_sure_against_pocketsphinx_gives_two_candidates() -> None:
    found = combine("alicia jensen", scored("alice johnson", SURE_MARGIN + 1))
    assert found == Recognition("alice johnson", 0.8, ("alicia jensen",))


def test_moonshine_sure_alone_is_taken_and_pocketsphinx_alone_is_not() -> None:
    assert combine("", scored("alice johnson", SURE_MARGIN + 1)) == Recognition("alice johnson", 0.8)
    assert combine("alice johnson", scored("bob miller", SURE_MARGIN - 1)) == Recognition("", 0.0)
    assert combine("alice johnson", NOTHING) == Recognition("", 0.0)
    assert combine("", NOTHING) == Recognition("", 0.0)


def test_thresholds_can_be_given_for_the_benchmarks_sweep() -> None:
    assert combine("alice johnson", scored("alice johnson", -5.0), agree=-4.0).text == ""
    assert combine("", scored("bob miller", 1.0), sure=0.0).text == "bob miller"


# ---------------------------------------------------------------- with both models


@pytest.mark.slow  # moonshine takes a few seconds to load
@needs_model
@pytest.mark.parametrize(
    ("fixture", "expected"),
    # pocketsphinx loses Alice Johnson to its filler: moonshine alone is sure of her
    [("alice-johnson-us", "alice johnson"), ("bob-miller-m3", "bob miller"), ("siobhan-kelly-gb", "siobhan kelly")],
)
def test_names_are_recognized(fixture: str, expected: str) -> None:
    assert finish_recognition(feed(STAFF, call_audio(fixture))).text == expected


@pytest.mark.slow
@needs_model
@pytest.mark.parametrize("fixture", ["leonard-dubois", "emma-wilson"])
def test_a_name_outside_the_directory_is_no_match(fixture: str) -> None:
    assert finish_recognition(feed(STAFF, call_audio(fixture))) == Recognition("", 0.0)


@pytest.mark.slow
@needs_model
def test_both_engines_finish_and_report_their_time() -> None:
    session = feed(STAFF, call_audio("bob-miller-m3"))
    heard, best = session.finish_parts()
    assert (heard, best.text) == ("bob miller", "bob miller")
    assert set(session.seconds) == {"pocketsphinx", "moonshine"}
    assert session.finish_parts() == ("", NOTHING)  # single use
    with pytest.raises(RecognizerError, match=r"^combined: accept\(\) after finish\(\)$"):
        session.accept(np.zeros(160, dtype=np.int16))


@pytest.mark.slow
@needs_model
def test_sessions_in_threads_do_not_mix() -> None:
    results: dict[str, str] = {}

    def run(fixture: str) -> None:
        results[fixture] = finish_recognition(feed(STAFF, call_audio(fixture))).text

    threads = [threading.Thread(target=run, args=(f,)) for f in ("alice-johnson-us", "bob-miller-m3")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert results == {"alice-johnson-us": "alice johnson", "bob-miller-m3": "bob miller"}


def feed(phrases: tuple[str, ...], pcm: np.ndarray) -> CombinedSession:
    recognizer = get_recognizer("combined")
    assert isinstance(recognizer, CombinedRecognizer)
    session = recognizer.session(phrases)
    for i in range(0, len(pcm) - 159, 160):
        session.accept(pcm[i : i + 160])
    return session
