"""The manual switches (``switch night`` in a flow): which ones the flows declare, where their positions live.

The positions are :mod:`ivr.storage.switches`'s: ``switches.json`` in the data folder when
embedded, the ``switches`` table (watched with LISTEN/NOTIFY) when the nodes share a
PostgreSQL database.  ``ivr serve`` reads them when a call starts
(:meth:`ivr.runtime.services.Services.switches`; the file through a :class:`SwitchReader`,
which reads and parses it again only when its stat changed: one ``stat`` per call on the event
loop); ``ivr switch`` (:mod:`ivr.commands.switch`) and the console's API change them through :func:`switch_positions`, which picks the file or the
table.  :func:`write_switch` replaces the file atomically under a lock.
:func:`declared_switches` names the switches a deployment's flows declare.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.dsl import ast
from ivr.dsl.loader import read_sources
from ivr.runtime.atomic import StatCached, locked, write_text_atomically
from ivr.storage.switches import (
    SWITCH_NAME,
    SWITCHES_FILE,
    SwitchError,
    format_switches,
    read_switches,
    switches_path,
)

if TYPE_CHECKING:
    from ivr.storage import Storage

__all__ = ["SWITCHES_FILE", "SWITCH_NAME", "SwitchError", "declared_switches", "format_switches",
           "read_switches", "switch_positions", "switches_path", "SwitchReader", "write_switch"]

Read = Callable[[], dict[str, bool]]
Write = Callable[[str, bool], dict[str, bool]]


def switch_positions(data: Path, storage: Storage | None = None) -> tuple[Read, Write]:
    """How to read and set the positions: the shared database's table when ``storage`` has one
    (a flip is seen by every node at once), else ``switches.json`` in ``data``."""
    if storage is not None and storage.db is not None:
        from ivr.storage.switches import TableSwitches

        table = TableSwitches(storage.db)
        return table.read, table.set
    return (lambda: read_switches(data)), (lambda name, on: write_switch(data, name, on))


def write_switch(data: Path, name: str, on: bool) -> dict[str, bool]:
    """Set one switch and return all positions; the file is replaced atomically under a lock."""
    if not SWITCH_NAME.fullmatch(name):
        raise SwitchError(f"bad switch name {name!r}: use lower-case letters, digits and _")
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with locked(switches_path(data)):
        positions = read_switches(data)  # a corrupt file raises: never overwrite what we can't read
        positions[name] = on
        write_text_atomically(switches_path(data), format_switches(positions))
    return positions



class SwitchReader:
    """:func:`read_switches` for every call, re-reading the file only when its stat changed."""

    def __init__(self) -> None:
        self._given: Path | None = None
        self._data = Path()
        self._path = switches_path(self._data)
        self._cache: StatCached[dict[str, bool]] = StatCached(
            lambda: read_switches(self._data), lambda: self._path, dict
        )

    def read(self, data: Path) -> dict[str, bool]:
        if data != self._given:  # the same folder call after call: its path is made once
            self._given, self._data = data, Path(data)
            self._path = switches_path(self._data)
        return dict(self._cache.get())


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
