"""The shared mechanics of the voicemail dialogues (sans-IO sub-machines).

A :class:`Dialogue` is driven like the flow machine: ``start(now)`` and
``handle(event, now)`` return actions of :mod:`ivr.dsl.events`; it never reads
a clock.  Each dialogue is a table of states: for a state ``S`` the methods
``_done_S`` (its prompts finished), ``_key_S`` (a key), ``_timeout_S``
(``next_timer`` reached) and ``_recorded_S`` (a recording ended) say what
happens; an event a state has no entry for is ignored when it is the caller's
doing (a stray key) and raises :class:`DialogueError` naming the state and the
event when it is the runner's (a recording result while nothing records).

Every sentence comes from the message catalogue of the call's language
(:mod:`ivr.language`): :meth:`Dialogue.say` takes a message id and its arguments.

The store is reached only through :meth:`Dialogue.fetch`: the dialogue returns a
``StorageWork`` action and waits in a state of its own (no prompt, no timer, keys
ignored) until the runner, which ran the work in a worker thread, hands back its
``StorageDone``; so a database that stops answering never holds the event loop.

Prompts of one state are queued together; the state waits for the
``PromptDone`` of the last one.  A key during barge-in prompts stops them
(``StopPrompts``) and is handled at once, as in a menu of the flow.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import replace
from typing import Any, ClassVar, TypeVar

from ivr.dsl.events import (
    SUB_MACHINE_FIRST_PROMPT_ID,
    Action,
    ActionDone,
    Event,
    Hangup,
    Key,
    Listen,
    Play,
    PromptDone,
    RecordingDone,
    Say,
    Speech,
    StopPrompts,
    StorageDone,
    StorageWork,
    SubMachine,
    TimerFired,
    Tone,
)
from ivr.language import Catalogue, catalogue
from ivr.language.spoken import digits

log = logging.getLogger("ivr.voicemail")

T = TypeVar("T")
Then = Callable[[Any, float], list[Action]]

BEEP_HZ = 1000.0
BEEP_SECONDS = 0.25


class DialogueError(RuntimeError):
    """An event the dialogue cannot take in its current state (a runner bug, not a caller's)."""


class Dialogue(SubMachine):
    """Base of :class:`~ivr.voicemail.leave.LeaveMessage` and :class:`~ivr.voicemail.access.MailboxAccess`."""

    action: ClassVar[str] = ""

    def __init__(
        self, *, first_prompt_id: int = SUB_MACHINE_FIRST_PROMPT_ID, voice: str = "", language: str = ""
    ) -> None:
        self.next_timer: float | None = None
        self.finished = False
        self.result: Event | None = None
        self.state = "start"
        self.voice = voice
        self.language = language
        self.lang = catalogue(language)
        self._next_prompt = first_prompt_id
        self._waiting: int | None = (
            None  # prompt id whose PromptDone ends the current state's prompts
        )
        self._barge = True
        self._fetching: tuple[Then, Callable[[str, float], list[Action]]] | None = None

    # ------------------------------------------------------------------ SubMachine

    def start(self, now: float) -> list[Action]:
        """``Listen()`` first: keys only, the flow's speech recognition (if any) stops here."""
        return [Listen(), *self.begin(now)]

    def handle(self, event: Event, now: float) -> list[Action]:
        if self.finished:
            raise DialogueError(f"can't handle {event.kind} in state 'finished'")
        if isinstance(event, Hangup):
            return self.on_hangup(now)
        if isinstance(event, PromptDone):
            return self._prompt_done(event.prompt_id, now)
        if isinstance(event, TimerFired):
            return self._timer(now)
        if isinstance(event, Key):
            return self._key(event.digit, now)
        if isinstance(event, RecordingDone):
            return self._dispatch("recorded", event, now, required=True)
        if isinstance(event, Speech):
            return []  # the voicemail menus are keypad-only
        if isinstance(event, StorageDone):
            return self._fetched(event, now)
        raise DialogueError(f"can't handle {event.kind} in state {self.state!r}")

    # ------------------------------------------------------------------ for subclasses

    def begin(self, now: float) -> list[Action]:
        raise NotImplementedError

    def on_hangup(self, now: float) -> list[Action]:
        raise NotImplementedError

    def collect_digit(
        self, digit: str, now: float, submit: Callable[[float], list[Action]], *, limit: int, pause: float
    ) -> list[Action]:
        """One key of a number being typed into ``self._digits`` (a PIN, a mailbox): ``#`` submits,
        ``*`` starts again, a digit is kept (up to ``limit``), and ``pause`` seconds without a key
        end the typing (the state's timeout handler decides what that means)."""
        if digit == "#":
            return submit(now)
        if digit == "*":
            self._digits = ""
        elif digit.isdigit() and len(self._digits) < limit:
            self._digits += digit
        self.next_timer = now + pause
        return []

    def enter(
        self,
        state: str,
        prompts: list[Action],
        *,
        barge_in: bool = True,
        timer: float | None = None,
    ) -> list[Action]:
        """Go to ``state`` playing ``prompts``; ``timer`` (absolute) arms ``next_timer`` right away."""
        self.state = state
        self._barge = barge_in
        if not barge_in:
            prompts = [
                replace(p, barge_in=False) if isinstance(p, Say | Play) else p for p in prompts
            ]
        ids = [p.prompt_id for p in prompts if isinstance(p, Say | Play | Tone)]
        self._waiting = ids[-1] if ids else None
        self.next_timer = timer
        return prompts

    def fetch(
        self,
        state: str,
        work: Callable[[], T],
        then: Callable[[T, float], list[Action]],
        failed: Callable[[str, float], list[Action]] | None = None,
    ) -> list[Action]:
        """Wait in ``state`` while ``work`` (blocking calls to the store) runs off the event loop; its answer
        goes to ``then(result, now)``, a failure to ``failed(error, now)`` (by default the dialogue ends
        ``failed``, and the flow goes on)."""
        actions = self.enter(state, [])
        self._fetching = (then, failed or self._storage_failed)
        return [*actions, StorageWork(f"{self.action}.{state}", work)]

    def _fetched(self, event: StorageDone, now: float) -> list[Action]:
        if self._fetching is None:
            raise DialogueError(f"can't handle {event.kind} in state {self.state!r}")
        (then, failed), self._fetching = self._fetching, None
        return failed(event.error, now) if event.error else then(event.result, now)

    def _storage_failed(self, error: str, now: float) -> list[Action]:
        log.error("voicemail: %s failed in state %r: %s", self.action, self.state, error)
        return self.finish("failed")

    def say(self, message: str, **args: object) -> Say:
        """Catalogue sentence ``message`` in the call's language (``args`` fill its placeholders);
        spoken in the catalogue's language (English for a language without one)."""
        text = self.lang.say(message, **args)
        constant = "" if args else message  # only a constant sentence can have a recording
        return Say(text, self._new_id(), voice=self.voice, language=self.lang.language, message=constant)

    def play(self, path: str) -> Play:
        return Play(path, self._new_id())

    def beep(self) -> Tone:
        return Tone(BEEP_HZ, BEEP_SECONDS, self._new_id())

    def finish(self, result: str) -> list[Action]:
        self.finished = True
        self._fetching = None
        self.next_timer = None
        self.state = "finished"
        self.result = ActionDone(self.action, result)
        return []

    @property
    def prompts_playing(self) -> bool:
        return self._waiting is not None

    # ------------------------------------------------------------------ internals

    def _new_id(self) -> int:
        self._next_prompt += 1
        return self._next_prompt

    def _prompt_done(self, prompt_id: int, now: float) -> list[Action]:
        if prompt_id != self._waiting:
            return []  # an earlier prompt of the batch, or one stopped by barge-in
        self._waiting = None
        return self._dispatch("done", None, now)

    def _timer(self, now: float) -> list[Action]:
        if self.next_timer is None or now < self.next_timer:
            return []
        self.next_timer = None
        return self._dispatch("timeout", None, now)

    def _key(self, digit: str, now: float) -> list[Action]:
        handler = getattr(self, f"_key_{self.state}", None)
        if handler is None or (self.prompts_playing and not self._barge):
            return []  # keys mean nothing here (or the prompt cannot be interrupted)
        stop: list[Action] = []
        if self.prompts_playing:
            stop, self._waiting = [StopPrompts()], None
        return stop + handler(digit, now)

    def _dispatch(
        self, what: str, event: Event | None, now: float, *, required: bool = False
    ) -> list[Action]:
        handler: Callable[..., list[Action]] | None = getattr(self, f"_{what}_{self.state}", None)
        if handler is None:
            if required:
                raise DialogueError(
                    f"can't handle {event.kind if event else what} in state {self.state!r}"
                )
            return []
        return handler(event, now) if event is not None else handler(now)


def spoken_number(number: str, lang: Catalogue) -> str:
    """A phone number as TTS should say it: digit by digit ("plus 4 1 7 9 ...")."""
    if not number or not any(c.isdigit() for c in number):
        return lang.say("phone.unknown_caller")
    return digits(number, lang)


PIN_FIRST_DIGIT_TIMEOUT = 10.0  # s after the question for the first key
PIN_INTER_DIGIT_TIMEOUT = 5.0  # s between keys: then the PIN is taken as typed
MAX_PIN_DIGITS = 16


class PinEntry(Dialogue):
    """A dialogue that asks for a PIN in its ``pin`` state: digits, ``*`` starts again, ``#`` or a
    pause ends it; ``_check_pin`` (the subclass's) then reads ``self._digits``.  The conference
    and the night-switch codes share it."""

    pin_question: ClassVar[str] = ""  # the catalogue's id of the question

    def _ask_pin(self) -> list[Action]:
        self._digits = ""
        return self.enter("pin", [self.say(self.pin_question)])

    def _done_pin(self, now: float) -> list[Action]:
        self.next_timer = now + PIN_FIRST_DIGIT_TIMEOUT
        return []

    def _key_pin(self, digit: str, now: float) -> list[Action]:
        return self.collect_digit(
            digit, now, lambda now: self._check_pin(), limit=MAX_PIN_DIGITS, pause=PIN_INTER_DIGIT_TIMEOUT
        )

    def _timeout_pin(self, now: float) -> list[Action]:
        return self._check_pin()

    def _check_pin(self) -> list[Action]:
        raise NotImplementedError
