"""Ring plans: placing the outgoing legs of a transfer and picking the one that answers.

A flow's ``transfer to 201`` or ``group sales`` becomes an
:class:`~ivr.dsl.events.Transfer` action whose ``plan`` is a tuple of steps,
each a tuple of targets rung together for the step's timeout.  This module
owns carrying that plan out:

* :class:`RingPlan` is the sans-IO core: told which targets answered or failed
  and the time, it says which targets to dial or cancel next and, at the end,
  the single outcome the flow hears (``answered``, ``busy``, ``no_answer``,
  ``unavailable``, ``failed``).  Parallel steps: the first answer wins and the
  others are cancelled; a step ends early when every target in it failed;
  sequential ringing is one step per member.
* :func:`~ivr.runtime.outcomes.outcome_for_status` maps a final SIP status to an
  outcome and :func:`~ivr.runtime.outcomes.combine` chooses the outcome of several
  failures (:mod:`ivr.runtime.outcomes`, shared with the REFERs).
* :class:`TransferSession` is the asyncio adapter on one call: it resolves
  targets to contacts (registrar bindings and static contacts for
  extensions, a trunk for external numbers; looked up in the storage
  workers, since the bindings may be in a shared database), opens a media session per
  contact, sends the INVITEs through the shared user agent, plays ringback
  tone (or hold music) to the caller while ringing, and on an answer hands
  both legs to :class:`~ivr.runtime.bridge.Bridge`.  A callee that sends early
  media (183 Session Progress with SDP, RFC 3261 section 13.2.1; RFC 3960's
  gateway model) is heard by the caller instead of our ringback until it
  answers or fails: a carrier's announcement or its own ringback.  ``by refer`` transfers
  go out as a REFER on the caller's dialog instead (RFC 3515).  A REFER *from*
  the bridged phone (its transfer key) is handed to
  :class:`~ivr.runtime.phonetransfer.PhoneTransfer`, which rings the new target
  with a second session of this class.  While bridged, the staff side's feature codes and a
  flow's ``record`` are :class:`~ivr.runtime.incall.InCall`'s (recording, adding a third person).
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from ivr.dsl import events as ev
from ivr.dsl.events import TransferOutcome
from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES, RATE
from ivr.media.holdmusic import MusicPlayer
from ivr.runtime import phones
from ivr.runtime.bridge import AudioRelay, Bridge, HoldSource
from ivr.runtime.forwarding import pikett_plan
from ivr.runtime.outcomes import Unreachable, combine, outcome_for_status
from ivr.runtime.ports import CallMedia
from ivr.runtime.presentation import Shown, shown_for
from ivr.sip import sdp
from ivr.sip.auth import DigestClient
from ivr.sip.events import (
    CallEnded,
    DtmfInfo,
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgress,
    ReferReceived,
    ReOffer,
)
from ivr.sip.message import SipParseError, SipUri
from ivr.sip.trunk import TrunkRefused, is_external

if TYPE_CHECKING:
    from ivr.runtime.incall import AdHoc, InCall
    from ivr.runtime.phonetransfer import PhoneTransfer
    from ivr.runtime.refer import BlindTransfer

log = logging.getLogger("ivr.runtime.transfer")

# --------------------------------------------------------------------------- the sans-IO ring plan


@dataclass(frozen=True)
class Dial:
    """Start ringing ``target`` (all of its contacts)."""

    target: str


@dataclass(frozen=True)
class Cancel:
    """Stop ringing ``target`` (CANCEL its pending INVITEs)."""

    target: str


@dataclass(frozen=True)
class Finished:
    """The plan is over: ``outcome`` for the flow, ``target`` who answered (or the last one tried)."""

    outcome: TransferOutcome
    target: str


Command = Dial | Cancel | Finished
Plan = tuple[tuple[tuple[str, ...], float], ...]


class RingPlan:
    """Steps of targets rung together, each for its timeout; the first answer wins.

    Commands come back from every call in the order to carry them out; the
    adapter reports each dialled target once with :meth:`answered` or
    :meth:`failed` and calls :meth:`timer` at :attr:`next_timer`.
    """

    def __init__(self, plan: Plan) -> None:
        self.steps = [(tuple(dict.fromkeys(t for t in targets if t)), float(timeout)) for targets, timeout in plan]
        self.index = -1
        self.active: list[str] = []
        self.deadline: float | None = None
        self.results: list[tuple[TransferOutcome, str]] = []
        self.outcome: Finished | None = None

    @property
    def finished(self) -> bool:
        return self.outcome is not None

    @property
    def next_timer(self) -> float | None:
        return None if self.finished else self.deadline

    def start(self, now: float) -> list[Command]:
        return self._next_step(now)

    def answered(self, target: str, now: float) -> list[Command]:
        if self.finished or target not in self.active:
            return []
        others = [Cancel(t) for t in self.active if t != target]
        self.active = []
        return [*others, self._finish(Finished("answered", target))]

    def failed(self, target: str, outcome: TransferOutcome, now: float) -> list[Command]:
        if self.finished or target not in self.active:
            return []
        self.active.remove(target)
        self.results.append((outcome, target))
        return [] if self.active else self._next_step(now)

    def timer(self, now: float) -> list[Command]:
        if self.finished or self.deadline is None or now < self.deadline:
            return []
        cancels: list[Command] = [Cancel(t) for t in self.active]
        self.results += [("no_answer", t) for t in self.active]
        self.active = []
        return cancels + self._next_step(now)

    def abandon(self) -> list[Command]:
        """The caller went away: cancel whatever rings; no outcome for the flow."""
        cancels: list[Command] = [Cancel(t) for t in self.active]
        self.active = []
        self.outcome = Finished("failed", "")
        return cancels

    def _next_step(self, now: float) -> list[Command]:
        while True:
            self.index += 1
            if self.index >= len(self.steps):
                self.deadline = None
                return [self._finish(self._failure())]
            targets, timeout = self.steps[self.index]
            if targets:
                self.active = list(targets)
                self.deadline = now + timeout
                return [Dial(t) for t in targets]

    def _failure(self) -> Finished:
        outcome = combine(o for o, _ in self.results)
        best = [t for o, t in self.results if o == outcome]
        return Finished(outcome, best[-1] if best else "")

    def _finish(self, result: Finished) -> Finished:
        self.outcome = result
        self.deadline = None
        return result


def rings_one(action: ev.Transfer) -> bool:
    """A transfer to one person, which goes on to their follow-me numbers; a group's plan and a
    transfer to several targets (``transfer to 201, 202 in turn``) ring the numbers written."""
    return not action.group and len(action.plan) == 1 and len(action.plan[0][0]) == 1


def with_follow_me(plan: Plan, follow_me: Callable[[str], Iterable[str]]) -> Plan:
    """A step that rings one person continues to that person's follow-me numbers
    (``Extension.follow_me`` in ivr.toml), one after the other, each for the step's ring time:
    the desk phone first, then the mobile.  Steps ringing several targets together are left
    as they are, and follow-me numbers are not followed further."""
    out: list[tuple[tuple[str, ...], float]] = []
    for targets, timeout in plan:
        out.append((targets, timeout))
        if len(targets) == 1:
            out += [((number,), timeout) for number in follow_me(targets[0]) if number != targets[0]]
    return tuple(out)


# --------------------------------------------------------------------------- ringback


def _ringback_cadence() -> np.ndarray:
    """ITU-T E.180 ringing tone: 425 Hz, 1 s on, 4 s off (the European cadence)."""
    t = np.arange(RATE) / RATE
    on = (np.sin(2 * np.pi * 425 * t) * 0.2 * 32767).astype(np.int16)
    return np.concatenate([on, np.zeros(4 * RATE, dtype=np.int16)])


_RINGBACK: dict[int, bytes] = {}


class Ringback:
    """Ringback tone for one caller, as a player for :meth:`MediaSession.play` (never finishes)."""

    def __init__(self) -> None:
        self.position = 0

    def frame(self, payload_type: int) -> bytes:
        data = _RINGBACK.get(payload_type)
        if data is None:
            data = _RINGBACK[payload_type] = g711.encode(_ringback_cadence(), payload_type)
        start = self.position * FRAME_SAMPLES
        self.position = (self.position + 1) % (len(data) // FRAME_SAMPLES)
        return data[start : start + FRAME_SAMPLES]


# --------------------------------------------------------------------------- destinations


@dataclass(frozen=True)
class Destination:
    """Where one leg's INVITE goes: Request-URI, next hop, From, extra headers, trunk credentials."""

    uri: str
    address: tuple[str, int]
    transport: str = "udp"
    from_uri: str = ""
    headers: tuple[tuple[str, str], ...] = ()
    auth: DigestClient | None = None  # for trunks that challenge
    via: str = ""  # "trunk NAME" or "extension", for logs


def uri_address(uri: str) -> tuple[str, int]:
    """The next hop of a contact URI: its host and port (5060 by default)."""
    try:
        parsed = SipUri.parse(uri)
    except (SipParseError, ValueError) as exc:
        raise Unreachable("failed", f"unusable contact {uri!r}: {exc}") from None
    return parsed.host.strip("[]"), parsed.port or 5060


def destinations(
    services: Any, target: str, caller: str, shown: Shown | None = None, call: Any = None
) -> list[Destination]:
    """Every contact that should ring for ``target``, or :class:`Unreachable` with the outcome.

    An extension rings all its registered contacts and its static ones (its
    ``forward_always`` instead, and nothing while it is busy: ivr.runtime.phones); an
    external number goes out through the trunk that allows it (see
    :mod:`ivr.sip.trunk`), if the call may reach it (:func:`phones.trunk_permission`);
    anything else does not exist here.  ``shown`` is the number each INVITE shows
    (:mod:`ivr.runtime.presentation`; default: the caller's); ``call`` is the call runner the
    transfer belongs to.
    """
    shown = shown or Shown(caller, "")
    from_uri = f"sip:{shown.phone_user()}@{services.contact_host}"
    config = services.config
    forwarded = phones.forward_chain(config, target)
    if forwarded == "voicemail":
        raise Unreachable("unavailable", f"extension {target} forwards every call to voicemail")
    if forwarded != target:
        return destinations(services, forwarded, caller, shown, call)
    if config.extension(target) is not None and phones.busy(config, services.lines, target):
        raise Unreachable("busy", f"extension {target} is on a call")
    if config.extension(target) is not None:
        bindings = services.registrar().contacts(target, services.wall())
        if not bindings:
            raise Unreachable("unavailable", f"extension {target} has no registered or static contact")
        return [
            Destination(b.uri, b.source or uri_address(b.uri), (b.transport or "udp").lower(), from_uri, via="extension")
            for b in bindings
        ]
    if not is_external(target):
        raise Unreachable("unavailable", f"{target!r} is neither an extension in ivr.toml nor a telephone number")
    phone = getattr(call, "phone", None)
    refusal = phones.trunk_permission(
        phone, target, getattr(call, "called", ""), services.literal_numbers, config,
        services.choices().numbers,
    )
    if refusal:
        raise Unreachable("failed", refusal)
    try:
        route = services.trunks.route(target, local_host=services.contact_host, caller=shown.trunk_caller(),
                                      caller_id=phones.presented_number(phone))
    except TrunkRefused as exc:
        raise Unreachable("failed", str(exc)) from None
    return [
        Destination(route.uri, route.address, route.transport, route.from_uri, route.headers,
                    services.trunks.auth(route.trunk), via=f"trunk {route.trunk.name}")
    ]


# --------------------------------------------------------------------------- the asyncio adapter


class CallerSide(Protocol):
    """What a transfer needs from the call it belongs to (the call runner)."""

    incoming: Any  # the IncomingCall (its source address, for REFER to a carrier)
    call_id: str
    caller: str
    called: str
    services: Any
    media: CallMedia | None

    @property
    def ended(self) -> bool: ...

    def log(self, **fields: Any) -> None: ...

    def answer_now(self) -> None: ...


@dataclass
class Leg:
    """One outgoing INVITE to one contact of a target."""

    target: str
    destination: Destination
    media: CallMedia
    offer: sdp.SessionDescription
    call_id: str = ""
    answer: sdp.Answer | None = None
    status: int = 0
    done: bool = False


@dataclass
class _Ring:
    """All legs of one dialled target (a phone registered twice rings twice)."""

    target: str
    legs: list[Leg] = field(default_factory=list)
    outcomes: list[TransferOutcome] = field(default_factory=list)
    cancelled: bool = False
    pending: int = 0  # contacts whose media port is still being opened


class TransferSession:
    """Carries out one ``Transfer`` action for a call (see the module docstring).

    ``post`` hands ``TransferResult`` and later ``BridgeEnded`` to the flow.
    :meth:`close` (the caller hung up, or the call ends) cancels ringing legs
    and hangs up a bridged one.
    """

    def __init__(self, caller: CallerSide, action: ev.Transfer, post: Callable[[ev.Event], None]) -> None:
        self.caller = caller
        self.action = action
        self.post = post
        self.services = caller.services
        self.loop = asyncio.get_running_loop()
        self.plan = RingPlan(self._plan(action))
        self.rings: dict[str, _Ring] = {}
        self.legs: dict[str, Leg] = {}  # by Call-ID
        self.bridge: Bridge | None = None
        self.bridged: Leg | None = None
        self.closed = False
        self._timer: asyncio.TimerHandle | None = None
        self._queue: deque[Command] = deque()
        self._running = False
        self._music: MusicPlayer | None = None
        self._ringback: Ringback | None = None
        self._early: Leg | None = None  # the leg whose early media the caller hears instead of ringback
        self._tasks: set[asyncio.Task[None]] = set()
        self._refer: BlindTransfer | None = None
        self.picker: Any = None  # the CallRunner of a phone that picked this call up
        self.handover: PhoneTransfer | None = None  # the bridged phone is transferring the caller on
        self.incall: InCall | None = None  # feature codes and recording while bridged (ivr.runtime.incall)
        self.adhoc: AdHoc | None = None  # the conference this call became; its legs leave it, not a bridge
        self.adhoc_side = "callee"  # which member of it this session's bridged leg is
        self._forwarded = {t for step, _ in action.plan for t in step}  # targets rung: forwarding goes elsewhere
        self.started = self.services.wall()

    def _plan(self, action: ev.Transfer) -> Plan:
        """What is rung: the members' on-call numbers (``transfer to pikett GROUP``), one person and
        their follow-me numbers, or the plan as written."""
        if action.pikett:
            return pikett_plan(action.plan, self._pikett)
        return with_follow_me(action.plan, self._follow_me) if rings_one(action) else action.plan

    def _pikett(self, target: str) -> str:
        """The member's on-call number: their choice in the console, else the deployment file's."""
        chosen = self.services.choices().pikett.get(target)
        if chosen is not None:
            return chosen
        extension = self.services.config.extension(target)
        return extension.pikett if extension is not None else ""

    def _follow_me(self, target: str) -> tuple[str, ...]:
        """The owner's choice in the console (ivr.runtime.forwarding), else the deployment file's."""
        chosen = self.services.choices().follow_me.get(target)
        if chosen is not None:
            return chosen
        extension = self.services.config.extension(target)
        return tuple(extension.follow_me) if extension is not None else ()

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        targets = [t for step, _ in self.action.plan for t in step]
        self.caller.log(event="transfer_start", targets=",".join(targets), group=self.action.group,
                        refer=self.action.refer, steps=len(self.plan.steps))
        if self.action.refer:
            from ivr.runtime.refer import BlindTransfer

            self._refer = BlindTransfer(self, targets[0] if targets else "")
            self._refer.start()
            return
        self._start_ringback()
        self.services.ringing.append(self)
        self._run(self.plan.start(self.services.wall()))

    def _start_ringback(self) -> None:
        media = self.caller.media
        if media is None:
            return
        if self.action.music:
            try:
                self._music = self.services.hold_music.player(self.action.music)
            except Exception as exc:  # noqa: BLE001 -- ringback tone instead of music that cannot play
                self.caller.log(event="transfer_music_error", music=self.action.music, error=str(exc))
        source: MusicPlayer | Ringback | None = self._music
        if source is None:
            source = self._ringback = Ringback()
        self.caller.log(event="transfer_ringback", source=self.action.music if self._music is not None else "tone")
        media.stop_prompts(only_barge_in=False)
        media.play(source, prompt_id=-1, barge_in=False)

    def _stop_ringback(self) -> None:
        media = self.caller.media
        if media is not None and (self._music is not None or self._ringback is not None or self._early is not None):
            media.stop_prompts(only_barge_in=False)
        self._early = None
        if self._music is not None:
            self.services.hold_music.release(self._music)
        self._music = self._ringback = None

    # ------------------------------------------------------------------ commands

    def _run(self, commands: Iterable[Command]) -> None:
        self._queue.extend(commands)
        if self._running:
            return
        self._running = True
        try:
            while self._queue:
                command = self._queue.popleft()
                if isinstance(command, Dial):
                    self._dial(command.target)
                elif isinstance(command, Cancel):
                    self._cancel(command.target)
                else:
                    self._finished(command)
        finally:
            self._running = False
        self._arm_timer()

    def _arm_timer(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        at = self.plan.next_timer
        if at is not None and not self.closed:
            self._timer = self.loop.call_later(max(0.0, at - self.services.wall()), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = None
        self._run(self.plan.timer(self.services.wall()))

    def _dial(self, target: str) -> None:
        """Look up where ``target`` rings in a storage worker (an extension's registrations are in the
        database, which must never hold the event loop), then place its legs."""
        ring = self.rings[target] = _Ring(target, pending=1)
        work = partial(self.services.destinations_for, target, self.caller.caller, self._shown(target), self.caller)
        future = self.loop.run_in_executor(self.services.storage_executor, work)
        future.add_done_callback(lambda done: self._looked_up(ring, done))

    def _looked_up(self, ring: _Ring, future: asyncio.Future[list[Destination]]) -> None:
        ring.pending -= 1
        if ring.cancelled or self.closed or future.cancelled():
            return  # another target answered, or the caller left (or the server stops), meanwhile
        error = future.exception()
        if isinstance(error, Unreachable):
            outcome, reason = error.outcome, str(error)
        elif error is not None:  # the registrations could not be read
            outcome, reason = "failed", f"looking up {ring.target}: {error}"
        else:
            self._ring(ring, future.result())
            return
        self.caller.log(event="transfer_target_unreachable", target=ring.target, outcome=outcome, reason=reason)
        self._run(self.plan.failed(ring.target, outcome, self.services.wall()))

    def _ring(self, ring: _Ring, destinations: list[Destination]) -> None:
        ring.pending = len(destinations)
        for destination in destinations:
            task = self.loop.create_task(self._place(ring, destination))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _place(self, ring: _Ring, destination: Destination) -> None:
        """Open a media port for one contact and send the INVITE (unless cancelled meanwhile)."""
        try:
            media = await self.services.open_media()
        except Exception as exc:  # noqa: BLE001 -- no port: this contact fails, the plan goes on
            log.exception("call %s: no media port for %s", self.caller.call_id, ring.target)
            ring.pending -= 1
            self._leg_over(ring, None, "failed", f"no media port: {exc}")
            return
        ring.pending -= 1
        if ring.cancelled or self.closed:
            media.close()
            self._leg_over(ring, None, "failed", "cancelled")
            return
        offer = sdp.make_offer(
            self.services.contact_host, media.local_port, session_id=random.randint(1, 2**31), version=1
        )
        leg = Leg(ring.target, destination, media, offer)
        media.on_timeout = lambda: self._leg_media_timeout(leg)
        ua, now = self.services.ua, self.services.sip_now()
        leg.call_id = ua.invite(
            destination.uri, bytes(offer), now, from_uri=destination.from_uri or self._from_uri(),
            headers=destination.headers, destination=destination.address, transport=destination.transport,
            auth=destination.auth,
        )
        ring.legs.append(leg)
        self.legs[leg.call_id] = leg
        self._line(leg, "early")
        self.services.legs[leg.call_id] = self.on_leg_event
        self.services.flush()
        self.caller.log(event="leg_invite", target=ring.target, leg=leg.call_id, uri=destination.uri,
                        via=destination.via, to=f"{destination.address[0]}:{destination.address[1]}",
                        transport=destination.transport)

    def _shown(self, target: str) -> Shown:
        ringing = [t for step, _ in self.action.plan for t in step]
        return shown_for(self.services.config, target, ringing, self.caller.caller, self.caller.called)

    def _from_uri(self) -> str:
        user = self.caller.caller or "ivr"
        return f"sip:{user}@{self.services.contact_host}"

    def _cancel(self, target: str) -> None:
        ring = self.rings.get(target)
        if ring is None:
            return
        ring.cancelled = True
        for leg in ring.legs:
            if not leg.done and leg is not self.bridged:
                self._drop_leg(leg, "cancel")

    def _drop_leg(self, leg: Leg, why: str) -> None:
        leg.done = True
        self.services.ua.hangup(leg.call_id, self.services.sip_now())  # CANCEL (or BYE if it answered)
        self.services.flush()
        self._forget(leg)
        self.caller.log(event="leg_" + why, target=leg.target, leg=leg.call_id)

    def _line(self, leg: Leg, state: phones.LineState) -> None:
        """An extension's phone rings or talks in this leg (ivr.runtime.phones.Lines)."""
        if self.services.config.extension(leg.target) is not None:
            self.services.lines.set(leg.target, leg.call_id, state)

    def _forget(self, leg: Leg) -> None:
        self.services.lines.clear(leg.target, leg.call_id)
        if leg is self._early:
            self._early_over()
        leg.media.close()
        self.services.legs.pop(leg.call_id, None)
        self.legs.pop(leg.call_id, None)

    # ------------------------------------------------------------------ leg events

    def on_leg_event(self, event: object) -> None:
        """A user agent event about one of our outgoing calls (routed by Call-ID)."""
        call_id = getattr(event, "call_id", "")
        leg = self.legs.get(call_id)
        if leg is None:
            return
        if isinstance(event, OutgoingCallProgress):
            self.caller.log(event="leg_progress", target=leg.target, leg=call_id, status=event.status,
                            early_media=bool(event.sdp))
            self.services.lines.progressed(leg.target)  # the lamps learn the ringing phone's tag
            if event.sdp:
                self._early_media(leg, event.sdp)
        elif isinstance(event, OutgoingCallAnswered):
            self._leg_answered(leg, event.answer)
        elif isinstance(event, OutgoingCallFailed):
            leg.status = event.status
            self._leg_failed(leg, outcome_for_status(event.status), f"{event.status} {event.reason}")
        elif isinstance(event, CallEnded):
            if event.reason != "local":
                self._leg_ended(leg, event.reason)
        elif isinstance(event, ReOffer):
            self._leg_reoffer(leg, event)
        elif isinstance(event, DtmfInfo) and self.bridge is not None and leg is self.bridged:
            self.bridge.key_from_callee(event.digit)
        elif isinstance(event, ReferReceived):
            self._leg_refer(leg, event)

    def _leg_refer(self, leg: Leg, event: ReferReceived) -> None:
        """The bridged phone transfers the caller on: blind (ivr.runtime.phonetransfer) or, with
        Replaces, attended (ivr.runtime.attended)."""
        from ivr.runtime.attended import AttendedTransfer
        from ivr.runtime.phonetransfer import PhoneTransfer

        if leg is self.bridged and self.bridge is not None and (self.handover is None or self.handover.done):
            if event.target.replaces is not None:
                AttendedTransfer(self, leg, event).start()
            else:
                PhoneTransfer(self, leg, event).start()
            return
        self.caller.log(event="phone_refer", leg=leg.call_id, by=leg.target, target=event.target.user, refused=491)
        self.services.ua.notify_refer(leg.call_id, 491, self.services.sip_now(), reason="Request Pending")
        self.services.flush()

    def spawn(self, action: ev.Transfer, post: Callable[[ev.Event], None]) -> TransferSession:
        """A new session for the same caller (a phone's transfer rings its target with it)."""
        session = TransferSession(self.caller, action, post)
        session.start()
        return session

    def drop_transferor(self) -> None:
        """The phone that transferred the caller on is done: BYE to its leg."""
        leg, self.bridged = self.bridged, None
        if leg is not None and not leg.done:
            self._drop_leg(leg, "bye_transferred")

    def unbridge(self) -> None:
        """The transferor's leg is gone after a failed phone transfer: no bridge, no leg."""
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        self.bridged = None

    def rebridge(self) -> None:
        """A phone's transfer failed: the caller talks to the transferor again."""
        if self.bridged is None or self.caller.media is None:
            return
        self._new_bridge(self.bridged.media, self.bridged.target)

    # ------------------------------------------------------------------ attended transfer (ivr.runtime.attended)

    def release(self, leg: Leg | None) -> None:
        """Give the bridge up without a word to either party: ``leg`` (if any) moves to another
        session (:meth:`adopt`).  This session is over and posts nothing more."""
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        self.bridged = None
        self.closed = True
        if leg is not None:
            self.legs.pop(leg.call_id, None)
            self.services.legs.pop(leg.call_id, None)

    def adopt(self, leg: Leg) -> None:
        """``leg``, bridged in another session until now, is this caller's callee from now on."""
        self.legs[leg.call_id] = leg
        self.services.legs[leg.call_id] = self.on_leg_event
        leg.media.on_timeout = lambda: self._leg_media_timeout(leg)
        self.bridged = leg
        self.rebridge()

    def join_caller(self, runner: Any) -> None:
        """Another call's runner takes the callee's place, as a pickup does: this caller and
        ``runner`` talk; when either hangs up, the other is ended (or its flow goes on)."""
        self.picker = runner
        runner.transfer = _PickupLink(self)
        if self.caller.media is not None and runner.media is not None:
            self._new_bridge(runner.media, runner.phone.extension.number if runner.phone is not None else "")

    def replaced_by(self, runner: Any, leg: Leg) -> None:
        """A phone's INVITE with Replaces takes over the bridged ``leg`` (RFC 3891): BYE to it."""
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        self.caller.log(event="leg_replaced", target=leg.target, leg=leg.call_id, by=runner.call_id)
        self.drop_transferor()
        self.join_caller(runner)

    def _early_media(self, leg: Leg, body: bytes) -> None:
        """A 18x with SDP: the caller hears this leg (the first one to send early media)
        instead of our ringback, as Asterisk and FreeSWITCH do, until it answers or fails."""
        media = self.caller.media
        if media is None or leg.done or self.closed or self.plan.finished:
            return
        if self._early is not None and self._early is not leg:
            return  # two phones of a group both sending early media: the first keeps the caller
        try:
            answer = sdp.parse_answer(leg.offer, body)
        except (sdp.SdpError, sdp.NegotiationError) as exc:
            self.caller.log(event="leg_bad_early_media", target=leg.target, leg=leg.call_id, error=str(exc))
            return  # the caller keeps hearing our ringback
        leg.media.configure(
            remote=answer.remote_addr, payload_type=answer.codec.payload_type, dtmf_pt=answer.dtmf_pt,
            direction=answer.local_direction, ptime=answer.ptime, signalling_host=leg.destination.address[0],
        )
        if self._early is leg:
            return  # a second 183 of the same leg: media moved, already relayed
        self._early = leg
        relay = AudioRelay()
        leg.media.on_audio = relay.push
        media.stop_prompts(only_barge_in=False)
        media.play(relay, prompt_id=-1, barge_in=False)
        self.caller.log(event="transfer_early_media", target=leg.target, leg=leg.call_id, codec=answer.codec.name)

    def _early_over(self) -> None:
        """The early-media leg failed or was cancelled while the plan goes on: ringback again."""
        leg, self._early = self._early, None
        if leg is not None:
            leg.media.on_audio = None
        media = self.caller.media
        source: MusicPlayer | Ringback | None = self._music or self._ringback
        if media is None or source is None or self.closed or self.plan.finished or self.bridge is not None:
            return
        media.stop_prompts(only_barge_in=False)
        media.play(source, prompt_id=-1, barge_in=False)
        self.caller.log(event="transfer_ringback", source="music" if self._music is not None else "tone")

    def _leg_answered(self, leg: Leg, body: bytes) -> None:
        ring = self.rings.get(leg.target)
        if leg.done or ring is None or ring.cancelled or self.closed or self.plan.finished:
            # Lost the race (another phone answered first, or the caller left): hang it up.
            self._drop_leg(leg, "bye_late_answer")
            return
        try:
            leg.answer = sdp.parse_answer(leg.offer, body)
        except (sdp.SdpError, sdp.NegotiationError) as exc:
            self.caller.log(event="leg_bad_answer", target=leg.target, leg=leg.call_id, error=str(exc))
            self._drop_leg(leg, "bye_bad_answer")
            self._leg_over(ring, leg, "failed", "bad SDP answer")
            return
        leg.media.configure(
            remote=leg.answer.remote_addr, payload_type=leg.answer.codec.payload_type, dtmf_pt=leg.answer.dtmf_pt,
            direction=leg.answer.local_direction, ptime=leg.answer.ptime, signalling_host=leg.destination.address[0],
        )
        self.bridged = leg
        self._line(leg, "confirmed")
        for other in ring.legs:  # the same phone's other registrations stop ringing
            if other is not leg and not other.done:
                self._drop_leg(other, "cancel")
        self.caller.log(event="leg_answered", target=leg.target, leg=leg.call_id, codec=leg.answer.codec.name,
                        ring_time=round(self.services.wall() - self.started, 2))
        self._run(self.plan.answered(leg.target, self.services.wall()))

    def _leg_failed(self, leg: Leg, outcome: TransferOutcome, reason: str) -> None:
        if leg.done:
            return
        leg.done = True
        self._forget(leg)
        ring = self.rings.get(leg.target)
        if ring is not None:
            self._leg_over(ring, leg, outcome, reason)

    def _leg_over(self, ring: _Ring, leg: Leg | None, outcome: TransferOutcome, reason: str) -> None:
        """One contact of a target is out; the target fails when none is left ringing."""
        self.caller.log(event="leg_failed", target=ring.target, leg=leg.call_id if leg else "", outcome=outcome,
                        reason=reason)
        if not ring.cancelled:
            ring.outcomes.append(outcome)
        if ring.cancelled or ring.pending or any(not x.done for x in ring.legs):
            return
        self._run(self.plan.failed(ring.target, combine(ring.outcomes), self.services.wall()))

    def _leg_ended(self, leg: Leg, reason: str) -> None:
        """The callee hung up (BYE), or its dialog died (session timer, no ACK)."""
        leg.done = True
        self._forget(leg)
        if self.handover is not None and self.handover.transferor_gone(leg):
            return
        if leg is self.bridged:
            self._end_bridge(f"callee_{reason}")

    def _leg_media_timeout(self, leg: Leg) -> None:
        if leg is self.bridged and not leg.done:
            self.caller.log(event="leg_media_timeout", target=leg.target, leg=leg.call_id)
            self._drop_leg(leg, "bye_media_timeout")
            self._end_bridge("callee_media_timeout")

    def _leg_reoffer(self, leg: Leg, event: ReOffer) -> None:
        """The callee holds or moves its media (re-INVITE/UPDATE): answer from the leg's own port."""
        ua, now = self.services.ua, self.services.sip_now()
        if event.offer is None:
            ua.accept_reoffer(leg.call_id, b"" if event.method == "UPDATE" else bytes(leg.offer), now)
            self.services.flush()
            return
        try:
            answer = sdp.negotiate(
                sdp.SessionDescription.parse(event.offer), local_ip=self.services.contact_host,
                local_port=leg.media.local_port, session_id=leg.offer.origin.session_id,
                version=int(leg.offer.origin.version) + 1,
            )
        except (sdp.SdpError, sdp.NegotiationError) as exc:
            ua.reject_reoffer(leg.call_id, 488, now)
            self.services.flush()
            self.caller.log(event="leg_reoffer_rejected", leg=leg.call_id, error=str(exc))
            return
        ua.accept_reoffer(leg.call_id, bytes(answer.sdp), now)
        self.services.flush()
        leg.media.configure(remote=answer.remote_addr, payload_type=answer.codec.payload_type,
                            dtmf_pt=answer.dtmf_pt, direction=answer.local_direction, ptime=answer.ptime)
        self.caller.log(event="leg_reoffer", leg=leg.call_id, hold=answer.on_hold)

    # ------------------------------------------------------------------ the result

    def _forward(self, result: Finished) -> bool:
        """The extension rung forwards this outcome to another extension or a number: ring that
        instead (each target once, so forwarding loops end).  Voicemail is the runner's."""
        situation = phones.OUTCOME_SITUATION.get(result.outcome)
        if situation is None or self.closed or not phones.single_target(self.action):
            return False
        target = phones.forward_target(self.services.config, result.target, situation)
        if not target or target == "voicemail" or target in self._forwarded:
            return False
        self._forwarded.add(target)
        self.caller.log(event="transfer_forward", target=result.target, to=target, outcome=result.outcome)
        self.plan = RingPlan((((target,), self.action.plan[0][1]),))
        self._queue.extend(self.plan.start(self.services.wall()))
        return True

    def _finished(self, result: Finished) -> None:
        if self._forward(result):
            return
        self._stop_ringback()
        self._not_ringing()
        if self.closed:
            return
        self.caller.log(event="transfer_done", outcome=result.outcome, target=result.target,
                        ring_time=round(self.services.wall() - self.started, 2))
        # A leg that answered is bridged here; a pickup (no leg) is bridged by picked_up().
        if result.outcome == "answered":
            self.caller.answer_now()  # a phone's call rang until now (ivr.runtime.phones)
        if result.outcome == "answered" and self.bridged is not None and self.caller.media is not None:
            self._new_bridge(self.bridged.media, result.target)
        self.post(ev.TransferResult(result.outcome, target=result.target))

    def _new_bridge(self, callee: CallMedia, answered_by: str) -> None:
        """Bridge the caller to ``callee``, with the in-call features of the staff side."""
        from ivr.runtime.incall import InCall

        assert self.caller.media is not None
        self.bridge = Bridge(self.caller.media, callee, self._hold_source())
        self.bridge.on_hold = self._held
        if self.incall is None:
            self.incall = InCall(self)
        self.bridge.start()
        self.incall.attach(self.bridge, answered_by)

    def _hold_source(self) -> HoldSource:
        """Hold music for the callee while the caller holds: the flow's (``music``), else the default."""
        hold_music = self.services.hold_music
        return (lambda: hold_music.player(self.action.music or ""), hold_music.release)

    def _held(self, side: str, held: bool) -> None:
        self.caller.log(event="bridge_hold" if held else "bridge_resume", by=side,
                        music=(self.action.music or "default") if held else "")

    def _end_bridge(self, reason: str) -> None:
        if self.adhoc is not None and not self.closed:
            self.adhoc.gone(self.adhoc_side, reason)  # a member of the conference the call became left
            return
        if self.bridge is None or self.closed:
            return
        self.bridge.stop()
        self.bridge = None
        self.bridged = None
        self.caller.log(event="bridge_end", reason=reason)  # the flow then hears BridgeEnded
        self.closed = True
        self.post(ev.BridgeEnded())

    def conference_over(self) -> None:
        """The conference this call became has ended (ivr.runtime.incall): the flow goes on."""
        leg, self.bridged, self.adhoc = self.bridged, None, None
        if leg is not None and not leg.done:
            self._drop_leg(leg, "bye_conference_over")
        self.caller.log(event="bridge_end", reason="conference_over")
        self.closed = True
        self.post(ev.BridgeEnded())

    def refer_result(self, outcome: TransferOutcome, target: str) -> None:
        """The REFER side reports: ``answered`` means the peer took the call over."""
        if not self.closed:
            self.post(ev.TransferResult(outcome, target=target))

    def _not_ringing(self) -> None:
        if self in self.services.ringing:
            self.services.ringing.remove(self)

    def rings_for(self, extension: str, teams: Iterable[frozenset[str]] = ()) -> bool:
        """Whether a phone of ``extension`` may pick this call up: it is ringing, and the
        extension is one of its targets, or shares a flow group (``teams``) with one that rings."""
        if self.closed or self.plan.finished or not self.plan.active:
            return False
        if any(extension in targets for targets, _ in self.plan.steps):
            return True
        return any(extension in team and team.intersection(self.plan.active) for team in teams)

    def picked_up(self, picker: Any, extension: str) -> None:
        """``picker`` (a CallRunner with answered media) takes the call: stop ringing, bridge."""
        self.picker = picker
        for command in self.plan.abandon():
            if isinstance(command, Cancel):
                self._cancel(command.target)
        self.plan.outcome = Finished("answered", extension)
        self.caller.log(event="picked_up", by=extension, picker=picker.call_id)
        self._finished(self.plan.outcome)
        if self.caller.media is not None and picker.media is not None:
            self._new_bridge(picker.media, extension)

    def picker_gone(self, reason: str) -> None:
        self.picker = None
        self._end_bridge(f"picker_{reason}")

    def close(self) -> None:
        """The caller's call is ending: cancel ringing legs, hang up a bridged one."""
        self._not_ringing()
        if self.incall is not None:
            self.incall.close()  # the conference the call became, its third leg, the recording
        if self.picker is not None:
            picker, self.picker = self.picker, None
            picker.hangup("bridge_ended")
        if self.handover is not None:
            handover, self.handover = self.handover, None
            handover.close()
        if self.closed and not self.legs:
            return
        self.closed = True
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self.plan.finished:
            for command in self.plan.abandon():
                if isinstance(command, Cancel):
                    self._cancel(command.target)
        if self.bridge is not None:
            self.bridge.stop()
            self.bridge = None
        for leg in list(self.legs.values()):
            if not leg.done:
                self._drop_leg(leg, "bye" if leg is self.bridged else "cancel")
            else:
                self._forget(leg)
        for ring in self.rings.values():
            ring.cancelled = True
        self._stop_ringback()
        if self._refer is not None:
            self._refer.close()


# --------------------------------------------------------------------------- call pickup


class _PickupLink:
    """The picker's runner ``transfer``: when the picker's call ends, the bridge ends."""

    def __init__(self, session: TransferSession) -> None:
        self.session = session

    def close(self) -> None:
        if self.session.picker is not None:
            self.session.picker_gone("hangup")


def pickup_teams(program: Any) -> list[frozenset[str]]:
    """The members of every ``group`` of the flow: a phone may pick up calls ringing its team."""
    from ivr.dsl.compiler import TransferOp

    teams = []
    for state in getattr(program, "states", {}).values():
        op = state.op
        if isinstance(op, TransferOp) and op.group:
            members = {getattr(v, "text", None) for targets, _ in op.plan for v in targets}
            teams.append(frozenset(m for m in members if isinstance(m, str) and m))
    return teams


def picker_extension(services: Any, source: tuple[str, int]) -> str | None:
    """The extension a registered phone belongs to, by the address its INVITE came from."""
    now = services.wall()
    for extension in services.config.extensions:
        for binding in services.registrar().contacts(extension.number, now):
            if binding.source is not None and tuple(binding.source) == tuple(source):
                return str(extension.number)
    return None


async def pick_up(runner: Any, *, extension: str | None = None, target: str = "", leg: str = "") -> None:
    """A phone dialled the pickup code: answer it and bridge it to a call ringing its extension.

    Only a registered phone may pick up: its user authenticated (``extension``, ivr.runtime.phones)
    or, without credentials, its INVITE coming from the address it registered from.  It picks
    up a call whose ring plan includes its extension, or, directed (``target``, ``**201``), the
    call ringing that extension now (the one whose leg has Call-ID ``leg``, when a ``Replaces``
    named it): 403 and 404 otherwise.
    """
    services = runner.services
    if extension is None:  # without credentials: the phone registered from the INVITE's address
        loop = asyncio.get_running_loop()  # the registrations are looked up in a storage worker, off the loop
        extension = await loop.run_in_executor(
            services.storage_executor, picker_extension, services, runner.incoming.source
        )
        if runner.ended:
            return  # cancelled meanwhile
    if extension is None:
        runner._reject(403, "pickup: the caller is not a registered phone")
        return
    teams = pickup_teams(services.program) if not target else []
    wanted = target or extension
    session = next((s for s in services.ringing if s.rings_for(wanted, teams) and (not leg or leg in s.legs)), None)
    if session is None:
        runner._reject(404, f"pickup: no call is ringing for extension {wanted}")
        return
    if not await _answer_taker(runner, lambda: session.rings_for(wanted, teams), "pickup"):
        return
    runner.log(action="answer", codec=_codec(runner), pickup=extension)
    runner.transfer = _PickupLink(session)
    session.picked_up(runner, extension)


async def replace_leg(runner: Any, session: Any, leg: Any, confirmed: bool) -> None:
    """A phone's INVITE with Replaces naming ``leg`` (ivr.runtime.attended): a ringing leg is
    picked up, a bridged one is taken over (BYE to it)."""
    extension = runner.phone.extension.number

    def still() -> bool:
        if confirmed:
            return session.bridged is leg and not leg.done
        return not session.closed and not session.plan.finished and not leg.done

    if not await _answer_taker(runner, still, "replaces"):
        return
    if confirmed:
        runner.log(action="answer", codec=_codec(runner), replaces=leg.call_id)
        session.replaced_by(runner, leg)
        return
    runner.log(action="answer", codec=_codec(runner), replaces=leg.call_id, pickup=extension)  # a BLF key
    runner.transfer = _PickupLink(session)
    session.picked_up(runner, extension)


def _codec(runner: Any) -> str:
    answer = runner.sdp.answer
    return answer.codec.name if answer else "late-offer"


async def _answer_taker(runner: Any, still: Callable[[], bool], state: str) -> bool:
    """Answer a phone that takes a call over (pickup, Replaces) while ``still()`` holds; 481/404
    when the call went away meanwhile."""
    services = runner.services
    offer = runner._parse_offer(runner.incoming.offer)
    if offer is False:
        return False
    runner.media = await services.open_media()
    runner._wire_media(runner.media)
    if runner.ended or not still():  # the caller left, or someone answered, meanwhile
        runner.media.close()
        if not runner.ended:
            runner._reject(404 if state == "pickup" else 481, f"{state}: the call went away meanwhile")
        return False
    if offer is not None and not runner._negotiate(offer):
        return False
    if offer is None:
        runner._our_offer()
    runner.state = state
    services.ua.answer(runner.call_id, runner.sdp.local_sdp, services.sip_now())
    services.flush()
    runner.answered = True
    return True
