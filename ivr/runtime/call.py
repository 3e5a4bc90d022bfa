"""The per-call runner: one call's SIP dialog, media session and flow machine, joined.

:class:`CallRunner` is the only place where the three sans-IO worlds of a call
meet asyncio:

* the user agent's call events (``IncomingCall``, ``CallConfirmed``,
  ``ReOffer``, ``DtmfInfo``, ``CallEnded``, ``CallCancelled``) arrive through
  :meth:`CallRunner.on_sip_event`;
* the :class:`~ivr.media.session.MediaSession` reports finished prompts,
  keys (RFC 4733 or in-band), caller audio and media timeouts by callback;
* the flow :class:`~ivr.dsl.machine.Machine` (and, during a long action, a
  sub-machine: voicemail, mailbox access, directory) gets ``Event`` objects and
  returns ``Action`` objects, which the runner carries out.

Events are queued and handled one at a time (``_post``/``_drain``), so an
action that produces an event at once (a transfer to nobody) never re-enters
the machine.  The machine's control timers use one ``loop.call_at`` per call;
audio is paced by the shared media clock, never here.

Its helpers live beside it: the SDP offer/answer state (ivr.runtime.negotiation),
the prompt queue (ivr.runtime.prompting: TTS and decoding in the executor, prompts in
the flow's order), speech input (ivr.runtime.listening) and recordings
(ivr.runtime.recordings).  Barge-in has one owner: the flow machine (or a dialogue)
decides, and the runner stops prompts only on its ``StopPrompts``; every prompt that
ends, played out or stopped, comes back as ``PromptDone`` to whoever started it.

The outside world reaches the runner only through its services: the user agent
(``services.ua``), the media sessions (``services.open_media``), the clock
(``services.wall``) and the engines; ``ivr serve`` fills them with the real thing and
the simulator (ivr.runtime.simulate) with its own, so both run this code.

A long action that cannot start (no such mailbox, an
unreadable directory, a recording the disk refuses) still ends with its
failure event, so the flow moves on and no caller waits in silence.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ivr.dsl import events as ev
from ivr.dsl.machine import Machine
from ivr.media.clip import Clip
from ivr.media.ports import PortRangeExhausted
from ivr.runtime import features, phones
from ivr.runtime.calllog import describe
from ivr.runtime.languages import call_language, choose_voice, has_recognizer, recorded_sentence
from ivr.runtime.listening import SpeechListener
from ivr.runtime.negotiation import OfferAnswer
from ivr.runtime.ports import CallMedia
from ivr.runtime.prompting import PendingPrompt, PromptQueue
from ivr.runtime.recordings import Recording
from ivr.runtime.services import Services
from ivr.sip import sdp
from ivr.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    ReOffer,
    ReOfferAnswer,
)

if TYPE_CHECKING:
    from ivr.media.holdmusic import MusicPlayer
    from ivr.runtime.rooms import Participant
    from ivr.runtime.transfer import TransferSession

log = logging.getLogger("ivr.runtime.call")

# Seconds a refused caller (or its proxy) is asked to wait before trying again (RFC 3261
# section 21.5.4): calls end all the time, so a slot or a port is likely free again soon.
BUSY_RETRY_AFTER = 5

MACHINE = "machine"


class CallRunner:
    """Runs one incoming call from INVITE to the end (see the module docstring)."""

    def __init__(
        self,
        services: Services,
        call: IncomingCall,
        on_finished: Callable[[CallRunner], None],
        variables: Mapping[str, str] | None = None,
    ) -> None:
        self.services = services
        self.variables = dict(variables or {})  # the flow's variables set before the call starts
        self.call_id: str = call.call_id
        self.incoming = call
        self.caller: str = call.caller
        self.called: str = call.called
        self.on_finished = on_finished
        self.media: CallMedia | None = None
        self.machine: Machine | None = None
        self.sub: ev.SubMachine | None = None  # the active dialogue (voicemail, mailbox access, directory)
        self.sdp = OfferAnswer(services.contact_host)
        self.prompts = PromptQueue(self)
        self._listener: SpeechListener | None = None
        self._recording: Recording | None = None
        self.hold: MusicPlayer | None = None  # the shared hold-music player being heard
        self.hold_timer: asyncio.TimerHandle | None = None
        self.timer: asyncio.TimerHandle | None = None
        self.timer_at: float | None = None
        self.answered = False
        self.ended = False
        self._ending = False  # hangup/_finish in progress: nothing may start another ending
        self.state = "incoming"
        self._owners: dict[int, tuple[object, int]] = {}
        self._next_media_id = 1
        self._inbox: deque[tuple[object, ev.Event]] = deque()
        self._draining_inbox = False
        self._answer_timer: asyncio.TimerHandle | None = None
        self._recording_seq = 0
        self._key_via = "rtp"  # RFC 4733 or in-band, unless an INFO is being handed over
        self.transfer: TransferSession | None = None  # carrying out a Transfer action
        self.conference: Participant | None = None  # a seat in a conference room
        # A call from one of the deployment's phones (ivr.runtime.phones): its user, the dial
        # plan it runs instead of the inbound flow, and the last transfer outcome (why it ended).
        self.phone: phones.PhoneCaller | None = None
        self.program = services.program
        self.entry: str | None = None
        self.flow_called = ""  # {called} in a built-in flow (a feature's mailbox), else the number called
        self.last_outcome = ""

    # ------------------------------------------------------------------ logging

    def log(self, **fields: Any) -> None:
        # Journal first: a test or supervisor that sees the log line finds the row written.
        self.services.journal.record(self.call_id, self.caller, self.called, fields)
        self.services.calllog.call(
            self.call_id, caller=self.caller, called=self.called, state=self.state, **fields
        )

    # ------------------------------------------------------------------ set-up

    async def start(self) -> None:
        """Negotiate, open media, ring or answer. Never raises: failures reject the call."""
        self.log(
            event="incoming",
            source=f"{self.incoming.source[0]}:{self.incoming.source[1]}",
            transport=getattr(self.incoming, "transport", "") or _transport_of(self.incoming.request),
        )
        try:
            await self._setup()
        except PortRangeExhausted as exc:  # other programs hold the free ports: busy, not broken
            self._reject(503, f"no RTP port: {exc}", headers=[("Retry-After", str(BUSY_RETRY_AFTER))])
        except Exception:
            log.exception("call %s: set-up failed", self.call_id)
            self._reject(500, "set-up failed")

    async def _setup(self) -> None:
        if not self._identify():
            return
        self.services.calls[self.call_id] = self  # a Replaces may name it (ivr.runtime.attended)
        if await self._replaces() or await self._feature():
            return
        program = self.program
        try:
            entry = self.entry or program.entry_for(self.called)
        except LookupError:
            self._reject(404, f"no entry point for {self.called!r}")
            return
        offer = self._parse_offer(self.incoming.offer)
        if offer is False:
            return
        assert offer is None or isinstance(offer, sdp.SessionDescription)
        cfg = self.services.config.server
        self.media = await self.services.open_media()
        if self.ended:  # cancelled while the port was being opened
            self.media.close()
            return
        self._wire_media(self.media)
        if offer is not None and not self._negotiate(offer):
            return
        if offer is None:
            self._our_offer()
        self.state = str(entry)
        if self.phone is not None:  # rings until the flow needs the phone's audio (_answer_phone)
            self.services.ua.ringing(self.call_id, self.services.sip_now())
            self.services.flush()
            self._start_machine()
        elif cfg.answer_delay > 0:
            self.services.ua.ringing(self.call_id, self.services.sip_now())
            self.services.flush()
            self.log(action="ringing", delay=cfg.answer_delay)
            self._answer_timer = asyncio.get_running_loop().call_later(cfg.answer_delay, self._answer)
        else:
            self._answer()

    def _identify(self) -> bool:
        """A phone's call proves its user and runs the dial plan (ivr.runtime.phones); False: refused."""
        services = self.services
        identity = phones.identify(services.config, services.registrar(), self.incoming, services.wall())
        if isinstance(identity, phones.Refusal):
            self._reject(identity.status, identity.reason, headers=identity.headers)
            return False
        if identity is not None:
            self.phone = identity
            self.program, self.entry = phones.dial_plan(services.program)
            services.lines.set(identity.extension.number, self.call_id, "early")
            self.log(event="phone_caller", extension=identity.extension.number)
        return True

    async def _feature(self) -> bool:
        """A feature code dialled (ivr.runtime.features): pickup is carried out here (True), the
        own mailbox runs the features flow; a code that cannot be carried out is refused (True)."""
        config = self.services.config
        feature = features.feature_for(config, self.phone.extension, self.called) if self.phone else None
        if isinstance(feature, features.Unknown):
            self._reject(feature.status, feature.reason)
            return True
        pickup = config.transfers.pickup_code
        if isinstance(feature, features.Pickup) or (pickup and self.called == pickup):
            from ivr.runtime.transfer import pick_up  # a phone picks up a call ringing elsewhere

            extension = self.phone.extension.number if self.phone is not None else None
            directed = feature if isinstance(feature, features.Pickup) else features.Pickup()
            await pick_up(self, extension=extension, target=directed.target, leg=directed.leg)
            return True
        if isinstance(feature, (features.NightSwitch, features.FollowMe)):
            await self._feature_code(feature)
            return True
        if isinstance(feature, features.OwnMailbox):
            self.program, self.entry, self.flow_called = features.feature_program(), "voicemail", feature.mailbox
        return False

    async def _feature_code(self, feature: features.NightSwitch | features.FollowMe) -> None:
        """Answer at once and run the night-switch or follow-me dialogue (ivr.runtime.featurecodes),
        with no flow: the call ends with it."""
        from ivr.runtime.featurecodes import FeatureCode
        from ivr.runtime.forwarding import pause_follow_me
        from ivr.runtime.switches import switch_positions

        offer = self._parse_offer(self.incoming.offer)
        if offer is False:
            return
        self.media = await self.services.open_media()
        if self.ended:  # cancelled while the port was being opened
            self.media.close()
            return
        self._wire_media(self.media)
        if isinstance(offer, sdp.SessionDescription) and not self._negotiate(offer):
            return
        if offer is None:
            self._our_offer()
        self.state = "feature"
        services, extension = self.services, self.phone.extension if self.phone else None
        assert extension is not None
        services.ua.answer(self.call_id, self.sdp.local_sdp, services.sip_now())
        services.flush()
        self.answered = True
        self.log(action="answer", codec=self.sdp.answer.codec.name if self.sdp.answer else "late-offer",
                 feature=type(feature).__name__)

        def set_switch(name: str, on: bool) -> object:
            return switch_positions(services.data, services.storage)[1](name, on)

        def set_follow_me(on: bool) -> tuple[str, ...]:
            return pause_follow_me(services.data, extension.number, not on, tuple(extension.follow_me))

        self._start_sub(FeatureCode(feature, caller=extension.number, set_switch=set_switch,
                                    set_follow_me=set_follow_me, language=self.language()))

    async def _replaces(self) -> bool:
        """An INVITE with Replaces (RFC 3891) takes over a leg of another call (ivr.runtime.attended),
        or is refused: True.  False: an INVITE without Replaces."""
        from ivr.runtime import attended
        from ivr.runtime.transfer import replace_leg

        named = attended.replacing(self)
        if named is None:
            return False
        refusal, session, leg = attended.take_over_refusal(self, named) if not isinstance(named, tuple) else (
            named, None, None)
        self.log(event="replaces", refused=refusal[0] if refusal else 0, leg=getattr(leg, "call_id", ""))
        if refusal is not None:
            self._reject(*refusal)
            return True
        assert not isinstance(named, tuple)
        await replace_leg(self, session, leg, named.confirmed)
        return True

    def answer_now(self) -> None:
        """Answer a phone's call that is still ringing (a transfer answered, or a prompt is due)."""
        if self.answered or self.ended or self._ending:
            return
        self.services.ua.answer(self.call_id, self.sdp.local_sdp, self.services.sip_now())
        self.services.flush()
        self.answered = True
        self.log(action="answer", codec=self.sdp.answer.codec.name if self.sdp.answer else "late-offer")
        if self.phone is not None:
            self.services.lines.set(self.phone.extension.number, self.call_id, "confirmed")

    def _parse_offer(self, body: bytes | None) -> sdp.SessionDescription | None | bool:
        if not body:
            return None  # late offer: we offer in the 200, the answer comes with the ACK
        try:
            return sdp.SessionDescription.parse(body)
        except sdp.SdpError as exc:
            self._reject(exc.status, f"bad SDP: {exc}")
            return False

    def _negotiate(self, offer: sdp.SessionDescription) -> bool:
        assert self.media is not None
        try:
            answer = self.sdp.answer_offer(offer, self.media.local_port)
        except sdp.NegotiationError as exc:
            self._reject(exc.status, exc.reason)
            return False
        self._configure_media(answer)
        return True

    def _our_offer(self) -> bytes:
        assert self.media is not None
        return self.sdp.offer(self.media.local_port)

    def _configure_media(self, answer: sdp.Answer) -> None:
        assert self.media is not None
        self.media.configure(
            remote=answer.remote_addr,
            payload_type=answer.codec.payload_type,
            dtmf_pt=answer.dtmf_pt,
            direction=answer.local_direction,
            ptime=answer.ptime,
            signalling_host=self.incoming.source[0],
        )
        self.media.enable_inband_dtmf(answer.dtmf_pt is None)
        self.log(
            event="media",
            codec=answer.codec.name,
            payload_type=answer.codec.payload_type,
            dtmf_pt=answer.dtmf_pt,
            remote=f"{answer.remote_addr[0]}:{answer.remote_addr[1]}",
            direction=answer.local_direction,
        )

    # The caller's audio is decoded only while something consumes it (a recording or a speech
    # listener): the media session skips the G.711 decode of every frame when on_audio is None.
    @property
    def listener(self) -> SpeechListener | None:
        return self._listener

    @listener.setter
    def listener(self, value: SpeechListener | None) -> None:
        self._listener = value
        self._tap_audio()

    @property
    def recording(self) -> Recording | None:
        return self._recording

    @recording.setter
    def recording(self, value: Recording | None) -> None:
        self._recording = value
        self._tap_audio()

    def _tap_audio(self) -> None:
        media = self.media
        if media is None or media.on_audio not in (None, self._audio):
            return  # a bridge relays the caller's audio now: not ours to change
        wanted = self._listener is not None or self._recording is not None
        media.on_audio = self._audio if wanted else None

    def _wire_media(self, media: CallMedia) -> None:
        media.on_prompt_done = self.prompt_finished
        media.on_dtmf = lambda digit: self._key(digit, self._key_via)
        media.on_audio = None  # until a recording or a listener starts (see _tap_audio)
        media.on_timeout = self._media_timeout

    def _answer(self) -> None:
        self._answer_timer = None
        if self.ended:
            return
        self.services.ua.answer(self.call_id, self.sdp.local_sdp, self.services.sip_now())
        self.services.flush()
        self.answered = True
        answer = self.sdp.answer
        self.log(action="answer", codec=answer.codec.name if answer else "late-offer")
        self._start_machine()

    def _start_machine(self, called: str = "") -> None:
        self.machine = Machine(
            self.program,
            caller=self.caller,
            called=called or self.flow_called or self.called,
            switches=self.services.switches(),
            variables=self.variables,
            entry=self.entry,
        )
        try:
            actions = self.machine.start(self.services.wall())
        except Exception:
            log.exception("call %s: flow failed to start", self.call_id)
            self.hangup("flow_error")
            return
        self._execute(actions, MACHINE)
        self._drain()

    def _reject(self, status: int, reason: str, headers: Sequence[tuple[str, str]] = ()) -> None:
        self.log(action="reject", status=status, reason=reason)
        self.services.ua.reject(self.call_id, status, self.services.sip_now(), headers=headers)
        self.services.flush()
        self._finish("rejected")

    # ------------------------------------------------------------------ SIP events

    def on_sip_event(self, event: object) -> None:
        if self.ended or (self._ending and isinstance(event, CallEnded)):
            return  # our own hangup's CallEnded("local"), or news about a call already over
        if isinstance(event, CallConfirmed):
            self._confirmed(event)
        elif isinstance(event, ReOffer):
            self._reoffer(event)
        elif isinstance(event, ReOfferAnswer):
            if event.answer and self.media is not None:  # answer to our offer in an offer-less re-INVITE
                self._apply_answer(event.answer)
        elif isinstance(event, DtmfInfo):
            self._dtmf_info(event)
        elif isinstance(event, CallCancelled):
            self.log(event="cancel")
            self._caller_gone("cancelled")
        elif isinstance(event, CallEnded):
            self.log(event="bye" if event.reason == "bye" else "ended", reason=event.reason)
            self._caller_gone(event.reason)

    def _confirmed(self, event: CallConfirmed) -> None:
        self.log(event="ack")
        if event.answer and self.media is not None:  # late offer: their answer to our offer
            self._apply_answer(event.answer)

    def _apply_answer(self, body: bytes) -> None:
        try:
            answer = self.sdp.take_answer(body)
        except (sdp.SdpError, sdp.NegotiationError) as exc:
            self.log(event="bad_answer", error=str(exc))
            self.hangup("bad_answer")
            return
        self._configure_media(answer)

    def _reoffer(self, event: ReOffer) -> None:
        ua, now = self.services.ua, self.services.sip_now()
        if event.offer is None:  # a refresh; after a re-INVITE the answer comes with the ACK
            ua.accept_reoffer(self.call_id, self.sdp.refresh_body(event.method), now)
            self.log(event="refresh", method=event.method)
            self.services.flush()
            return
        try:
            assert self.media is not None
            answer = self.sdp.reanswer(sdp.SessionDescription.parse(event.offer), self.media.local_port)
        except (sdp.SdpError, sdp.NegotiationError) as exc:
            status = getattr(exc, "status", 488)
            self.log(event="reoffer_rejected", method=event.method, status=status, error=str(exc))
            ua.reject_reoffer(self.call_id, status if status >= 400 else 488, now)
            self.services.flush()
            return
        ua.accept_reoffer(self.call_id, self.sdp.local_sdp, now)
        self.services.flush()
        self.log(event="reoffer", method=event.method, hold=answer.on_hold)
        self._configure_media(answer)

    def _caller_gone(self, reason: str) -> None:
        """BYE, CANCEL, session expiry or media timeout: the flow hears Hangup, then the call is over."""
        self._ending = True
        if self.recording is not None:
            self.recording.stop("hangup")
        if self.machine is not None and not self.machine.finished:
            self.post(ev.Hangup())
        self._finish(reason)

    def _media_timeout(self) -> None:
        if self.ended:
            return
        self.log(event="media_timeout")
        self._ending = True  # the agent's CallEnded("local") for this BYE is ours, not news
        self.services.ua.hangup(self.call_id, self.services.sip_now())
        self.services.flush()
        self._caller_gone("media_timeout")

    # ------------------------------------------------------------------ media events

    def prompt_finished(self, media_id: int) -> None:
        """A prompt ended (played out or stopped): its owner (flow or sub-machine) hears PromptDone."""
        owner = self._owners.pop(media_id, None)
        if owner is None or self.ended:
            return  # the runner's own sound (hold music, the recording beep), or the call is over
        self._post_to(owner[0], ev.PromptDone(owner[1]))

    def _dtmf_info(self, event: DtmfInfo) -> None:
        """SIP INFO keys go through the media session, which drops a press also seen in RTP."""
        if self.media is None:
            return
        self._key_via = "info"
        try:
            self.media.receive_info_key(event.digit)
        finally:
            self._key_via = "rtp"

    def _key(self, digit: str, via: str) -> None:
        if self.ended or (self.machine is None and self.sub is None):
            return
        rec = self.recording
        if rec is not None and digit == rec.action.end_key:
            rec.stop("key")
            return
        self.log(event="key", digit=digit, via=via)
        self.post(ev.Key(digit))

    def _audio(self, pcm: np.ndarray) -> None:
        if self.recording is not None:
            self.recording.feed(pcm)
        if self.listener is not None:
            self.listener.feed(pcm)

    # ------------------------------------------------------------------ the event queue

    def post(self, event: ev.Event) -> None:
        """Hand an event to whoever is in charge of the call now (sub-machine or flow)."""
        self._post_to(None, event)

    def _post_to(self, owner: object, event: ev.Event) -> None:
        self._inbox.append((owner, event))
        self._drain()

    def _drain(self) -> None:
        if self._draining_inbox:
            return
        self._draining_inbox = True
        try:
            while self._inbox:
                owner, event = self._inbox.popleft()
                self._dispatch(owner, event)
        finally:
            self._draining_inbox = False
        self._arm_timer()
        if self.machine is not None and self.machine.finished and not (self.ended or self._ending):
            self._flow_finished()

    def _dispatch(self, owner: object, event: ev.Event) -> None:
        machine = self.machine
        if (machine is None and self.sub is None) or (machine is not None and machine.finished):
            return  # (a feature code's dialogue runs with no flow: ivr.runtime.featurecodes)
        now = self.services.wall()
        sub = self.sub
        if sub is not None and owner in (None, sub):
            self.log(event=event.kind, to="sub", **describe(event))
            actions = self._safely(lambda: sub.handle(event, now))
            self._execute(actions, sub)
            if sub.finished:
                self.sub = None
                self.log(event="sub_finished", result=repr(sub.result))
                if sub.result is not None and not isinstance(event, ev.Hangup):
                    # (a dialogue's answer to a hang-up means nothing to the flow: the call is over)
                    self._inbox.appendleft((MACHINE, sub.result))
            if isinstance(event, ev.Hangup):
                self._inbox.append((MACHINE, event))
            return
        if owner not in (None, MACHINE) or machine is None:
            return  # a prompt of a sub-machine that has finished
        self.log(event=event.kind, to="flow", **describe(event))
        self._execute(self._safely(lambda: machine.handle(event, now)), MACHINE)

    def _safely(self, step: Callable[[], list[ev.Action]]) -> list[ev.Action]:
        try:
            return step()
        except Exception as exc:  # MachineError or a bug: the caller must not hang in silence
            log.exception("call %s: flow error", self.call_id)
            self.log(event="flow_error", error=str(exc))
            return [ev.HangupCall(reason="flow_error")]

    # ------------------------------------------------------------------ timers

    def _arm_timer(self) -> None:
        due = [t for t in (self._machine_timer(), self.sub.next_timer if self.sub else None) if t is not None]
        at = min(due) if due else None
        if at == self.timer_at:
            return
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = None, at
        if at is not None and not self.ended:
            loop = asyncio.get_running_loop()
            self.timer = loop.call_at(loop.time() + max(0.0, at - self.services.wall()), self._on_timer)

    def _machine_timer(self) -> float | None:
        m = self.machine
        return m.next_timer if m is not None and not m.finished else None

    def _on_timer(self) -> None:
        self.timer, self.timer_at = None, None
        now = self.services.wall()
        if self.sub is not None and self.sub.next_timer is not None and self.sub.next_timer <= now:
            self._inbox.append((self.sub, ev.TimerFired()))
        mt = self._machine_timer()
        if mt is not None and mt <= now:
            self._inbox.append((MACHINE, ev.TimerFired()))
        self._drain()

    # ------------------------------------------------------------------ actions

    def _execute(self, actions: list[ev.Action], owner: object) -> None:
        for action in actions:
            if self.ended:
                return
            self.log(action=action.kind, **describe(action))
            if not self.answered and self.phone is not None and phones.needs_answer(action.kind):
                self.answer_now()
            handler = HANDLERS.get(type(action))
            if handler is None:
                self.log(event="unsupported_action", action_kind=action.kind)
                continue
            try:
                handler(self, action, owner)
            except Exception as exc:
                log.exception("call %s: action %s failed", self.call_id, action.kind)
                self.log(event="action_error", error=str(exc))
                self._action_failed(action, owner)

    def _action_failed(self, action: ev.Action, owner: object) -> None:
        """A long action that could not start still ends, so the flow never waits for nothing."""
        if isinstance(action, ev.StartRecording):  # e.g. the disk is full: nothing was recorded
            self._post_to(owner, ev.RecordingDone(path=action.path, duration=0.0, reason="stopped"))
            return
        fallback: ev.Event | None = {
            ev.Voicemail: ev.ActionDone("voicemail", "failed"),
            ev.VoicemailAccess: ev.ActionDone("voicemail_access", "failed"),
            ev.Record: ev.ActionDone("record", ""),
            ev.Directory: ev.DirectoryResult("not_found"),
            ev.Transfer: ev.TransferResult("failed"),
            ev.Conference: ev.ActionDone("conference", "failed"),
        }.get(type(action))
        if isinstance(action, ev.Hold) and action.duration > 0:
            fallback = ev.ActionDone("hold")
        if fallback is not None and owner is MACHINE:
            self._post_to(MACHINE, fallback)

    def _media_id(self, owner: object, prompt_id: int) -> int:
        """The media session's id of a prompt; only the flow's and a dialogue's (``prompt_id`` > 0)
        have an owner to tell when they end."""
        media_id = self._next_media_id
        self._next_media_id += 1
        if prompt_id > 0:
            self._owners[media_id] = (owner, prompt_id)
        return media_id

    def _do_EnterStep(self, action: ev.EnterStep, owner: object) -> None:
        if owner is MACHINE:
            self.state = action.step

    def _flow_voice(self) -> str:
        if self.machine is not None:
            return self.machine.voice
        return str(getattr(self.services.program.settings, "voice", "") or "")

    def language(self) -> str:
        """The call's language now: what ivr's own sentences are said in (ivr.runtime.languages)."""
        flow_language = self.machine.language if self.machine is not None else ""
        return call_language(flow_language, self._flow_voice(), self.services.config.tts.voice)

    def _do_Say(self, action: ev.Say, owner: object) -> None:
        settings = getattr(self.services.program, "settings", None)
        rate = getattr(settings, "rate", None) or None
        flow_voice = action.voice or self._flow_voice()
        language = call_language(action.language, flow_voice, self.services.config.tts.voice)
        services = self.services

        def render() -> Clip:  # in the executor: a recording of ivr's own sentence, else TTS
            recorded = recorded_sentence(services.prompts, language, action.message) if action.message else None
            if recorded is not None:
                return recorded
            tts = services.tts
            voice = choose_voice(language, flow_voice, services.config.tts, tts.voice_for)
            return tts.render(action.text, voice=voice, rate=rate)

        def ready() -> Clip | None:  # on the loop, no I/O: a flow's text TTS has in memory already
            if action.message:  # ivr's own sentence: a recording may replace it (a file to look at)
                return None
            tts = services.tts
            voice = choose_voice(language, flow_voice, services.config.tts, tts.voice_for)
            return tts.cached(action.text, voice=voice, rate=rate)

        self.prompts.add(
            PendingPrompt(
                self._media_id(owner, action.prompt_id), action.barge_in, render, f"say {action.text[:40]!r}", ready
            )
        )

    def _do_Play(self, action: ev.Play, owner: object) -> None:
        store = self.services.prompts
        self.prompts.add(
            PendingPrompt(
                self._media_id(owner, action.prompt_id), action.barge_in, lambda: store.load(action.path), f"play {action.path}"
            )
        )

    def _do_Tone(self, action: ev.Tone, owner: object) -> None:
        clip = Clip.tone(action.frequency, action.duration)
        self.prompts.add(PendingPrompt(self._media_id(owner, action.prompt_id), False, lambda: clip, "tone"))

    def _do_StopPrompts(self, action: ev.StopPrompts, owner: object) -> None:
        self.prompts.stop()
        if self.media is not None:
            self.media.stop_prompts()

    def _do_Listen(self, action: ev.Listen, owner: object) -> None:
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if not (action.phrases or action.any_speech):
            return
        language = self.language()
        if not has_recognizer(self.services.config.speech, language):
            self.log(event="speech_unavailable", language=language)  # keys only ([speech.models])
            return
        self.listener = SpeechListener(self, self._grammar(action), language)

    def _grammar(self, action: ev.Listen) -> tuple[str, ...]:
        """The phrases to listen for: the action's, and the names of the directory a menu's
        `speech` option leads to (none if it cannot be read: the directory reports that itself)."""
        if not action.directory:
            return action.phrases
        try:
            names = self.services.directory_phrases(action.directory)
        except Exception as exc:  # noqa: BLE001 -- the menu still listens for its own phrases
            self.log(event="directory_error", directory=action.directory, error=str(exc))
            names = ()
        return tuple(dict.fromkeys(action.phrases + names))

    def _do_StartRecording(self, action: ev.StartRecording, owner: object) -> None:
        if self.recording is not None:
            self.recording.stop("stopped")
        self.recording = Recording(self, action, owner, lambda done: self._recording_done(owner, done))

    def _do_StopRecording(self, action: ev.StopRecording, owner: object) -> None:
        if self.recording is not None:
            self.recording.stop("stopped")

    def _recording_done(self, owner: object, done: ev.RecordingDone) -> None:
        self.recording = None
        self.log(event="recording_done", path=done.path, duration=round(done.duration, 2), reason=done.reason)
        if isinstance(owner, _RecordAction):
            self._post_to(MACHINE, ev.ActionDone("record", done.path if done.duration > 0 else ""))
        elif not self.ended:
            self._post_to(owner, done)

    def _do_Record(self, action: ev.Record, owner: object) -> None:
        """``record into VAR``: beep, record into the data folder, then ``ActionDone("record", path)``."""
        if action.beep:
            self._do_Tone(ev.Tone(frequency=1000.0, duration=0.25, prompt_id=-1), _RecordAction())
        self._recording_seq += 1
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(self.services.wall()))
        path = f"recordings/{stamp}-{_safe(self.call_id)}-{self._recording_seq}.wav"
        start = ev.StartRecording(
            path=path, max_length=action.max_length, end_key=action.end_key, silence=action.silence
        )
        self._do_StartRecording(start, _RecordAction())

    def _do_Hold(self, action: ev.Hold, owner: object) -> None:
        self._release_hold()
        settings = getattr(self.services.program, "settings", None)
        source = action.music or getattr(settings, "hold_music", "") or ""
        if not source:
            self.log(event="hold_without_music")
        else:
            self.hold = self.services.hold_music.player(source)
            if self.media is not None:
                self.media.play(self.hold, prompt_id=self._media_id(None, -1), barge_in=True)
        if action.duration > 0:
            self.hold_timer = asyncio.get_running_loop().call_later(action.duration, self._hold_over)

    def _hold_over(self) -> None:
        self.hold_timer = None
        self._release_hold()
        self._post_to(MACHINE, ev.ActionDone("hold"))

    def _release_hold(self) -> None:
        if self.hold_timer is not None:
            self.hold_timer.cancel()
            self.hold_timer = None
        if self.hold is not None:
            if self.media is not None:
                self.media.stop_prompts(only_barge_in=False)
            self.services.hold_music.release(self.hold)
            self.hold = None

    def _do_Transfer(self, action: ev.Transfer, owner: object) -> None:
        """Ring the plan's targets and bridge the answer (ivr.runtime.transfer); results come as events."""
        from ivr.runtime.transfer import TransferSession

        if self.transfer is not None:
            self.transfer.close()
        self.transfer = TransferSession(self, action, self._transfer_news)
        self.transfer.start()

    def _transfer_news(self, event: ev.Event) -> None:
        """A transfer's result for the flow, unless the extension it rang forwards to voicemail."""
        if isinstance(event, ev.TransferResult):
            self.last_outcome = event.outcome
            single = self.transfer is not None and phones.single_target(self.transfer.action)
            forward = phones.voicemail_forward(self.services.config, event.target, event.outcome) if single else None
            if forward is not None:
                self._forward_to_voicemail(*forward)
                return
        self._post_to(MACHINE, event)

    def continue_in(self, program: Any, entry: str, called: str) -> None:
        """Stop what the call is doing (step, prompts, listening, recording, hold, transfer, room)
        and go on in ``program`` at ``entry`` with ``called`` as ``{called}`` (a console transfer)."""
        if self.timer is not None:
            self.timer.cancel()
        self.timer, self.timer_at = None, None
        self._inbox.clear()
        self._owners.clear()  # the old machine's prompts end unheard: their PromptDone is nobody's
        self.prompts.cancel()
        if self.media is not None:
            self.media.stop_prompts(only_barge_in=False)
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.recording is not None:
            self.recording.stop("transfer")
        self._release_hold()
        if self.transfer is not None:
            self.transfer.close()
            self.transfer = None
        self._leave_conference()
        self.sub = None
        self.program, self.entry = program, entry
        self._start_machine(called=called)

    def _forward_to_voicemail(self, mailbox: str, greeting: str) -> None:
        """The call continues in the voicemail of the extension it rang (its own forwarding)."""
        self.log(event="forward_voicemail", mailbox=mailbox, greeting=greeting)
        self.program, self.entry = phones.voicemail_plan(greeting)
        self._start_machine(called=mailbox)

    def _do_Directory(self, action: ev.Directory, owner: object) -> None:
        from ivr.directory import DirectoryDialogue

        try:
            book = self.services.directory(action.name)
        except Exception as exc:  # unreadable since start-up: the flow's "not found" branch, not silence
            self.log(event="directory_error", directory=action.name, error=str(exc))
            self._post_to(MACHINE, ev.DirectoryResult("not_found"))
            return
        self._start_sub(
            DirectoryDialogue(
                book,
                # no recogniser for the call's language: the keypad, unless the flow allows only speech
                by_speech=action.by_speech and (self._hears_speech() or not action.by_keys),
                by_keys=action.by_keys,
                match=action.match,
                confirm=action.confirm,
                language=self.language(),
                keypad_key=action.keypad_key,
                heard=action.heard,
            )
        )

    def _hears_speech(self) -> bool:
        return has_recognizer(self.services.config.speech, self.language())

    def _do_Voicemail(self, action: ev.Voicemail, owner: object) -> None:
        from ivr.voicemail.leave import LeaveMessage

        mailbox = self.services.config.mailbox(action.mailbox)
        if mailbox is None:
            self.log(event="voicemail_unknown_mailbox", mailbox=action.mailbox)
            self._post_to(MACHINE, ev.ActionDone("voicemail", "failed"))
            return
        self._start_sub(
            LeaveMessage(
                mailbox=mailbox,
                store=self.services.voicemail_store,
                caller=self.caller,
                greeting=action.greeting,
                temporary_first=action.temporary,
                review=action.review,
                data_dir=self.services.data,
                on_saved=self.services.voicemail.message_saved,
                language=self.language(),
            )
        )

    def _do_VoicemailAccess(self, action: ev.VoicemailAccess, owner: object) -> None:
        from ivr.voicemail.access import MailboxAccess

        self._start_sub(
            MailboxAccess(
                mailboxes=self.services.config.mailboxes,
                store=self.services.voicemail_store,
                mailbox=action.mailbox or None,
                caller=self.caller,
                timezone=self.services.timezone,
                language=self.language(),
            )
        )

    def _do_StorageWork(self, action: ev.StorageWork, owner: object) -> None:
        """A dialogue's storage calls run in the storage workers, never on the event loop: a database that
        stops answering holds this caller's dialogue, not every call of the node."""
        try:
            future = asyncio.get_running_loop().run_in_executor(self.services.storage_executor, action.work)
        except RuntimeError as exc:  # the workers are shut down: the server is stopping
            self._storage_done(owner, action, exc)
            return
        future.add_done_callback(lambda done: self._storage_done(owner, action, _outcome(done)))

    def _storage_done(self, owner: object, action: ev.StorageWork, outcome: object) -> None:
        """Hand the answer to the dialogue that asked, unless it is over (the work itself kept what mattered)."""
        error = f"{type(outcome).__name__}: {outcome}" if isinstance(outcome, BaseException) else ""
        if error:
            log.warning("call %s: storage work %s failed: %s", self.call_id, action.what, error)
        if self.ended or owner is not self.sub:
            return
        if error:
            self.log(event="storage_error", what=action.what, error=error)
        self._post_to(owner, ev.StorageDone(action.what, None if error else outcome, error))

    def _start_sub(self, sub: ev.SubMachine) -> None:
        self.sub = sub
        self.log(event="sub_started", sub=type(sub).__name__)
        actions = self._safely(lambda: sub.start(self.services.wall()))
        self._execute(actions, sub)
        if sub.finished and self.sub is sub:
            self.sub = None
            if sub.result is not None:
                self._post_to(MACHINE, sub.result)

    def _do_Conference(self, action: ev.Conference, owner: object) -> None:
        """The conference dialogue (ivr.runtime.conference) in the process's rooms (ivr.runtime.rooms)."""
        from ivr.runtime.conference import ConferenceDialogue

        self._start_sub(ConferenceDialogue(action, caller=self.caller, language=self.language()))

    def _do_JoinConference(self, action: ev.JoinConference, owner: object) -> None:
        """A seat in the room; the dialogue hears who is there (or that the room is full)."""
        from ivr.runtime.rooms import joined

        self._leave_conference()
        self.conference = self.services.conferences.join(
            action.room, moderator=action.moderator, who=self.caller, max_participants=action.max_participants,
            music=action.music, tones=action.tones, wait_for_moderator=action.wait_for_moderator,
        )
        self._post_to(owner, joined(action.room, self.conference))

    def _do_TalkInConference(self, action: ev.TalkInConference, owner: object) -> None:
        if self.conference is not None:
            self.conference.talk(self.media, self.services.hold_music if self.conference.room.music else None)

    def _leave_conference(self) -> None:
        seat, self.conference = self.conference, None
        if seat is not None:
            seat.leave()
            self.log(event="conference_left", room=seat.room.name)

    def _do_HangupCall(self, action: ev.HangupCall, owner: object) -> None:
        self.hangup(action.reason)  # also from a sub-machine (three wrong PINs end the call)

    # ------------------------------------------------------------------ ending

    def hangup(self, reason: str) -> None:
        """We end the call: BYE (or reject/CANCEL semantics before answer), then clean up."""
        if self.ended or self._ending:
            return
        self._ending = True
        if self.recording is not None:
            self.recording.stop("hangup")
        self.log(action="bye", reason=reason)
        if self.phone is not None and not self.answered:  # the phone shows why: busy, not reachable
            status, phrase = phones.UNANSWERED_STATUS.get(self.last_outcome, (480, "Temporarily Unavailable"))
            self.services.ua.reject(self.call_id, status, self.services.sip_now(), reason=phrase)
        else:
            self.services.ua.hangup(self.call_id, self.services.sip_now())
        self.services.flush()
        self._finish(reason)

    def _flow_finished(self) -> None:
        """The machine reached its end without a HangupCall (e.g. after voicemail): hang up."""
        self.hangup("flow_finished")

    def _finish(self, reason: str) -> None:
        if self.ended:
            return
        self._ending = True
        self._drain()  # let the flow see the last events (Hangup) before everything stops
        self.ended = True
        for handle in (self.timer, self._answer_timer):
            if handle is not None:
                handle.cancel()
        self.timer = self._answer_timer = None
        self.prompts.cancel()
        if self.listener is not None:
            self.listener.close()
            self.listener = None
        if self.recording is not None:
            self.recording.stop("hangup")
        self._release_hold()
        if self.transfer is not None:
            self.transfer.close()  # cancel ringing legs, hang up a bridged one
        self._leave_conference()
        media: dict[str, Any] = {}
        if self.media is not None:
            stats = self.media.stats
            media = {k: stats.get(k) for k in ("packets_sent", "packets_received", "lost", "jitter_ms")}
            self.media.close()
        if self.phone is not None:
            self.services.lines.clear(self.phone.extension.number, self.call_id)
        outcome = self.machine.outcome if self.machine is not None else None
        self.log(
            event="ended",
            reason=reason,
            outcome=getattr(outcome, "result", None),
            detail=getattr(outcome, "detail", None),
            step=getattr(outcome, "step", None),
            **media,
        )
        if self.services.calls.get(self.call_id) is self:
            del self.services.calls[self.call_id]
        self.on_finished(self)

    def data_path(self, relative: str) -> Path:
        """A path inside the data folder; anything escaping it is refused."""
        base = self.services.data.resolve()
        path = (base / relative.removeprefix("data:")).resolve()
        if not path.is_relative_to(base):
            raise ValueError(f"recording path {relative!r} escapes the data folder")
        return path


# Every action the flow machine or a sub-machine can ask for, and the runner's method that
# carries it out (tests/runtime check that no Action subclass is missing).
HANDLERS: dict[type[ev.Action], Callable[[CallRunner, Any, object], None]] = {
    ev.EnterStep: CallRunner._do_EnterStep,
    ev.Say: CallRunner._do_Say,
    ev.Play: CallRunner._do_Play,
    ev.Tone: CallRunner._do_Tone,
    ev.StopPrompts: CallRunner._do_StopPrompts,
    ev.Listen: CallRunner._do_Listen,
    ev.StartRecording: CallRunner._do_StartRecording,
    ev.StopRecording: CallRunner._do_StopRecording,
    ev.Record: CallRunner._do_Record,
    ev.Hold: CallRunner._do_Hold,
    ev.Transfer: CallRunner._do_Transfer,
    ev.Directory: CallRunner._do_Directory,
    ev.Voicemail: CallRunner._do_Voicemail,
    ev.VoicemailAccess: CallRunner._do_VoicemailAccess,
    ev.Conference: CallRunner._do_Conference,
    ev.JoinConference: CallRunner._do_JoinConference,
    ev.TalkInConference: CallRunner._do_TalkInConference,
    ev.HangupCall: CallRunner._do_HangupCall,
    ev.StorageWork: CallRunner._do_StorageWork,
}


class _RecordAction:
    """Owner marker for the runner's own ``Record`` implementation (beep + recording)."""


def _outcome(future: asyncio.Future[object]) -> object:
    """What a finished worker call returned, or the exception it raised (cancelled: CancelledError)."""
    if future.cancelled():
        return asyncio.CancelledError("the storage workers were shut down")
    return future.exception() or future.result()


def _transport_of(request: Any) -> str:
    """The transport of the INVITE, from its top Via (``SIP/2.0/TCP``)."""
    try:
        return str(request.top_via.transport).lower()
    except Exception:  # no usable Via: the agent answered it anyway
        return ""


def _safe(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)[:48]
