"""asyncio UDP and TCP transports feeding the sans-IO :class:`~ivr.sip.ua.UserAgent`.

This module is the only SIP code that touches sockets.  It owns:

* one UDP socket and one TCP listener on the ``--listen`` address (RFC 3261
  section 18: a UA listens on both for the same port);
* one :class:`~ivr.sip.message.StreamFramer` per TCP connection (section
  18.3: messages on a stream are framed by Content-Length);
* reuse of the connection a request arrived on for its responses (section
  18.2.2), falling back to a new connection to the destination the UA chose;
* closing TCP connections that stay idle, and those holding a message that
  does not complete in time (a slow sender must not pin a buffer forever);
* answering RFC 5626 double-CRLF keep-alive pings with a single CRLF;
* capping inbound TCP connections, in total and per source address (the
  excess is closed at once and logged);
* the agent's single timer: after every receive, timer and command the
  endpoint flushes ``outgoing()`` and keeps ONE ``loop.call_at`` armed no
  later than ``next_timer()`` (the aioquic pattern; a later deadline keeps
  the earlier handle, which re-arms when it fires), so the agent itself never
  sleeps.

The agent is told the time from ``loop.time()`` (monotonic); its timers are on
the same scale, so they can be handed to ``call_at`` directly.

Malformed input never kills the server: the agent answers or drops what it
cannot parse, a TCP stream whose framing is broken or whose message is too
large is answered (400/413/513, when the request can be routed) and closed,
and every exception escaping the agent is logged and the datagram dropped.
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import socket
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from ivr.sip.message import SipParseError, StreamFramer

log = logging.getLogger("ivr.sip.transport")

Address = tuple[str, int]

#: A TCP connection with no traffic for this long is closed (RFC 5626 keeps
#: flows alive with CRLF pings far more often than this).
DEFAULT_IDLE_TIMEOUT = 120.0
#: A message must complete within this long of its first byte, and an inbound connection
#: must deliver its first message within this long of opening (64*T1: what any
#: transaction waits); otherwise it is closed.
DEFAULT_MESSAGE_TIMEOUT = 32.0
#: Inbound TCP connections accepted at once, in total and from one address.  A proxy in
#: front (Kamailio) uses a handful; phones one each.
DEFAULT_MAX_CONNECTIONS = 1024
DEFAULT_MAX_CONNECTIONS_PER_ADDRESS = 64
#: After answering a stream it must close (broken framing, a message too large), input is
#: read and dropped this long before the close: closing with unread input would reset the
#: connection and could destroy the answer before the peer reads it.
LINGER = 2.0
#: A UDP destination named by a host name (a Contact, a Route) is resolved off the event
#: loop (a sendto() would resolve it synchronously: a slow DNS server, possibly the
#: caller's own, would stall every call's audio), at most this many at once, this long each.
MAX_RESOLVING = 16
RESOLVE_TIMEOUT = 5.0
#: Refused connections from one address are logged at most this often.
_REFUSAL_LOG_INTERVAL = 10.0


class OutgoingLike(Protocol):
    data: bytes
    dest: Address
    transport: str


class SansIOAgent(Protocol):
    """What the transports need from the user agent (``ivr.sip.ua.UserAgent``).

    An agent may also have ``reject_unparsable(exc, source, transport)``: a TCP message the
    framer refuses (too large, no Content-Length) is then answered before the close.
    """

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

    def __init__(self, endpoint: SipEndpoint, inbound: bool) -> None:
        self.endpoint = endpoint
        self.inbound = inbound
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer: Address | None = None
        self.last_activity = endpoint.loop.time()
        #: When the message being received began (or, inbound, when the connection opened
        #: and nothing has arrived yet); None when nothing is pending.
        self.waiting_since: float | None = self.last_activity if inbound else None
        self.counted = False
        self.lingering = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport
        peer = transport.get_extra_info("peername")
        self.peer = (peer[0], peer[1])
        if self.inbound and not self.endpoint._admit(self):
            transport.abort()
            return
        self.endpoint.connections[self.peer] = self

    def data_received(self, data: bytes) -> None:
        if self.peer is None or (self.inbound and not self.counted) or self.lingering:
            return  # refused (being aborted) or answered and closing: input is dropped
        now = self.last_activity = self.endpoint.loop.time()
        pings = self.framer.keepalives
        try:
            messages = self.framer.feed(data)
        except SipParseError as exc:
            self._fail(exc)
            return
        if self.framer.keepalives != pings:
            self.send(b"\r\n")  # RFC 5626 3.5.1: a double-CRLF ping gets a single-CRLF pong
        if self.framer.pending:
            if self.waiting_since is None or messages:
                self.waiting_since = now
        else:
            self.waiting_since = None
        for message in messages:
            self.endpoint.receive(message, self.peer, "tcp")

    def _fail(self, exc: SipParseError) -> None:
        """A stream whose framing is lost cannot be resynchronised (18.3): answer if possible, close."""
        assert self.peer is not None
        log.warning("closing tcp connection from %s:%d: %d %s", *self.peer, exc.status, exc.reason)
        reject = getattr(self.endpoint.agent, "reject_unparsable", None)
        if exc.request is not None and reject is not None:
            try:
                reject(exc, self.peer, "tcp")
            except Exception:
                log.exception("could not answer a broken tcp stream from %s:%d", *self.peer)
            self.endpoint.service()  # the answer goes out on this connection before it closes
        self._linger()

    def _linger(self) -> None:
        """Half-close after what was written, drop input, close for good after :data:`LINGER`."""
        transport = self.transport
        if transport is None or transport.is_closing() or not transport.can_write_eof():
            self.close()
            return
        self.lingering = True
        self.waiting_since = None
        transport.write_eof()
        self.endpoint.loop.call_later(LINGER, self.close)

    def eof_received(self) -> bool | None:
        return False  # the peer is done sending: close (after writing what is queued)

    def send(self, data: bytes) -> None:
        self.last_activity = self.endpoint.loop.time()
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()  # what was written (an answer) is flushed first

    def connection_lost(self, exc: Exception | None) -> None:
        if self.peer is not None and self.endpoint.connections.get(self.peer) is self:
            del self.endpoint.connections[self.peer]
        self.endpoint._release(self)


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
        message_timeout: float = DEFAULT_MESSAGE_TIMEOUT,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        max_connections_per_address: int = DEFAULT_MAX_CONNECTIONS_PER_ADDRESS,
    ) -> None:
        self.agent = agent
        self.on_events = on_events
        self.loop = loop or asyncio.get_running_loop()
        self.idle_timeout = idle_timeout
        self.message_timeout = message_timeout
        self.max_connections = max_connections
        self.max_connections_per_address = max_connections_per_address
        self._inbound: dict[str, int] = {}  # source IP -> inbound connections open
        self._inbound_total = 0
        self._refusals: dict[str, tuple[float, int]] = {}  # IP -> (last logged, refused since)
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
        self._resolving = 0
        #: Sources to ignore unread (a throttled password scanner gets silence, not answers).
        self.blocked: Callable[[str], bool] | None = None

    # ------------------------------------------------------------------ lifecycle

    async def start(self, host: str, port: int) -> ListenAddresses:
        """Bind UDP first (port 0 picks a free one), then TCP on the same port.

        With port 0 the UDP port the kernel picked may be taken for TCP (another program's
        connection): then another UDP port is tried, a few times."""
        for attempt in range(1 if port else 20):
            udp, _ = await self.loop.create_datagram_endpoint(
                lambda: _UdpProtocol(self), local_addr=(host, port)
            )
            bound = udp.get_extra_info("sockname")
            try:
                self._tcp_server = await self.loop.create_server(
                    lambda: _TcpConnection(self, inbound=True), host=bound[0], port=bound[1], reuse_address=True
                )
                break
            except OSError:
                udp.close()
                if port or attempt == 19:
                    raise
        self._udp = udp
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

    # ------------------------------------------------------------------ connection caps

    def _admit(self, conn: _TcpConnection) -> bool:
        """Count an inbound connection in, or refuse it (and say so, without flooding the log)."""
        assert conn.peer is not None
        ip = conn.peer[0]
        open_here = self._inbound.get(ip, 0)
        if self._inbound_total >= self.max_connections or open_here >= self.max_connections_per_address:
            now = self.loop.time()
            last, refused = self._refusals.get(ip, (float("-inf"), 0))
            refused += 1
            if now - last >= _REFUSAL_LOG_INTERVAL:
                log.warning(
                    "refused %d tcp connection(s) from %s: %d open from it, %d in all (limits %d, %d)",
                    refused, ip, open_here, self._inbound_total,
                    self.max_connections_per_address, self.max_connections,
                )
                last, refused = now, 0
            if len(self._refusals) > 4096:
                self._refusals.clear()
            self._refusals[ip] = (last, refused)
            return False
        self._inbound[ip] = open_here + 1
        self._inbound_total += 1
        conn.counted = True
        return True

    def _release(self, conn: _TcpConnection) -> None:
        if not conn.counted or conn.peer is None:
            return
        conn.counted = False
        ip = conn.peer[0]
        self._inbound_total -= 1
        left = self._inbound.get(ip, 1) - 1
        if left > 0:
            self._inbound[ip] = left
        else:
            self._inbound.pop(ip, None)

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
            self._send_tcp(data, dest)  # create_connection resolves a name off the loop itself
        elif self._udp is not None:
            if _is_ip(dest[0]):
                self._udp.sendto(data, dest)
            elif self._resolving >= MAX_RESOLVING:
                log.warning("dropped a datagram to %s:%d: %d names being resolved", dest[0], dest[1], self._resolving)
            else:
                self._resolving += 1
                self.loop.create_task(self._send_resolved(data, dest))

    async def _send_resolved(self, data: bytes, dest: Address) -> None:
        try:
            assert self._udp is not None
            family = self._udp.get_extra_info("socket").family
            infos = await asyncio.wait_for(
                self.loop.getaddrinfo(dest[0], dest[1], family=family, type=socket.SOCK_DGRAM), RESOLVE_TIMEOUT
            )
        except (OSError, TimeoutError) as exc:
            log.info("cannot send to %s:%d: %s", dest[0], dest[1], exc or "resolving timed out")
            return
        finally:
            self._resolving -= 1
        if infos and self._udp is not None and not self._udp.is_closing():
            address = infos[0][4]
            self._udp.sendto(data, (str(address[0]), int(address[1])))

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
            _, conn = await self.loop.create_connection(lambda: _TcpConnection(self, inbound=False), dest[0], dest[1])
        except OSError as exc:
            log.warning("tcp connect to %s:%d failed: %s", dest[0], dest[1], exc)
            self._connecting.pop(dest, None)
            return
        for data in self._connecting.pop(dest, []):
            conn.send(data)

    def _arm_timer(self) -> None:
        at = self.agent.next_timer()
        if self._timer is not None and self._timer_at is not None and (at is None or self._timer_at <= at):
            # The armed timer fires no later than needed: when it does, the agent handles what is
            # due (perhaps nothing) and it is armed again.  Most messages move the next deadline
            # later (an ACK stops a 200's retransmissions), and replacing the handle each time
            # cost a cancel and a call_at per message.
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
        return max(0.05, min(10.0, self.idle_timeout / 4, self.message_timeout / 4))

    def _sweep_idle(self) -> None:
        now = self.loop.time()
        for conn in list(self.connections.values()):
            if now - conn.last_activity > self.idle_timeout:
                log.info("closing idle tcp connection from %s:%d", *(conn.peer or ("?", 0)))
                conn.close()
            elif conn.waiting_since is not None and now - conn.waiting_since > self.message_timeout:
                log.warning(
                    "closing tcp connection from %s:%d: no complete message within %g s (%d bytes pending)",
                    *(conn.peer or ("?", 0)), self.message_timeout, conn.framer.pending,
                )
                conn.close()
        self._sweeper = self.loop.call_later(self._sweep_interval(), self._sweep_idle)


@functools.lru_cache(maxsize=1024)  # asked for every datagram sent: the answer never changes
def _is_ip(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True
