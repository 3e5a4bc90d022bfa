"""Feature codes dialled from the deployment's phones (``[features]``, ``[transfers] pickup_code``).

A phone's authenticated call (ivr.runtime.phones) whose number is a feature code
does not go to the dial plan:

* ``*97`` (``voicemail``): the caller's own mailbox, the extension's ``mailbox``
  or else its number; the mailbox dialogue asks for its PIN.  It runs the
  built-in flow ``features.ivr`` (``voicemail access {called}``).
* ``*8`` (``[transfers] pickup_code``): pick up a call ringing the caller's
  extension or a group it belongs to (ivr.runtime.transfer.pick_up).
* ``**201`` (``directed_pickup`` and an extension): pick up the call ringing
  extension 201, the colleague whose lamp blinks.
* An INVITE with ``Replaces`` (RFC 3891) naming the early dialog in which a
  colleague's phone rings (its Call-ID, which the busy lamp's NOTIFY carries:
  ivr.runtime.lamps): a desk phone's BLF key picking that very call up
  (:func:`replaced_pickup`); a ``Replaces`` naming no ringing call gets 481.

:func:`feature_for` only decides which feature a dialled number is; the call
runner carries it out.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from ivr.config import Config, Extension
from ivr.dsl.compiler import Program
from ivr.dsl.loader import load_flow
from ivr.sip.message import Request
from ivr.sip.refer import ReferError, parse_replaces

FEATURE_FLOW = Path(__file__).with_name("features.ivr")
_PROGRAM: dict[str, Program] = {}


@dataclass(frozen=True)
class OwnMailbox:
    """Listen to one's own voicemail: the flow's ``voicemail`` step with ``mailbox`` as ``{called}``."""

    mailbox: str


@dataclass(frozen=True)
class Pickup:
    """Pick up a call ringing ``target`` (an extension), or the caller's own extension or group ("");
    ``leg`` is the Call-ID of the ringing leg a ``Replaces`` named ("" for any call ringing there)."""

    target: str = ""
    leg: str = ""


@dataclass(frozen=True)
class Unknown:
    """A feature code that cannot be carried out: answer ``status`` with ``reason``."""

    status: int
    reason: str


Feature = OwnMailbox | Pickup | Unknown


def feature_for(config: Config, caller: Extension, dialled: str) -> Feature | None:
    """The feature ``dialled`` asks for, or None when it is a number for the dial plan."""
    codes = config.features
    if codes.voicemail and dialled == codes.voicemail:
        mailbox = caller.mailbox or caller.number
        if config.mailbox(mailbox) is None:
            return Unknown(404, f"extension {caller.number} has no mailbox")
        return OwnMailbox(mailbox)
    if config.transfers.pickup_code and dialled == config.transfers.pickup_code:
        return Pickup()
    prefix = codes.directed_pickup
    if prefix and dialled.startswith(prefix) and len(dialled) > len(prefix):
        target = dialled[len(prefix):]
        if config.extension(target) is None:
            return Unknown(404, f"pickup: no extension {target}")
        return Pickup(target)
    return None


def replaced_pickup(request: Request, ringing: Mapping[str, str]) -> Pickup | Unknown | None:
    """The pickup an INVITE's ``Replaces`` asks for (None without one).

    ``ringing`` maps the Call-ID of every leg ringing an extension now to that extension.
    The Call-ID is what identifies the early dialog: its tags are checked by nobody else
    either, since ivr's own tag of the leg and the phone's are both in the busy lamp's NOTIFY
    and phones differ in which they put in ``to-tag`` and which in ``from-tag``.
    """
    values = request.headers.get_all("Replaces")
    if not values:
        return None
    try:
        replaces = parse_replaces(values[0])
    except ReferError as exc:
        return Unknown(400, f"Bad Request ({exc.reason})")
    target = ringing.get(replaces.call_id)
    if target is None:
        return Unknown(481, "Call/Transaction Does Not Exist (Replaces names no ringing call)")
    return Pickup(target, replaces.call_id)


def feature_program() -> Program:
    """The built-in flow the feature codes run (compiled once per process)."""
    program = _PROGRAM.get("features")
    if program is None:
        program = _PROGRAM["features"] = load_flow([FEATURE_FLOW])
    return program
