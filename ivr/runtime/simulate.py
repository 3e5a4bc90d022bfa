"""A call in virtual time: ``ivr simulate`` and ``ivr test`` run the server's own call runtime.

A :class:`Simulation` builds the same :class:`~ivr.runtime.services.Services` and
:class:`~ivr.runtime.call.CallRunner` that ``ivr serve`` builds for an INVITE, on a
:class:`~ivr.runtime.virtual.VirtualLoop`, with the outside world replaced at the edges
(ivr.runtime.edges): the caller, the far-end phones, the clock, the audio path and the
recogniser.  Everything between them -- the flow machine, prompts and barge-in, menus,
transfers with their ring plans, follow-me and trunk rules, the directory and voicemail
dialogues, recordings -- is the server's code.  The trace is the runtime's own call log,
read back by :mod:`ivr.runtime.trace`.

The world of a simulated call:

* The clock starts at the scenario's ``start`` (epoch seconds) and jumps over every wait.
* Prompts are the real renderings (the deployment's TTS and its cache, the prompt files), so
  a prompt lasts as long as on a real call; a prompt that cannot be loaded fails as it would.
* The data folder is a throw-away copy: every extension of the deployment has a registered
  phone, the scenario's switch positions are written, the follow-me numbers set in the
  console are copied (:mod:`ivr.runtime.forwarding`), mailboxes start empty.
* The caller acts through :class:`CallerInput` tokens (``1``, ``123#``, ``say:alice_johnson``,
  ``wait:10s``, ``wait``, ``hangup``).  A token is delivered when the caller has nothing to
  listen to (every prompt played, no ringback, music or conversation) -- which is when a
  caller who listens to the whole prompt would act -- and before the flow's timer runs out;
  ``!`` tokens arrive at once (barge-in); the token after a ``wait:`` arrives right when the
  wait ends, even mid-prompt or mid-ring.  Keys of one token are 0.5 s apart.  Speech is the
  caller's voice (synthesised) that the runtime's endpointer hears; the recogniser's result
  is the words said when the grammar has them.  When the caller has no more input and
  nothing more can happen, the caller hangs up.
* Far ends answer after 5 s and talk for a minute, unless the scenario makes them busy,
  unavailable, failing or never answering (per target, ``*`` for all); some may send early
  media (a 183 with SDP) while they ring.  When the runner
  records (voicemail), the caller speaks for 5 s and then stays silent, unless the scenario
  says the caller leaves nothing.
"""

from __future__ import annotations

import dataclasses
import re
import shlex
import shutil
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from ivr.config import Config, ConfigError, SmtpConfig, StorageConfig, parse_duration
from ivr.dsl import events as ev
from ivr.dsl.schedule import Hours, format_local, zone
from ivr.media.clip import FRAME_SAMPLES, RATE
from ivr.runtime.call import CallRunner
from ivr.runtime.calllog import CallLog
from ivr.runtime.edges import ScriptedRecognizer, SimulatedMedia, SimulatedNetwork
from ivr.runtime.forwarding import forwarding_path
from ivr.runtime.services import Services
from ivr.runtime.switches import format_switches, switches_path
from ivr.runtime.trace import TraceLine, describe_outcome, fmt_seconds, trace_line
from ivr.runtime.virtual import InlineExecutor, VirtualLoop, run_virtual
from ivr.sip.auth import authorization_for
from ivr.sip.events import CallEnded, IncomingCall
from ivr.sip.message import Request, parse_message
from ivr.sip.sdp import make_offer

if TYPE_CHECKING:
    from ivr.dsl.compiler import Program
    from ivr.runtime.ports import CallMedia

KEY_SPACING = 0.5  # seconds between the keys of one token such as 123#
MESSAGE_SECONDS = 5.0  # how long a caller speaks into a recording
SPEECH_TAIL = 1.0  # silence after an utterance, so the endpointer hears its end
MAX_RECORDS = 5000  # a flow that keeps running longer than this is looping
MAX_DURATION = 4 * 3600.0
CALL_ID = "simulated-call@ivr"
CALLER_HOST = "192.0.2.10"

InputKind = Literal["key", "speech", "wait", "hangup"]


class SimulationError(ValueError):
    """Bad simulator input (a token, a flag); the message says which and what is expected."""


# --------------------------------------------------------------------------- caller input


@dataclass(frozen=True)
class CallerInput:
    """One thing the caller does: press keys, say something, wait, hang up."""

    kind: InputKind
    value: str = ""  # the keys, or the words said
    seconds: float = 0.0  # for wait; 0 with kind "wait" means "until the flow's next timer"
    barge_in: bool = False  # delivered at once, interrupting the prompt
    rival: str = ""  # speech: another phrase the recogniser also heard (its engines disagreed)

    def __str__(self) -> str:
        prefix = "!" if self.barge_in else ""
        if self.kind == "key":
            return prefix + self.value
        if self.kind == "speech":
            rival = f"|{self.rival.replace(' ', '_')}" if self.rival else ""
            return f"{prefix}say:{self.value.replace(' ', '_')}{rival}"
        if self.kind == "wait":
            return f"wait:{fmt_seconds(self.seconds)}" if self.seconds else "wait"
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
        words, _, rival = body[4:].replace("_", " ").partition("|")
        return CallerInput("speech", " ".join(words.split()), barge_in=barge, rival=" ".join(rival.split()))
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
    """Everything about one simulated call that is not in the flow or the deployment."""

    start: float
    caller: str = "anonymous"
    # The caller is the phone of extension ``caller``, logged in with its password (digest): the
    # call runs the dial plan (ivr.runtime.phones), as one from a real phone would.
    phone: bool = False
    called: str = ""  # "" = the flow's first number
    inputs: tuple[CallerInput, ...] = ()
    switches: Mapping[str, bool] = field(default_factory=dict)
    variables: Mapping[str, str] = field(default_factory=dict)
    # Far ends per target ("*" = every target).  A target in none of these answers, unless
    # ``answer`` is given: then only the targets listed there answer.
    answer: frozenset[str] | None = None
    busy: frozenset[str] = frozenset()
    no_answer: frozenset[str] = frozenset()
    unavailable: frozenset[str] = frozenset()
    failed: frozenset[str] = frozenset()
    early_media: frozenset[str] = frozenset()  # these phones send audio (183 with SDP) while ringing
    # Directory: "Name" or "Name=EXT" is what the caller says when the directory listens;
    # "not found" / "operator": the caller says a name nobody has / presses 0.
    directory: tuple[str, ...] = ()
    # "saved": the caller speaks into a recording; "empty": the caller stays silent.
    voicemail_result: str = "saved"
    # Conference rooms and how many other callers are in them when the call comes.
    conferences: Mapping[str, int] = field(default_factory=dict)


def transfer_outcome(scenario: Scenario, target: str) -> ev.TransferOutcome:
    """How the far end ``target`` behaves in this scenario when it is rung."""

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


@dataclass(frozen=True)
class SimulationResult:
    lines: tuple[TraceLine, ...]
    outcome: ev.Outcome | None
    duration: float  # simulated seconds
    records: tuple[Mapping[str, Any], ...] = ()  # the runtime's call log, as ivr serve writes it

    @property
    def text(self) -> list[str]:
        return [line.text for line in self.lines]


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
    numbers = [n for n in program.entries if n not in ("default", "internal")]
    return numbers[0] if numbers else "default"


# --------------------------------------------------------------------------- the call log


class _TraceLog(CallLog):
    """The runner's call log, kept as records and turned into trace lines as they come."""

    def __init__(self, sim: Simulation) -> None:
        super().__init__(fmt="json")
        self.sim = sim

    def call(self, call_id: str, *, caller: str, called: str, state: str,
             event: str | None = None, action: str | None = None, **extra: Any) -> None:
        record: dict[str, Any] = {"call_id": call_id, "state": state, **extra}
        if event is not None:
            record["event"] = event
        if action is not None:
            record["action"] = action
        self.sim.record(record)

    def server(self, event: str, message: str, **extra: Any) -> None:
        pass


# --------------------------------------------------------------------------- the simulated call

InputSource = Callable[[], "list[CallerInput] | None"]  # interactive: None = end of input


class Simulation:
    """One call of ``program`` per :class:`Scenario` (see the module docstring for its world)."""

    def __init__(
        self,
        program: Program,
        scenario: Scenario,
        *,
        config: Config | None = None,
        more_input: InputSource | None = None,
        on_line: Callable[[TraceLine], None] | None = None,
        data: Path | None = None,
    ) -> None:
        self.program = program
        self.data = data  # the call's data folder (messages, greetings); None: a throw-away one
        self.scenario = scenario
        self.config = config or Config()
        self.more_input = more_input
        self.on_line = on_line
        self.called = scenario.called or first_number(program)
        self.inputs: list[CallerInput] = list(scenario.inputs)
        self.lines: list[TraceLine] = []
        self.records: list[dict[str, Any]] = []
        self.loop = VirtualLoop()
        self.network = SimulatedNetwork(self)
        self.media: SimulatedMedia | None = None  # the caller's
        self.runner: CallRunner | None = None
        self.services: Services | None = None
        self._ports = iter(range(30000, 60000, 2))
        self._busy = False  # the caller is in the middle of something (keys, a wait, speaking)
        self._now_next = False  # deliver the next token at once (after a wait)
        self._words: list[tuple[str, ...]] = []  # what the caller said (and was also heard as), for the recogniser
        self._spoke_into: object | None = None  # the recording the caller spoke into
        self._asked_by: object | None = None  # the directory dialogue the caller answered
        self._hung_up = False
        self._done: Any = None
        self._data_prefix = ""

    # ---- public

    def run(self) -> SimulationResult:
        """Run the call to its end; LookupError when the flow has no entry for the number called."""
        if not self.scenario.phone:  # a phone's call runs the dial plan: any number may be dialled
            self.program.entry_for(self.called)  # a bad --called is the user's mistake, not a call
        with tempfile.TemporaryDirectory(prefix="ivr-simulate-") as temporary:
            data = self.data or Path(temporary)
            self.loop.on_idle = self._on_idle
            try:
                run_virtual(lambda: self._call(data), loop=self.loop)
            except RuntimeError:
                if not self.loop.stalled:
                    raise
                self._note("note", "simulation stopped: the call waits for something that never comes")
            finally:
                if self.services is not None:
                    self.services.close_journal()
        if self.inputs:
            self._note("note", f"caller input not used: {' '.join(str(i) for i in self.inputs)}")
        machine = self.runner.machine if self.runner is not None else None
        outcome = machine.outcome if machine is not None else None
        self._emit(TraceLine(self._t(), "outcome", describe_outcome(outcome), {
            "outcome": outcome.result if outcome else "unfinished",
            "detail": outcome.detail if outcome else "",
            "step": outcome.step if outcome else (machine.state if machine else ""),
        }))
        return SimulationResult(tuple(self.lines), outcome, self._t(), tuple(self.records))

    # ---- the edges the world offers the runtime

    def wall(self) -> float:
        return self.scenario.start + self.loop.time()

    def outcome_for(self, target: str) -> ev.TransferOutcome:
        return transfer_outcome(self.scenario, target)

    def sends_early_media(self, target: str) -> bool:
        return bool({target, "*"} & self.scenario.early_media)

    def to_runner(self, event: object) -> None:
        if self.runner is not None:
            self.runner.on_sip_event(event)

    def to_network_user(self, event: object) -> None:
        """An event of the agent about a transfer leg or a REFER; the caller's dialog otherwise."""
        if self.services is not None and not self.services.leg_event(event):
            self.to_runner(event)

    async def _open_media(self) -> CallMedia:
        media = SimulatedMedia(self.loop, next(self._ports))
        if self.media is None:
            self.media = media  # the first one is the caller's
        return media

    def record(self, record: dict[str, Any]) -> None:
        """A record of the runner's call log: keep it, and show it if the trace shows it."""
        if self._data_prefix:  # the throw-away data folder is shown as the data: it stands for
            prefix = self._data_prefix
            record = {k: v.replace(prefix, "data:") if isinstance(v, str) else v for k, v in record.items()}
        self.records.append(record)
        line = trace_line(record, self._t())
        if line is not None:
            self._emit(line)
        if len(self.records) == MAX_RECORDS and self.runner is not None:
            self._note("note", f"simulation stopped after {MAX_RECORDS} log records: the flow does not end")
            self._hangup()

    # ---- setting the call up

    async def _call(self, data: Path) -> None:
        self._done = self.loop.create_future()
        self._data_prefix = str(data.resolve()) + "/"
        self.services = services = self._services(data)
        self._seed(services, data)
        tz = self.program.settings.timezone
        self._note("call", f"call from {self.scenario.caller} to {self.called} at {format_local(self.wall(), tz)}")
        for name in sorted(self.program.schedules):
            self._note("hours", describe_hours(self.program.schedules[name], self.wall(), self.scenario.switches))
        self.runner = CallRunner(services, self._incoming(), self._finished, variables=self.scenario.variables)
        await self.runner.start()
        await self._done

    def _services(self, data: Path) -> Services:
        from ivr.media.tts import TtsEngine

        # No mail leaves, and the state is the throw-away folder's, never a shared database.
        config = dataclasses.replace(self.config, data=data, smtp=SmtpConfig(), storage=StorageConfig())
        services = Services(
            config=config, program=self.program, ua=self.network, clock=None, calllog=_TraceLog(self),
            contact_host="192.0.2.1", media_host="192.0.2.1", executor=InlineExecutor(),
            storage_executor=InlineExecutor(),
            wall=self.wall, media_factory=self._open_media,
        )
        # the deployment's own voice and its cache: prompts last as long as on the server
        services._lazy["tts"] = TtsEngine.in_data_folder(self.config.data, self.config.tts)  # noqa: SLF001
        services._lazy["recognizer"] = ScriptedRecognizer(self._last_words)  # noqa: SLF001
        for language, _model in config.speech.models:  # every language's recogniser hears the script
            services._lazy[f"recognizer:{language}"] = services._lazy["recognizer"]  # noqa: SLF001
        return services

    def _seed(self, services: Services, data: Path) -> None:
        """A phone on every extension's desk, the scenario's switch positions and callers in conference rooms."""
        from ivr.sip.registrar import Binding

        registrar = services.registrar()
        for i, extension in enumerate(self.config.extensions):
            number = str(extension.number)
            uri = f"sip:{number}@192.0.2.20:{5100 + i}"
            binding = Binding(number, uri, ("192.0.2.20", 5100 + i), "udp", self.wall() + 86400.0)
            registrar.store.apply(number, [binding], [])
        for room, people in self.scenario.conferences.items():
            services.conferences.fill(room, people)
        if self.scenario.switches:
            switches_path(data).write_text(format_switches(dict(self.scenario.switches)), encoding="utf-8")
        chosen = forwarding_path(self.config.data)
        if chosen.is_file():  # follow-me numbers set in the console ring here as on the server
            shutil.copyfile(chosen, forwarding_path(data))

    def _incoming(self) -> IncomingCall:
        offer = bytes(make_offer(CALLER_HOST, 40000, session_id=1, version=1))
        caller = self.scenario.caller
        head = (
            f"INVITE sip:{self.called}@192.0.2.1 SIP/2.0\r\n"
            f"Via: SIP/2.0/UDP {CALLER_HOST}:5060;branch=z9hG4bK-simulated\r\n"
            f"From: <sip:{caller}@{CALLER_HOST}>;tag=simulated\r\n"
            f"To: <sip:{self.called}@192.0.2.1>\r\n"
            f"Call-ID: {CALL_ID}\r\nCSeq: 1 INVITE\r\n"
            f"Contact: <sip:{caller}@{CALLER_HOST}:5060>\r\n"
            f"{self._credentials()}"
            f"Content-Type: application/sdp\r\nContent-Length: {len(offer)}\r\n\r\n"
        )
        request = parse_message(head.encode() + offer)
        assert isinstance(request, Request)
        return IncomingCall(CALL_ID, request, offer, caller, self.called, (CALLER_HOST, 5060))

    def _credentials(self) -> str:
        """A phone's answer to the registrar's challenge (``Scenario.phone``), as a header line."""
        if not self.scenario.phone:
            return ""
        extension = self.config.extension(self.scenario.caller)
        if extension is None or not extension.password:
            raise ValueError(f"caller phone {self.scenario.caller}: no extension with a password in the deployment")
        assert self.services is not None
        challenge = self.services.registrar().challenger.challenge(self.wall(), algorithms=("MD5",))[0]
        value = authorization_for(challenge, "INVITE", f"sip:{self.called}@192.0.2.1",
                                  extension.username or extension.number, extension.password, "simulated", 1)
        return f"Proxy-Authorization: {value}\r\n"

    def _finished(self, runner: CallRunner) -> None:
        if self._done is not None and not self._done.done():
            self._done.set_result(None)

    # ---- the caller

    def _on_idle(self, deadline: float | None) -> bool:
        """The loop would let time pass: does the caller act first? (see the module docstring)"""
        runner = self.runner
        if runner is None or runner.ended or self._hung_up:
            return False
        if self.loop.time() > MAX_DURATION:
            self._note("note", "simulation stopped after four hours: the flow does not end")
            return self._hangup()
        if self._speak_into_recording(runner):
            return True
        if self._busy:
            return False
        self._answer_directory(runner)
        # the caller acts when the flow waits for them, or when nothing else could ever happen
        waited_for = deadline is None or self._listening()
        if not self.inputs and not (waited_for and self._ask_for_input()):
            return self._hangup(" (no more input)") if deadline is None else False
        given = self.inputs[0]
        if not (waited_for or given.barge_in or given.kind == "wait" or self._now_next):
            return False
        self._now_next = False
        self.inputs.pop(0)
        self.loop.call_soon(self._act, given)
        return True

    def _answer_directory(self, runner: CallRunner) -> None:
        """``directory picks "Name"``: when a directory dialogue starts, the caller says the name
        and confirms it (1); ``finds nobody``: says a name it does not know; ``operator``: 0."""
        from ivr.directory import DirectoryDialogue, KeypadDialogue

        sub = runner.sub
        if not isinstance(sub, DirectoryDialogue | KeypadDialogue) or sub is self._asked_by:
            return
        self._asked_by = sub
        for choice in self.scenario.directory[:1]:
            lowered = choice.strip().lower()
            if lowered in ("not found", "not_found", "nobody"):
                self.inputs[:0] = [CallerInput("speech", "nobody by that name")]
            elif lowered == "operator":
                self.inputs[:0] = [CallerInput("key", "0")]
            else:
                self.inputs[:0] = [CallerInput("speech", choice.strip()), CallerInput("key", "1")]

    def _listening(self) -> bool:
        """Nothing plays to the caller (prompts load inline, so none is still being prepared)."""
        return self.media is not None and not self.media.busy

    def _ask_for_input(self) -> bool:
        if self.more_input is None:
            return False
        more = self.more_input()
        if more is None:
            self.more_input = None
            return False
        self.inputs.extend(more or [CallerInput("wait")])  # an empty line: until the next timer
        return True

    def _act(self, given: CallerInput) -> None:
        if given.kind == "wait":
            self._wait(given.seconds)
        elif given.kind == "hangup":
            self._hangup()
        elif given.kind == "speech":
            self._say(given.value, given.rival)
        else:
            self._press(given.value)

    def _wait(self, seconds: float) -> None:
        if seconds == 0:  # until the flow's next timer
            at = self.runner.timer_at if self.runner is not None else None
            if at is None:
                return
            seconds = max(0.0, at - self.wall())
        else:
            self._said("wait", f"caller waits {fmt_seconds(seconds)}", seconds=seconds)
        self._busy = True

        def over() -> None:
            self._busy = False
            self._now_next = True

        self.loop.call_later(seconds, over)

    def _hangup(self, why: str = "") -> bool:
        if self._hung_up:
            return False
        self._hung_up = True
        self._said("hangup", f"caller hangs up{why}")
        self.loop.call_soon(self.to_runner, CallEnded(CALL_ID, "bye"))
        return True

    def _press(self, keys: str) -> None:
        digit, rest = keys[0], keys[1:]
        self._said("key", f"caller presses {digit}", digit=digit)
        if self.media is not None:
            self.media.press(digit)
        self._busy = bool(rest)
        if rest:
            self.loop.call_later(KEY_SPACING, self._press, rest)

    # ---- the caller's voice

    def _say(self, words: str, rival: str = "") -> None:
        shown = f'"{words}"' if words else "something unrecognised"
        heard_too = f' (also heard as "{rival}")' if rival else ""
        self._said("speech", f"caller says {shown}{heard_too}", text=words)
        self._words.append((words, rival) if rival else (words,))
        self._speak(self._voice(words), silence_after=SPEECH_TAIL)

    def _last_words(self) -> tuple[str, ...]:
        return self._words.pop(0) if self._words else ("",)

    def _voice(self, words: str) -> np.ndarray:
        """The caller's voice saying ``words``: the deployment's TTS, or a hum if it cannot speak."""
        assert self.services is not None
        try:
            clip = self.services.tts.render(words or "hmm")
            return np.asarray(clip.pcm, dtype=np.int16)
        except Exception:  # noqa: BLE001 -- no TTS here: a voiced hum the endpointer still hears
            return _hum(1.2)

    def _speak_into_recording(self, runner: CallRunner) -> bool:
        """The runner records (a message): the caller speaks, then stays silent (or says nothing)."""
        recording = runner.recording
        if recording is None or recording is self._spoke_into or self._busy:
            return False
        self._spoke_into = recording
        message = self.scenario.voicemail_result != "empty"
        self._speak(_hum(MESSAGE_SECONDS) if message else np.zeros(0, np.int16), silence_after=None)
        return True

    def _speak(self, pcm: np.ndarray, silence_after: float | None) -> None:
        """Send ``pcm`` as 20 ms frames, then silence: ``silence_after`` seconds, or while recorded."""
        frames = [pcm[i:i + FRAME_SAMPLES] for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES)]
        silent = np.zeros(FRAME_SAMPLES, np.int16)
        tail = None if silence_after is None else int(silence_after * RATE / FRAME_SAMPLES)
        recording = self.runner.recording if self.runner is not None else None
        self._busy = True
        step = FRAME_SAMPLES / RATE

        def send(i: int) -> None:
            media, runner = self.media, self.runner
            if media is None or runner is None or runner.ended:
                self._busy = False
                return
            if i < len(frames):
                media.hear(frames[i])
            elif tail is not None and i < len(frames) + tail:
                media.hear(silent)
            elif tail is None and runner.recording is recording and recording is not None:
                self._busy = False  # done speaking: the caller may press # now; silence goes on
                media.hear(silent)
            else:
                self._busy = False
                return
            self.loop.call_later(step, send, i + 1)

        send(0)

    # ---- output

    def _t(self) -> float:
        return self.loop.time()  # seconds since the call came in (the virtual clock starts at 0)

    def _said(self, event: str, line: str, **data: Any) -> None:
        """A line for something the caller does (key, speech, wait, hangup)."""
        self._emit(TraceLine(self._t(), "caller", line, {"event": event, **data, "t": round(self._t(), 3)}))

    def _note(self, kind: str, text: str) -> None:
        self._emit(TraceLine(self._t(), kind, text, {"note": text}))

    def _emit(self, line: TraceLine) -> None:
        self.lines.append(line)
        if self.on_line is not None:
            self.on_line(line)


def _hum(seconds: float) -> np.ndarray:
    """A voiced sound (a vowel-like harmonic hum at -20 dBFS) of ``seconds``."""
    t = np.arange(int(seconds * RATE)) / RATE
    wave = sum(np.sin(2 * np.pi * 140 * k * t) / k for k in range(1, 8))
    return (wave / np.max(np.abs(wave)) * 3000).astype(np.int16)


def simulate(
    program: Program,
    scenario: Scenario,
    *,
    config: Config | None = None,
    on_line: Callable[[TraceLine], None] | None = None,
    data: Path | None = None,
) -> SimulationResult:
    """Run one simulated call to its end and return the trace; ``data`` keeps its data folder (the
    messages left) for a later call, instead of a throw-away one."""
    return Simulation(program, scenario, config=config, on_line=on_line, data=data).run()
