"""AST to an immutable state machine: the tables a call runs on.

A compiled :class:`Program` is a table of :class:`State` s.  Each state has an
*op* (what happens on entering it: speak, branch, wait for a key, ring a
group ...), the events it waits for (``op.waits``; none for a transient state
that moves on at once), and its transitions: ``event label -> next state``.
A menu, for example, compiles into explicit states -- enter, reset counters,
prompts, re-prompt, wait -- whose wait state has one transition per key,
phrase, ``invalid``, ``no_input``, ``too_many_invalid`` and
``too_many_no_input``.  No closures: :mod:`ivr.dsl.graph` draws the table and
:mod:`ivr.dsl.checks` walks it (loops that never wait, unreachable steps),
and :mod:`ivr.dsl.machine` interprets it.

The compiler assumes the AST passed :mod:`ivr.dsl.checks`; a name it cannot
resolve still compiles, to a state that ends the call with outcome ``error``.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date
from pathlib import Path
from types import MappingProxyType
from typing import ClassVar, Literal

from ivr.dsl import ast, schedule
from ivr.dsl.errors import Diagnostic, SourcePos

DEFAULT_RING_TIMEOUT = 30.0
DEFAULT_MENU_TIMEOUT = 5.0
DEFAULT_TRIES = 3
DEFAULT_INTER_DIGIT = 3.0
TRANSFER_EDGES = ("answered", "busy", "no_answer", "unavailable", "failed")
DIRECTORY_EDGES = ("selected", "not_found", "operator")
# Variables a flow may read without setting them.
BUILTIN_VARIABLES = ("caller", "called", "time", "weekday", "date", "speech", "transfer_target")
DIRECTORY_VARIABLES = ("directory_extension", "directory_name", "directory_mailbox")


# --------------------------------------------------------------------------- ops: what a state does


@dataclass(frozen=True)
class Op:
    """What happens on entering a state; ``waits`` lists the events it waits for (none: transient)."""

    waits: ClassVar[tuple[str, ...]] = ()
    edges: ClassVar[tuple[str, ...]] = ("next",)

    def describe(self) -> str:
        return type(self).__name__.removesuffix("Op").lower()


@dataclass(frozen=True)
class EnterOp(Op):
    """Entering a step (emits EnterStep); entering a top-level step leaves any sub-flow."""

    step: str
    is_sub: bool = False

    def describe(self) -> str:
        return f"step {self.step}"


@dataclass(frozen=True)
class PromptOp(Op):
    prompt: ast.Say | ast.Play

    def describe(self) -> str:
        if isinstance(self.prompt, ast.Say):
            return f'say "{_short(self.prompt.text.text)}"'
        return f'play "{self.prompt.path.text}"'


@dataclass(frozen=True)
class AssignOp(Op):
    name: str
    value: ast.Value

    def describe(self) -> str:
        return f"set {self.name}"


@dataclass(frozen=True)
class BranchOp(Op):
    cond: ast.Cond
    edges: ClassVar[tuple[str, ...]] = ("true", "false")

    def describe(self) -> str:
        return f"when {describe_cond(self.cond)}"


@dataclass(frozen=True)
class CallOp(Op):
    sub: str
    params: tuple[str, ...]
    args: tuple[ast.Value, ...]
    edges: ClassVar[tuple[str, ...]] = ("call", "return")

    def describe(self) -> str:
        return f"call {self.sub}"


@dataclass(frozen=True)
class ReturnOp(Op):
    edges: ClassVar[tuple[str, ...]] = ()


@dataclass(frozen=True)
class DrainOp(Op):
    """Wait until every queued prompt has played (before hanging up, transferring, recording ...)."""

    waits: ClassVar[tuple[str, ...]] = ("prompt_done",)

    def describe(self) -> str:
        return "until prompts end"


@dataclass(frozen=True)
class MenuStartOp(Op):
    """Reset the menu's no-input and no-match counters."""

    menu: str

    def describe(self) -> str:
        return f"menu {self.menu}"


@dataclass(frozen=True)
class MenuWaitOp(Op):
    """Wait for a key or a phrase; the timeout runs from the end of the prompts."""

    menu: str
    keys: tuple[str, ...]
    phrases: tuple[str, ...]
    any_speech: bool
    timeout: float
    tries: int
    directory: str = ""  # the directory the `speech` option leads to (its names are listened for too)
    waits: ClassVar[tuple[str, ...]] = ("key", "speech", "prompt_done", "timer")
    edges: ClassVar[tuple[str, ...]] = ("invalid", "no_input", "too_many_invalid", "too_many_no_input")

    def describe(self) -> str:
        return f"wait {self.timeout:g}s for a choice"


@dataclass(frozen=True)
class CollectStartOp(Op):
    collect: str

    def describe(self) -> str:
        return f"collect {self.collect}"


@dataclass(frozen=True)
class CollectWaitOp(Op):
    collect: str
    variable: str
    low: int
    high: int
    end_key: str
    timeout: float
    between: float
    tries: int
    waits: ClassVar[tuple[str, ...]] = ("key", "prompt_done", "timer")
    edges: ClassVar[tuple[str, ...]] = ("done", "invalid", "no_input", "too_many_invalid", "too_many_no_input")

    def describe(self) -> str:
        return f"collect {self.low}-{self.high} digits into {self.variable}"


@dataclass(frozen=True)
class TransferOp(Op):
    """Ring a plan of steps (each: targets rung together, timeout) and bridge the first answer."""

    plan: tuple[tuple[tuple[ast.Value, ...], float], ...]
    music: str = ""
    refer: bool = False
    group: str = ""
    pikett: bool = False  # ring the members' on-call numbers instead of the members
    record: bool = False  # record the bridged conversation
    waits: ClassVar[tuple[str, ...]] = ("transfer_result",)
    edges: ClassVar[tuple[str, ...]] = TRANSFER_EDGES

    def describe(self) -> str:
        if self.pikett:
            return f"ring on call of group {self.group}"
        if self.group:
            return f"ring group {self.group}"
        return "transfer to " + ", ".join(value_text(v) for targets, _ in self.plan for v in targets)


@dataclass(frozen=True)
class BridgedOp(Op):
    """Caller and callee talk; the flow continues (or ends) when the bridge ends."""

    label: str
    waits: ClassVar[tuple[str, ...]] = ("bridge_ended",)
    edges: ClassVar[tuple[str, ...]] = ("bridge_ended",)

    def describe(self) -> str:
        return "connected"


@dataclass(frozen=True)
class DirectoryOp(Op):
    name: str
    by_speech: bool
    by_keys: bool
    match: Literal["last", "first", "either"]
    confirm: bool
    keypad_key: str = ""
    waits: ClassVar[tuple[str, ...]] = ("directory_result",)
    edges: ClassVar[tuple[str, ...]] = DIRECTORY_EDGES

    def describe(self) -> str:
        return f"directory {self.name}"


@dataclass(frozen=True)
class VoicemailOp(Op):
    mailbox: ast.Value
    greeting: Literal["unavailable", "busy", "temporary"]
    review: bool
    temporary: bool = True  # the owner's temporary greeting, when set, plays instead of `greeting`
    waits: ClassVar[tuple[str, ...]] = ("action_done",)
    edges: ClassVar[tuple[str, ...]] = ("done",)

    def describe(self) -> str:
        return f"voicemail {value_text(self.mailbox)}"


@dataclass(frozen=True)
class VoicemailAccessOp(Op):
    mailbox: ast.Value | None
    waits: ClassVar[tuple[str, ...]] = ("action_done",)
    edges: ClassVar[tuple[str, ...]] = ("done",)

    def describe(self) -> str:
        return "voicemail access" + (f" {value_text(self.mailbox)}" if self.mailbox else "")


@dataclass(frozen=True)
class ConferenceOp(Op):
    """The caller joins conference room ``room``; ``full`` continues with the next statement."""

    room: str
    pin: ast.Str | None
    moderator_pin: ast.Str | None
    max_participants: int
    music: str
    tones: bool
    announce: bool
    waits: ClassVar[tuple[str, ...]] = ("action_done",)
    edges: ClassVar[tuple[str, ...]] = ("done", "full")

    def describe(self) -> str:
        return f"conference {self.room}"


@dataclass(frozen=True)
class RecordOp(Op):
    variable: str
    max_length: float
    silence: float
    beep: bool
    waits: ClassVar[tuple[str, ...]] = ("action_done", "recording_done")

    def describe(self) -> str:
        return f"record into {self.variable}"


@dataclass(frozen=True)
class HoldOp(Op):
    music: str
    duration: float | None

    @property
    def waits(self) -> tuple[str, ...]:  # type: ignore[override]
        return ("action_done",) if self.duration else ()

    def describe(self) -> str:
        return "hold" + (f" {self.duration:g}s" if self.duration else "")


@dataclass(frozen=True)
class FinishOp(Op):
    """The call ends here: outcome ``result`` (``hangup``, ``transferred``, ``voicemail`` ...)."""

    result: str
    detail: ast.Value | None = None
    reason: str = "normal"
    edges: ClassVar[tuple[str, ...]] = ()

    def describe(self) -> str:
        return f"end: {self.result}" + (f" {value_text(self.detail)}" if self.detail else "")


# --------------------------------------------------------------------------- the program


@dataclass(frozen=True)
class State:
    """One row of the table: ``transitions`` maps an event label to the next state's name."""

    name: str
    step: str
    op: Op
    transitions: Mapping[str, str]
    pos: SourcePos

    @property
    def waits(self) -> tuple[str, ...]:
        return self.op.waits


@dataclass(frozen=True)
class Settings:
    timezone: str = "UTC"
    voice: str = ""
    rate: int | None = None
    language: str = ""
    hold_music: str = ""
    directories: Mapping[str, str] = field(default_factory=dict)  # name -> path (absolute)
    switches: tuple[str, ...] = ()


@dataclass(frozen=True)
class Program:
    """A compiled flow: states, entry points per called number, settings and schedules."""

    states: Mapping[str, State]
    entries: Mapping[str, str]  # called number, "default" or "internal" -> state name
    settings: Settings = Settings()
    schedules: Mapping[str, schedule.Hours] = field(default_factory=dict)
    warnings: tuple[Diagnostic, ...] = ()
    steps: Mapping[str, str] = field(default_factory=dict)  # step/menu/collect/group/sub name -> kind
    files: tuple[str, ...] = ()
    # Called number -> the form entries are compared in.  The deployment may give one that also
    # knows national numbers (ivr.runtime.deployment.number_key, from [numbers] country).
    # (A lambda: normalize_number is defined below.)
    number_key: Callable[[str], str] = field(default=lambda n: normalize_number(n), compare=False, repr=False)

    @property
    def internal_entry(self) -> str | None:
        """The state a call from one of the deployment's phones starts in (``number internal``)."""
        return self.entries.get(INTERNAL)

    def entry_for(self, called: str) -> str:
        """The state a call to ``called`` starts in: exact number, then normalized, then ``default``.

        ``number internal`` is never an answer here: a caller cannot dial into the dial plan
        (``sip:internal@...``); only an authenticated phone's call starts there."""
        if called in self.entries and called != INTERNAL:
            return self.entries[called]
        wanted = self.number_key(called)
        if wanted:
            for number, state in self.entries.items():
                if number not in ("default", INTERNAL) and self.number_key(number) == wanted:
                    return state
        if "default" in self.entries:
            return self.entries["default"]
        raise LookupError(f"no entry point for called number {called!r} and no `number default`")


INTERNAL = "internal"  # the entry key of `number internal`: calls from the deployment's phones


def normalize_number(number: str) -> str:
    """Digits only, international prefix dropped: ``+41 43``, ``004143`` and ``4143`` compare equal."""
    text = number.strip()
    if "@" in text:  # a SIP URI user part
        text = text.split("@", 1)[0].removeprefix("sip:").removeprefix("sips:")
    digits = re.sub(r"[^\d+]", "", text)
    if digits.startswith("+"):
        return digits[1:].replace("+", "")
    if digits.startswith("00"):
        return digits[2:]
    return digits.replace("+", "")


def _short(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[: limit - 3] + "..."


def value_text(value: ast.Value | ast.GroupRef | None) -> str:
    if isinstance(value, ast.Var):
        return "{" + value.name + "}"
    if isinstance(value, ast.Str):
        return value.text
    if isinstance(value, ast.Num):
        return value.text
    if isinstance(value, ast.GroupRef):
        return f"pikett {value.name}" if value.pikett else value.name
    return ""


def describe_cond(cond: ast.Cond) -> str:
    if isinstance(cond, ast.Compare):
        return f"{_val(cond.left)} {cond.op} {_val(cond.right)}"
    if isinstance(cond, ast.StartsWith):
        return f"{_val(cond.left)} starts with {_val(cond.right)}"
    if isinstance(cond, ast.InList):
        return f"{_val(cond.left)} in ({', '.join(_val(v) for v in cond.options)})"
    if isinstance(cond, ast.IsState):
        return f"{cond.name} is {cond.state}"
    if isinstance(cond, ast.Not):
        return f"not {describe_cond(cond.cond)}"
    if isinstance(cond, ast.And):
        return f"({describe_cond(cond.left)} and {describe_cond(cond.right)})"
    return f"({describe_cond(cond.left)} or {describe_cond(cond.right)})"


def _val(value: ast.Value) -> str:
    if isinstance(value, ast.Str):
        return f'"{value.text}"'
    if isinstance(value, ast.Var):
        return value.name
    return value.text


# --------------------------------------------------------------------------- schedules


def build_schedule(hours: ast.HoursDef, default_tz: str) -> tuple[schedule.Hours, list[Diagnostic]]:
    """An Hours from its block, with every problem (bad weekday, overlap, unknown region) at its token.

    A bad ``default_tz`` (the flow's ``timezone``) is not reported here: the setting's own check
    reports it once, and the block is built in UTC meanwhile.
    """
    problems: list[Diagnostic] = []
    rules: list[schedule.Rule] = []
    rule_lines: list[ast.HoursLine] = []
    tz = default_tz if _zone_ok(default_tz) else "UTC"
    for line in hours.lines:
        if isinstance(line, ast.HoursTimezone):
            if _zone_ok(line.timezone):
                tz = line.timezone
            else:
                problems.append(Diagnostic("error", _zone_problem(line.timezone), line.zone_pos or line.pos, ZONE_HINT))
            continue
        try:
            rule = _rule(line)
        except (schedule.ScheduleError, ValueError) as exc:
            problems.append(Diagnostic("error", str(exc), _mentioned_pos(line, str(exc))))
            continue
        rules.append(rule)
        rule_lines.append(line)
    built = schedule.build_hours(hours.name, tz, rules)
    for problem in schedule.check_hours(built):
        pos = _part_pos(rule_lines[problem.rule], problem.part) if problem.rule is not None else hours.pos
        problems.append(Diagnostic(problem.severity, problem.message, pos))
    return built, problems


ZONE_HINT = "use an IANA name like Europe/Zurich or UTC"


def _zone_ok(name: str) -> bool:
    return not _zone_problem(name)


def _zone_problem(name: str) -> str:
    try:
        schedule.zone(name)
    except schedule.ScheduleError as exc:
        return str(exc)
    return ""


def _parts(line: ast.HoursLine) -> tuple[tuple[str, ...], tuple[SourcePos, ...]]:
    """The tokens of an hours line a problem can point at (ranges, dates, regions) and their places."""
    if isinstance(line, ast.WeeklyLine):
        return line.ranges, line.range_pos
    if isinstance(line, ast.OpenLine):
        return (line.day, *line.ranges), (*line.date_pos, *line.range_pos)
    if isinstance(line, ast.ClosedLine):
        return (line.first, line.last), line.date_pos
    if isinstance(line, ast.HolidaysLine):
        return line.regions, line.region_pos
    return (), ()


def _part_pos(line: ast.HoursLine, part: int | None) -> SourcePos:
    """Where range (or date, region) number ``part`` of a rule is written; the line if unknown."""
    _, places = _parts(line)
    if isinstance(line, ast.OpenLine) and part is not None:
        part += 1  # the date comes first
    if part is not None and 0 <= part < len(places):
        return places[part]
    if places and isinstance(line, ast.ClosedLine | ast.HolidaysLine):
        return places[0]  # a reversed date range, an unknown region
    return line.pos


def _mentioned_pos(line: ast.HoursLine, message: str) -> SourcePos:
    """The token of ``line`` a parse error quotes (``bad time of day '25:00'``); the line if none."""
    texts, places = _parts(line)
    for text, place in zip(texts, places, strict=False):
        if any(piece and piece in message for piece in text.split("-") if ":" in piece) or text in message:
            return place
    return line.pos


def _rule(line: ast.HoursLine) -> schedule.Rule:
    if isinstance(line, ast.WeeklyLine):
        return schedule.WeeklyRule(schedule.parse_weekdays(line.days), tuple(schedule.parse_range(r) for r in line.ranges))
    if isinstance(line, ast.HolidaysLine):
        # One rule per region keeps check_hours' rule index pointing at this line.
        return schedule.ClosedOnHolidays(line.regions[0])
    if isinstance(line, ast.ClosedLine):
        return schedule.ClosedDates(_date(line.first), _date(line.last))
    if isinstance(line, ast.OpenLine):
        return schedule.OpenDate(_date(line.day), tuple(schedule.parse_range(r) for r in line.ranges))
    if isinstance(line, ast.SwitchLine):
        return schedule.ClosedWhen(line.switch)
    raise TypeError(line)


def _date(text: str) -> date:
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise schedule.ScheduleError(f"bad date {text}; expected YYYY-MM-DD") from None


def expand_hours(hours: ast.HoursDef) -> ast.HoursDef:
    """``closed on holidays CH-ZH, DE`` is one line but one rule per region."""
    lines: list[ast.HoursLine] = []
    for line in hours.lines:
        if isinstance(line, ast.HolidaysLine):
            places = line.region_pos or (line.pos,) * len(line.regions)
            lines.extend(replace(line, regions=(r,), region_pos=(p,)) for r, p in zip(line.regions, places, strict=True))
        else:
            lines.append(line)
    return replace(hours, lines=tuple(lines))


# --------------------------------------------------------------------------- compiling


@dataclass
class _Blocks:
    steps: dict[str, ast.Step] = field(default_factory=dict)
    menus: dict[str, ast.Menu] = field(default_factory=dict)
    collects: dict[str, ast.Collect] = field(default_factory=dict)
    groups: dict[str, ast.Group] = field(default_factory=dict)
    subs: dict[str, ast.Sub] = field(default_factory=dict)

    def kind(self, name: str) -> str | None:
        for kind, table in (("step", self.steps), ("menu", self.menus), ("collect", self.collects),
                            ("group", self.groups), ("sub", self.subs)):
            if name in table:
                return kind
        return None


class Compiler:
    """Builds the state table from the items of every file of a flow."""

    def __init__(self, items: Sequence[ast.Item]) -> None:
        self.items = list(items)
        self.blocks = _Blocks()
        for item in self.items:
            table: dict[str, object] | None = {
                ast.Step: self.blocks.steps, ast.Menu: self.blocks.menus, ast.Collect: self.blocks.collects,
                ast.Group: self.blocks.groups, ast.Sub: self.blocks.subs,
            }.get(type(item))  # type: ignore[assignment]
            if table is not None:
                table.setdefault(item.name, item)  # type: ignore[union-attr]
        self.states: dict[str, State] = {}
        self._step = ""

    # -- state table helpers
    def _name(self, kind: str, pos: SourcePos) -> str:
        base = f"{self._step}.{kind}@{pos.line}"
        name, n = base, 2
        while name in self.states:
            name, n = f"{base}#{n}", n + 1
        return name

    def _add(self, name: str, op: Op, pos: SourcePos, transitions: Mapping[str, str]) -> str:
        self.states[name] = State(name, self._step, op, MappingProxyType(dict(transitions)), pos)
        return name

    def _state(self, kind: str, op: Op, pos: SourcePos, transitions: Mapping[str, str]) -> str:
        return self._add(self._name(kind, pos), op, pos, transitions)

    def _finish(self, result: str, pos: SourcePos, detail: ast.Value | None = None, reason: str = "normal") -> str:
        return self._state("end", FinishOp(result, detail, reason), pos, {})

    def _drain(self, pos: SourcePos, then: str) -> str:
        return self._state("drain", DrainOp(), pos, {"next": then})

    def _error(self, pos: SourcePos, why: str) -> str:
        return self._finish("error", pos, ast.Str(pos=pos, text=why))

    # -- programs
    def compile(self, settings: Settings, schedules: Mapping[str, schedule.Hours], entries: Mapping[str, str],
                warnings: Sequence[Diagnostic] = (), files: Sequence[str] = ()) -> Program:
        for block in (*self.blocks.steps.values(), *self.blocks.menus.values(), *self.blocks.collects.values(),
                      *self.blocks.groups.values(), *self.blocks.subs.values()):
            self._block(block)  # type: ignore[arg-type]
        kinds = {name: kind for name in self.states if (kind := self.blocks.kind(name) or "")}
        self._link_speech_to_directories()
        return Program(
            states=MappingProxyType(self._used(kinds)),
            entries=MappingProxyType(dict(entries)),
            settings=settings,
            schedules=MappingProxyType(dict(schedules)),
            warnings=tuple(warnings),
            steps=MappingProxyType(kinds),
            files=tuple(files),
        )

    def _link_speech_to_directories(self) -> None:
        """A menu whose `speech` option leads to a speech directory listens for its names too."""
        for name, state in list(self.states.items()):
            if isinstance(state.op, MenuWaitOp) and "speech" in state.transitions:
                directory = _directory_after(self.states, state.transitions["speech"])
                if directory:
                    self.states[name] = replace(state, op=replace(state.op, directory=directory))

    def _used(self, blocks: Mapping[str, str]) -> dict[str, State]:
        """The states reachable from some block's entry (the others were built but never linked)."""
        seen: set[str] = set()
        todo = list(blocks)
        while todo:
            name = todo.pop()
            if name in seen or name not in self.states:
                continue
            seen.add(name)
            todo.extend(self.states[name].transitions.values())
        return {name: state for name, state in self.states.items() if name in seen}

    def _block(self, block: ast.Block) -> None:
        self._step = block.name
        if isinstance(block, ast.Step):
            end = self._drain(block.pos, self._finish("hangup", block.pos))
            first = self._stmts(block.body, end)
        elif isinstance(block, ast.Sub):
            first = self._stmts(block.body, self._state("return", ReturnOp(), block.pos, {}))
        elif isinstance(block, ast.Menu):
            first = self._menu(block)
        elif isinstance(block, ast.Collect):
            first = self._collect(block)
        else:
            first = self._group(block)
        self._add(block.name, EnterOp(block.name, isinstance(block, ast.Sub)), block.pos, {"next": first})

    def _stmts(self, body: Sequence[ast.Stmt], then: str) -> str:
        for stmt in reversed(body):
            then = self._stmt(stmt, then)
        return then

    def _stmt(self, stmt: ast.Stmt, then: str) -> str:
        if isinstance(stmt, ast.When):
            target = self._target(stmt.target, then)
            return self._state("when", BranchOp(stmt.cond), stmt.pos, {"true": target, "false": then})
        if isinstance(stmt, ast.Otherwise):
            return self._target(stmt.target, then)
        return self._target(stmt, then)

    def _target(self, target: ast.Target, then: str, context: str = "") -> str:
        """A branch target: a step (jump) or an inline action that continues at ``then``."""
        if isinstance(target, ast.Goto):
            return target.step if self.blocks.kind(target.step) not in (None, "sub") else self._error(
                target.pos, f"unknown step {target.step}"
            )
        if isinstance(target, ast.Say | ast.Play):
            return self._state(type(target).__name__.lower(), PromptOp(target), target.pos, {"next": then})
        if isinstance(target, ast.Set):
            return self._state("set", AssignOp(target.name, target.value), target.pos, {"next": then})
        if isinstance(target, ast.Call):
            sub = self.blocks.subs.get(target.sub)
            if sub is None:
                return self._error(target.pos, f"unknown sub {target.sub}")
            return self._state("call", CallOp(sub.name, sub.params, target.args), target.pos,
                               {"call": sub.name, "return": then})
        if isinstance(target, ast.Return):
            return self._state("return", ReturnOp(), target.pos, {})
        if isinstance(target, ast.Hangup):
            return self._drain(target.pos, self._finish("hangup", target.pos))
        if isinstance(target, ast.Hold):
            music = target.music.text if target.music else ""
            hold = self._state("hold", HoldOp(music, target.duration), target.pos, {"next": then})
            return self._drain(target.pos, hold)
        if isinstance(target, ast.Record):
            op = RecordOp(target.variable, target.max_length, target.silence, target.beep)
            return self._drain(target.pos, self._state("record", op, target.pos, {"next": then}))
        if isinstance(target, ast.Voicemail):
            greeting = target.greeting or ("busy" if context == "busy" else "unavailable")
            end = self._finish("voicemail", target.pos, target.mailbox)
            leave = VoicemailOp(target.mailbox, greeting, target.review, target.temporary)
            vm = self._state("voicemail", leave, target.pos, {"done": end})
            return self._drain(target.pos, vm)
        if isinstance(target, ast.VoicemailAccess):
            end = self._finish("voicemail_access", target.pos, target.mailbox)
            vma = self._state("voicemail_access", VoicemailAccessOp(target.mailbox), target.pos, {"done": end})
            return self._drain(target.pos, vma)
        if isinstance(target, ast.Conference):
            end = self._finish("conference", target.pos, ast.Str(pos=target.pos, text=target.room))
            conf = ConferenceOp(target.room, target.pin, target.moderator_pin, target.max_participants or 0,
                                target.music.text if target.music else "", target.tones, target.announce)
            return self._drain(target.pos, self._state("conference", conf, target.pos, {"done": end, "full": then}))
        if isinstance(target, ast.Transfer):
            return self._drain(target.pos, self._transfer(target, then))
        if isinstance(target, ast.Directory):
            return self._drain(target.pos, self._directory(target, then))
        raise TypeError(f"cannot compile {target!r}")

    # -- transfers, groups, directory
    def _branches(self, branches: Sequence[ast.Branch], edges: Sequence[str], then: str, pos: SourcePos,
                  defaults: Mapping[str, str] | None = None) -> dict[str, str]:
        chosen: dict[str, ast.Branch] = {}
        fallback: ast.Branch | None = None
        for branch in branches:
            for outcome in branch.outcomes:
                if outcome == "else":
                    fallback = fallback or branch
                else:
                    chosen.setdefault(outcome, branch)
        out: dict[str, str] = {}
        compiled: dict[tuple[int, bool], str] = {}  # a branch for several outcomes compiles once
        for edge in edges:
            picked = chosen.get(edge)
            if picked is None and defaults and edge in defaults:
                out[edge] = defaults[edge]
                continue
            use = picked or fallback
            if use is None:
                out[edge] = self._error(pos, f"unhandled outcome {edge}")
                continue
            key = (id(use), edge == "busy" and isinstance(use.target, ast.Voicemail))
            if key not in compiled:
                compiled[key] = self._target(use.target, then, context=edge)
            out[edge] = compiled[key]
        return out

    def _transfer(self, node: ast.Transfer, then: str) -> str:
        branches: list[ast.Branch] = list(node.branches)
        group = self.blocks.groups.get(node.target.name) if isinstance(node.target, ast.GroupRef) else None
        if isinstance(node.target, ast.GroupRef):
            if group is None:
                return self._error(node.pos, f"unknown group {node.target.name}")
            op = _group_op(group)
            if node.music:
                op = replace(op, music=node.music.text)
            op = replace(op, refer=op.refer or node.refer, pikett=node.target.pikett, record=node.record)
            # The statement's own branches win; the group's fill in the rest.
            branches += list(group.branches)
        else:
            ring = ast.Ring(pos=node.pos, members=node.targets(), mode=node.mode or "together",
                            timeout=node.ring_for or DEFAULT_RING_TIMEOUT)
            op = TransferOp(_ring_plan((ring,)), node.music.text if node.music else "", node.refer, record=node.record)
        return self._ring(op, branches, then, node.pos)

    def _ring(self, op: TransferOp, branches: Sequence[ast.Branch], then: str, pos: SourcePos) -> str:
        answered = next((b for b in branches if "answered" in b.outcomes), None)
        label = ast.Str(pos=pos, text="{transfer_target}")
        after = self._target(answered.target, then) if answered else self._finish("transferred", pos, label)
        if op.refer:
            bridged = self._finish("transferred", pos, label, reason="transferred")
        else:
            bridged = self._state("bridged", BridgedOp(op.describe()), pos, {"bridge_ended": after})
        edges = self._branches([b for b in branches if "answered" not in b.outcomes], TRANSFER_EDGES[1:], then, pos)
        return self._state("ring" if op.group else "transfer", op, pos, {"answered": bridged, **edges})

    def _group(self, group: ast.Group) -> str:
        end = self._drain(group.pos, self._finish("hangup", group.pos))
        return self._drain(group.pos, self._ring(_group_op(group), group.branches, end, group.pos))

    def _directory(self, node: ast.Directory, then: str) -> str:
        pos = node.pos
        person = ast.Var(pos=pos, name="directory_extension")
        mailbox = ast.Var(pos=pos, name="directory_mailbox")
        fallback = ast.Branch(pos=pos, outcomes=("else",), target=ast.Voicemail(pos=pos, mailbox=mailbox))
        connect = ast.Transfer(pos=pos, target=person, branches=(fallback,))
        defaults = {}
        if not any("selected" in b.outcomes for b in node.branches):
            defaults["selected"] = self._transfer(connect, then)
        edges = self._branches(node.branches, DIRECTORY_EDGES, then, pos, defaults)
        op = DirectoryOp(node.name, node.by_speech, node.by_keys, node.match, node.confirm, node.keypad_key)
        return self._state("directory", op, pos, edges)

    # -- menus and collect
    def _prompts(self, prompts: Sequence[ast.Say | ast.Play | ast.Set], then: str) -> str:
        for prompt in reversed(prompts):
            then = self._target(prompt, then)
        return then

    def _input_branches(self, events: Sequence[ast.OnInput], retry: str, pos: SourcePos) -> dict[str, str]:
        by_event: dict[str, ast.OnInput] = {}
        for line in events:
            for event in line.events:
                by_event.setdefault(event, line)
        out: dict[str, str] = {}
        for event in ("invalid", "no_input"):
            found = by_event.get(event)
            out[event] = self._target(found.target, retry) if found else retry
        exhausted = by_event.get("exhausted")
        end = self._drain(pos, self._finish("hangup", pos))
        compiled: dict[int, str] = {}
        for event in ("too_many_invalid", "too_many_no_input"):
            handler = by_event.get(event) or exhausted
            if handler is None:
                out[event] = end
                continue
            if id(handler) not in compiled:
                compiled[id(handler)] = self._target(handler.target, end)
            out[event] = compiled[id(handler)]
        return out

    def _menu(self, menu: ast.Menu) -> str:
        wait = _first(menu.waits, "timeout") or DEFAULT_MENU_TIMEOUT
        tries = _first(menu.waits, "tries") or DEFAULT_TRIES
        keys = tuple(c.key for o in menu.options for c in o.choices if c.key)
        phrases = tuple(c.phrase for o in menu.options for c in o.choices if c.phrase)
        any_speech = any(c.any_speech for o in menu.options for c in o.choices)
        op = MenuWaitOp(menu.name, keys, phrases, any_speech, float(wait), int(tries))
        wait_name = self._name("wait", menu.pos)
        asks = [a.prompt for a in menu.asks] or [p for p in menu.prompts if not isinstance(p, ast.Set)]
        retry = self._prompts(asks, wait_name)
        edges = self._input_branches(menu.events, retry, menu.pos)
        for option in menu.options:
            target = self._target(option.target, retry)
            for choice in option.choices:
                label = f"key:{choice.key}" if choice.key else f"speech:{choice.phrase}" if choice.phrase else "speech"
                edges.setdefault(label, target)
        self._add(wait_name, op, menu.pos, edges)
        # The first round plays the prompts, then the re-prompt states themselves.
        first = self._prompts(menu.prompts, retry if menu.asks else wait_name)
        return self._state("start", MenuStartOp(menu.name), menu.pos, {"next": first})

    def _collect(self, collect: ast.Collect) -> str:
        digits = collect.digits[0] if collect.digits else None
        end_key = (digits.end_key if digits and digits.end_key else None) or (
            collect.end_keys[-1][0] if collect.end_keys else "#"
        )
        op = CollectWaitOp(
            collect.name,
            collect.variable,
            digits.low if digits else 1,
            digits.high if digits else 20,
            end_key,
            float(_first(collect.waits, "timeout") or DEFAULT_MENU_TIMEOUT),
            float(_first(collect.waits, "between") or DEFAULT_INTER_DIGIT),
            int(_first(collect.waits, "tries") or DEFAULT_TRIES),
        )
        wait_name = self._name("wait", collect.pos)
        asks = [a.prompt for a in collect.asks] or [p for p in collect.prompts if not isinstance(p, ast.Set)]
        retry = self._prompts(asks, wait_name)
        edges = self._input_branches(collect.events, retry, collect.pos)
        end = self._drain(collect.pos, self._finish("hangup", collect.pos))
        edges["done"] = self._target(collect.then[0], end) if collect.then else end
        self._add(wait_name, op, collect.pos, edges)
        first = self._prompts(collect.prompts, retry if collect.asks else wait_name)
        return self._state("start", CollectStartOp(collect.name), collect.pos, {"next": first})


def _first(waits: Sequence[ast.Wait], attr: str) -> float | int | None:
    for wait in waits:
        value = getattr(wait, attr)
        if value is not None:
            return value  # type: ignore[no-any-return]
    return None


# States a call passes through without asking the caller anything (a drain only waits for prompts).
_PASS_THROUGH = (EnterOp, PromptOp, AssignOp, DrainOp)


def _directory_after(states: Mapping[str, State], name: str) -> str:
    """The speech directory a call reaches from ``name`` without asking the caller anything, or ""."""
    for _ in range(len(states)):
        state = states.get(name)
        if state is None:
            return ""
        if isinstance(state.op, DirectoryOp):
            return state.op.name if state.op.by_speech else ""
        if not isinstance(state.op, _PASS_THROUGH) or "next" not in state.transitions:
            return ""
        name = state.transitions["next"]
    return ""


def _group_op(group: ast.Group) -> TransferOp:
    return TransferOp(_ring_plan(group.rings), group.music.text if group.music else "", group.refer, group.name)


def _ring_plan(rings: Sequence[ast.Ring]) -> tuple[tuple[tuple[ast.Value, ...], float], ...]:
    """The ring plan of a group's ring lines or of one transfer's targets: a step per line rung
    together, a step per member rung in turn (each for the line's time)."""
    plan: list[tuple[tuple[ast.Value, ...], float]] = []
    for ring in rings:
        if ring.mode == "together":
            plan.append((ring.members, ring.timeout))
        else:
            plan.extend(((m,), ring.timeout) for m in ring.members)
    return tuple(plan)


def settings_from(items: Sequence[ast.Item], base_of: Mapping[str, Path]) -> Settings:
    """The file-level settings; ``base_of`` maps a flow file to its folder (for directory paths)."""
    values: dict[str, str] = {}
    directories: dict[str, str] = {}
    switches: list[str] = []
    for item in items:
        if isinstance(item, ast.Setting):
            values.setdefault(item.key, item.value)
        elif isinstance(item, ast.DirectorySource):
            base = base_of.get(item.pos.file, Path.cwd())
            directories.setdefault(item.name, str((base / item.path).resolve()))
        elif isinstance(item, ast.SwitchDecl) and item.name not in switches:
            switches.append(item.name)
    return Settings(
        timezone=values.get("timezone", "UTC"),
        voice=values.get("voice", ""),
        rate=int(values["rate"]) if "rate" in values else None,
        language=values.get("language", ""),
        hold_music=values.get("hold_music", ""),
        directories=MappingProxyType(directories),
        switches=tuple(switches),
    )
