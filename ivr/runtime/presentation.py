"""Which number a forwarded call shows the phones and mobiles it rings.

Hosted PBXs call it "Angezeigte Nummer bei Umleitung": when a transfer, a ring
group, an extension's follow-me numbers or an on-call (Pikett) number ring
someone on a caller's behalf, each leg's INVITE says who is calling, and the
deployment file chooses between the caller's number and the company's:

* An extension's own phones show the caller's number (``shown_number =
  "caller"``, the default) or the company's, which is the number the caller
  dialled (``shown_number = "company"``), so staff see which line it came in on.
* A number outside, through a trunk, shows the company number (the trunk's
  ``caller_id``) unless the trunk says ``shown_number = "caller"`` (its carrier
  accepts numbers it did not assign) and the person rung does not want the
  company's: for an extension's follow-me number, that extension's setting
  counts.  How the trunk then writes it (From, P-Asserted-Identity, Diversion)
  is :mod:`ivr.sip.trunk`'s business.
* A caller without a telephone number (anonymous, withheld, a SIP name) is
  shown through a trunk as the company.

Pure: it reads the deployment's records and returns a :class:`Shown`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from ivr.config import Config, Extension


@dataclass(frozen=True)
class Shown:
    """Who one leg of a forwarded call says is calling."""

    caller: str  # the caller's number as their INVITE gave it
    company: str  # the number the caller dialled
    show_caller: bool = True  # the person rung wants the caller's number

    def phone_user(self) -> str:
        """The From user on an INVITE to one of an extension's phones."""
        return (self.caller if self.show_caller else self.company) or self.caller or "ivr"

    def trunk_caller(self) -> str:
        """The caller's number to offer a trunk (it shows it only if it may), or "" for the company's."""
        return self.caller if self.show_caller else ""


def shown_for(config: Config, target: str, ringing: Iterable[str], caller: str, called: str) -> Shown:
    """What a leg to ``target`` shows, on a transfer that rings ``ringing`` (its plan's targets)."""
    owner = person_rung(config, target, ringing)
    show_caller = owner is None or owner.shown_number == "caller"
    return Shown(caller, called, show_caller)


def person_rung(config: Config, target: str, ringing: Iterable[str]) -> Extension | None:
    """The extension a leg rings: the target itself, or the extension of this transfer whose
    follow-me number the target is; None for a number that is nobody's (an on-call mobile)."""
    extension = config.extension(target)
    if extension is not None:
        return extension
    for number in ringing:
        owner = config.extension(number)
        if owner is not None and target in owner.follow_me:
            return owner
    return None
