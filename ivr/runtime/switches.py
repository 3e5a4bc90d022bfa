"""The manual switches' positions (``switch night`` in a flow): the file ``ivr switch`` writes and calls read.

The positions live in ``switches.json`` in the data folder, an object of true/false values such as
``{"night": true}``; a missing file means every switch is off.  ``ivr serve`` reads the
positions when a call starts through a :class:`SwitchReader` (the file is read and parsed again
only when it changed: one ``stat`` per call on the event loop, not an open, read and parse);
``ivr switch`` (:mod:`ivr.commands.switch`) replaces it atomically.  :func:`declared_switches` names the switches a deployment's flows declare.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from pathlib import Path

from ivr.dsl import ast
from ivr.dsl.loader import read_sources

SWITCHES_FILE = "switches.json"
SWITCH_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class SwitchError(Exception):
    """A switch file or name that cannot be used; the message names the file or the name."""


def switches_path(data: Path) -> Path:
    return Path(data) / SWITCHES_FILE


def read_switches(data: Path) -> dict[str, bool]:
    """Switch positions from the data folder; a missing file means every switch is off."""
    path = switches_path(data)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SwitchError(f"{path}: cannot read switch positions: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, bool) for v in raw.values()):
        raise SwitchError(f'{path}: expected an object of true/false values like {{"night": true}}')
    return {str(k): v for k, v in raw.items()}


class SwitchReader:
    """:func:`read_switches` for every call, re-reading the file only when its stat changed."""

    def __init__(self) -> None:
        self._stamp: tuple[int, int, int] | None = None
        self._positions: dict[str, bool] = {}

    def read(self, data: Path) -> dict[str, bool]:
        try:
            st = switches_path(data).stat()
        except FileNotFoundError:
            self._stamp = None
            return {}
        stamp = (st.st_mtime_ns, st.st_size, st.st_ino)  # ivr switch renames a new file into place
        if stamp != self._stamp:
            self._positions = read_switches(data)
            self._stamp = stamp
        return dict(self._positions)


def format_switches(positions: dict[str, bool]) -> str:
    """The file's text for ``positions``."""
    return json.dumps(positions, indent=2, sort_keys=True) + "\n"


def declared_switches(flows: Sequence[Path]) -> tuple[str, ...] | None:
    """The switches the flows declare (``switch night``), in order; None if the flows cannot be read.

    Only read and parsed, not checked: a flow with a mistake elsewhere still names its switches.
    """
    if not flows:
        return None
    sources = read_sources(list(flows))
    if sources.diagnostics:
        return None
    return tuple(dict.fromkeys(i.name for i in sources.items if isinstance(i, ast.SwitchDecl)))
