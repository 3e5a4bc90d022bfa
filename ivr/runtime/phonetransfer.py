"""Blind transfer by a phone (RFC 3515): the person ivr bridged a caller to transfers them on.

ivr rang a phone (``transfer to 201``) and bridged the caller to it; the person
at 201 presses their phone's transfer key and dials 202.  The phone sends a
REFER on the callee leg's dialog; the user agent answers 202 and reports
:class:`~ivr.sip.events.ReferReceived`, and the leg's
:class:`~ivr.runtime.transfer.TransferSession` hands it to :class:`PhoneTransfer`,
which owns the policy and the handover:

* Policy: only an internal extension of the deployment may be referred to.  A
  REFER to anything else (an external number, an unknown name) ends in a
  NOTIFY with a ``403`` sipfrag and the call stays as it was, bridged to 201.
  (Calls out for users allowed to, ``may_call_out``, are routed elsewhere; a
  phone's REFER does not reach a trunk.)  A REFER with ``Replaces`` (attended
  transfer, RFC 5589 section 7) is :mod:`ivr.runtime.attended`'s.
* Progress: a ``100 Trying`` sipfrag at once, then ``200 OK`` when 202 answers,
  or the failure (``486`` busy, ``480`` no answer or unreachable, ``500``
  failed), each time on the transferor's dialog.
* Meanwhile the caller hears hold music (the transfer's ``music``, else the
  deployment's default) while 202 rings: a new ``TransferSession`` to 202 does
  the ringing and, when 202 answers, the bridge.  The leg to 201 is then ended
  with BYE.
* If 202 does not answer, is busy or unreachable, the caller goes back to the
  transferor, as Asterisk's and 3CX's "transfer recall" do: back into the
  bridge with 201 if 201 is still on the line, else 201 is rung again.  A
  phone that hangs up when told its transfer failed (baresip 1.0.0 does) within
  ``RECALL_WINDOW`` seconds is rung again too.  When 201 does not answer that
  recall either, the bridge ends and the flow goes on after its transfer step
  (its own fallback).
"""

from __future__ import annotations

from typing import Any

from ivr.dsl import events as ev
from ivr.dsl.events import TransferOutcome
from ivr.sip.events import ReferReceived

RECALL_RING = 20.0  # seconds the transferor's phone rings again after a failed transfer
RECALL_WINDOW = 5.0  # a transferor hanging up this soon after its transfer failed is rung again
FAILURE_STATUS: dict[str, int] = {"busy": 486, "no_answer": 480, "unavailable": 480, "failed": 500}


class PhoneTransfer:
    """One REFER from the phone of ``session``'s bridged ``leg`` (see the module docstring)."""

    def __init__(self, session: Any, leg: Any, event: ReferReceived) -> None:
        self.session = session  # the TransferSession whose bridged leg referred
        self.leg = leg
        self.event = event
        self.services = session.services
        self.caller = session.caller
        self.target = event.target.user
        self.next: Any = None  # the TransferSession ringing the target (or the transferor again)
        self.recalling = False
        self.done = False
        self.failed_at: float | None = None  # when the transfer failed and the caller went back

    # ------------------------------------------------------------------ start

    def start(self) -> None:
        refused = self.refusal()
        self.caller.log(event="phone_refer", leg=self.leg.call_id, by=self.leg.target, target=self.target,
                        refer_to=self.event.target.uri, refused=refused[0] if refused else 0)
        if refused is not None:
            self.notify(*refused)
            self.done = True
            return
        self.notify(100)
        self.session.handover = self
        if self.session.bridge is not None:
            self.session.bridge.stop()
            self.session.bridge = None
        self.ring(self.target, self.ring_time())

    def refusal(self) -> tuple[int, str] | None:
        """Why this REFER cannot be carried out (status, reason), or None."""
        if not self.target or self.services.config.extension(self.target) is None:
            return 403, "Only internal extensions"
        if self.target == self.leg.target:
            return 403, "Transfer to oneself"
        return None

    def ring_time(self) -> float:
        return max((t for _, t in self.session.action.plan), default=30.0)

    def ring(self, target: str, timeout: float) -> None:
        music = self.session.action.music or self.services.hold_music.default
        self.next = self.session.spawn(ev.Transfer(plan=(((target,), timeout),), music=music), self.on_result)

    # ------------------------------------------------------------------ results

    def on_result(self, event: ev.Event) -> None:
        """What the new session posts: its TransferResult, later its BridgeEnded."""
        if isinstance(event, ev.TransferResult) and not self.done:
            if self.recalling:
                self.recalled(event.outcome)
            else:
                self.transferred(event.outcome)
        elif isinstance(event, ev.BridgeEnded) and self.done:
            self.session.post(event)  # the flow goes on after the new bridge as after its own

    def transferred(self, outcome: TransferOutcome) -> None:
        self.caller.log(event="phone_refer_done", target=self.target, outcome=outcome)
        if outcome == "answered":
            self.notify(200)
            self.done = True
            self.session.drop_transferor()
            return
        self.notify(FAILURE_STATUS.get(outcome, 500))
        self.next.close()
        if not self.leg.done and self.caller.media is not None:
            self.rebridge()
            return
        self.recall()

    def rebridge(self) -> None:
        """Back to the transferor, still on the line: the old bridge again."""
        self.done = True
        self.failed_at = self.services.wall()
        self.session.rebridge()
        self.caller.log(event="phone_refer_back", target=self.leg.target)

    def recall(self) -> None:
        """The transferor left: ring it again, the caller on hold music meanwhile."""
        self.done, self.recalling = False, True
        self.caller.log(event="phone_refer_recall", target=self.leg.target)
        self.ring(self.leg.target, RECALL_RING)

    def transferor_gone(self, leg: Any) -> bool:
        """The leg of ``session`` ended: True when this transfer takes care of the caller."""
        if leg is not self.leg:
            return False
        if not self.done:
            return True  # the target is ringing: a failure rings the transferor again
        if self.failed_at is None or self.services.wall() - self.failed_at > RECALL_WINDOW:
            return False
        self.failed_at = None
        self.session.unbridge()
        self.recall()
        return True

    def recalled(self, outcome: TransferOutcome) -> None:
        self.caller.log(event="phone_refer_recall_done", target=self.leg.target, outcome=outcome)
        self.done = True
        if outcome != "answered":
            self.next.close()
            self.session.post(ev.BridgeEnded())

    # ------------------------------------------------------------------ helpers

    def notify(self, status: int, reason: str | None = None) -> None:
        if self.leg.done:
            return
        self.services.ua.notify_refer(self.leg.call_id, status, self.services.sip_now(), reason=reason)
        self.services.flush()
        self.caller.log(event="phone_refer_notify", leg=self.leg.call_id, status=status)

    def close(self) -> None:
        """The caller's call is ending: stop ringing the target (or hang up its bridge)."""
        if self.next is not None:
            self.next.close()
        if not self.done:
            self.done = True
            self.notify(487)
