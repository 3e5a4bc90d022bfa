"""TtsEngine: espeak-ng through pyttsx3, disk and memory caches, threads, the data folder engine."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import soundfile

from ivr.config import TtsConfig
from ivr.media.clip import RATE
from ivr.media.tts import TtsEngine, TtsError, cache_key


def test_render_gives_8k_speech_cached_on_disk(tmp_path):
    engine = TtsEngine(tmp_path / "tts")
    clip = engine.render("Welcome to Acme.")
    assert 0.6 < clip.duration < 3.0
    assert np.max(np.abs(clip.pcm)) > 3000  # speech, not silence
    path = engine.path_for("Welcome to Acme.")
    assert path.name == cache_key("Welcome to Acme.", "en-us", 160) + ".wav"
    info = soundfile.info(str(path))
    assert (info.samplerate, info.channels, info.subtype) == (RATE, 1, "PCM_16")
    assert engine.render("Welcome to Acme.") is clip  # memory cache
    # A fresh engine (a restarted server) reads the disk cache instead of synthesising.
    again = TtsEngine(tmp_path / "tts")
    assert np.array_equal(again.render("Welcome to Acme.").pcm, clip.pcm)
    assert again.rendered == 0


def test_cached_gives_only_what_is_in_memory_and_touches_no_file(tmp_path):
    engine = TtsEngine(tmp_path / "tts")
    assert engine.cached("Welcome to Acme.") is None  # not rendered yet: the caller must render off the loop
    clip = engine.render("Welcome to Acme.")
    assert engine.cached("Welcome to Acme.") is clip
    assert engine.cached("Welcome to Acme.", rate=300) is None
    engine.path_for("Welcome to Acme.").unlink()
    assert engine.cached("Welcome to Acme.") is clip  # memory only, the disk is not looked at
    assert TtsEngine(tmp_path / "tts").cached("Welcome to Acme.") is None


def test_voice_and_rate_are_part_of_the_key(tmp_path):
    engine = TtsEngine(tmp_path)
    slow = engine.render("one two three four five", rate=100)
    fast = engine.render("one two three four five", rate=300)
    assert slow.duration > fast.duration * 1.5
    gb = engine.render("one two three four five", voice="en-gb")
    assert engine.path_for("one two three four five", voice="en-gb") != engine.path_for(
        "one two three four five"
    )
    assert not np.array_equal(gb.pcm[: len(slow.pcm)], slow.pcm[: len(gb.pcm)])
    assert engine.rendered == 3


def test_call_language_picks_the_voice(tmp_path):
    engine = TtsEngine(tmp_path)
    assert engine.voice_for("de_CH") == "de" and engine.voice_for("fr") == "fr"
    assert engine.voice_for("xx-yy") is None
    engine.render("Guten Tag", language="de")
    assert engine.path_for("Guten Tag", voice="de").is_file()
    engine.render("Hello", language="xx")  # unknown language: the default voice
    assert engine.path_for("Hello").is_file()


def test_unknown_voice_and_bad_rate_are_clear_errors(tmp_path):
    engine = TtsEngine(tmp_path)
    with pytest.raises(TtsError, match="unknown TTS voice 'klingon'; espeak-ng voices include en"):
        engine.render("hello", voice="klingon")
    with pytest.raises(TtsError, match="TTS rate 5 out of range"):
        engine.render("hello", rate=5)
    assert not list(tmp_path.rglob("*.wav"))


def test_concurrent_renders_from_threads(tmp_path):
    engine = TtsEngine(tmp_path)
    texts = [f"Caller number {i}" for i in range(3)]
    results: dict[str, float] = {}
    errors: list[BaseException] = []

    def work(text: str) -> None:
        try:
            results[text] = engine.render(text).duration
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(t,)) for t in texts * 3]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not errors
    assert set(results) == set(texts) and all(d > 0.5 for d in results.values())
    assert len(list(tmp_path.rglob("*.wav"))) == 3
    assert engine.rendered == 3  # a text asked for by three threads at once is synthesised once
    assert not list(tmp_path.rglob("*.tmp"))


def test_prerender_returns_files_in_order(tmp_path):
    engine = TtsEngine(tmp_path)
    paths = engine.prerender([("Good morning", None, None), ("Good night", "en-gb", 180)])
    assert paths == [
        engine.path_for("Good morning"),
        engine.path_for("Good night", voice="en-gb", rate=180),
    ]
    assert all(p.is_file() for p in paths)
    before = engine.rendered
    engine.prerender([("Good morning", None, None)])
    assert engine.rendered == before


def test_the_engine_of_a_data_folder_caches_below_it_in_the_deployments_voice(tmp_path):
    engine = TtsEngine.in_data_folder(tmp_path, TtsConfig(voice="en-gb", rate=180))
    assert (engine.voice, engine.rate) == ("en-gb", 180)
    key = cache_key("Hello", "en-gb", 180)
    assert engine.path_for("Hello") == tmp_path / "tts-cache" / key[:2] / f"{key}.wav"
