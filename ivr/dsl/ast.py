"""The flow language's syntax tree: frozen dataclasses, every node carrying its SourcePos.

Built by :mod:`ivr.dsl.parser` from the lark tree, read by :mod:`ivr.dsl.checks`
and :mod:`ivr.dsl.compiler`.  Nodes hold plain values (strings, floats, tuples)
so they can be compared in tests and shared between compiled states.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Literal

from ivr.dsl.errors import SourcePos

_INTERPOLATION = re.compile(r"\{([a-z_][a-z0-9_]*)\}")


@dataclass(frozen=True, kw_only=True)
class Node:
    pos: SourcePos


# --------------------------------------------------------------------------- values and conditions


@dataclass(frozen=True, kw_only=True)
class Str(Node):
    """A string literal; ``{name}`` inside is replaced by the variable's value when used."""

    text: str

    def variables(self) -> tuple[str, ...]:
        return tuple(_INTERPOLATION.findall(self.text))


@dataclass(frozen=True, kw_only=True)
class Num(Node):
    """A number as written: an integer, an extension or an E.164 number (``+41...``)."""

    text: str


@dataclass(frozen=True, kw_only=True)
class Var(Node):
    """A variable: ``caller`` in a condition, or ``{extension}`` as a transfer target or mailbox."""

    name: str


Value = Str | Num | Var


@dataclass(frozen=True, kw_only=True)
class Compare(Node):
    op: Literal["==", "!=", "<", "<=", ">", ">="]
    left: Value
    right: Value


@dataclass(frozen=True, kw_only=True)
class StartsWith(Node):
    left: Value
    right: Value


@dataclass(frozen=True, kw_only=True)
class InList(Node):
    left: Value
    options: tuple[Value, ...]


@dataclass(frozen=True, kw_only=True)
class IsState(Node):
    """``office is open`` (an hours block) or ``night is on`` (a switch)."""

    name: str
    state: Literal["open", "closed", "on", "off"]


@dataclass(frozen=True, kw_only=True)
class Not(Node):
    cond: Cond


@dataclass(frozen=True, kw_only=True)
class And(Node):
    left: Cond
    right: Cond


@dataclass(frozen=True, kw_only=True)
class Or(Node):
    left: Cond
    right: Cond


Cond = Compare | StartsWith | InList | IsState | Not | And | Or


# --------------------------------------------------------------------------- statements


@dataclass(frozen=True, kw_only=True)
class Say(Node):
    text: Str
    barge_in: bool = True


@dataclass(frozen=True, kw_only=True)
class Play(Node):
    path: Str
    barge_in: bool = True


@dataclass(frozen=True, kw_only=True)
class Set(Node):
    name: str
    value: Value


@dataclass(frozen=True, kw_only=True)
class Goto(Node):
    """``-> step`` or ``goto step``: continue at another step (a menu, group, collect or plain step)."""

    step: str


@dataclass(frozen=True, kw_only=True)
class Call(Node):
    sub: str
    args: tuple[Value, ...]


@dataclass(frozen=True, kw_only=True)
class Return(Node):
    pass


@dataclass(frozen=True, kw_only=True)
class Hold(Node):
    music: Str | None = None
    duration: float | None = None


@dataclass(frozen=True, kw_only=True)
class Record(Node):
    variable: str
    max_length: float = 120.0
    silence: float = 0.0
    beep: bool = True


@dataclass(frozen=True, kw_only=True)
class Voicemail(Node):
    mailbox: Value
    greeting: Literal["unavailable", "busy", "temporary"] | None = None  # None: by context
    review: bool = False
    temporary: bool = True  # False: `no temporary`, the owner's temporary greeting does not win here


@dataclass(frozen=True, kw_only=True)
class VoicemailAccess(Node):
    mailbox: Value | None = None


@dataclass(frozen=True, kw_only=True)
class Hangup(Node):
    pass


@dataclass(frozen=True, kw_only=True)
class Conference(Node):
    """``conference ROOM [pin "1234"] [moderator pin "9999"] [max 6] [music "moh/"] [tones] [announce count]``."""

    room: str
    pin: Str | None = None
    moderator_pin: Str | None = None
    max_participants: int | None = None
    music: Str | None = None
    tones: bool = False
    announce: bool = False


@dataclass(frozen=True, kw_only=True)
class Branch(Node):
    """One line of an outcome block: ``busy, no answer -> voicemail 300``."""

    outcomes: tuple[str, ...]  # "answered" "busy" "no_answer" "unavailable" "failed" "selected" "not_found" "operator" "else"
    target: Target


@dataclass(frozen=True, kw_only=True)
class Transfer(Node):
    """``transfer to T [, T2 ... together|in turn] [for 25s] [music "src"] [by refer] [record] [else TARGET]``
    plus its outcome block.  ``record``: the bridged conversation is recorded (ivr.runtime.callrecording).

    Several targets (``also``) are rung the way a group's ``ring`` line rings them: ``mode`` says
    together or in turn (each for ``ring_for``); ``mode`` without ``also`` is allowed and rings one.
    """

    target: Value  # Num: extension/E.164; Var: {variable}; Str: quoted; GroupRef: a group's name
    ring_for: float | None = None
    music: Str | None = None
    refer: bool = False
    record: bool = False
    branches: tuple[Branch, ...] = ()
    also: tuple[Value, ...] = ()  # the targets after the first: `transfer to 10, 11 together`
    mode: Literal["together", "in_turn"] | None = None  # as written; None: not written

    def targets(self) -> tuple[Value, ...]:
        """Every target the statement names, in order."""
        return (self.target, *self.also)


@dataclass(frozen=True, kw_only=True)
class GroupRef(Node):
    name: str
    pikett: bool = False  # `transfer to pikett NAME`: the members' on-call numbers, not their phones


@dataclass(frozen=True, kw_only=True)
class Directory(Node):
    name: str
    by_speech: bool = True
    by_keys: bool = True
    match: Literal["last", "first", "either"] = "last"
    confirm: bool = True
    branches: tuple[Branch, ...] = ()
    keypad_key: str = ""  # `press 9 for keypad`: the key that leaves speech for the keypad directory


@dataclass(frozen=True, kw_only=True)
class When(Node):
    cond: Cond
    target: Target


@dataclass(frozen=True, kw_only=True)
class Otherwise(Node):
    target: Target


Action = (
    Say | Play | Set | Call | Return | Hold | Record | Voicemail | VoicemailAccess | Hangup | Conference | Transfer
    | Directory
)
Target = Goto | Action
Stmt = Action | Goto | When | Otherwise


# --------------------------------------------------------------------------- blocks


@dataclass(frozen=True, kw_only=True)
class Step(Node):
    name: str
    body: tuple[Stmt, ...]


@dataclass(frozen=True, kw_only=True)
class Sub(Node):
    name: str
    params: tuple[str, ...]
    body: tuple[Stmt, ...]


@dataclass(frozen=True, kw_only=True)
class Choice(Node):
    """One way to pick a menu option: a key, a spoken phrase, or ``speech`` (any other utterance)."""

    key: str = ""
    phrase: str = ""
    any_speech: bool = False


@dataclass(frozen=True, kw_only=True)
class Option(Node):
    choices: tuple[Choice, ...]
    target: Target


@dataclass(frozen=True, kw_only=True)
class OnInput(Node):
    """``invalid``, ``no input``, ``too many invalid``, ``too many no input``, ``exhausted`` branches."""

    events: tuple[str, ...]  # "invalid" "no_input" "too_many_invalid" "too_many_no_input" "exhausted"
    target: Target


@dataclass(frozen=True, kw_only=True)
class Ask(Node):
    """A re-prompt: ``ask "text"`` (TTS) or ``ask play "file.wav"``."""

    prompt: Say | Play


@dataclass(frozen=True, kw_only=True)
class Wait(Node):
    """``wait 6s, between 3s, retry 3 times``: first-input timeout, inter-digit timeout, tries."""

    timeout: float | None = None
    between: float | None = None
    tries: int | None = None


@dataclass(frozen=True, kw_only=True)
class Menu(Node):
    name: str
    prompts: tuple[Say | Play | Set, ...]
    asks: tuple[Ask, ...]
    waits: tuple[Wait, ...]
    options: tuple[Option, ...]
    events: tuple[OnInput, ...]


@dataclass(frozen=True, kw_only=True)
class Digits(Node):
    low: int
    high: int
    end_key: str | None = None


@dataclass(frozen=True, kw_only=True)
class Collect(Node):
    name: str
    variable: str
    prompts: tuple[Say | Play | Set, ...]
    asks: tuple[Ask, ...]
    waits: tuple[Wait, ...]
    digits: tuple[Digits, ...]
    end_keys: tuple[tuple[str, SourcePos], ...]
    then: tuple[Target, ...]
    events: tuple[OnInput, ...]


@dataclass(frozen=True, kw_only=True)
class Ring(Node):
    members: tuple[Value, ...]
    mode: Literal["together", "in_turn"] = "together"
    timeout: float = 20.0


@dataclass(frozen=True, kw_only=True)
class Group(Node):
    name: str
    rings: tuple[Ring, ...]
    music: Str | None = None
    refer: bool = False
    branches: tuple[Branch, ...] = ()


# --------------------------------------------------------------------------- file level


@dataclass(frozen=True, kw_only=True)
class Include(Node):
    path: str


@dataclass(frozen=True, kw_only=True)
class Setting(Node):
    """``timezone``, ``voice``, ``rate``, ``language``, ``hold_music``: one value each."""

    key: Literal["timezone", "voice", "rate", "language", "hold_music"]
    value: str
    value_pos: SourcePos | None = field(default=None, compare=False)  # where the value is written


@dataclass(frozen=True, kw_only=True)
class DirectorySource(Node):
    name: str
    path: str


@dataclass(frozen=True, kw_only=True)
class SwitchDecl(Node):
    name: str


@dataclass(frozen=True, kw_only=True)
class NumberEntry(Node):
    numbers: tuple[str, ...]  # "default" for any other called number
    step: str
    step_pos: SourcePos | None = None  # where the step name is written


@dataclass(frozen=True, kw_only=True)
class WeeklyLine(Node):
    days: str  # "mon-fri,sat" as written (schedule.parse_weekdays reads it)
    ranges: tuple[str, ...]  # "08:00-12:00"
    range_pos: tuple[SourcePos, ...] = field(default=(), compare=False)  # where each range is written


@dataclass(frozen=True, kw_only=True)
class HolidaysLine(Node):
    regions: tuple[str, ...]
    region_pos: tuple[SourcePos, ...] = field(default=(), compare=False)


@dataclass(frozen=True, kw_only=True)
class ClosedLine(Node):
    first: str  # YYYY-MM-DD
    last: str
    date_pos: tuple[SourcePos, ...] = field(default=(), compare=False)  # first, and last if written


@dataclass(frozen=True, kw_only=True)
class OpenLine(Node):
    day: str
    ranges: tuple[str, ...]
    date_pos: tuple[SourcePos, ...] = field(default=(), compare=False)
    range_pos: tuple[SourcePos, ...] = field(default=(), compare=False)


@dataclass(frozen=True, kw_only=True)
class SwitchLine(Node):
    switch: str


@dataclass(frozen=True, kw_only=True)
class HoursTimezone(Node):
    timezone: str
    zone_pos: SourcePos | None = field(default=None, compare=False)


HoursLine = WeeklyLine | HolidaysLine | ClosedLine | OpenLine | SwitchLine | HoursTimezone


@dataclass(frozen=True, kw_only=True)
class HoursDef(Node):
    name: str
    lines: tuple[HoursLine, ...]


Block = Step | Sub | Menu | Collect | Group
Item = Include | Setting | DirectorySource | SwitchDecl | NumberEntry | HoursDef | Block


@dataclass(frozen=True, kw_only=True)
class FlowFile(Node):
    path: str
    items: tuple[Item, ...]
