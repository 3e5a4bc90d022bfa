"""One call through a compiled flow: the sans-IO machine.

:class:`Machine` interprets a :class:`~ivr.dsl.compiler.Program`'s state table.
It is told the time (``now``, epoch seconds) with every event and never reads a
clock: it exposes ``next_timer`` and expects ``TimerFired`` when that time
comes.  Events and actions are those of :mod:`ivr.dsl.events`.

What it keeps per call: the current state, variables, the sub-flow call stack,
the prompts still playing (``prompt_id`` -> barge-in allowed), keys typed
ahead during a prompt, and the menu/collect counters.  Keys, prompt ends and
the caller's hangup may arrive in any state; every other event that the
current state does not wait for raises :class:`MachineError` naming the
state and the event.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime
from zoneinfo import ZoneInfo

from ivr.dsl import ast, events
from ivr.dsl.compiler import (
    AssignOp,
    BranchOp,
    BridgedOp,
    CallOp,
    CollectWaitOp,
    ConferenceOp,
    DirectoryOp,
    DrainOp,
    EnterOp,
    FinishOp,
    HoldOp,
    MenuStartOp,
    MenuWaitOp,
    Op,
    Program,
    PromptOp,
    RecordOp,
    ReturnOp,
    State,
    TransferOp,
    VoicemailAccessOp,
    VoicemailOp,
)

STEP_LIMIT = 1000  # transitions per event: a flow that loops without waiting is stopped, not hung
MAX_CALL_DEPTH = 50  # sub-flows calling sub-flows; checks reject recursion, this guards the rest
TYPE_AHEAD = 32  # keys kept while a prompt plays outside a menu
_NUMBER = re.compile(r"-?\d+(\.\d+)?")
_INTERPOLATION = re.compile(r"\{([a-z_][a-z0-9_]*)\}")
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")


class MachineError(Exception):
    """An event the current state cannot take, or a flow that loops at run time."""


@dataclass
class _Frame:
    """A sub-flow call: where to continue after ``return``, and the sub's parameters."""

    sub: str
    resume: str
    locals: dict[str, str] = field(default_factory=dict)


_WAITING = {
    DrainOp: "waiting for prompts to finish",
    MenuWaitOp: "waiting for a key or speech",
    CollectWaitOp: "waiting for digits",
    TransferOp: "waiting for the transfer result",
    BridgedOp: "waiting for the bridge to end",
    DirectoryOp: "waiting for the directory result",
    VoicemailOp: "waiting for voicemail to finish",
    VoicemailAccessOp: "waiting for voicemail access to finish",
    RecordOp: "waiting for the recording",
    ConferenceOp: "waiting for the conference to end",
    HoldOp: "waiting for the hold to end",
}


class Machine:
    """A call's run through a compiled flow (sans-IO: events and ``now`` in, actions out)."""

    def __init__(
        self,
        program: Program,
        *,
        caller: str,
        called: str,
        switches: Mapping[str, bool] | None = None,
        variables: Mapping[str, str] | None = None,
        entry: str | None = None,
    ) -> None:
        self.program = program
        self.switches: dict[str, bool] = dict(switches or {})
        self.variables: dict[str, str] = {**dict(variables or {}), "caller": caller, "called": called}
        # ``entry``: where a call from a phone starts (the program's ``number internal``).
        self.state: str = entry or program.entry_for(called)
        self.next_timer: float | None = None
        self.finished = False
        self.outcome: events.Outcome | None = None
        self._tz = ZoneInfo(program.settings.timezone) if program.settings.timezone else ZoneInfo("UTC")
        self._frames: list[_Frame] = []
        self._prompts: dict[int, bool] = {}  # playing prompt id -> barge-in allowed
        self._last_prompt_id = 0
        self._type_ahead: list[str] = []
        self._counters: dict[str, int] = {}
        self._digits = ""
        self._listening: tuple[str, ...] | None = None  # phrases of the active speech grammar
        self._heard = ""  # what a menu's `speech` option took, for a directory reached without asking again
        self._now = 0.0
        self._out: list[events.Action] = []
        self._started = False

    # ------------------------------------------------------------------ public API

    def start(self, now: float) -> list[events.Action]:
        """Enter the entry step for the called number; returns the first actions."""
        if self._started:
            raise MachineError(f"can't start: the machine already started (state '{self.state}')")
        self._started = True
        self._now = now
        self._out = []
        self._run(self.state)
        return self._take()

    def handle(self, event: events.Event, now: float) -> list[events.Action]:
        """Feed one event at time ``now``; returns the actions to carry out, in order."""
        if not self._started:
            raise MachineError(f"can't handle {type(event).__name__} before start()")
        if self.finished:
            raise MachineError(f"can't handle {type(event).__name__} in state '{self.state}' (call finished)")
        self._now = now
        self._out = []
        if isinstance(event, events.Hangup):
            self._caller_hung_up()
        elif isinstance(event, events.PromptDone):
            self._prompt_done(event)
        elif isinstance(event, events.Key):
            self._key(event.digit)
        else:
            label = self._dispatch(event)
            if label is not None:
                self._follow(label)
        return self._take()

    # ------------------------------------------------------------------ running the table

    @property
    def current(self) -> State:
        """The current row of the state table."""
        return self.program.states[self.state]

    @property
    def step(self) -> str:
        """The flow step (menu, group, sub ...) the call is in."""
        return self.current.step

    @property
    def waits(self) -> tuple[str, ...]:
        """The event kinds the current state waits for (keys, prompt ends and hangups are always taken)."""
        return () if self.finished else self.current.waits

    def _take(self) -> list[events.Action]:
        out, self._out = self._out, []
        return out

    def _emit(self, action: events.Action) -> None:
        self._out.append(action)

    def _follow(self, label: str) -> None:
        state = self.current
        target = state.transitions.get(label)
        if target is None:
            raise MachineError(f"state '{state.name}' has no transition for '{label}'")
        self._leave(state, label)
        self._run(target)

    def _leave(self, state: State, label: str) -> None:
        self.next_timer = None
        if isinstance(state.op, MenuWaitOp) and label not in ("invalid", "no_input") and self._listening is not None:
            self._listening = None
            self._emit(events.Listen())

    def _run(self, name: str) -> None:
        """Enter ``name`` and follow transient states until one waits or the call ends."""
        for _ in range(STEP_LIMIT):
            self.state = name
            state = self.current
            label = self._enter(state)
            if label is None and not isinstance(state.op, DrainOp):
                self._heard = ""  # the call waits for something else: a later directory asks anew
            if label is None or self.finished:
                return
            self._leave(state, label)  # a wait state can move on at once (type-ahead)
            target = state.transitions.get(label)
            if target is None:
                if isinstance(state.op, ReturnOp):
                    target = label  # a return resumes at the caller's state
                else:
                    raise MachineError(f"state '{state.name}' has no transition for '{label}'")
            name = target
        raise MachineError(
            f"flow loops without waiting for the caller: {STEP_LIMIT} transitions in one event, at state '{name}'"
        )

    def _enter(self, state: State) -> str | None:
        """Carry out a state's op; the label to follow at once, or None to wait here."""
        op = state.op
        handler = getattr(self, "_enter_" + type(op).__name__, None)
        if handler is None:
            raise MachineError(f"state '{state.name}': no behaviour for {type(op).__name__}")
        return handler(op)  # type: ignore[no-any-return]

    # ------------------------------------------------------------------ entering states

    def _enter_EnterOp(self, op: EnterOp) -> str:
        if not op.is_sub:
            self._frames.clear()  # jumping to a step leaves any sub-flow for good
        self._emit(events.EnterStep(op.step))
        return "next"

    def _enter_PromptOp(self, op: PromptOp) -> str:
        self._last_prompt_id += 1
        pid = self._last_prompt_id
        prompt = op.prompt
        self._prompts[pid] = prompt.barge_in
        if isinstance(prompt, ast.Say):
            text = self._interpolate(prompt.text.text)
            self._emit(events.Say(text, pid, self.voice, self.language, prompt.barge_in))
        else:
            path = self._interpolate(prompt.path.text)
            if path.startswith("data:") and not prompt.path.text.startswith("data:"):
                # Only the flow's own text may name the data folder: a variable's value (a
                # caller ID, a called number) must not turn a prompt into another mailbox's
                # message.  "./" keeps it a prompt-folder path, which will not be found.
                path = "./" + path
            self._emit(events.Play(path, pid, prompt.barge_in))
        return "next"

    def _enter_AssignOp(self, op: AssignOp) -> str:
        self._assign(op.name, self._eval(op.value))
        return "next"

    def _enter_BranchOp(self, op: BranchOp) -> str:
        return "true" if self._test(op.cond) else "false"

    def _enter_CallOp(self, op: CallOp) -> str:
        if len(self._frames) >= MAX_CALL_DEPTH:
            raise MachineError(
                f"sub-flow calls nest deeper than {MAX_CALL_DEPTH} at state '{self.state}' (call {op.sub})"
            )
        frame = _Frame(op.sub, self.current.transitions["return"])
        frame.locals = {p: self._eval(a) for p, a in zip(op.params, op.args, strict=False)}
        self._frames.append(frame)
        return "call"

    def _enter_ReturnOp(self, op: ReturnOp) -> str | None:
        if not self._frames:
            # `return` outside a sub-flow (checks reject it): the call ends like a step's end.
            self._end("hangup", "")
            return None
        return self._frames.pop().resume

    def _enter_DrainOp(self, op: DrainOp) -> str | None:
        return "next" if not self._prompts else None

    def _enter_MenuStartOp(self, op: MenuStartOp) -> str:
        self._counters = {"invalid": 0, "no_input": 0}
        return "next"

    _enter_CollectStartOp = _enter_MenuStartOp

    def _enter_MenuWaitOp(self, op: MenuWaitOp) -> str | None:
        if op.phrases or op.any_speech:
            self._listening = op.phrases
            self._emit(events.Listen(op.phrases, op.timeout, op.any_speech, op.directory))
        self._arm_input_timer(op.timeout)
        if self._type_ahead:
            return self._menu_key(op, self._type_ahead.pop(0))
        return None

    def _enter_CollectWaitOp(self, op: CollectWaitOp) -> str | None:
        self._digits = ""
        self._arm_input_timer(op.timeout)
        while self._type_ahead:
            label = self._collect_key(op, self._type_ahead.pop(0))
            if label is not None:
                return label
        return None

    def _enter_TransferOp(self, op: TransferOp) -> None:
        self._type_ahead.clear()
        plan = tuple((tuple(self._eval(v) for v in targets), timeout) for targets, timeout in op.plan)
        self.variables["transfer_target"] = ", ".join(t for targets, _ in plan for t in targets)
        self._emit(events.Transfer(plan, op.music, op.group, op.refer, op.pikett, op.record))
        return None

    def _enter_BridgedOp(self, op: BridgedOp) -> None:
        return None

    def _enter_DirectoryOp(self, op: DirectoryOp) -> None:
        self._type_ahead.clear()
        heard, self._heard = self._heard, ""
        self._emit(events.Directory(op.name, op.by_speech, op.by_keys, op.match, op.confirm, op.keypad_key, heard))
        return None

    def _enter_VoicemailOp(self, op: VoicemailOp) -> str | None:
        mailbox = self._eval(op.mailbox)
        if not mailbox:
            self._end("error", "no mailbox to leave a message in")
            return None
        self._emit(events.Voicemail(mailbox, op.greeting, op.review, op.temporary))
        return None

    def _enter_VoicemailAccessOp(self, op: VoicemailAccessOp) -> None:
        self._emit(events.VoicemailAccess(self._eval(op.mailbox) if op.mailbox else ""))
        return None

    def _enter_ConferenceOp(self, op: ConferenceOp) -> None:
        self._type_ahead.clear()
        pin = self._eval(op.pin) if op.pin is not None else ""
        moderator_pin = self._eval(op.moderator_pin) if op.moderator_pin is not None else ""
        self._emit(events.Conference(op.room, pin, moderator_pin, op.max_participants, op.music or "",
                                     op.tones, op.announce))
        return None

    def _enter_RecordOp(self, op: RecordOp) -> None:
        self._emit(events.Record(op.variable, op.max_length, op.beep, "#", op.silence))
        return None

    def _enter_HoldOp(self, op: HoldOp) -> str | None:
        music = op.music or self.program.settings.hold_music
        self._emit(events.Hold(music, op.duration or 0.0))
        return None if op.duration else "next"

    def _enter_FinishOp(self, op: FinishOp) -> None:
        detail = self._eval(op.detail) if op.detail is not None else ""
        self._end(op.result, detail, op.reason)
        return None

    def _end(self, result: str, detail: str, reason: str = "normal") -> None:
        self._emit(events.HangupCall(reason if result != "error" else "error"))
        self._finish(result, detail)
        return None

    def _finish(self, result: str, detail: str) -> None:
        self.finished = True
        self.next_timer = None
        self.outcome = events.Outcome(result, detail, self.current.step, dict(self.variables))

    # ------------------------------------------------------------------ events

    def _impossible(self, event: events.Event) -> MachineError:
        state = self.current
        waiting = _WAITING.get(type(state.op), "not waiting for anything")
        return MachineError(f"can't handle {type(event).__name__} in state '{state.name}' ({waiting})")

    def _dispatch(self, event: events.Event) -> str | None:
        op = self.current.op
        if isinstance(event, events.TimerFired):
            if self.next_timer is None:
                raise MachineError(f"can't handle TimerFired in state '{self.state}' (no timer pending)")
            if self._now < self.next_timer:
                return None  # early: the runner's clock is ahead of ours; the timer stays armed
            self.next_timer = None
            if isinstance(op, MenuWaitOp):
                return self._count("no_input", op.tries)
            if isinstance(op, CollectWaitOp):
                return self._collect_timeout(op)
            raise self._impossible(event)
        if isinstance(event, events.Speech) and isinstance(op, MenuWaitOp) and self._listening is not None:
            return self._menu_speech(op, event.text)
        if isinstance(event, events.TransferResult) and isinstance(op, TransferOp):
            if event.target:
                self.variables["transfer_target"] = event.target
            return event.outcome
        if isinstance(event, events.BridgeEnded) and isinstance(op, BridgedOp):
            return "bridge_ended"
        if isinstance(event, events.DirectoryResult) and isinstance(op, DirectoryOp):
            self.variables["directory_extension"] = event.extension
            self.variables["directory_name"] = event.name
            self.variables["directory_mailbox"] = event.mailbox
            return event.outcome
        if isinstance(event, events.ActionDone):
            return self._action_done(op, event)
        if isinstance(event, events.RecordingDone) and isinstance(op, RecordOp):
            self._assign(op.variable, event.path if event.duration > 0 else "")
            return "next"
        raise self._impossible(event)

    def _action_done(self, op: Op, event: events.ActionDone) -> str | None:
        expected = {VoicemailOp: "voicemail", VoicemailAccessOp: "voicemail_access", RecordOp: "record",
                    HoldOp: "hold", ConferenceOp: "conference"}.get(type(op))
        if expected is None or (event.action and event.action != expected):
            raise self._impossible(event)
        if isinstance(op, HoldOp) and not op.duration:
            raise self._impossible(event)
        if isinstance(op, RecordOp):
            self._assign(op.variable, event.result)
            return "next"
        if isinstance(op, VoicemailOp) and event.result == "failed":
            # the runner could not take a message (unknown mailbox, storage error)
            self._end("error", f"voicemail {self._eval(op.mailbox)} failed")
            return None
        if isinstance(op, VoicemailOp | VoicemailAccessOp):
            return "done"
        if isinstance(op, ConferenceOp) and event.result == "pin_failed":
            self._finish("hangup", "wrong conference PIN")  # the dialogue has hung up already
            return None
        if isinstance(op, ConferenceOp):
            return "full" if event.result == "full" else "done"
        return "next"

    def _caller_hung_up(self) -> None:
        op = self.current.op
        if isinstance(op, BridgedOp):
            result, detail = "transferred", self.variables.get("transfer_target", "")
        elif isinstance(op, VoicemailOp):
            result, detail = "voicemail", self._eval(op.mailbox)
        elif isinstance(op, VoicemailAccessOp):
            result, detail = "voicemail_access", self._eval(op.mailbox) if op.mailbox else ""
        elif isinstance(op, ConferenceOp):
            result, detail = "conference", op.room
        else:
            result, detail = "caller_hangup", ""
        self._prompts.clear()
        self._finish(result, detail)

    def _prompt_done(self, event: events.PromptDone) -> None:
        if event.prompt_id <= 0 or event.prompt_id > self._last_prompt_id:
            raise MachineError(
                f"can't handle PromptDone in state '{self.state}' (no prompt {event.prompt_id} was started)"
            )
        if self._prompts.pop(event.prompt_id, None) is None or self._prompts:
            return  # stopped earlier (barge-in) or more prompts still playing
        op = self.current.op
        if isinstance(op, DrainOp):
            self._follow("next")
        elif isinstance(op, MenuWaitOp | CollectWaitOp) and not self._digits:
            self.next_timer = self._now + op.timeout

    def _key(self, digit: str) -> None:
        op = self.current.op
        if isinstance(op, MenuWaitOp):
            label = self._menu_key(op, digit)
        elif isinstance(op, CollectWaitOp):
            label = self._collect_key(op, digit)
        else:
            # Not listening: keep keys typed during a prompt for the next menu; drop the rest.
            if self._prompts and isinstance(op, DrainOp) and len(self._type_ahead) < TYPE_AHEAD:
                self._type_ahead.append(digit)
            return
        if label is not None:
            self._follow(label)

    def _barge_in(self) -> bool:
        """Stop interruptible prompts; False when a prompt that may not be interrupted is playing."""
        if not self._prompts:
            return True
        if not all(self._prompts.values()):
            return False
        self._prompts.clear()
        self._emit(events.StopPrompts())
        return True

    def _arm_input_timer(self, timeout: float) -> None:
        self.next_timer = None if self._prompts else self._now + timeout

    # -- menus
    def _menu_key(self, op: MenuWaitOp, digit: str) -> str | None:
        if not self._barge_in():
            return None
        if digit in op.keys:
            return f"key:{digit}"
        return self._count("invalid", op.tries)

    def _menu_speech(self, op: MenuWaitOp, text: str) -> str | None:
        if not self._barge_in():
            return None
        wanted = text.strip().lower()
        for phrase in op.phrases:
            if wanted and phrase.lower() == wanted:
                return f"speech:{phrase}"
        if op.any_speech:
            # `speech ->` takes whatever matched no option, also what the recogniser could not match
            self.variables["speech"] = self._heard = text.strip()
            return "speech"
        return self._count("invalid", op.tries)

    def _count(self, counter: str, tries: int) -> str:
        self._counters[counter] = self._counters.get(counter, 0) + 1
        if self._counters[counter] >= tries:
            return f"too_many_{counter}"
        return counter

    # -- collect
    def _collect_key(self, op: CollectWaitOp, digit: str) -> str | None:
        if not self._barge_in():
            return None
        if digit == op.end_key:
            return self._collect_end(op)
        if not digit.isdigit():
            return self._count("invalid", op.tries)
        self._digits += digit
        if len(self._digits) >= op.high:
            return self._collect_end(op)
        self.next_timer = self._now + op.between
        return None

    def _collect_timeout(self, op: CollectWaitOp) -> str:
        if not self._digits:
            return self._count("no_input", op.tries)
        return self._collect_end(op)

    def _collect_end(self, op: CollectWaitOp) -> str:
        digits, self._digits = self._digits, ""
        if op.low <= len(digits) <= op.high:
            self._assign(op.variable, digits)
            return "done"
        return self._count("invalid", op.tries)

    # ------------------------------------------------------------------ values and conditions

    @property
    def language(self) -> str:
        """The call's language as the flow says it: ``set language = "de"`` from then on, else the
        flow's ``language`` line, else "" (the runtime then goes by the voice)."""
        return self._lookup("language") or self.program.settings.language

    @property
    def voice(self) -> str:
        """The call's TTS voice as the flow says it (``set voice``, else ``voice``); "" for the default."""
        return self._lookup("voice") or self.program.settings.voice

    def _lookup(self, name: str) -> str:
        if self._frames and name in self._frames[-1].locals:
            return self._frames[-1].locals[name]
        if name in self.variables:
            return self.variables[name]
        local = datetime.fromtimestamp(self._now, self._tz)
        if name == "time":
            return local.strftime("%H:%M")
        if name == "weekday":
            return WEEKDAYS[local.weekday()]
        if name == "date":
            return local.strftime("%Y-%m-%d")
        return ""

    def _assign(self, name: str, value: str) -> None:
        if self._frames and name in self._frames[-1].locals:
            self._frames[-1].locals[name] = value
        else:
            self.variables[name] = value

    def _interpolate(self, text: str) -> str:
        return _INTERPOLATION.sub(lambda m: self._lookup(m.group(1)), text)

    def _eval(self, value: ast.Value) -> str:
        if isinstance(value, ast.Var):
            return self._lookup(value.name)
        if isinstance(value, ast.Str):
            return self._interpolate(value.text)
        return value.text

    def _test(self, cond: ast.Cond) -> bool:
        if isinstance(cond, ast.Not):
            return not self._test(cond.cond)
        if isinstance(cond, ast.And):
            return self._test(cond.left) and self._test(cond.right)
        if isinstance(cond, ast.Or):
            return self._test(cond.left) or self._test(cond.right)
        if isinstance(cond, ast.IsState):
            return self._is_state(cond)
        if isinstance(cond, ast.StartsWith):
            return self._eval(cond.left).startswith(self._eval(cond.right))
        if isinstance(cond, ast.InList):
            left = self._eval(cond.left)
            return any(_equal(left, self._eval(v)) for v in cond.options)
        return _compare(cond.op, self._eval(cond.left), self._eval(cond.right))

    def _is_state(self, cond: ast.IsState) -> bool:
        hours = self.program.schedules.get(cond.name)
        if hours is not None:
            is_open = hours.is_open(self._now, self.switches)
            return is_open if cond.state == "open" else not is_open if cond.state == "closed" else False
        on = self.switches.get(cond.name, False)
        return on if cond.state == "on" else not on if cond.state == "off" else False


def _number(text: str) -> float | None:
    return float(text) if _NUMBER.fullmatch(text.strip()) else None


def _equal(a: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    return x == y if x is not None and y is not None else a == b


def _compare(op: str, a: str, b: str) -> bool:
    x, y = _number(a), _number(b)
    left: float | str = a
    right: float | str = b
    if x is not None and y is not None:
        left, right = x, y
    if op == "==":
        return left == right
    if op == "!=":
        return left != right
    if op == "<":
        return left < right  # type: ignore[operator]
    if op == "<=":
        return left <= right  # type: ignore[operator]
    if op == ">":
        return left > right  # type: ignore[operator]
    return left >= right  # type: ignore[operator]


__all__ = ["MAX_CALL_DEPTH", "STEP_LIMIT", "Machine", "MachineError"]
