"""Test-only: start ``ivr serve`` with :data:`LOOP_GUARD` in its environment and it refuses, and reports
on stderr with :data:`MARK`, every database query made on its event loop once it serves calls
(``sitecustomize.py`` in this folder, which Python loads at start-up)."""

from __future__ import annotations

import os
from pathlib import Path

MARK = "LOOP GUARD:"
LOOP_GUARD = {
    "IVR_TEST_LOOP_GUARD": "1",
    "PYTHONPATH": os.pathsep.join(
        [str(Path(__file__).resolve().parent), *filter(None, os.environ.get("PYTHONPATH", "").split(os.pathsep))]
    ),
}


def refused(lines: list[str]) -> list[str]:
    """The guard's reports among a server's stderr lines."""
    return [line for line in lines if line.startswith(MARK)]
