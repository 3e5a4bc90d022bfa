"""The contract between a flow machine and whoever runs it.

A compiled flow runs one call through :class:`ivr.dsl.machine.Machine`,
which is sans-IO: the runner (``ivr serve``'s call runner, ``ivr simulate``,
``ivr test``) feeds it *events* with the current time and carries out the
*actions* it returns.  The machine never sleeps or reads a clock; it exposes
``next_timer`` (absolute time, same scale as ``now``) and expects
``handle(TimerFired(), now)`` when that time comes.

Time is UNIX epoch seconds (float) so schedules can be evaluated from the same
``now`` that drives timers; the simulator starts its fake clock at ``--at``.

Everything here is a frozen dataclass with a ``kind`` that the simulator's
``--json`` output uses as its ``"action"`` / ``"event"`` key.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import ClassVar, Literal

TransferOutcome = Literal["answered", "busy", "no_answer", "unavailable", "failed"]
TRANSFER_OUTCOMES: tuple[TransferOutcome, ...] = ("answered", "busy", "no_answer", "unavailable", "failed")


# --------------------------------------------------------------------------- events (runner -> machine)


@dataclass(frozen=True)
class Event:
    kind: ClassVar[str] = "event"


@dataclass(frozen=True)
class Key(Event):
    """A DTMF key from the caller (RFC 4733, SIP INFO or in-band): ``0-9*#ABCD``."""

    kind: ClassVar[str] = "key"
    digit: str


@dataclass(frozen=True)
class Speech(Event):
    """A recognised utterance (already matched against the active grammar), or ``""`` for no match.

    ``alternatives``: other phrases of the grammar the recogniser heard about as surely as
    ``text`` (its engines disagreed); a dialogue may ask the caller which one was meant.
    """

    kind: ClassVar[str] = "speech"
    text: str
    confidence: float = 1.0
    alternatives: tuple[str, ...] = ()


@dataclass(frozen=True)
class PromptDone(Event):
    """Playback of the prompt started by ``Say``/``Play`` with this ``prompt_id`` finished (not stopped)."""

    kind: ClassVar[str] = "prompt_done"
    prompt_id: int


@dataclass(frozen=True)
class TimerFired(Event):
    """``now`` has reached ``machine.next_timer``."""

    kind: ClassVar[str] = "timer"


@dataclass(frozen=True)
class TransferResult(Event):
    """Outcome of a ``Transfer``/``Ring`` action; ``answered`` arrives again as ``BridgeEnded`` later."""

    kind: ClassVar[str] = "transfer_result"
    outcome: TransferOutcome
    target: str = ""


@dataclass(frozen=True)
class BridgeEnded(Event):
    """The bridged call (after ``answered``) ended; the caller's leg is over too unless the flow continues."""

    kind: ClassVar[str] = "bridge_ended"


@dataclass(frozen=True)
class DirectoryResult(Event):
    """Outcome of a ``Directory`` action: a person chosen (and confirmed), nobody found, or the operator asked for."""

    kind: ClassVar[str] = "directory_result"
    outcome: Literal["selected", "not_found", "operator"]
    extension: str = ""
    name: str = ""
    mailbox: str = ""


@dataclass(frozen=True)
class ActionDone(Event):
    """A long-running action (voicemail, voicemail access, record, hold with a duration) finished.

    ``result`` is action-specific: for ``record`` the saved path, for ``voicemail`` ``"saved"`` or
    ``"empty"`` (caller left nothing), for ``voicemail_access`` ``"done"`` or ``"locked"``.
    """

    kind: ClassVar[str] = "action_done"
    action: str
    result: str = ""


@dataclass(frozen=True)
class RecordingDone(Event):
    """A recording started by ``StartRecording`` ended; ``reason``: key, silence, max_length, hangup, stopped."""

    kind: ClassVar[str] = "recording_done"
    path: str
    duration: float
    reason: str = "key"


@dataclass(frozen=True)
class ConferenceJoined(Event):
    """Answer to ``JoinConference``: a seat in ``room`` (``others`` there besides the caller), or ``full``.

    ``music`` is the source the caller hears now because they are alone (or waiting for a
    moderator), ``""`` when they hear the others (or silence: a room without music).
    """

    kind: ClassVar[str] = "conference_joined"
    room: str
    others: int = 0
    full: bool = False
    music: str = ""
    moderators: int = 0  # moderators among the others


@dataclass(frozen=True)
class Hangup(Event):
    """The caller hung up (BYE, CANCEL, media timeout)."""

    kind: ClassVar[str] = "hangup"


@dataclass(frozen=True)
class StorageDone(Event):
    """The answer to a dialogue's ``StorageWork``: what ``work`` returned, or the ``error`` it raised."""

    kind: ClassVar[str] = "storage_done"
    what: str
    result: object = field(default=None, repr=False, compare=False)  # not logged: rows, messages
    error: str = ""


# --------------------------------------------------------------------------- actions (machine -> runner)


@dataclass(frozen=True)
class Action:
    kind: ClassVar[str] = "action"


@dataclass(frozen=True)
class EnterStep(Action):
    """The call entered a step of the flow (for logs, the call journal and flow tests)."""

    kind: ClassVar[str] = "step"
    step: str


@dataclass(frozen=True)
class Say(Action):
    """Speak ``text`` by TTS; queued after earlier prompts. ``prompt_id`` comes back in ``PromptDone``.

    ``message`` is the catalogue id of one of ivr's own constant sentences (``voicemail.leave.saved_goodbye``):
    a recording of it in the language's prompt set plays instead of TTS (docs/languages.md).
    """

    kind: ClassVar[str] = "say"
    text: str
    prompt_id: int
    voice: str = ""
    language: str = ""
    barge_in: bool = True
    message: str = ""


@dataclass(frozen=True)
class Play(Action):
    """Play a prompt file.

    ``path`` is as written in the flow, resolved only inside the prompt folders; a path starting
    with ``data:`` names a file inside the data folder (recorded messages, greetings, names).
    """

    kind: ClassVar[str] = "play"
    path: str
    prompt_id: int
    barge_in: bool = True


@dataclass(frozen=True)
class Tone(Action):
    """A generated tone (the beep before recording); queued like a prompt."""

    kind: ClassVar[str] = "tone"
    frequency: float
    duration: float
    prompt_id: int


@dataclass(frozen=True)
class StartRecording(Action):
    """Record the caller's audio to ``path`` (inside the data folder; WAV PCM16 8 kHz).

    Ends on ``end_key``, after ``silence`` seconds of silence (0: never), at ``max_length``, or on
    ``StopRecording``; the runner then sends ``RecordingDone``.  Shorter than ``min_length``: the file
    is deleted and ``RecordingDone.duration`` is 0.
    """

    kind: ClassVar[str] = "start_recording"
    path: str
    max_length: float = 120.0
    end_key: str = "#"
    silence: float = 0.0
    min_length: float = 1.0


@dataclass(frozen=True)
class StopRecording(Action):
    kind: ClassVar[str] = "stop_recording"


@dataclass(frozen=True)
class StopPrompts(Action):
    """Barge-in: stop every queued prompt at the next frame."""

    kind: ClassVar[str] = "stop_prompts"


@dataclass(frozen=True)
class Listen(Action):
    """Start collecting input: keys always; speech when ``phrases`` is non-empty (the grammar).

    With phrases the runner feeds the caller's audio to a recogniser (endpointed by VAD) and sends
    ``Speech(text)`` with the matched phrase, or ``Speech("")`` for no match.  A later ``Listen``
    replaces the grammar; ``Listen()`` with no phrases stops speech recognition.

    ``any_speech``: the menu also takes an utterance that matches no phrase (its ``speech ->``
    option), so the runner listens even when ``phrases`` is empty and reports such an utterance
    as ``Speech(text)`` (free-form recognisers) or ``Speech("")`` (grammar recognisers).

    ``directory``: the menu's ``speech`` option leads to this directory, so the recogniser also
    listens for its people's names; a name heard here is handed to the directory
    (``Directory.heard``) instead of being asked for again.
    """

    kind: ClassVar[str] = "listen"
    phrases: tuple[str, ...] = ()
    timeout: float = 0.0
    any_speech: bool = False
    directory: str = ""


@dataclass(frozen=True)
class Transfer(Action):
    """Ring ``targets`` (extensions, external numbers) and bridge the first that answers.

    ``plan`` is the ring plan: steps tried in order, each a tuple of targets rung together for
    ``step timeout`` seconds (parallel) -- sequential ringing is one step per member.
    ``music`` is a hold-music source, or ``""`` for ringback tone.  ``record``: the bridged
    conversation is recorded into a mailbox (ivr.runtime.callrecording).
    """

    kind: ClassVar[str] = "transfer"
    plan: tuple[tuple[tuple[str, ...], float], ...]
    music: str = ""
    group: str = ""
    refer: bool = False
    pikett: bool = False  # ``transfer to pikett GROUP``: the runtime rings the members' on-call numbers
    record: bool = False


@dataclass(frozen=True)
class Directory(Action):
    """Dial by name in directory ``name``.

    ``keypad_key``: in the speech dialogue, this key switches to the keypad directory without
    spelling a letter.  ``heard``: a name the caller already said at the menu that led here,
    looked up at once instead of asking for it again.
    """

    kind: ClassVar[str] = "directory"
    name: str
    by_speech: bool = True
    by_keys: bool = True
    match: Literal["last", "first", "either"] = "last"
    confirm: bool = True
    keypad_key: str = ""
    heard: str = ""


@dataclass(frozen=True)
class Voicemail(Action):
    """Let the caller leave a message in ``mailbox`` (greeting, beep, record, optional review).

    ``temporary``: the owner's temporary greeting, when one is set, plays instead of ``greeting``
    (the default); False is the flow's ``no temporary``.
    """

    kind: ClassVar[str] = "voicemail"
    mailbox: str
    greeting: Literal["unavailable", "busy", "temporary"] = "unavailable"
    review: bool = False
    temporary: bool = True


@dataclass(frozen=True)
class VoicemailAccess(Action):
    """Mailbox owner menu: ``mailbox`` fixed, or ``""`` to ask for the number first."""

    kind: ClassVar[str] = "voicemail_access"
    mailbox: str = ""


@dataclass(frozen=True)
class Record(Action):
    kind: ClassVar[str] = "record"
    variable: str
    max_length: float = 120.0
    beep: bool = True
    end_key: str = "#"
    silence: float = 0.0  # 0: do not end on silence


@dataclass(frozen=True)
class Hold(Action):
    """Play hold music (``music``: source name/path, ``""`` for the flow's default) for ``duration`` s (0 = until changed)."""

    kind: ClassVar[str] = "hold"
    music: str = ""
    duration: float = 0.0


@dataclass(frozen=True)
class Conference(Action):
    """Take the caller into conference room ``room`` (PIN, announcements, then the room's mix).

    Ends with ``ActionDone("conference", "full")`` when the room has ``max_participants``
    already, ``"left"`` when the caller hangs up; three wrong PINs end the call.
    """

    kind: ClassVar[str] = "conference"
    room: str
    pin: str = ""
    moderator_pin: str = ""
    max_participants: int = 0  # 0: no limit
    music: str = ""  # heard while alone or waiting for a moderator ("": silence)
    tones: bool = False  # entry and exit tones to the others
    announce: bool = False  # tell the caller how many others are there


@dataclass(frozen=True)
class JoinConference(Action):
    """Take a seat in ``room`` (the conference dialogue, once the PIN is right); ``ConferenceJoined`` answers."""

    kind: ClassVar[str] = "join_conference"
    room: str
    moderator: bool = False
    max_participants: int = 0
    music: str = ""
    tones: bool = False
    wait_for_moderator: bool = False


@dataclass(frozen=True)
class TalkInConference(Action):
    """The seated caller starts hearing the room (its mix, or its music while alone) and being heard."""

    kind: ClassVar[str] = "talk_in_conference"
    room: str


@dataclass(frozen=True)
class HangupCall(Action):
    kind: ClassVar[str] = "hangup"
    reason: str = "normal"


@dataclass(frozen=True)
class StorageWork(Action):
    """Blocking storage calls of a dialogue (the voicemail index, greetings): the runner runs ``work`` in a
    worker thread, never on the event loop, and hands its answer back as ``StorageDone``."""

    kind: ClassVar[str] = "storage"
    what: str  # for the log: which dialogue step waits for it
    work: Callable[[], object] = field(repr=False, compare=False)


@dataclass(frozen=True)
class Outcome:
    """Where a call ended, for the simulator's last line, flow tests and the call journal."""

    result: str  # "hangup", "transferred", "voicemail", "caller_hangup", "error" ...
    detail: str = ""
    step: str = ""
    variables: dict[str, str] = field(default_factory=dict)


# Prompt ids of a sub-dialogue start here; the flow machine counts its own from 1 per call,
# so a PromptDone the runner hands back can never be taken for the other's prompt.
SUB_MACHINE_FIRST_PROMPT_ID = 1_000_000


class SubMachine:
    """Protocol of the sub-dialogues the runner plugs in for long actions.

    The voicemail (leave / access) and directory dialogues are sans-IO machines with the same
    shape as the flow machine: ``start(now)``/``handle(event, now)`` return actions from this
    module, ``next_timer`` is absolute, and when ``finished`` is true ``result`` is the event to
    hand back to the flow machine (``ActionDone`` or ``DirectoryResult``).
    """

    next_timer: float | None
    finished: bool
    result: Event | None

    def start(self, now: float) -> list[Action]:
        raise NotImplementedError

    def handle(self, event: Event, now: float) -> list[Action]:
        raise NotImplementedError
