"""ivr.sip stands alone: it imports no config, media, runtime or flow code (it takes its own records)."""

from __future__ import annotations

import ast
from pathlib import Path

SIP = Path(__file__).resolve().parents[2] / "ivr" / "sip"
FORBIDDEN = ("ivr.config", "ivr.media", "ivr.runtime", "ivr.dsl", "ivr.voicemail", "ivr.directory", "ivr.commands")


def imported(path: Path) -> set[str]:
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
    return names


def test_sip_imports_only_sip_and_the_standard_library() -> None:
    wrong = {
        f"{path.name} imports {name}"
        for path in sorted(SIP.glob("*.py"))
        for name in imported(path)
        if name.startswith(FORBIDDEN)
    }
    assert wrong == set()
    assert imported(SIP / "ua.py") >= {"ivr.sip.events", "ivr.sip.info"}  # the walk does see our imports
