"""WavRecorder and repair: end reasons, minimum length, and a real SIGKILL mid-recording."""

from __future__ import annotations

import os
import signal
import struct
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import soundfile
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.media.recording import (
    RecordingError,
    WavRecorder,
    drain_syncs,
    needs_repair,
    repair_all,
    repair_wav,
)

RATE = 8000


def _speech_like(seconds: float, freq: float = 300.0, level: float = 0.3) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    return (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)


def _frames(pcm: np.ndarray):
    for i in range(0, len(pcm), 160):
        yield pcm[i : i + 160]


def _feed(rec: WavRecorder, pcm: np.ndarray) -> str | None:
    reason = None
    for frame in _frames(pcm):
        reason = rec.write(frame)
        if reason:
            break
    return reason


def test_recording_is_a_pcm16_8k_mono_wav_with_what_was_written(tmp_path):
    audio = _speech_like(2.0)
    rec = WavRecorder(tmp_path / "m.wav", max_length=60)
    assert _feed(rec, audio) is None
    assert rec.close() == pytest.approx(2.0)
    data, rate = soundfile.read(tmp_path / "m.wav", dtype="int16")
    info = soundfile.info(str(tmp_path / "m.wav"))
    assert (rate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    assert np.array_equal(data, audio)
    assert not needs_repair(tmp_path / "m.wav")


def test_max_length_cuts_exactly(tmp_path):
    rec = WavRecorder(tmp_path / "m.wav", max_length=1.5)
    assert _feed(rec, _speech_like(3.0)) == "max_length"
    assert rec.write(_speech_like(0.02)) == "max_length"  # later audio ignored
    assert rec.close() == pytest.approx(1.5)
    assert soundfile.info(str(tmp_path / "m.wav")).frames == 12000


def test_silence_ends_the_recording_and_is_trimmed(tmp_path):
    rec = WavRecorder(tmp_path / "m.wav", max_length=60, silence=2.0)
    noise = (np.random.default_rng(1).normal(0, 30, int(5 * RATE))).astype(
        np.int16
    )  # about -60 dBFS
    assert _feed(rec, _speech_like(1.5)) is None
    assert _feed(rec, noise) == "silence"
    assert rec.samples == int(3.5 * RATE)  # stopped exactly when 2 s of silence had passed
    assert rec.close() == pytest.approx(1.8)  # speech plus 0.3 s of the silence kept


def test_loud_audio_never_ends_on_silence(tmp_path):
    rec = WavRecorder(tmp_path / "m.wav", max_length=60, silence=0.5)
    assert _feed(rec, _speech_like(3.0)) is None
    rec.close()


def test_shorter_than_min_length_stores_nothing(tmp_path):
    rec = WavRecorder(tmp_path / "m.wav", max_length=60, min_length=1.0)
    _feed(rec, _speech_like(0.5))
    assert rec.close() == 0.0
    assert not (tmp_path / "m.wav").exists()


def test_header_is_updated_every_second_while_recording(tmp_path):
    now = [0.0]
    rec = WavRecorder(tmp_path / "m.wav", max_length=60, clock=lambda: now[0])
    for i, frame in enumerate(_frames(_speech_like(3.0))):
        now[0] = i * 0.02
        rec.write(frame)
    # Without closing: the header was last rewritten at the 2 s mark, which a reader sees as-is.
    info = soundfile.info(str(tmp_path / "m.wav"))
    assert 2.0 <= info.duration < 3.0
    rec.close()


def test_fsync_every_second_off_the_calling_thread(tmp_path):
    now = [0.0]
    rec = WavRecorder(tmp_path / "m.wav", max_length=60, clock=lambda: now[0])
    assert rec.fsyncs == 1  # the empty file with its header
    for i, frame in enumerate(_frames(_speech_like(3.0))):
        now[0] = i * 0.02
        rec.write(frame)
    assert drain_syncs(timeout=10)
    # Requested at the 1 s and 2 s marks; the background thread may merge two requests into one.
    assert rec.fsyncs in (2, 3)
    inline = WavRecorder(
        tmp_path / "n.wav", max_length=60, clock=lambda: now[0], background_sync=False
    )
    now[0] += 1.0
    inline.write(_speech_like(0.02))
    assert inline.fsyncs == 2
    rec.close()
    inline.close()


def test_unwritable_path_is_a_clear_error(tmp_path):
    (tmp_path / "file").write_text("x")
    with pytest.raises(RecordingError, match="cannot record"):
        WavRecorder(tmp_path / "file" / "m.wav", max_length=1)


CHILD = textwrap.dedent(
    """
    import sys
    import numpy as np
    from ivr.media.recording import WavRecorder

    rec = WavRecorder(sys.argv[1], max_length=600)
    t = np.arange(160) / 8000
    frames = int(sys.argv[2])
    for i in range(frames):
        rec.write((np.sin(2 * np.pi * 300 * (t + i * 0.02)) * 9000).astype(np.int16))
    print(frames, flush=True)
    sys.stdin.read()  # mid-message: the recorder is still open when the parent kills us
    """
)


def test_sigkill_mid_recording_leaves_a_repairable_playable_file(tmp_path):
    path = tmp_path / "voicemail" / "200" / "msg.wav"
    proc = subprocess.Popen(
        [sys.executable, "-c", CHILD, str(path), "150"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "150"  # 3 s of audio handed to the recorder
        os.kill(proc.pid, signal.SIGKILL)
        assert proc.wait(timeout=10) == -signal.SIGKILL
    finally:
        if proc.poll() is None:
            proc.kill()
    assert needs_repair(path)
    assert repair_all(tmp_path) == [path]
    assert not needs_repair(path)
    data, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000
    assert abs(len(data) / 8000 - 3.0) <= 0.1
    assert np.max(np.abs(data)) > 8000
    assert repair_all(tmp_path) == []  # idempotent


def test_repair_drops_a_partial_sample_and_keeps_foreign_chunks(tmp_path):
    path = tmp_path / "x.wav"
    fmt = struct.pack("<IHHIIHH", 16, 1, 1, 8000, 16000, 2, 16)
    body = b"RIFF" + struct.pack("<I", 0) + b"WAVE" + b"fmt " + fmt
    body += b"LIST" + struct.pack("<I", 4) + b"INFO" + b"data" + struct.pack("<I", 0)
    path.write_bytes(body + b"\x01\x00" * 800 + b"\x07")
    assert repair_wav(path) == pytest.approx(0.1)
    assert soundfile.info(str(path)).frames == 800
    (tmp_path / "not.wav").write_bytes(b"hello")
    with pytest.raises(RecordingError, match="not a WAV file"):
        repair_wav(tmp_path / "not.wav")


@settings(
    max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(data=st.binary(max_size=300), head=st.booleans())
def test_repair_of_any_bytes_repairs_or_raises_recording_error(tmp_path, data, head):
    """Whatever a crash (or a stranger) left under a .wav name: repaired, or our error; never anything else."""
    path = tmp_path / "fuzz.wav"
    prefix = b"RIFF\x00\x00\x00\x00WAVE" if head else b""
    path.write_bytes(prefix + data)
    try:
        duration = repair_wav(path)
    except RecordingError:
        return
    assert duration >= 0
    assert not needs_repair(path)
