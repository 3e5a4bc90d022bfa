"""REFER received (RFC 3515): the ``Refer-To`` of a transfer a phone asks for, and sipfrag bodies.

This module owns the sans-IO pieces of being the *recipient* of a REFER (ivr
sending one is :meth:`ivr.sip.client.ClientSide.refer`):

* :func:`parse_refer` reads the one ``Refer-To`` of a REFER (RFC 3515 section
  2.4.1: exactly one, else 400) into a :class:`ReferTarget`: the URI, its user
  part (the number or extension asked for), and a ``Replaces`` carried as a
  URI header (RFC 3891 section 6.1, attended transfer, RFC 5589 section 7)
  parsed into :class:`Replaces`.
* :func:`sipfrag` builds the body of a NOTIFY that reports how the referred
  request goes (RFC 3515 section 2.4.5, RFC 3420): a status line only.

What is allowed to be referred where is policy: the runtime decides
(ivr.runtime.phonetransfer).  The UA answers 202 to a well-formed REFER and
400 to a malformed one (ivr.sip.ua).
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import unquote

from ivr.sip.message import NameAddr, Request, SipUri, parse_params

SIPFRAG = "message/sipfrag;version=2.0"

REASONS = {
    100: "Trying", 180: "Ringing", 200: "OK", 403: "Forbidden", 404: "Not Found", 408: "Request Timeout",
    480: "Temporarily Unavailable", 481: "Call/Transaction Does Not Exist", 486: "Busy Here",
    487: "Request Terminated", 500: "Server Internal Error", 501: "Not Implemented", 503: "Service Unavailable",
    603: "Decline",
}


class ReferError(ValueError):
    """A REFER that cannot be accepted: ``status`` is the response to send."""

    def __init__(self, status: int, reason: str) -> None:
        super().__init__(reason)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Replaces:
    """The dialog an attended transfer replaces (RFC 3891 section 6.1)."""

    call_id: str
    to_tag: str
    from_tag: str
    early_only: bool = False


@dataclass(frozen=True)
class ReferTarget:
    """What a REFER asks for: ``uri`` (without URI headers), its ``user`` ("" when none)."""

    uri: str
    user: str
    replaces: Replaces | None = None


def parse_replaces(text: str) -> Replaces:
    """``callid;to-tag=..;from-tag=..[;early-only]`` (already unescaped)."""
    call_id, _, params_text = text.partition(";")
    params = parse_params(";" + params_text) if params_text else {}
    to_tag, from_tag = params.get("to-tag"), params.get("from-tag")
    if not call_id.strip() or not to_tag or not from_tag:
        raise ReferError(400, f"Replaces needs a Call-ID, to-tag and from-tag: {text!r}")
    return Replaces(call_id.strip(), to_tag, from_tag, "early-only" in params)


def parse_refer(request: Request) -> ReferTarget:
    """The transfer target of ``request`` (a REFER); :class:`ReferError` 400 when unusable."""
    values = request.headers.get_all("Refer-To")
    if len(values) != 1:
        raise ReferError(400, f"a REFER needs exactly one Refer-To, got {len(values)}")
    try:
        uri = NameAddr.parse(values[0]).uri
    except ValueError as exc:
        raise ReferError(400, f"bad Refer-To: {exc}") from None
    if not isinstance(uri, SipUri):
        raise ReferError(400, f"Refer-To is not a sip: URI: {values[0]!r}")
    replaces = None
    for header in filter(None, uri.headers.split("&")):
        name, _, value = header.partition("=")
        if name.strip().lower() == "replaces":
            replaces = parse_replaces(unquote(value))
    bare = SipUri(uri.scheme, uri.user, None, uri.host, uri.port, dict(uri.params), "")
    return ReferTarget(str(bare), unquote(uri.user or ""), replaces)


def sipfrag(status: int, reason: str | None = None) -> bytes:
    """The body of a refer NOTIFY: ``SIP/2.0 <status> <reason>`` (RFC 3515 section 2.4.5)."""
    return f"SIP/2.0 {status} {reason or REASONS.get(status, 'Unknown')}\r\n".encode()
