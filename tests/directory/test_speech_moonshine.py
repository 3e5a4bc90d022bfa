"""The moonshine engine: grammar-constrained Moonshine base on fixture audio, and its model loader.

The model comes from PyPI's moonshine-cpp wheel, which ``make deps`` installs with onnxruntime
and onnx; the tests that need it are skipped only when those are absent.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from ivr.media import g711
from ivr.media.asr import get_recognizer
from ivr.media.asr_moonshine import (
    _Grammar,
    _Spelling,
    default_model,
    onnx_model,
    read_tokens,
)
from ivr.media.asr_utterance import denoise, speech_only
from ivr.media.recognizer import RecognizerError

DATA = Path(__file__).parent.parent / "data" / "directory"
STAFF = ("Alice Johnson", "Bob Miller", "Robert Miller", "Siobhan Kelly", "Nguyen Van Minh", "Anna Zürcher", "John Smith", "Jack Johnston")
INSTALLED = default_model() is not None and all(importlib.util.find_spec(m) for m in ("onnxruntime", "onnx"))
needs_model = pytest.mark.skipif(
    not INSTALLED, reason="moonshine-cpp, onnxruntime or onnx not installed: `make deps` installs them"
)


def call_audio(name: str, lead: float = 0.3, tail: float = 0.6) -> np.ndarray:
    """A fixture as a call delivers it: silence around the name (the endpointer's), G.711 mu-law."""
    pcm, rate = sf.read(DATA / f"{name}.wav", dtype="int16")
    assert rate == 8000
    pcm = np.concatenate([np.zeros(int(lead * rate), np.int16), pcm, np.zeros(int(tail * rate), np.int16)])
    noise = np.random.default_rng(3).normal(0, 30, len(pcm))  # a quiet line rather than digital silence
    return g711.ulaw_decode(g711.ulaw_encode(np.clip(pcm + noise, -32768, 32767).astype(np.int16)))


def recognize(phrases: tuple[str, ...], pcm: np.ndarray) -> tuple[str, float]:
    session = get_recognizer("moonshine").session(phrases)
    for i in range(0, len(pcm) - 159, 160):
        session.accept(pcm[i : i + 160])
    return session.finish()


# ---------------------------------------------------------------- without the model


def spelling(*tokens: str) -> _Spelling:
    """A token table: 259 placeholders (specials and bytes), then ``tokens`` ("_" for the word space)."""
    return _Spelling([b"<x>"] * 259 + [t.replace("_", "\u2581").encode() for t in tokens])


def test_tokenizer_file_is_read_and_a_truncated_one_refused(tmp_path: Path) -> None:
    path = tmp_path / "tokenizer.bin"
    long = b"x" * 200  # lengths of 128 and over take two bytes
    path.write_bytes(b"\x03abc\x00" + bytes([0x80 | (200 & 0x7F), 200 >> 7]) + long)
    assert read_tokens(path) == [b"abc", b"", long]
    path.write_bytes(b"\x05ab")
    with pytest.raises(RecognizerError, match="truncated at token 0"):
        read_tokens(path)
    path.write_bytes(b"\x01a\x81")  # a two-byte length cut after its first byte
    with pytest.raises(RecognizerError, match="truncated at token 1"):
        read_tokens(path)


def test_grammar_allows_only_tokens_that_continue_a_phrase_or_the_filler() -> None:
    sp = spelling("_Ali", "ce", "_alice", "_Bob", "_John", "son", "_Johnson", "_X", ".", "_Alan")
    g = _Grammar(("alice johnson", "bob"), ("alan",), sp)
    first = {sp.text([int(i)]) for i in g.next_tokens(g.start)[0]}
    assert first == {" Ali", " alice", " Bob", " Alan"}  # never " X", " John" or "son"
    ids, states = g.next_tokens(g.start)
    after_alice = states[[sp.text([int(i)]) for i in ids].index(" alice")]
    following = {sp.text([int(i)]) for i in g.next_tokens(after_alice)[0]}
    assert following == {" John", " Johnson"}
    after_bob = states[[sp.text([int(i)]) for i in ids].index(" Bob")]
    assert g.phrase_end(after_bob) and g.accepting(after_bob)
    assert {sp.text([int(i)]) for i in g.next_tokens(after_bob)[0]} == {"."}  # final punctuation only
    after_alan = states[[sp.text([int(i)]) for i in ids].index(" Alan")]
    assert g.accepting(after_alan) and not g.phrase_end(after_alan)  # a filler is no phrase


def test_phrases_the_tokens_cannot_spell_are_reported() -> None:
    g = _Grammar(("alice", "zoe"), (), spelling("_alice", "_z"))
    assert g.problems == ("moonshine: 'zoe' cannot be spelled with the model's tokens",)


def test_denoise_removes_steady_noise_and_keeps_the_speech() -> None:
    rng = np.random.default_rng(1)
    t = np.arange(8000) / 8000
    tone = np.where((t > 0.4) & (t < 0.7), 8000 * np.sin(2 * np.pi * 440 * t), 0.0)
    noise = rng.normal(0, 300, len(t))
    cleaned = denoise(np.clip(tone + noise, -32768, 32767).astype(np.int16)).astype(np.float64)
    quiet, loud = slice(0, 3000), slice(3600, 5200)
    assert np.std(cleaned[quiet]) < 0.35 * np.std(noise[quiet])  # the noise-only stretch is mostly gone
    assert 0.8 < np.std(cleaned[loud]) / np.std(tone[loud]) < 1.2  # the tone is kept at its level


def test_speech_only_cuts_the_silence_around_a_name() -> None:
    pcm = call_audio("alice-johnson-us", lead=1.0, tail=1.0)
    name, _ = sf.read(DATA / "alice-johnson-us.wav", dtype="int16")
    kept = speech_only(pcm)
    assert len(name) - 2400 < len(kept) < len(name) + 2400  # within 0.3 s of the name's own length
    assert len(speech_only(np.zeros(8000, dtype=np.int16))) == 0


def test_a_folder_without_the_model_files_is_refused(tmp_path: Path) -> None:
    (tmp_path / "tokenizer.bin").write_bytes(b"")
    with pytest.raises(RecognizerError, match="not a Moonshine model folder .missing encoder_model.ort, decoder_model_merged.ort"):
        get_recognizer("moonshine", tmp_path)


def test_deployment_file_selects_moonshine(tmp_path: Path) -> None:
    from ivr.config import load_config

    path = tmp_path / "ivr.toml"
    path.write_text('[speech]\nengine = "moonshine"\n')
    assert (load_config(path).speech.engine, load_config(path).speech.model) == ("moonshine", None)


# ---------------------------------------------------------------- with the model


@pytest.mark.slow  # the model takes a few seconds to load
@needs_model
@pytest.mark.parametrize(
    ("fixture", "expected"),
    [
        ("alice-johnson-us", "alice johnson"),
        ("alice-johnson-gb", "alice johnson"),
        ("bob-miller-m3", "bob miller"),
        ("siobhan-kelly-gb", "siobhan kelly"),
        ("nguyen-van-minh", "nguyen van minh"),
    ],
)
def test_names_are_recognized(fixture: str, expected: str) -> None:
    text, confidence = recognize(STAFF, call_audio(fixture))
    assert text == expected
    assert 0.0 < confidence <= 1.0


@pytest.mark.slow
@needs_model
@pytest.mark.parametrize("fixture", ["leonard-dubois", "emma-wilson"])
def test_a_name_outside_the_directory_is_no_match(fixture: str) -> None:
    assert recognize(STAFF, call_audio(fixture)) == ("", 0.0)


@pytest.mark.slow
@needs_model
def test_silence_and_an_empty_session_are_no_match() -> None:
    assert recognize(STAFF, np.zeros(16000, dtype=np.int16)) == ("", 0.0)
    assert get_recognizer("moonshine").session(STAFF).finish() == ("", 0.0)


@pytest.mark.slow
@needs_model
def test_session_refuses_audio_after_finish_and_close_is_quiet() -> None:
    session = get_recognizer("moonshine").session(STAFF)
    session.finish()
    with pytest.raises(RecognizerError, match="accept.. after finish"):
        session.accept(np.zeros(160, dtype=np.int16))
    other = get_recognizer("moonshine").session(STAFF)
    other.accept(call_audio("alice-johnson-us")[:800])
    other.close()
    assert other.finish() == ("", 0.0)


@pytest.mark.slow
@needs_model
def test_sessions_decode_side_by_side_from_several_threads() -> None:
    import threading

    cases = {"alice-johnson-us": "alice johnson", "bob-miller-m3": "bob miller", "leonard-dubois": ""}
    results: dict[str, str] = {}

    def run(fixture: str) -> None:
        results[fixture] = recognize(STAFF, call_audio(fixture))[0]

    threads = [threading.Thread(target=run, args=(f,)) for f in cases]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert results == cases


@pytest.mark.slow
@needs_model
def test_converted_model_computes_what_the_ort_file_computes() -> None:
    import onnxruntime as ort

    model = default_model()
    assert model is not None
    audio = np.random.default_rng(5).normal(0, 0.05, (1, 8000)).astype(np.float32)
    original = ort.InferenceSession(str(model / "encoder_model.ort"), providers=["CPUExecutionProvider"])
    converted = ort.InferenceSession(onnx_model(model / "encoder_model.ort"), providers=["CPUExecutionProvider"])
    a = original.run(None, {"input_values": audio})[0]
    b = converted.run(None, {"input_values": audio})[0]
    assert a.shape == b.shape and np.allclose(a, b, atol=1e-4)



@pytest.mark.slow
@needs_model
def test_benchmark_runs_with_the_moonshine_engine() -> None:
    import re
    import subprocess
    import sys

    bench = Path(__file__).parent.parent.parent / "bench" / "directory_speech.py"
    done = subprocess.run(
        [sys.executable, str(bench), "--engine", "moonshine", "--quick", "--people", "6", "--outsiders", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    assert "utterances: 6 in directory, 2 outsiders" in done.stdout
    assert re.search(r"top-1 accuracy: +\d+\.\d%  \(\d/6\)", done.stdout)


# ---------------------------------------------------------------- early decode


def test_pauses_are_counted_only_after_the_caller_spoke() -> None:
    from ivr.media.asr_utterance import _Pauses

    pauses = _Pauses()
    assert pauses.feed(np.zeros(8000, np.int16)) is False
    assert not pauses.paused(0.2)  # silence before speech is no pause
    name = call_audio("bob-miller-m3", lead=0.0, tail=0.0)
    assert pauses.feed(name) is True and pauses.spoke
    assert pauses.feed(np.zeros(1600, np.int16)) is False
    assert pauses.paused(0.2)
    assert pauses.feed(name[:4000]) is True  # speaking again
    assert not pauses.paused(0.2)


@pytest.mark.slow
@needs_model
def test_the_early_decode_is_used_and_speech_after_it_makes_it_stale(monkeypatch: pytest.MonkeyPatch) -> None:
    pcm = call_audio("siobhan-kelly-gb", tail=0.6)
    session = get_recognizer("moonshine").session(STAFF)
    for i in range(0, len(pcm) - 159, 160):
        session.accept(pcm[i : i + 160])
    early = session._early  # noqa: SLF001 -- started during the trailing silence
    assert early is not None
    # the same name; the confidence differs a little (less trailing line noise to estimate it from)
    assert session.finish()[0] == recognize_late(pcm, monkeypatch)[0] == "siobhan kelly"
    assert early.done() and early.result().text == "siobhan kelly"
    session = get_recognizer("moonshine").session(STAFF)
    for i in range(0, len(pcm) - 159, 160):
        session.accept(pcm[i : i + 160])
    first = session._early  # noqa: SLF001
    session.accept(call_audio("bob-miller-m3", lead=0.0, tail=0.0)[:4000])  # the caller goes on
    assert first is not None and session._early is None  # noqa: SLF001
    session.close()


def recognize_late(pcm: np.ndarray, monkeypatch: pytest.MonkeyPatch) -> tuple[str, float]:
    from ivr.media import asr_utterance

    with monkeypatch.context() as m:
        m.setattr(asr_utterance, "EARLY_DECODE", None)
        return recognize(STAFF, pcm)
