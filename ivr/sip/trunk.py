"""Outbound calls through SIP trunks (ivr.toml ``[[trunks]]``).

A trunk is the carrier's SIP server: external numbers (anything that is not
one of our extensions) are sent there as ``sip:NUMBER@HOST`` with the
company number (``caller_id``) as the From user, so callees see the
company, not the original caller.  A number may be dialled only when the
flow names it AND one trunk's ``allow`` patterns permit it: a flow that
takes digits from the caller can never reach premium or foreign numbers the
deployment did not open.  Patterns are literal numbers or prefixes ending in
``*`` (``"+4179*"``); ``?`` stands for one digit.  Trunks are tried in file
order; the first that allows the number carries the call.

Authentication: IP-authenticated trunks need nothing; a trunk with a
``username`` answers 401/407 challenges with a :class:`~ivr.sip.auth.DigestClient`
(one per trunk, so nonce counts carry over between calls).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass

from ivr.config import Trunk
from ivr.sip.auth import DigestClient

_NUMBER = re.compile(r"\+?[0-9]{2,20}")


class TrunkRefused(Exception):
    """A number no trunk may dial; the message is the reason logged for the call."""


def is_external(target: str) -> bool:
    """A telephone number (E.164 ``+41...`` or national digits), not a name or a SIP URI."""
    return bool(_NUMBER.fullmatch(target))


def pattern_allows(pattern: str, number: str) -> bool:
    """``"+4179*"`` allows every number starting ``+4179``; ``?`` is one digit; else exact."""
    regex = "".join(".*" if c == "*" else "[0-9]" if c == "?" else re.escape(c) for c in pattern.strip())
    return re.fullmatch(regex, number) is not None


@dataclass(frozen=True)
class Route:
    """How one external number goes out: the trunk, Request-URI, next hop and From."""

    trunk: Trunk
    uri: str
    address: tuple[str, int]
    transport: str
    from_uri: str
    headers: tuple[tuple[str, str], ...]


class Trunks:
    """The deployment's trunks, with one digest client per authenticated trunk."""

    def __init__(self, trunks: Sequence[Trunk]) -> None:
        self.trunks = tuple(trunks)
        self._auth = {t.name: DigestClient(t.username, t.password) for t in self.trunks if t.username}

    def choose(self, number: str) -> Trunk:
        """The first trunk whose ``allow`` patterns permit ``number``, else :class:`TrunkRefused`."""
        if not is_external(number):
            raise TrunkRefused(f"{number!r} is not a telephone number")
        if not self.trunks:
            raise TrunkRefused(f"no trunk is configured to dial {number}")
        for trunk in self.trunks:
            if any(pattern_allows(p, number) for p in trunk.allow):
                return trunk
        names = ", ".join(t.name for t in self.trunks)
        raise TrunkRefused(f"{number} is not allowed by any trunk's allow patterns ({names})")

    def route(self, number: str, *, local_host: str) -> Route:
        trunk = self.choose(number)
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        params = ";transport=tcp" if trunk.transport.lower() == "tcp" else ""
        uri = f"sip:{number}@{host}:{trunk.port}{params}"
        user = trunk.caller_id or trunk.username or "ivr"
        from_host = host if trunk.username else local_host
        headers: tuple[tuple[str, str], ...] = ()
        if trunk.caller_id:
            headers = (("P-Asserted-Identity", f"<sip:{trunk.caller_id}@{from_host}>"),)
        return Route(trunk, uri, (trunk.host, trunk.port), trunk.transport.lower(), f"sip:{user}@{from_host}", headers)

    def auth(self, trunk: Trunk) -> DigestClient | None:
        return self._auth.get(trunk.name)
