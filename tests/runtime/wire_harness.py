"""``ivr serve``'s own pieces in one process, its SIP socket a recorder and the caller a sans-IO
:class:`UserAgent` fed from it: the harness tests/runtime/test_gcwatch.py and
bench/setup_path.py share.

The server is wired as :meth:`ivr.runtime.server.Server.run` wires it (its :class:`ServerAgent`
with the admission gate, :class:`Services`, the server's event handling, a :class:`SipEndpoint`),
but no SIP port is bound: what the server sends lands in :class:`Recorder`, and
:func:`exchange` carries messages both ways.  The media clock is built and not started (a
caller that wants RTP starts it).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ivr.config import Config
from ivr.dsl.compiler import Program
from ivr.media.clock import MediaClock
from ivr.runtime.calllog import CallLog
from ivr.runtime.server import Server, ServerAgent
from ivr.runtime.services import Services
from ivr.runtime.settings import ServeSettings
from ivr.sip.transport import SipEndpoint
from ivr.sip.ua import UserAgent

SERVER = ("127.0.0.1", 5060)  # the address the server believes it has: nothing binds it
CALLER = ("127.0.0.1", 5070)
T1 = 60.0  # no retransmission, however slowly the loop runs (valgrind, a loaded machine)


class Recorder(asyncio.DatagramTransport):
    """The server's UDP socket: what it sends is kept for the caller's agent."""

    def __init__(self) -> None:
        super().__init__()
        self.sent: list[bytes] = []

    def sendto(self, data: Any, addr: Any = None) -> None:
        self.sent.append(bytes(data))

    def is_closing(self) -> bool:
        return False


@dataclass
class Wired:
    """The server, its endpoint, the recorder in place of its socket, and the caller's agent."""

    server: Server
    services: Services
    endpoint: SipEndpoint
    wire: Recorder
    clock: MediaClock
    caller: UserAgent


def wire_server(config: Config, program: Program, calllog: CallLog) -> Wired:
    """The server's pieces wired as ``ivr serve`` wires them (call from a running event loop)."""
    server = Server(ServeSettings(config, SERVER, 1.0), program, calllog)
    ua = server.ua = ServerAgent(local_host=SERVER[0], local_port=SERVER[1], contact_host=SERVER[0], t1=T1)
    ua.refusal, ua.gate = server._options_refusal, server.admission  # noqa: SLF001 -- as Server.run wires them
    clock = MediaClock(asyncio.get_running_loop())
    services = server.services = Services(config=config, program=program, ua=ua, clock=clock, calllog=calllog,
                                          contact_host=SERVER[0], media_host=SERVER[0])
    endpoint = server.endpoint = services.endpoint = SipEndpoint(ua, on_events=server._on_ua_events)  # noqa: SLF001
    wire = endpoint._udp = Recorder()  # noqa: SLF001
    caller = UserAgent(local_host=CALLER[0], local_port=CALLER[1], t1=T1)
    return Wired(server, services, endpoint, wire, clock, caller)


async def exchange(wired: Wired, done: Callable[[], bool], tries: int = 10_000, pause: float = 0.0) -> None:
    """Carry messages both ways until ``done()``, sleeping ``pause`` between rounds so the
    server's tasks run (0: just a turn of the loop); AssertionError after ``tries`` rounds."""
    loop = asyncio.get_running_loop()
    caller = wired.caller
    for _ in range(tries):
        for out in caller.outgoing():
            wired.endpoint.receive(out.data, CALLER, "udp")
        sent, wired.wire.sent = wired.wire.sent, []
        for data in sent:
            caller.receive(data, SERVER, "udp", loop.time())
        while caller.next_event() is not None:
            pass
        if done():
            return
        await asyncio.sleep(pause)
    raise AssertionError("the call did not get through: " + repr(caller.calls))
