"""Flow tests: ``*.ivrtest`` files an admin writes beside a flow, run by ``ivr test``.

This module owns the test file format (docs/flow-language.md, "Flow tests"), its parser and the
runner.  Each test is one simulated call (:mod:`ivr.runtime.simulate`: the server's own call
runtime in virtual time): *setup* lines say when and
from where the call comes and how the network behaves (``at``, ``caller``, ``called``, ``switch``,
``answer``/``busy``/``no answer``..., ``directory picks``, ``conference ROOM has N people``), *caller* lines say what the caller
does in order (``press``, ``say``, ``wait``, ``hang up``), and *expect* lines list what must
happen, in order (other things may happen in between).  ``expect no ...`` says something must not
happen after the previous expectation.

A failing test prints a unified diff: ``-`` lines were expected and did not happen where they
should, ``+`` lines happened though they should not have; the rest is the actual call for context.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ivr.dsl.schedule import ScheduleError, parse_local
from ivr.runtime.simulate import (
    CallerInput,
    Scenario,
    SimulationError,
    SimulationResult,
    parse_input,
    simulate,
)
from ivr.runtime.trace import TraceLine

if TYPE_CHECKING:
    from ivr.config import Config
    from ivr.dsl.compiler import Program

TEST_SUFFIX = ".ivrtest"
# Trace lines left out of failure diffs: they repeat on every prompt and say little.
_QUIET_KINDS = frozenset({"listen"})


class FlowTestError(Exception):
    """A test file that cannot be read; the message is ``file:line: what is wrong``."""


# --------------------------------------------------------------------------- the format


@dataclass(frozen=True)
class Expectation:
    """``expect TEXT`` (must happen, in order) or ``expect no TEXT`` (must not happen after the previous one)."""

    text: str
    line: int
    negate: bool = False

    def matches(self, trace_line: str) -> bool:
        """Word for word from the beginning of the line (docs/flow-language.md, Flow tests)."""
        want = _line_words(_drop_kind_colon(self.text))
        have = _line_words(_drop_kind_colon(trace_line))
        return bool(want) and have[: len(want)] == want

    def __str__(self) -> str:
        return ("no " if self.negate else "") + self.text


@dataclass(frozen=True)
class Setup:
    """The parts of a call that are not the caller's input (file-level defaults, overridden per test)."""

    at: str = ""
    caller: str = "anonymous"
    phone: bool = False  # the caller is an extension's phone, authenticated (the dial plan)
    called: str = ""
    switches: tuple[tuple[str, bool], ...] = ()
    variables: tuple[tuple[str, str], ...] = ()
    answer: frozenset[str] | None = None
    busy: frozenset[str] = frozenset()
    no_answer: frozenset[str] = frozenset()
    unavailable: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    early_media: frozenset[str] = frozenset()
    directory: tuple[str, ...] = ()
    voicemail_result: str = "saved"
    conferences: tuple[tuple[str, int], ...] = ()  # rooms and the people already in them


@dataclass(frozen=True)
class FlowTest:
    name: str
    line: int
    setup: Setup
    inputs: tuple[CallerInput, ...] = ()
    expectations: tuple[Expectation, ...] = ()


@dataclass(frozen=True)
class TestFile:
    path: Path
    flows: tuple[Path, ...]
    config: Path | None
    tests: tuple[FlowTest, ...]


@dataclass(frozen=True)
class TestResult:
    file: Path
    name: str
    passed: bool
    diff: tuple[str, ...] = ()
    trace: SimulationResult | None = None
    error: str = ""

    def report(self) -> str:
        """``PASS name`` or ``FAIL name`` followed by the diff or the error."""
        head = f"{'PASS' if self.passed else 'FAIL'} {self.file.name}: {self.name}"
        body = [self.error] if self.error else list(self.diff)
        return "\n".join([head, *("    " + line for line in body if not self.passed)])


# --------------------------------------------------------------------------- parsing


def parse_test_file(path: Path | str) -> TestFile:
    """Read a ``.ivrtest`` file; FlowTestError (``file:line: message``) for anything unclear."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise FlowTestError(f"{path}: cannot read: {exc}") from None
    return _Parser(path, text).parse()


class _Parser:
    def __init__(self, path: Path, text: str) -> None:
        self.path = path
        self.lines = text.splitlines()
        self.flows: list[Path] = []
        self.config: Path | None = None
        self.defaults = Setup()
        self.tests: list[FlowTest] = []

    def fail(self, number: int, message: str) -> FlowTestError:
        return FlowTestError(f"{self.path}:{number}: {message}")

    def parse(self) -> TestFile:
        current: _TestBuilder | None = None
        for number, raw in enumerate(self.lines, start=1):
            line = _strip_comment(raw)
            if not line.strip():
                continue
            indented = raw[:1] in (" ", "\t")
            if not indented:
                if current is not None:
                    self.tests.append(current.build(self))
                    current = None
                current = self._top_level(line.strip(), number)
            elif current is None:
                raise self.fail(
                    number, 'indented line outside a test; start a test with: test "name":'
                )
            else:
                current.add(line.strip(), number, self)
        if current is not None:
            self.tests.append(current.build(self))
        if not self.flows:
            raise self.fail(1, 'no flow named; start the file with: flow "myflow.ivr"')
        if not self.tests:
            raise self.fail(len(self.lines) or 1, 'no tests; add one with: test "name":')
        seen: set[str] = set()
        for t in self.tests:
            if t.name in seen:
                raise self.fail(t.line, f'test "{t.name}" is defined twice')
            seen.add(t.name)
        return TestFile(self.path, tuple(self.flows), self.config, tuple(self.tests))

    def _top_level(self, line: str, number: int) -> _TestBuilder | None:
        m = re.fullmatch(r'test\s+"((?:[^"\\]|\\.)+)"\s*:', line)
        if m:
            return _TestBuilder(m.group(1).replace('\\"', '"'), number, self.defaults)
        if line.startswith("test"):
            raise self.fail(number, 'expected: test "name":  (a quoted name and a colon)')
        word, _, rest = line.partition(" ")
        if word == "flow":
            names = _words(rest)
            if not names:
                raise self.fail(number, 'expected: flow "file.ivr" (paths relative to this file)')
            self.flows.extend(self.path.parent / n for n in names)
            return None
        if word == "config":
            names = _words(rest)
            if len(names) != 1:
                raise self.fail(number, 'expected: config "ivr.toml"')
            self.config = self.path.parent / names[0]
            return None
        self.defaults = _apply_setup(self.defaults, line, number, self)
        return None


class _TestBuilder:
    def __init__(self, name: str, line: int, defaults: Setup) -> None:
        self.name = name
        self.line = line
        self.setup = defaults
        self.inputs: list[CallerInput] = []
        self.expectations: list[Expectation] = []

    def add(self, line: str, number: int, parser: _Parser) -> None:
        word = line.split(None, 1)[0]
        rest = line[len(word) :].strip()
        if word == "expect":
            self.expectations.append(_expectation(rest, number, parser))
        elif word in ("press", "say", "mumble", "wait", "hang", "hangup"):
            self.inputs.extend(_caller_action(word, rest, number, parser))
        else:
            self.setup = _apply_setup(self.setup, line, number, parser)

    def build(self, parser: _Parser) -> FlowTest:
        if not self.setup.at:
            raise parser.fail(
                self.line, f'test "{self.name}" has no time: add "at 2026-11-23 09:00"'
            )
        if not self.expectations:
            raise parser.fail(
                self.line, f'test "{self.name}" expects nothing: add an "expect ..." line'
            )
        return FlowTest(
            self.name, self.line, self.setup, tuple(self.inputs), tuple(self.expectations)
        )


def _expectation(rest: str, number: int, parser: _Parser) -> Expectation:
    negate = rest.startswith("no ") and not rest.startswith("no answer")
    text = rest[3:].strip() if negate else rest
    if not text:
        raise parser.fail(number, "expected: expect WHAT (e.g. expect voicemail 200)")
    return Expectation(_unquote_tail(text), number, negate)


def _caller_action(word: str, rest: str, number: int, parser: _Parser) -> list[CallerInput]:
    if word == "press":
        m = re.fullmatch(r"([0-9*#A-D]+)(\s+during\s+the\s+prompt)?", rest)
        if not m:
            raise parser.fail(
                number,
                "expected: press KEYS (e.g. press 1, press 123456#, press 1 during the prompt)",
            )
        return [CallerInput("key", m.group(1), barge_in=bool(m.group(2)))]
    if word == "say":
        m = re.fullmatch(r'"([^"]*)"(?:\s+or\s+"([^"]*)")?(\s+during\s+the\s+prompt)?', rest)
        if not m:
            raise parser.fail(number, 'expected: say "words" (what the recogniser hears), or say "words" or "words"')
        words, rival = (" ".join((g or "").split()) for g in m.group(1, 2))
        return [CallerInput("speech", words, barge_in=bool(m.group(3)), rival=rival)]
    if word == "mumble":
        return [CallerInput("speech", "")]
    if word in ("hang", "hangup"):
        if (word == "hang" and rest != "up") or (word == "hangup" and rest):
            raise parser.fail(number, "expected: hang up")
        return [CallerInput("hangup")]
    if rest in ("", "for the timeout"):
        return [CallerInput("wait")]
    try:
        return [parse_input("wait:" + rest.replace(" ", ""))]
    except SimulationError:
        raise parser.fail(number, "expected: wait 10s, wait 2m or wait for the timeout") from None


def _apply_setup(setup: Setup, line: str, number: int, parser: _Parser) -> Setup:
    m = re.fullmatch(r"at\s+(\d{4}-\d{2}-\d{2}\s+\d{1,2}:\d{2}(?::\d{2})?)", line)
    if m:
        when = " ".join(m.group(1).split())
        try:
            parse_local(when, "UTC")  # the date and time exist at all; DST is the flow's business
        except ScheduleError as exc:
            raise parser.fail(number, str(exc)) from None
        return replace(setup, at=when)
    if line.startswith("at "):
        raise parser.fail(number, "expected: at YYYY-MM-DD HH:MM (the flow's local time)")
    m = re.fullmatch(r"caller\s+phone\s+(\S+)", line)
    if m:  # one of the deployment's phones, logged in as that extension (digest)
        return replace(setup, caller=_unquote(m.group(1)), phone=True)
    m = re.fullmatch(r"(caller|called)\s+(\S+)", line)
    if m:
        number_text = _unquote(m.group(2))
        if m.group(1) == "caller":
            return replace(setup, caller=number_text)
        return replace(setup, called=number_text)
    m = re.fullmatch(r"switch\s+([a-z_][a-z0-9_]*)\s+(on|off)", line)
    if m:
        switches = dict(setup.switches) | {m.group(1): m.group(2) == "on"}
        return replace(setup, switches=tuple(sorted(switches.items())))
    m = re.fullmatch(r'set\s+([a-z_][a-z0-9_]*)\s*=\s*"([^"]*)"', line)
    if m:
        variables = dict(setup.variables) | {m.group(1): m.group(2)}
        return replace(setup, variables=tuple(sorted(variables.items())))
    m = re.fullmatch(r"(answer|busy|no answer|unavailable|fail|early media)\s+(.+)", line)
    if m:
        return _network(setup, m.group(1), m.group(2))
    m = re.fullmatch(r'directory\s+(picks\s+"([^"]+)"|finds nobody|operator)', line)
    if m:
        if m.group(2):
            choice = m.group(2)
        else:
            choice = "not found" if m.group(1) == "finds nobody" else "operator"
        return replace(setup, directory=(choice,))
    m = re.fullmatch(r"conference\s+([a-z_][a-z0-9_]*)\s+has\s+(\d+)\s+(people|person|participants?)", line)
    if m:
        rooms = dict(setup.conferences) | {m.group(1): int(m.group(2))}
        return replace(setup, conferences=tuple(sorted(rooms.items())))
    if line.startswith("conference "):
        raise parser.fail(number, "expected: conference ROOM has N people")
    if line in ("caller leaves no message", "voicemail empty"):
        return replace(setup, voicemail_result="empty")
    raise parser.fail(number, f"cannot understand {line!r}; see docs/flow-language.md, Flow tests")


def _network(setup: Setup, verb: str, targets_text: str) -> Setup:
    targets = frozenset(t.strip() for t in targets_text.split(",") if t.strip())
    if targets in (frozenset({"all"}), frozenset({"everyone"})):
        targets = frozenset({"*"})
    if verb == "answer":
        return replace(setup, answer=(setup.answer or frozenset()) | (targets - {"none", "nobody"}))
    key = {
        "busy": "busy",
        "no answer": "no_answer",
        "unavailable": "unavailable",
        "fail": "failed",
        "early media": "early_media",
    }[verb]
    return replace(setup, **{key: getattr(setup, key) | targets})


def _strip_comment(raw: str) -> str:
    """Drop a ``# comment``; a ``#`` that is a key (``press 12#``, ``press #``) is kept."""
    in_quote = False
    for i, ch in enumerate(raw):
        if ch == '"':
            in_quote = not in_quote
        elif ch == "#" and not in_quote and (i == 0 or raw[i - 1] in " \t"):
            before = raw[:i].strip()
            if re.fullmatch(r"press(\s+[0-9*#A-D]*)?", before) and not re.fullmatch(
                r"press\s+\S+", before
            ):
                continue  # `press #`: the key itself
            return raw[:i].rstrip()
    return raw.rstrip()


def _words(text: str) -> list[str]:
    return [_unquote(w) for w in re.findall(r'"[^"]*"|\S+', text.replace(",", " "))]


def _unquote(word: str) -> str:
    return word[1:-1] if len(word) >= 2 and word[0] == word[-1] == '"' else word


def _unquote_tail(text: str) -> str:
    """``say "Welcome."`` -> ``say Welcome.``: quotes only delimit the words."""
    return re.sub(r'"([^"]*)"', r"\1", text)


def _drop_kind_colon(text: str) -> str:
    """``transfer: 300`` -> ``transfer 300``: the colon after the leading words is optional."""
    return re.sub(r"^([a-z][a-z ]*):(?=\s|$)", r"\1", text.strip())


def _line_words(text: str) -> list[str]:
    """The words of a line; a comma ending a word only separates list items (``201, 202``)."""
    return [w.removesuffix(",") for w in text.split()]


# --------------------------------------------------------------------------- running


def find_test_files(paths: Iterable[Path | str]) -> list[Path]:
    """The ``.ivrtest`` files named or found (recursively) in the folders named, sorted."""
    found: list[Path] = []
    for p in map(Path, paths):
        if p.is_dir():
            found.extend(sorted(p.rglob("*" + TEST_SUFFIX)))
        else:
            found.append(p)
    return list(dict.fromkeys(found))


def run_test_file(path: Path | str, *, config: Path | None = None) -> list[TestResult]:
    """Parse and run every test of one file; a flow that does not load fails every test."""
    from ivr.config import ConfigError, load_config
    from ivr.dsl.errors import FlowError
    from ivr.runtime.deployment import load_flow

    test_file = parse_test_file(path)
    try:
        cfg = load_config(_config_path(test_file, config))
        program = load_flow(test_file.flows, prompt_folders=cfg.prompt_folders, config=cfg)
    except (FlowError, ConfigError) as exc:
        return [TestResult(test_file.path, t.name, False, error=str(exc)) for t in test_file.tests]
    return [
        run_test(test_file.path, program, t, config=cfg)
        for t in test_file.tests
    ]


def _config_path(test_file: TestFile, override: Path | None) -> Path | None:
    if override is not None:
        return override
    if test_file.config is not None:
        return test_file.config
    beside = test_file.flows[0].parent / "ivr.toml"
    return beside if beside.is_file() else None


def run_test(
    file: Path,
    program: Program,
    test: FlowTest,
    *,
    config: Config | None = None,
) -> TestResult:
    """One test: simulate the call, then match the expectations against its trace."""
    try:
        scenario = scenario_for(test, program.settings.timezone)
        result = simulate(program, scenario, config=config)
    except (ScheduleError, SimulationError, LookupError) as exc:
        return TestResult(file, test.name, False, error=f"{file}:{test.line}: {exc}")
    except Exception as exc:  # a machine error is a failing test, not a crashed test run
        return TestResult(
            file, test.name, False, error=f"{file}:{test.line}: {type(exc).__name__}: {exc}"
        )
    diff = compare(test.expectations, result.lines)
    return TestResult(file, test.name, not diff, tuple(diff), result)


def scenario_for(test: FlowTest, timezone: str) -> Scenario:
    s = test.setup
    return Scenario(
        start=parse_local(s.at, timezone),
        caller=s.caller,
        phone=s.phone,
        called=s.called,
        inputs=test.inputs,
        switches=dict(s.switches),
        variables=dict(s.variables),
        answer=s.answer,
        busy=s.busy,
        no_answer=s.no_answer,
        unavailable=s.unavailable,
        failed=s.failed,
        early_media=s.early_media,
        directory=s.directory,
        voicemail_result=s.voicemail_result,
        conferences=dict(s.conferences),
    )


def compare(expectations: Sequence[Expectation], trace: Sequence[TraceLine]) -> list[str]:
    """[] when every expectation holds; else a unified diff of expected vs actual trace."""
    actual = [line.text for line in trace if line.kind not in _QUIET_KINDS]
    missing: dict[int, list[str]] = {}  # actual index -> expected lines that belong before it
    unwanted: set[int] = set()  # actual lines that should not have happened
    position = 0  # index in `actual` after the previous matched expectation
    for exp in expectations:
        if exp.negate:
            unwanted.update(i for i in range(position, len(actual)) if exp.matches(actual[i]))
            continue
        hit = next((i for i in range(position, len(actual)) if exp.matches(actual[i])), None)
        if hit is None:
            near = difflib.get_close_matches(exp.text, actual[position:], n=1, cutoff=0.5)
            nearest = f"; nearest: {near[0]!r}" if near else ""
            missing.setdefault(position, []).append(f"{exp.text}   (expected, line {exp.line}{nearest})")
        else:
            position = hit + 1
    if not missing and not unwanted:
        return []
    expected: list[str] = []
    for i in range(len(actual) + 1):
        expected.extend(missing.get(i, ()))
        if i < len(actual) and i not in unwanted:
            expected.append(actual[i])
    return list(difflib.unified_diff(expected, actual, "expected", "actual", lineterm="", n=3))
