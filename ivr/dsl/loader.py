"""Loading a flow: files and their includes -> parse -> check -> compile.

The single entry point the rest of ivr uses (``ivr serve``, ``ivr simulate``,
``ivr test``, ``ivr check``, ``ivr graph``).  A flow with errors is rejected
here, at load time, with every problem found (not just the first); warnings
travel on ``Program.warnings`` and fail the load only with ``strict=True``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path

from ivr.config import Config
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


def _analyse(
    paths: Sequence[str | Path], prompt_folders: Sequence[Path], config: Config | None = None
) -> tuple[list[Diagnostic], Program | None, Sources]:
    sources = read_sources(paths)
    diagnostics = list(sources.diagnostics)
    if diagnostics:
        # A file that did not parse hides its steps: checking the rest would only add
        # "unknown step" noise about them.
        return diagnostics, None, sources
    items = sources.items
    settings = settings_from(items, {f.path: Path(f.path).parent for f in sources.files})
    schedules = {}
    for item in items:
        if isinstance(item, ast.HoursDef) and item.name not in schedules:
            hours = expand_hours(item)
            default_tz = settings.timezone
            schedules[item.name], problems = build_schedule(hours, default_tz)
            diagnostics.extend(problems)
    diagnostics.extend(checks.check_items(items, settings, prompt_folders, [Path(f.path) for f in sources.files]))
    if config is not None:
        diagnostics.extend(checks.check_deployment(items, config))
    if any(d.severity == "error" for d in diagnostics) or not sources.files:
        return diagnostics, None, sources
    entries: dict[str, str] = {}
    for item in items:
        if isinstance(item, ast.NumberEntry):
            for number in item.numbers:
                entries.setdefault(number, item.step)
    program = Compiler(items).compile(settings, schedules, entries, files=[f.path for f in sources.files])
    diagnostics.extend(checks.check_program(program, items))
    return diagnostics, program, sources


def _ordered(diagnostics: list[Diagnostic]) -> list[Diagnostic]:
    unique = list(dict.fromkeys(diagnostics))
    return sorted(unique, key=lambda d: (d.severity != "error", *sort_key(d)))


def load_flow(paths: Sequence[str | Path], *, prompt_folders: Sequence[Path] = (), strict: bool = False) -> Program:
    """Parse, check and compile a flow (its files and their includes); raises FlowError on errors.

    Warnings are kept on ``Program.warnings``; with ``strict`` they are errors.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    diagnostics, program, sources = _analyse(paths, prompt_folders)
    diagnostics = _ordered(diagnostics)
    failing = [d for d in diagnostics if d.severity == "error" or strict]
    if failing or program is None:
        if strict:
            diagnostics = [d.as_error() for d in diagnostics]
        raise FlowError(diagnostics or [Diagnostic("error", "no flow files", SourcePos("<flow>", 1, 1))], sources.texts)
    return replace(program, warnings=tuple(diagnostics))


def check_flow(
    paths: Sequence[str | Path], *, prompt_folders: Sequence[Path] = (), config: Config | None = None
) -> list[Diagnostic]:
    """Every problem of a flow, errors first; never raises for problems in the flow itself.

    With ``config`` (a loaded deployment file) also warns about extensions, mailboxes and
    external numbers the flow uses that the deployment does not provide.
    """
    if isinstance(paths, str | Path):
        paths = [paths]
    diagnostics, _, _ = _analyse(paths, prompt_folders, config)
    return _ordered(diagnostics)


def flow_sources(paths: Sequence[str | Path]) -> dict[str, str]:
    """File -> text of a flow's files (for printing diagnostics with their source lines)."""
    return read_sources(paths).texts
