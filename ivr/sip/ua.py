"""The sans-IO SIP user agent: UAS for incoming calls, UAC for what ivr sends.

This module owns the transaction user (RFC 3261 sections 8, 12-15, 17 glue,
18.2.2 response routing with RFC 3581, RFC 4028 session timers).  The
transport feeds it bytes with :meth:`UserAgent.receive` and the time, drains
:meth:`UserAgent.outgoing` and :meth:`UserAgent.next_event`, and arms one
timer at :meth:`UserAgent.next_timer`, calling :meth:`UserAgent.handle_timer`
when it comes.  The call runner answers events with the call commands
(``ringing``, ``answer``, ``reject``, ``hangup``, ``accept_reoffer``...).

A call is keyed by its Call-ID string.

The agent is one class in three modules: this one has the driving interface,
requests in and the call commands (the UAS); ivr.sip.client the client side
(outgoing INVITE, CANCEL, ACK, BYE, REFER, session refreshes, out-of-dialog
requests such as a trunk's REGISTER, and their answers); ivr.sip.uacore the
per-call state and primitives both share.  The events it emits are in
ivr.sip.events.

Choices worth knowing (interface additions are marked "added"):

* A re-INVITE without SDP surfaces as ``ReOffer(offer=None)``; the runner's
  ``accept_reoffer(call_id, our_offer)`` puts our offer in the 200 and the
  peer's answer, carried by the ACK, arrives as :class:`ReOfferAnswer`
  (added).  ``CallConfirmed`` is only ever emitted once per call.
* An UPDATE without SDP is a pure session refresh (RFC 4028): the UA
  answers it itself and emits nothing.
* ``hangup`` before our final answer rejects the INVITE with 480
  (Temporarily Unavailable); on an outgoing call it sends CANCEL (or
  waits for the first provisional response, 9.1).  ``hangup`` of an
  answered call whose ACK has not arrived yet sends the BYE when the ACK
  comes or the ACK wait times out (RFC 3261 section 15).  ``CallEnded(reason
  ="local")`` is emitted at once for every ``hangup``; ``reject`` emits
  nothing (the runner chose it).
* An INVITE the runner never answers gets 487 after its Expires (at most
  ``invite_timeout``, 300 s) and ``CallEnded(reason="transaction_timeout")``.
  A ``RequestReceived`` never answered is forgotten after 64*T1.
* Commands for a call that is already gone are ignored (the runner races
  with the network: a CANCEL may cross its ``answer``).
* ``progress(call_id, sdp, now)`` (added) sends 183 with early media.
* For transfers and trunks (added by that work): ``refer`` sends a REFER in
  a confirmed dialog and reports its response and NOTIFYs as
  :class:`ReferProgress`; ``send_request`` runs an out-of-dialog non-INVITE
  client transaction (a trunk's REGISTER) and reports :class:`RequestResult`.
* ``reject`` and ``respond`` accept extra ``headers`` (added), e.g.
  Retry-After or Warning; ``invite`` accepts ``auth=DigestClient(...)``
  (added) to answer a trunk's 401/407.
* (added) A REFER from the phone of one of our outgoing calls (a staff transfer)
  is answered 202 (400 when its Refer-To is unusable) and surfaces as
  :class:`ReferReceived`; the runner reports progress with ``notify_refer``.
* A method the UA does not allow gets 405 with Allow when it is a SIP method
  we know of (SUBSCRIBE, REFER...), 501 with Allow when the method is not
  recognised at all (RFC 3261 21.5.2, RFC 4475 3.1.1.2).
* In-dialog requests go to the remote target / route set; for a call that
  came over TCP, or whose Contact is a private address different from the
  packet's source, they go back to where the INVITE came from (NAT).
* No hostname resolution here (sans-IO): ``Outgoing.dest`` may carry a host
  name from a Contact or Route; the transport resolves it.
* ``gate`` (added; :class:`~ivr.sip.throttle.Gate`) is asked about every INVITE, REGISTER
  and OPTIONS by its first word, before parsing: dropped unread, or, for a new INVITE
  shed under overload, answered 503 with Retry-After statelessly (no transaction, no call).
"""

from __future__ import annotations

import functools
import re
import secrets
from collections.abc import Hashable, Iterable
from ipaddress import ip_address
from urllib.parse import unquote

from ivr.sip.client import ClientSide
from ivr.sip.dialog import Dialog, DialogError, negotiate_uas
from ivr.sip.events import (
    CallCancelled,
    CallConfirmed,
    CallEnded,
    DtmfInfo,
    IncomingCall,
    ReferProgress,
    ReferReceived,
    ReOffer,
    ReOfferAnswer,
    RequestReceived,
    UAEvent,
)
from ivr.sip.info import DtmfBody, DtmfBodyError
from ivr.sip.message import (
    Headers,
    Request,
    Response,
    SipParseError,
    SipUri,
    Via,
    build_response,
    parse_message,
    split_quoted,
)
from ivr.sip.refer import ReferError, parse_refer
from ivr.sip.throttle import GATED, Gate, Verdict
from ivr.sip.transaction import (
    InviteServerTransaction,
    NonInviteServerTransaction,
    State,
    Transaction,
    TransactionError,
    cancel_target_key,
    server_key,
)
from ivr.sip.uacore import SUPPORTED, Call, Outgoing, _tag, extract_sdp, log

# Methods defined by RFC 3261 and its extensions: these get 405 when not allowed;
# any other method token is not recognised and gets 501 (RFC 3261 8.2.1, 21.5.2).
KNOWN_METHODS = frozenset((
    "INVITE", "ACK", "CANCEL", "BYE", "OPTIONS", "REGISTER", "INFO", "UPDATE", "PRACK",
    "SUBSCRIBE", "NOTIFY", "REFER", "MESSAGE", "PUBLISH",
))
URI_SCHEMES = ("sip", "sips", "tel")
ACCEPT = "application/sdp"


@functools.lru_cache(maxsize=1024)  # asked for every INVITE: an address's answer never changes
def _is_private(host: str) -> bool:
    try:
        addr = ip_address(host.strip("[]"))
    except ValueError:
        return False
    return addr.is_private or addr.is_loopback or addr.is_link_local


# --------------------------------------------------------------------------- the user agent


class UserAgent(ClientSide):
    """A sans-IO SIP user agent (RFC 3261 UAS and UAC cores over section 17 transactions).

    The server side (requests in, the call commands of the runner) is here; the
    client side is :class:`~ivr.sip.client.ClientSide`, the shared state
    :class:`~ivr.sip.uacore.AgentCore`.
    """

    gate: Gate | None = None

    # ------------------------------------------------------------------ driving interface
    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> None:
        """Feed one datagram / framed stream message.  Never raises."""
        transport = transport.lower()
        if not data.strip(b"\r\n"):
            # An RFC 5626 CRLF keep-alive (phones send them over UDP too) or an empty
            # datagram: nothing to answer, nothing worth a log line.
            return
        verdict = self._admit(data, source[0], now)
        if verdict is Verdict.DROP:
            return
        try:
            message = parse_message(data)
        except SipParseError as exc:
            self.reject_unparsable(exc, source, transport)
            return
        try:
            if verdict is Verdict.SHED and self._shed(message, source, transport):
                return
            if isinstance(message, Request):
                self._on_request(message, source, transport, now)
            else:
                self._on_response(message, source, transport, now)
        except Exception:  # noqa: BLE001 -- one bad message must not take the server down
            log.exception("dropped a %s from %s:%s", type(message).__name__, *source)

    def _admit(self, data: bytes, ip: str, now: float) -> Verdict:
        """The gate's verdict on an INVITE, REGISTER or OPTIONS, known by its first word alone."""
        end = data.find(b" ", 0, 9)
        if self.gate is None or end < 0 or data[:end] not in GATED:
            return Verdict.TAKE
        return self.gate.check(data[:end].decode(), ip, now)

    def _shed(self, message: Request | Response, source: tuple[str, int], transport: str) -> bool:
        """A new INVITE under overload: 503 with Retry-After (21.5.4), sent without a transaction.

        A retransmission of an INVITE being answered, and a re-INVITE of a call already up,
        go on as usual (False): calls already taken are never shed."""
        if not isinstance(message, Request) or message.method != "INVITE" or message.to.tag:
            return False
        self._stamp_via(message, source)
        if server_key(message) in self._server_tx:
            return False
        assert self.gate is not None
        response = build_response(message, 503, to_tag=_tag(), headers=[("Retry-After", str(self.gate.retry_after))])
        self._send(response, self._response_dest(message, source, transport), transport)
        return True

    def next_event(self) -> UAEvent | None:
        return self._events.popleft() if self._events else None

    def outgoing(self) -> list[Outgoing]:
        out, self._out = self._out, []
        return out

    def next_timer(self) -> float | None:
        return self.timers.next_deadline()

    def handle_timer(self, now: float) -> None:
        for key in self.timers.pop_due(now):
            try:
                self._fire(key, now)
            except Exception:  # noqa: BLE001
                log.exception("timer %r failed", key)

    # ------------------------------------------------------------------ responses out
    def _response_dest(self, request: Request, source: tuple[str, int], transport: str) -> tuple[str, int]:
        """RFC 3261 18.2.2 with RFC 3581: where a response to ``request`` goes."""
        if transport != "udp":
            return source  # same connection (the transport reuses it)
        via = request.top_via
        if "maddr" in via.params and via.params["maddr"]:
            return str(via.params["maddr"]), via.port or 5060
        if via.rport is not None:
            return via.received or source[0], via.rport
        return via.received or via.host.strip("[]"), via.port or 5060

    def _stamp_via(self, request: Request, source: tuple[str, int]) -> None:
        """Add received/rport to the top Via (18.2.1, RFC 3581 section 4)."""
        via = request.top_via
        params: dict[str, str | None] = {}
        if "rport" in via.params:
            params["rport"] = str(source[1])
            params["received"] = source[0]
        elif via.host.strip("[]") != source[0]:
            params["received"] = source[0]
        if params:
            _replace_top_via(request.headers, via.with_params(**params))

    def reject_unparsable(self, exc: SipParseError, source: tuple[str, int], transport: str) -> None:
        """Answer a message that could not be accepted with ``exc.status`` when it can be routed
        (the transport calls this too, for a TCP message its framer refused); else drop it."""
        request = exc.request
        if request is None or request.method == "ACK":
            log.info("dropped unparsable message from %s:%s: %s", *source, exc.reason)
            return
        try:
            self._stamp_via(request, source)
            # The reason may quote the offending input: keep the quoted-string well formed.
            text = "".join(c if c.isprintable() and c not in '"\\' else "?" for c in exc.reason[:100])
            headers = [("Warning", f'399 {self.local_host} "{text}"')]
            if exc.status == 505:
                headers = []
            response = build_response(request, exc.status, to_tag=_tag(), headers=headers)
            self._send(response, self._response_dest(request, source, transport), transport)
        except Exception:  # noqa: BLE001
            log.info("could not answer unparsable message from %s:%s", *source)

    # ------------------------------------------------------------------ server transactions and timers
    def _fire(self, key: Hashable, now: float) -> None:
        assert isinstance(key, tuple)
        owner, name = key[0], key[1]
        if owner == "call":
            self._fire_call_timer(key[1], key[2], now)
            return
        if owner == "handle":
            # The TU never answered: the client gave up long ago (Timer F), forget it.
            tx = self._handles.pop(key[1], None)
            if tx is not None:
                log.warning("request %s from %s was never answered", tx.request.method, tx.dest)
                self._forget_tx(tx)
            return
        tx = self._server_tx.get(owner) or self._client_tx.get(owner)
        if tx is None:
            return
        tx.fire(name, now)
        self._after_client(tx, self._run(tx, now), now)

    def _server_respond(self, tx: Transaction, response: Response, now: float) -> None:
        assert isinstance(tx, InviteServerTransaction | NonInviteServerTransaction)
        try:
            tx.send_response(response, now)
        except TransactionError as exc:
            log.warning("response not sent: %s", exc)
            return
        self.responses_sent[response.status] += 1
        self._run(tx, now)

    def _new_server_tx(self, request: Request, source: tuple[str, int], transport: str,
                       key: Hashable) -> Transaction:
        dest = self._response_dest(request, source, transport)
        cls = InviteServerTransaction if request.method == "INVITE" else NonInviteServerTransaction
        tx = cls(key, request, dest, transport, self.timers, self.values)
        self._server_tx[key] = tx
        return tx

    def _reply(self, tx: Transaction, status: int, now: float, *, to_tag: str | None = None,
               headers: Iterable[tuple[str, str]] = (), body: bytes = b"", reason: str | None = None) -> None:
        response = build_response(tx.request, status, reason, to_tag=to_tag or _tag(),
                                  headers=list(headers), body=body)
        self._server_respond(tx, response, now)

    # ------------------------------------------------------------------ requests in
    def _on_request(self, request: Request, source: tuple[str, int], transport: str, now: float) -> None:
        self._stamp_via(request, source)
        key = server_key(request)
        if request.method == "ACK":
            self._on_ack(request, key, now)
            return
        existing = self._server_tx.get(key)
        if existing is not None:
            try:
                existing.receive(request, now)  # type: ignore[attr-defined]
            except TransactionError as exc:
                log.debug("%s", exc)
            self._run(existing, now)
            return
        tx = self._new_server_tx(request, source, transport, key)
        if request.method == "CANCEL":
            self._on_cancel(request, tx, now)
            return
        if isinstance(tx, InviteServerTransaction):
            self._server_respond(tx, build_response(request, 100), now)
        if not self._validate(request, tx, now):
            return
        if request.to.tag and not self._handed_over(request):
            self._on_in_dialog(request, tx, source, now)
        else:
            self._on_out_of_dialog(request, tx, source, transport, now)

    def _validate(self, request: Request, tx: Transaction, now: float) -> bool:
        """RFC 3261 8.2.1-8.2.3: method, URI scheme, merged requests, extensions, content."""
        if request.method not in self.allow_methods and not self._is_refer_notify(request) \
                and not self._is_leg_refer(request):
            status = 405 if request.method in KNOWN_METHODS else 501
            self._reply(tx, status, now, headers=[("Allow", ", ".join(self.allow_methods))])
            return False
        scheme = request.uri.split(":", 1)[0].lower()
        if scheme not in URI_SCHEMES:
            self._reply(tx, 416, now)
            return False
        if not request.to.tag:
            merge_key = (request.call_id, request.from_.tag or "", request.cseq[0])
            other = self._merge.get(merge_key)
            if other is not None and other != tx.key:
                self._reply(tx, 482, now)
                return False
            self._merge[merge_key] = tx.key
            self._merge_of[tx.key] = merge_key
        unsupported = [t for t in request.header_tokens("Require") if t not in SUPPORTED]
        if unsupported and request.method != "CANCEL":
            self._reply(tx, 420, now, headers=[("Unsupported", ", ".join(unsupported))])
            return False
        if request.method in ("INVITE", "UPDATE") and request.body and extract_sdp(request) is None:
            self._reply(tx, 415, now, headers=[("Accept", ACCEPT)])
            return False
        if request.method == "INVITE" and not _accepts_sdp(request):
            # Our 200 must carry SDP; the peer says it cannot take it (RFC 4475 3.3.15).
            self._reply(tx, 406, now, headers=[("Accept", ACCEPT)])
            return False
        return True

    def _handed_over(self, request: Request) -> bool:
        """(added) An in-dialog request of a dialog that is not a call (a SUBSCRIBE refreshing a
        subscription): handed over as :class:`RequestReceived` like an out-of-dialog one."""
        return request.method in self.dialog_requests and request.call_id not in self.calls

    def _on_out_of_dialog(self, request: Request, tx: Transaction, source: tuple[str, int],
                          transport: str, now: float) -> None:
        method = request.method
        if method == "INVITE":
            self._on_invite(request, tx, source, transport, now)
        elif method == "OPTIONS":
            self._on_options(tx, now)
        elif method in ("BYE", "UPDATE", "INFO", "PRACK"):
            self._reply(tx, 481, now)
        else:
            handle = next(self._handle_ids)
            self._handles[handle] = tx
            self.timers.set(("handle", handle), now + 64 * self.values.t1)
            self._emit(RequestReceived(handle, request, source, transport))

    def _on_options(self, tx: Transaction, now: float) -> None:
        if self.draining:
            self._reply(tx, 503, now, headers=[("Retry-After", str(self.retry_after))])
            return
        headers = [*self._common_headers(), ("Accept", ACCEPT), ("Accept-Language", "en"),
                   ("User-Agent", self.user_agent)]
        self._reply(tx, 200, now, headers=headers)

    # ------------------------------------------------------------------ incoming INVITE
    def _on_invite(self, request: Request, tx: Transaction, source: tuple[str, int],
                   transport: str, now: float) -> None:
        call_id = request.call_id
        if self.draining:
            self._reply(tx, 503, now, headers=[("Retry-After", str(self.retry_after))])
            return
        if call_id in self.calls:
            # Same Call-ID, no To tag, new branch and CSeq: a forked or broken peer.
            self._reply(tx, 482, now)
            return
        try:
            session = negotiate_uas(request, min_se=self.min_se,
                                    default_interval=self.session_expires, now=now)
        except DialogError as exc:
            headers = [("Min-SE", str(self.min_se))] if exc.status == 422 else []
            self._reply(tx, exc.status, now, headers=headers, reason=exc.reason)
            return
        offer = extract_sdp(request)
        call = Call(call_id, "uas", request, source, transport, _tag(), invite_tx=tx,
                    session=session, late_offer=offer is None)
        call.prefer_source = self._prefer_source(request, source, transport)
        self.calls[call_id] = call
        expires = request.headers.get("Expires") or ""
        wait = float(expires) if expires.isdecimal() else self.invite_timeout
        self.timers.set(("call", call_id, "invite_expire"), now + min(wait, self.invite_timeout))
        self._emit(IncomingCall(call_id, request, offer, _caller(request), _called(request), source))

    def _prefer_source(self, request: Request, source: tuple[str, int], transport: str) -> bool:
        if transport != "udp":
            return True
        contact = request.contact
        if not contact or not isinstance(contact[0].uri, SipUri):
            return True
        host = contact[0].uri.host.strip("[]")
        return host != source[0] and _is_private(host) and not _is_private(source[0])

    def _dialog_headers(self, call: Call) -> list[tuple[str, str]]:
        return [("Contact", self.contact(call.transport)), *self._common_headers(),
                ("User-Agent", self.user_agent)]

    def _uas_response(self, call: Call, status: int, *, headers: Iterable[tuple[str, str]] = (),
                      body: bytes = b"", reason: str | None = None) -> Response:
        """A response to the initial INVITE: To tag, and Record-Route copied (12.1.1)."""
        h: list[tuple[str, str]] = []
        if 100 < status < 300:
            h += [("Record-Route", rr) for rr in call.invite.headers.get_all("Record-Route")]
            h += self._dialog_headers(call)
        h += list(headers)
        if body:
            h.append(("Content-Type", "application/sdp"))
        return build_response(call.invite, status, reason, to_tag=call.local_tag, headers=h, body=body)

    def _ensure_dialog(self, call: Call) -> Dialog:
        if call.dialog is None:
            call.dialog = Dialog.as_uas(call.invite, call.local_tag, self.contact(call.transport))
        return call.dialog

    # ------------------------------------------------------------------ call commands (runner)
    def ringing(self, call_id: str, now: float) -> None:
        call = self._live_call(call_id, "incoming", "early")
        if call is None or call.invite_tx is None:
            return
        self._ensure_dialog(call)
        call.state = "early"
        self._server_respond(call.invite_tx, self._uas_response(call, 180), now)

    def progress(self, call_id: str, sdp: bytes, now: float) -> None:
        """(added) 183 Session Progress with our SDP: early media, e.g. an announcement
        before a reject.  Sent unreliably (no 100rel); the final answer repeats the SDP."""
        call = self._live_call(call_id, "incoming", "early")
        if call is None or call.invite_tx is None:
            return
        self._ensure_dialog(call)
        call.state = "early"
        call.last_sdp = sdp
        self._server_respond(call.invite_tx, self._uas_response(call, 183, body=sdp), now)

    def answer(self, call_id: str, sdp: bytes, now: float) -> None:
        call = self._live_call(call_id, "incoming", "early")
        if call is None or call.invite_tx is None:
            return
        dialog = self._ensure_dialog(call)
        headers: list[tuple[str, str]] = []
        if call.session is not None:
            headers.append(("Session-Expires", call.session.header()))
            if call.session.peer_supports:
                headers.append(("Require", "timer"))
        response = self._uas_response(call, 200, headers=headers, body=sdp)
        call.state = "answered"
        self.timers.cancel(("call", call.call_id, "invite_expire"))
        call.last_sdp = sdp
        self._server_respond(call.invite_tx, response, now)
        self._start_2xx_retransmit(call, response, dialog.remote_seq or 0, now)

    def reject(self, call_id: str, status: int, now: float, reason: str | None = None, *,
               headers: Iterable[tuple[str, str]] = ()) -> None:
        call = self._live_call(call_id, "incoming", "early")
        if call is None or call.invite_tx is None:
            return
        if not 300 <= status <= 699:
            raise ValueError(f"reject needs a final non-2xx status, got {status}")
        self._server_respond(call.invite_tx, self._uas_response(call, status, headers=headers,
                                                                reason=reason), now)
        self._end(call, None)

    def hangup(self, call_id: str, now: float) -> None:
        call = self._live_call(call_id)
        if call is None or call.state == "ended":
            return
        if call.role == "uac" and call.state == "outgoing":
            if not call.hung_up:
                call.hung_up = True
                self._cancel_outgoing(call, now)
                self._emit(CallEnded(call.call_id, "local"))
        elif call.state in ("incoming", "early"):
            if call.invite_tx is not None:
                self._server_respond(call.invite_tx, self._uas_response(call, 480), now)
            self._end(call, "local")
        elif call.state == "answered" and call.role == "uas":
            call.hangup_after_ack = True
            self._emit(CallEnded(call.call_id, "local"))
        else:
            self._send_bye(call, now)
            self._end(call, "local")

    def accept_reoffer(self, call_id: str, sdp: bytes, now: float) -> None:
        call = self._live_call(call_id, "early", "answered", "confirmed")
        if call is None or call.reoffer_tx is None or call.reoffer_request is None:
            return
        request, tx = call.reoffer_request, call.reoffer_tx
        call.reoffer_tx = call.reoffer_request = None
        dialog = self._ensure_dialog(call)
        headers = [("Contact", self.contact(call.transport)), *self._common_headers()]
        if call.session is not None:
            headers.append(("Session-Expires", call.session.header()))
            if call.session.peer_supports:
                headers.append(("Require", "timer"))
        if sdp:
            headers.append(("Content-Type", "application/sdp"))
            call.last_sdp = sdp
        response = build_response(request, 200, to_tag=dialog.local_tag, headers=headers, body=sdp)
        self._server_respond(tx, response, now)
        if request.method == "INVITE":
            call.reoffer_awaits_ack = extract_sdp(request) is None
            self._start_2xx_retransmit(call, response, request.cseq[0], now)

    def reject_reoffer(self, call_id: str, status: int, now: float) -> None:
        call = self._live_call(call_id, "early", "answered", "confirmed")
        if call is None or call.reoffer_tx is None or call.reoffer_request is None:
            return
        request, tx = call.reoffer_request, call.reoffer_tx
        call.reoffer_tx = call.reoffer_request = None
        dialog = self._ensure_dialog(call)
        self._server_respond(tx, build_response(request, status, to_tag=dialog.local_tag), now)

    def respond(self, request_handle: int, status: int, now: float, *,
                headers: Iterable[tuple[str, str]] = (), body: bytes = b"", to_tag: str | None = None) -> None:
        tx = self._handles.get(request_handle)
        if tx is None:
            log.debug("ignoring respond() for unknown handle %s", request_handle)
            return
        if status >= 200:
            del self._handles[request_handle]
            self.timers.cancel(("handle", request_handle))
        h = list(headers)
        if body and not any(n.lower() in ("content-type", "c") for n, _ in h):
            raise ValueError("a body needs a Content-Type header")
        self._reply(tx, status, now, headers=h, body=body, to_tag=to_tag)

    # ------------------------------------------------------------------ 2xx retransmission (13.3.1.4)
    def _start_2xx_retransmit(self, call: Call, response: Response, cseq: int, now: float) -> None:
        call.pending_2xx = response
        call.pending_2xx_cseq = cseq
        call.retransmit_interval = self.values.t1
        if call.transport == "udp":
            self.timers.set(("call", call.call_id, "2xx"), now + self.values.t1)
        self.timers.set(("call", call.call_id, "ack"), now + 64 * self.values.t1)

    def _fire_call_timer(self, call_id: str, name: str, now: float) -> None:
        call = self.calls.get(call_id)
        if call is None:
            return
        if name == "2xx" and call.pending_2xx is not None:
            self._send(call.pending_2xx, self._uas_dest(call), call.transport)
            call.retransmit_interval = min(2 * call.retransmit_interval, self.values.t2)
            self.timers.set(("call", call_id, "2xx"), now + call.retransmit_interval)
        elif name == "ack" and call.pending_2xx is not None:
            self._stop_2xx_retransmit(call)
            log.info("call %s: no ACK for our 2xx after %ss, sending BYE", call_id, 64 * self.values.t1)
            self._send_bye(call, now)
            self._end(call, None if call.hangup_after_ack else "ack_timeout")
        elif name == "refresh":
            self._send_refresh(call, now)
        elif name == "cancel_wait" and call.state == "outgoing":
            log.info("call %s: no final response after our CANCEL", call_id)
            if call.invite_tx is not None:
                self._forget_tx(call.invite_tx)
                self.timers.cancel((call.invite_tx.key, "B"))
            self._end(call, None)
        elif name == "invite_expire" and call.state in ("incoming", "early") and call.invite_tx:
            log.info("call %s: INVITE expired without a final answer", call_id)
            self._server_respond(call.invite_tx, self._uas_response(call, 487), now)
            self._end(call, "transaction_timeout")
        elif name == "expire":
            log.info("call %s: session expired without refresh", call_id)
            self._send_bye(call, now)
            self._end(call, "session_expired")

    def _uas_dest(self, call: Call) -> tuple[str, int]:
        if call.invite_tx is not None:
            return call.invite_tx.dest
        return call.source

    # ------------------------------------------------------------------ ACK, CANCEL
    def _on_ack(self, request: Request, key: Hashable, now: float) -> None:
        tx = self._server_tx.get(key)
        if isinstance(tx, InviteServerTransaction) and tx.state in (State.COMPLETED, State.CONFIRMED):
            tx.receive(request, now)
            self._run(tx, now)
            return
        call = self.calls.get(request.call_id)
        if call is None or call.dialog is None or not call.dialog.matches(request):
            log.debug("ACK for no dialog (Call-ID %s) absorbed", request.call_id)
            return
        if call.pending_2xx is None or request.cseq[0] != call.pending_2xx_cseq:
            return  # retransmitted ACK
        self._stop_2xx_retransmit(call)
        body = extract_sdp(request)
        if call.state == "answered":
            call.state = "confirmed"
            self._arm_session_timer(call, now)
            if call.hangup_after_ack:
                self._send_bye(call, now)
                self._end(call, None)
                return
            self._emit(CallConfirmed(call.call_id, body if call.late_offer else None))
        elif call.reoffer_awaits_ack:
            call.reoffer_awaits_ack = False
            self._emit(ReOfferAnswer(call.call_id, body))

    def _on_cancel(self, cancel: Request, tx: Transaction, now: float) -> None:
        invite_tx = self._server_tx.get(cancel_target_key(cancel))
        if not isinstance(invite_tx, InviteServerTransaction):
            self._reply(tx, 481, now)
            return
        call = self.calls.get(cancel.call_id)
        local_tag = call.local_tag if call else None
        self._reply(tx, 200, now, to_tag=local_tag)
        if invite_tx.state is not State.PROCEEDING:
            return  # the CANCEL crossed our final response: it has no effect (9.2)
        if call is not None and call.invite_tx is invite_tx:
            self._server_respond(invite_tx, self._uas_response(call, 487), now)
            self._end(call, None)
            self._emit(CallCancelled(call.call_id))
        else:
            # A CANCELled re-INVITE: 487 to it; the dialog itself goes on (RFC 3261 9.2).
            self._reply(invite_tx, 487, now)
            if call is not None and call.reoffer_tx is invite_tx:
                call.reoffer_tx = call.reoffer_request = None

    # ------------------------------------------------------------------ in-dialog requests
    def _on_in_dialog(self, request: Request, tx: Transaction, source: tuple[str, int],
                      now: float) -> None:
        call = self.calls.get(request.call_id)
        dialog = call.dialog if call else None
        if call is None or dialog is None or call.state == "ended" or not dialog.matches(request):
            self._reply(tx, 481, now)
            return
        try:
            dialog.check_remote_cseq(request)
        except DialogError as exc:
            self._reply(tx, exc.status, now, reason=exc.reason, to_tag=dialog.local_tag)
            return
        method = request.method
        if method == "BYE":
            self._reply(tx, 200, now, to_tag=dialog.local_tag)
            if call.role == "uas" and call.invite_tx is not None and call.invite_tx.state is State.PROCEEDING:
                self._server_respond(call.invite_tx, self._uas_response(call, 487), now)
            self._end(call, "bye")
        elif method in ("INVITE", "UPDATE"):
            self._on_reoffer(call, dialog, request, tx, now)
        elif method == "INFO":
            self._on_info(call, dialog, request, tx, now)
        elif method == "NOTIFY" and call.refer_pending:
            self._on_refer_notify(call, dialog, request, tx, now)
        elif method == "REFER" and call.role == "uac":
            self._on_refer(call, dialog, request, tx, now)
        elif method == "OPTIONS":
            self._reply(tx, 200, now, to_tag=dialog.local_tag,
                        headers=[*self._common_headers(), ("Accept", ACCEPT)])
        else:
            self._reply(tx, 405 if method not in ("PRACK",) else 481, now, to_tag=dialog.local_tag,
                        headers=[("Allow", ", ".join(self.allow_methods))])

    def _is_refer_notify(self, request: Request) -> bool:
        """A NOTIFY in the dialog of a call whose REFER is pending: allowed although not in Allow."""
        if request.method != "NOTIFY" or not request.to.tag:
            return False
        call = self.calls.get(request.call_id)
        return call is not None and call.refer_pending

    def _is_leg_refer(self, request: Request) -> bool:
        """(added) A REFER from a phone ivr called (our UAC dialog): a staff transfer, allowed
        although not in Allow.  A caller's REFER on its own inbound call still gets 405."""
        call = self.calls.get(request.call_id) if request.method == "REFER" and request.to.tag else None
        return call is not None and call.role == "uac"

    def _on_refer(self, call: Call, dialog: Dialog, request: Request, tx: Transaction, now: float) -> None:
        """202 to a well-formed REFER (400 otherwise), then :class:`ReferReceived` (RFC 3515 2.4.2)."""
        try:
            target = parse_refer(request)
        except ReferError as exc:
            self._reply(tx, exc.status, now, to_tag=dialog.local_tag, reason=exc.reason)
            return
        self._reply(tx, 202, now, to_tag=dialog.local_tag, headers=[("Contact", self.contact(call.transport))])
        self._emit(ReferReceived(call.call_id, target, request.headers.get("Referred-By") or ""))

    def _on_refer_notify(self, call: Call, dialog: Dialog, request: Request, tx: Transaction, now: float) -> None:
        """NOTIFY of the implicit refer subscription: 200, then the sipfrag status (RFC 3515 2.4.5)."""
        event = (request.headers.get("Event") or request.headers.get("o") or "").split(";")[0].strip().lower()
        if event != "refer":
            self._reply(tx, 489, now, to_tag=dialog.local_tag, reason="Bad Event")
            return
        match = re.match(rb"\s*SIP/2\.0\s+(\d{3})", request.body or b"")
        if match is None:
            self._reply(tx, 400, now, to_tag=dialog.local_tag, reason="Bad Sipfrag")
            return
        self._reply(tx, 200, now, to_tag=dialog.local_tag)
        state = (request.headers.get("Subscription-State") or "").split(";")[0].strip().lower()
        status = int(match.group(1))
        final = state == "terminated" or status >= 200
        if final:
            call.refer_pending = False
        self._emit(ReferProgress(call.call_id, "notify", status, final=final))

    def _on_info(self, call: Call, dialog: Dialog, request: Request, tx: Transaction, now: float) -> None:
        try:
            key = DtmfBody.parse(request.content_type, request.body)
        except DtmfBodyError as exc:
            self._reply(tx, exc.status, now, to_tag=dialog.local_tag, reason=exc.reason)
            return
        self._reply(tx, 200, now, to_tag=dialog.local_tag)
        if key is not None:
            self._emit(DtmfInfo(call.call_id, key.digit, key.duration_ms))

    def _on_reoffer(self, call: Call, dialog: Dialog, request: Request, tx: Transaction, now: float) -> None:
        """re-INVITE / UPDATE: glare (491), overlap (500), session timer, then the runner (14.2)."""
        if call.local_reinvite_key is not None and request.method == "INVITE":
            self._reply(tx, 491, now, to_tag=dialog.local_tag)
            return
        if call.reoffer_tx is not None or (request.method == "INVITE" and call.pending_2xx is not None):
            self._reply(tx, 500, now, to_tag=dialog.local_tag,
                        headers=[("Retry-After", str(secrets.randbelow(10) + 1))])
            return
        try:
            session = negotiate_uas(request, min_se=self.min_se,
                                    default_interval=self.session_expires, now=now)
        except DialogError as exc:
            headers = [("Min-SE", str(self.min_se))] if exc.status == 422 else []
            self._reply(tx, exc.status, now, to_tag=dialog.local_tag, headers=headers)
            return
        dialog.refresh_target(request)
        offer = extract_sdp(request)
        if session is not None or call.session is not None:
            call.session = session
            self._arm_session_timer(call, now)
        if request.method == "UPDATE" and offer is None:
            # A pure session refresh (RFC 4028 section 10): answer it ourselves.
            headers = [("Contact", self.contact(call.transport)), *self._common_headers()]
            if call.session is not None:
                headers.append(("Session-Expires", call.session.header()))
                if call.session.peer_supports:
                    headers.append(("Require", "timer"))
            self._reply(tx, 200, now, to_tag=dialog.local_tag, headers=headers)
            return
        call.reoffer_tx, call.reoffer_request = tx, request
        self._emit(ReOffer(call.call_id, offer, request.method))


# --------------------------------------------------------------------------- small helpers


def _accepts_sdp(request: Request) -> bool:
    accept = [a.split(";")[0].strip().lower() for a in request.headers.get_all("Accept")]
    if "Accept" not in request.headers or not any(accept):
        return True  # absent (or empty) Accept: application/sdp is assumed (20.1)
    return any(a in ("application/sdp", "application/*", "*/*") for a in accept)


#: Longest caller / called number handed to the flow (E.164 is 15 digits; SIP users are names).
MAX_PARTY_CHARS = 128


def party_text(raw: str) -> str:
    """A caller or called number as the flow sees it: unescaped, printable, bounded.

    The value is the caller's to choose (``%0D%0A``, ``%00``, bytes that are not UTF-8 all
    unescape to something): it reaches the flow's variables, logs, the voicemail index and
    Voice2Mail headers, so control and unencodable characters become U+FFFD.
    """
    text = unquote(raw, errors="replace")[:MAX_PARTY_CHARS]
    if text.isprintable():  # the usual number: nothing to replace
        return text
    return "".join(c if c.isprintable() else "\ufffd" for c in text)


def _caller(request: Request) -> str:
    """The From user part, unescaped (``%2B41...`` -> ``+41...``), else the whole URI."""
    try:
        addr = request.from_
    except ValueError:
        return ""
    if isinstance(addr.uri, str) and addr.uri.lower().startswith("tel:"):
        return party_text(addr.uri[4:].split(";")[0])
    return party_text(addr.user.split(";")[0] if addr.user else str(addr.uri))


def _called(request: Request) -> str:
    """The Request-URI user part (tel: number), else the To user, unescaped."""
    try:
        uri = request.request_uri
    except ValueError:
        uri = request.uri
    if isinstance(uri, SipUri) and uri.user:
        return party_text(uri.user.split(";")[0])
    if isinstance(uri, str) and uri.lower().startswith("tel:"):
        return party_text(uri[4:].split(";")[0])
    to = request.to
    return party_text(to.user.split(";")[0] if to.user else str(to.uri))


def _replace_top_via(headers: Headers, via: Via) -> None:
    """Rewrite the first Via value, keeping the header's position and any later values."""
    first = headers.get("Via")
    if first is not None:
        rest = split_quoted(first, ",")[1:]
        headers.replace_first("Via", ", ".join([str(via), *rest]))


__all__ = ["MAX_PARTY_CHARS", "Outgoing", "UserAgent", "extract_sdp", "party_text"]
