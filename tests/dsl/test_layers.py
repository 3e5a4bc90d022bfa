"""The flow language knows no deployment, wire or audio: ivr/dsl imports none of those layers."""

from __future__ import annotations

import ast
from pathlib import Path

DSL = Path(__file__).resolve().parents[2] / "ivr" / "dsl"
FORBIDDEN = ("ivr.config", "ivr.media", "ivr.sip", "ivr.runtime", "ivr.voicemail", "ivr.directory", "ivr.commands")
# The simulated call runner and the flow tests are moving into ivr/runtime (issue 9); until
# then they are the dsl modules that still read the deployment.
MOVING = {"simulate.py", "flowtest.py"}


def imported(path: Path) -> list[str]:
    names: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.extend(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.append(node.module)
    return names


def test_dsl_imports_no_layer_above_or_beside_it() -> None:
    found = {
        f"{path.name}: {name}"
        for path in sorted(DSL.glob("*.py"))
        if path.name not in MOVING
        for name in imported(path)
        if name == "ivr" or name.startswith(tuple(f + "." for f in FORBIDDEN)) or name in FORBIDDEN
    }
    assert found == set()
    assert len(list(DSL.glob("*.py"))) > len(MOVING)  # the glob found the package
