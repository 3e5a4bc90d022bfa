"""What is wrong with a flow, and where: positions, diagnostics and the error that carries them.

Every problem the flow toolchain finds (syntax, checks, compile) becomes a
:class:`Diagnostic` pointing at ``file:line:col``; a flow with errors is rejected at
load time by raising :class:`FlowError` with all of them.  The text format is part
of the interface (``ivr check`` prints it and tests assert it)::

    flows/acme.ivr:12:11: error: unknown step 'suport'; did you mean 'support'?
        2 -> suport
             ^
      hint: steps are defined as `NAME:` at the start of a line
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

Severity = Literal["error", "warning"]


@dataclass(frozen=True)
class SourcePos:
    """A place in a flow file; lines and columns count from 1."""

    file: str
    line: int
    column: int
    end_line: int | None = None
    end_column: int | None = None

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


@dataclass(frozen=True)
class Diagnostic:
    """One problem found in a flow: an error rejects the flow, a warning does not (unless strict)."""

    severity: Severity
    message: str
    pos: SourcePos
    hint: str = ""

    def format(self, source_line: str | None = None) -> str:
        """``file:line:col: severity: message``, the source line and a caret, then the hint."""
        out = [f"{self.pos}: {self.severity}: {self.message}"]
        if source_line is not None:
            line = source_line.rstrip("\r\n")
            # Keep tabs in the caret's indentation so the caret lines up in any terminal.
            lead = "".join(c if c == "\t" else " " for c in line[: max(self.pos.column - 1, 0)])
            out.append(f"    {line}")
            out.append(f"    {lead}^")
        if self.hint:
            out.append(f"  hint: {self.hint}")
        return "\n".join(out)

    def as_error(self) -> Diagnostic:
        return Diagnostic("error", self.message, self.pos, self.hint)


def source_line(pos: SourcePos, sources: Mapping[str, str] | None = None) -> str | None:
    """The text of ``pos.line`` from ``sources`` (file -> text) or else from the file on disk."""
    text = (sources or {}).get(pos.file)
    if text is None:
        try:
            text = Path(pos.file).read_text(encoding="utf-8-sig", errors="replace")
        except OSError:
            return None
    lines = text.splitlines()
    if 1 <= pos.line <= len(lines):
        return lines[pos.line - 1]
    return None


def format_diagnostics(diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> str:
    """All diagnostics, each with its source line, separated by newlines."""
    return "\n".join(d.format(source_line(d.pos, sources)) for d in diagnostics)


def sort_key(d: Diagnostic) -> tuple[str, int, int, str]:
    return (d.pos.file, d.pos.line, d.pos.column, d.message)


class FlowError(Exception):
    """A flow that cannot be loaded; ``diagnostics`` holds every problem (errors first)."""

    def __init__(self, diagnostics: Iterable[Diagnostic], sources: Mapping[str, str] | None = None) -> None:
        self.diagnostics: list[Diagnostic] = list(diagnostics)
        self.sources: dict[str, str] = dict(sources or {})
        super().__init__(self.__str__())

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.diagnostics if d.severity == "error"]

    def __str__(self) -> str:
        return format_diagnostics(self.diagnostics, self.sources)
