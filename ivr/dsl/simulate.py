"""A call in the terminal: drives a compiled flow with a fake clock and scripted caller input.

This module owns the *simulated runner* behind ``ivr simulate`` and ``ivr test``.  It plays the
part the call runner plays in ``ivr serve``, without audio or SIP: it feeds the sans-IO
:class:`~ivr.dsl.machine.Machine` the events a real call would produce and records every action
as a :class:`TraceLine`.

The fake clock starts at the scenario's ``start`` (epoch seconds).  Prompts "play" for a
plausible time (``say``: about 14 characters a second; ``play``: the file's real duration when
it can be found in the prompt folders, else 2 s) and then report ``PromptDone``.  Caller input
is a list of :class:`CallerInput` tokens (``1``, ``123#``, ``say:alice_johnson``, ``wait:10s``,
``hangup``; a leading ``!`` interrupts the prompt that is playing).  Input is delivered when the
flow is idle -- every prompt played and every pending result delivered -- which is when a
caller who listens to the whole prompt would act; ``!`` tokens arrive at once (barge-in).  A
``wait:`` starts at once, and the token after it arrives right when the wait ends
(``wait:5s hangup`` hangs up five seconds in, even while a phone is still ringing).  Timers
fire when the clock reaches ``machine.next_timer``.  Transfers, directory look-ups and
voicemail resolve as the scenario says (default: answered / selected / saved); with
``Scenario.dialogues`` the ``directory``, ``voicemail`` and ``voicemail access`` steps run the real
sans-IO dialogues of ivr.directory and ivr.voicemail instead (on a throw-away data folder), fed the
same way as the flow machine (prompts, timers, the caller's keys, a recording of a few seconds of
"voice"), and their result goes back to the flow.
"""

from __future__ import annotations

import heapq
import itertools
import re
import shlex
import tempfile
import unicodedata
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import soundfile

from ivr.config import Config, ConfigError, parse_duration
from ivr.directory.source import DirectoryError, load_directory
from ivr.dsl import events as ev
from ivr.dsl.schedule import Hours, format_local, zone

if TYPE_CHECKING:
    from ivr.dsl.compiler import Program

CHARS_PER_SECOND = 14.0  # a TTS voice at ~160 words per minute
MIN_SAY_SECONDS = 0.5
DEFAULT_PLAY_SECONDS = 2.0
KEY_SPACING = 0.5  # seconds between the keys of one token such as 123#
RING_ANSWER_SECONDS = 5.0  # how long a phone rings before someone picks up
REFUSED_SECONDS = 1.0  # busy / unavailable / failed come back quickly
TALK_SECONDS = 60.0  # an answered transfer is a one-minute conversation
VOICEMAIL_SECONDS = 20.0
RECORD_SECONDS = 5.0
MAX_EVENTS = 2000  # a flow that keeps running longer than this is looping
MAX_DURATION = 4 * 3600.0

InputKind = Literal["key", "speech", "wait", "hangup"]


class SimulationError(ValueError):
    """Bad simulator input (a token, a flag); the message says which and what is expected."""


# --------------------------------------------------------------------------- caller input


@dataclass(frozen=True)
class CallerInput:
    """One thing the caller does: press keys, say something, wait, hang up."""

    kind: InputKind
    value: str = ""  # the keys, or the words said
    seconds: float = 0.0  # for wait; 0 with kind "wait" means "until the next timer"
    barge_in: bool = False  # delivered at once, interrupting the prompt

    def __str__(self) -> str:
        prefix = "!" if self.barge_in else ""
        if self.kind == "key":
            return prefix + self.value
        if self.kind == "speech":
            return f"{prefix}say:{self.value.replace(' ', '_')}"
        if self.kind == "wait":
            return f"wait:{_fmt_seconds(self.seconds)}" if self.seconds else "wait"
        return prefix + "hangup"


_KEYS = re.compile(r"[0-9*#A-D]+")


def parse_input(token: str) -> CallerInput:
    """One token of ``--input``; SimulationError names the token if it means nothing."""
    barge = token.startswith("!")
    body = token[1:] if barge else token
    low = body.lower()
    if _KEYS.fullmatch(body):
        return CallerInput("key", body, barge_in=barge)
    if low.startswith("say:"):
        words = body[4:].replace("_", " ").strip()
        return CallerInput("speech", " ".join(words.split()), barge_in=barge)
    if low in ("hangup", "hang-up", "bye"):
        return CallerInput("hangup", barge_in=barge)
    if low == "wait":
        return CallerInput("wait")
    if low.startswith("wait:"):
        try:
            return CallerInput("wait", seconds=parse_duration(body[5:], where="wait"))
        except ConfigError:
            pass
    raise SimulationError(
        f"unknown input {token!r}; expected keys (1, 123#, *), say:WORDS, wait:10s, wait or hangup"
    )


def parse_inputs(text: str) -> list[CallerInput]:
    """``"1 9 say:alice_johnson wait:10s # hangup"`` -> inputs (quotes group words: say:"alice johnson")."""
    try:
        tokens = shlex.split(text, comments=False, posix=True)
    except ValueError as exc:
        raise SimulationError(f"bad input {text!r}: {exc}") from None
    return [parse_input(t) for t in tokens]


# --------------------------------------------------------------------------- scenario


@dataclass(frozen=True)
class Scenario:
    """Everything about one simulated call that is not in the flow."""

    start: float
    caller: str = "anonymous"
    called: str = ""  # "" = the flow's first number
    inputs: tuple[CallerInput, ...] = ()
    switches: Mapping[str, bool] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    # Transfer outcomes per target ("*" = every target).  A target in none of these answers,
    # unless ``answer`` is given: then only the targets listed there answer.
    answer: frozenset[str] | None = None
    busy: frozenset[str] = frozenset()
    no_answer: frozenset[str] = frozenset()
    unavailable: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    # Directory: "Name=EXT" picks a person; "not found" / "operator" give that outcome.
    directory: tuple[str, ...] = ()
    voicemail_result: str = "saved"
    # Run the directory's own dialogue (its prompts, keypad spelling, confirmation) instead of
    # resolving a ``directory`` step at once; needs ivr.directory's dialogue for that mode.
    dialogues: bool = False


def transfer_outcome(scenario: Scenario, target: str) -> ev.TransferOutcome:
    """What happens when ``target`` is rung in this scenario."""

    def listed(group: frozenset[str] | None) -> bool:
        return group is not None and (target in group or "*" in group)

    if listed(scenario.answer):
        return "answered"
    refusals: tuple[tuple[ev.TransferOutcome, frozenset[str]], ...] = (
        ("busy", scenario.busy),
        ("no_answer", scenario.no_answer),
        ("unavailable", scenario.unavailable),
        ("failed", scenario.failed),
    )
    for outcome, group in refusals:
        if listed(group):
            return outcome
    return "answered" if scenario.answer is None else "no_answer"


def ring_plan(scenario: Scenario, plan: ev.Transfer) -> tuple[ev.TransferOutcome, str, float]:
    """(outcome, target, seconds until the result) for a ring plan, step by step like a real B2BUA."""
    elapsed = 0.0
    seen: list[ev.TransferOutcome] = []
    for targets, timeout in plan.plan:
        outcomes = [transfer_outcome(scenario, t) for t in targets]
        for target, outcome in zip(targets, outcomes, strict=True):
            if outcome == "answered":
                return (
                    "answered",
                    target,
                    elapsed + min(RING_ANSWER_SECONDS, timeout or RING_ANSWER_SECONDS),
                )
        seen.extend(outcomes)
        elapsed += timeout if "no_answer" in outcomes else REFUSED_SECONDS
    return _overall(seen), "", elapsed


def _overall(outcomes: Sequence[ev.TransferOutcome]) -> ev.TransferOutcome:
    """Nobody answered: all busy -> busy, all unreachable -> unavailable, all failed -> failed."""
    singles: tuple[ev.TransferOutcome, ...] = ("busy", "unavailable", "failed")
    for single in singles:
        if outcomes and all(o == single for o in outcomes):
            return single
    return "no_answer"


# --------------------------------------------------------------------------- trace


@dataclass(frozen=True)
class TraceLine:
    """One line of the simulator's output: an action, a caller event or the outcome."""

    at: float  # seconds since the call started
    kind: str  # action kind ("say", "ring" ...), "caller", "timer", "result", "outcome", "note"
    text: str  # the plain-words line
    data: Mapping[str, Any] = field(default_factory=dict)  # the JSON object

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class SimulationResult:
    lines: tuple[TraceLine, ...]
    outcome: ev.Outcome | None
    duration: float  # simulated seconds

    @property
    def text(self) -> list[str]:
        return [line.text for line in self.lines]


def describe_action(action: ev.Action) -> str:
    """The plain-words line for an action: what the caller hears or what the system does."""
    if isinstance(action, ev.Say):
        return f"say: {action.text}"
    if isinstance(action, ev.Play):
        return f"play: {action.path}"
    if isinstance(action, ev.EnterStep):
        return f"step: {action.step}"
    if isinstance(action, ev.Tone):
        return f"tone: {action.frequency:g} Hz ({_fmt_seconds(action.duration)})"
    if isinstance(action, ev.Listen):
        speech = f", speech ({' | '.join(action.phrases)})" if action.phrases else ""
        return f"listen: keys{speech}"
    if isinstance(action, ev.Transfer):
        return describe_transfer(action)
    if isinstance(action, ev.Directory):
        return f"directory: {action.name}"
    if isinstance(action, ev.Voicemail):
        extra = "" if action.greeting == "unavailable" else f" ({action.greeting} greeting)"
        return f"voicemail: {action.mailbox}{extra}" + (" with review" if action.review else "")
    if isinstance(action, ev.VoicemailAccess):
        return f"voicemail access: {action.mailbox}" if action.mailbox else "voicemail access"
    if isinstance(action, ev.Record):
        return f"record: into {action.variable} (max {_fmt_seconds(action.max_length)})"
    if isinstance(action, ev.StartRecording):
        return f"recording: {action.path}"
    if isinstance(action, ev.StopRecording):
        return "recording stopped"
    if isinstance(action, ev.Hold):
        music = action.music or "default music"
        return f"hold: {music}" + (f" ({_fmt_seconds(action.duration)})" if action.duration else "")
    if isinstance(action, ev.StopPrompts):
        return "prompts stopped (barge-in)"
    if isinstance(action, ev.HangupCall):
        return "hangup" if action.reason == "normal" else f"hangup: {action.reason}"
    return f"{action.kind}"


def describe_transfer(action: ev.Transfer) -> str:
    """``transfer: 300 (20s)`` for one target; ``ring: 201, 202 (25s), then 204 (15s) (group sales)``."""
    steps = [f"{', '.join(targets)} ({_fmt_seconds(timeout)})" for targets, timeout in action.plan]
    single = len(action.plan) == 1 and len(action.plan[0][0]) == 1 and not action.group
    verb = "transfer" if single else "ring"
    group = f" (group {action.group})" if action.group else ""
    return f"{verb}: " + ", then ".join(steps) + (" by refer" if action.refer else "") + group


def describe_outcome(outcome: ev.Outcome | None) -> str:
    if outcome is None:
        return "outcome: unfinished"
    detail = f" {outcome.detail}" if outcome.detail else ""
    step = f" (in {outcome.step})" if outcome.step else ""
    return f"outcome: {outcome.result}{detail}{step}"


def action_json(action: ev.Action, at: float) -> dict[str, Any]:
    data: dict[str, Any] = {"action": action.kind}
    for f in fields(action):
        value = getattr(action, f.name)
        data[f.name] = _jsonable(value)
    data["t"] = round(at, 3)
    return data


def _jsonable(value: Any) -> Any:
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def _fmt_seconds(seconds: float) -> str:
    if seconds >= 60 and seconds % 60 == 0:
        return f"{int(seconds // 60)}m"
    if seconds == int(seconds):
        return f"{int(seconds)}s"
    return f"{seconds:.1f}s"


# --------------------------------------------------------------------------- helpers the runner needs


def prompt_seconds(action: ev.Action, prompt_folders: Sequence[Path]) -> float:
    """How long a prompt plays: by text length for TTS, by the file for recordings."""
    if isinstance(action, ev.Say):
        return max(MIN_SAY_SECONDS, round(len(action.text) / CHARS_PER_SECOND, 2))
    if isinstance(action, ev.Tone):
        return action.duration
    if isinstance(action, ev.Play):
        return _file_seconds(action.path, prompt_folders)
    return 0.0


def _file_seconds(path: str, folders: Sequence[Path]) -> float:
    if path.startswith("data:"):
        return DEFAULT_PLAY_SECONDS
    for folder in folders:
        candidate = (Path(folder) / path).resolve()
        if candidate.is_file() and candidate.is_relative_to(Path(folder).resolve()):
            try:
                return float(soundfile.info(str(candidate)).duration)
            except (soundfile.LibsndfileError, RuntimeError, OSError):
                return DEFAULT_PLAY_SECONDS  # unreadable audio: `ivr check` reports it, we guess
    return DEFAULT_PLAY_SECONDS


@dataclass(frozen=True)
class Person:
    """A directory entry as the simulator needs it (name, extension, mailbox, spoken aliases)."""

    name: str
    extension: str
    mailbox: str = ""
    aliases: tuple[str, ...] = ()
    hidden: bool = False
    first_name: str = ""
    last_name: str = ""


def load_people(path: Path) -> list[Person]:
    """People of a directory file (:func:`ivr.directory.source.load_directory`); [] if unusable."""
    try:
        book = load_directory(path)
    except DirectoryError:  # `ivr check` reports bad directories; the simulator carries on
        return []
    return [
        Person(
            p.display_name,
            p.extension,
            p.mailbox or "",
            tuple(p.aliases) + (f"{p.first_name} {p.last_name}",),
            p.hidden,
            p.first_name,
            p.last_name,
        )
        for p in book.people
    ]


def _fold(text: str) -> str:
    """Lower case without accents: Zürcher -> zurcher."""
    decomposed = unicodedata.normalize("NFKD", text.lower())
    return "".join(c for c in decomposed if not unicodedata.combining(c))


def _normal(text: str) -> str:
    return " ".join(re.sub(r"[^\w ]", " ", _fold(text).replace("_", " ")).split())


_KEYPAD = {c: d for d, letters in {
    "2": "abc", "3": "def", "4": "ghi", "5": "jkl", "6": "mno", "7": "pqrs", "8": "tuv", "9": "wxyz",
}.items() for c in letters}  # fmt: skip


def keypad_digits(name: str) -> str:
    """``O'Brien`` -> ``62746``: the keys that spell a name (letters only, accents folded)."""
    return "".join(_KEYPAD[c] for c in _fold(name) if c in _KEYPAD)


def find_by_keys(people: Iterable[Person], digits: str, match: str = "last") -> list[Person]:
    """Visible people whose last (first, either) name starts with the letters typed as ``digits``."""
    typed = digits.rstrip("#")
    found = []
    for person in people:
        names = {"last": (person.last_name,), "first": (person.first_name,)}.get(
            match, (person.first_name, person.last_name)
        )
        if (
            typed
            and not person.hidden
            and any(keypad_digits(n).startswith(typed) for n in names if n)
        ):
            found.append(person)
    return found


def find_person(people: Iterable[Person], spoken: str) -> Person | None:
    """The person whose name or alias is exactly ``spoken`` (case and punctuation ignored)."""
    want = _normal(spoken)
    for person in people:
        if want and want in {_normal(n) for n in (person.name, *person.aliases)}:
            return person
    return None


# --------------------------------------------------------------------------- the simulated call


InputSource = Callable[[], "list[CallerInput] | None"]  # interactive: None = end of input


class Simulation:
    """Runs one call of ``program`` per :class:`Scenario` (see the module docstring for the model)."""

    def __init__(
        self,
        program: Program,
        scenario: Scenario,
        *,
        prompt_folders: Sequence[Path] = (),
        more_input: InputSource | None = None,
        on_line: Callable[[TraceLine], None] | None = None,
        config: Config | None = None,
    ) -> None:
        self.program = program
        self.scenario = scenario
        self.config = config  # mailboxes for the voicemail dialogues of Scenario.dialogues
        self._data: tempfile.TemporaryDirectory[str] | None = None  # their throw-away data folder
        self._store: Any = None
        self.prompt_folders = tuple(prompt_folders)
        self.more_input = more_input
        self.on_line = on_line
        self.now = scenario.start
        self.lines: list[TraceLine] = []
        self.inputs = list(scenario.inputs)
        # (prompt_id, ends at, owner: the machine or a sub-dialogue), in playing order
        self._prompts: list[tuple[int, float, object]] = []
        self.sub: Any = None  # the running sub-dialogue (SubMachine), if any
        self._pending: list[tuple[float, int, ev.Event]] = []  # results the "network" will deliver
        self._seq = itertools.count()
        self._events = 0
        self._people: dict[str, list[Person]] = {}
        from ivr.dsl.machine import Machine, MachineError

        self._machine_error = MachineError

        self.called = scenario.called or first_number(program)
        self.machine = Machine(
            program,
            caller=scenario.caller,
            called=self.called,
            switches=dict(scenario.switches),
            variables=dict(scenario.variables),
        )

    # ---- public

    def run(self) -> SimulationResult:
        try:
            return self._run()
        finally:
            if self._data is not None:
                self._data.cleanup()

    def _run(self) -> SimulationResult:
        tz = self.program.settings.timezone
        self._note(
            "call",
            f"call from {self.scenario.caller} to {self.called} at {format_local(self.now, tz)}",
        )
        for name in sorted(self.program.schedules):
            hours = self.program.schedules[name]
            self._note("hours", describe_hours(hours, self.now, self.scenario.switches))
        self._carry_out(self.machine.start(self.now))
        while not self.machine.finished:
            if self._events >= MAX_EVENTS or self.now - self.scenario.start > MAX_DURATION:
                self._note(
                    "note", f"simulation stopped after {self._events} events: the flow does not end"
                )
                break
            self._step()
        if self.inputs:
            unused = " ".join(str(i) for i in self.inputs)
            self._note("note", f"caller input not used: {unused}")
        outcome = self.machine.outcome
        self._emit(
            TraceLine(
                self.now - self.scenario.start,
                "outcome",
                describe_outcome(outcome),
                {
                    "outcome": outcome.result if outcome else "unfinished",
                    "detail": outcome.detail if outcome else "",
                    "step": outcome.step if outcome else self.machine.state,
                },
            )
        )
        return SimulationResult(tuple(self.lines), outcome, self.now - self.scenario.start)

    # ---- the loop

    def _step(self) -> None:
        if self.inputs and (self.inputs[0].barge_in or self.inputs[0].kind == "wait"):
            self._caller(self.inputs.pop(0))
            return
        due = self._next_internal()
        timer = self._timer()
        if due is not None and (timer is None or due <= timer):
            self._deliver_internal()
            return
        if self.inputs or self._ask_for_input():
            self._caller(self.inputs.pop(0))
            return
        if timer is not None:
            self._fire_timer(timer)
            return
        self._caller(CallerInput("hangup"), why=" (no more input)")

    def _ask_for_input(self) -> bool:
        if self.more_input is None:
            return False
        more = self.more_input()
        if more is None:
            self.more_input = None
            return False
        if not more:  # an empty line: let time pass until the next timer
            more = [CallerInput("wait")]
        self.inputs.extend(more)
        return True

    def _next_internal(self) -> float | None:
        times = [end for _, end, _ in self._prompts[:1]] + [t for t, _, _ in self._pending[:1]]
        return min(times) if times else None

    def _deliver_internal(self) -> None:
        prompt_end = self._prompts[0][1] if self._prompts else None
        pending_at = self._pending[0][0] if self._pending else None
        if prompt_end is not None and (pending_at is None or prompt_end <= pending_at):
            prompt_id, end, owner = self._prompts.pop(0)
            self._advance(end)
            if (
                owner is self.machine or owner is self.sub
            ):  # a finished dialogue's prompt: nobody waits
                self._handle(ev.PromptDone(prompt_id))
            return
        at, _, event = heapq.heappop(self._pending)
        self._advance(at)
        self._result_line(event)
        self._handle(event)

    def _fire_timer(self, timer: float) -> None:
        self._advance(timer)
        self._emit(
            TraceLine(self._t(), "timer", "timeout", {"event": "timer", "t": round(self._t(), 3)})
        )
        self._handle(ev.TimerFired())

    def _caller(self, given: CallerInput, why: str = "") -> None:
        if given.kind == "wait":
            self._wait(given.seconds)
            # What the caller does right after waiting happens then, even mid-prompt or mid-ring.
            if self.inputs and self.inputs[0].kind != "wait" and not self.machine.finished:
                self._caller(self.inputs.pop(0))
            return
        if given.kind == "hangup":
            self._said("hangup", f"caller hangs up{why}")
            self._prompts.clear()
            self._pending.clear()  # a ringing phone or a pending result dies with the call
            self._handle(ev.Hangup(), from_caller=True)
            return
        if given.kind == "speech":
            shown = f'"{given.value}"' if given.value else "something unrecognised"
            self._said("speech", f"caller says {shown}", text=given.value)
            self._handle(ev.Speech(given.value), from_caller=True)
            return
        for i, digit in enumerate(given.value):
            if i:
                self._run_until(self.now + KEY_SPACING)
            if self.machine.finished:
                return
            self._said("key", f"caller presses {digit}", digit=digit)
            self._handle(ev.Key(digit), from_caller=True)

    def _wait(self, seconds: float) -> None:
        """Let time pass: prompts finish, results arrive and timers fire on the way."""
        if seconds == 0:
            target = self._timer()
            if target is None:
                return
        else:
            target = self.now + seconds
            self._said("wait", f"caller waits {_fmt_seconds(seconds)}", seconds=seconds)
        self._run_until(target)

    def _run_until(self, target: float) -> None:
        """Deliver, in time order, every prompt end, result and timer due by ``target``."""
        while not self.machine.finished:
            due = self._next_internal()
            timer = self._timer()
            times = [t for t in (due, timer) if t is not None]
            if not times or min(times) > target:
                break
            if due is not None and (timer is None or due <= timer):
                self._deliver_internal()
            else:
                self._fire_timer(min(times))
        self.now = max(self.now, target)

    def _advance(self, when: float) -> None:
        self.now = max(self.now, when)

    def _timer(self) -> float | None:
        return self.sub.next_timer if self.sub is not None else self.machine.next_timer

    def _handle(self, event: ev.Event, *, from_caller: bool = False) -> None:
        if self.machine.finished:
            return
        self._events += 1
        if self.sub is not None and isinstance(event, ev.Hangup):
            # The dialogue's answer to a hang-up means nothing to the flow: the call is over.
            self._carry_out(self.sub.handle(event, self.now), owner=self.sub)
            self.sub = None
        elif self.sub is not None:
            self._handle_sub(event)
            return
        try:
            actions = self.machine.handle(event, self.now)
        except self._machine_error as exc:
            if not from_caller:
                raise
            # A real runner drops input the flow is not waiting for; say so instead of hiding it.
            self._note("note", f"ignored: {exc}")
            return
        self._carry_out(actions)

    def _handle_sub(self, event: ev.Event) -> None:
        """Events go to the running dialogue; its result, when it finishes, goes to the flow."""
        self._carry_out(self.sub.handle(event, self.now), owner=self.sub)
        self._sub_finished()

    def _sub_finished(self) -> None:
        if self.sub is None or not self.sub.finished:
            return
        result, self.sub = self.sub.result, None
        if result is not None:
            self._result_line(result)
            self._handle(result)

    # ---- actions

    def _carry_out(self, actions: Iterable[ev.Action], owner: object = None) -> None:
        for action in actions:
            text = describe_action(action)
            if self._data is not None:  # show the throw-away data folder as the data: it stands for
                text = text.replace(str(Path(self._data.name).resolve()) + "/", "data:")
            self._emit(TraceLine(self._t(), action.kind, text, action_json(action, self._t())))
            self._perform(action, self.machine if owner is None else owner)

    def _perform(self, action: ev.Action, owner: object) -> None:
        if isinstance(action, ev.Say | ev.Play | ev.Tone):
            starts = self._prompts[-1][1] if self._prompts else self.now
            ends = starts + prompt_seconds(action, self.prompt_folders)
            self._prompts.append((action.prompt_id, ends, owner))
        elif isinstance(action, ev.StopPrompts):
            self._prompts.clear()
        elif isinstance(action, ev.Transfer):
            outcome, target, seconds = ring_plan(self.scenario, action)
            self._later(seconds, ev.TransferResult(outcome, target))
            if outcome == "answered":
                self._later(seconds + TALK_SECONDS, ev.BridgeEnded())
        elif isinstance(action, ev.Directory):
            dialogue = self._dialogue_for(action)
            if dialogue is None:
                self._later(3.0, self._directory_result(action))
            else:
                self._start_dialogue(dialogue)
        elif isinstance(action, ev.Voicemail | ev.VoicemailAccess):
            dialogue = self._voicemail_dialogue(action)
            if dialogue is not None:
                self._start_dialogue(dialogue)
            elif isinstance(action, ev.Voicemail):
                result = self.scenario.voicemail_result
                self._later(VOICEMAIL_SECONDS, ev.ActionDone("voicemail", result))
            else:
                self._later(VOICEMAIL_SECONDS, ev.ActionDone("voicemail_access", "done"))
        elif isinstance(action, ev.Record):
            self._later(
                RECORD_SECONDS, ev.ActionDone("record", f"data:recordings/{action.variable}.wav")
            )
        elif isinstance(action, ev.StartRecording):
            seconds = self._record(action.path)
            self._later(
                seconds, ev.RecordingDone(action.path, seconds, "key" if seconds else "silence")
            )
        elif isinstance(action, ev.Hold) and action.duration:
            self._later(action.duration, ev.ActionDone("hold"))

    def _later(self, seconds: float, event: ev.Event) -> None:
        heapq.heappush(self._pending, (self.now + seconds, next(self._seq), event))

    def _directory_result(self, action: ev.Directory) -> ev.DirectoryResult:
        """The scenario's choice, else the name said or spelled next, else the first person listed."""
        people = self._directory_people(action.name)
        for choice in self.scenario.directory:
            lowered = choice.strip().lower().replace("_", " ")
            if lowered in ("not found", "not_found", "nobody"):
                return ev.DirectoryResult("not_found")
            if lowered == "operator":
                return ev.DirectoryResult("operator")
            name, _, ext = choice.partition("=")
            person = find_person(people, name)
            mailbox = person.mailbox if person else ""
            return ev.DirectoryResult(
                "selected",
                ext.strip() or (person.extension if person else ""),
                name.strip(),
                mailbox,
            )
        if self.inputs and self.inputs[0].kind == "speech":
            spoken = self.inputs.pop(0)
            self._said("speech", f'caller says "{spoken.value}"', text=spoken.value)
            person = find_person(people, spoken.value)
            if person is None:
                return ev.DirectoryResult("not_found")
            return ev.DirectoryResult("selected", person.extension, person.name, person.mailbox)
        if self.inputs and self.inputs[0].kind == "key":
            keys = self.inputs.pop(0).value
            self._said("key", f"caller presses {keys}", digit=keys)
            if keys == "0":
                return ev.DirectoryResult("operator")
            matches = find_by_keys(people, keys, action.match)
            if not matches:
                return ev.DirectoryResult("not_found")
            # The dialogue reads the matches out; the caller takes the first one.
            return ev.DirectoryResult(
                "selected", matches[0].extension, matches[0].name, matches[0].mailbox
            )
        visible = [p for p in people if not p.hidden]
        if not visible:
            return ev.DirectoryResult("not_found")
        return ev.DirectoryResult(
            "selected", visible[0].extension, visible[0].name, visible[0].mailbox
        )

    def _start_dialogue(self, dialogue: Any) -> None:
        self.sub = dialogue
        self._carry_out(dialogue.start(self.now), owner=dialogue)
        self._sub_finished()

    def _voicemail_dialogue(self, action: ev.Voicemail | ev.VoicemailAccess) -> Any:
        """The voicemail engineer's dialogues for Scenario.dialogues, on a throw-away store."""
        if not self.scenario.dialogues or self.config is None:
            return None
        from ivr.voicemail.access import MailboxAccess
        from ivr.voicemail.leave import LeaveMessage

        store = self._voicemail_store()
        if isinstance(action, ev.VoicemailAccess):
            return MailboxAccess(
                mailboxes=self.config.mailboxes,
                store=store,
                mailbox=action.mailbox or None,
                caller=self.scenario.caller,
                timezone=self.program.settings.timezone,
            )
        mailbox = self.config.mailbox(action.mailbox)
        if mailbox is None:  # `ivr check` reports it; the real runner answers "failed" too
            return None
        return LeaveMessage(
            mailbox=mailbox,
            store=store,
            caller=self.scenario.caller,
            greeting=action.greeting,
            review=action.review,
            data_dir=store.data_dir,
        )

    def _voicemail_store(self) -> Any:
        if self._store is None:
            from ivr.voicemail.store import VoicemailStore

            self._data = tempfile.TemporaryDirectory(prefix="ivr-simulate-")
            self._store = VoicemailStore(Path(self._data.name))
        return self._store

    def _record(self, path: str) -> float:
        """Make the caller's recording for StartRecording: a few seconds of "voice", or nothing."""
        seconds = 0.0 if self.scenario.voicemail_result == "empty" else RECORD_SECONDS
        if self._data is None:
            return seconds
        target = Path(path.removeprefix("data:"))
        target = target if target.is_absolute() else Path(self._data.name) / target
        target.parent.mkdir(parents=True, exist_ok=True)
        t = np.arange(int(seconds * 8000)) / 8000
        voice = (np.sin(2 * np.pi * 220 * t) * 4000).astype(
            np.int16
        )  # loud enough to count as speech
        soundfile.write(target, voice, 8000, subtype="PCM_16")
        return seconds

    def _dialogue_for(self, action: ev.Directory) -> Any:
        """The directory's own dialogue for Scenario.dialogues (None: resolve the step at once)."""
        source = self.program.settings.directories.get(action.name)
        if not self.scenario.dialogues or self.scenario.directory or not source:
            return None
        try:
            book = load_directory(Path(source), name=action.name)
        except DirectoryError:
            return None
        import ivr.directory
        from ivr.directory.keypad import KeypadDialogue

        full = getattr(ivr.directory, "DirectoryDialogue", None)  # speech and keys, when it exists
        if full is not None:
            return full(
                book,
                by_speech=action.by_speech,
                by_keys=action.by_keys,
                match=action.match,
                confirm=action.confirm,
            )
        if action.by_keys:
            return KeypadDialogue(book, match=action.match)
        return None

    def _directory_people(self, name: str) -> list[Person]:
        if name not in self._people:
            source = self.program.settings.directories.get(name)
            self._people[name] = load_people(Path(source)) if source else []
        return self._people[name]

    def _result_line(self, event: ev.Event) -> None:
        text = describe_result(event)
        data = {
            "event": event.kind,
            **{f.name: _jsonable(getattr(event, f.name)) for f in fields(event)},
            "t": round(self._t(), 3),
        }
        self._emit(TraceLine(self._t(), "result", text, data))

    # ---- output

    def _t(self) -> float:
        return self.now - self.scenario.start

    def _said(self, event: str, line: str, **data: Any) -> None:
        """A line for something the caller does (key, speech, wait, hangup)."""
        self._emit(
            TraceLine(self._t(), "caller", line, {"event": event, **data, "t": round(self._t(), 3)})
        )

    def _note(self, kind: str, text: str) -> None:
        self._emit(TraceLine(self._t(), kind, text, {"note": text}))

    def _emit(self, line: TraceLine) -> None:
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)


def describe_result(event: ev.Event) -> str:
    """The plain-words line for what the network reports back (a transfer's outcome, a choice)."""
    if isinstance(event, ev.TransferResult):
        if event.outcome == "answered":
            return f"answered by {event.target}" if event.target else "answered"
        return event.outcome.replace("_", " ")
    if isinstance(event, ev.BridgeEnded):
        return "call ended by the other side"
    if isinstance(event, ev.DirectoryResult):
        if event.outcome == "selected":
            who = f"{event.name} ({event.extension})" if event.name else event.extension
            return f"selected {who}"
        return event.outcome.replace("_", " ")
    if isinstance(event, ev.ActionDone):
        return f"{event.action.replace('_', ' ')} {event.result}".strip()
    if isinstance(event, ev.RecordingDone):
        return f"recorded {_fmt_seconds(event.duration)}"
    return event.kind


def describe_hours(hours: Hours, now: float, switches: Mapping[str, bool]) -> str:
    """``hours office: open until 12:00``, ``hours office: closed (Christmas Day) until Mon 08:00``."""
    state = "open" if hours.is_open(now, switches) else "closed"
    if hours.switch and switches.get(hours.switch, False):
        return f"hours {hours.name}: closed while switch {hours.switch} is on"
    holiday = hours.holiday_name(now)
    why = f" ({holiday})" if holiday and state == "closed" else ""
    change = hours.next_change(now)
    if change is None:
        return f"hours {hours.name}: {state}{why}"
    tz = zone(hours.timezone)
    local, then = datetime.fromtimestamp(now, tz), datetime.fromtimestamp(change, tz)
    if then.date() == local.date():
        until = then.strftime("%H:%M")
    elif (then.date() - local.date()).days < 7:
        until = then.strftime("%a %H:%M")
    else:
        until = then.strftime("%a %Y-%m-%d %H:%M")
    return f"hours {hours.name}: {state}{why} until {until}"


def first_number(program: Program) -> str:
    """The called number a simulation uses when none is given: the flow's first ``number``."""
    numbers = [n for n in program.entries if n != "default"]
    return numbers[0] if numbers else "default"


def simulate(
    program: Program,
    scenario: Scenario,
    *,
    prompt_folders: Sequence[Path] = (),
    on_line: Callable[[TraceLine], None] | None = None,
    config: Config | None = None,
) -> SimulationResult:
    """Run one simulated call to its end and return the trace."""
    sim = Simulation(
        program, scenario, prompt_folders=prompt_folders, on_line=on_line, config=config
    )
    return sim.run()
