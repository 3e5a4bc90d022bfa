"""What ``ivr serve`` imports before its first call: nothing is left to import during one.

Importing a module on the event loop compiles it (or reads its cached bytecode) while every
call's audio waits: the first call after a start stalled the loop for 25-30 ms in
``ivr.runtime.attended`` and ``ivr.runtime.transfer`` (docs/benchmarks.md).
:func:`ivr.runtime.prepare.warm` imports what a call needs.  A fresh interpreter wires the
server as ``ivr serve`` does, warms it, and places a whole call (set-up, prompt, RTP both ways,
a key, hang-up; the call of tests/runtime/test_gcwatch.py); no ``ivr`` module may be imported
after the warm-up.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]

SCRIPT = """
import asyncio, sys
from pathlib import Path

import tests.runtime.test_gcwatch as one_call
from ivr.runtime.prepare import warm

before: set[str] = set()
wire = one_call._server


def warmed(folder):
    wired = wire(folder)
    warm(wired.services, wired.services.program)
    before.update(name for name in sys.modules if name.startswith("ivr."))
    return wired


one_call._server = warmed
asyncio.run(one_call._one_call(Path(sys.argv[1])))
print(" ".join(sorted(name for name in sys.modules if name.startswith("ivr.") and name not in before)))
"""


def test_a_call_after_the_warm_up_imports_no_module(tmp_path: Path) -> None:
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT, str(tmp_path)],
        cwd=REPO, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == []
