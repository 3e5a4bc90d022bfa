"""The asyncio transports on real loopback sockets, driving a recording agent.

The agent here is a minimal sans-IO stand-in that records what it is given and
queues what the test wants sent: it lets each transport rule (UDP source,
TCP framing, response over the same connection, the one re-armed timer, bad
input surviving) be checked on its own.  End-to-end behaviour with the real
UserAgent is covered by tests/peers/.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from ivr.sip.transport import SipEndpoint

OPTIONS = (
    b"OPTIONS sip:ivr@127.0.0.1 SIP/2.0\r\n"
    b"Via: SIP/2.0/TCP 127.0.0.1:5999;branch=z9hG4bK776asdhds\r\n"
    b"From: <sip:probe@127.0.0.1>;tag=1928301774\r\n"
    b"To: <sip:ivr@127.0.0.1>\r\n"
    b"Call-ID: a84b4c76e66710\r\n"
    b"CSeq: 63104 OPTIONS\r\n"
    b"Max-Forwards: 70\r\n"
    b"Content-Length: 0\r\n\r\n"
)


@dataclass
class Out:
    data: bytes
    dest: tuple[str, int]
    transport: str


@dataclass
class RecordingAgent:
    received: list[tuple[bytes, tuple[str, int], str]] = field(default_factory=list)
    queued: list[Out] = field(default_factory=list)
    timer: float | None = None
    fired: list[float] = field(default_factory=list)
    reply: bytes | None = None
    explode: bool = False
    arrived: asyncio.Event = field(default_factory=asyncio.Event)

    def receive(self, data: bytes, source: tuple[str, int], transport: str, now: float) -> None:
        self.received.append((data, source, transport))
        self.arrived.set()
        if self.explode:
            raise RuntimeError("agent bug")
        if self.reply is not None:
            self.queued.append(Out(self.reply, source, transport))

    def outgoing(self) -> list[Any]:
        out, self.queued = self.queued, []
        return out

    def next_timer(self) -> float | None:
        return self.timer

    def handle_timer(self, now: float) -> None:
        self.fired.append(now)
        self.timer = None
        self.arrived.set()


def run(test: Callable[[], Awaitable[None]]) -> None:
    asyncio.run(asyncio.wait_for(test(), 10))


async def started(agent: RecordingAgent, **kw: Any) -> SipEndpoint:
    endpoint = SipEndpoint(agent, **kw)
    await endpoint.start("127.0.0.1", 0)
    return endpoint


async def wait_until(agent: RecordingAgent, predicate: Callable[[], bool]) -> None:
    while not predicate():
        agent.arrived.clear()
        await agent.arrived.wait()


def test_udp_datagram_reaches_agent_and_reply_goes_back_to_source() -> None:
    async def body() -> None:
        agent = RecordingAgent(reply=b"SIP/2.0 200 OK\r\n\r\n")
        endpoint = await started(agent)
        assert endpoint.address is not None
        loop = asyncio.get_running_loop()
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        sock.bind(("127.0.0.1", 0))
        sock.setblocking(False)
        sock.sendto(OPTIONS, ("127.0.0.1", endpoint.address.port))
        data = await loop.sock_recv(sock, 65535)
        assert data == b"SIP/2.0 200 OK\r\n\r\n"
        assert agent.received == [(OPTIONS, sock.getsockname(), "udp")]
        assert endpoint.address.describe() == f"udp:127.0.0.1:{endpoint.address.port} tcp:127.0.0.1:{endpoint.address.port}"
        sock.close()
        endpoint.close()

    run(body)


def test_tcp_stream_is_framed_and_response_reuses_the_connection() -> None:
    async def body() -> None:
        agent = RecordingAgent(reply=b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n")
        endpoint = await started(agent)
        assert endpoint.address is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.address.port)
        # two messages and a keep-alive in one write, the second split across writes
        writer.write(b"\r\n\r\n" + OPTIONS + OPTIONS[:40])
        await writer.drain()
        await wait_until(agent, lambda: len(agent.received) == 1)
        writer.write(OPTIONS[40:])
        await wait_until(agent, lambda: len(agent.received) == 2)
        assert [r[0] for r in agent.received] == [OPTIONS, OPTIONS]
        assert {r[2] for r in agent.received} == {"tcp"}
        local = writer.get_extra_info("sockname")
        assert agent.received[0][1] == (local[0], local[1])
        reply = await reader.readexactly(2 * len(b"SIP/2.0 200 OK\r\nContent-Length: 0\r\n\r\n"))
        assert reply.count(b"SIP/2.0 200 OK") == 2
        assert len(endpoint.connections) == 1
        writer.close()
        endpoint.close()

    run(body)


def test_broken_stream_framing_closes_only_that_connection() -> None:
    async def body() -> None:
        agent = RecordingAgent()
        endpoint = await started(agent)
        assert endpoint.address is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.address.port)
        writer.write(OPTIONS.replace(b"Content-Length: 0\r\n", b"Content-Length: many\r\n"))
        await writer.drain()
        assert await reader.read() == b""  # closed by the server
        # the server still serves others
        reader2, writer2 = await asyncio.open_connection("127.0.0.1", endpoint.address.port)
        writer2.write(OPTIONS)
        await wait_until(agent, lambda: len(agent.received) == 1)
        writer.close()
        writer2.close()
        endpoint.close()

    run(body)


def test_agent_exception_is_contained() -> None:
    async def body() -> None:
        agent = RecordingAgent(explode=True)
        endpoint = await started(agent)
        assert endpoint.address is not None
        sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        for _ in range(2):
            sock.sendto(b"garbage", ("127.0.0.1", endpoint.address.port))
        await wait_until(agent, lambda: len(agent.received) == 2)
        sock.close()
        endpoint.close()

    run(body)


def test_one_timer_armed_at_next_timer_and_rearmed_after_service() -> None:
    async def body() -> None:
        agent = RecordingAgent()
        endpoint = await started(agent)
        loop = asyncio.get_running_loop()
        agent.timer = loop.time() + 0.05
        endpoint.service()
        earlier = agent.timer = loop.time() + 0.02  # moved earlier: the single handle is replaced
        endpoint.service()
        assert endpoint._timer_at == earlier
        await wait_until(agent, lambda: len(agent.fired) == 1)
        assert agent.fired[0] >= earlier
        assert endpoint._timer is None  # the agent has no timer left
        await asyncio.sleep(0.06)  # past the first deadline: it was cancelled, nothing fires again
        assert len(agent.fired) == 1
        endpoint.close()

    run(body)


def test_idle_tcp_connection_is_closed() -> None:
    async def body() -> None:
        agent = RecordingAgent()
        endpoint = await started(agent, idle_timeout=0.2)
        assert endpoint.address is not None
        reader, writer = await asyncio.open_connection("127.0.0.1", endpoint.address.port)
        writer.write(OPTIONS)
        await wait_until(agent, lambda: len(agent.received) == 1)
        assert await reader.read() == b""  # the sweeper closed it
        assert endpoint.connections == {}
        writer.close()
        endpoint.close()

    run(body)


def test_tcp_request_to_a_new_destination_opens_a_connection() -> None:
    async def body() -> None:
        agent = RecordingAgent()
        endpoint = await started(agent)
        got: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()

        async def peer(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            got.set_result(await reader.readexactly(len(OPTIONS)))
            writer.close()

        server = await asyncio.start_server(peer, "127.0.0.1", 0)
        port = server.sockets[0].getsockname()[1]
        agent.queued.append(Out(OPTIONS, ("127.0.0.1", port), "tcp"))
        endpoint.service()
        assert await got == OPTIONS
        server.close()
        endpoint.close()

    run(body)
