"""SIP transactions as state tables (RFC 3261 section 17, RFC 6026).

This module owns the four transaction state machines and how requests and
responses are matched to them (17.1.3, 17.2.3 with the RFC 2543 fallback).
Each machine is a table ``(state, event) -> (next state, action)``; an event
the table does not list raises :class:`TransactionError` naming the state and
the event ("can't handle send_final in state TERMINATED").  Network-driven
events that the RFC says to absorb are listed explicitly with no action, so
an error always means a real misuse.

Transactions are sans-IO: they are told ``now``, keep their timers in the
shared :class:`~ivr.sip.timers.TimerQueue` under ``(transaction key, name)``
and append what must happen to :attr:`Transaction.actions`:
:class:`Transmit` (send this message to the transaction's peer),
:class:`Deliver` (hand this message to the transaction user),
:class:`TimedOut` and :class:`Terminated`.

The INVITE server transaction follows RFC 6026: after a 2xx it moves to
ACCEPTED (Timer L) and absorbs INVITE retransmissions by resending the 2xx;
retransmitting the 2xx until the ACK arrives is the dialog's job (13.3.1.4).
The INVITE client transaction likewise has ACCEPTED (Timer M) so 2xx
retransmissions reach the dialog, which re-sends its ACK.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Hashable
from dataclasses import dataclass

from ivr.sip.message import Headers, Request, Response
from ivr.sip.timers import TimerQueue, TimerValues

MAGIC_COOKIE = "z9hG4bK"


class TransactionError(Exception):
    """An event the transaction's table has no entry for."""

    def __init__(self, kind: str, state: State, event: str) -> None:
        super().__init__(f"{kind}: can't handle {event} in state {state.name}")
        self.state = state
        self.event = event


class State(enum.Enum):
    CALLING = "calling"
    TRYING = "trying"
    PROCEEDING = "proceeding"
    COMPLETED = "completed"
    CONFIRMED = "confirmed"
    ACCEPTED = "accepted"
    TERMINATED = "terminated"


# --------------------------------------------------------------------------- actions


@dataclass(frozen=True)
class Transmit:
    """Send ``message`` to the transaction's peer (``dest`` over ``transport``)."""

    message: Request | Response


@dataclass(frozen=True)
class Deliver:
    """Pass ``message`` up to the transaction user."""

    message: Request | Response


@dataclass(frozen=True)
class TimedOut:
    """A timeout the TU must know about: ``timer`` is B, F, H (no ACK for a non-2xx)."""

    timer: str


@dataclass(frozen=True)
class Terminated:
    """The transaction is over; forget it."""


Action = Transmit | Deliver | TimedOut | Terminated

_WAIT_TIMERS = frozenset("DIJK")


def _response_event(response: Response) -> str:
    if response.status < 200:
        return "recv_1xx"
    if response.status < 300:
        return "recv_2xx"
    return "recv_final"


def _send_event(response: Response) -> str:
    if response.status < 200:
        return "send_1xx"
    if response.status < 300:
        return "send_2xx"
    return "send_final"


# --------------------------------------------------------------------------- base


Handler = Callable[["Transaction", "Request | Response | None", float], None]
Table = dict[tuple[State, str], tuple[State, str | None]]


class Transaction:
    """Common machinery: the table walk, timers and the action list."""

    KIND = "transaction"
    TABLE: Table = {}

    def __init__(
        self,
        key: Hashable,
        request: Request,
        dest: tuple[str, int],
        transport: str,
        timers: TimerQueue,
        values: TimerValues,
        state: State,
    ) -> None:
        self.key = key
        self.request = request
        self.dest = dest
        self.transport = transport
        self.reliable = transport.lower() != "udp"
        self.timers = timers
        self.values = values
        self.state = state
        self.actions: list[Action] = []
        self._intervals: dict[str, float] = {}

    # -- table walk
    def handle(self, event: str, message: Request | Response | None, now: float) -> None:
        entry = self.TABLE.get((self.state, event))
        if entry is None:
            raise TransactionError(self.KIND, self.state, event)
        new_state, action = entry
        self.state = new_state
        if action is not None:
            getattr(self, action)(message, now)
        if new_state is State.TERMINATED:
            self._terminate()

    def _terminate(self) -> None:
        for name in list(self._intervals):
            self.timers.cancel((self.key, name))
        self._intervals.clear()
        self.actions.append(Terminated())

    # -- timers
    def start_timer(self, name: str, interval: float, now: float) -> None:
        """Arm timer ``name``.  The wait timers D, I, J and K are zero over reliable
        transports (17.1.1.2, 17.2.1, 17.2.2, 17.1.2.2): those fire at once.  A
        retransmission timer is never armed with zero (there is nothing to resend)."""
        if interval <= 0:
            self._intervals.pop(name, None)
            if name in _WAIT_TIMERS:
                self.fire(name, now)
            return
        self._intervals[name] = interval
        self.timers.set((self.key, name), now + interval)

    def stop_timer(self, name: str) -> None:
        self._intervals.pop(name, None)
        self.timers.cancel((self.key, name))

    def fire(self, name: str, now: float) -> None:
        """Timer ``name`` expired (called by the owner of the queue)."""
        if self.state is State.TERMINATED:
            return
        self.handle(f"timer_{name}", None, now)

    def interval(self, name: str) -> float:
        return self._intervals.get(name, 0.0)

    def drain(self) -> list[Action]:
        out, self.actions = self.actions, []
        return out


# --------------------------------------------------------------------------- server transactions


class InviteServerTransaction(Transaction):
    """INVITE server transaction (RFC 3261 17.2.1, figure 7, amended by RFC 6026 section 7.1)."""

    KIND = "INVITE server transaction"
    P, A, C, F, T = State.PROCEEDING, State.ACCEPTED, State.COMPLETED, State.CONFIRMED, State.TERMINATED
    TABLE: Table = {
        (P, "recv_request"): (P, "resend_last"),
        (P, "send_1xx"): (P, "send"),
        (P, "send_2xx"): (A, "send_2xx"),
        (P, "send_final"): (C, "send_final"),
        (A, "recv_request"): (A, "resend_last"),
        (A, "send_2xx"): (A, "send"),
        (A, "recv_ack"): (A, None),  # ACK for 2xx normally has its own branch; absorbed
        (A, "timer_L"): (T, None),
        (C, "recv_request"): (C, "resend_last"),
        (C, "recv_ack"): (F, "confirmed"),
        (C, "timer_G"): (C, "retransmit_final"),
        (C, "timer_H"): (T, "ack_timeout"),
        (F, "recv_request"): (F, None),
        (F, "recv_ack"): (F, None),
        (F, "timer_I"): (T, None),
        (T, "recv_request"): (T, None),
        (T, "recv_ack"): (T, None),
    }

    def __init__(self, key: Hashable, request: Request, dest: tuple[str, int], transport: str,
                 timers: TimerQueue, values: TimerValues) -> None:
        super().__init__(key, request, dest, transport, timers, values, State.PROCEEDING)
        self.last_response: Response | None = None

    def send_response(self, response: Response, now: float) -> None:
        self.handle(_send_event(response), response, now)

    def receive(self, request: Request, now: float) -> None:
        self.handle("recv_ack" if request.method == "ACK" else "recv_request", request, now)

    def send(self, message: Request | Response | None, now: float) -> None:
        assert isinstance(message, Response)
        self.last_response = message
        self.actions.append(Transmit(message))

    def resend_last(self, message: Request | Response | None, now: float) -> None:
        if self.last_response is not None:
            self.actions.append(Transmit(self.last_response))

    def send_2xx(self, message: Request | Response | None, now: float) -> None:
        self.send(message, now)
        self.start_timer("L", self.values.l, now)

    def send_final(self, message: Request | Response | None, now: float) -> None:
        self.send(message, now)
        if not self.reliable:
            self.start_timer("G", self.values.t1, now)
        self.start_timer("H", self.values.h, now)

    def retransmit_final(self, message: Request | Response | None, now: float) -> None:
        self.resend_last(None, now)
        self.start_timer("G", min(2 * self.interval("G"), self.values.t2), now)

    def confirmed(self, message: Request | Response | None, now: float) -> None:
        self.stop_timer("G")
        self.stop_timer("H")
        self.start_timer("I", 0.0 if self.reliable else self.values.i, now)

    def ack_timeout(self, message: Request | Response | None, now: float) -> None:
        self.actions.append(TimedOut("H"))


class NonInviteServerTransaction(Transaction):
    """Non-INVITE server transaction (RFC 3261 17.2.2, figure 8)."""

    KIND = "non-INVITE server transaction"
    R, P, C, T = State.TRYING, State.PROCEEDING, State.COMPLETED, State.TERMINATED
    TABLE: Table = {
        (R, "recv_request"): (R, None),  # nothing sent yet: absorb
        (R, "send_1xx"): (P, "send"),
        (R, "send_2xx"): (C, "send_final"),
        (R, "send_final"): (C, "send_final"),
        (P, "recv_request"): (P, "resend_last"),
        (P, "send_1xx"): (P, "send"),
        (P, "send_2xx"): (C, "send_final"),
        (P, "send_final"): (C, "send_final"),
        (C, "recv_request"): (C, "resend_last"),
        (C, "timer_J"): (T, None),
        (T, "recv_request"): (T, None),
    }

    def __init__(self, key: Hashable, request: Request, dest: tuple[str, int], transport: str,
                 timers: TimerQueue, values: TimerValues) -> None:
        super().__init__(key, request, dest, transport, timers, values, State.TRYING)
        self.last_response: Response | None = None

    def send_response(self, response: Response, now: float) -> None:
        self.handle(_send_event(response), response, now)

    def receive(self, request: Request, now: float) -> None:
        self.handle("recv_request", request, now)

    def send(self, message: Request | Response | None, now: float) -> None:
        assert isinstance(message, Response)
        self.last_response = message
        self.actions.append(Transmit(message))

    def resend_last(self, message: Request | Response | None, now: float) -> None:
        if self.last_response is not None:
            self.actions.append(Transmit(self.last_response))

    def send_final(self, message: Request | Response | None, now: float) -> None:
        self.send(message, now)
        self.start_timer("J", 0.0 if self.reliable else self.values.j, now)


# --------------------------------------------------------------------------- client transactions


class InviteClientTransaction(Transaction):
    """INVITE client transaction (RFC 3261 17.1.1, figure 5, amended by RFC 6026 section 7.2)."""

    KIND = "INVITE client transaction"
    K, P, A, C, T = State.CALLING, State.PROCEEDING, State.ACCEPTED, State.COMPLETED, State.TERMINATED
    TABLE: Table = {
        (K, "timer_A"): (K, "retransmit"),
        (K, "timer_B"): (T, "timeout"),
        (K, "recv_1xx"): (P, "proceeding"),
        (K, "recv_2xx"): (A, "accepted"),
        (K, "recv_final"): (C, "completed"),
        (P, "timer_B"): (P, None),  # B only guards CALLING; a late firing is harmless
        (P, "recv_1xx"): (P, "deliver"),
        (P, "recv_2xx"): (A, "accepted"),
        (P, "recv_final"): (C, "completed"),
        (A, "recv_1xx"): (A, None),
        (A, "recv_2xx"): (A, "deliver"),  # 2xx retransmission: the dialog re-sends its ACK
        (A, "recv_final"): (A, None),
        (A, "timer_M"): (T, None),
        (C, "recv_1xx"): (C, None),
        (C, "recv_2xx"): (C, None),
        (C, "recv_final"): (C, "send_ack"),
        (C, "timer_D"): (T, None),
        (T, "recv_1xx"): (T, None),
        (T, "recv_2xx"): (T, None),
        (T, "recv_final"): (T, None),
    }

    def __init__(self, key: Hashable, request: Request, dest: tuple[str, int], transport: str,
                 timers: TimerQueue, values: TimerValues) -> None:
        super().__init__(key, request, dest, transport, timers, values, State.CALLING)
        self.ack: Request | None = None

    def start(self, now: float) -> None:
        self.actions.append(Transmit(self.request))
        if not self.reliable:
            self.start_timer("A", self.values.t1, now)
        self.start_timer("B", self.values.b, now)

    def receive(self, response: Response, now: float) -> None:
        self.handle(_response_event(response), response, now)

    def retransmit(self, message: Request | Response | None, now: float) -> None:
        self.actions.append(Transmit(self.request))
        self.start_timer("A", 2 * self.interval("A"), now)

    def timeout(self, message: Request | Response | None, now: float) -> None:
        self.actions.append(TimedOut("B"))

    def deliver(self, message: Request | Response | None, now: float) -> None:
        assert message is not None
        self.actions.append(Deliver(message))

    def proceeding(self, message: Request | Response | None, now: float) -> None:
        self.stop_timer("A")
        self.stop_timer("B")
        self.deliver(message, now)

    def accepted(self, message: Request | Response | None, now: float) -> None:
        self.stop_timer("A")
        self.stop_timer("B")
        self.deliver(message, now)
        self.start_timer("M", self.values.m, now)

    def completed(self, message: Request | Response | None, now: float) -> None:
        assert isinstance(message, Response)
        self.stop_timer("A")
        self.stop_timer("B")
        self.ack = build_non2xx_ack(self.request, message)
        self.actions.append(Transmit(self.ack))
        self.deliver(message, now)
        self.start_timer("D", 0.0 if self.reliable else self.values.d, now)

    def send_ack(self, message: Request | Response | None, now: float) -> None:
        if self.ack is not None:
            self.actions.append(Transmit(self.ack))


class NonInviteClientTransaction(Transaction):
    """Non-INVITE client transaction (RFC 3261 17.1.2, figure 6)."""

    KIND = "non-INVITE client transaction"
    R, P, C, T = State.TRYING, State.PROCEEDING, State.COMPLETED, State.TERMINATED
    TABLE: Table = {
        (R, "timer_E"): (R, "retransmit"),
        (R, "timer_F"): (T, "timeout"),
        (R, "recv_1xx"): (P, "deliver"),
        (R, "recv_2xx"): (C, "completed"),
        (R, "recv_final"): (C, "completed"),
        (P, "timer_E"): (P, "retransmit_t2"),
        (P, "timer_F"): (T, "timeout"),
        (P, "recv_1xx"): (P, "deliver"),
        (P, "recv_2xx"): (C, "completed"),
        (P, "recv_final"): (C, "completed"),
        (C, "recv_1xx"): (C, None),
        (C, "recv_2xx"): (C, None),
        (C, "recv_final"): (C, None),
        (C, "timer_K"): (T, None),
        (T, "recv_1xx"): (T, None),
        (T, "recv_2xx"): (T, None),
        (T, "recv_final"): (T, None),
    }

    def __init__(self, key: Hashable, request: Request, dest: tuple[str, int], transport: str,
                 timers: TimerQueue, values: TimerValues) -> None:
        super().__init__(key, request, dest, transport, timers, values, State.TRYING)

    def start(self, now: float) -> None:
        self.actions.append(Transmit(self.request))
        if not self.reliable:
            self.start_timer("E", self.values.t1, now)
        self.start_timer("F", self.values.f, now)

    def receive(self, response: Response, now: float) -> None:
        self.handle(_response_event(response), response, now)

    def retransmit(self, message: Request | Response | None, now: float) -> None:
        self.actions.append(Transmit(self.request))
        self.start_timer("E", min(2 * self.interval("E"), self.values.t2), now)

    def retransmit_t2(self, message: Request | Response | None, now: float) -> None:
        self.actions.append(Transmit(self.request))
        self.start_timer("E", self.values.t2, now)

    def timeout(self, message: Request | Response | None, now: float) -> None:
        self.actions.append(TimedOut("F"))

    def deliver(self, message: Request | Response | None, now: float) -> None:
        assert message is not None
        self.actions.append(Deliver(message))

    def completed(self, message: Request | Response | None, now: float) -> None:
        self.stop_timer("E")
        self.stop_timer("F")
        self.deliver(message, now)
        self.start_timer("K", 0.0 if self.reliable else self.values.k, now)


ServerTransaction = InviteServerTransaction | NonInviteServerTransaction
ClientTransaction = InviteClientTransaction | NonInviteClientTransaction


# --------------------------------------------------------------------------- matching


def server_key(request: Request) -> Hashable:
    """Key matching a request to its server transaction (RFC 3261 17.2.3).

    With an RFC 3261 branch: (branch, sent-by, method), ACK counted as INVITE.
    Otherwise the RFC 2543 fallback: Request-URI, From tag, Call-ID, CSeq
    number and top Via; ACK still maps onto its INVITE.  CANCEL gets its own
    transaction (its key has method CANCEL); see :func:`cancel_target_key`.
    """
    via = request.top_via
    method = "INVITE" if request.method == "ACK" else request.method
    branch = via.branch or ""
    if branch.startswith(MAGIC_COOKIE) and branch != MAGIC_COOKIE:  # RFC 4475 3.2.1
        return ("3261", branch, via.host.lower(), via.port, method)
    cseq, _ = request.cseq
    return ("2543", request.uri, request.from_.tag, request.call_id, cseq, str(via), method)


def cancel_target_key(cancel: Request) -> Hashable:
    """Key of the INVITE server transaction a CANCEL refers to (RFC 3261 9.2)."""
    key = server_key(cancel)
    assert isinstance(key, tuple)
    return (*key[:-1], "INVITE")


def client_key(branch: str, method: str) -> Hashable:
    """Key matching a response to its client transaction (17.1.3): branch and CSeq method."""
    return ("client", branch, "INVITE" if method == "ACK" else method)


def response_client_key(response: Response) -> Hashable:
    return client_key(response.top_via.branch or "", response.cseq[1])


def build_non2xx_ack(request: Request, response: Response) -> Request:
    """ACK for a non-2xx final response, built by the transaction (RFC 3261 17.1.1.3).

    Same Request-URI, Call-ID, From, CSeq number and top Via as the INVITE,
    To from the response, and the INVITE's Route headers.
    """
    headers = Headers()
    headers.add("Via", request.headers.get_all("Via")[0])
    headers.add("Max-Forwards", "70")
    headers.add("From", request.headers["From"])
    headers.add("To", response.headers["To"])
    headers.add("Call-ID", request.call_id)
    headers.add("CSeq", f"{request.cseq[0]} ACK")
    for route in request.headers.get_all("Route"):
        headers.add("Route", route)
    return Request("ACK", request.uri, headers)
