"""Outbound calls through SIP trunks.

A trunk is the carrier's SIP server: external numbers (anything that is not
one of our extensions) are sent there as ``sip:NUMBER@HOST`` with the
company number (``caller_id``) as the From user, so callees see the
company, not the original caller.  A trunk whose carrier accepts numbers it
did not assign ("CLIP no screening") may say ``shown_number = "caller"``: a
call forwarded on a caller's behalf then shows the caller's number in From
and P-Asserted-Identity (RFC 3325), and names the company number in a
Diversion header (RFC 5806) as the party that forwarded it.  A number may be dialled only when the
flow names it AND one trunk's ``allow`` patterns permit it: a flow that
takes digits from the caller can never reach premium or foreign numbers the
deployment did not open.  Patterns are literal numbers or prefixes ending in
``*`` (``"+4179*"``); ``?`` stands for one digit.  Trunks are tried in file
order; the first that allows the number carries the call.

Authentication: IP-authenticated trunks need nothing; a trunk with a
``username`` answers 401/407 challenges with a :class:`~ivr.sip.auth.DigestClient`
(one per trunk, so nonce counts carry over between calls).

Registration: a trunk with ``register = true`` gets a sans-IO
:class:`TrunkRegistration` that says which REGISTER to send when and reads the
answers (challenges, the granted interval); ivr.runtime.trunks sends them.

A trunk is described by this module's own :class:`Trunk` record; the runtime
builds them from ivr.toml's ``[[trunks]]`` (ivr.runtime.sipconfig).
"""

from __future__ import annotations

import re
import secrets
from collections.abc import Sequence
from dataclasses import dataclass

from ivr.sip.auth import DigestClient, DigestError, parse_digest
from ivr.sip.message import NameAddr, split_quoted, uri_key

_NUMBER = re.compile(r"\+?[0-9]{2,20}")


@dataclass(frozen=True)
class Trunk:
    """One carrier's SIP server and what ivr may do through it.

    ``transport`` is "udp" or "tcp"; ``username``/``password`` answer its digest
    challenges (empty: authenticated by IP); ``register`` keeps ivr registered
    there; ``caller_id`` is the number presented on outbound calls; ``allow``
    the dial patterns calls may reach (``"+4179*"``); ``shown_number`` is what a
    forwarded call shows: ``"company"`` (``caller_id``) or ``"caller"`` (the caller's
    own number, when the carrier accepts it).
    """

    name: str
    host: str
    port: int = 5060
    transport: str = "udp"
    username: str = ""
    password: str = ""
    register: bool = False
    caller_id: str = ""
    allow: tuple[str, ...] = ()
    shown_number: str = "company"


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

    def route(self, number: str, *, local_host: str, caller: str = "", caller_id: str = "") -> Route:
        """How ``number`` goes out.  ``caller``: a caller's number to show instead of the
        company's, on a call forwarded on their behalf; only a trunk with ``shown_number =
        "caller"`` shows it, and only a telephone number.  ``caller_id``: the number a staff
        phone's own call shows (the user's), instead of the trunk's."""
        trunk = self.choose(number)
        host = f"[{trunk.host}]" if ":" in trunk.host else trunk.host
        params = ";transport=tcp" if trunk.transport.lower() == "tcp" else ""
        uri = f"sip:{number}@{host}:{trunk.port}{params}"
        from_host = host if trunk.username else local_host
        user, headers = _identity(trunk, caller, from_host, caller_id)
        return Route(trunk, uri, (trunk.host, trunk.port), trunk.transport.lower(), f"sip:{user}@{from_host}", headers)

    def auth(self, trunk: Trunk) -> DigestClient | None:
        return self._auth.get(trunk.name)


def _identity(trunk: Trunk, caller: str, host: str, caller_id: str = "") -> tuple[str, tuple[tuple[str, str], ...]]:
    """The From user and identity headers of an outbound INVITE through ``trunk``: a staff
    phone's own number (``caller_id``), a forwarded caller's number where the trunk shows it,
    else the company's."""
    if caller_id:
        return caller_id, (("P-Asserted-Identity", f"<sip:{caller_id}@{host}>"),)
    company = trunk.caller_id
    if trunk.shown_number == "caller" and is_external(caller):
        headers = [("P-Asserted-Identity", f"<sip:{caller}@{host}>")]
        if company:  # who forwarded it (RFC 5806): the number the carrier knows us by
            headers.append(("Diversion", f"<sip:{company}@{host}>;reason=unconditional"))
        return caller, tuple(headers)
    if company:
        return company, (("P-Asserted-Identity", f"<sip:{company}@{host}>"),)
    return trunk.username or "ivr", ()


# --------------------------------------------------------------------------- registration


@dataclass
class RegisterRequest:
    """One REGISTER to send: Request-URI and headers (the UA adds Via and Max-Forwards)."""

    uri: str
    headers: list[tuple[str, str]]


class TrunkRegistration:
    """Keeps ivr registered with a trunk that wants it (RFC 3261 section 10.2), sans-IO.

    :meth:`request` gives the REGISTER to send now; :meth:`response` takes the final
    answer's status and headers and says what happens next: a 401/407 is answered at
    once with credentials (once per nonce, so a wrong password does not loop), a 2xx
    is refreshed at 80 % of the granted interval (Contact ``expires`` or Expires), any
    failure is retried after ``retry`` seconds.  Same Call-ID, CSeq going up, throughout.
    """

    def __init__(self, trunk: Trunk, contact: str, call_id: str, *, auth: DigestClient | None = None,
                 expires: int = 3600, retry: float = 60.0) -> None:
        self.trunk = trunk
        self.contact = contact
        self.call_id = call_id
        self.auth = auth
        self.expires = expires
        self.retry = retry
        self.cseq = 0
        self.registered_until: float | None = None
        self.next_at: float | None = 0.0  # send the first REGISTER at once
        self.last_status = 0
        self._credentials: list[tuple[str, str]] = []
        self._nonces: set[str] = set()
        self._tag = secrets.token_hex(5)

    @property
    def uri(self) -> str:
        host = f"[{self.trunk.host}]" if ":" in self.trunk.host else self.trunk.host
        return f"sip:{host}:{self.trunk.port}"

    def request(self, now: float) -> RegisterRequest:
        self.cseq += 1
        self.next_at = None  # until the answer (or its timeout) arrives
        aor = f"sip:{self.trunk.username or self.trunk.caller_id or 'ivr'}@{self.trunk.host}"
        headers = [
            ("From", f"<{aor}>;tag={self._tag}"), ("To", f"<{aor}>"), ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} REGISTER"), ("Contact", self.contact), ("Expires", str(self.expires)),
            *self._credentials,
        ]
        return RegisterRequest(self.uri, headers)

    def unregister(self, now: float) -> RegisterRequest | None:
        """The REGISTER that removes our binding (Expires 0) when ivr stops, if we are registered.

        Answers the last challenge again (next nonce count): a trunk that challenges once more
        is not followed at shutdown; its binding then expires by itself."""
        if self.registered_until is None or now >= self.registered_until:
            return None
        self.registered_until = None
        self.next_at = None
        request = self.request(now)
        request.headers = [(n, "0" if n == "Expires" else v) for n, v in request.headers]
        if self.auth is not None:
            request.headers += self.auth.again("REGISTER", request.uri)
        return request

    def response(self, status: int, headers: Sequence[tuple[str, str]], now: float) -> str:
        """``"challenged"`` (send again now), ``"registered"`` or ``"failed"`` (retry later)."""
        self.last_status = status
        if status in (401, 407) and self.auth is not None and self._new_nonce(headers):
            try:
                self._credentials = self.auth.credentials(status, headers, "REGISTER", self.uri)
            except ValueError:
                return self._failed(now)
            self.next_at = now
            return "challenged"
        if 200 <= status < 300:
            granted = _granted(headers, self.contact) or self.expires
            self.registered_until = now + granted
            self.next_at = now + max(5.0, granted * 0.8)
            self._nonces.clear()
            if self.auth is not None and self._credentials:
                self._credentials = []  # the next refresh will be challenged afresh if the trunk wants
            return "registered"
        return self._failed(now)

    def _failed(self, now: float) -> str:
        self.registered_until = None
        self.next_at = now + self.retry
        self._credentials = []
        self._nonces.clear()
        return "failed"

    def _new_nonce(self, headers: Sequence[tuple[str, str]]) -> bool:
        challenges = [_digest_params(v) for n, v in headers
                      if n.lower() in ("www-authenticate", "proxy-authenticate")]
        nonces = {p["nonce"] for p in challenges if "nonce" in p}
        stale = any(p.get("stale", "").lower() == "true" for p in challenges)
        if nonces and nonces <= self._nonces and not stale:
            return False  # the same challenge again: our password is wrong
        self._nonces |= nonces
        return True


def _digest_params(value: str) -> dict[str, str]:
    try:
        return parse_digest(value)[1]
    except DigestError:
        return {}  # a challenge we cannot read is answered (or refused) by DigestClient


def _granted(headers: Sequence[tuple[str, str]], contact: str) -> int | None:
    """The interval the registrar granted our contact: its Contact ``expires``, else Expires."""
    ours = _address(contact)
    for name, value in headers:
        if name.lower() not in ("contact", "m"):
            continue
        for item in split_quoted(value, ","):
            try:
                addr = NameAddr.parse(item)
            except ValueError:
                continue
            expires = addr.params.get("expires") or ""
            if _address(str(addr.uri)) == ours and expires.isdecimal():
                return int(expires)
    for name, value in headers:
        if name.lower() == "expires" and value.strip().isdecimal():
            return int(value.strip())
    return None


def _address(uri: str) -> str:
    """scheme:user@host:port, compared as RFC 3261 section 19.1.4 does; URI parameters
    are left out because registrars add and drop some (ob, transport) in their answer."""
    return uri_key(uri).split(";", 1)[0]
