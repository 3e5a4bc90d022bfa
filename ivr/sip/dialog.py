"""SIP dialogs and session timers (RFC 3261 section 12, RFC 4028).

This module owns the dialog state a user agent keeps per call: the dialog ID
(Call-ID, local and remote tags), local and remote CSeq, the remote target
(from Contact, refreshed by target-refresh requests), the route set (from
Record-Route, reversed on the UAC side) and how an in-dialog request is built
and where it goes (12.2.1.1, loose and strict routing).  It also owns the
session-timer arithmetic of RFC 4028: the negotiated interval, who refreshes,
when to refresh and when the session is considered dead.

Sans-IO: no sockets, no clock; the user agent asks and acts.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from ivr.sip.message import Headers, NameAddr, Request, Response, SipUri, parse_uri


class DialogError(Exception):
    """An in-dialog request that must be refused; ``status`` is the response (500, 481)."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(f"{status} {reason}")
        self.status = status
        self.reason = reason


def _uri_hostport(uri: SipUri | str) -> tuple[str, int] | None:
    if isinstance(uri, SipUri):
        maddr = uri.params.get("maddr")
        host = maddr or uri.host
        default = 5061 if uri.scheme == "sips" or uri.transport == "tls" else 5060
        return host.strip("[]"), uri.port or default
    return None


@dataclass
class Dialog:
    """One dialog (RFC 3261 12.1): identity, sequence numbers, target and route set."""

    call_id: str
    local_tag: str
    remote_tag: str
    local_uri: str  # our From (UAC) / To (UAS) header value without the tag, as written
    remote_uri: str
    local_contact: str
    remote_target: str
    route_set: list[str] = field(default_factory=list)
    local_seq: int = 0
    remote_seq: int | None = None
    secure: bool = False

    @classmethod
    def as_uas(cls, invite: Request, local_tag: str, local_contact: str) -> Dialog:
        """Dialog created by our 1xx/2xx to ``invite`` (12.1.1): route set is Record-Route as is."""
        contact = invite.contact
        target = str(contact[0].uri) if contact else invite.uri
        return cls(
            call_id=invite.call_id,
            local_tag=local_tag,
            remote_tag=invite.from_.tag or "",
            local_uri=_strip_tag(invite.headers["To"]),
            remote_uri=_strip_tag(invite.headers["From"]),
            local_contact=local_contact,
            remote_target=target,
            route_set=invite.headers.get_all("Record-Route"),
            local_seq=0,
            remote_seq=invite.cseq[0],
            secure=invite.uri.lower().startswith("sips:"),
        )

    @classmethod
    def as_uac(cls, invite: Request, response: Response) -> Dialog:
        """Dialog created by a 1xx/2xx to our ``invite`` (12.1.2): route set reversed."""
        contact = response.contact
        target = str(contact[0].uri) if contact else invite.uri
        return cls(
            call_id=invite.call_id,
            local_tag=invite.from_.tag or "",
            remote_tag=response.to.tag or "",
            local_uri=_strip_tag(invite.headers["From"]),
            remote_uri=_strip_tag(invite.headers["To"]),
            local_contact=invite.headers.get("Contact") or "",
            remote_target=target,
            route_set=list(reversed(response.headers.get_all("Record-Route"))),
            local_seq=invite.cseq[0],
            remote_seq=None,
            secure=invite.uri.lower().startswith("sips:"),
        )

    # -- incoming requests
    def matches(self, request: Request) -> bool:
        """The request's tags name this dialog (12.2.2: To tag is ours, From tag theirs)."""
        return request.to.tag == self.local_tag and (request.from_.tag or "") == self.remote_tag

    def check_remote_cseq(self, request: Request) -> None:
        """12.2.2: a CSeq lower than the last one seen is answered 500; ACK/CANCEL exempt."""
        number, _ = request.cseq
        if request.method in ("ACK", "CANCEL"):
            return
        if self.remote_seq is not None and number <= self.remote_seq:
            raise DialogError(500, f"CSeq {number} not above {self.remote_seq}")
        self.remote_seq = number

    def refresh_target(self, message: Request | Response) -> None:
        """Target refresh (12.2): a re-INVITE / UPDATE or its 2xx with a Contact."""
        contact = message.contact
        if contact:
            self.remote_target = str(contact[0].uri)

    # -- outgoing requests
    def next_cseq(self) -> int:
        self.local_seq += 1
        return self.local_seq

    def create_request(
        self,
        method: str,
        via: str,
        *,
        cseq: int | None = None,
        headers: tuple[tuple[str, str], ...] | list[tuple[str, str]] = (),
        body: bytes = b"",
    ) -> Request:
        """An in-dialog request (12.2.1.1); ``cseq`` given for ACK (same number as the INVITE)."""
        number = cseq if cseq is not None else self.next_cseq()
        request_uri, routes = self._uri_and_routes()
        h = Headers()
        h.add("Via", via)
        h.add("Max-Forwards", "70")
        for route in routes:
            h.add("Route", route)
        h.add("From", f"{self.local_uri};tag={self.local_tag}")
        h.add("To", f"{self.remote_uri};tag={self.remote_tag}" if self.remote_tag else self.remote_uri)
        h.add("Call-ID", self.call_id)
        h.add("CSeq", f"{number} {method}")
        for name, value in headers:
            h.add(name, value)
        return Request(method, request_uri, h, body)

    def _uri_and_routes(self) -> tuple[str, list[str]]:
        if not self.route_set:
            return self.remote_target, []
        first = NameAddr.parse(self.route_set[0])
        if isinstance(first.uri, SipUri) and "lr" in first.uri.params:
            return self.remote_target, list(self.route_set)
        # Strict routing (12.2.1.1): the first route becomes the Request-URI.
        uri = first.uri.with_params() if isinstance(first.uri, SipUri) else first.uri
        return str(uri), [*self.route_set[1:], f"<{self.remote_target}>"]

    def destination(self) -> tuple[str, int] | None:
        """Where in-dialog requests go: the first route, else the remote target (RFC 3263 minus DNS)."""
        if self.route_set:
            return _uri_hostport(NameAddr.parse(self.route_set[0]).uri)
        try:
            return _uri_hostport(parse_uri(self.remote_target))
        except ValueError:
            return None


_TAG_PARAM = re.compile(r";\s*tag\s*=\s*[^;,\s]*", re.I)


def _strip_tag(value: str) -> str:
    """A From/To value without its tag parameter, otherwise as written."""
    return _TAG_PARAM.sub("", value).strip()


# --------------------------------------------------------------------------- session timers


@dataclass
class SessionTimer:
    """Negotiated session timer of one dialog (RFC 4028 sections 7-10).

    ``refresher`` is ``"uac"`` or ``"uas"`` as seen from the request that set
    it; ``we_refresh`` resolves that against our role.  :meth:`refresh_at` is
    when we send a refresh (half the interval), :meth:`expire_at` when the
    session is dead without one (interval minus min(32, interval/3), 10).
    """

    interval: int
    refresher: str
    we_refresh: bool
    peer_supports: bool
    last_refresh: float = 0.0

    def refresh_at(self) -> float:
        return self.last_refresh + self.interval / 2

    def expire_at(self) -> float:
        return self.last_refresh + self.interval - min(32, self.interval / 3)

    def header(self) -> str:
        return f"{self.interval};refresher={self.refresher}"


def parse_session_expires(value: str) -> tuple[int, str | None]:
    """``1800;refresher=uac`` -> (1800, "uac"); raises ValueError when malformed."""
    head, _, params = value.partition(";")
    head = head.strip()
    if not head.isdecimal():
        raise ValueError(f"invalid Session-Expires {value!r}")
    refresher = None
    for param in params.split(";"):
        name, _, val = param.partition("=")
        if name.strip().lower() == "refresher" and val.strip().lower() in ("uac", "uas"):
            refresher = val.strip().lower()
    return int(head), refresher


def negotiate_uas(
    request: Request, *, min_se: int, default_interval: int, now: float
) -> SessionTimer | None:
    """Session timer for our 2xx to ``request`` (RFC 4028 section 9).

    Raises :class:`DialogError` 422 when the requested interval is below our
    Min-SE; the caller adds ``Min-SE: min_se`` to that response.
    """
    peer_min = (request.headers.get("Min-SE") or "").split(";")[0].strip()
    if peer_min.isdecimal():
        # 9: our interval must not go below what anyone on the path asked for.
        min_se = max(min_se, int(peer_min))
    supported = {t.strip().lower() for t in request.headers.get_all("Supported")}
    required = {t.strip().lower() for t in request.headers.get_all("Require")}
    peer_supports = "timer" in supported or "timer" in required
    se_value = request.headers.get("Session-Expires")
    if se_value is None:
        if not peer_supports:
            return None
        # 9: the UAS may add a Session-Expires the UAC did not ask for.
        return SessionTimer(max(default_interval, min_se), "uac", False, True, now)
    try:
        interval, refresher = parse_session_expires(se_value)
    except ValueError as exc:
        raise DialogError(400, str(exc)) from exc
    if interval < min_se:
        raise DialogError(422, "Session Interval Too Small")
    if not peer_supports:
        # The UAC cannot refresh; we do, and must not Require timer (9).
        return SessionTimer(interval, "uas", True, False, now)
    role = refresher or "uac"
    return SessionTimer(interval, role, role == "uas", True, now)


def negotiate_uac(response: Response, now: float) -> SessionTimer | None:
    """Session timer from a 2xx to our INVITE / refresh (RFC 4028 section 7.2)."""
    se_value = response.headers.get("Session-Expires")
    if se_value is None:
        return None
    try:
        interval, refresher = parse_session_expires(se_value)
    except ValueError:
        return None
    role = refresher or "uac"
    return SessionTimer(interval, role, role == "uac", True, now)
