"""The media reactor on a real loop with real loopback sockets: epoll batching and the fallback."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import TypeVar

import pytest

from ivr.media.reactor import Reactor, get_reactor

T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 10)

    return asyncio.run(main())


def udp() -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setblocking(False)
    sock.bind(("127.0.0.1", 0))
    return sock


async def until(predicate: Callable[[], bool], what: str) -> None:
    for _ in range(1000):
        if predicate():
            return
        await asyncio.sleep(0.002)
    raise AssertionError(f"timed out waiting for {what}")


def reader(sock: socket.socket, log: list[tuple[int, bytes, float]]) -> Callable[[float], None]:
    def handler(now: float) -> None:
        log.append((sock.getsockname()[1], sock.recv(2048), now))

    return handler


@pytest.mark.parametrize("use_epoll", [True, False])
def test_every_datagram_reaches_its_socket_handler_once(use_epoll: bool) -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        reactor = Reactor(loop, use_epoll=use_epoll)
        assert reactor.batched is use_epoll
        socks = [udp() for _ in range(20)]
        got: list[tuple[int, bytes, float]] = []
        for sock in socks:
            reactor.add(sock.fileno(), reader(sock, got))
        sender = udp()
        before = loop.time()
        for round_ in range(3):
            for sock in socks:
                sender.sendto(b"%d" % round_, sock.getsockname())
        await until(lambda: len(got) == 60, "60 datagrams")
        await asyncio.sleep(0.01)  # nothing more may come
        assert len(got) == 60
        ports = [s.getsockname()[1] for s in socks]
        for port in ports:  # each socket's datagrams, in order, to its own handler
            assert [data for p, data, _ in got if p == port] == [b"0", b"1", b"2"]
        assert all(before <= now <= loop.time() for _, _, now in got)
        assert reactor.dispatched == 60 and reactor.errors == 0
        if use_epoll:
            assert reactor.wakeups < 60  # one wake-up served several sockets
        reactor.close()
        for sock in [*socks, sender]:
            sock.close()

    run(body())


@pytest.mark.parametrize("use_epoll", [True, False])
def test_a_failing_handler_does_not_stop_the_others(use_epoll: bool) -> None:
    async def body() -> None:
        reactor = Reactor(asyncio.get_running_loop(), use_epoll=use_epoll)
        bad, good = udp(), udp()
        got: list[tuple[int, bytes, float]] = []

        def broken(now: float) -> None:
            bad.recv(2048)
            raise RuntimeError("recorder bug")

        reactor.add(bad.fileno(), broken)
        reactor.add(good.fileno(), reader(good, got))
        sender = udp()
        for i in range(3):
            sender.sendto(b"x", bad.getsockname())
            sender.sendto(b"%d" % i, good.getsockname())
        await until(lambda: len(got) == 3 and reactor.errors == 3, "the good socket's datagrams")
        assert [data for _, data, _ in got] == [b"0", b"1", b"2"]
        reactor.close()
        for sock in (bad, good, sender):
            sock.close()

    run(body())


def test_removed_sockets_are_not_served_even_within_one_batch() -> None:
    async def body() -> None:
        loop = asyncio.get_running_loop()
        reactor = Reactor(loop)
        a, b = udp(), udp()
        served: list[str] = []

        def hang_up(now: float) -> None:  # a key ends the call of the other socket
            a.recv(2048)
            served.append("a")
            reactor.remove(b.fileno())

        def other(now: float) -> None:
            b.recv(2048)
            served.append("b")

        reactor.add(a.fileno(), hang_up)
        reactor.add(b.fileno(), other)
        with pytest.raises(ValueError, match="already watched"):
            reactor.add(a.fileno(), other)
        sender = udp()
        sender.sendto(b"x", b.getsockname())
        sender.sendto(b"x", a.getsockname())
        await until(lambda: "a" in served, "a's datagram")
        await asyncio.sleep(0.01)
        # b was ready in the same batch (or the next): once removed it is never served
        assert served in (["a"], ["b", "a"])
        reactor.remove(a.fileno())
        assert len(reactor) == 0 and not reactor._watching  # the loop no longer watches the set
        reactor.remove(a.fileno())  # idempotent
        reactor.close()
        for sock in (a, b, sender):
            sock.close()

    run(body())


def test_get_reactor_is_one_per_loop_and_a_closed_loops_reactor_is_closed() -> None:
    left = udp()  # still watched when its loop ends (a call nobody closed)

    async def body() -> Reactor:
        first = get_reactor()
        assert get_reactor() is first
        if not len(first):
            first.add(left.fileno(), lambda now: None)
        return first

    one = asyncio.run(body())
    two = asyncio.run(body())  # the first loop is closed: its reactor goes with it
    assert one is not two
    assert one._epoll is not None and one._epoll.closed and len(one) == 0
    two.close()
    left.close()


def test_a_wake_up_serves_at_most_a_batch_and_the_rest_come_next(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    import ivr.media.reactor as reactor_module

    monkeypatch.setattr(reactor_module, "BATCH", 4)

    async def body() -> None:
        reactor = Reactor(asyncio.get_running_loop())
        socks = [udp() for _ in range(10)]
        got: list[tuple[int, bytes, float]] = []
        for sock in socks:
            reactor.add(sock.fileno(), reader(sock, got))
        sender = udp()
        for sock in socks:
            sender.sendto(b"x", sock.getsockname())
        await until(lambda: len(got) == 10, "all ten datagrams")
        assert reactor.wakeups >= 3  # 4 + 4 + 2 at the most per wake-up
        assert sorted(p for p, _, _ in got) == sorted(s.getsockname()[1] for s in socks)
        reactor.close()
        for sock in [*socks, sender]:
            sock.close()

    run(body())
