"""Which of our dialogs a ``Replaces`` names (RFC 3891), sans-IO.

A ``Replaces`` arrives two ways: as the ``Replaces`` header of an INVITE (RFC 3891
section 6.1), or escaped inside the ``Refer-To`` URI of a REFER for an attended transfer
(RFC 5589 section 7; parsed by :func:`ivr.sip.refer.parse_refer`).  Both carry a
Call-ID, a ``to-tag`` and a ``from-tag`` as the *recipient* sees the dialog: the
``to-tag`` is our local tag, the ``from-tag`` the remote party's (RFC 3891 section 3).

This module owns

* :func:`parse_header`: the ``Replaces`` header of an INVITE into a
  :class:`~ivr.sip.refer.Replaces` (400 when it is malformed, or repeated);
* :func:`match`: the call of the user agent whose dialog it names, as a
  :class:`Replaced`, with RFC 3891 section 3's refusals as :class:`ReplacesError`:
  ``481`` when no dialog matches (or an early dialog we did not initiate), ``486``
  when ``early-only`` names a confirmed dialog, ``603`` when the dialog is over.

What may be replaced by whom is policy: the runtime decides (ivr.runtime.attended).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from ivr.sip.message import Request
from ivr.sip.refer import ReferError, Replaces, parse_replaces
from ivr.sip.uacore import Call


class ReplacesError(ValueError):
    """A ``Replaces`` that names no dialog we may replace: ``status`` is the answer to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Replaced:
    """The dialog a ``Replaces`` names: its Call-ID, our role in it, whether it was answered."""

    call_id: str
    role: Literal["uas", "uac"]
    confirmed: bool


def parse_header(request: Request) -> Replaces | None:
    """The ``Replaces`` header of an INVITE (None without one); :class:`ReplacesError` 400 when unusable."""
    values = request.headers.get_all("Replaces")
    if not values:
        return None
    if len(values) != 1:
        raise ReplacesError(400, f"an INVITE may carry one Replaces, got {len(values)}")
    try:
        return parse_replaces(values[0].strip())
    except ReferError as exc:
        raise ReplacesError(400, exc.reason) from None


def _remote_tag(call: Call) -> str | None:
    """The remote party's tag, None while an outgoing call has no dialog yet (still ringing)."""
    if call.dialog is not None:
        return call.dialog.remote_tag
    if call.role == "uas":
        return call.invite.from_.tag or ""
    return None


def match(calls: Mapping[str, Call], replaces: Replaces) -> Replaced:
    """The call whose dialog ``replaces`` names (RFC 3891 section 3), else :class:`ReplacesError`."""
    call = calls.get(replaces.call_id)
    remote = _remote_tag(call) if call is not None else None
    if call is None or call.local_tag != replaces.to_tag or remote not in (replaces.from_tag, None):
        raise ReplacesError(481, f"no dialog {replaces.call_id} with to-tag {replaces.to_tag} "
                                 f"and from-tag {replaces.from_tag}")
    if call.state == "ended" or call.hung_up or call.hangup_after_ack:  # we are ending it
        raise ReplacesError(603, f"dialog {replaces.call_id} is over")
    confirmed = call.state in ("answered", "confirmed")
    if confirmed and replaces.early_only:
        raise ReplacesError(486, f"dialog {replaces.call_id} is confirmed and the Replaces is early-only")
    if not confirmed and call.role == "uas":
        raise ReplacesError(481, f"dialog {replaces.call_id} is an early dialog we did not initiate")
    return Replaced(call.call_id, call.role, confirmed)
