"""Attended transfer by a phone (RFC 5589 section 7) and INVITEs that replace a dialog (RFC 3891).

Attended transfer: ivr bridged a caller to the phone of 201 (call A: the caller's call and
the leg ivr placed to 201).  201 holds A (the caller hears hold music, ivr.runtime.bridge),
calls 202 through ivr (call B: 201's own call, bridged to a leg to 202), talks to 202, then
sends a REFER on A's leg whose ``Refer-To`` carries ``Replaces`` naming B's dialog.  ivr
is the far end of that dialog, so it carries the transfer out itself instead of sending
an INVITE with Replaces anywhere: :class:`AttendedTransfer`

* finds the dialog (:meth:`ivr.sip.client.ClientSide.replaced`; RFC 3891's refusals,
  ``481`` when it names no dialog, become the sipfrag of the NOTIFY);
* checks that 201 may hand it over: the named call must be 201's own (its phone's call,
  or a leg ivr placed to 201's phone) and bridged to somebody, else ``403`` / ``481``;
* joins the caller with B's other party: 202's leg moves from B's transfer session to
  A's (a :class:`~ivr.runtime.bridge.Bridge` between the caller and 202), or, when B is a
  call ivr placed to 201 for another caller, that caller's call is bridged to A's caller
  as a pickup is (``TransferSession.join_caller``);
* tells 201 (NOTIFY with a ``200`` sipfrag) and ends 201's two legs with BYE.

A refusal leaves every call as it was: A bridged (and held) to 201, B bridged to 202.

An INVITE with a ``Replaces`` header (:func:`replacing`) takes the place of one of ivr's
dialogs: an authenticated phone's INVITE naming a leg ivr is ringing is a pickup of that
call (the BLF key of a desk phone), one naming a leg ivr bridged to the same extension's
phone moves that call to the new phone.  ``481`` when it names no dialog, ``486`` for an
``early-only`` one that was answered, ``403`` when the phone may not take it over (an
unauthenticated caller, another extension's call, a call ivr answered).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from ivr.sip.events import ReferReceived
from ivr.sip.replaces import Replaced, ReplacesError
from ivr.sip.replaces import parse_header as parse_replaces_header

Refusal = tuple[int, str]


@dataclass(frozen=True)
class Consultation:
    """The consultation call a REFER's Replaces names: the session bridging it, and the leg of
    it that goes to the transferor's phone (``None`` when the call is the phone's own)."""

    session: Any  # TransferSession
    runner: Any  # the CallRunner the session belongs to
    leg: Any = None  # the Leg ivr placed to the transferor's phone, for a call it received


class AttendedTransfer:
    """One REFER with Replaces from the phone of ``session``'s bridged ``leg`` (module docstring)."""

    def __init__(self, session: Any, leg: Any, event: ReferReceived) -> None:
        self.session = session
        self.leg = leg
        self.event = event
        self.services = session.services
        self.caller = session.caller

    def start(self) -> None:
        found = self.consultation()
        replaces = self.event.target.replaces
        self.caller.log(event="phone_refer", leg=self.leg.call_id, by=self.leg.target, target=self.event.target.user,
                        refer_to=self.event.target.uri, replaces=replaces.call_id if replaces else "",
                        refused=found[0] if isinstance(found, tuple) else 0)
        if isinstance(found, tuple):
            self.notify(*found)
            return
        self.notify(100)
        self.join(found)

    # ------------------------------------------------------------------ finding the consultation call

    def consultation(self) -> Consultation | Refusal:
        replaces = self.event.target.replaces
        assert replaces is not None
        try:
            named = self.services.ua.replaced(replaces)
        except ReplacesError as exc:
            return exc.status, exc.reason
        if named.call_id == self.caller.call_id or named.call_id == self.leg.call_id:
            return 403, "Replaces names the call being transferred"
        if named.role == "uas":
            return self._own_call(named)
        return self._leg_to_phone(named)

    def _own_call(self, named: Replaced) -> Consultation | Refusal:
        """The consultation call is the transferor's phone's own call through ivr."""
        runner = self.services.calls.get(named.call_id)
        if runner is None or runner.ended:
            return 481, "Call/Transaction Does Not Exist"
        phone = runner.phone
        if phone is None or phone.extension.number != self.leg.target:
            return 403, "Not the transferor's call"
        session = runner.transfer
        if not _bridged(session):
            return 481, "Consultation call not connected"
        return Consultation(session, runner)

    def _leg_to_phone(self, named: Replaced) -> Consultation | Refusal:
        """The consultation call is one ivr placed to the transferor's phone for another caller."""
        found = leg_named(self.services, named)
        if found is None:
            return 481, "Call/Transaction Does Not Exist"
        runner, session, leg = found
        if leg.target != self.leg.target:
            return 403, "Not the transferor's call"
        if not _bridged(session) or session.bridged is not leg or runner is self.caller:
            return 481, "Consultation call not connected"
        return Consultation(session, runner, leg)

    # ------------------------------------------------------------------ the join

    def join(self, found: Consultation) -> None:
        session = self.session
        if session.bridge is not None:
            session.bridge.stop()
            session.bridge = None
        self.notify(200)
        session.drop_transferor()  # BYE to the transferor's leg of the call transferred
        if found.leg is None:  # the transferor's own call to a colleague: the colleague's leg moves
            other = found.session.bridged
            found.session.release(other)
            session.adopt(other)
            found.runner.hangup("transferred")  # BYE to the transferor's phone on its own call
            joined = other.target
        else:  # a call ivr placed to the transferor for another caller: that caller is joined
            found.session.drop_transferor()
            found.session.release(None)
            session.join_caller(found.runner)
            joined = found.runner.caller
        self.caller.log(event="phone_refer_done", target=joined, outcome="answered", attended=True,
                        consultation=found.runner.call_id)

    def notify(self, status: int, reason: str | None = None) -> None:
        if self.leg.done:
            return
        self.services.ua.notify_refer(self.leg.call_id, status, self.services.sip_now(), reason=reason)
        self.services.flush()
        self.caller.log(event="phone_refer_notify", leg=self.leg.call_id, status=status)


def _bridged(session: Any) -> bool:
    return (session is not None and getattr(session, "bridge", None) is not None
            and session.bridged is not None and not session.closed)


# --------------------------------------------------------------------------- INVITE with Replaces


def replacing(runner: Any) -> Refusal | Replaced | None:
    """What an INVITE's ``Replaces`` header names: None without one, the dialog (with the session
    and leg checked by :func:`take_over`), or why it is refused (RFC 3891 section 3)."""
    try:
        replaces = parse_replaces_header(runner.incoming.request)
    except ReplacesError as exc:
        return exc.status, exc.reason
    if replaces is None:
        return None
    try:
        named = runner.services.ua.replaced(replaces)
    except ReplacesError as exc:
        return exc.status, exc.reason
    if runner.phone is None:
        return 403, "Replaces needs an authenticated phone"
    return named


def leg_named(services: Any, named: Replaced) -> tuple[Any, Any, Any] | None:
    """(runner, transfer session, leg) of the outgoing call (``uac``) a Replaces names."""
    if named.role != "uac":
        return None
    for runner in list(services.calls.values()):
        session = runner.transfer
        leg = session.legs.get(named.call_id) if session is not None and hasattr(session, "legs") else None
        if leg is not None:
            return runner, session, leg
    return None


def take_over_refusal(runner: Any, named: Replaced) -> tuple[Refusal | None, Any, Any]:
    """(refusal or None, session, leg) for an INVITE with Replaces from ``runner``'s phone."""
    found = leg_named(runner.services, named)
    if found is None:
        return (403, "Only a call ivr placed to a phone can be replaced"), None, None
    _, session, leg = found
    extension = runner.phone.extension.number
    if not named.confirmed:
        if session.closed or session.plan.finished:
            return (481, "Call/Transaction Does Not Exist"), None, None
        return None, session, leg  # a ringing leg: picked up (any of the deployment's phones may)
    if leg.target != extension:
        return (403, "Another extension's call"), None, None
    if session.bridged is not leg or session.bridge is None:
        return (481, "Call/Transaction Does Not Exist"), None, None
    return None, session, leg
