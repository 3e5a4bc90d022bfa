"""``ivr graph``: the compiled state table as DOT, and SVG/PNG through Graphviz."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.dsl.graph import GraphError, render, to_dot
from ivr.dsl.loader import load_flow

FLOW = """\
number default -> welcome
menu welcome:
    ask "Press 1."
    1 -> sales
    invalid -> say "Sorry."
group sales:
    ring 201 for 20s
    else -> voicemail 200
"""


def write(tmp_path: Path) -> Path:
    path = tmp_path / "g.ivr"
    path.write_text(FLOW, encoding="utf-8")
    return path


def test_dot_has_states_and_labelled_transitions(tmp_path: Path) -> None:
    program = load_flow([write(tmp_path)])
    dot = to_dot(program, "g")
    assert dot.startswith('digraph "g" {')
    assert '"number default" -> "welcome";' in dot
    assert '"welcome.wait@2" -> "sales" [label="key:1"];' in dot
    assert '"welcome.wait@2" -> "welcome.say@5" [label="invalid"];' in dot
    assert '"welcome.say@5" -> "welcome.say@3" [label="next"];' in dot
    assert '"sales.ring@6" -> "sales.bridged@6" [label="answered"];' in dot
    # busy gets its own voicemail state (busy greeting); the other outcomes share one
    assert '"sales.ring@6" -> "sales.drain@8" [label="busy"];' in dot
    assert '"sales.ring@6" -> "sales.drain@8#2" [label="no_answer"];' in dot
    assert '"sales.ring@6" -> "sales.drain@8#2" [label="failed"];' in dot
    assert '"welcome.wait@2" [label="wait 5s for a choice\\n(key, speech, prompt_done, timer)", shape=box];' in dot
    # every transition of the table is an edge
    edges = sum(len(s.transitions) for s in program.states.values())
    assert dot.count("[label=") - len(program.states) == edges


def test_render_svg_png_and_pdf(tmp_path: Path) -> None:
    if shutil.which("dot") is None:
        pytest.skip("Graphviz is not installed")
    dot = to_dot(load_flow([write(tmp_path)]))
    render(dot, tmp_path / "g.svg")
    render(dot, tmp_path / "g.png")
    render(dot, tmp_path / "g.pdf")
    assert b"<svg" in (tmp_path / "g.svg").read_bytes()
    assert (tmp_path / "g.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert (tmp_path / "g.pdf").read_bytes()[:5] == b"%PDF-"


def test_render_rejects_unknown_formats(tmp_path: Path) -> None:
    with pytest.raises(GraphError, match=r"unknown output format '\.jpg'; use \.dot, \.svg, \.png or \.pdf"):
        render("digraph {}", tmp_path / "g.jpg")


def test_graph_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = write(tmp_path)
    assert main(["graph", str(flow), "-o", str(tmp_path / "out.dot")]) == 0
    assert '[label="key:1"]' in (tmp_path / "out.dot").read_text()
    bad = tmp_path / "bad.ivr"
    bad.write_text("number default -> nowhere\n")
    assert main(["graph", str(bad), "-o", str(tmp_path / "bad.dot")]) == 1
    assert "unknown step 'nowhere'" in capsys.readouterr().err
