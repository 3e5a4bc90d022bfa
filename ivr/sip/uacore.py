"""What both sides of the user agent share: per-call state, output, transactions, timers.

:class:`AgentCore` holds the agent's tables (calls by Call-ID, server and
client transactions, request handles), its output (datagrams and events) and
the primitives both sides use: building Via and Contact, running a
transaction's actions, ending a call, arming the session timer (RFC 4028).
ivr.sip.client adds the client side (what ivr sends) and ivr.sip.ua the
server side and the driving interface; :class:`~ivr.sip.ua.UserAgent` is
the whole agent.
"""

from __future__ import annotations

import itertools
import logging
import random
import re
import secrets
from collections import Counter, deque
from collections.abc import Hashable, Iterable
from dataclasses import dataclass, field
from typing import Literal

from ivr.sip.auth import DigestClient
from ivr.sip.dialog import Dialog, SessionTimer
from ivr.sip.events import CallEnded, EndReason, UAEvent
from ivr.sip.message import Request, Response
from ivr.sip.timers import TimerQueue, TimerValues
from ivr.sip.transaction import (
    MAGIC_COOKIE,
    Deliver,
    InviteServerTransaction,
    NonInviteServerTransaction,
    TimedOut,
    Transaction,
    Transmit,
)

log = logging.getLogger("ivr.sip.ua")

DEFAULT_ALLOW = ("INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "INFO", "UPDATE", "REGISTER")
SUPPORTED = ("timer", "replaces")


@dataclass(frozen=True)
class Outgoing:
    """Bytes for the transport: ``dest`` is (host, port); ``transport`` is "udp" or "tcp"."""

    data: bytes
    dest: tuple[str, int]
    transport: str


# --------------------------------------------------------------------------- per-call state


CallState = Literal["incoming", "early", "answered", "confirmed", "outgoing", "ended"]


@dataclass
class Call:
    """What the UA keeps per call (one INVITE dialog)."""

    call_id: str
    role: Literal["uas", "uac"]
    invite: Request
    source: tuple[str, int]
    transport: str
    local_tag: str
    state: CallState = "incoming"
    invite_tx: Transaction | None = None
    dialog: Dialog | None = None
    # 2xx retransmission (13.3.1.4): the 2xx, its CSeq, its current interval
    pending_2xx: Response | None = None
    pending_2xx_cseq: int = 0
    retransmit_interval: float = 0.0
    late_offer: bool = False
    hangup_after_ack: bool = False
    # an incoming re-INVITE / UPDATE the runner has not answered yet
    reoffer_tx: Transaction | None = None
    reoffer_request: Request | None = None
    reoffer_awaits_ack: bool = False  # our 200 carried an offer: the ACK has the answer
    # our own re-INVITE / UPDATE (session refresh) in progress
    local_reinvite_key: Hashable | None = None
    session: SessionTimer | None = None
    last_sdp: bytes = b""
    # UAC side
    cancel_pending: bool = False
    cancel_sent: bool = False
    ack: Request | None = None  # our ACK for their 2xx, re-sent on retransmissions
    auth: DigestClient | None = None
    auth_tries: int = 0
    auth_nonces: set[str] = field(default_factory=set)
    hung_up: bool = False
    got_provisional: bool = False
    early_tag: str = ""  # the To tag of the callee's provisional answer (its side of the early dialog)
    prefer_source: bool = False
    refer_pending: bool = False  # (added) a REFER we sent: its NOTIFYs are accepted (RFC 3515)


def _hostport(host: str, port: int) -> str:
    """``host:port`` with an IPv6 address in brackets (RFC 3261 25.1 IPv6reference)."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{port}"


#: Tags and branches only need to be unique and unguessable enough to keep a stranger's
#: guess from matching a dialog (RFC 3261 19.3: 32 bits of randomness).  A generator seeded
#: once from the system's entropy gives them without a getrandom() system call each: under
#: load that call took tens of microseconds and was caught in stalls of the event loop.
#: Digest nonces and passwords keep using ``secrets`` (ivr.sip.auth).
_random = random.Random(secrets.token_bytes(32))


def _tag() -> str:
    return f"{_random.getrandbits(40):010x}"


def _branch() -> str:
    return f"{MAGIC_COOKIE}{_random.getrandbits(64):016x}"


def extract_sdp(message: Request | Response) -> bytes | None:
    """The SDP of a message: its body, or the application/sdp part of a multipart body."""
    if not message.body:
        return None
    ctype = message.content_type
    if ctype == "application/sdp":
        return message.body
    if ctype.startswith("multipart/"):
        m = re.search(r'boundary\s*=\s*"?([^";]+)"?', message.headers.get("Content-Type") or "", re.I)
        if not m:
            return None
        for part in message.body.split(b"--" + m.group(1).encode()):
            head, sep, content = part.partition(b"\r\n\r\n")
            if sep and b"application/sdp" in head.lower():
                return content.rstrip(b"\r\n") + b"\r\n"
    return None


# --------------------------------------------------------------------------- shared core


class AgentCore:
    """The state and primitives of :class:`~ivr.sip.ua.UserAgent` that its two sides share."""

    def __init__(
        self,
        *,
        local_host: str,
        local_port: int,
        contact_host: str | None = None,
        user_agent: str = "ivr",
        t1: float = 0.5,
        t2: float = 4.0,
        t4: float = 5.0,
        min_se: int = 90,
        session_expires: int = 1800,
        allow_methods: Iterable[str] = DEFAULT_ALLOW,
    ) -> None:
        self.local_host = local_host
        self.local_port = local_port
        self.contact_host = contact_host or local_host
        self.user_agent = user_agent
        self.values = TimerValues(t1, t2, t4)
        self.min_se = min_se
        self.session_expires = max(session_expires, min_se)
        self.allow_methods = tuple(m.upper() for m in allow_methods)
        # In-dialog requests handed over when no call has their Call-ID (subscriptions).
        self.dialog_requests: frozenset[str] = frozenset({"SUBSCRIBE"} & set(self.allow_methods))
        self.draining = False
        self.retry_after = 30
        self.responses_sent: Counter[int] = Counter()  # by status code, provisional and final (/metrics)
        # An INVITE nobody answers is ended with 487 after its Expires, or this (13.3.1).
        self.invite_timeout = 300.0
        self.timers = TimerQueue()
        self.calls: dict[str, Call] = {}
        self._server_tx: dict[Hashable, Transaction] = {}
        self._client_tx: dict[Hashable, Transaction] = {}
        self._tx_call: dict[Hashable, str] = {}  # client tx key -> call id
        self._tx_purpose: dict[Hashable, str] = {}  # client tx key -> "invite" | "bye" | "refresh" ...
        self._handles: dict[int, Transaction] = {}
        self._handle_ids = itertools.count(1)
        self._merge: dict[tuple[str, str, int], Hashable] = {}  # 8.2.2.2 merged-request detection
        self._merge_of: dict[Hashable, tuple[str, str, int]] = {}  # tx key -> its merge key
        self._events: deque[UAEvent] = deque()
        self._out: list[Outgoing] = []

    # ------------------------------------------------------------------ output
    def _emit(self, event: UAEvent) -> None:
        self._events.append(event)

    def _send(self, message: Request | Response, dest: tuple[str, int], transport: str) -> None:
        self._out.append(Outgoing(bytes(message), dest, transport))

    def _via(self, transport: str) -> str:
        sent_by = _hostport(self.local_host, self.local_port)
        return f"SIP/2.0/{transport.upper()} {sent_by};branch={_branch()};rport"

    def contact(self, transport: str = "udp", user: str = "ivr") -> str:
        params = ";transport=tcp" if transport == "tcp" else ""
        return f"<sip:{user}@{_hostport(self.contact_host, self.local_port)}{params}>"

    def _common_headers(self) -> list[tuple[str, str]]:
        return [("Allow", ", ".join(self.allow_methods)), ("Supported", ", ".join(SUPPORTED))]

    # ------------------------------------------------------------------ transactions
    def _run(self, tx: Transaction, now: float) -> list[Request | Response]:
        """Carry out a transaction's actions; returns what it delivered to us (the TU)."""
        delivered: list[Request | Response] = []
        for action in tx.drain():
            if isinstance(action, Transmit):
                self._send(action.message, tx.dest, tx.transport)
            elif isinstance(action, Deliver):
                delivered.append(action.message)
            elif isinstance(action, TimedOut):
                self._on_tx_timeout(tx, action.timer, now)
            else:  # Terminated
                self._forget_tx(tx)
        return delivered

    def _forget_tx(self, tx: Transaction) -> None:
        if isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
            if self._server_tx.get(tx.key) is tx:
                del self._server_tx[tx.key]
        else:
            self._client_tx.pop(tx.key, None)
            self._tx_call.pop(tx.key, None)
            self._tx_purpose.pop(tx.key, None)
        merge_key = self._merge_of.pop(tx.key, None)
        if merge_key is not None and self._merge.get(merge_key) == tx.key:
            del self._merge[merge_key]

    def _on_tx_timeout(self, tx: Transaction, timer: str, now: float) -> None:
        """A transaction gave up (Timer B, F or H); the client side says what that ends."""
        raise NotImplementedError

    # ------------------------------------------------------------------ calls
    def _live_call(self, call_id: str, *states: CallState) -> Call | None:
        call = self.calls.get(call_id)
        if call is None or (states and call.state not in states):
            log.debug("ignoring a command for call %s (%s)", call_id,
                      call.state if call else "gone")
            return None
        return call

    def _end(self, call: Call, reason: EndReason | None) -> None:
        """Forget the call (its transactions finish on their own); emit CallEnded when given."""
        call.state = "ended"
        self._stop_2xx_retransmit(call)
        for name in ("refresh", "expire", "invite_expire", "cancel_wait"):
            self.timers.cancel(("call", call.call_id, name))
        self.calls.pop(call.call_id, None)
        if reason is not None:
            self._emit(CallEnded(call.call_id, reason))

    def _stop_2xx_retransmit(self, call: Call) -> None:
        call.pending_2xx = None
        self.timers.cancel(("call", call.call_id, "2xx"))
        self.timers.cancel(("call", call.call_id, "ack"))

    def _arm_session_timer(self, call: Call, now: float) -> None:
        self.timers.cancel(("call", call.call_id, "refresh"))
        self.timers.cancel(("call", call.call_id, "expire"))
        session = call.session
        if session is None or call.state != "confirmed":
            return
        session.last_refresh = now
        if session.we_refresh:
            self.timers.set(("call", call.call_id, "refresh"), session.refresh_at())
        self.timers.set(("call", call.call_id, "expire"), session.expire_at())
