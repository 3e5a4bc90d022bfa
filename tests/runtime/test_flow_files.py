"""The flow tests in tests/runtime/flows, run with `ivr test` (in-process): each file's tests pass.

These flows try the caller's experience of features that have no place in the example flows of
flows/: ringing several targets from one step, the directory reached from a speech menu,
voicemail greetings chosen per step.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.cli import main

HERE = Path(__file__).resolve().parent / "flows"
TEST_FILES = sorted(HERE.glob("*.ivrtest"))


def test_the_flow_test_files_are_there() -> None:
    assert {p.name for p in TEST_FILES} >= {
        "ring_several.ivrtest", "directory_handover.ivrtest", "greetings.ivrtest",
    }


@pytest.mark.parametrize("test_file", TEST_FILES, ids=lambda p: p.name)
def test_ivr_test_passes(test_file: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["test", str(test_file)])
    out = capsys.readouterr().out
    assert code == 0, out
    assert out.splitlines()[-1].endswith("passed, 0 failed")
