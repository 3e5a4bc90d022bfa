"""Read readiness of every call's RTP socket of one event loop, served in one wake-up.

asyncio's datagram transport costs a lot per packet for what RTP needs: the
selector maps the descriptor to a key, a Handle is queued and run in a
context, the transport reads with ``recvfrom`` (building the source address
tuple even when the socket is connected) and calls the protocol, which calls
the session.  At 50 packets a second per call that overhead was the larger
half of the Python cost of receiving.

The :class:`Reactor` keeps its own ``epoll`` set of RTP sockets and registers
only the epoll descriptor with the loop.  When any socket is readable the
loop calls :meth:`Reactor._ready` once; it asks the epoll set which sockets
are ready and calls each one's handler directly with one arrival time for the
batch.  Level-triggered: a socket with more than one queued datagram is
simply reported again on the next wake-up, so a handler reads one datagram
and never needs a failing extra ``recv`` to learn the queue is empty.  At
most ``BATCH`` sockets are served per wake-up, so timers (the media tick)
run between batches.

Where ``select.epoll`` does not exist (not Linux), each socket is registered
with ``loop.add_reader`` and its handler gets the loop's time per packet: the
same handlers, only without the batching.

A handler that raises is logged (rate-limited) and the others still run: one
call's failing recorder must not cost every other call its media.
"""

from __future__ import annotations

import asyncio
import logging
import select
from collections.abc import Callable

log = logging.getLogger(__name__)

Handler = Callable[[float], None]

# Sockets served per wake-up.  More wait for the next loop iteration (level-triggered, and
# epoll rotates its ready list), so a due media tick never waits behind a thousand reads.
BATCH = 128


class Reactor:
    """One epoll set of sockets per event loop; ``add(fd, handler)``, ``remove(fd)``.

    ``handler(now)`` is called when ``fd`` is readable, ``now`` being the
    loop's time at the wake-up.  Stats: ``wakeups`` (loop callbacks),
    ``dispatched`` (handler calls), ``errors`` (handlers that raised).
    """

    def __init__(self, loop: asyncio.AbstractEventLoop, *, use_epoll: bool = True) -> None:
        self.loop = loop
        self._handlers: dict[int, Handler] = {}
        self._epoll: select.epoll | None = (
            select.epoll() if use_epoll and hasattr(select, "epoll") else None
        )
        self._watching = False  # the epoll descriptor is registered with the loop
        self.wakeups = 0
        self.dispatched = 0
        self.errors = 0

    @property
    def batched(self) -> bool:
        """True when sockets share one epoll wake-up (False: one loop reader per socket)."""
        return self._epoll is not None

    def __len__(self) -> int:
        return len(self._handlers)

    def add(self, fd: int, handler: Handler) -> None:
        if fd in self._handlers:
            raise ValueError(f"descriptor {fd} is already watched by the media reactor")
        if self._epoll is None:
            self.loop.add_reader(fd, self._one, fd)
        else:
            self._epoll.register(fd, select.EPOLLIN)
            if not self._watching:
                self.loop.add_reader(self._epoll.fileno(), self._ready)
                self._watching = True
        self._handlers[fd] = handler

    def remove(self, fd: int) -> None:
        """Stop watching ``fd``; call it BEFORE closing the socket (the number may be reused)."""
        if self._handlers.pop(fd, None) is None:
            return
        if self._epoll is None:
            self.loop.remove_reader(fd)
            return
        try:
            self._epoll.unregister(fd)
        except (OSError, ValueError):  # already closed: the kernel dropped it from the set
            pass
        if not self._handlers and self._watching:
            self.loop.remove_reader(self._epoll.fileno())
            self._watching = False

    def close(self) -> None:
        for fd in list(self._handlers):
            self.remove(fd)
        if self._epoll is not None:
            self._epoll.close()

    def _ready(self) -> None:
        assert self._epoll is not None
        handlers = self._handlers
        events = self._epoll.poll(0, BATCH)
        now = self.loop.time()
        self.wakeups += 1
        self.dispatched += len(events)
        for fd, _ in events:
            handler = handlers.get(fd)
            if handler is None:  # removed by an earlier handler of this batch (a hang-up)
                continue
            try:
                handler(now)
            except Exception:
                self._failed(fd)

    def _one(self, fd: int) -> None:
        self.wakeups += 1
        self.dispatched += 1
        try:
            self._handlers[fd](self.loop.time())
        except Exception:
            self._failed(fd)

    def _failed(self, fd: int) -> None:
        self.errors += 1
        if self.errors <= 5 or self.errors % 1000 == 0:
            log.exception(
                "media: handling a packet on descriptor %d failed (%d so far)", fd, self.errors
            )


_REACTORS: dict[asyncio.AbstractEventLoop, Reactor] = {}


def get_reactor() -> Reactor:
    """The running loop's reactor, created on first use."""
    loop = asyncio.get_running_loop()
    reactor = _REACTORS.get(loop)
    if reactor is None:
        for old in [lp for lp in _REACTORS if lp.is_closed()]:  # loops of earlier asyncio.run()s
            _REACTORS.pop(old).close()
        reactor = _REACTORS[loop] = Reactor(loop)
    return reactor
