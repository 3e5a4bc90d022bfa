"""The manual switches' positions (``switch night`` in a flow): the file ``ivr switch`` writes and calls read.

The positions live in ``switches.json`` in the data folder, an object of true/false values such as
``{"night": true}``; a missing file means every switch is off.  ``ivr serve`` reads the file with
:func:`read_switches` when a call starts; ``ivr switch`` (:mod:`ivr.commands.switch`) replaces it
atomically with :func:`write_switch` (the console's API too).  :func:`declared_switches` names the switches a deployment's flows declare.
"""

from __future__ import annotations

import fcntl
import json
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

from ivr.dsl import ast
from ivr.dsl.loader import read_sources
from ivr.runtime.atomic import write_text_atomically

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


def write_switch(data: Path, name: str, on: bool) -> dict[str, bool]:
    """Set one switch and return all positions; the file is replaced atomically under a lock."""
    if not SWITCH_NAME.fullmatch(name):
        raise SwitchError(f"bad switch name {name!r}: use lower-case letters, digits and _")
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with _locked(data):
        positions = read_switches(data)  # a corrupt file raises: never overwrite what we can't read
        positions[name] = on
        write_text_atomically(switches_path(data), format_switches(positions))
    return positions


@contextmanager
def _locked(data: Path) -> Iterator[None]:
    with open(data / (SWITCHES_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)
