"""What the staff side of a bridged call can do during it: record it, add a third person.

A call ivr bridges (:class:`~ivr.runtime.transfer.TransferSession`) has a staff side: the
extension that answered a transfer, and the caller too when the call comes from one of the
deployment's phones.  Keys typed there go through :class:`CodeMatcher` before they are
relayed, so a feature code (``[features]`` in ivr.toml) never reaches the other side:

* ``record`` (``*1``): start recording the conversation into the presser's mailbox, or stop
  it (ivr.runtime.callrecording).  Only extensions with ``may_record = true`` may; anybody
  else hears a sentence saying so and the call goes on.  Both sides hear that the call is
  now recorded (or no longer).  A flow's ``transfer to 201 record`` starts the same
  recording when the bridge starts, without the sentence.
* ``add_party`` (``*3``), then a number and ``#`` (or a pause): "Zuschalten".  The two
  parties move into an ad-hoc conference room (ivr.runtime.rooms, the media core's mixer)
  and the number is rung as the pressing extension would dial it (its ``may_call_out``
  rules for numbers outside); when it answers, it joins the room and all three hear each
  other.  If it does not answer, the room hears a sentence saying so and the two go on
  talking.  A recording follows the call into the room.  The room ends when fewer than two
  are left in it and nobody is being rung: the caller's flow then goes on after its
  transfer step, as after the end of a bridge; when the caller hangs up, every leg of the
  call is hung up.

Every sentence is a ``incall.*`` message of the call's catalogue.  :class:`CodeMatcher` is
sans-IO (keys and the time in, keys to relay or a code out); :class:`InCall` and
:class:`AdHoc` carry the codes out on the session.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from ivr.config import Extension
from ivr.dsl import events as ev
from ivr.language import catalogue
from ivr.media.clip import Clip
from ivr.runtime.callrecording import CallRecording, owner_mailbox
from ivr.runtime.languages import call_language, choose_voice, recorded_sentence
from ivr.runtime.phones import PhoneCaller

if TYPE_CHECKING:
    from ivr.runtime.bridge import Bridge
    from ivr.runtime.ports import CallMedia
    from ivr.runtime.rooms import Participant

log = logging.getLogger("ivr.runtime.incall")

PREFIX_TIMEOUT = 2.0  # s: keys that began like a code and stopped are relayed after this pause
NUMBER_TIMEOUT = 5.0  # s: a number after add_party without # is taken as typed after this pause
WITH_NUMBER = frozenset({"add_party"})  # codes followed by a number
RING_SECONDS = 30.0  # how long a third person is rung


class Session(Protocol):
    """What the in-call features need of the call's TransferSession (ivr.runtime.transfer)."""

    services: Any
    caller: Any  # the call runner
    action: ev.Transfer
    bridge: Bridge | None
    bridged: Any  # the answered leg
    adhoc: AdHoc | None
    adhoc_side: str

    def __init__(self, caller: Any, action: ev.Transfer, post: Any) -> None: ...

    def start(self) -> None: ...

    def close(self) -> None: ...

    def conference_over(self) -> None: ...


@dataclass(frozen=True)
class Code:
    """A feature code typed in full: ``name`` (``record``, ``add_party``) and its number."""

    name: str
    number: str = ""


class CodeMatcher:
    """One side's keys: which to relay to the other side and which feature code they typed.

    ``key`` and ``timer`` return ``(keys to relay, code or None)``; ``next_timer`` is when
    ``timer`` wants to be called.  Keys that could still become a code are kept until they
    do, cannot (then they are relayed) or ``PREFIX_TIMEOUT`` passes.
    """

    def __init__(self, codes: Mapping[str, str]) -> None:
        self.codes = {code: name for code, name in codes.items() if code}
        self.typed = ""
        self.collecting: str | None = None  # the code whose number is being typed
        self.number = ""
        self.next_timer: float | None = None

    def key(self, digit: str, now: float) -> tuple[str, Code | None]:
        if self.collecting is not None:
            return self._number_key(digit, now)
        typed = self.typed + digit
        name = self.codes.get(typed)
        if name in WITH_NUMBER:
            self.typed, self.collecting, self.number = "", name, ""
            self.next_timer = now + NUMBER_TIMEOUT
            return "", None
        if name is not None:
            self.typed, self.next_timer = "", None
            return "", Code(name)
        if any(code.startswith(typed) for code in self.codes):
            self.typed, self.next_timer = typed, now + PREFIX_TIMEOUT
            return "", None
        self.typed, self.next_timer = "", None
        return typed, None

    def _number_key(self, digit: str, now: float) -> tuple[str, Code | None]:
        if digit == "#":
            return "", self._number_done()
        if digit == "*":  # changed one's mind: nothing happens
            self.collecting, self.number, self.next_timer = None, "", None
            return "", None
        self.number += digit
        self.next_timer = now + NUMBER_TIMEOUT
        return "", None

    def timer(self, now: float) -> tuple[str, Code | None]:
        if self.next_timer is None or now < self.next_timer:
            return "", None
        if self.collecting is not None:
            return "", self._number_done()
        typed, self.typed, self.next_timer = self.typed, "", None
        return typed, None

    def _number_done(self) -> Code | None:
        name, number = self.collecting, self.number
        self.collecting, self.number, self.next_timer = None, "", None
        return Code(name, number) if name and number else None


def codes_of(features: Any) -> dict[str, str]:
    """The in-call codes of ``[features]``: code -> name ("" turns one off)."""
    return {features.record: "record", features.add_party: "add_party"}


class InCall:
    """The in-call features of one TransferSession's bridge (see the module docstring)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.services = session.services
        self.config = session.services.config
        codes = codes_of(self.config.features)
        self.matchers = {"caller": CodeMatcher(codes), "callee": CodeMatcher(codes)}
        self.bridge: Bridge | None = None
        self.recording: CallRecording | None = None
        self.adhoc: AdHoc | None = None
        self.answered_by = ""  # the extension (or number) that answered the transfer
        self._timer: asyncio.TimerHandle | None = None

    # ------------------------------------------------------------------ sides

    def staff(self, side: str) -> Extension | None:
        """The extension on ``side`` ("caller": a phone's user; "callee": who answered), if any."""
        if side == "caller":
            phone = getattr(self.session.caller, "phone", None)
            return phone.extension if phone is not None else None
        return self.config.extension(self.answered_by)

    def language(self) -> str:
        """The call's language (a call without a flow, click-to-call: the deployment's voice's)."""
        language = getattr(self.session.caller, "language", None)
        return str(language()) if callable(language) else call_language("", "", self.config.tts.voice)

    def other_party(self, side: str) -> str:
        """Who ``side`` talks to, as the recording's caller."""
        return self.answered_by if side == "caller" else self.session.caller.caller

    # ------------------------------------------------------------------ the bridge

    def attach(self, bridge: Bridge, answered_by: str) -> None:
        """A bridge started (or started again after a failed phone transfer)."""
        self.bridge, self.answered_by = bridge, answered_by
        bridge.keys_from = self.key
        bridge.on_stop = self.detach
        if self.recording is not None:
            bridge.tap(self.recording.sinks)
        elif self.session.action.record:
            self.record_for_flow()

    def record_for_flow(self) -> None:
        """``transfer to 201 record``: the phone's user's mailbox, else the answering extension's."""
        side = "caller" if self.staff("caller") is not None else "callee"
        owner = self.staff(side)
        mailbox = owner_mailbox(self.config, owner.number) if owner is not None else None
        if mailbox is None:
            self.session.caller.log(event="call_recording_no_mailbox", extension=owner.number if owner else "")
            return
        self.start_recording(mailbox, self.other_party(side))

    def start_recording(self, mailbox: str, other: str) -> None:
        self.recording = CallRecording(self.services, mailbox=mailbox, other=other, report=self.session.caller.log)
        if self.adhoc is not None:
            self.recording.follow(self.adhoc.room_mixer())
        elif self.bridge is not None:
            self.bridge.tap(self.recording.sinks)

    def stop_recording(self, reason: str) -> None:
        recording, self.recording = self.recording, None
        if recording is not None:
            if self.bridge is not None:
                self.bridge.tap(None)
            recording.stop(reason)

    # ------------------------------------------------------------------ keys

    def key(self, side: str, digit: str) -> bool:
        """A key from ``side`` before it is relayed: True when it is ours (a staff side's)."""
        if self.staff(side) is None or self.adhoc is not None:
            return False
        relay, code = self.matchers[side].key(digit, self.services.wall())
        self._after(side, relay, code)
        return True

    def _after(self, side: str, relay: str, code: Code | None) -> None:
        if relay and self.bridge is not None:
            self.bridge.relay_keys(side, relay)
        if code is not None:
            self.session.caller.log(event="feature_code", code=code.name, number=code.number, side=side,
                                    by=getattr(self.staff(side), "number", ""))
            self._carry_out(side, code)
        self._arm()

    def _arm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        due = [m.next_timer for m in self.matchers.values() if m.next_timer is not None]
        if due and self.bridge is not None:
            delay = max(0.0, min(due) - self.services.wall())
            self._timer = asyncio.get_running_loop().call_later(delay, self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        for side, matcher in self.matchers.items():
            relay, code = matcher.timer(self.services.wall())
            if relay or code:
                self._after(side, relay, code)
        self._arm()

    def _carry_out(self, side: str, code: Code) -> None:
        if code.name == "record":
            self._record_code(side)
        elif code.name == "add_party" and self.bridge is not None:
            self.adhoc = AdHoc(self, side, code.number)
            self.adhoc.start()

    def _record_code(self, side: str) -> None:
        staff = self.staff(side)
        assert staff is not None
        if not staff.may_record:
            self.session.caller.log(event="call_recording_refused", by=staff.number)
            self.say((side,), "incall.record_refused")
            return
        if self.recording is not None:
            self.stop_recording("code")
            self.say(("caller", "callee"), "incall.record_stopped")
            return
        mailbox = owner_mailbox(self.config, staff.number)
        if mailbox is None:
            self.session.caller.log(event="call_recording_no_mailbox", extension=staff.number)
            self.say((side,), "incall.record_no_mailbox")
            return
        self.start_recording(mailbox, self.other_party(side))
        self.say(("caller", "callee"), "incall.record_started")

    # ------------------------------------------------------------------ sentences

    def say(self, sides: Iterable[str], message: str) -> None:
        """Catalogue sentence ``message`` to ``sides`` of the bridge (or to the room)."""
        sides = tuple(sides)
        text = catalogue(self.language()).say(message)
        for side in sides:
            self.session.caller.log(event="incall_say", side=side, text=text)
        self._render(message, text, lambda clip: self._play(sides, clip))

    def _render(self, message: str, text: str, then: Any) -> None:
        """In the executor: the admin's recording of the sentence (``ivr prompts missing``), else TTS."""
        services = self.services
        language = self.language()

        def render() -> Clip:
            recorded = recorded_sentence(services.prompts, language, message)
            if recorded is not None:
                return recorded
            voice = choose_voice(language, "", services.config.tts, services.tts.voice_for)
            return services.tts.render(text, voice=voice)

        future = asyncio.get_running_loop().run_in_executor(services.executor, render)

        def rendered(done: asyncio.Future[Clip]) -> None:
            if done.cancelled() or done.exception() is not None:
                log.warning("in-call sentence %r could not be rendered", text)
                return
            then(done.result())

        future.add_done_callback(rendered)

    def _play(self, sides: tuple[str, ...], clip: Clip) -> None:
        if self.adhoc is not None:
            self.adhoc.sound(clip)
            return
        bridge = self.bridge
        if bridge is not None and bridge.active:
            for side in sides:
                bridge.announce(side, clip)

    # ------------------------------------------------------------------ the end

    def detach(self, bridge: Bridge | None) -> None:
        """The bridge stopped for good (the call ends, or a phone hands the caller on)."""
        if bridge is not None and bridge is not self.bridge:
            return
        self.stop_recording("bridge_ended")
        self.bridge = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def close(self) -> None:
        """The caller's call ends: the room, the third person's leg and the recording with it."""
        adhoc, self.adhoc = self.adhoc, None
        if adhoc is not None:
            adhoc.close()
        self.detach(None)


class _ThirdParty:
    """The call a third person is rung for, seen by a TransferSession: it dials as the extension
    that pressed the code would (its ``may_call_out`` for numbers outside), plays nothing to
    anybody while it rings, and bridges nobody: the room takes the answered leg."""

    media: CallMedia | None = None

    def __init__(self, runner: Any, extension: Extension, number: str) -> None:
        self.runner = runner
        self.incoming = runner.incoming
        self.call_id = runner.call_id
        self.caller = extension.number
        self.called = number
        self.services = runner.services
        self.phone = PhoneCaller(extension)

    @property
    def ended(self) -> bool:
        return bool(self.runner.ended)

    def log(self, **fields: Any) -> None:
        self.runner.log(**{"party": "third", **fields})

    def answer_now(self) -> None:
        return None  # the caller's call was answered long ago

    def language(self) -> str:
        return str(self.runner.language())


class AdHoc:
    """The conference a bridged call became when its staff side added a third person."""

    def __init__(self, incall: InCall, side: str, number: str) -> None:
        self.incall = incall
        self.session = incall.session
        self.services = incall.services
        self.by = incall.staff(side)
        self.number = number
        self.name = f"call-{self.session.caller.call_id}"
        self.members: dict[str, Participant] = {}
        self.third: Session | None = None
        self.over = False

    def room_mixer(self) -> Any:
        return self.services.conferences.rooms[self.name].mixer

    def start(self) -> None:
        """Both parties into the room, then ring the third (a session of the call's own kind)."""
        session, incall = self.session, self.incall
        bridge = session.bridge
        assert bridge is not None and self.by is not None
        caller_media, callee_media = bridge.caller, bridge.callee
        incall.bridge, session.bridge = None, None
        bridge.tap(None)
        bridge.stop()
        session.caller.log(event="conference_adhoc", room=self.name, by=self.by.number, adding=self.number)
        session.adhoc = self
        self._seat("caller", session.caller.caller, caller_media)
        self._seat("callee", incall.answered_by, callee_media)
        if incall.recording is not None:
            incall.recording.follow(self.room_mixer())
        action = ev.Transfer(plan=(((self.number,), RING_SECONDS),))
        third = type(session)(_ThirdParty(session.caller, self.by, self.number), action, self._third_news)
        self.third = third
        third.adhoc, third.adhoc_side = self, "third"
        third.start()

    def _seat(self, side: str, who: str, media: CallMedia) -> None:
        participant = self.services.conferences.join(self.name, who=who)
        assert participant is not None  # an ad-hoc room has no limit
        participant.talk(media, None)
        self.members[side] = participant

    def _third_news(self, event: ev.Event) -> None:
        third = self.third
        if self.over or third is None:
            return
        if isinstance(event, ev.TransferResult) and event.outcome == "answered" and third.bridged is not None:
            self._seat("third", event.target, third.bridged.media)
            self.session.caller.log(event="conference_added", room=self.name, target=event.target)
        elif isinstance(event, ev.TransferResult):
            self.session.caller.log(event="conference_add_failed", room=self.name, target=self.number,
                                    outcome=event.outcome)
            third.close()
            self.third = None
            self.incall.say(("caller", "callee"), "incall.add_failed")
            self._check()

    def gone(self, side: str, reason: str) -> None:
        """``side``'s leg ended (it hung up, or its media timed out)."""
        participant = self.members.pop(side, None)
        if participant is not None:
            participant.leave()
            self.session.caller.log(event="conference_left", room=self.name, side=side, reason=reason)
        if side == "third":
            third, self.third = self.third, None
            if third is not None:
                third.close()
        self._check()

    def _check(self) -> None:
        """Fewer than two left and nobody ringing: the room ends; the caller's flow goes on."""
        ringing = self.third is not None and "third" not in self.members
        if self.over or len(self.members) >= 2 or ringing:
            return
        self.close()
        self.session.conference_over()

    def sound(self, clip: Clip) -> None:
        room = self.services.conferences.rooms.get(self.name)
        if room is not None and not self.over:
            room.mixer.sound(clip.pcm)

    def close(self) -> None:
        """Everybody out of the room; the third person's leg hung up (the others are the session's)."""
        if self.over:
            return
        self.over = True
        for participant in self.members.values():
            participant.leave()
        self.members.clear()
        third, self.third = self.third, None
        if third is not None:
            third.close()
        self.incall.stop_recording("conference_over")
