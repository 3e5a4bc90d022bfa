"""Endpointing with webrtcvad: start, end after the hangover, no-speech timeout, max length."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.media.vad import Endpointer

DATA = Path(__file__).parent.parent / "data" / "directory"


def frames(pcm: np.ndarray) -> list[np.ndarray]:
    return [pcm[i : i + 160] for i in range(0, len(pcm) - 159, 160)]


def speech() -> np.ndarray:
    pcm, _ = sf.read(DATA / "siobhan-kelly-gb.wav", dtype="int16")
    return pcm


def run(ep: Endpointer, pcm: np.ndarray) -> list[str]:
    return [ep.feed(f) for f in frames(pcm)]


def test_speech_then_silence_is_done_after_the_hangover() -> None:
    ep = Endpointer(no_speech_timeout=5.0, max_utterance=8.0, hangover=0.6)
    silence = np.zeros(8000, dtype=np.int16)
    states = run(ep, np.concatenate([silence[:4000], speech(), silence, silence]))
    assert states[0] == "waiting"
    assert "speaking" in states
    done_at = states.index("done")
    assert ep.speech_seconds is not None
    start, end = ep.speech_seconds
    assert 0.45 <= start <= 0.8
    assert done_at * 0.02 == pytest.approx(end + 0.6, abs=0.03)
    assert states[done_at:] == ["done"] * len(states[done_at:])  # stays done until reset


def test_no_speech_timeout() -> None:
    ep = Endpointer(no_speech_timeout=1.0)
    states = run(ep, np.zeros(16000, dtype=np.int16))
    assert states.index("no_speech") == 49  # the 50th frame reaches 1.0 s
    ep.reset()
    assert ep.state == "waiting" and ep.frames == 0


def test_max_utterance_cuts_endless_speech() -> None:
    ep = Endpointer(no_speech_timeout=5.0, max_utterance=1.0, hangover=0.6)
    long = np.concatenate([speech()[1000:9000]] * 4)  # voiced throughout
    states = run(ep, long)
    assert "done" in states
    assert ep.speech_seconds is not None
    start, end = ep.speech_seconds
    assert end - start == pytest.approx(1.0, abs=0.03)


def test_frame_size_is_checked() -> None:
    with pytest.raises(ValueError, match="wants 160 samples"):
        Endpointer().feed(np.zeros(80, dtype=np.int16))
