"""The layers of ``ivr/``: every import arrow points down, and no modules import each other.

The rules (the architecture in issue 9):

* ``ivr.dsl`` knows no wire, audio, deployment, feature or CLI: it imports nothing from
  ``ivr.sip``, ``ivr.media``, ``ivr.runtime``, ``ivr.config``, ``ivr.voicemail``,
  ``ivr.directory``, ``ivr.commands``;
* ``ivr.sip`` imports no ``ivr.media``, ``ivr.runtime``, ``ivr.config``, ``ivr.dsl`` nor the
  features and the CLI; ``ivr.media`` no ``ivr.dsl``, ``ivr.runtime``, ``ivr.config``,
  ``ivr.sip`` nor the features and the CLI; ``ivr.language`` (the message catalogues) none of
  ``ivr.dsl``, ``ivr.sip``, ``ivr.media``, ``ivr.runtime``, ``ivr.config``, the features, the CLI;
* ``ivr.storage`` (where the state lives: SQLite files or a shared PostgreSQL) sits beside the
  runtime's other inputs: it may use ``ivr.config`` and ``ivr.sip``'s records, never
  ``ivr.runtime``, ``ivr.media``, ``ivr.dsl``, the features or the CLI; ``ivr.dsl``, ``ivr.sip``
  and ``ivr.media`` do not import it (the registrar takes its bindings through a protocol);
* ``ivr.web`` (the console) sits above the runtime and its features: nothing but the CLI
  imports it;
* only ``ivr.cli`` and ``ivr.commands.*`` import ``ivr.commands``;
* no import cycles between modules: the module graph (every import counts, at the top, in
  a function or under ``if TYPE_CHECKING:``) has no strongly connected component of two
  modules or more.

Imports are read with :mod:`ast`, never executed; relative imports are resolved, and
``from PACKAGE import NAME`` is an arrow to the submodule when NAME is one.

There are no exceptions: any arrow against the rules or any cycle fails, naming the file
and line of each import involved.
"""

from __future__ import annotations

import ast
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

import pytest

T = TypeVar("T")

PACKAGE = Path(__file__).resolve().parent.parent / "ivr"

FEATURES_AND_CLI = ("ivr.voicemail", "ivr.directory", "ivr.web", "ivr.commands")
# layer -> the layers it must not import.  ivr.web (the console, the HTTP API, /metrics) sits
# above the runtime and its features and below the CLI: only ivr.commands starts it.
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "ivr.dsl": ("ivr.sip", "ivr.media", "ivr.runtime", "ivr.config", "ivr.storage", *FEATURES_AND_CLI),
    "ivr.sip": ("ivr.media", "ivr.runtime", "ivr.config", "ivr.dsl", "ivr.storage", *FEATURES_AND_CLI),
    "ivr.media": ("ivr.dsl", "ivr.runtime", "ivr.config", "ivr.sip", "ivr.storage", *FEATURES_AND_CLI),
    "ivr.storage": ("ivr.runtime", "ivr.media", "ivr.dsl", *FEATURES_AND_CLI),
    # the message catalogues sit beside media: runtime, voicemail and the directory use them
    "ivr.language": ("ivr.dsl", "ivr.sip", "ivr.media", "ivr.runtime", "ivr.config", "ivr.storage", *FEATURES_AND_CLI),
    "ivr.runtime": ("ivr.web",),
    "ivr.voicemail": ("ivr.web",),
    "ivr.directory": ("ivr.web",),
}
CLI = "ivr.commands"
CLI_IMPORTERS = ("ivr.cli", "ivr.commands")
CLI_RULE = "only ivr.cli and ivr.commands import ivr.commands"


@dataclass(frozen=True)
class Import:
    """One import statement's arrow: ``importer`` (a module name) imports ``imported`` at ``path:line``."""

    importer: str
    imported: str
    path: str
    line: int

    @property
    def where(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Violation:
    """An import against one of the rules."""

    arrow: Import
    rule: str

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.arrow.importer, self.arrow.imported, self.rule)

    def __str__(self) -> str:
        a = self.arrow
        return f"{a.where}: {a.importer} imports {a.imported}: {self.rule}"


@dataclass(frozen=True)
class Cycle:
    """A strongly connected component of the module graph and one cycle through it."""

    members: frozenset[str]
    path: tuple[Import, ...]  # importer of each arrow, the last one's imported is the first importer

    def __str__(self) -> str:
        names = " -> ".join([a.importer for a in self.path] + [self.path[0].importer])
        lines = ", ".join(a.where for a in self.path)
        others = sorted(self.members - {a.importer for a in self.path})
        extra = f"; also in the cycle: {', '.join(others)}" if others else ""
        return f"import cycle: {names} ({lines}){extra}"


# --------------------------------------------------------------------------- reading the imports


def module_names(package: Path) -> dict[str, Path]:
    """Every module of the package by dotted name (a package is its ``__init__``)."""
    names = {}
    for path in sorted(package.rglob("*.py")):
        parts = path.relative_to(package.parent).with_suffix("").parts
        if parts[-1] == "__init__":
            parts = parts[:-1]
        names[".".join(parts)] = path
    return names


def resolve(name: str, modules: Iterable[str]) -> str:
    """The module ``name`` lands in: itself, or its longest prefix that is a module.

    A name of no module of the package (a missing one) keeps its first two parts, its layer.
    """
    known = set(modules)
    while name not in known and name.count(".") > 1:
        name = name.rsplit(".", 1)[0]
    return name


def imports_of(module: str, path: Path, modules: Mapping[str, Path], root: Path) -> list[Import]:
    """Every arrow of one module into the package, wherever the import statement sits."""
    top = next(iter(modules)).split(".")[0]
    is_package = path.name == "__init__.py"
    shown = str(path.relative_to(root))
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=shown)):
        if isinstance(node, ast.Import | ast.ImportFrom):
            for target in _targets(node, module, is_package, modules):
                if target == top or target.startswith(top + "."):
                    found.append(Import(module, resolve(target, modules), shown, node.lineno))
    return sorted(set(found), key=lambda a: (a.line, a.imported))


def _targets(node: ast.Import | ast.ImportFrom, module: str, is_package: bool, modules: Mapping[str, Path]) -> list[str]:
    """The modules one import statement names (``from P import M`` names P.M when it is a module)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names]
    base = _from_base(module, is_package, node)
    return [f"{base}.{a.name}" if f"{base}.{a.name}" in modules else base for a in node.names]


def _from_base(module: str, is_package: bool, node: ast.ImportFrom) -> str:
    """The absolute module of ``from X import ...`` (``from .x``, ``from ..``, ``from a.b``)."""
    if not node.level:
        return node.module or ""
    parts = module.split(".")
    keep = len(parts) - node.level + (1 if is_package else 0)
    base = ".".join(parts[:keep])
    return f"{base}.{node.module}" if node.module else base


def scan(package: Path) -> list[Import]:
    """Every import arrow between the modules of ``package`` (a directory)."""
    modules = module_names(package)
    return [
        arrow
        for name, path in modules.items()
        for arrow in imports_of(name, path, modules, package.parent)
    ]


# --------------------------------------------------------------------------- the rules


def layer(module: str) -> str:
    """``ivr.dsl.machine`` -> ``ivr.dsl``; ``ivr.config`` -> ``ivr.config``."""
    return ".".join(module.split(".")[:2])


def violations(arrows: Iterable[Import]) -> list[Violation]:
    found = []
    for arrow in arrows:
        source, target = layer(arrow.importer), layer(arrow.imported)
        if target in FORBIDDEN.get(source, ()):
            found.append(Violation(arrow, f"{source} imports nothing from {target}"))
        if target == CLI and source not in CLI_IMPORTERS:
            found.append(Violation(arrow, CLI_RULE))
    return found


def cycles(arrows: Iterable[Import]) -> list[Cycle]:
    """Each strongly connected component of two modules or more, with one cycle through it."""
    graph: dict[str, dict[str, Import]] = defaultdict(dict)
    for arrow in arrows:
        if arrow.importer != arrow.imported:
            graph[arrow.importer].setdefault(arrow.imported, arrow)
    found = [Cycle(members, _cycle_through(min(members), members, graph)) for members in _components(graph)]
    return sorted(found, key=lambda c: sorted(c.members))


def _components(graph: Mapping[str, Mapping[str, Import]]) -> set[frozenset[str]]:
    """The strongly connected components that hold a cycle: modules that reach each other.

    A hundred modules: the reachable set of each is cheap, and plainer than Tarjan's algorithm.
    """
    reach = {node: _reachable(node, graph) for node in graph}
    return {frozenset(m for m in reach[node] if node in reach.get(m, ())) for node in graph if node in reach[node]}


def _reachable(start: str, graph: Mapping[str, Mapping[str, Import]]) -> set[str]:
    """Every module ``start`` imports, directly or through others (itself only through a cycle)."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        for target in graph.get(todo.pop(), {}):
            if target not in seen:
                seen.add(target)
                todo.append(target)
    return seen


def _cycle_through(start: str, members: frozenset[str], graph: Mapping[str, Mapping[str, Import]]) -> tuple[Import, ...]:
    """The shortest cycle from ``start`` back to it inside one component (breadth first)."""
    came: dict[str, Import] = {}
    frontier = [start]
    while frontier:
        following = []
        for node in frontier:
            for target in sorted(graph.get(node, {})):
                if target not in members or target in came:
                    continue
                came[target] = graph[node][target]
                if target == start:
                    path = [came[start]]
                    while path[0].importer != start:
                        path.insert(0, came[path[0].importer])
                    return tuple(path)
                following.append(target)
        frontier = following
    raise AssertionError(f"{start} is in a component without a cycle through it")


# --------------------------------------------------------------------------- the tests of ivr/


@pytest.fixture(scope="module")
def arrows() -> list[Import]:
    return scan(PACKAGE)


def test_no_import_against_the_layers(arrows: list[Import]) -> None:
    found = sorted(str(v) for v in violations(arrows))
    assert not found, "imports against the layers:\n" + "\n".join(found)


def test_no_import_cycle(arrows: list[Import]) -> None:
    found = sorted(str(c) for c in cycles(arrows))
    assert not found, "import cycles:\n" + "\n".join(found)


def test_the_scan_sees_the_package(arrows: list[Import]) -> None:
    """A scan that found nothing would pass every rule: it must see the arrows we know exist."""
    pairs = {(a.importer, a.imported) for a in arrows}
    assert ("ivr.__main__", "ivr.cli") in pairs
    assert ("ivr.runtime.server", "ivr.runtime.call") in pairs
    assert ("ivr.dsl.loader", "ivr.dsl.parser") in pairs


# --------------------------------------------------------------------------- the checker itself


def _write(root: Path, files: Mapping[str, str]) -> Path:
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root / "ivr"


def test_checker_on_a_synthetic_package(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "ivr/__init__.py": "",
        "ivr/cli.py": "from ivr.commands import serve\n",
        "ivr/commands/__init__.py": "",
        "ivr/commands/serve.py": "from ..runtime import server\n",
        "ivr/dsl/__init__.py": "",
        "ivr/dsl/machine.py": "import os\n\n\ndef run():\n    from ivr.runtime.server import Server\n",
        "ivr/runtime/__init__.py": "",
        "ivr/runtime/server.py": "from . import refer\nfrom ivr.commands.serve import x\n",
        "ivr/runtime/refer.py": (
            "from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n"
            "    from .transfer import Session\n"
        ),
        "ivr/runtime/transfer.py": "import ivr.runtime.refer\nfrom ivr.dsl import machine\n",
        "ivr/sip/__init__.py": "from .ua import Agent\n",
        "ivr/sip/ua.py": "from ivr.media import session\n",
    })

    arrows = scan(package)

    assert [(a.importer, a.imported, a.where) for a in arrows if a.importer.startswith("ivr.runtime")] == [
        ("ivr.runtime.refer", "ivr.runtime.transfer", "ivr/runtime/refer.py:4"),
        ("ivr.runtime.server", "ivr.runtime.refer", "ivr/runtime/server.py:1"),
        ("ivr.runtime.server", "ivr.commands.serve", "ivr/runtime/server.py:2"),
        ("ivr.runtime.transfer", "ivr.runtime.refer", "ivr/runtime/transfer.py:1"),
        ("ivr.runtime.transfer", "ivr.dsl.machine", "ivr/runtime/transfer.py:2"),
    ]
    assert ("ivr.sip", "ivr.sip.ua") in {(a.importer, a.imported) for a in arrows}
    assert [str(v) for v in violations(arrows)] == [
        "ivr/dsl/machine.py:5: ivr.dsl.machine imports ivr.runtime.server: ivr.dsl imports nothing from ivr.runtime",
        "ivr/runtime/server.py:2: ivr.runtime.server imports ivr.commands.serve: "
        "only ivr.cli and ivr.commands import ivr.commands",
        "ivr/sip/ua.py:1: ivr.sip.ua imports ivr.media: ivr.sip imports nothing from ivr.media",
    ]
    assert [str(c) for c in cycles(arrows)] == [
        "import cycle: ivr.commands.serve -> ivr.runtime.server -> ivr.commands.serve "
        "(ivr/commands/serve.py:1, ivr/runtime/server.py:2); also in the cycle: ivr.dsl.machine, "
        "ivr.runtime.refer, ivr.runtime.transfer",
    ]


def test_checker_reports_a_two_module_cycle(tmp_path: Path) -> None:
    package = _write(tmp_path, {
        "ivr/__init__.py": "",
        "ivr/media/__init__.py": "",
        "ivr/media/asr.py": "def load():\n    from ivr.media.asr_moonshine import Moonshine\n",
        "ivr/media/asr_moonshine.py": "from ivr.media.asr import Recognizer\n",
        "ivr/media/vad.py": "from ivr.media import asr\n",
    })

    found = cycles(scan(package))

    assert [str(c) for c in found] == [
        "import cycle: ivr.media.asr -> ivr.media.asr_moonshine -> ivr.media.asr "
        "(ivr/media/asr.py:2, ivr/media/asr_moonshine.py:1)",
    ]
    assert violations(scan(package)) == []
