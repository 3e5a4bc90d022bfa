"""Click-to-call (the callback procedure): ring a user's own phone, and when they answer, dial the number.

:class:`ClickToCall` places one INVITE to the first contact of the user's extension (a
registered phone, else a static contact), showing the number it is about to dial as the caller.
When the phone answers, a :class:`~ivr.runtime.transfer.TransferSession` rings the number as a
flow's ``transfer to NUMBER for 30s`` would -- ringback on the user's phone, the same
destinations, the same bridge -- with this call in the caller's place.  When either side hangs
up, or the number does not answer, the other side is hung up.

Who may be dialled is the phone's own dial plan: an extension of the deployment, or a number
outside when the user's extension may call out (``may_call_out``, within its ``allow``
patterns: :func:`~ivr.runtime.phones.trunk_permission`, the rule the user's own phone obeys)
and a trunk takes it.  Anything else is refused with :class:`ClickToCallError` (403) before a
phone rings.  The call carries the user as its :class:`~ivr.runtime.phones.PhoneCaller`, so
the transfer applies the same rule again and the trunk shows the user's ``caller_id``.
"""

from __future__ import annotations

import asyncio
import logging
import random
from collections.abc import Callable
from typing import Any

from ivr.dsl import events as ev
from ivr.runtime.outcomes import Unreachable
from ivr.runtime.phones import PhoneCaller, trunk_permission
from ivr.runtime.ports import CallMedia
from ivr.runtime.services import Services
from ivr.runtime.transfer import TransferSession
from ivr.sip import sdp
from ivr.sip.events import CallEnded, OutgoingCallAnswered, OutgoingCallFailed
from ivr.sip.trunk import TrunkRefused, is_external

log = logging.getLogger("ivr.runtime.call")

PHONE_RING_TIME = 30.0  # seconds the user's own phone rings
TARGET_RING_TIME = 30.0  # then the number, as `transfer to NUMBER for 30s`


class ClickToCallError(Exception):
    """A click-to-call that cannot be placed; ``status`` is the HTTP status the console answers."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def allowed_target(services: Services, phone: PhoneCaller, target: str) -> None:
    """The phone's dial plan: an extension, or a number a trunk takes that the user may call."""
    if services.config.extension(target) is not None:
        return
    if not is_external(target):
        raise ClickToCallError(404, f"{target!r} is neither an extension nor a telephone number")
    refusal = trunk_permission(phone, target, target, services.literal_numbers, services.config,
                               services.choices().numbers)
    if refusal:
        raise ClickToCallError(403, refusal)
    try:
        services.trunks.choose(target)
    except TrunkRefused as exc:
        raise ClickToCallError(403, str(exc)) from None


class ClickToCall:
    """One click-to-call: the user's phone leg, then a transfer to the number (a :class:`CallerSide`)."""

    def __init__(self, services: Services, extension: str, target: str,
                 on_finished: Callable[[ClickToCall], None] = lambda _: None) -> None:
        self.services = services
        self.caller = extension  # the number's phone shows the user's extension
        self.called = target  # what the user "dialled": the dial plan's rule for calls out
        user = services.config.extension(extension)
        assert user is not None, "the console checks the extension before a click-to-call"
        self.phone = PhoneCaller(user)
        self.incoming: Any = None  # no INVITE came in (a REFER transfer would need one)
        self.call_id = ""
        self.media: CallMedia | None = None
        self.ended = False
        self.state = "ringing_phone"
        self.transfer: TransferSession | None = None
        self.on_finished = on_finished
        self._timer: asyncio.TimerHandle | None = None

    def log(self, **fields: Any) -> None:
        self.services.calllog.call(self.call_id, caller=self.caller, called=self.called, state=self.state, **fields)

    def answer_now(self) -> None:
        """Nothing to answer: the user's own phone answered before the number was rung."""

    async def start(self) -> str:
        """Ring the user's phone; the Call-ID of that leg.  ClickToCallError when it cannot ring."""
        allowed_target(self.services, self.phone, self.called)
        try:
            destination = self.services.destinations_for(self.caller, self.called)[0]
        except (Unreachable, IndexError):
            raise ClickToCallError(409, f"extension {self.caller} has no phone to ring (none registered)") from None
        services = self.services
        media = self.media = await services.open_media()
        media.on_timeout = lambda: self.hangup("media_timeout")
        self._offer = sdp.make_offer(services.contact_host, media.local_port, session_id=random.randint(1, 2**31),
                                     version=1)
        self.call_id = services.ua.invite(
            destination.uri, bytes(self._offer), services.sip_now(),
            from_uri=f"sip:{self.called}@{services.contact_host}", headers=destination.headers,
            destination=destination.address, transport=destination.transport, auth=destination.auth)
        self._destination = destination
        services.legs[self.call_id] = self.on_event
        services.flush()
        self._timer = asyncio.get_running_loop().call_later(PHONE_RING_TIME, self.hangup, "phone_no_answer")
        self.log(event="click_to_call", uri=destination.uri, target=self.called)
        return self.call_id

    def on_event(self, event: object) -> None:
        """The user agent's events about the user's phone leg."""
        if isinstance(event, OutgoingCallAnswered):
            self._answered(event.answer)
        elif isinstance(event, OutgoingCallFailed):
            self._finish(f"phone_{event.status}")
        elif isinstance(event, CallEnded) and event.reason != "local":
            self._finish("phone_hung_up")

    def _answered(self, body: bytes) -> None:
        assert self.media is not None
        if self._timer is not None:
            self._timer.cancel()
        try:
            answer = sdp.parse_answer(self._offer, body)
        except (sdp.SdpError, sdp.NegotiationError) as exc:
            self.log(event="leg_bad_answer", error=str(exc))
            self.hangup("bad_answer")
            return
        self.media.configure(remote=answer.remote_addr, payload_type=answer.codec.payload_type,
                             dtmf_pt=answer.dtmf_pt, direction=answer.local_direction, ptime=answer.ptime,
                             signalling_host=self._destination.address[0])
        self.state = "dialling"
        self.log(event="phone_answered")
        self.transfer = TransferSession(self, ev.Transfer(plan=(((self.called,), TARGET_RING_TIME),)), self._post)
        self.transfer.start()

    def _post(self, event: ev.Event) -> None:
        """The transfer's results: bridged, or over."""
        if isinstance(event, ev.TransferResult) and event.outcome == "answered":
            self.state = "bridged"
            return
        reason = f"target_{event.outcome}" if isinstance(event, ev.TransferResult) else "bridge_ended"
        self.hangup(reason)

    def hangup(self, reason: str) -> None:
        """End it from our side: CANCEL or BYE the user's phone, end the transfer."""
        if self.ended:
            return
        self.services.ua.hangup(self.call_id, self.services.sip_now())
        self.services.flush()
        self._finish(reason)

    def _finish(self, reason: str) -> None:
        if self.ended:
            return
        self.ended = True
        if self._timer is not None:
            self._timer.cancel()
        if self.transfer is not None:
            self.transfer.close()
        if self.media is not None:
            self.media.close()
        self.services.legs.pop(self.call_id, None)
        self.state = "ended"
        self.log(event="ended", reason=reason, outcome="click_to_call")
        self.on_finished(self)
