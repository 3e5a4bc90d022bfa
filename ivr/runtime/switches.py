"""The manual switches (``switch night`` in a flow): which ones the flows declare, where their positions live.

The positions are :mod:`ivr.storage.switches`'s: ``switches.json`` in the data folder when
embedded, the ``switches`` table (watched with LISTEN/NOTIFY) when the nodes share a
PostgreSQL database.  ``ivr serve`` reads them when a call starts
(:meth:`ivr.runtime.services.Services.switches`); ``ivr switch`` (:mod:`ivr.commands.switch`)
changes them.  :func:`declared_switches` names the switches a deployment's flows declare.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from ivr.dsl import ast
from ivr.dsl.loader import read_sources
from ivr.storage.switches import (
    SWITCH_NAME,
    SWITCHES_FILE,
    SwitchError,
    format_switches,
    read_switches,
    switches_path,
)

__all__ = ["SWITCHES_FILE", "SWITCH_NAME", "SwitchError", "declared_switches", "format_switches",
           "read_switches", "switches_path"]


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
