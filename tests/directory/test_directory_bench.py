"""The speech benchmark runs end to end (synthesis, G.711, noise, VAD, recognizer) on a small set.

Figures are the benchmark's business (docs/benchmarks.md); this only checks it runs and reports them.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).parent.parent.parent / "bench" / "directory_speech.py"


@pytest.mark.slow
def test_benchmark_runs_and_prints_its_figures() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--quick", "--people", "8", "--outsiders", "3"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert "utterances: 8 in directory, 3 outsiders" in out
    assert re.search(r"top-1 accuracy: +\d+\.\d%  \(\d+/8\)", out)
    assert re.search(r"false accepts: +\d+\.\d%  \(\d/3\)", out)
    assert re.search(r"latency after end of speech: mean \d+\.\d ms, p95 \d+\.\d ms", out)
    # the default engine is the combination: each engine alone, then both, and the whole dialogue
    assert [line for line in out.splitlines() if line.startswith("== ")] == ["== pocketsphinx", "== moonshine", "== combined"]
    assert re.search(r"\[held-out, confirm\] dialogue: right transfer \d+\.\d% \(after \d\.\d\d utterances\), wrong transfers", out)
    assert "combined thresholds on the tuning split" in out
    assert re.search(r"peak memory \(RSS\): \d+ MB", out)


@pytest.mark.slow
def test_benchmark_of_the_whisper_engine_prints_its_margin_curve() -> None:
    done = subprocess.run(
        [sys.executable, str(BENCH), "--engine", "whisper", "--quick", "--people", "4", "--outsiders", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert [line for line in out.splitlines() if line.startswith("== ")] == ["== whisper"]
    assert "utterances: 4 in directory, 2 outsiders" in out
    assert "whisper margin over its rival on the tuning split: top-1 / wrong / strangers accepted" in out
    assert re.search(r"^  -2: \d+\.\d/\d+\.\d/\d+\.\d$", out, re.MULTILINE)
