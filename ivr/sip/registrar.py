"""The registrar: REGISTER processing (RFC 3261 section 10.3) and the bindings it keeps.

:class:`Registrar` decides the answer to each REGISTER (401 challenge, 403,
404, 420, 423, 400, 500, 200 with the current bindings) from plain values:
the Request-URI, the header (name, value) pairs, the source address and
``now``.  Bindings live in a :class:`BindingStore`: :class:`RegistrationStore`
(SQLite, a file in the data folder or ``":memory:"`` in tests) so phones stay
reachable across a restart, or a table every node of a cluster shares (the
runtime passes one in from ivr.storage).  :meth:`Registrar.contacts` is what call transfer uses to find the
devices of an extension: registered ones plus the static contacts of its
:class:`Account`.  The registrar knows no deployment file: the runtime builds
its accounts and settings from ``ivr.toml`` (ivr.runtime.sipconfig).

The user agent answers with ``ua.respond(handle, reply.status, now,
headers=reply.headers)``; a reply with ``drop`` set is not answered at all
(a throttled scanner gets silence).
"""

from __future__ import annotations

import contextlib
import logging
import math
import sqlite3
import threading
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from email.utils import formatdate
from pathlib import Path
from typing import Protocol

from ivr.sip.auth import DigestChallenger, DigestError, parse_digest
from ivr.sip.events import RequestReceived
from ivr.sip.message import (
    NameAddr,
    Request,
    SipUri,
    canonical_name,
    format_params,
    split_quoted,
    uri_key,
)
from ivr.sip.throttle import AuthThrottle

__all__ = [
    "Account",
    "AuthVerdict",
    "Binding",
    "BindingStore",
    "RegisterReply",
    "Registrar",
    "RegistrationStore",
    "RegistrationStoreError",
]

log = logging.getLogger("ivr.sip.registrar")
auth_log = logging.getLogger("ivr.sip.auth")

HeaderItems = Mapping[str, str] | Iterable[tuple[str, str]]
_SPELLING = {"call-id": "Call-ID", "cseq": "CSeq", "to": "To"}


# --------------------------------------------------------------------------- values


@dataclass(frozen=True)
class Account:
    """One address-of-record the registrar serves (an extension of the deployment).

    ``number`` is the AOR; a phone authenticates as ``username`` (or ``number`` when
    empty) with ``password``; an account without a password cannot register and is
    reachable only at its static ``contacts`` (devices that do not register).
    """

    number: str
    username: str = ""
    password: str = ""
    contacts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Binding:
    """One contact of an address-of-record (RFC 3261 section 10.3 step 7).

    ``aor`` is the extension number; ``source`` the address the REGISTER
    came from (where to send requests when the phone is behind NAT);
    ``expires_at`` absolute epoch seconds, ``math.inf`` for static contacts.
    """

    aor: str
    uri: str
    source: tuple[str, int] | None
    transport: str
    expires_at: float
    call_id: str = ""
    cseq: int = 0
    q: float | None = None
    params: str = ""  # other contact parameters as received, e.g. ;+sip.instance="<urn:...>"
    user_agent: str = ""

    @property
    def static(self) -> bool:
        return math.isinf(self.expires_at)

    @property
    def key(self) -> str:
        return uri_key(self.uri)

    def expires_in(self, now: float) -> int | None:
        """Seconds left (rounded up), ``None`` for a static contact that never expires."""
        if self.static:
            return None
        return max(0, math.ceil(self.expires_at - now - 1e-9))

    def __str__(self) -> str:
        return self.uri

    def contact_value(self, now: float) -> str:
        """The Contact header value listing this binding in a 200 (RFC 3261 section 10.3 step 8)."""
        q = f";q={_format_q(self.q)}" if self.q is not None else ""
        return f"<{self.uri}>;expires={self.expires_in(now) or 0}{q}{self.params}"


@dataclass(frozen=True)
class RegisterReply:
    """What to answer a REGISTER: a status and extra headers (Contact, WWW-Authenticate ...).

    ``status`` 0 means drop the request without answering (``drop``).
    """

    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)

    DROP = 0

    @property
    def drop(self) -> bool:
        return self.status == self.DROP


_CHALLENGE_REASON = {401: "Unauthorized", 407: "Proxy Authentication Required"}


@dataclass(frozen=True)
class AuthVerdict:
    """Who sent a request, or what to answer (:meth:`Registrar.authenticate`).

    ``account`` is set when the credentials are good; otherwise ``status`` (401/407 with the
    challenge in ``headers``, 403, 400) and ``reason`` say what to answer, and ``drop`` that a
    throttled source should get no answer at all.
    """

    account: Account | None
    status: int
    reason: str
    headers: list[tuple[str, str]] = field(default_factory=list)
    drop: bool = False
    bad_credentials: bool = False


class _Refusal(Exception):
    """Internal: stop processing and answer ``reply``."""

    def __init__(
        self, status: int, reason: str, headers: list[tuple[str, str]] | None = None
    ) -> None:
        super().__init__(f"{status} {reason}")
        self.reply = RegisterReply(status, reason, headers or [])


class Responder(Protocol):
    """The part of ``ivr.sip.ua.UserAgent`` the adapter calls."""

    def respond(
        self,
        request_handle: int,
        status: int,
        now: float,
        *,
        headers: Iterable[tuple[str, str]] = ...,
    ) -> None: ...


# --------------------------------------------------------------------------- store


class RegistrationStoreError(Exception):
    """The bindings database cannot be opened or used; the message names the file."""


class BindingStore(Protocol):
    """Where the registrar keeps bindings; the methods block (call them off the event loop
    when the store is remote) and raise :class:`RegistrationStoreError` or ``sqlite3.Error``
    when the database fails."""

    path: str  # names the database in log messages

    def bindings(self, aor: str, now: float | None = None) -> list[Binding]:
        """The bindings of ``aor`` (only unexpired ones when ``now`` is given), oldest first."""
        ...

    def apply(self, aor: str, upserts: Iterable[Binding], removals: Iterable[str]) -> None:
        """One REGISTER's changes, atomically; a binding written again becomes the newest."""
        ...

    def purge_expired(self, now: float) -> int: ...

    def close(self) -> None: ...


class RegistrationStore:
    """Bindings in SQLite: one row per (address-of-record, contact URI).

    One connection, guarded by a lock so the store may be built on one thread
    and used on another (the server builds services lazily).
    """

    SCHEMA_VERSION = 1

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
            self._setup()
        except sqlite3.Error as exc:
            raise RegistrationStoreError(
                f"{self.path}: cannot use as registrations database: {exc}"
            ) from None

    def _setup(self) -> None:
        version = self._db.execute("PRAGMA user_version").fetchone()[0]
        if version > self.SCHEMA_VERSION:
            raise sqlite3.DatabaseError(
                f"schema version {version} is newer than this ivr ({self.SCHEMA_VERSION})"
            )
        if self.path != ":memory:":
            # WAL + NORMAL: a commit per REGISTER without an fsync per commit.
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute(
            """CREATE TABLE IF NOT EXISTS bindings (
                aor TEXT NOT NULL, uri_key TEXT NOT NULL, uri TEXT NOT NULL,
                source_host TEXT, source_port INTEGER, transport TEXT NOT NULL,
                expires_at REAL NOT NULL, call_id TEXT NOT NULL, cseq INTEGER NOT NULL,
                q REAL, params TEXT NOT NULL, user_agent TEXT NOT NULL,
                PRIMARY KEY (aor, uri_key))"""
        )
        self._db.execute(f"PRAGMA user_version={self.SCHEMA_VERSION}")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> RegistrationStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def bindings(self, aor: str, now: float | None = None) -> list[Binding]:
        """The bindings of ``aor`` (only unexpired ones when ``now`` is given), oldest first."""
        return self._select("WHERE aor = ? AND expires_at > ? ORDER BY rowid", (aor, _after(now)))

    def _select(self, where: str, args: tuple[object, ...]) -> list[Binding]:
        with self._lock:
            rows = self._db.execute(f"SELECT * FROM bindings {where}", args).fetchall()
        return [_row_binding(r) for r in rows]

    def apply(self, aor: str, upserts: Iterable[Binding], removals: Iterable[str]) -> None:
        """Write one REGISTER's changes atomically; ``removals`` are contact URIs."""
        with self._transaction():
            for uri in removals:
                self._db.execute(
                    "DELETE FROM bindings WHERE aor = ? AND uri_key = ?", (aor, uri_key(uri))
                )
            for b in upserts:
                self._db.execute(
                    "INSERT OR REPLACE INTO bindings VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",
                    (
                        aor, b.key, b.uri,
                        b.source[0] if b.source else None, b.source[1] if b.source else None,
                        b.transport, b.expires_at, b.call_id, b.cseq, b.q, b.params, b.user_agent,
                    ),
                )  # fmt: skip

    def purge_expired(self, now: float) -> int:
        """Delete bindings that expired; returns how many."""
        with self._transaction():
            cur = self._db.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,))
        return cur.rowcount

    def _transaction(self) -> _Transaction:
        return _Transaction(self._db, self._lock)


def _after(now: float | None) -> float:
    return -math.inf if now is None else now


class _Transaction:
    """BEGIN IMMEDIATE ... COMMIT (ROLLBACK on error), holding the store's lock."""

    def __init__(self, db: sqlite3.Connection, lock: threading.RLock) -> None:
        self.db = db
        self.lock = lock

    def __enter__(self) -> None:
        self.lock.acquire()
        try:
            self.db.execute("BEGIN IMMEDIATE")
        except BaseException:
            self.lock.release()
            raise

    def __exit__(self, exc_type: object, *rest: object) -> None:
        try:
            self.db.execute("ROLLBACK" if exc_type else "COMMIT")
        finally:
            self.lock.release()


def _row_binding(row: tuple) -> Binding:  # type: ignore[type-arg]
    aor, _, uri, host, port, transport, expires_at, call_id, cseq, q, params, ua = row
    source = (host, int(port)) if host is not None else None
    return Binding(aor, uri, source, transport, expires_at, call_id, cseq, q, params, ua)


# --------------------------------------------------------------------------- registrar


class Registrar:
    """A registrar for a set of :class:`Account` (RFC 3261 section 10.3).

    Every REGISTER must carry Digest credentials of the account whose
    address-of-record it changes.  Wrong passwords count towards the source's
    throttle; a throttled source is dropped (``throttle_action="drop"``) or
    answered 403.
    """

    def __init__(
        self,
        store: BindingStore,
        challenger: DigestChallenger,
        accounts: Iterable[Account],
        *,
        throttle: AuthThrottle | None = None,
        throttle_action: str = "drop",
        min_expires: int = 60,
        max_expires: int = 3600,
        default_expires: int = 3600,
        max_contacts: int = 10,
        domains: Collection[str] | None = None,
        algorithms: Sequence[str] = ("MD5",),
        purge_interval: float = 300.0,
    ) -> None:
        if throttle_action not in ("drop", "403"):
            raise ValueError("throttle_action must be 'drop' or '403'")
        self.store = store
        self.challenger = challenger
        accounts = tuple(accounts)
        # Auth username -> account, for every account that has a password.
        self.users = {(a.username or a.number): a for a in accounts if a.password}
        self.throttle = throttle
        self.throttle_action = throttle_action
        self.min_expires = min_expires
        self.max_expires = max_expires
        self.default_expires = default_expires
        self.max_contacts = max_contacts
        self.domains = {d.lower() for d in domains} if domains is not None else None
        # MD5 only unless told otherwise: measured on this project's peers, baresip 1.0.0
        # gives up on any non-MD5 challenge and sipp 3.6.1 on a SHA-256 one listed first.
        self.algorithms = tuple(algorithms)
        self.purge_interval = purge_interval
        self._last_purge = -math.inf
        self._by_alias: dict[str, Account] = {}
        for account in self.users.values():
            self._by_alias[account.number] = account
            if account.username:
                self._by_alias.setdefault(account.username, account)
        # Every account, with or without a password, for its static contacts.
        self._numbers = {a.number: a for a in accounts}

    # -- queries

    def contacts(
        self, extension_number: str, now: float, *, account: Account | None = None
    ) -> list[Binding]:
        """Where to reach an extension: live registrations (highest q, newest first), then static contacts.

        ``account`` overrides which account's static contacts are used
        (by default the account of that number).
        """
        live = self._ordered(extension_number, now)
        owner = account or self._numbers.get(extension_number)
        static = [_static_binding(extension_number, uri) for uri in (owner.contacts if owner else ())]
        return live + static

    def _ordered(self, aor: str, now: float) -> list[Binding]:
        # The store returns oldest first (rowid); a refresh moves a binding to the end.
        live = self.store.bindings(aor, now)[::-1]
        live.sort(key=lambda b: -(b.q if b.q is not None else 1.0))  # stable: newest first per q
        return live

    def purge(self, now: float) -> int:
        return self.store.purge_expired(now)

    # -- REGISTER

    def blocked(self, source_ip: str, now: float) -> bool:
        """True while ``source_ip`` is throttled: a transport may drop its datagrams unread."""
        return self.throttle is not None and self.throttle.blocked(source_ip, now)

    def handle(self, ua: Responder, event: RequestReceived, now: float) -> RegisterReply:
        """Answer a ``RequestReceived`` REGISTER through the user agent.

        The agent cannot forget a request it has handed over, so a throttled
        source is answered 403 here; to drop silently, ask :meth:`blocked`
        before the datagram reaches the agent.
        """
        reply = self.handle_request(event.request, event.source, now, event.transport)
        if reply.drop:
            reply = RegisterReply(403, "Forbidden (too many failed logins)")
        ua.respond(event.handle, reply.status, now, headers=reply.headers)
        return reply

    def handle_request(
        self, request: Request, source: tuple[str, int], now: float, transport: str = "udp"
    ) -> RegisterReply:
        """Adapter for a parsed ``ivr.sip.message.Request``."""
        return self.handle_register(
            request.uri,
            list(request.headers),
            source,
            now,
            transport=transport,
            method=request.method,
        )

    def handle_register(
        self,
        request_uri: str,
        headers: HeaderItems,
        source: tuple[str, int],
        now: float,
        *,
        transport: str = "udp",
        method: str = "REGISTER",
    ) -> RegisterReply:
        """Process one REGISTER (retransmissions are absorbed by the transaction layer before this)."""
        if method.upper() != "REGISTER":
            return RegisterReply(405, "Method Not Allowed", [("Allow", "REGISTER")])
        ip = source[0]
        if self.throttle is not None and self.throttle.blocked(ip, now):
            if self.throttle_action == "drop":
                return RegisterReply(RegisterReply.DROP, "throttled: too many failed logins")
            return RegisterReply(403, "Forbidden (too many failed logins)")
        if now - self._last_purge >= self.purge_interval:
            # Expired rows are invisible already; sweeping now and then keeps the file small.
            self._last_purge = now
            with contextlib.suppress(sqlite3.Error, RegistrationStoreError):
                self.store.purge_expired(now)
        h = _Headers(headers)
        try:
            return self._register(request_uri, h, source, now, transport)
        except (sqlite3.Error, RegistrationStoreError):
            # Disk full, file removed ...: the phone retries; the operator reads why.
            log.exception("registrations database %s failed", self.store.path)
            return RegisterReply(
                500, "Server Internal Error (registrations database)", [("Retry-After", "30")]
            )
        except _Refusal as refusal:
            if refusal.reply.status not in (401,):
                log.info("REGISTER from %s:%s refused: %s", ip, source[1], refusal)
            return refusal.reply

    def _register(
        self, request_uri: str, h: _Headers, source: tuple[str, int], now: float, transport: str
    ) -> RegisterReply:
        call_id, cseq = _call_id_cseq(h)
        self._check_domain(request_uri, "Request-URI")
        if h.all("require"):
            # We support no extensions to REGISTER (path, outbound, gruu): RFC 3261 section 8.2.2.3.
            tokens = ", ".join(
                t.strip() for v in h.all("require") for t in v.split(",") if t.strip()
            )
            raise _Refusal(420, "Bad Extension", [("Unsupported", tokens)])
        ext = self._authenticate(request_uri, h, source, now)
        aor = self._authorize(ext, h)
        contacts = h.all("contact")
        if not contacts:
            return self._ok(aor, now)  # RFC 3261 section 10.2.3: fetching bindings
        if any(c.strip() == "*" for c in contacts):
            return self._remove_all(aor, contacts, h, call_id, cseq, now)
        return self._update(aor, contacts, h, call_id, cseq, source, transport, now)

    # -- steps of RFC 3261 section 10.3

    def _check_domain(self, uri_text: str, what: str) -> None:
        if self.domains is None:
            return
        try:
            host = SipUri.parse(uri_text.strip().strip("<>")).host.lower()
        except ValueError:
            raise _Refusal(400, f"Bad Request (invalid {what})") from None
        if host not in self.domains:
            raise _Refusal(403, f"Forbidden (domain {host} is not served here)")

    def _authenticate(
        self, request_uri: str, h: _Headers, source: tuple[str, int], now: float
    ) -> Account:
        verdict = self.authenticate("REGISTER", request_uri, h.all("authorization"), source, now)
        if verdict.account is not None:
            return verdict.account
        raise _Refusal(verdict.status, verdict.reason, verdict.headers)

    def authenticate(
        self,
        method: str,
        request_uri: str,
        credentials: Sequence[str],
        source: tuple[str, int],
        now: float,
        *,
        proxy: bool = False,
    ) -> AuthVerdict:
        """Check a request's Digest ``credentials`` (its Authorization values) against the accounts.

        The one implementation of "who is this phone", for REGISTER and for the
        requests phones send as their user (an INVITE, a SUBSCRIBE).  ``proxy``
        challenges with 407 and Proxy-Authenticate (RFC 3261 section 22.3: what a
        phone expects for an INVITE) instead of 401 and WWW-Authenticate.  Wrong
        passwords count towards the source's throttle.
        """
        ip = source[0]
        challenge = 407 if proxy else 401
        if self.throttle is not None and self.throttle.blocked(ip, now):
            return AuthVerdict(None, 403, "Forbidden (too many failed logins)", drop=self.throttle_action == "drop")
        if not credentials:
            return AuthVerdict(None, challenge, _CHALLENGE_REASON[challenge], self._challenge(now, proxy=proxy))
        value = _ours(list(credentials), self.challenger.realm)
        result = self.challenger.verify(method, request_uri, value, self._password, now, source=f"{ip}:{source[1]}")
        if result.ok:
            if self.throttle is not None:
                self.throttle.record_success(ip)
            return AuthVerdict(self.users[result.username or ""], 200, "OK")
        if result.bad_credentials and self.throttle is not None:
            if self.throttle.record_failure(ip, now):
                auth_log.warning(
                    "blocking %s for %g s after repeated failed logins (last as %r)",
                    ip, self.throttle.cooldown, result.username,
                )  # fmt: skip
        if result.status == 401:
            return AuthVerdict(
                None, challenge, _CHALLENGE_REASON[challenge], self._challenge(now, result.stale, proxy=proxy),
                bad_credentials=result.bad_credentials,
            )
        if result.status == 403:
            return AuthVerdict(None, 403, f"Forbidden ({result.reason})")
        return AuthVerdict(None, 400, f"Bad Request ({result.reason})")

    def _challenge(self, now: float, stale: bool = False, *, proxy: bool = False) -> list[tuple[str, str]]:
        values = self.challenger.challenge(now, stale=stale, algorithms=self.algorithms)
        name = "Proxy-Authenticate" if proxy else "WWW-Authenticate"
        return [(name, v) for v in values]

    def account(self, user: str) -> Account | None:
        """The account a user name or extension number stands for (only accounts with a password)."""
        return self._by_alias.get(user)

    def _password(self, username: str) -> str | None:
        ext = self.users.get(username)
        return ext.password if ext is not None and ext.password else None

    def _authorize(self, ext: Account, h: _Headers) -> str:
        """The AOR (extension number) of the To header, which must be the caller's own."""
        to_value = h.one("to")
        try:
            to = NameAddr.parse(to_value)
        except ValueError:
            raise _Refusal(400, "Bad Request (invalid To header)") from None
        if not isinstance(to.uri, SipUri) or not to.uri.user:
            raise _Refusal(404, "Not Found (To has no user part)")
        self._check_domain(str(to.uri), "To URI")
        user = to.uri.user
        if user in (ext.number, ext.username):
            return ext.number
        if user in self._by_alias:
            raise _Refusal(403, f"Forbidden ({ext.username or ext.number} may not register {user})")
        raise _Refusal(404, f"Not Found (no extension {user})")

    def _remove_all(
        self, aor: str, contacts: list[str], h: _Headers, call_id: str, cseq: int, now: float
    ) -> RegisterReply:
        # RFC 3261 section 10.3 step 6: "*" only alone and only with Expires: 0.
        if len(contacts) != 1 or (h.first("expires") or "").strip() != "0":
            raise _Refusal(400, "Bad Request (Contact: * needs Expires: 0 and no other contact)")
        current = self.store.bindings(aor)
        for b in current:
            if b.call_id == call_id and cseq <= b.cseq:
                raise _Refusal(
                    500, "Server Internal Error (out-of-order REGISTER)", [("Retry-After", "1")]
                )
        self.store.apply(aor, [], [b.uri for b in current])
        log.info("%s unregistered all %d contact(s)", aor, len(current))
        return self._ok(aor, now)

    def _update(
        self,
        aor: str,
        values: list[str],
        h: _Headers,
        call_id: str,
        cseq: int,
        source: tuple[str, int],
        transport: str,
        now: float,
    ) -> RegisterReply:
        if any("\udc80" <= c <= "\udcff" for text in (call_id, *values) for c in text):
            # Bytes that were not UTF-8 (kept as surrogates by the parser) cannot be stored.
            raise _Refusal(400, "Bad Request (Contact and Call-ID must be UTF-8)")
        existing = {b.key: b for b in self.store.bindings(aor)}
        user_agent = (h.first("user-agent") or "")[:200].encode("utf-8", "replace").decode()
        template = Binding(aor, "", source, transport.lower(), now, call_id, cseq, user_agent=user_agent)
        default = _int_or(h.first("expires"), self.default_expires)
        upserts: list[Binding] = []
        removals: list[str] = []
        granted: list[int] = []
        for value in values:
            uri, expires, q, params = self._parse_contact(value, default)
            granted.append(expires)
            old = existing.get(uri_key(uri))
            # Step 7: a binding only changes on a newer CSeq of the same Call-ID (or a new Call-ID).
            if old is not None and old.call_id == call_id and cseq <= old.cseq:
                raise _Refusal(
                    500, "Server Internal Error (out-of-order REGISTER)", [("Retry-After", "1")]
                )
            if expires == 0:
                removals.append(uri)
            else:
                upserts.append(replace(template, uri=uri, expires_at=now + expires, q=q, params=params))
        self._check_intervals(upserts, now)
        self._check_count(existing, upserts, removals, now)
        self.store.apply(aor, upserts, removals)
        for b in upserts:
            log.info("%s registered %s from %s:%s (%s s)", aor, b.uri, *source, b.expires_in(now))
        # Some phones read the granted interval from Expires rather than the Contact list.
        return self._ok(aor, now, expires=granted[0])

    def _check_count(
        self, existing: Mapping[str, Binding], upserts: list[Binding], removals: list[str], now: float
    ) -> None:
        live = {k for k, b in existing.items() if b.expires_at > now}
        kept = (live - {uri_key(u) for u in removals}) | {b.key for b in upserts}
        if len(kept) > self.max_contacts:
            raise _Refusal(403, f"Forbidden (more than {self.max_contacts} contacts)")

    def _parse_contact(self, value: str, default: int) -> tuple[str, int, float | None, str]:
        try:
            contact = NameAddr.parse(value)
        except ValueError as exc:
            raise _Refusal(400, f"Bad Request (invalid Contact: {exc})") from None
        if not isinstance(contact.uri, SipUri):
            raise _Refusal(400, "Bad Request (Contact must be a sip: or sips: URI)")
        params = dict(contact.params)
        expires = _int_or(params.pop("expires", None), default)
        if expires > self.max_expires:
            expires = self.max_expires  # RFC 3261 section 10.3 step 7: the registrar MAY shorten
        q = _q_or_none(params.pop("q", None))
        rest = format_params(params)
        return str(contact.uri), expires, q, rest

    def _check_intervals(self, upserts: list[Binding], now: float) -> None:
        too_brief = [b for b in upserts if b.expires_at - now < self.min_expires]
        if too_brief:
            # Nothing is changed: the phone retries with at least Min-Expires (step 7, 423).
            raise _Refusal(423, "Interval Too Brief", [("Min-Expires", str(self.min_expires))])

    def _ok(self, aor: str, now: float, *, expires: int | None = None) -> RegisterReply:
        headers = [("Contact", b.contact_value(now)) for b in self._ordered(aor, now)]
        if expires is not None:
            headers.append(("Expires", str(expires)))
        headers.append(("Date", formatdate(now, usegmt=True)))
        return RegisterReply(200, "OK", headers)


# --------------------------------------------------------------------------- helpers


class _Headers:
    """(name, value) pairs looked up case-insensitively, compact forms included."""

    def __init__(self, items: HeaderItems) -> None:
        pairs = items.items() if isinstance(items, Mapping) else items
        self.items = [(canonical_name(n.strip()).lower(), v) for n, v in pairs]

    def all(self, name: str) -> list[str]:
        values = [v for n, v in self.items if n == name]
        if name == "contact":
            return [c for v in values for c in split_quoted(v, ",") if c]
        return values

    def first(self, name: str) -> str | None:
        values = self.all(name)
        return values[0] if values else None

    def one(self, name: str) -> str:
        value = self.first(name)
        if value is None:
            raise _Refusal(400, f"Bad Request (missing {_SPELLING.get(name, name)} header)")
        return value


def _call_id_cseq(h: _Headers) -> tuple[str, int]:
    call_id = h.one("call-id").strip()
    number, _, method = h.one("cseq").strip().partition(" ")
    # RFC 3261 section 8.1.1.5: the sequence number is below 2**31.
    if not number.isdecimal() or int(number) >= 2**31 or method.strip().upper() != "REGISTER":
        raise _Refusal(400, "Bad Request (CSeq must be '<number> REGISTER')")
    return call_id, int(number)


def _ours(values: list[str], realm: str) -> str:
    """The Authorization value for our realm; the first one when none is (it then gets 403)."""
    for value in values:
        try:
            if parse_digest(value)[1].get("realm") == realm:
                return value
        except DigestError:
            continue
    return values[0]


def _int_or(value: str | None, default: int) -> int:
    # RFC 3261 section 20.19: a malformed expiry counts as 3600 (our default).
    if value is None:
        return default
    value = value.strip().strip('"')
    return min(int(value), 2**32 - 1) if value.isdecimal() else default


def _q_or_none(value: str | None) -> float | None:
    try:
        q = float(value) if value is not None else None
    except ValueError:
        return None
    return q if q is not None and 0.0 <= q <= 1.0 else None


def _format_q(q: float) -> str:
    return f"{q:.3f}".rstrip("0").rstrip(".") if q not in (0.0, 1.0) else str(int(q))


def _static_binding(aor: str, uri: str) -> Binding:
    try:
        transport = SipUri.parse(uri.strip().strip("<>")).transport
    except ValueError:
        transport = "udp"
    return Binding(aor, uri.strip().strip("<>"), None, transport, math.inf)
