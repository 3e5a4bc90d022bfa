"""The conference dialogue: PIN, a seat in the room, who is there, then the room itself.

A sans-IO sub-machine (the shape and mechanics of :class:`~ivr.voicemail.dialogue.Dialogue`)
that the call runner plugs in for a flow's ``conference ROOM`` step
(:class:`~ivr.dsl.events.Conference`):

1. With a ``pin`` (and maybe a ``moderator pin``) the caller is asked for it, typed on the
   keypad and ended with ``#`` (or a pause).  The moderator PIN makes the caller a
   moderator, the PIN a participant.  A wrong PIN (or none) is asked again; the third
   wrong one ends the call (``HangupCall("conference_pin")``) and is logged with the
   caller's number.
2. ``JoinConference`` asks the runner for a seat (ivr.runtime.rooms); ``ConferenceJoined``
   answers with the number of others there, or that the room is full: the caller hears so
   and the flow continues after its ``conference`` line (``ActionDone("conference", "full")``).
3. The caller hears who is there: alone (then the room's music until someone comes), the
   number of others (``announce count``), that the conference waits for its moderator;
   then ``TalkInConference``: the runner connects the caller to the room's mix.
4. The dialogue ends when the caller hangs up (``ActionDone("conference", "left")``).

Every sentence the caller hears is a ``conference.*`` message of the call's catalogue
(ivr/language/messages).
"""

from __future__ import annotations

import logging

from ivr.dsl.events import (
    Action,
    Conference,
    ConferenceJoined,
    Event,
    HangupCall,
    JoinConference,
    TalkInConference,
)
from ivr.language import catalogue
from ivr.voicemail.dialogue import PinEntry

log = logging.getLogger("ivr.runtime.conference")


MAX_PIN_TRIES = 3


def prompt_texts(max_participants: int = 0, language: str = "en") -> list[str]:
    """Every sentence a caller of a room can hear in ``language`` (counts up to
    ``max_participants`` - 1, or 9), from the catalogue's ``conference.*`` messages."""
    lang = catalogue(language)
    fixed = [lang.say(f"conference.{key}") for key in ("ask_pin", "wrong_pin", "pin_goodbye", "full",
                                                       "wait_moderator")]
    counts = [lang.say("conference.others", count=n) for n in range(0, (max_participants or 10))]
    return fixed + counts


class ConferenceDialogue(PinEntry):
    """One caller's way into a conference room (see the module docstring)."""

    pin_question = "conference.ask_pin"

    action = "conference"

    def __init__(self, request: Conference, *, caller: str = "", voice: str = "", language: str = "") -> None:
        super().__init__(voice=voice, language=language)
        self.request = request
        self.caller = caller
        self.failures = 0
        self.moderator = False
        self._digits = ""

    # ------------------------------------------------------------------ SubMachine

    def handle(self, event: Event, now: float) -> list[Action]:
        if isinstance(event, ConferenceJoined) and not self.finished:
            return self._joined(event)
        return super().handle(event, now)

    def begin(self, now: float) -> list[Action]:
        if not self.request.pin and not self.request.moderator_pin:
            return self._join()
        return self._ask_pin()

    def on_hangup(self, now: float) -> list[Action]:
        return self.finish("left")

    # ------------------------------------------------------------------ the PIN

    def _check_pin(self) -> list[Action]:
        self.next_timer = None
        request, typed = self.request, self._digits
        if request.moderator_pin and typed == request.moderator_pin:
            self.moderator = True
            return self._join()
        if request.pin and typed == request.pin:
            return self._join()
        self.failures += 1
        log.warning("conference %s: wrong PIN from %s (%d of %d)", request.room, self.caller or "?",
                    self.failures, MAX_PIN_TRIES)
        if self.failures >= MAX_PIN_TRIES:
            log.error("conference %s: %s hung up on after %d wrong PINs", request.room, self.caller or "?",
                      self.failures)
            return self.enter("locked", [self.say("conference.pin_goodbye")], barge_in=False)
        wrong = self.say("conference.wrong_pin")
        return [wrong, *self._ask_pin()]

    def _done_locked(self, now: float) -> list[Action]:
        self.finish("pin_failed")
        return [HangupCall("conference_pin")]

    # ------------------------------------------------------------------ the room

    def _join(self) -> list[Action]:
        request = self.request
        self.state = "joining"
        return [JoinConference(request.room, self.moderator, request.max_participants, request.music,
                               request.tones, bool(request.moderator_pin))]

    def _joined(self, event: ConferenceJoined) -> list[Action]:
        if self.state != "joining":
            return []
        if event.full:
            return self.enter("full", [self.say("conference.full")], barge_in=False)
        prompts: list[Action] = []
        if event.others == 0 or self.request.announce:
            prompts.append(self.say("conference.others", count=event.others))
        if self.request.moderator_pin and not self.moderator and not event.moderators:
            prompts.append(self.say("conference.wait_moderator"))
        if not prompts:
            return self._talk()
        return self.enter("announcing", prompts, barge_in=False)

    def _done_full(self, now: float) -> list[Action]:
        return self.finish("full")

    def _done_announcing(self, now: float) -> list[Action]:
        return self._talk()

    def _talk(self) -> list[Action]:
        self.state = "talking"
        return [TalkInConference(self.request.room)]
