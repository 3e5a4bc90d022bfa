"""Loading a flow: files and their includes -> parse -> check -> compile.

The single entry point the rest of ivr uses (``ivr serve``, ``ivr simulate``,
``ivr test``, ``ivr check``, ``ivr graph``).  A flow with errors is rejected
here, at load time, with every problem found (not just the first); warnings
travel on ``Program.warnings`` and fail the load only with ``strict=True``.

It knows the flow's files only: :mod:`ivr.runtime.deployment` wraps it with the
checks that need the deployment file and the prompt folders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ivr.dsl import ast, checks
from ivr.dsl.compiler import Compiler, Program, build_schedule, expand_hours, settings_from
from ivr.dsl.errors import Diagnostic, FlowError, SourcePos, sort_key
from ivr.dsl.parser import parse_text


@dataclass
class Sources:
    """The files of one flow in load order, their text, and what went wrong reading them."""

    files: list[ast.FlowFile] = field(default_factory=list)
    texts: dict[str, str] = field(default_factory=dict)
    diagnostics: list[Diagnostic] = field(default_factory=list)

    @property
    def items(self) -> list[ast.Item]:
        return [item for f in self.files for item in f.items]


def read_sources(paths: Sequence[str | Path]) -> Sources:
    """Parse the given files and, depth first, every file they include (each once)."""
    sources = Sources()
    seen: set[Path] = set()
    for path in paths:
        _read(Path(path), sources, seen, stack=[], at=None)
    return sources


def _read(
    path: Path, sources: Sources, seen: set[Path], stack: list[tuple[Path, str]], at: SourcePos | None
) -> None:
    real = path.resolve()
    reals = [r for r, _ in stack]
    if real in reals:
        shown = [name for _, name in stack[reals.index(real):]]
        cycle = " -> ".join([*shown, shown[0]])
        pos = at or SourcePos(str(path), 1, 1)
        sources.diagnostics.append(Diagnostic("error", f"include cycle: {cycle}", pos, "remove one of the includes"))
        return
    if real in seen:
        return  # included from two places: its steps are already in
    seen.add(real)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else "not UTF-8 text"
        if at is not None:
            sources.diagnostics.append(Diagnostic("error", f"cannot include \"{path}\": {reason}", at))
        else:
            sources.diagnostics.append(Diagnostic("error", f"cannot read flow file: {reason}", SourcePos(str(path), 1, 1)))
        return
    sources.texts[str(path)] = text
    try:
        flow = parse_text(text, str(path))
    except FlowError as exc:
        sources.diagnostics.extend(exc.diagnostics)
        return
    sources.files.append(flow)
    for item in flow.items:
        if isinstance(item, ast.Include):
            _read(path.parent / item.path, sources, seen, [*stack, (real, str(path))], item.pos)


ItemCheck = Callable[[Sequence[ast.Item]], list[Diagnostic]]
"""A check the caller adds to the flow's own (``ivr.runtime.deployment`` adds the deployment's)."""


def _analyse(
    paths: Sequence[str | Path], extra: Sequence[ItemCheck] = ()
) -> tuple[list[Diagnostic], Program | None, Sources]:
    sources = read_sources(paths)
    diagnostics = list(sources.diagnostics)
    if diagnostics or not sources.files:
        # A file that did not parse hides its steps: checking the rest would only add
        # "unknown step" noise about them.
        return diagnostics, None, sources
    items = sources.items
    settings = settings_from(items, {f.path: Path(f.path).parent for f in sources.files})
    schedules = {}
    for item in items:
        if isinstance(item, ast.HoursDef) and item.name not in schedules:
            schedules[item.name], problems = build_schedule(expand_hours(item), settings.timezone)
            diagnostics.extend(problems)
    diagnostics.extend(checks.check_items(items, settings))
    for check in extra:
        diagnostics.extend(check(items))
    entries: dict[str, str] = {}
    for item in items:
        if isinstance(item, ast.NumberEntry):
            for number in item.numbers:
                entries.setdefault(number, item.step)
    # Compiled even with errors (a name it cannot resolve becomes an error ending), so one run
    # also reports the loops and menus only the table shows.
    program = Compiler(items).compile(settings, schedules, entries, files=[f.path for f in sources.files])
    failed = any(d.severity == "error" for d in diagnostics)
    diagnostics.extend(checks.check_program(program, items, reachability=not failed))
    return diagnostics, None if failed else program, sources


def _ordered(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.severity != "error", *sort_key(d)))


def load_flow(
    paths: Sequence[str | Path], *, strict: bool = False, extra_checks: Sequence[ItemCheck] = ()
) -> Program:
    """Parse, check and compile a flow (its files and their includes); raises FlowError on errors.

    Warnings are kept on ``Program.warnings``; with ``strict`` they are errors.  ``extra_checks`` run
    on the AST next to the flow's own; checks that need the deployment (prompt files,
    extensions, mailboxes, trunks) are :func:`ivr.runtime.deployment.load_flow`'s.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    diagnostics, program, sources = _analyse(paths, extra_checks)
    diagnostics = _ordered(diagnostics)
    failing = [d for d in diagnostics if d.severity == "error" or strict]
    if failing or program is None:
        if strict:
            diagnostics = [d.as_error() for d in diagnostics]
        raise FlowError(diagnostics or [Diagnostic("error", "no flow files", SourcePos("<flow>", 1, 1))], sources.texts)
    return replace(program, warnings=tuple(diagnostics))


def check_flow(paths: Sequence[str | Path], *, extra_checks: Sequence[ItemCheck] = ()) -> list[Diagnostic]:
    """Every problem of a flow, errors first; never raises for problems in the flow itself.

    ``extra_checks`` run on the AST next to the flow's own (:mod:`ivr.runtime.deployment` passes the
    deployment's: prompt files, extensions, mailboxes, trunks, directories).
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    diagnostics, _, _ = _analyse(paths, extra_checks)
    return _ordered(diagnostics)


def flow_sources(paths: Sequence[str | Path]) -> dict[str, str]:
    """File -> text of a flow's files (for printing diagnostics with their source lines)."""
    return read_sources(paths).texts
