"""A real softphone (baresip) calls ``ivr serve``: it hears the greeting and a key takes effect.

baresip's microphone is a WAV (aufile) and what it hears is recorded (sndfile); it dials and sends
DTMF over its ctrl_tcp interface.  The recording is compared with the prompts ivr rendered: the
greeting must be in it, not silence and not something else.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.media import g711
from ivr.media.tts import TtsEngine

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

IvrServer = Any  # conftest.IvrServer
Phone = Any  # conftest.Baresip

GREETING = ("Welcome to the peer test line.", "For sales, press 1. For support, press 2.")


def caller_mic(path: Path, seconds: float = 40.0) -> Path:
    """A quiet hum as the caller's microphone (longer than the call: baresip hangs up at its end)."""
    t = np.arange(int(seconds * 8000)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * 200 * t) * 600).astype(np.int16), 8000, subtype="PCM_16")
    return path


def best_match(heard: np.ndarray, clip: np.ndarray, search: int) -> tuple[float, int]:
    """Highest normalised correlation of ``clip`` against ``heard`` at lags 0..search samples."""
    clip = clip.astype(np.float64)
    best, where = 0.0, 0
    norm_clip = np.sqrt(np.dot(clip, clip))
    for lag in range(0, min(search, len(heard) - len(clip)), 40):
        part = heard[lag : lag + len(clip)].astype(np.float64)
        denom = norm_clip * np.sqrt(np.dot(part, part))
        score = float(np.dot(part, clip) / denom) if denom else 0.0
        if score > best:
            best, where = score, lag
    return best, where


def refine(heard: np.ndarray, clip: np.ndarray, around: int) -> float:
    clip = clip.astype(np.float64)
    scores = []
    for lag in range(max(0, around - 40), min(around + 41, len(heard) - len(clip))):
        part = heard[lag : lag + len(clip)].astype(np.float64)
        denom = np.sqrt(np.dot(clip, clip) * np.dot(part, part))
        scores.append(float(np.dot(part, clip) / denom) if denom else 0.0)
    return max(scores)


def test_baresip_hears_the_greeting_and_key_2_reaches_support(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server("menu.ivr")
    phone = baresip(caller_mic(tmp_path / "mic.wav"))
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]

    # Both greeting prompts have played out; the menu now waits for a key.
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "prompt_done" and r.get("prompt_id") == 2)
    phone.command("sndcode", "2")
    phone.wait_event("CALL_CLOSED")  # the flow said "Support." and hung up
    record = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    phone.stop()

    assert record["outcome"] == "hangup"
    assert record["packets_received"] > 50  # baresip's microphone reached ivr
    steps = server.steps(call_id)
    assert "support" in steps and "sales" not in steps
    assert [(r["digit"], r["via"]) for r in server.call_records(call_id) if r.get("event") == "key" and "via" in r] == [("2", "rtp")]

    heard, rate = soundfile.read(phone.heard(), dtype="int16")
    assert rate == 8000
    tts = TtsEngine(server.data / "tts-cache")  # the server's cache: no synthesis here
    clips = [g711.decode(tts.render(text).encoded(0), 0) for text in GREETING]  # as sent in PCMU
    expected = sum(len(c) for c in clips)
    assert len(heard) >= expected, f"heard {len(heard) / 8000:.1f}s, the greeting alone is {expected / 8000:.1f}s"
    assert np.sqrt(np.mean(heard[:expected].astype(np.float64) ** 2)) > 300  # not silence
    # The first 2 s of the greeting, in four 0.5 s pieces, each found where it belongs: a jitter
    # buffer adjusting once (a loaded machine) may shift one piece, not the whole greeting.
    pieces = [clips[0][i : i + 4000] for i in range(0, 16000, 4000)]
    found = []
    for n, piece in enumerate(pieces):
        score, lag = best_match(heard, piece, search=8000 + n * 4000 + 4000)
        found.append(refine(heard, piece, lag) if score > 0.5 else score)
    assert sum(score > 0.8 for score in found) >= 3, f"what baresip heard is not the greeting: {found}"


def test_baresip_says_technical_support_and_the_speech_menu_takes_it(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server("speech.ivr")
    spoken = TtsEngine(tmp_path / "tts").render("technical support", voice="en-us", rate=160).pcm
    mic = np.zeros(40 * 8000, np.int16)
    mic[4 * 8000 : 4 * 8000 + len(spoken)] = spoken  # the caller answers the menu 4 s into the call
    soundfile.write(tmp_path / "mic.wav", mic, 8000, subtype="PCM_16")
    phone = baresip(tmp_path / "mic.wav")
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    phone.wait_event("CALL_CLOSED", timeout=60)  # the flow said "Support." and hung up
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    phone.stop()
    speech = [r for r in server.call_records(call_id) if r.get("event") == "speech"]
    assert [r["text"] for r in speech] == ["technical support"]
    steps = server.steps(call_id)
    assert "support" in steps and "sales" not in steps


def test_any_speech_menu_without_phrases_takes_its_speech_branch(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    """`speech ->` with no phrases: voice activity alone ends the utterance and picks the branch."""
    server = ivr_server("speech_any.ivr")
    spoken = TtsEngine(tmp_path / "tts").render("I would like to speak to someone", voice="en-us", rate=160).pcm
    mic = np.zeros(40 * 8000, np.int16)
    mic[4 * 8000 : 4 * 8000 + len(spoken)] = spoken
    soundfile.write(tmp_path / "mic.wav", mic, 8000, subtype="PCM_16")
    phone = baresip(tmp_path / "mic.wav")
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    phone.wait_event("CALL_CLOSED", timeout=60)
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    phone.stop()
    speech = [r for r in server.call_records(call_id) if r.get("event") == "speech"]
    assert [r["text"] for r in speech] == [""]
    steps = server.steps(call_id)
    assert "talker" in steps and "goodbye" not in steps and "sales" not in steps
