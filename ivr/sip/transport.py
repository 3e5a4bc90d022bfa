"""asyncio UDP and TCP transports feeding the sans-IO :class:`~ivr.sip.ua.UserAgent`.

This module is the only SIP code that touches sockets.  It owns:

* one UDP socket and one TCP listener on the ``--listen`` address (RFC 3261
  section 18: a UA listens on both for the same port);
* one :class:`~ivr.sip.message.StreamFramer` per TCP connection (section
  18.3: messages on a stream are framed by Content-Length);
* reuse of the connection a request arrived on for its responses (section
  18.2.2), falling back to a new connection to the destination the UA chose;
* closing TCP connections that stay idle;
* the agent's single timer: after every receive, timer and command the
  endpoint flushes ``outgoing()`` and re-arms ONE ``loop.call_at`` at
  ``next_timer()`` (the aioquic pattern), so the agent itself never sleeps.

The agent is told the time from ``loop.time()`` (monotonic); its timers are on
the same scale, so they can be handed to ``call_at`` directly.

Malformed input never kills the server: the agent answers or drops what it
cannot parse, a TCP stream whose framing is broken is closed, and every
exception escaping the agent is logged and the datagram dropped.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.sip.message import SipParseError, StreamFramer

log = logging.getLogger("ivr.sip.transport")

Address = tuple[str, int]

#: A TCP connection with no traffic for this long is closed (RFC 5626 keeps
#: flows alive with CRLF pings far more often than this).
DEFAULT_IDLE_TIMEOUT = 120.0


class OutgoingLike(Protocol):
    data: bytes
    dest: Address
    transport: str


class SansIOAgent(Protocol):
    """What the transports need from the user agent (``ivr.sip.ua.UserAgent``)."""

    def receive(self, data: bytes, source: Address, transport: str, now: float) -> None: ...

    def outgoing(self) -> list[Any]: ...

    def next_timer(self) -> float | None: ...

    def handle_timer(self, now: float) -> None: ...


@dataclass(frozen=True)
class ListenAddresses:
    """Where the endpoint actually listens (the port is resolved when 0 was asked)."""

    host: str
    port: int

    def describe(self) -> str:
        return f"udp:{self.host}:{self.port} tcp:{self.host}:{self.port}"


class _UdpProtocol(asyncio.DatagramProtocol):
    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint

    def datagram_received(self, data: bytes, addr: Any) -> None:
        self.endpoint.receive(data, (addr[0], addr[1]), "udp")

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the transaction
        # layer will time out on its own, nothing to do here.
        log.debug("udp error: %s", exc)


class _TcpConnection(asyncio.Protocol):
    """One TCP connection: frames the stream and remembers the peer for reuse."""

    def __init__(self, endpoint: SipEndpoint) -> None:
        self.endpoint = endpoint
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = None
        self.last_activity = endpoint.loop.time()

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        self.endpoint.connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        self.last_activity = self.endpoint.loop.time()
        assert self.peer is not None
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            # A stream whose framing is lost cannot be resynchronised (18.3).
            log.warning("closing tcp connection from %s:%d: %s", *self.peer, exc.reason)
            self.close()
            return
        for message in messages:
            self.endpoint.receive(message, self.peer, "tcp")

    def send(self, data: bytes) -> None:
        self.last_activity = self.endpoint.loop.time()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.endpoint.connections.get(self.peer) is self:
            del self.endpoint.connections[self.peer]


class SipEndpoint:
    """UDP + TCP on one address, driving one sans-IO agent.

    ``on_events`` is called after the agent has been given input (a datagram,
    a stream message, a timer), before its output is flushed, so whoever owns
    the agent (the server) drains ``next_event()`` and reacts in the same turn.
    Code that calls agent commands from elsewhere (a call runner's timer, a
    media timeout) calls :meth:`service` afterwards.
    """

    def __init__(
        self,
        agent: SansIOAgent,
        *,
        on_events: Callable[[], None] | None = None,
        loop: asyncio.AbstractEventLoop | None = None,
        idle_timeout: float = DEFAULT_IDLE_TIMEOUT,
    ) -> None:
        self.agent = agent
        self.on_events = on_events
        self.loop = loop or asyncio.get_running_loop()
        self.idle_timeout = idle_timeout
        self.connections: dict[Address, _TcpConnection] = {}
        self.address: ListenAddresses | None = None
        self._udp: asyncio.DatagramTransport | None = None
        self._tcp_server: asyncio.Server | None = None
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._sweeper: asyncio.TimerHandle | None = None
        self._servicing = False
        self._again = False
        self._connecting: dict[Address, list[bytes]] = {}
        #: Sources to ignore unread (a throttled password scanner gets silence, not answers).
        self.blocked: Callable[[str], bool] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> ListenAddresses:
        """Bind UDP first (port 0 picks a free one), then TCP on the same port."""
        udp, _ = await self.loop.create_datagram_endpoint(
            lambda: _UdpProtocol(self), local_addr=(host, port)
        )
        self._udp = udp
        bound = udp.get_extra_info("sockname")
        try:
            self._tcp_server = await self.loop.create_server(
                lambda: _TcpConnection(self), host=bound[0], port=bound[1], reuse_address=True
            )
        except OSError:
            udp.close()
            raise
        self.address = ListenAddresses(bound[0], bound[1])
        self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep_idle)
        return self.address

    def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for conn in list(self.connections.values()):
            conn.close()
        if self._tcp_server is not None:
            self._tcp_server.close()
        if self._udp is not None:
            self._udp.close()

    # ------------------------------------------------------------------ input

    def receive(self, data: bytes, source: Address, transport: str) -> None:
        if self.blocked is not None and self.blocked(source[0]):
            return
        try:
            self.agent.receive(data, source, transport, self.loop.time())
        except Exception:  # the agent promises not to raise; never trust that with the server's life
            log.exception("user agent failed on a %d-byte %s message from %s:%d", len(data), transport, *source)
        self.service()

    def _on_timer(self) -> None:
        self._timer = None
        self._timer_at = None
        try:
            self.agent.handle_timer(self.loop.time())
        except Exception:
            log.exception("user agent failed in handle_timer")
        self.service()

    # ------------------------------------------------------------------ output

    def service(self) -> None:
        """Let the owner react to events, flush what the agent wants sent, re-arm the timer.

        Re-entrant calls (an event handler issuing a command that calls
        service again) just ask the running pass to loop once more.
        """
        if self._servicing:
            self._again = True
            return
        self._servicing = True
        try:
            self._again = True
            while self._again:
                self._again = False
                if self.on_events is not None:
                    try:
                        self.on_events()
                    except Exception:
                        log.exception("event handler failed")
                self._flush()
            self._arm_timer()
        finally:
            self._servicing = False

    def _flush(self) -> None:
        for out in self.agent.outgoing():
            try:
                self.send(out.data, out.dest, out.transport)
            except Exception:
                log.exception("could not send to %s:%d over %s", out.dest[0], out.dest[1], out.transport)

    def send(self, data: bytes, dest: Address, transport: str) -> None:
        if transport.lower() == "tcp":
            self._send_tcp(data, dest)
        elif self._udp is not None:
            self._udp.sendto(data, dest)

    def _send_tcp(self, data: bytes, dest: Address) -> None:
        conn = self.connections.get(dest)
        if conn is not None and conn.transport is not None and not conn.transport.is_closing():
            conn.send(data)  # 18.2.2: the connection the request came in on
            return
        pending = self._connecting.get(dest)
        if pending is not None:
            pending.append(data)
            return
        self._connecting[dest] = [data]
        self.loop.create_task(self._connect(dest))

    async def _connect(self, dest: Address) -> None:
        try:
            _, conn = await self.loop.create_connection(lambda: _TcpConnection(self), dest[0], dest[1])
        except OSError as exc:
            log.warning("tcp connect to %s:%d failed: %s", dest[0], dest[1], exc)
            self._connecting.pop(dest, None)
            return
        for data in self._connecting.pop(dest, []):
            conn.send(data)

    def _arm_timer(self) -> None:
        at = self.agent.next_timer()
        if at == self._timer_at and self._timer is not None:
            return
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
            self._timer_at = None
        if at is not None:
            self._timer = self.loop.call_at(at, self._on_timer)
            self._timer_at = at

    # ------------------------------------------------------------------ idle connections

    def _sweep_interval(self) -> float:
        return max(0.5, min(10.0, self.idle_timeout / 4))

    def _sweep_idle(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections.values()):
            if now - conn.last_activity > self.idle_timeout:
                log.info("closing idle tcp connection from %s:%d", *(conn.peer or ("?", 0)))
                conn.close()
        self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep_idle)
