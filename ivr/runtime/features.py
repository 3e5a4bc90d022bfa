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
* (An INVITE with ``Replaces`` naming the early dialog in which a colleague's
  phone rings, a desk phone's BLF key, picks that very call up too: that is
  ivr.runtime.attended's, before any code is looked at.)
* ``*41`` / ``*40`` (``night_on``, ``night_off``): the night switch on or off, after
  ``night_pin`` (refused with 403 while no PIN is set);
* ``*51`` / ``*50`` (``follow_me_on``, ``follow_me_off``): the caller's own follow-me
  numbers on or off.  Both are :mod:`ivr.runtime.featurecodes`' dialogue.

:func:`feature_for` only decides which feature a dialled number is; the call
runner carries it out.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ivr.config import Config, Extension
from ivr.dsl.compiler import Program
from ivr.dsl.loader import load_flow

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


@dataclass(frozen=True)
class NightSwitch:
    """Flip ``switch`` to ``on`` after ``pin`` (ivr.runtime.featurecodes)."""

    on: bool
    switch: str
    pin: str


@dataclass(frozen=True)
class FollowMe:
    """The caller's follow-me numbers on or off (ivr.runtime.featurecodes)."""

    on: bool


Feature = OwnMailbox | Pickup | NightSwitch | FollowMe | Unknown


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
    switch = _switch_feature(config, dialled)
    if switch is not None:
        return switch
    prefix = codes.directed_pickup
    if prefix and dialled.startswith(prefix) and len(dialled) > len(prefix):
        target = dialled[len(prefix):]
        if config.extension(target) is None:
            return Unknown(404, f"pickup: no extension {target}")
        return Pickup(target)
    return None


def _switch_feature(config: Config, dialled: str) -> Feature | None:
    codes = config.features
    if codes.follow_me_on and dialled == codes.follow_me_on:
        return FollowMe(True)
    if codes.follow_me_off and dialled == codes.follow_me_off:
        return FollowMe(False)
    if dialled not in {c for c in (codes.night_on, codes.night_off) if c}:
        return None
    if not codes.night_pin:
        return Unknown(403, "the night switch codes need [features] night_pin")
    return NightSwitch(dialled == codes.night_on, codes.night_switch, codes.night_pin)


def feature_program() -> Program:
    """The built-in flow the feature codes run (compiled once per process)."""
    program = _PROGRAM.get("features")
    if program is None:
        program = _PROGRAM["features"] = load_flow([FEATURE_FLOW])
    return program
