"""Blind transfer by REFER (RFC 3515): the flow's ``transfer to X by refer``.

Instead of ringing X ourselves and bridging, ivr asks the caller's side (a
PBX, a carrier, a phone) to call X: a REFER with ``Refer-To`` in the
caller's dialog.  The peer answers 202 (accepted) or refuses (403, 405,
501...: the flow hears ``failed``); then it reports progress in NOTIFYs
carrying a sipfrag status line: 1xx while X rings, 200 when X answered (the
flow hears ``answered`` and ends, and the runner hangs up our leg, as
RFC 5589 section 6.1 describes), or X's failure status (486 ``busy``,
408/480 ``no_answer`` ... as for our own legs).  A peer that never says how
it ended is given the plan's ring time plus ``GRACE`` seconds, then the
flow hears ``no_answer``.  A peer that accepted (202) and then ends our leg
with BYE before saying how it went has taken the call over: ``answered``.

Only the plan's first target is referred (a group cannot be handed over:
the peer would ring one number).  Refer-To is the target's first contact for an extension, or
``sip:NUMBER@HOST`` for an external number, where HOST is the address the
call came from (the carrier that must place the new call).
"""

from __future__ import annotations

import asyncio
from typing import Any

from ivr.dsl.events import TransferOutcome
from ivr.runtime.outcomes import Unreachable, outcome_for_status
from ivr.sip.events import CallEnded, ReferProgress
from ivr.sip.trunk import is_external

GRACE = 10.0  # seconds beyond the ring time before a silent REFER counts as no answer


class BlindTransfer:
    """One REFER for a :class:`~ivr.runtime.transfer.TransferSession` (see the module docstring)."""

    def __init__(self, session: Any, target: str) -> None:
        self.session = session
        self.caller = session.caller
        self.services = session.services
        self.target = target
        self.done = False
        self.accepted = False
        self._timer: asyncio.TimerHandle | None = None

    def refer_to(self) -> str:
        if is_external(self.target) and self.services.config.extension(self.target) is None:
            host, port = self.caller.incoming.source
            return f"sip:{self.target}@{host}:{port}"
        bindings = self.services.registrar().contacts(self.target, self.services.wall())
        if not bindings:
            raise Unreachable("unavailable", f"extension {self.target} has no registered or static contact")
        return str(bindings[0].uri)

    def start(self) -> None:
        """Look up the Refer-To in a storage worker (an extension's registrations are in the database,
        which must never hold the event loop), then send the REFER."""
        future = asyncio.get_running_loop().run_in_executor(self.services.storage_executor, self.refer_to)
        future.add_done_callback(self._looked_up)

    def _looked_up(self, future: asyncio.Future[str]) -> None:
        if self.done or self.session.closed or future.cancelled():
            return  # the caller left (or the server stops) meanwhile
        error = future.exception()
        if isinstance(error, Unreachable):
            self._finish(error.outcome, str(error))
        elif error is not None:
            self._finish("failed", f"looking up {self.target}: {error}")
        else:
            self._send(future.result())

    def _send(self, uri: str) -> None:
        call_id = self.caller.call_id
        self.services.legs[call_id] = self.on_event
        sent = self.services.ua.refer(call_id, uri, self.services.sip_now(),
                                      referred_by=f"sip:ivr@{self.services.contact_host}")
        self.services.flush()
        if not sent:
            self._finish("failed", "the call has no confirmed dialog to send a REFER in")
            return
        self.caller.log(event="refer_sent", target=self.target, refer_to=uri)
        ring = max((t for _, t in self.session.action.plan), default=30.0)
        self._timer = asyncio.get_running_loop().call_later(ring + GRACE, self._timeout)

    def on_event(self, event: object) -> bool:
        """Only the REFER's progress is ours; every other event of the call goes to its runner."""
        if isinstance(event, CallEnded) and self.accepted and not self.done:
            self._finish("answered", "the peer ended our leg after accepting the REFER")
            return False  # the runner still hears the BYE
        if not isinstance(event, ReferProgress) or self.done:
            return False
        self.caller.log(event="refer_progress", kind=event.kind, status=event.status, final=event.final)
        if event.kind == "response":
            self.accepted = 200 <= event.status < 300
            if event.status >= 300:
                self._finish("failed", f"REFER refused with {event.status}")
        elif event.status >= 200:
            self._finish("answered" if event.status < 300 else outcome_for_status(event.status),
                         f"sipfrag {event.status}")
        elif event.final:
            self._finish("failed", "the subscription ended without a final status")
        return True

    def _timeout(self) -> None:
        self._timer = None
        self._finish("no_answer", "no final NOTIFY in time")

    def _finish(self, outcome: TransferOutcome, reason: str) -> None:
        if self.done:
            return
        self.done = True
        self.close()
        self.caller.log(event="refer_done", target=self.target, outcome=outcome, reason=reason)
        self.session.refer_result(outcome, self.target)

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self.services.legs.get(self.caller.call_id) == self.on_event:
            del self.services.legs[self.caller.call_id]
