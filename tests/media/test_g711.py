"""G.711 tables against the standard's fixed points and an independent codec (sox)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.clip import Clip, Cursor

ALL = np.arange(-32768, 32768).astype(np.int16)
CODECS = [(g711.PCMU, "u-law"), (g711.PCMA, "a-law")]


def test_fixed_points_of_the_standard() -> None:
    assert g711.encode(np.zeros(1, np.int16), g711.PCMU) == b"\xff"
    assert g711.encode(np.zeros(1, np.int16), g711.PCMA) == b"\xd5"
    assert list(g711.decode(b"\x00\x80\x7f\xff", g711.PCMU)) == [-32124, 32124, 0, 0]
    assert list(g711.decode(b"\x55\xd5\x2a\xaa", g711.PCMA)) == [-8, 8, -32256, 32256]
    assert g711.SILENCE == {g711.PCMU: 0xFF, g711.PCMA: 0xD5}


@pytest.mark.parametrize("pt, _name", CODECS)
def test_every_code_survives_decode_then_encode(pt: int, _name: str) -> None:
    codes = bytes(range(256))
    again = g711.encode(g711.decode(codes, pt), pt)
    if pt == g711.PCMU:  # 0x7F is "negative zero": it decodes to 0, which encodes as 0xFF
        assert again == codes.replace(b"\x7f", b"\xff")
    else:
        assert again == codes


@pytest.mark.parametrize("pt, _name", CODECS)
def test_quantisation_error_stays_within_one_step(pt: int, _name: str) -> None:
    decoded = g711.decode(g711.encode(ALL, pt), pt).astype(np.int32)
    error = np.abs(decoded - ALL.astype(np.int32))
    levels = np.unique(g711.decode(bytes(range(256)), pt).astype(np.int32))
    step = np.diff(levels)[np.clip(np.searchsorted(levels, ALL) - 1, 0, len(levels) - 2)]
    assert np.all(error <= step)
    assert np.abs(decoded - ALL.astype(np.int32)).mean() < 250
    # monotonic: a louder input never decodes quieter
    assert np.all(np.diff(decoded) >= 0)


def _sox(args: list[str], data: bytes, tmp: Path) -> bytes:
    src, dst = tmp / "in.raw", tmp / "out.raw"
    src.write_bytes(data)
    subprocess.run(
        ["sox", "-D", *args[:-1], str(src), *args[-1].split(), str(dst)], check=True, timeout=60
    )
    return dst.read_bytes()


@pytest.mark.skipif(shutil.which("sox") is None, reason="sox not installed")
@pytest.mark.parametrize("pt, name", CODECS)
def test_tables_agree_with_sox(pt: int, name: str, tmp_path: Path) -> None:
    ref_decode = _sox(["-t", "raw", "-r", "8000", "-e", name, "-b", "8", "-c", "1", "-t raw -e signed -b 16"],
                      bytes(range(256)), tmp_path)  # fmt: skip
    assert np.array_equal(np.frombuffer(ref_decode, "<i2"), g711.decode(bytes(range(256)), pt))
    ref_encode = _sox(["-t", "raw", "-r", "8000", "-e", "signed", "-b", "16", "-c", "1", f"-t raw -e {name}"],
                      ALL.astype("<i2").tobytes(), tmp_path)  # fmt: skip
    ours = np.frombuffer(g711.encode(ALL, pt), np.uint8)
    theirs = np.frombuffer(ref_encode, np.uint8)
    differ = ours != theirs
    # sox rounds to 13/14 bits where G.711 decision levels truncate: rare, and always a neighbour level
    assert differ.mean() < 0.02
    levels = np.unique(g711.decode(bytes(range(256)), pt))
    ours_index = np.searchsorted(levels, g711.decode(ours[differ].tobytes(), pt))
    theirs_index = np.searchsorted(levels, g711.decode(theirs[differ].tobytes(), pt))
    assert np.all(np.abs(ours_index - theirs_index) <= 1)  # 0: mu-law has two zero codes


def test_clip_frames_are_cached_slices_padded_with_silence() -> None:
    clip = Clip.tone(1000, 0.05)  # 400 samples: 2.5 frames, padded to 3
    assert clip.frames == 3
    assert clip.encoded(g711.PCMU) is clip.encoded(g711.PCMU)  # encoded once
    last = clip.frame(2, g711.PCMU)
    assert len(last) == 160 and last[80:] == b"\xff" * 80
    cursor = Cursor(clip)
    frames = [cursor.next_frame(g711.PCMA) for _ in range(4)]
    assert frames[3] is None and cursor.done
    looped = Cursor(clip, loop=True)
    assert [looped.next_frame(g711.PCMU) is not None for _ in range(7)] == [True] * 7
