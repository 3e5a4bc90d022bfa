"""SIP-specific event notification (RFC 6665) for the lamps of phones, sans-IO.

This module owns the notifier's side of a subscription: reading a SUBSCRIBE
(:func:`parse_subscribe`: its event package, expiry and dialog identifiers, or
the error status to answer: 400, 423, 489), the subscription's dialog
(:class:`Subscription`: our tag, our CSeq, the subscriber's target and route
set) and the NOTIFY requests it sends (:meth:`Subscription.notify`), and the
bodies of the two packages ivr serves:

* ``message-summary`` (RFC 3842): :func:`message_summary`, the voicemail lamp;
* ``dialog`` (RFC 4235, ``application/dialog-info+xml``): :func:`dialog_info`,
  the busy lamp field of a colleague's extension, with the call-id, tags and
  identities of its call (section 4.1.6) that a desk phone's key needs to pick
  a ringing call up;
* ``presence`` (RFC 3856, ``application/pidf+xml``, RFC 3863): :func:`pidf`,
  the same line as a softphone's buddy: ``open`` while the extension can be
  reached, ``closed`` otherwise, and its activity (RFC 4480 RPID).

Both line packages render one record, :class:`Line`: what the runtime knows
about an extension is gathered once and drawn twice.

Subscriptions survive a restart in :class:`SubscriptionStore` (SQLite in the
data folder, like the registrar's bindings).  Who may subscribe to what is the
runtime's business (ivr.runtime.lamps); nothing here reads a clock or a socket:
every call is told ``now`` (epoch seconds).
"""

from __future__ import annotations

import json
import math
import secrets
import sqlite3
import threading
from dataclasses import asdict, dataclass, field
from pathlib import Path
from xml.sax.saxutils import escape, quoteattr

from ivr.sip.message import NameAddr, Request, SipUri

__all__ = [
    "NotifyRequest",
    "SubscribeError",
    "SubscribeRequest",
    "Subscription",
    "SubscriptionStore",
    "Line",
    "dialog_info",
    "message_summary",
    "parse_subscribe",
    "pidf",
]

CONTENT_TYPES = {"message-summary": "application/simple-message-summary",
                 "dialog": "application/dialog-info+xml",
                 "presence": "application/pidf+xml"}


class SubscribeError(Exception):
    """A SUBSCRIBE we refuse: the status to answer, its reason and extra headers."""

    def __init__(self, status: int, reason: str, headers: list[tuple[str, str]] | None = None) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.headers = headers or []


@dataclass(frozen=True)
class SubscribeRequest:
    """What one SUBSCRIBE asks for (RFC 6665 section 4.2.1).

    ``resource`` is the Request-URI's user part (a mailbox, an extension); ``to_tag`` is
    empty for a new subscription and our tag for a refresh or an unsubscribe.
    """

    event: str
    resource: str
    expires: int
    call_id: str
    from_tag: str
    to_tag: str
    subscriber: str  # the From URI
    notifier: str  # the To URI
    target: str  # the Contact URI: where NOTIFYs go
    route_set: tuple[str, ...]
    cseq: int

    @property
    def key(self) -> str:
        return f"{self.call_id};{self.from_tag}"


def parse_subscribe(request: Request, packages: tuple[str, ...], *, default_expires: int = 3600,
                    min_expires: int = 60, max_expires: int = 3600) -> SubscribeRequest:
    """Read a SUBSCRIBE for one of ``packages``; :class:`SubscribeError` with the answer otherwise."""
    raw = (request.headers.get("Event") or request.headers.get("o") or "").strip()
    event = raw.split(";", 1)[0].strip().lower()
    if not event:
        raise SubscribeError(400, "Bad Request (missing Event header)")
    if event not in packages:
        raise SubscribeError(489, "Bad Event", [("Allow-Events", ", ".join(packages))])
    expires = _expires(request.headers.get("Expires"), default_expires)
    if 0 < expires < min_expires:
        raise SubscribeError(423, "Interval Too Brief", [("Min-Expires", str(min_expires))])
    contact = request.contact
    if not contact or not isinstance(contact[0].uri, SipUri):
        raise SubscribeError(400, "Bad Request (a SUBSCRIBE needs a sip: Contact)")
    try:
        resource = SipUri.parse(request.uri).user or ""
    except ValueError:
        raise SubscribeError(400, "Bad Request (invalid Request-URI)") from None
    return SubscribeRequest(
        event=event, resource=resource, expires=min(expires, max_expires), call_id=request.call_id,
        from_tag=request.from_.tag or "", to_tag=request.to.tag or "", subscriber=str(request.from_.uri),
        notifier=str(request.to.uri), target=str(contact[0].uri),
        route_set=tuple(str(NameAddr.parse(v).uri) for v in _record_routes(request)), cseq=request.cseq[0],
    )


def _record_routes(request: Request) -> list[str]:
    return [part.strip() for value in request.headers.get_all("Record-Route") for part in value.split(",")
            if part.strip()]


def _expires(value: str | None, default: int) -> int:
    text = (value or "").strip()
    return min(int(text), 2**32 - 1) if text.isdecimal() else default


@dataclass(frozen=True)
class NotifyRequest:
    """One NOTIFY to send: Request-URI, headers (the agent adds Via and Max-Forwards), body, next hop."""

    uri: str
    headers: list[tuple[str, str]]
    body: bytes
    destination: tuple[str, int]
    transport: str


@dataclass
class Subscription:
    """One subscription's dialog on the notifier's side (RFC 6665 sections 4.2.2 and 4.4.1).

    ``user`` is the authenticated subscriber (an extension), ``resource`` what it watches.
    ``cseq`` is our last NOTIFY's sequence number; ``version`` the dialog-info version
    (RFC 4235 section 4.1: one more in every NOTIFY of that package).
    """

    key: str
    event: str
    resource: str
    user: str
    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str
    remote_uri: str
    target: str
    route_set: tuple[str, ...]
    destination: tuple[str, int]
    transport: str
    expires_at: float
    remote_cseq: int = 0
    cseq: int = 0
    version: int = -1
    extra: dict[str, str] = field(default_factory=dict)

    @classmethod
    def accept(cls, sub: SubscribeRequest, user: str, source: tuple[str, int], transport: str,
               now: float) -> Subscription:
        """A new subscription for ``sub`` (its dialog gets a fresh tag of ours)."""
        return cls(sub.key, sub.event, sub.resource, user, sub.call_id, secrets.token_hex(5), sub.from_tag,
                   sub.notifier, sub.subscriber, sub.target, sub.route_set, source, transport.lower(),
                   now + sub.expires, sub.cseq)

    def refresh(self, sub: SubscribeRequest, now: float) -> None:
        """A refresh (or an unsubscribe, ``expires`` 0) in this subscription's dialog."""
        if sub.cseq <= self.remote_cseq:
            raise SubscribeError(500, "Server Internal Error (CSeq out of order)", [("Retry-After", "1")])
        self.remote_cseq = sub.cseq
        self.expires_at = now + sub.expires

    def left(self, now: float) -> int:
        return max(0, math.ceil(self.expires_at - now - 1e-9))

    def notify(self, body: bytes, now: float, *, contact: str, reason: str = "") -> NotifyRequest:
        """The next NOTIFY: ``active`` with the time left, or ``terminated`` with ``reason``."""
        self.cseq += 1
        if self.event == "dialog":
            self.version += 1
        state = f"terminated;reason={reason}" if reason else f"active;expires={self.left(now)}"
        headers = [
            ("From", f"<{self.local_uri}>;tag={self.local_tag}"),
            ("To", f"<{self.remote_uri}>;tag={self.remote_tag}"),
            ("Call-ID", self.call_id),
            ("CSeq", f"{self.cseq} NOTIFY"),
            ("Contact", contact),
            ("Event", self.event),
            ("Subscription-State", state),
            *(("Route", f"<{r}>") for r in self.route_set),
            ("Content-Type", CONTENT_TYPES[self.event]),
        ]
        return NotifyRequest(self.target, headers, body, self.destination, self.transport)


# --------------------------------------------------------------------------- bodies


def message_summary(account: str, new: int, old: int) -> bytes:
    """An ``application/simple-message-summary`` body (RFC 3842 section 5.2)."""
    waiting = "yes" if new else "no"
    return (f"Messages-Waiting: {waiting}\r\nMessage-Account: {account}\r\n"
            f"Voice-Message: {new}/{old} (0/0)\r\n").encode()


@dataclass(frozen=True)
class Line:
    """What one watched extension's lamp shows, for both line packages (dialog and presence).

    ``state`` is the extension's line: "terminated" (idle), "early" (ringing, or dialling)
    or "confirmed" (on a call); ``reachable`` whether it has a registered or static contact
    (PIDF ``basic``).  The rest describes the call the line is in (RFC 4235 section 4.1.6,
    seen from the extension's phone): its Call-ID and tags, ``direction`` ("recipient" for
    a call to the extension, "initiator" for one it placed), the other party's identity and
    the URI that takes a ringing call over (``pickup``, the directed pickup code).
    """

    entity: str
    state: str
    reachable: bool = True
    call_id: str = ""
    local_tag: str = ""
    remote_tag: str = ""
    direction: str = ""
    remote: str = ""
    pickup: str = ""


def dialog_info(line: Line, version: int, dialog_id: str) -> bytes:
    """An ``application/dialog-info+xml`` full-state document (RFC 4235 section 4) for one line.

    An idle line is one dialog in state ``terminated``; a line on a call carries the call's
    identifiers, the local and remote identities and, while it rings, the pickup target."""
    head = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f'<dialog-info xmlns="urn:ietf:params:xml:ns:dialog-info" version="{version}" state="full"'
        f" entity={quoteattr(line.entity)}>\n"
    )
    if line.state == "terminated" or not line.call_id:
        return (head + f"  <dialog id={quoteattr(dialog_id)}><state>{escape(line.state)}</state></dialog>\n"
                "</dialog-info>\n").encode()
    attrs = "".join(f" {name}={quoteattr(value)}" for name, value in (
        ("call-id", line.call_id), ("local-tag", line.local_tag), ("remote-tag", line.remote_tag),
        ("direction", line.direction)) if value)
    remote_target = f"<target uri={quoteattr(line.pickup)}/>" if line.pickup and line.state == "early" else ""
    return (
        head + f"  <dialog id={quoteattr(dialog_id)}{attrs}>\n"
        f"    <state>{escape(line.state)}</state>\n"
        f"    <local><identity>{escape(line.entity)}</identity><target uri={quoteattr(line.entity)}/></local>\n"
        f"    <remote><identity>{escape(line.remote)}</identity>{remote_target}</remote>\n"
        "  </dialog>\n</dialog-info>\n"
    ).encode()


# Line state -> (RFC 4480 activity element, note): idle has no activity.
_ACTIVITIES = {"terminated": ("", "Idle"), "early": ("<rpid:other>ringing</rpid:other>", "Ringing"),
               "confirmed": ("<rpid:on-the-phone/>", "On the phone")}


def pidf(line: Line, line_id: str) -> bytes:
    """An ``application/pidf+xml`` document (RFC 3863) for one line, with the RFC 4479 person
    element carrying its RPID activity (RFC 4480): none when idle, ``other`` "ringing" while it
    rings (or dials), ``on-the-phone`` on a call.  ``basic`` is ``open`` while the extension
    can be reached.  The ``rpid`` prefix is spelt out: softphones (baresip) match it as text.
    ``line_id`` names the tuple and the person (``t-`` and ``p-`` before it: XML ids)."""
    activity, note = _ACTIVITIES[line.state]
    activities = f"    <rpid:activities>{activity}</rpid:activities>\n" if activity else ""
    return (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        '<presence xmlns="urn:ietf:params:xml:ns:pidf" xmlns:dm="urn:ietf:params:xml:ns:pidf:data-model"'
        f' xmlns:rpid="urn:ietf:params:xml:ns:pidf:rpid" entity={quoteattr(line.entity)}>\n'
        f"  <tuple id={quoteattr('t-' + line_id)}>\n"
        f"    <status><basic>{'open' if line.reachable else 'closed'}</basic></status>\n"
        f"    <contact>{escape(line.entity)}</contact>\n"
        "  </tuple>\n"
        f"  <dm:person id={quoteattr('p-' + line_id)}>\n{activities}"
        f"    <dm:note>{note}</dm:note>\n"
        "  </dm:person>\n"
        "</presence>\n"
    ).encode()


# --------------------------------------------------------------------------- store


class SubscriptionStore:
    """Subscriptions in SQLite (a file in the data folder, ``":memory:"`` in tests): one row each.

    Beside them, the state of every line the lamps show (extension -> state, since when), so
    another process (``ivr phones``) can read what a running server sees.
    """

    def __init__(self, path: str | Path = ":memory:") -> None:
        self.path = str(path)
        self._lock = threading.RLock()
        self._db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        if self.path != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("CREATE TABLE IF NOT EXISTS subscriptions (key TEXT PRIMARY KEY, expires_at REAL NOT NULL,"
                         " data TEXT NOT NULL)")
        self._db.execute("CREATE TABLE IF NOT EXISTS lines (extension TEXT PRIMARY KEY, state TEXT NOT NULL,"
                         " since REAL NOT NULL)")

    def set_line(self, extension: str, state: str, now: float) -> None:
        """Record an extension's line state ("terminated" removes it: idle)."""
        with self._lock:
            if state == "terminated":
                self._db.execute("DELETE FROM lines WHERE extension = ?", (extension,))
            else:
                self._db.execute("INSERT OR REPLACE INTO lines VALUES (?, ?, ?)", (extension, state, now))

    def lines(self) -> dict[str, tuple[str, float]]:
        """extension -> (state, since) for every extension not idle."""
        with self._lock:
            rows = self._db.execute("SELECT extension, state, since FROM lines").fetchall()
        return {ext: (state, since) for ext, state, since in rows}

    def clear_lines(self) -> None:
        """A server starting has no calls: every line is idle."""
        with self._lock:
            self._db.execute("DELETE FROM lines")

    def count_for(self, user: str) -> int:
        """How many subscriptions ``user`` holds (for ``ivr phones``)."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM subscriptions").fetchall()
        return sum(json.loads(data)["user"] == user for (data,) in rows)

    def save(self, sub: Subscription) -> None:
        with self._lock:
            self._db.execute("INSERT OR REPLACE INTO subscriptions VALUES (?, ?, ?)",
                             (sub.key, sub.expires_at, json.dumps(asdict(sub))))

    def remove(self, key: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM subscriptions WHERE key = ?", (key,))

    def load(self, now: float) -> list[Subscription]:
        """Unexpired subscriptions (expired ones are deleted)."""
        with self._lock:
            self._db.execute("DELETE FROM subscriptions WHERE expires_at <= ?", (now,))
            rows = self._db.execute("SELECT data FROM subscriptions ORDER BY rowid").fetchall()
        subs = []
        for (data,) in rows:
            values = json.loads(data)
            values["route_set"] = tuple(values["route_set"])
            values["destination"] = tuple(values["destination"])
            subs.append(Subscription(**values))
        return subs

    def close(self) -> None:
        with self._lock:
            self._db.close()
