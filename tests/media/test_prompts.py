"""PromptStore: confinement to the prompt folders, decoding any format to 8 kHz mono, the cache."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.media import g711
from ivr.media.prompts import PromptFormatError, PromptPathError, PromptStore, load_audio


def _tone(rate: int, seconds: float, channels: int = 1, freq: float = 440.0) -> np.ndarray:
    t = np.arange(int(rate * seconds)) / rate
    mono = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([mono] * channels, axis=1) if channels > 1 else mono


@pytest.fixture
def folders(tmp_path: Path) -> tuple[Path, Path, Path]:
    prompts, data, outside = tmp_path / "prompts", tmp_path / "data", tmp_path / "outside"
    for d in (prompts, data, outside):
        d.mkdir()
    (prompts / "menu").mkdir()
    soundfile.write(prompts / "menu" / "welcome.wav", _tone(8000, 1.0), 8000, subtype="PCM_16")
    soundfile.write(outside / "secret.wav", _tone(8000, 0.5), 8000, subtype="PCM_16")
    return prompts, data, outside


@pytest.mark.parametrize(
    ("fmt", "subtype", "rate", "channels", "suffix"),
    [
        ("WAV", "PCM_16", 44100, 2, ".wav"),
        ("WAV", "FLOAT", 16000, 1, ".wav"),
        ("FLAC", "PCM_16", 48000, 2, ".flac"),
        ("OGG", "VORBIS", 22050, 1, ".ogg"),
    ],
)
def test_any_format_rate_and_channels_become_8k_mono(
    tmp_path, fmt, subtype, rate, channels, suffix
):
    path = tmp_path / f"tone{suffix}"
    soundfile.write(path, _tone(rate, 1.0, channels), rate, format=fmt, subtype=subtype)
    clip = load_audio(path)
    assert clip.pcm.dtype == np.int16
    assert abs(clip.duration - 1.0) < 0.021  # padded to a whole 20 ms frame
    spectrum = np.abs(np.fft.rfft(clip.pcm[:8000].astype(float)))
    assert abs(np.argmax(spectrum) * 8000 / 8000 - 440) <= 2  # still a 440 Hz tone
    assert 0.4 * 32767 < np.max(np.abs(clip.pcm)) < 0.6 * 32767  # stereo mixed, not summed


def test_resolve_inside_folders_and_data(folders):
    prompts, data, _ = folders
    (data / "voicemail").mkdir()
    soundfile.write(data / "voicemail" / "greet.wav", _tone(8000, 0.2), 8000)
    store = PromptStore([prompts], data_dir=data)
    assert store.resolve("menu/welcome.wav") == (prompts / "menu" / "welcome.wav").resolve()
    assert store.resolve("data:voicemail/greet.wav") == (data / "voicemail" / "greet.wav").resolve()


def test_second_folder_searched_in_order(tmp_path, folders):
    prompts, _, _ = folders
    extra = tmp_path / "extra"
    extra.mkdir()
    soundfile.write(extra / "only-here.wav", _tone(8000, 0.2), 8000)
    store = PromptStore([prompts, extra])
    assert store.resolve("only-here.wav").parent == extra.resolve()


@pytest.mark.parametrize(
    ("path", "message"),
    [
        (
            "../outside/secret.wav",
            "prompt path '../outside/secret.wav' escapes the prompt folders: '..' is not allowed",
        ),
        ("menu/../../outside/secret.wav", "'..' is not allowed"),
        ("/etc/passwd", "absolute paths are not allowed"),
        ("data:../outside/secret.wav", "escapes the data folder: '..' is not allowed"),
    ],
)
def test_escapes_are_refused(folders, path, message):
    prompts, data, _ = folders
    with pytest.raises(PromptPathError) as info:
        PromptStore([prompts], data_dir=data).resolve(path)
    assert message in str(info.value)


def test_symlink_out_is_refused_symlink_in_is_fine(folders):
    prompts, _, outside = folders
    os.symlink(outside / "secret.wav", prompts / "leak.wav")
    os.symlink(outside, prompts / "linked-dir")
    os.symlink(prompts / "menu" / "welcome.wav", prompts / "alias.wav")
    store = PromptStore([prompts])
    for path in ("leak.wav", "linked-dir/secret.wav"):
        with pytest.raises(PromptPathError, match="a symlink leads to"):
            store.resolve(path)
    assert store.load("alias.wav").duration == pytest.approx(1.0, abs=0.02)


def test_missing_and_unreadable_files(folders):
    prompts, _, _ = folders
    (prompts / "broken.wav").write_bytes(b"RIFF\x00\x00\x00\x00WAVEnot really")
    store = PromptStore([prompts])
    with pytest.raises(
        FileNotFoundError, match="prompt 'nope.wav' not found in the prompt folders"
    ):
        store.load("nope.wav")
    with pytest.raises(PromptFormatError, match="broken.wav: not a readable audio file"):
        store.load("broken.wav")
    assert store.check("nope.wav") is not None
    assert "not a readable audio file" in (store.check("broken.wav") or "")
    assert store.check("menu/welcome.wav") is None
    with pytest.raises(PromptPathError):
        PromptStore([prompts]).resolve("data:x.wav")  # no data folder configured


def test_cache_one_clip_per_file_invalidated_by_mtime(folders):
    prompts, _, _ = folders
    store = PromptStore([prompts])
    first = store.load("menu/welcome.wav")
    assert store.load("menu/welcome.wav") is first
    first.encoded(g711.PCMU)
    assert store.load("menu/welcome.wav").encoded(g711.PCMU) is first.encoded(g711.PCMU)
    path = prompts / "menu" / "welcome.wav"
    soundfile.write(path, _tone(8000, 2.0), 8000, subtype="PCM_16")
    st = path.stat()
    os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns + 1_000_000_000))
    second = store.load("menu/welcome.wav")
    assert second is not first
    assert second.duration == pytest.approx(2.0, abs=0.02)


def test_audio_files_of_a_folder(folders):
    prompts, _, _ = folders
    soundfile.write(prompts / "menu" / "a.flac", _tone(8000, 0.1), 8000)
    (prompts / "menu" / "notes.txt").write_text("not audio")
    store = PromptStore([prompts])
    names = [p.name for p in store.audio_files("menu")]
    assert names == ["a.flac", "welcome.wav"]
    assert store.relative(store.resolve("menu/a.flac")) == "menu/a.flac"


def test_data_files_are_cached_in_a_bounded_lru(folders, monkeypatch):
    prompts, data, _ = folders
    monkeypatch.setattr("ivr.media.prompts.DATA_CACHE_SIZE", 2)
    for i in range(3):
        soundfile.write(data / f"m{i}.wav", _tone(8000, 0.1), 8000)
    store = PromptStore([prompts], data_dir=data)
    first = store.load("data:m0.wav")
    assert store.load("data:m0.wav") is first
    store.load("data:m1.wav")
    store.load("data:m0.wav")  # most recently used again
    store.load("data:m2.wav")  # evicts m1, the least recently used
    assert store.load("data:m0.wav") is first
    assert len(store._data_cache) == 2
