"""Text to AST: the lark parser behind a facade that speaks in our diagnostics.

Owns the grammar (``grammar.lark``), the indentation post-lexer and the
translation of lark's exceptions into :class:`~ivr.dsl.errors.Diagnostic` with
``file:line:col`` and a friendly message ("missing ':' after the step name
'welcome'", "a duration needs a unit"), never raw token names.  Everything
that is not a syntax error is left to :mod:`ivr.dsl.checks`.
"""

from __future__ import annotations

import dataclasses
import difflib
import re
import threading
from collections.abc import Iterator
from functools import lru_cache
from pathlib import Path
from typing import Any, cast

from lark import Lark, Token, Transformer, Tree, v_args
from lark.exceptions import (
    LarkError,
    UnexpectedCharacters,
    UnexpectedEOF,
    UnexpectedInput,
    UnexpectedToken,
)
from lark.indenter import Indenter

from ivr.dsl import ast
from ivr.dsl.errors import Diagnostic, FlowError, SourcePos

GRAMMAR = Path(__file__).with_name("grammar.lark")

# Human names for the grammar's named terminals (string terminals show as 'text').
TERMINAL_NAMES = {
    "NAME": "a name",
    "STRING": 'a string in double quotes',
    "NUMBER": "a number",
    "INT": "a whole number",
    "DURATION": "a duration like 6s",
    "KEY": "a key (0-9, *, #, A-D)",
    "VARREF": "a {variable}",
    "TZNAME": "a time zone like Europe/Zurich",
    "VOICENAME": "a voice name like en-us",
    "LANGNAME": "a language like en",
    "REGION": "a holiday region like CH-ZH",
    "DAY": "a weekday like mon",
    "TIME": "a time like 08:00",
    "DATE": "a date like 2026-12-24",
    "COMPARE": "a comparison (==, !=, <, <=, >, >=)",
    "STATE": "open, closed, on or off",
    "SPEECH": "'speech'",
    "DEFAULT": "'default'",
    "THEN": "'then'",
    "EACH": "'each'",
    "_NL": "the end of the line",
    "_INDENT": "an indented block",
    "_DEDENT": "the end of the block",
    "$END": "the end of the file",
}

# Words that start a line at file level and inside steps: for "did you mean" on typos.
TOP_KEYWORDS = (
    "include", "timezone", "voice", "language", "hold", "directory", "switch", "number",
    "hours", "menu", "collect", "group", "sub",
)
STMT_KEYWORDS = (
    "say", "play", "set", "when", "otherwise", "goto", "call", "return", "hold", "record",
    "transfer", "directory", "voicemail", "conference", "hangup", "ask", "wait", "retry", "digits", "end",
    "into", "then", "ring", "music", "invalid", "exhausted",
)


class _IndentError(LarkError):
    def __init__(self, line: int, column: int) -> None:
        super().__init__("bad indentation")
        self.line = line
        self.column = column


class FlowIndenter(Indenter):
    """Python-style INDENT/DEDENT tokens; a dedent to a column no block started at is an error."""

    NL_type = "_NL"
    OPEN_PAREN_types: list[str] = []  # a flow line never continues on the next line
    CLOSE_PAREN_types: list[str] = []
    INDENT_type = "_INDENT"
    DEDENT_type = "_DEDENT"
    tab_len = 4

    def handle_NL(self, token: Token) -> Iterator[Token]:
        indent = len(token.rsplit("\n", 1)[1])
        if indent < self.indent_level[-1] and indent not in self.indent_level:
            raise _IndentError(token.end_line or 0, indent + 1)
        yield from super().handle_NL(token)


# Lark's indenter keeps its indentation stack on the parser, so one parse at a time: the flows are
# parsed from several threads (a reload's worker, the flow tests, a console check).
_PARSE_LOCK = threading.Lock()


@lru_cache(maxsize=1)
def _lark() -> Lark:
    return Lark(
        GRAMMAR.read_text(encoding="utf-8"),
        parser="lalr",
        lexer="contextual",
        postlex=FlowIndenter(),
        propagate_positions=True,
        maybe_placeholders=False,
    )


def parse_text(text: str, file: str = "<flow>") -> ast.FlowFile:
    """Parse one flow file's text; raises FlowError (with one syntax diagnostic) on bad syntax."""
    tab = _tab_indent(text, file)
    if tab is not None:
        raise FlowError([tab], {file: text})
    # Old Mac line ends and a stray BOM are not worth an error; columns stay as in the file.
    source = text.removeprefix("\ufeff").replace("\r\n", "\n").replace("\r", "\n")
    source = source if source.endswith("\n") else source + "\n"
    try:
        with _PARSE_LOCK:
            tree = _lark().parse(source)
    except _IndentError as exc:
        diag = Diagnostic(
            "error",
            "bad indentation: this line does not line up with any enclosing block",
            SourcePos(file, exc.line, exc.column),
            "indent the statements of a block by the same number of spaces",
        )
        raise FlowError([diag], {file: text}) from None
    except UnexpectedInput as exc:
        raise FlowError([_syntax_diagnostic(exc, text, file)], {file: text}) from None
    try:
        items = AstBuilder(file).transform(tree)
    except RecursionError:
        items = None
    deep = _too_deep(items, file, text)
    if deep is not None:
        raise FlowError([deep], {file: text}) from None
    return ast.FlowFile(pos=SourcePos(file, 1, 1), path=file, items=tuple(items or ()))


MAX_DEPTH = 100  # nesting of conditions, else-chains and outcome blocks; keeps every later pass far from Python's stack limit


def _too_deep(items: list[Any] | None, file: str, text: str) -> Diagnostic | None:
    """The first item nested deeper than MAX_DEPTH (measured without recursion), if any."""
    hint = "split it into several steps"
    if items is None:  # the tree itself was too deep to build: blame the longest line
        lines = text.splitlines() or [""]
        number = max(range(len(lines)), key=lambda i: len(lines[i])) + 1
        return Diagnostic("error", f"nested more than {MAX_DEPTH} levels deep", SourcePos(file, number, 1), hint)
    for item in items:
        stack: list[tuple[Any, int]] = [(item, 0)]
        while stack:
            node, depth = stack.pop()
            if depth > MAX_DEPTH:
                pos = getattr(node, "pos", None) or item.pos
                return Diagnostic("error", f"nested more than {MAX_DEPTH} levels deep", pos, hint)
            children = node if isinstance(node, tuple) else (
                [getattr(node, f) for f in node.__dataclass_fields__] if isinstance(node, ast.Node) else ()
            )
            step = 0 if isinstance(node, tuple) else 1
            stack.extend((child, depth + step) for child in children if isinstance(child, ast.Node | tuple))
    return None


def parse_file(path: str | Path) -> ast.FlowFile:
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise FlowError([Diagnostic("error", f"cannot read flow file: {reason}", SourcePos(str(path), 1, 1))]) from None
    return parse_text(text, str(path))


def _tab_indent(text: str, file: str) -> Diagnostic | None:
    for number, line in enumerate(text.splitlines(), 1):
        lead = line[: len(line) - len(line.lstrip(" \t"))]
        if "\t" in lead and line.strip() and not line.lstrip().startswith("#"):
            return Diagnostic(
                "error",
                "tab in indentation",
                SourcePos(file, number, lead.index("\t") + 1),
                "indent with spaces (4 recommended)",
            )
    return None


# --------------------------------------------------------------------------- friendly syntax errors


def _describe_expected(expected: set[str]) -> str:
    names = sorted({_terminal_name(t) for t in expected if t not in ("COMMENT",)})
    if not names:
        return "something else"
    if len(names) > 8:
        names = names[:8] + ["..."]
    if len(names) == 1:
        return names[0]
    return ", ".join(names[:-1]) + " or " + names[-1]


def _terminal_name(name: str) -> str:
    if name in TERMINAL_NAMES:
        return TERMINAL_NAMES[name]
    for term in _lark().terminals:
        if term.name == name and term.pattern.type == "str":
            return f"'{term.pattern.value}'"
    return name.lower()


def _found(token: Token) -> str:
    if token.type in ("_NL", "$END"):
        return "end of line"
    if token.type == "_INDENT":
        return "an indented block"
    if token.type == "_DEDENT":
        return "end of block"
    return f"'{token.value}'"


def _syntax_diagnostic(exc: UnexpectedInput, text: str, file: str) -> Diagnostic:
    lines = text.splitlines()
    line_no = max(getattr(exc, "line", 1) or 1, 1)
    column = max(getattr(exc, "column", 1) or 1, 1)
    if isinstance(exc, UnexpectedToken) and exc.token.type in ("_NL", "_INDENT", "_DEDENT", "$END"):
        # An unexpected end of line is reported where the line ends, not where the next one starts.
        line_no, column = _end_of_previous_line(lines, exc.token)
    previous = _last_code_line(lines, line_no - 1) if line_no > 1 else 0
    if (
        isinstance(exc, UnexpectedToken)
        and column == 1
        and previous
        and _strip_comment(lines[previous - 1]).rstrip().endswith(":")
    ):
        # `s:` followed by a line that is not indented: the block is empty.
        code = _strip_comment(lines[previous - 1]).rstrip()
        return Diagnostic(
            "error",
            "expected an indented block after this line",
            SourcePos(file, previous, len(code) + 1),
            "indent the block's lines under it, e.g. by 4 spaces",
        )
    line = lines[line_no - 1] if 0 < line_no <= len(lines) else ""
    pos = SourcePos(file, line_no, column)
    message, hint = _explain(exc, line, column, lines, line_no)
    words = _strip_comment(line).split()
    if words and message.startswith(f"unknown keyword '{words[0]}'"):
        pos = SourcePos(file, line_no, len(line) - len(line.lstrip()) + 1)  # point at the word itself
    return Diagnostic("error", message, pos, hint)


def _end_of_previous_line(lines: list[str], token: Token) -> tuple[int, int]:
    if token.type in ("_INDENT",):
        line_no = token.end_line or len(lines)
        return line_no, (token.end_column or 1)
    line_no = token.line if token.type == "_NL" and token.line else len(lines)
    if token.type in ("_DEDENT", "$END"):
        line_no = _last_code_line(lines, (token.line or len(lines)))
    line_no = min(max(line_no, 1), max(len(lines), 1))
    code = _strip_comment(lines[line_no - 1]) if lines else ""
    return line_no, len(code.rstrip()) + 1


def _last_code_line(lines: list[str], upto: int) -> int:
    for n in range(min(upto, len(lines)), 0, -1):
        if _strip_comment(lines[n - 1]).strip():
            return n
    return 1


def _strip_comment(line: str) -> str:
    m = re.search(r"(?<!\bend )(?<!\bor )#(?![ \t]*(->|or\b|,))", line)
    in_string = False
    for i, c in enumerate(line):
        if c == '"' and (i == 0 or line[i - 1] != "\\"):
            in_string = not in_string
        if m and i == m.start() and not in_string:
            return line[:i]
    return line


def _explain(exc: UnexpectedInput, line: str, column: int, lines: list[str], line_no: int) -> tuple[str, str]:
    words = _strip_comment(line).split()
    first = words[0] if words else ""
    if isinstance(exc, UnexpectedCharacters):
        return _explain_characters(exc, line, column, first)
    if isinstance(exc, UnexpectedToken):
        return _explain_token(exc, line, first, _block_kind(lines, line_no))
    if isinstance(exc, UnexpectedEOF):
        return "unexpected end of file", ""
    return "syntax error", ""


def _explain_characters(exc: UnexpectedCharacters, line: str, column: int, first: str) -> tuple[str, str]:
    char = exc.char
    expected = set(exc.allowed or ())
    rest = line[column - 1 :]
    if char == '"' and '"' not in rest[1:]:
        return "unterminated string", 'close the string with " on the same line'
    if "DURATION" in expected and re.match(r"\d+(\.\d+)?\b", rest):
        number = re.match(r"\d+(\.\d+)?", rest)
        value = number.group(0) if number else "6"
        return f"a duration needs a unit: write {value}s, {value}ms or {value}m", ""
    keyword = _keyword_typo(first)
    if keyword:
        return keyword
    if char.isupper() and ("NAME" in expected or not expected):
        return f"unexpected '{char}': names are lower-case", "write names with a-z, 0-9 and _"
    return f"unexpected character '{char}'; expected {_describe_expected(expected)}", ""


def _keyword_typo(first: str) -> tuple[str, str] | None:
    """``sya "hi"`` or ``timezon UTC``: a first word that is no keyword but close to one."""
    if not first or first in TOP_KEYWORDS or first in STMT_KEYWORDS or not re.fullmatch(r"[a-z_]+", first):
        return None
    close = difflib.get_close_matches(first, sorted(set(TOP_KEYWORDS + STMT_KEYWORDS)), n=1, cutoff=0.6)
    if close:
        return f"unknown keyword '{first}'; did you mean '{close[0]}'?", ""
    return None


def _block_kind(lines: list[str], line_no: int) -> str:
    """What the block around ``line_no`` is: menu, collect, group, hours, sub or step."""
    for n in range(min(line_no, len(lines)), 0, -1):
        code = _strip_comment(lines[n - 1])
        if code.strip() and not code[0].isspace():
            word = code.split()[0].rstrip(":")
            return word if word in ("menu", "collect", "group", "hours", "sub") else "step"
    return "file"


@lru_cache(maxsize=1)
def _keywords() -> frozenset[str]:
    return frozenset(
        t.pattern.value for t in _lark().terminals if t.pattern.type == "str" and t.pattern.value.isalpha()
    )


_BLOCK_LINES = {
    "menu": "a menu has prompts (say, play, ask), wait/retry, options like `1 -> sales` and "
            "invalid/no input/exhausted lines; actions go after `->`",
    "collect": "a collect has prompts, digits, wait, into, `then -> STEP` and invalid/no input/exhausted lines",
    "group": "a group has ring lines, music and outcome lines like `busy -> STEP`",
    "hours": "an hours block has weekday ranges, closed/open dates, holidays and `closed when SWITCH`",
    "step": "a step has statements: say, play, set, when, otherwise, ->, call, transfer, voicemail, hangup ...",
    "sub": "a sub-flow has statements: say, play, set, when, ->, call, return, transfer, voicemail ...",
    "outcome block": "outcome lines look like `busy, no answer -> voicemail 300` or `else -> STEP`",
    "file": "at file level: settings, number lines and blocks (`NAME:`, `menu NAME:` ...)",
}


def _explain_token(exc: UnexpectedToken, line: str, first: str, block: str = "step") -> tuple[str, str]:
    token = exc.token
    expected = set(exc.expected or ())
    indent = len(line) - len(line.lstrip())
    at_start = token.column == indent + 1
    value = str(token.value)
    if token.type == "_INDENT":
        return (
            "unexpected indentation",
            "only the lines of a block (after a line ending with ':') or an outcome block are indented",
        )
    if expected == {"_INDENT"}:
        return "expected an indented block after this line", "indent the block's lines under it, e.g. by 4 spaces"
    typo = _keyword_typo(first) if "COLON" in expected else None
    if typo:
        return typo
    if "COLON" in expected and token.type in ("_NL", "$END"):
        name = first if first not in TOP_KEYWORDS else (line.split()[1] if len(line.split()) > 1 else first)
        return f"missing ':' after the step name '{name.rstrip(':')}'", "a step starts with its name and a colon, e.g. `welcome:`"
    if token.type == "COLON" and first.rstrip(":") in TOP_KEYWORDS + STMT_KEYWORDS:
        return f"'{first.rstrip(':')}' is a keyword and cannot name a step", "choose another name"
    if "DURATION" in expected and token.type in ("INT", "NUMBER", "KEY"):
        return f"a duration needs a unit: write {value}s, {value}ms or {value}m", ""
    if "NAME" in expected and re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value) and value != value.lower():
        return f"names are lower-case: '{value}'", f"write '{value.lower()}'"
    if {"BUSY", "ANSWERED"} <= expected and block != "group" and indent > 4:
        block = "outcome block"
    several = _several_targets_hint(value, at_start, line, block)
    if several:
        return several
    if at_start and value in _keywords() and block != "file":
        where = f"in an {block}" if block[0] in "aeiou" else f"in a {block}"
        return f"'{value}' cannot be used {where}", _BLOCK_LINES.get(block, "")
    if at_start and not re.fullmatch(r"[a-z_]+", value) and token.type not in ("_NL", "$END", "_DEDENT"):
        return f"a line cannot start with '{value}' here", _BLOCK_LINES.get(block, "")
    if at_start and re.fullmatch(r"[a-z_]+", value):
        keywords = sorted(
            v for t in expected if (v := _terminal_name(t).strip("'")) and re.fullmatch(r"[a-z]+", v)
        )
        close = difflib.get_close_matches(value, keywords or list(TOP_KEYWORDS + STMT_KEYWORDS), n=1, cutoff=0.6)
        if close:
            return f"unknown keyword '{value}'; did you mean '{close[0]}'?", ""
        if keywords:
            return f"unknown keyword '{value}'", "expected " + _describe_expected(expected)
    arrows = {t for t in expected if _terminal_name(t) == "'->'"}
    if arrows and token.type not in ("_NL", "$END", "_DEDENT"):
        return f"missing '->' before {_found(token)}", "write `... -> TARGET`, e.g. `1 -> sales`"
    if arrows and len(expected) <= 4:
        return "missing '->' and a target at the end of the line", "write `... -> TARGET`, e.g. `1 -> sales`"
    if token.type in ("$END", "_DEDENT"):
        return f"unexpected end of block; expected {_describe_expected(expected)}", ""
    return f"unexpected {_found(token)}; expected {_describe_expected(expected)}", ""


def _several_targets_hint(value: str, at_start: bool, line: str, block: str) -> tuple[str, str] | None:
    """A group's `ring` line written in a step, or `together`/`in turn` after the ring time."""
    if at_start and value == "ring" and block in ("step", "sub"):
        return ("'ring' lines belong in a group",
                "in a step, `transfer to 201, 202 together for 20s` rings several targets at once, "
                "`transfer to 201, 202 in turn for 20s` one after another")
    if not at_start and value in ("together", "in") and re.search(r"\btransfer\s+to\b", line):
        mode = "in turn" if value == "in" else value
        return (f"`{mode}` comes right after the targets",
                "write `transfer to 201, 202 together for 20s` or `transfer to 201, 202 in turn for 20s`")
    return None


# --------------------------------------------------------------------------- lark tree -> AST


def _unquote(token: str) -> str:
    body = token[1:-1]
    return re.sub(r"\\(.)", lambda m: {"n": "\n", "t": "\t"}.get(m.group(1), m.group(1)), body)


_DURATION = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h)")


def parse_duration(text: str) -> float:
    m = _DURATION.fullmatch(text)
    if not m:
        raise ValueError(f"bad duration {text!r}")
    return float(m.group(1)) * {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0}[m.group(2)]


_OUTCOME_NAMES = {"no answer": "no_answer", "not found": "not_found"}
_EVENT_NAMES = {
    "no input": "no_input",
    "too many invalid": "too_many_invalid",
    "too many no input": "too_many_no_input",
}


@v_args(meta=True)
class AstBuilder(Transformer[Token, Any]):
    """Turns lark's tree into :mod:`ivr.dsl.ast` nodes, each with its SourcePos."""

    def __init__(self, file: str) -> None:
        super().__init__()
        self.file = file

    # -- positions and values
    def _pos(self, meta: Any) -> SourcePos:
        if getattr(meta, "empty", True):
            return SourcePos(self.file, 1, 1)
        return SourcePos(self.file, meta.line, meta.column, meta.end_line, meta.end_column)

    def _tpos(self, token: Token) -> SourcePos:
        return SourcePos(self.file, token.line or 1, token.column or 1, token.end_line, token.end_column)

    def _value(self, item: Any) -> ast.Value:
        if isinstance(item, Token):
            pos = self._tpos(item)
            if item.type == "STRING":
                return ast.Str(pos=pos, text=_unquote(item))
            if item.type in ("NUMBER", "INT"):
                return ast.Num(pos=pos, text=str(item))
            if item.type == "VARREF":
                return ast.Var(pos=pos, name=item[1:-1])
            if item.type == "NAME":
                return ast.Var(pos=pos, name=str(item))
        raise TypeError(f"not a value: {item!r}")

    def _str(self, token: Token) -> ast.Str:
        return ast.Str(pos=self._tpos(token), text=_unquote(token))

    @staticmethod
    def _words(tree: Tree[Any]) -> str:
        return " ".join(str(t) for t in tree.children if isinstance(t, Token))

    # -- file level
    def start(self, meta: Any, items: list[Any]) -> list[Any]:
        flat: list[Any] = []
        for item in items:
            flat.extend(item if isinstance(item, list) else [item])
        return flat

    def include(self, meta: Any, c: list[Any]) -> ast.Include:
        return ast.Include(pos=self._pos(meta), path=_unquote(c[0]))

    def timezone_set(self, meta: Any, c: list[Any]) -> ast.Setting:
        return ast.Setting(pos=self._pos(meta), key="timezone", value=str(c[0]), value_pos=self._tpos(c[0]))

    def voice_set(self, meta: Any, c: list[Any]) -> list[ast.Setting]:
        out = [ast.Setting(pos=self._pos(meta), key="voice", value=str(c[0]))]
        if len(c) > 1:
            out.append(ast.Setting(pos=self._tpos(c[1]), key="rate", value=str(c[1])))
        return out

    def language_set(self, meta: Any, c: list[Any]) -> ast.Setting:
        return ast.Setting(pos=self._pos(meta), key="language", value=str(c[0]))

    def hold_music_set(self, meta: Any, c: list[Any]) -> ast.Setting:
        return ast.Setting(pos=self._pos(meta), key="hold_music", value=_unquote(c[0]))

    def directory_set(self, meta: Any, c: list[Any]) -> ast.DirectorySource:
        return ast.DirectorySource(pos=self._pos(meta), name=str(c[0]), path=_unquote(c[1]))

    def switch_set(self, meta: Any, c: list[Any]) -> ast.SwitchDecl:
        return ast.SwitchDecl(pos=self._pos(meta), name=str(c[0]))

    def called(self, meta: Any, c: list[Any]) -> str:
        token = c[0]
        return _unquote(token) if token.type == "STRING" else str(token)

    def number(self, meta: Any, c: list[Any]) -> ast.NumberEntry:
        return ast.NumberEntry(pos=self._pos(meta), numbers=tuple(c[:-1]), step=str(c[-1]), step_pos=self._tpos(c[-1]))

    # -- hours
    def hours(self, meta: Any, c: list[Any]) -> ast.HoursDef:
        return ast.HoursDef(pos=self._pos(meta), name=str(c[0]), lines=tuple(c[1:]))

    def weekly_rule(self, meta: Any, c: list[Any]) -> ast.WeeklyLine:
        ranges, places = zip(*c[1], strict=True)
        return ast.WeeklyLine(pos=self._pos(meta), days=c[0], ranges=ranges, range_pos=places)

    def day_list(self, meta: Any, c: list[Any]) -> str:
        return ",".join(c)

    def day_span(self, meta: Any, c: list[Any]) -> str:
        return "-".join(str(t) for t in c)

    def time_ranges(self, meta: Any, c: list[Any]) -> tuple[tuple[str, SourcePos], ...]:
        return tuple(c)

    def time_range(self, meta: Any, c: list[Any]) -> tuple[str, SourcePos]:
        """The range as written, and where (its caret goes under the range, not the line)."""
        return f"{c[0]}-{c[1]}", self._tpos(c[0])

    def holidays_rule(self, meta: Any, c: list[Any]) -> ast.HolidaysLine:
        return ast.HolidaysLine(pos=self._pos(meta), regions=tuple(str(t) for t in c),
                                region_pos=tuple(self._tpos(t) for t in c))

    def closed_rule(self, meta: Any, c: list[Any]) -> ast.ClosedLine:
        return ast.ClosedLine(pos=self._pos(meta), first=str(c[0]), last=str(c[-1]),
                              date_pos=tuple(self._tpos(t) for t in c))

    def open_rule(self, meta: Any, c: list[Any]) -> ast.OpenLine:
        ranges, places = zip(*c[1], strict=True)
        return ast.OpenLine(pos=self._pos(meta), day=str(c[0]), ranges=ranges, date_pos=(self._tpos(c[0]),),
                            range_pos=places)

    def switch_rule(self, meta: Any, c: list[Any]) -> ast.SwitchLine:
        return ast.SwitchLine(pos=self._pos(meta), switch=str(c[0]))

    def hours_timezone(self, meta: Any, c: list[Any]) -> ast.HoursTimezone:
        return ast.HoursTimezone(pos=self._pos(meta), timezone=str(c[0]), zone_pos=self._tpos(c[0]))

    # -- steps and statements
    def step(self, meta: Any, c: list[Any]) -> ast.Step:
        return ast.Step(pos=self._pos(meta), name=str(c[0]), body=tuple(c[1:]))

    def sub(self, meta: Any, c: list[Any]) -> ast.Sub:
        params = tuple(str(t) for t in c[1:] if isinstance(t, Token))
        body = tuple(x for x in c[1:] if not isinstance(x, Token))
        return ast.Sub(pos=self._pos(meta), name=str(c[0]), params=params, body=body)

    def step_ref(self, meta: Any, c: list[Any]) -> ast.Goto:
        return ast.Goto(pos=self._tpos(c[0]), step=str(c[0]))

    def goto(self, meta: Any, c: list[Any]) -> ast.Goto:
        return ast.Goto(pos=self._tpos(c[0]), step=str(c[0]))

    def jump(self, meta: Any, c: list[Any]) -> Any:
        return c[0]

    def when(self, meta: Any, c: list[Any]) -> ast.When:
        return ast.When(pos=self._pos(meta), cond=self._cond(c[0]), target=c[1])

    def otherwise(self, meta: Any, c: list[Any]) -> ast.Otherwise:
        return ast.Otherwise(pos=self._pos(meta), target=c[0])

    def no_barge_in(self, meta: Any, c: list[Any]) -> str:
        return "no_barge_in"

    def say(self, meta: Any, c: list[Any]) -> ast.Say:
        return ast.Say(pos=self._pos(meta), text=self._str(c[0]), barge_in="no_barge_in" not in c[1:])

    def play(self, meta: Any, c: list[Any]) -> ast.Play:
        return ast.Play(pos=self._pos(meta), path=self._str(c[0]), barge_in="no_barge_in" not in c[1:])

    def assign(self, meta: Any, c: list[Any]) -> ast.Set:
        return ast.Set(pos=self._pos(meta), name=str(c[0]), value=self._value(c[1]))

    def call(self, meta: Any, c: list[Any]) -> ast.Call:
        return ast.Call(pos=self._pos(meta), sub=str(c[0]), args=tuple(self._value(v) for v in c[1:]))

    def return_stmt(self, meta: Any, c: list[Any]) -> ast.Return:
        return ast.Return(pos=self._pos(meta))

    def hangup(self, meta: Any, c: list[Any]) -> ast.Hangup:
        return ast.Hangup(pos=self._pos(meta))

    def hold(self, meta: Any, c: list[Any]) -> ast.Hold:
        music = next((self._str(t) for t in c if t.type == "STRING"), None)
        duration = next((parse_duration(t) for t in c if t.type == "DURATION"), None)
        return ast.Hold(pos=self._pos(meta), music=music, duration=duration)

    def record_opt(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        if c[0] == "no":
            return ("beep", False)
        return (str(c[0]), parse_duration(c[1]))

    def record(self, meta: Any, c: list[Any]) -> ast.Record:
        opts: dict[str, Any] = dict(c[1:])
        return ast.Record(
            pos=self._pos(meta),
            variable=str(c[0]),
            max_length=opts.get("max", 120.0),
            silence=opts.get("silence", 0.0),
            beep=opts.get("beep", True),
        )

    def greeting(self, meta: Any, c: list[Any]) -> tuple[str, str]:
        return ("greeting", str(c[0]))

    def review(self, meta: Any, c: list[Any]) -> tuple[str, bool]:
        return ("review", True)

    def no_temporary(self, meta: Any, c: list[Any]) -> tuple[str, bool]:
        return ("temporary", False)

    def voicemail(self, meta: Any, c: list[Any]) -> ast.Voicemail:
        opts = dict(c[1:])
        return ast.Voicemail(
            pos=self._pos(meta), mailbox=self._value(c[0]), greeting=opts.get("greeting"), review=opts.get("review", False),
            temporary=opts.get("temporary", True),
        )

    def voicemail_access(self, meta: Any, c: list[Any]) -> ast.VoicemailAccess:
        return ast.VoicemailAccess(pos=self._pos(meta), mailbox=self._value(c[0]) if c else None)

    def conference_opt(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        word = str(c[0])
        if word == "moderator":
            return ("moderator_pin", self._str(c[2]))
        if word == "pin" or word == "music":
            return (word, self._str(c[1]))
        if word == "max":
            return ("max_participants", int(c[1]))
        return ({"tones": "tones", "announce": "announce"}[word], True)

    def conference(self, meta: Any, c: list[Any]) -> ast.Conference:
        return ast.Conference(pos=self._pos(meta), room=str(c[0]), **dict(c[1:]))

    def transfer_opt(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        if c[0] == "for":
            return ("ring_for", parse_duration(c[1]))
        if c[0] == "music":
            return ("music", self._str(c[1]))
        if c[0] == "record":
            return ("record", True)
        return ("refer", True)

    def else_inline(self, meta: Any, c: list[Any]) -> ast.Branch:
        return ast.Branch(pos=self._pos(meta), outcomes=("else",), target=c[-1])

    def outcomes(self, meta: Any, c: list[Any]) -> list[ast.Branch]:
        return c

    def with_outcomes(self, meta: Any, c: list[Any]) -> Any:
        return self._with_branches(c[0], c[1] if len(c) > 1 else [])

    def _with_branches(self, node: Any, branches: list[Any]) -> Any:
        flat: list[ast.Branch] = []
        for b in branches:
            flat.extend(b if isinstance(b, list) else [b])
        return dataclasses.replace(node, branches=node.branches + tuple(flat))

    def pikett_target(self, meta: Any, c: list[Any]) -> ast.GroupRef:
        return ast.GroupRef(pos=self._tpos(c[0]), name=str(c[0]), pikett=True)

    def transfer(self, meta: Any, c: list[Any]) -> ast.Transfer:
        target = c[0]
        value: ast.Value | ast.GroupRef
        if isinstance(target, ast.GroupRef):
            value = target
        elif isinstance(target, Token) and target.type == "NAME":
            value = ast.GroupRef(pos=self._tpos(target), name=str(target))
        else:
            value = self._value(target)
        opts: dict[str, Any] = dict(x for x in c[1:] if isinstance(x, tuple))
        branches = [x for x in c[1:] if isinstance(x, ast.Branch)]
        also = tuple(self._value(t) for t in c[1:] if isinstance(t, Token))
        mode: Any = next((x for x in c[1:] if x in ("together", "in_turn") and not isinstance(x, Token)), None)
        return ast.Transfer(
            pos=self._pos(meta),
            target=cast(ast.Value, value),
            ring_for=opts.get("ring_for"),
            music=opts.get("music"),
            refer=opts.get("refer", False),
            record=opts.get("record", False),
            branches=tuple(branches),
            also=also,
            mode=mode,
        )

    def directory_opt(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        if c[0] == "press":
            return ("keypad_key", str(c[1]))
        words = " ".join(str(t) for t in c)
        return {
            "by speech": ("by", "speech"),
            "by keys": ("by", "keys"),
            "by first name": ("match", "first"),
            "by last name": ("match", "last"),
            "by either name": ("match", "either"),
            "no confirm": ("confirm", False),
        }[words]

    def directory(self, meta: Any, c: list[Any]) -> ast.Directory:
        opts = [x for x in c[1:] if isinstance(x, tuple)]
        by = {v for k, v in opts if k == "by"}
        match: Any = next((v for k, v in opts if k == "match"), "last")
        return ast.Directory(
            pos=self._pos(meta),
            name=str(c[0]),
            by_speech=not by or "speech" in by,
            by_keys=not by or "keys" in by,
            match=match,
            confirm=all(v for k, v in opts if k == "confirm"),
            branches=tuple(x for x in c[1:] if isinstance(x, ast.Branch)),
            keypad_key=next((v for k, v in opts if k == "keypad_key"), ""),
        )

    def outcome_name(self, meta: Any, c: list[Any]) -> str:
        words = " ".join(str(t) for t in c)
        return _OUTCOME_NAMES.get(words, words)

    def outcome_line(self, meta: Any, c: list[Any]) -> ast.Branch:
        return ast.Branch(pos=self._pos(meta), outcomes=tuple(c[:-1]), target=c[-1])

    def __default__(self, data: Any, children: list[Any], meta: Any) -> Any:
        # Every rule of grammar.lark has a builder method; reaching this is a bug in this module.
        raise TypeError(f"no AST builder for {data}")

    # -- menus and collect
    def ask_say(self, meta: Any, c: list[Any]) -> ast.Ask:
        say = ast.Say(pos=self._pos(meta), text=self._str(c[0]), barge_in="no_barge_in" not in c[1:])
        return ast.Ask(pos=self._pos(meta), prompt=say)

    def ask_play(self, meta: Any, c: list[Any]) -> ast.Ask:
        play = ast.Play(pos=self._pos(meta), path=self._str(c[0]), barge_in="no_barge_in" not in c[1:])
        return ast.Ask(pos=self._pos(meta), prompt=play)

    def wait_opt(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        if c[0] == "between":
            return ("between", parse_duration(c[1]))
        return ("tries", int(c[1]))

    def wait_line(self, meta: Any, c: list[Any]) -> ast.Wait:
        opts = dict(c[1:])
        return ast.Wait(pos=self._pos(meta), timeout=parse_duration(c[0]), between=opts.get("between"), tries=opts.get("tries"))

    def retry_line(self, meta: Any, c: list[Any]) -> ast.Wait:
        return ast.Wait(pos=self._pos(meta), tries=int(c[0]))

    def input_event(self, meta: Any, c: list[Any]) -> str:
        words = " ".join(str(t) for t in c)
        return _EVENT_NAMES.get(words, words)

    def on_event(self, meta: Any, c: list[Any]) -> ast.OnInput:
        return ast.OnInput(pos=self._pos(meta), events=tuple(c[:-1]), target=c[-1])

    def option(self, meta: Any, c: list[Any]) -> ast.Option:
        choices = []
        for t in c[:-1]:
            pos = self._tpos(t)
            if t.type == "KEY":
                choices.append(ast.Choice(pos=pos, key=str(t)))
            elif t.type == "STRING":
                choices.append(ast.Choice(pos=pos, phrase=_unquote(t)))
            else:
                choices.append(ast.Choice(pos=pos, any_speech=True))
        return ast.Option(pos=self._pos(meta), choices=tuple(choices), target=c[-1])

    def _split_lines(self, lines: list[Any]) -> dict[str, list[Any]]:
        kinds: dict[str, list[Any]] = {
            "prompts": [], "asks": [], "waits": [], "options": [], "events": [],
            "digits": [], "end_keys": [], "into": [], "then": [],
        }
        for line in lines:
            if isinstance(line, ast.Say | ast.Play | ast.Set):
                kinds["prompts"].append(line)
            elif isinstance(line, ast.Ask):
                kinds["asks"].append(line)
            elif isinstance(line, ast.Wait):
                kinds["waits"].append(line)
            elif isinstance(line, ast.Option):
                kinds["options"].append(line)
            elif isinstance(line, ast.OnInput):
                kinds["events"].append(line)
            elif isinstance(line, ast.Digits):
                kinds["digits"].append(line)
            elif isinstance(line, tuple) and line[0] == "end":
                kinds["end_keys"].append((line[1], line[2]))
            elif isinstance(line, tuple) and line[0] == "into":
                kinds["into"].append(line[1])
            elif isinstance(line, tuple) and line[0] == "then":
                kinds["then"].append(line[1])
        return kinds

    def menu(self, meta: Any, c: list[Any]) -> ast.Menu:
        k = self._split_lines(c[1:])
        return ast.Menu(
            pos=self._pos(meta),
            name=str(c[0]),
            prompts=tuple(k["prompts"]),
            asks=tuple(k["asks"]),
            waits=tuple(k["waits"]),
            options=tuple(k["options"]),
            events=tuple(k["events"]),
        )

    def digits_line(self, meta: Any, c: list[Any]) -> ast.Digits:
        ints = [int(t) for t in c if t.type == "INT"]
        key = next((str(t) for t in c if t.type == "KEY"), None)
        return ast.Digits(pos=self._pos(meta), low=ints[0], high=ints[-1], end_key=key)

    def end_line(self, meta: Any, c: list[Any]) -> tuple[str, str, SourcePos]:
        return ("end", str(c[0]), self._pos(meta))

    def into_line(self, meta: Any, c: list[Any]) -> tuple[str, str]:
        return ("into", str(c[0]))

    def then_line(self, meta: Any, c: list[Any]) -> tuple[str, Any]:
        return ("then", c[0])

    def collect(self, meta: Any, c: list[Any]) -> ast.Collect:
        k = self._split_lines(c[1:])
        return ast.Collect(
            pos=self._pos(meta),
            name=str(c[0]),
            variable=k["into"][-1] if k["into"] else str(c[0]),
            prompts=tuple(k["prompts"]),
            asks=tuple(k["asks"]),
            waits=tuple(k["waits"]),
            digits=tuple(k["digits"]),
            end_keys=tuple(k["end_keys"]),
            then=tuple(k["then"]),
            events=tuple(k["events"]),
        )

    # -- groups
    def ring_mode(self, meta: Any, c: list[Any]) -> str:
        return "together" if c[0] == "together" else "in_turn"

    def ring_line(self, meta: Any, c: list[Any]) -> ast.Ring:
        members = tuple(self._value(t) for t in c if isinstance(t, Token) and t.type in ("NUMBER", "VARREF", "STRING"))
        mode: Any = next((x for x in c if x in ("together", "in_turn") and not isinstance(x, Token)), "together")
        duration = next(parse_duration(t) for t in c if isinstance(t, Token) and t.type == "DURATION")
        return ast.Ring(pos=self._pos(meta), members=members, mode=mode, timeout=duration)

    def group_music(self, meta: Any, c: list[Any]) -> tuple[str, ast.Str]:
        return ("music", self._str(c[0]))

    def group_refer(self, meta: Any, c: list[Any]) -> tuple[str, bool]:
        return ("refer", True)

    def group(self, meta: Any, c: list[Any]) -> ast.Group:
        lines = c[1:]
        opts: dict[str, Any] = dict(x for x in lines if isinstance(x, tuple))
        return ast.Group(
            pos=self._pos(meta),
            name=str(c[0]),
            rings=tuple(x for x in lines if isinstance(x, ast.Ring)),
            music=opts.get("music"),
            refer=opts.get("refer", False),
            branches=tuple(x for x in lines if isinstance(x, ast.Branch)),
        )

    # -- conditions (built by _cond from the trees below, which are left as trees)
    def _cond(self, node: Any) -> ast.Cond:
        if isinstance(node, ast.Compare | ast.StartsWith | ast.InList | ast.IsState | ast.Not | ast.And | ast.Or):
            return node
        raise TypeError(f"not a condition: {node!r}")

    def compare(self, meta: Any, c: list[Any]) -> ast.Compare:
        return ast.Compare(pos=self._pos(meta), op=str(c[1]), left=self._value(c[0]), right=self._value(c[2]))  # type: ignore[arg-type]

    def starts_with(self, meta: Any, c: list[Any]) -> ast.StartsWith:
        return ast.StartsWith(pos=self._pos(meta), left=self._value(c[0]), right=self._value(c[1]))

    def in_list(self, meta: Any, c: list[Any]) -> ast.InList:
        return ast.InList(pos=self._pos(meta), left=self._value(c[0]), options=tuple(self._value(v) for v in c[1:]))

    def is_state(self, meta: Any, c: list[Any]) -> ast.IsState:
        return ast.IsState(pos=self._pos(meta), name=str(c[0]), state=str(c[1]))  # type: ignore[arg-type]

    def not_cond(self, meta: Any, c: list[Any]) -> ast.Not:
        return ast.Not(pos=self._pos(meta), cond=self._cond(c[0]))

    def and_cond(self, meta: Any, c: list[Any]) -> ast.And:
        return ast.And(pos=self._pos(meta), left=self._cond(c[0]), right=self._cond(c[1]))

    def or_cond(self, meta: Any, c: list[Any]) -> ast.Or:
        return ast.Or(pos=self._pos(meta), left=self._cond(c[0]), right=self._cond(c[1]))
