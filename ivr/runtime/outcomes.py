"""What the flow hears when a transfer ends: the outcome of a SIP status, of several failures, of no route.

Shared by the ring plans of :mod:`ivr.runtime.transfer` (our own outgoing legs) and the
REFERs of :mod:`ivr.runtime.refer` (the peer's legs, reported in sipfrag NOTIFYs), so a
486 is ``busy`` whichever side placed the call.  The outcomes are the flow's
:data:`~ivr.dsl.events.TransferOutcome`.
"""

from __future__ import annotations

from collections.abc import Iterable

from ivr.dsl.events import TransferOutcome

# Which outcome wins when several targets failed differently: someone was rung and
# did not answer beats busy, busy beats a broken leg, which beats nobody to ring.
_PRIORITY: dict[TransferOutcome, int] = {"no_answer": 4, "busy": 3, "failed": 2, "unavailable": 1, "answered": 5}


def outcome_for_status(status: int) -> TransferOutcome:
    """The flow outcome of a final non-2xx answer to our INVITE (408 is also our own timeout)."""
    if status in (486, 600):
        return "busy"
    if status in (408, 480):
        return "no_answer"
    if status in (404, 410, 604):
        return "unavailable"
    return "failed"


def combine(outcomes: Iterable[TransferOutcome]) -> TransferOutcome:
    """One outcome for several failed targets (see ``_PRIORITY``); nobody rung is ``unavailable``."""
    return max(outcomes, key=lambda o: _PRIORITY[o], default="unavailable")


class Unreachable(Exception):
    """A target with no way to ring it; ``outcome`` is what the flow hears, the message why."""

    def __init__(self, outcome: TransferOutcome, reason: str) -> None:
        super().__init__(reason)
        self.outcome = outcome
