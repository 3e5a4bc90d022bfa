"""RFC 3261 section 17 transactions: tables, matching, and a two-peer run of every timer.

The pair is two in-memory transaction layers wired back to back with a fake
clock (after h11's ConnectionPair): what one transmits, the other receives at
the same instant unless the test drops it.  Timers fire in deadline order.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ivr.sip.message import Headers, Request, Response, build_response, parse_message
from ivr.sip.timers import TimerQueue, TimerValues
from ivr.sip.transaction import (
    Deliver,
    InviteClientTransaction,
    InviteServerTransaction,
    NonInviteClientTransaction,
    NonInviteServerTransaction,
    State,
    Terminated,
    TimedOut,
    Transaction,
    TransactionError,
    Transmit,
    build_non2xx_ack,
    cancel_target_key,
    client_key,
    response_client_key,
    server_key,
)

VALUES = TimerValues(t1=0.5, t2=4.0, t4=5.0)


def make_request(method: str, branch: str = "z9hG4bKabc", cseq: int = 1, transport: str = "UDP") -> Request:
    h = Headers()
    h.add("Via", f"SIP/2.0/{transport} 10.0.0.1:5060;branch={branch}")
    h.add("Max-Forwards", "70")
    h.add("From", "<sip:a@10.0.0.1>;tag=ft")
    h.add("To", "<sip:b@10.0.0.2>")
    h.add("Call-ID", "call-1")
    h.add("CSeq", f"{cseq} {method}")
    return Request(method, "sip:b@10.0.0.2", h)


# --------------------------------------------------------------------------- the pair


@dataclass
class Peer:
    """One transaction layer: a timer queue, its transactions, and a log of what happened."""

    name: str
    transport: str = "udp"
    timers: TimerQueue = field(default_factory=TimerQueue)
    server: dict[Hashable, Transaction] = field(default_factory=dict)
    client: dict[Hashable, Transaction] = field(default_factory=dict)
    delivered: list[tuple[float, Request | Response]] = field(default_factory=list)
    timeouts: list[tuple[float, str]] = field(default_factory=list)
    terminated: list[tuple[float, str]] = field(default_factory=list)
    sent: list[tuple[float, str]] = field(default_factory=list)
    # the transaction user: what a server answers to each new request (None: nothing)
    answer: Callable[[Request], list[Response]] = lambda request: []

    def wire(self, tx: Transaction, now: float, out: list[bytes]) -> None:
        for action in tx.drain():
            if isinstance(action, Transmit):
                self.sent.append((now, _label(action.message)))
                out.append(bytes(action.message))
            elif isinstance(action, Deliver):
                self.delivered.append((now, action.message))
            elif isinstance(action, TimedOut):
                self.timeouts.append((now, action.timer))
            elif isinstance(action, Terminated):
                self.terminated.append((now, tx.KIND))
                self.server.pop(tx.key, None)
                self.client.pop(tx.key, None)

    def start_client(self, request: Request, now: float, out: list[bytes]) -> Transaction:
        key = client_key(request.top_via.branch or "", request.method)
        cls = InviteClientTransaction if request.method == "INVITE" else NonInviteClientTransaction
        tx = cls(key, request, ("peer", 5060), self.transport, self.timers, VALUES)
        self.client[key] = tx
        tx.start(now)
        self.wire(tx, now, out)
        return tx

    def receive(self, data: bytes, now: float, out: list[bytes]) -> None:
        message = parse_message(data)
        if isinstance(message, Response):
            tx = self.client.get(response_client_key(message))
            if tx is not None:
                tx.receive(message, now)  # type: ignore[attr-defined]
                self.wire(tx, now, out)
            return
        key = server_key(message)
        tx = self.server.get(key)
        if tx is not None:
            tx.receive(message, now)  # type: ignore[attr-defined]
            self.wire(tx, now, out)
            return
        if message.method == "ACK":
            self.delivered.append((now, message))  # ACK for a 2xx: the TU's
            return
        cls = InviteServerTransaction if message.method == "INVITE" else NonInviteServerTransaction
        tx = cls(key, message, ("peer", 5060), self.transport, self.timers, VALUES)
        self.server[key] = tx
        self.delivered.append((now, message))
        for response in self.answer(message):
            tx.send_response(response, now)  # type: ignore[attr-defined]
        self.wire(tx, now, out)

    def fire_due(self, now: float, out: list[bytes]) -> None:
        for key in self.timers.pop_due(now):
            assert isinstance(key, tuple)
            owner, name = key
            tx = self.server.get(owner) or self.client.get(owner)
            if tx is not None:
                tx.fire(name, now)
                self.wire(tx, now, out)


def _label(message: Request | Response) -> str:
    return message.method if isinstance(message, Request) else str(message.status)


class Pair:
    """Client peer ``a`` and server peer ``b`` on one fake clock and a lossy in-memory wire."""

    def __init__(self, transport: str = "udp") -> None:
        self.a = Peer("a", transport)
        self.b = Peer("b", transport)
        self.now = 0.0
        self.drop: Callable[[str, bytes], bool] = lambda direction, data: False
        self._pending: list[tuple[Peer, bytes]] = []

    def _deliver(self, sender: Peer, out: list[bytes]) -> None:
        receiver = self.b if sender is self.a else self.a
        direction = f"{sender.name}->{receiver.name}"
        for data in out:
            if not self.drop(direction, data):
                self._pending.append((receiver, data))

    def flush(self) -> None:
        while self._pending:
            receiver, data = self._pending.pop(0)
            out: list[bytes] = []
            receiver.receive(data, self.now, out)
            self._deliver(receiver, out)

    def start(self, request: Request) -> Transaction:
        out: list[bytes] = []
        tx = self.a.start_client(request, self.now, out)
        self._deliver(self.a, out)
        self.flush()
        return tx

    def run_until(self, end: float) -> None:
        while True:
            deadlines = [d for d in (self.a.timers.next_deadline(), self.b.timers.next_deadline()) if d is not None]
            if not deadlines or min(deadlines) > end:
                self.now = end
                return
            self.now = min(deadlines)
            for peer in (self.a, self.b):
                out: list[bytes] = []
                peer.fire_due(self.now, out)
                self._deliver(peer, out)
            self.flush()


def drop_method(*labels: str) -> Callable[[str, bytes], bool]:
    def drop(direction: str, data: bytes) -> bool:
        first = data.split(b"\r\n", 1)[0].decode()
        return any(first.startswith(label) or f" {label} " in f" {first} " for label in labels)

    return drop


def times(peer: Peer, label: str) -> list[float]:
    return [t for t, what in peer.sent if what == label]


# --------------------------------------------------------------------------- INVITE client: A, B, D, M


def test_timer_a_doubles_and_timer_b_times_out() -> None:
    pair = Pair()
    pair.drop = lambda direction, data: True  # the server never hears us
    tx = pair.start(make_request("INVITE"))
    pair.run_until(40)
    assert times(pair.a, "INVITE") == [0, 0.5, 1.5, 3.5, 7.5, 15.5, 31.5]
    assert pair.a.timeouts == [(32.0, "B")]
    assert pair.a.terminated == [(32.0, "INVITE client transaction")]
    assert tx.state is State.TERMINATED


def test_provisional_stops_a_and_b() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 180, to_tag="t")]
    tx = pair.start(make_request("INVITE"))
    pair.run_until(100)
    assert times(pair.a, "INVITE") == [0]
    assert tx.state is State.PROCEEDING and pair.a.timeouts == []
    assert [m.status for _, m in pair.a.delivered if isinstance(m, Response)] == [180]


def test_non_2xx_is_acked_by_the_transaction_and_timer_d() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 486, to_tag="busy")]
    tx = pair.start(make_request("INVITE"))
    ack = parse_message(bytes(tx.ack)) if isinstance(tx, InviteClientTransaction) and tx.ack else None
    assert ack is not None and ack.method == "ACK"  # type: ignore[union-attr]
    assert ack.to.tag == "busy" and ack.cseq == (1, "ACK") and ack.top_via.branch == "z9hG4bKabc"
    assert tx.state is State.COMPLETED
    pair.run_until(31.9)
    assert tx.state is State.COMPLETED
    pair.run_until(32.0)
    assert tx.state is State.TERMINATED
    assert pair.a.terminated == [(32.0, "INVITE client transaction")]
    assert [m.status for _, m in pair.a.delivered if isinstance(m, Response)] == [486]  # once


def test_2xx_goes_to_the_tu_and_timer_m() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 200, to_tag="ok")]
    tx = pair.start(make_request("INVITE"))
    assert tx.state is State.ACCEPTED
    assert "ACK" not in [w for _, w in pair.a.sent]  # the 2xx ACK is the dialog's job
    pair.run_until(32.0)
    assert pair.a.terminated[0] == (32.0, "INVITE client transaction")


# --------------------------------------------------------------------------- INVITE server: G, H, I, L


def test_timer_g_retransmits_final_and_h_gives_up_without_ack() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 486, to_tag="busy")]
    pair.drop = drop_method("ACK")
    pair.start(make_request("INVITE"))
    pair.run_until(40)
    assert times(pair.b, "100") == []  # this harness's TU sends no 100; the UA does
    assert times(pair.b, "486") == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert pair.b.timeouts == [(32.0, "H")]
    assert (32.0, "INVITE server transaction") in pair.b.terminated
    # each retransmitted 486 made the client re-send its ACK (17.1.1.2)
    assert len(times(pair.a, "ACK")) == len(times(pair.b, "486"))


def test_ack_confirms_and_timer_i() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 603, to_tag="no")]
    pair.start(make_request("INVITE"))
    server_tx = next(iter(pair.b.server.values()))
    assert server_tx.state is State.CONFIRMED
    pair.run_until(4.9)
    assert server_tx.state is State.CONFIRMED
    pair.run_until(5.0)
    assert server_tx.state is State.TERMINATED
    assert times(pair.b, "603") == [0]  # G was stopped by the ACK
    assert not any(isinstance(m, Request) and m.method == "ACK" for _, m in pair.b.delivered)


def test_accepted_server_absorbs_invite_retransmissions_and_timer_l() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 200, to_tag="ok")]
    # lose the first 200: the client retransmits the INVITE, the server resends its 200
    lost = {"n": 0}

    def drop(direction: str, data: bytes) -> bool:
        if direction == "b->a" and data.startswith(b"SIP/2.0 200") and lost["n"] == 0:
            lost["n"] += 1
            return True
        return False

    pair.drop = drop
    pair.start(make_request("INVITE"))
    pair.run_until(1)
    assert times(pair.a, "INVITE") == [0, 0.5]
    assert times(pair.b, "200") == [0, 0.5]
    assert len([m for _, m in pair.b.delivered if isinstance(m, Request)]) == 1  # not a new call
    pair.run_until(32.0)
    assert (32.0, "INVITE server transaction") in pair.b.terminated


# --------------------------------------------------------------------------- non-INVITE: E, F, J, K


def test_timer_e_caps_at_t2_and_timer_f_times_out() -> None:
    pair = Pair()
    pair.drop = lambda direction, data: True
    pair.start(make_request("OPTIONS"))
    pair.run_until(40)
    assert times(pair.a, "OPTIONS") == [0, 0.5, 1.5, 3.5, 7.5, 11.5, 15.5, 19.5, 23.5, 27.5, 31.5]
    assert pair.a.timeouts == [(32.0, "F")]


def test_timer_e_after_a_provisional_is_t2() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 100)]
    pair.drop = lambda direction, data: direction == "b->a" and not data.startswith(b"SIP/2.0 100")
    tx = pair.start(make_request("BYE"))
    assert tx.state is State.PROCEEDING
    pair.run_until(13)
    # 17.1.2.2: the running E fires as scheduled, then every T2 in PROCEEDING
    assert times(pair.a, "BYE") == [0, 0.5, 4.5, 8.5, 12.5]
    # each retransmission is absorbed by the server resending its last provisional
    assert times(pair.b, "100") == [0, 0.5, 4.5, 8.5, 12.5]


def test_timer_j_absorbs_retransmissions_then_ends() -> None:
    pair = Pair()
    pair.b.answer = lambda r: [build_response(r, 200, to_tag="x")]
    dropped = {"n": 0}

    def drop(direction: str, data: bytes) -> bool:
        if direction == "b->a" and dropped["n"] < 2:
            dropped["n"] += 1
            return True
        return False

    pair.drop = drop
    client_tx = pair.start(make_request("BYE"))
    pair.run_until(2)
    assert times(pair.a, "BYE") == [0, 0.5, 1.5]
    assert times(pair.b, "200") == [0, 0.5, 1.5]  # the last response, resent
    assert len([m for _, m in pair.b.delivered if isinstance(m, Request)]) == 1
    assert client_tx.state is State.COMPLETED
    pair.run_until(6.5)
    assert client_tx.state is State.TERMINATED  # timer K: T4 after 1.5
    assert (6.5, "non-INVITE client transaction") in pair.a.terminated
    pair.run_until(32.0)
    assert (32.0, "non-INVITE server transaction") in pair.b.terminated  # timer J: 64*T1


def test_reliable_transport_has_no_retransmissions_and_zero_waits() -> None:
    pair = Pair("tcp")
    pair.b.answer = lambda r: [build_response(r, 200, to_tag="x")]
    pair.start(make_request("OPTIONS", transport="TCP"))
    assert pair.a.terminated == [(0.0, "non-INVITE client transaction")]  # K = 0
    assert pair.b.terminated == [(0.0, "non-INVITE server transaction")]  # J = 0
    pair2 = Pair("tcp")
    pair2.b.answer = lambda r: [build_response(r, 486, to_tag="x")]
    pair2.start(make_request("INVITE", transport="TCP"))
    assert pair2.a.terminated == [(0.0, "INVITE client transaction")]  # D = 0
    assert pair2.b.terminated == [(0.0, "INVITE server transaction")]  # I = 0
    pair3 = Pair("tcp")
    pair3.drop = lambda direction, data: True
    pair3.start(make_request("INVITE", transport="TCP"))
    pair3.run_until(40)
    assert times(pair3.a, "INVITE") == [0]  # no timer A over TCP
    assert pair3.a.timeouts == [(32.0, "B")]


# --------------------------------------------------------------------------- tables and matching


def test_rejections_name_state_and_event() -> None:
    timers = TimerQueue()
    request = make_request("OPTIONS")
    tx = NonInviteServerTransaction("k", request, ("h", 1), "udp", timers, VALUES)
    tx.send_response(build_response(request, 200, to_tag="t"), 0.0)
    with pytest.raises(TransactionError) as err:
        tx.send_response(build_response(request, 500, to_tag="t"), 0.0)
    assert str(err.value) == "non-INVITE server transaction: can't handle send_final in state COMPLETED"
    assert err.value.state is State.COMPLETED and err.value.event == "send_final"
    invite = make_request("INVITE")
    ist = InviteServerTransaction("i", invite, ("h", 1), "udp", timers, VALUES)
    ist.send_response(build_response(invite, 200, to_tag="t"), 0.0)
    with pytest.raises(TransactionError, match="INVITE server transaction: can't handle send_1xx in state ACCEPTED"):
        ist.send_response(build_response(invite, 180, to_tag="t"), 0.0)


def test_every_table_entry_targets_a_known_action() -> None:
    for cls in (InviteServerTransaction, NonInviteServerTransaction, InviteClientTransaction,
                NonInviteClientTransaction):
        for (state, event), (new_state, action) in cls.TABLE.items():
            assert isinstance(state, State) and isinstance(new_state, State)
            assert action is None or callable(getattr(cls, action)), (cls.KIND, event, action)


def test_server_key_matching() -> None:
    invite = make_request("INVITE", branch="z9hG4bKxyz")
    ack = make_request("ACK", branch="z9hG4bKxyz")
    cancel = make_request("CANCEL", branch="z9hG4bKxyz")
    assert server_key(ack) == server_key(invite)
    assert server_key(cancel) != server_key(invite)
    assert cancel_target_key(cancel) == server_key(invite)
    assert server_key(make_request("INVITE", branch="z9hG4bKother")) != server_key(invite)


def test_rfc2543_fallback_key() -> None:
    invite = make_request("INVITE", branch="old1")
    retransmission = make_request("INVITE", branch="old1")
    ack = make_request("ACK", branch="old1")
    assert server_key(invite) == server_key(retransmission) == server_key(ack)
    assert server_key(invite)[0] == "2543"  # type: ignore[index]
    assert server_key(make_request("INVITE", branch="old1", cseq=2)) != server_key(invite)
    # a branch that is only the magic cookie is no RFC 3261 branch (RFC 4475 3.2.1)
    assert server_key(make_request("OPTIONS", branch="z9hG4bK"))[0] == "2543"  # type: ignore[index]


def test_build_non2xx_ack_copies_routes() -> None:
    invite = make_request("INVITE")
    invite.headers.add("Route", "<sip:proxy.example.com;lr>")
    response = build_response(invite, 404, to_tag="nf")
    ack = build_non2xx_ack(invite, response)
    assert ack.uri == invite.uri and ack.headers.get_all("Route") == ["<sip:proxy.example.com;lr>"]
    assert ack.headers["To"] == "<sip:b@10.0.0.2>;tag=nf"
    assert ack.headers.get_all("Via") == invite.headers.get_all("Via")


def test_timer_values() -> None:
    v = TimerValues(t1=0.5, t2=4, t4=5)
    assert (v.b, v.d, v.f, v.h, v.i, v.j, v.k, v.l, v.m) == (32, 32, 32, 32, 5, 32, 5, 32, 32)
    assert TimerValues(t1=1.0).d == 64.0


def test_timer_queue_replaces_and_cancels() -> None:
    q = TimerQueue()
    q.set("a", 5)
    q.set("b", 3)
    q.set("a", 1)
    q.cancel("b")
    assert q.next_deadline() == 1
    assert q.pop_due(10) == ["a"]
    assert q.next_deadline() is None and len(q) == 0


# --------------------------------------------------------------------------- any event sequence


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    st.sampled_from([InviteServerTransaction, NonInviteServerTransaction, InviteClientTransaction,
                     NonInviteClientTransaction]),
    st.sampled_from(["udp", "tcp"]),
    st.lists(st.tuples(st.sampled_from(["request", "ack", "send", "recv", "timer", "fire"]),
                       st.sampled_from([100, 180, 200, 486]),
                       st.sampled_from(list("ABDEFGHIJKLM")),
                       st.floats(0, 5)), max_size=25),
)
def test_any_event_sequence_moves_by_the_table_or_is_rejected(
    cls: type[Transaction], transport: str, steps: list[tuple[str, int, str, float]]
) -> None:
    timers = TimerQueue()
    method = "INVITE" if cls in (InviteServerTransaction, InviteClientTransaction) else "OPTIONS"
    request = make_request(method)
    tx = cls("k", request, ("h", 1), transport, timers, VALUES)  # type: ignore[call-arg]
    now = 0.0
    if isinstance(tx, InviteClientTransaction | NonInviteClientTransaction):
        tx.start(now)
    for kind, status, timer, dt in steps:
        now += dt
        before = tx.state
        try:
            if kind == "request" and isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
                tx.receive(request, now)
            elif kind == "ack" and isinstance(tx, InviteServerTransaction):
                tx.receive(make_request("ACK"), now)
            elif kind == "send" and isinstance(tx, InviteServerTransaction | NonInviteServerTransaction):
                tx.send_response(build_response(request, status, to_tag="t"), now)
            elif kind == "recv" and isinstance(tx, InviteClientTransaction | NonInviteClientTransaction):
                tx.receive(build_response(request, status, to_tag="t"), now)
            elif kind == "fire":  # a timer firing out of turn: in the table or rejected
                tx.fire(timer, now)
            elif kind == "timer":
                for key in timers.pop_due(now):
                    assert isinstance(key, tuple)
                    tx.fire(key[1], now)
        except TransactionError as exc:
            assert exc.state is before and str(exc).startswith(f"{tx.KIND}: can't handle ")
        tx.drain()
        if tx.state is State.TERMINATED:
            assert timers.next_deadline() is None  # nothing left armed


def test_timer_queue_compacts_rearmed_entries() -> None:
    q = TimerQueue()
    for i in range(5000):
        q.set(("call", i % 10), float(i))  # ten timers re-armed over and over
    assert len(q) == 10 and len(q._heap) <= 4 * 1024  # noqa: SLF001
    assert q.pop_due(4989.5) == []
    assert q.pop_due(4995.0) == [("call", k) for k in range(6)]
    assert q.next_deadline() == 4996.0
