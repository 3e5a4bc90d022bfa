"""The documentation stays usable: a short README, links that resolve, benchmarks that exist."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCS = sorted((ROOT / "docs").glob("*.md"))
BENCHMARKS = ROOT / "docs" / "benchmarks.md"

LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = ("http://", "https://", "mailto:", "#")
BENCH_SCRIPT = re.compile(r"\bbench/[\w/.-]+?\.py\b")


def relative_links(page: Path) -> list[str]:
    """Targets of the page's markdown links that point into the repository (anchors dropped)."""
    targets = LINK.findall(page.read_text(encoding="utf-8"))
    return [t.split("#", 1)[0] for t in targets if not t.startswith(EXTERNAL)]


def broken_links(page: Path) -> list[str]:
    return [t for t in relative_links(page) if not (page.parent / t).exists()]


def test_the_readme_is_a_newcomers_page_under_150_lines() -> None:
    lines = README.read_text(encoding="utf-8").splitlines()
    assert len(lines) < 150, f"README.md has {len(lines)} lines; move details to docs/"


def test_the_readme_links_every_page_of_docs() -> None:
    linked = {(ROOT / t).resolve() for t in relative_links(README)}
    assert [p.name for p in DOCS if p.resolve() not in linked] == []


@pytest.mark.parametrize("page", [README, *DOCS], ids=lambda p: p.relative_to(ROOT).as_posix())
def test_every_relative_link_points_at_an_existing_file(page: Path) -> None:
    assert broken_links(page) == []


def test_a_missing_link_target_is_reported(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    (tmp_path / "there.md").write_text("x", encoding="utf-8")
    page.write_text(
        "[ok](there.md) [anchor](there.md#part) [web](https://example.org/x.md) [gone](docs/gone.md#a)",
        encoding="utf-8",
    )
    assert broken_links(page) == ["docs/gone.md"]


def test_every_bench_script_the_benchmarks_page_names_exists() -> None:
    named = set(BENCH_SCRIPT.findall(BENCHMARKS.read_text(encoding="utf-8")))
    assert named, "docs/benchmarks.md names no bench/*.py command"
    assert sorted(s for s in named if not (ROOT / s).is_file()) == []


def test_the_readmes_first_flow_and_its_tests_pass(tmp_path: Path) -> None:
    """README's "A first flow": the flow and the tests a newcomer copies pass as written."""
    import shutil

    from ivr.runtime.flowtest import run_test_file

    flow, tests = re.findall(r"```\n(.*?)```", README.read_text(encoding="utf-8"), re.S)[:2]
    shutil.copytree(ROOT / "flows", tmp_path / "flows")
    (tmp_path / "flows" / "hello.ivr").write_text(flow, encoding="utf-8")
    (tmp_path / "flows" / "hello.ivrtest").write_text(tests, encoding="utf-8")
    results = run_test_file(tmp_path / "flows" / "hello.ivrtest")
    assert len(results) == 2 and all(r.passed for r in results), [r.report() for r in results]
