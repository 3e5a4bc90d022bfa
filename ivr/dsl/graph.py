"""A compiled flow as a picture: the state table rendered as Graphviz DOT.

One node per state (labelled with what it does; waiting states drawn as
boxes, the ends as double circles), one edge per transition labelled with its
event.  States are grouped in a cluster per step.  SVG/PNG come from the
Graphviz ``dot`` program.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

from ivr.dsl.compiler import EnterOp, FinishOp, Program


class GraphError(Exception):
    """Rendering failed (Graphviz missing or refusing the input); the message says why."""


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n") + '"'


def to_dot(program: Program, title: str = "flow") -> str:
    """The state machine as DOT text: nodes are states, edges are labelled transitions."""
    lines = [f"digraph {_quote(title)} {{", "  rankdir=LR;", '  node [fontname="Helvetica", fontsize=10];',
             '  edge [fontname="Helvetica", fontsize=9];']
    by_step: dict[str, list[str]] = {}
    for name, state in program.states.items():
        by_step.setdefault(state.step, []).append(name)
    for index, (step, names) in enumerate(by_step.items()):
        lines.append(f"  subgraph cluster_{index} {{")
        lines.append(f"    label={_quote(step)}; style=rounded; color=gray;")
        for name in names:
            state = program.states[name]
            if isinstance(state.op, FinishOp):
                shape = "doublecircle"
            elif isinstance(state.op, EnterOp):
                shape = "oval"
            elif state.waits:
                shape = "box"
            else:
                shape = "plaintext"
            label = state.op.describe()
            if state.waits:  # what the state waits for, under what it does
                label += "\n(" + ", ".join(state.waits) + ")"
            lines.append(f"    {_quote(name)} [label={_quote(label)}, shape={shape}];")
        lines.append("  }")
    for number, first in program.entries.items():
        entry = f"number {number}"
        lines.append(f"  {_quote(entry)} [shape=cds];")
        lines.append(f"  {_quote(entry)} -> {_quote(first)};")
    for name, state in program.states.items():
        for event, target in state.transitions.items():
            lines.append(f"  {_quote(name)} -> {_quote(target)} [label={_quote(event)}];")
    lines.append("}")
    return "\n".join(lines) + "\n"


def render(dot: str, out: Path) -> None:
    """Write ``dot`` to ``out``: as is for ``.dot``/``.gv``, through Graphviz for ``.svg``/``.png``/``.pdf``."""
    fmt = out.suffix.lower().lstrip(".")
    if fmt in ("dot", "gv"):
        out.write_text(dot, encoding="utf-8")
        return
    if fmt not in ("svg", "png", "pdf"):
        raise GraphError(f"unknown output format '.{fmt}'; use .dot, .svg, .png or .pdf")
    exe = shutil.which("dot")
    if exe is None:
        raise GraphError("Graphviz 'dot' is not installed; write .dot instead or install graphviz")
    try:
        proc = subprocess.run([exe, f"-T{fmt}", "-o", str(out)], input=dot.encode(), capture_output=True, timeout=120)
    except subprocess.TimeoutExpired:
        raise GraphError("Graphviz took longer than 120 s") from None
    if proc.returncode != 0:
        raise GraphError(f"Graphviz failed: {proc.stderr.decode(errors='replace').strip()}")
