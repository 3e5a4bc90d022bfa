"""The user agent's client side: what ivr sends (RFC 3261 sections 8.1, 9.1, 13.2, 22.2).

Outgoing INVITEs (transfer legs, trunk calls) with CANCEL, ACK for 2xx, forks
and Digest retries; BYE; our session refreshes (RFC 4028); REFER and the
NOTIFYs of its implicit subscription (RFC 3515); out-of-dialog requests such as
a trunk's REGISTER.  :class:`ClientSide` runs their client transactions and
turns the answers into events (ivr.sip.events); :class:`~ivr.sip.ua.UserAgent`
inherits it, so these are the agent's own methods.
"""

from __future__ import annotations

import secrets
from collections.abc import Hashable, Iterable

from ivr.sip.auth import DigestClient, parse_digest
from ivr.sip.dialog import Dialog, negotiate_uac
from ivr.sip.events import (
    OutgoingCallAnswered,
    OutgoingCallFailed,
    OutgoingCallProgress,
    ReferProgress,
    RequestResult,
)
from ivr.sip.message import Headers, Request, Response
from ivr.sip.refer import SIPFRAG, Replaces, sipfrag
from ivr.sip.replaces import Replaced
from ivr.sip.replaces import match as match_replaces
from ivr.sip.transaction import (
    InviteClientTransaction,
    NonInviteClientTransaction,
    Transaction,
    client_key,
    response_client_key,
)
from ivr.sip.uacore import AgentCore, Call, _tag, extract_sdp, log

__all__ = ["ClientSide"]


class ClientSide(AgentCore):
    """Client transactions of the user agent and what their answers mean for a call."""

    # ------------------------------------------------------------------ outgoing calls
    def invite(self, target_uri: str, sdp: bytes, now: float, *, from_uri: str,
               headers: Iterable[tuple[str, str]] = (), destination: tuple[str, int],
               transport: str = "udp", auth: DigestClient | None = None) -> str:
        """Place an outgoing call (UAC); returns its Call-ID.  Cancel it with hangup().

        ``auth`` (added): a trunk's :class:`~ivr.sip.auth.DigestClient`; a 401/407
        is then answered once with credentials instead of failing the call.
        """
        transport = transport.lower()
        call_id = f"{secrets.token_hex(12)}@{self.contact_host}"
        local_tag = _tag()
        h = Headers()
        h.add("Via", self._via(transport))
        h.add("Max-Forwards", "70")
        h.add("From", f"<{from_uri}>;tag={local_tag}")
        h.add("To", f"<{target_uri}>")
        h.add("Call-ID", call_id)
        h.add("CSeq", "1 INVITE")
        h.add("Contact", self.contact(transport))
        for name, value in [*self._common_headers(), ("User-Agent", self.user_agent), *headers]:
            h.add(name, value)
        if sdp:
            h.add("Content-Type", "application/sdp")
        request = Request("INVITE", target_uri, h, sdp)
        call = Call(call_id, "uac", request, destination, transport, local_tag, state="outgoing")
        call.last_sdp = sdp
        call.auth = auth
        self.calls[call_id] = call
        call.invite_tx = self._client_tx.get(
            self._start_client(request, destination, transport, now, call, "invite"))
        return call_id

    def _cancel_outgoing(self, call: Call, now: float) -> None:
        if not call.got_provisional:
            call.cancel_pending = True  # 9.1: no CANCEL before a provisional response
            return
        invite = call.invite
        h = Headers()
        h.add("Via", invite.headers.get_all("Via")[0])
        h.add("Max-Forwards", "70")
        for route in invite.headers.get_all("Route"):
            h.add("Route", route)
        h.add("From", invite.headers["From"])
        h.add("To", invite.headers["To"])
        h.add("Call-ID", invite.call_id)
        h.add("CSeq", f"{invite.cseq[0]} CANCEL")
        cancel = Request("CANCEL", invite.uri, h)
        self._start_client(cancel, call.source, call.transport, now, call, "cancel")
        call.cancel_pending = False
        call.cancel_sent = True
        # 9.1: no final response 64*T1 after the CANCEL: consider the INVITE dead.
        self.timers.set(("call", call.call_id, "cancel_wait"), now + 64 * self.values.t1)

    # ------------------------------------------------------------------ REFER (RFC 3515)
    def refer(self, call_id: str, refer_to: str, now: float, *, referred_by: str | None = None) -> bool:
        """(added) Blind transfer: send REFER with ``Refer-To: <refer_to>`` in the call's dialog
        (RFC 3515).  Its response and the NOTIFYs that follow arrive as :class:`ReferProgress`.
        False when the call is not confirmed (a REFER needs an established dialog)."""
        call = self._live_call(call_id, "confirmed")
        if call is None or call.dialog is None:
            return False
        headers = [("Refer-To", f"<{refer_to}>"), ("Contact", self.contact(call.transport)),
                   ("User-Agent", self.user_agent)]
        if referred_by:
            headers.append(("Referred-By", f"<{referred_by}>"))
        request = call.dialog.create_request("REFER", self._via(call.transport), headers=headers)
        self._start_client(request, self._dialog_dest(call), call.transport, now, call, "refer")
        call.refer_pending = True
        return True

    def notify_refer(self, call_id: str, status: int, now: float, *, reason: str | None = None) -> bool:
        """(added) Report how a REFER we accepted goes: a NOTIFY with a sipfrag of ``status``
        (RFC 3515 section 2.4.5); a final status (>= 200) terminates the implicit subscription.
        False when the call's dialog is gone."""
        call = self._live_call(call_id, "confirmed")
        if call is None or call.dialog is None:
            return False
        state = "active;expires=60" if status < 200 else "terminated;reason=noresource"
        headers = [("Event", "refer"), ("Subscription-State", state), ("Content-Type", SIPFRAG),
                   ("Contact", self.contact(call.transport)), ("User-Agent", self.user_agent)]
        request = call.dialog.create_request("NOTIFY", self._via(call.transport), headers=headers,
                                             body=sipfrag(status, reason))
        self._start_client(request, self._dialog_dest(call), call.transport, now, call, "notify")
        return True

    def replaced(self, replaces: Replaces) -> Replaced:
        """(added) Which of our calls ``replaces`` names (RFC 3891 section 3): a
        :class:`~ivr.sip.replaces.Replaced`, else :class:`~ivr.sip.replaces.ReplacesError`."""
        return match_replaces(self.calls, replaces)

    # ------------------------------------------------------------------ out-of-dialog requests
    def send_request(self, method: str, uri: str, headers: Iterable[tuple[str, str]], now: float, *,
                     destination: tuple[str, int], transport: str = "udp", body: bytes = b"") -> None:
        """(added) An out-of-dialog non-INVITE request (e.g. a trunk's REGISTER): the caller gives
        From, To, Call-ID, CSeq and the rest; the UA adds Via and Max-Forwards, runs the client
        transaction (retransmissions, Timer F) and reports the final answer as :class:`RequestResult`."""
        if method in ("INVITE", "ACK", "CANCEL"):
            raise ValueError(f"send_request is for non-INVITE requests, not {method}")
        transport = transport.lower()
        h = Headers()
        h.add("Via", self._via(transport))
        h.add("Max-Forwards", "70")
        for name, value in headers:
            h.add(name, value)
        self._start_client(Request(method, uri, h, body), destination, transport, now, None, "request")

    # ------------------------------------------------------------------ client transactions
    def _start_client(self, request: Request, dest: tuple[str, int], transport: str, now: float,
                      call: Call | None, purpose: str) -> Hashable:
        branch = request.top_via.branch or ""
        key = client_key(branch, request.method)
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        tx = cls(key, request, dest, transport, self.timers, self.values)
        self._client_tx[key] = tx
        if call is not None:
            self._tx_call[key] = call.call_id
        self._tx_purpose[key] = purpose
        tx.start(now)
        self._run(tx, now)
        return key

    def _dialog_dest(self, call: Call) -> tuple[str, int]:
        dialog = call.dialog
        if call.prefer_source or dialog is None:
            return call.source
        return dialog.destination() or call.source

    def _send_bye(self, call: Call, now: float) -> None:
        dialog = call.dialog
        if dialog is None:
            return
        try:
            request = dialog.create_request("BYE", self._via(call.transport),
                                            headers=[("User-Agent", self.user_agent)])
            self._start_client(request, self._dialog_dest(call), call.transport, now, call, "bye")
        except ValueError as exc:  # a route set or target we cannot use: the call still ends
            log.warning("call %s: BYE not sent: %s", call.call_id, exc)

    def _send_refresh(self, call: Call, now: float) -> None:
        """We are the refresher: UPDATE without SDP if the peer allows it, else re-INVITE with
        our last SDP unchanged (same o= version: no media change, RFC 3264 section 8)."""
        dialog = call.dialog
        if dialog is None or call.session is None or call.local_reinvite_key is not None:
            return
        allow = {m.strip().upper() for m in call.invite.headers.get_all("Allow")}
        method = "UPDATE" if "UPDATE" in allow else "INVITE"
        headers = [("Contact", self.contact(call.transport)), *self._common_headers(),
                   # RFC 4028 7.4: in our refresh we are the UAC; refresher=uac keeps the role
                   ("Session-Expires", f"{call.session.interval};refresher=uac"),
                   ("Min-SE", str(self.min_se))]
        body = b""
        if method == "INVITE" and call.last_sdp:
            headers.append(("Content-Type", "application/sdp"))
            body = call.last_sdp
        request = dialog.create_request(method, self._via(call.transport), headers=headers, body=body)
        key = self._start_client(request, self._dialog_dest(call), call.transport, now, call, "refresh")
        if method == "INVITE":
            call.local_reinvite_key = key

    # ------------------------------------------------------------------ responses in
    def _on_response(self, response: Response, source: tuple[str, int], transport: str, now: float) -> None:
        key = response_client_key(response)
        tx = self._client_tx.get(key)
        if tx is None:
            self._stray_response(response, now)
            return
        assert isinstance(tx, InviteClientTransaction | NonInviteClientTransaction)
        tx.receive(response, now)
        self._after_client(tx, self._run(tx, now), now)

    def _after_client(self, tx: Transaction, delivered: list[Request | Response], now: float) -> None:
        purpose = self._tx_purpose.get(tx.key, "")
        call = self.calls.get(self._tx_call.get(tx.key, ""))
        for message in delivered:
            if not isinstance(message, Response):
                continue
            if purpose == "invite" and call is not None:
                self._on_invite_response(call, message, now)
            elif purpose == "refresh" and call is not None:
                self._on_refresh_response(call, tx, message, now)
            elif purpose == "request" and message.status >= 200:
                self._emit(RequestResult(message.call_id, message.status, message))
            elif purpose == "refer" and call is not None and message.status >= 200:
                call.refer_pending = call.refer_pending and message.status < 300
                self._emit(ReferProgress(call.call_id, "response", message.status, final=message.status >= 300))

    def _stray_response(self, response: Response, now: float) -> None:
        """A 2xx retransmission after the INVITE client transaction is gone: re-ACK (13.2.2.4)."""
        if response.cseq[1] != "INVITE" or not 200 <= response.status < 300:
            return
        call = self.calls.get(response.call_id)
        if call is not None and call.role == "uac" and call.dialog is not None:
            self._send_ack(call, response, now)

    def _on_invite_response(self, call: Call, response: Response, now: float) -> None:
        status = response.status
        if status < 200:
            if response.to.tag and not call.early_tag:
                call.early_tag = response.to.tag  # the early dialog's remote tag (RFC 4235 lamps name it)
            if status > 100:
                self._emit(OutgoingCallProgress(call.call_id, status, extract_sdp(response)))
            if not call.got_provisional:
                call.got_provisional = True
                if call.cancel_pending:
                    self._cancel_outgoing(call, now)
            return
        if status < 300:
            first = call.dialog is None
            if first:
                call.dialog = Dialog.as_uac(call.invite, response)
                call.prefer_source = call.transport != "udp"
                call.session = negotiate_uac(response, now)
            elif call.dialog is not None and (response.to.tag or "") != call.dialog.remote_tag:
                self._drop_fork(call, response, now)
                return
            self._send_ack(call, response, now)
            if not first:
                return
            if call.cancel_pending or call.cancel_sent:
                # Our CANCEL crossed their 200: confirm, then end it (9.1, 15).
                self._send_bye(call, now)
                self._end(call, None)
                return
            call.state = "confirmed"
            self._arm_session_timer(call, now)
            self._emit(OutgoingCallAnswered(call.call_id, extract_sdp(response) or b""))
            return
        if call.state == "outgoing":
            if status in (401, 407) and not call.hung_up and self._retry_with_credentials(call, response, now):
                return
            self._end(call, None)
            if not call.hung_up:
                self._emit(OutgoingCallFailed(call.call_id, status, response.reason))

    def _send_ack(self, call: Call, response: Response, now: float) -> None:
        """ACK for a 2xx (13.2.2.4); built once, re-sent as is for every retransmitted 2xx."""
        dialog = call.dialog
        assert dialog is not None
        if call.ack is None or call.ack.cseq[0] != call.invite.cseq[0]:
            call.ack = dialog.create_request("ACK", self._via(call.transport), cseq=call.invite.cseq[0])
        self._send(call.ack, self._dialog_dest(call), call.transport)

    def _drop_fork(self, call: Call, response: Response, now: float) -> None:
        """A 2xx from a second fork of our INVITE: acknowledge it, then end it (13.2.2.4)."""
        fork = Dialog.as_uac(call.invite, response)
        dest = fork.destination() or call.source
        ack = fork.create_request("ACK", self._via(call.transport), cseq=call.invite.cseq[0])
        self._send(ack, dest, call.transport)
        bye = fork.create_request("BYE", self._via(call.transport), headers=[("User-Agent", self.user_agent)])
        self._start_client(bye, dest, call.transport, now, None, "bye")

    def _retry_with_credentials(self, call: Call, response: Response, now: float) -> bool:
        """Resend the INVITE with Digest credentials after a 401/407 (RFC 3261 22.2).

        A challenge repeating a nonce we already answered means wrong credentials
        (unless it says stale=true): the call fails instead of looping.
        """
        if call.auth is None or call.auth_tries >= 3:
            return False
        name = "WWW-Authenticate" if response.status == 401 else "Proxy-Authenticate"
        for value in response.headers.get_all(name):
            try:
                params = parse_digest(value)[1]
            except ValueError:
                continue
            if params.get("nonce") in call.auth_nonces and params.get("stale", "").lower() != "true":
                return False
            call.auth_nonces.add(params.get("nonce", ""))
        try:
            creds = call.auth.credentials(response.status, response.headers.items(), "INVITE",
                                          call.invite.uri, body=call.invite.body)
        except ValueError as exc:  # DigestError: nothing we can answer
            log.info("call %s: cannot answer the %s challenge: %s", call.call_id, response.status, exc)
            return False
        call.auth_tries += 1
        h = call.invite.headers.copy()
        h.remove("Authorization")
        h.remove("Proxy-Authorization")
        h.replace_first("Via", self._via(call.transport))
        h.set("CSeq", f"{call.invite.cseq[0] + 1} INVITE")
        for name, value in creds:
            h.add(name, value)
        call.invite = Request("INVITE", call.invite.uri, h, call.invite.body)
        call.got_provisional = False
        key = self._start_client(call.invite, call.source, call.transport, now, call, "invite")
        call.invite_tx = self._client_tx.get(key)
        return True

    def _on_refresh_response(self, call: Call, tx: Transaction, response: Response, now: float) -> None:
        if response.status < 200:
            return
        if response.status < 300 and call.dialog is not None:
            call.dialog.refresh_target(response)  # 12.2.1.2: a target refresh, before the ACK
        if tx.request.method == "INVITE" and response.status < 300 and call.dialog is not None:
            ack = call.dialog.create_request("ACK", self._via(call.transport), cseq=tx.request.cseq[0])
            self._send(ack, self._dialog_dest(call), call.transport)
        if tx.request.method == "INVITE":
            call.local_reinvite_key = None
        if response.status == 422 and call.session is not None:
            # RFC 4028 7.4: retry with at least the peer's Min-SE.
            wanted = (response.headers.get("Min-SE") or "").split(";")[0].strip()
            if wanted.isdecimal() and int(wanted) > call.session.interval:
                call.session.interval = int(wanted)
                self._send_refresh(call, now)
                return
        if 200 <= response.status < 300:
            session = negotiate_uac(response, now)
            if session is not None:
                call.session = session
            self._arm_session_timer(call, now)
        elif response.status in (408, 481):
            self._send_bye(call, now)
            self._end(call, "session_expired")
        elif response.status in (491, 500, 503):
            # 14.1: glare (491) is retried after 2.1-4 s; a busy peer after its Retry-After.
            retry = (response.headers.get("Retry-After") or "").split(";")[0].strip()
            delay = float(retry) if retry.isdecimal() else 2.1 + secrets.randbelow(1900) / 1000
            self.timers.set(("call", call.call_id, "refresh"), now + delay)

    def _on_tx_timeout(self, tx: Transaction, timer: str, now: float) -> None:
        call = self.calls.get(self._tx_call.get(tx.key, ""))
        purpose = self._tx_purpose.get(tx.key, "")
        if timer == "H":
            log.info("no ACK for a final response to %s", tx.request.call_id)
            return
        if purpose == "request":
            self._emit(RequestResult(tx.request.call_id, 408, None))
            return
        if call is None:
            return
        if purpose == "invite" and call.state == "outgoing":
            self._end(call, None)
            if not call.hung_up:
                self._emit(OutgoingCallFailed(call.call_id, 408, "Request Timeout"))
        elif purpose == "refer":
            call.refer_pending = False
            self._emit(ReferProgress(call.call_id, "response", 408, final=True))
        elif purpose == "refresh":
            call.local_reinvite_key = None
            self._send_bye(call, now)
            self._end(call, "transaction_timeout")
