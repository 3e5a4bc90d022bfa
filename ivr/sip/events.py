"""What the user agent reports: the events :meth:`ivr.sip.ua.UserAgent.next_event` returns.

Frozen records, one per thing that happened on the wire (h11's ``_events``,
aioquic's ``quic/events.py``): a call came in, was confirmed, re-offered,
cancelled or ended; a key came by SIP INFO; an outgoing call progressed,
was answered or failed; a REFER or an out-of-dialog request got its answer;
an out-of-dialog request is waiting for the runner's ``respond``.  A call is
named by its Call-ID string.  Events marked "added" extend the first
interface (see ivr.sip.ua).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from ivr.sip.message import Request, Response
from ivr.sip.refer import ReferTarget

__all__ = [
    "CallCancelled", "CallConfirmed", "CallEnded", "DtmfInfo", "EndReason", "IncomingCall",
    "OutgoingCallAnswered", "OutgoingCallFailed", "OutgoingCallProgress", "ReOffer", "ReOfferAnswer",
    "ReferProgress", "ReferReceived", "RequestReceived", "RequestResult", "UAEvent",
]


@dataclass(frozen=True)
class UAEvent:
    """Base of everything :meth:`~ivr.sip.ua.UserAgent.next_event` returns."""


@dataclass(frozen=True)
class IncomingCall(UAEvent):
    """A new INVITE: ``offer`` is its SDP (None: late offer); ``caller`` and ``called`` the
    unescaped From user and Request-URI user; answer with ringing / answer / reject."""

    call_id: str
    request: Request
    offer: bytes | None
    caller: str
    called: str
    source: tuple[str, int]


@dataclass(frozen=True)
class CallConfirmed(UAEvent):
    """The ACK for our 2xx arrived; ``answer`` is the SDP it carried (late offer)."""

    call_id: str
    answer: bytes | None


@dataclass(frozen=True)
class CallCancelled(UAEvent):
    """CANCEL before our final answer: 200 to the CANCEL and 487 to the INVITE are sent."""

    call_id: str


EndReason = Literal["bye", "ack_timeout", "session_expired", "transaction_timeout", "local"]


@dataclass(frozen=True)
class CallEnded(UAEvent):
    """The call is over (BYE, our hangup, no ACK, session expired or never answered)."""

    call_id: str
    reason: EndReason


@dataclass(frozen=True)
class ReOffer(UAEvent):
    """A re-INVITE or UPDATE in a dialog; answer with accept_reoffer / reject_reoffer."""

    call_id: str
    offer: bytes | None
    method: str


@dataclass(frozen=True)
class ReOfferAnswer(UAEvent):
    """(added) The ACK to a 2xx carrying our offer for an offer-less re-INVITE."""

    call_id: str
    answer: bytes | None


@dataclass(frozen=True)
class DtmfInfo(UAEvent):
    """A key sent by SIP INFO in the call's dialog (ivr.sip.info); the INFO got its 200."""

    call_id: str
    digit: str
    duration_ms: int


@dataclass(frozen=True)
class RequestReceived(UAEvent):
    """An out-of-dialog request the agent does not handle itself (REGISTER ...):
    answer it with ``respond(handle, ...)`` within 64*T1."""

    handle: int
    request: Request
    source: tuple[str, int]
    transport: str


@dataclass(frozen=True)
class OutgoingCallProgress(UAEvent):
    """A provisional response (180, 183 ...) to an INVITE we sent."""

    call_id: str
    status: int
    sdp: bytes | None = None  # (added) the callee's early-media answer (183 with SDP, RFC 3261 13.2.1)


@dataclass(frozen=True)
class OutgoingCallAnswered(UAEvent):
    """The callee answered our INVITE (the ACK is sent); ``answer`` is its SDP."""

    call_id: str
    answer: bytes


@dataclass(frozen=True)
class ReferProgress(UAEvent):
    """(added) How a REFER we sent goes (RFC 3515 sections 2.4.4-2.4.5).

    ``kind`` "response": ``status`` is the final response to the REFER (202: accepted);
    "notify": the status line of the sipfrag body of a NOTIFY (100 trying, 180 ringing,
    200 the transfer target answered, 4xx-6xx it failed).  ``final``: nothing more will come.
    """

    call_id: str
    kind: Literal["response", "notify"]
    status: int
    final: bool = False


@dataclass(frozen=True)
class ReferReceived(UAEvent):
    """(added) The peer of one of our outgoing calls (a phone ivr rang) sent a REFER in that
    dialog (RFC 3515) and the UA answered 202: the runtime decides and reports how it goes
    with :meth:`~ivr.sip.client.ClientSide.notify_refer`."""

    call_id: str
    target: ReferTarget
    referred_by: str


@dataclass(frozen=True)
class RequestResult(UAEvent):
    """(added) The final response to a request sent with :meth:`~ivr.sip.ua.UserAgent.send_request`
    (``status`` 408 and no ``response`` when the transaction timed out)."""

    call_id: str
    status: int
    response: Response | None


@dataclass(frozen=True)
class OutgoingCallFailed(UAEvent):
    """Our INVITE got a final non-2xx answer (408 when it timed out)."""

    call_id: str
    status: int
    reason: str
