"""RTP port allocation from the deployment's ``server.rtp_ports`` range.

Each call gets an even RTP port and the odd port above it for RTCP (RFC 3550
section 11).  Both sockets are bound here, synchronously, so a port that
another process holds is simply skipped.  Ports this process handed out are
remembered per range and not offered again until released, and allocation
starts at a random even port so consecutive calls do not reuse the port a
late packet of the previous call may still be sent to.
"""

from __future__ import annotations

import random
import socket
from dataclasses import dataclass, field

MAX_ATTEMPTS = 64  # bound the bind attempts when most of the range is taken by others


class PortRangeExhausted(OSError):
    """No free even/odd port pair is left in the configured range."""


@dataclass
class PortPool:
    """The even/odd pairs of one ``(first, last)`` range and which of them we hold."""

    first: int
    last: int
    in_use: set[int] = field(default_factory=set)

    def __post_init__(self) -> None:
        if self.first % 2:
            self.first += 1
        if self.last - self.first < 1 or not 0 < self.first <= 65534:
            raise ValueError(f"RTP port range {self.first}-{self.last} holds no even/odd pair")

    @property
    def pairs(self) -> int:
        return (self.last - self.first + 1) // 2

    def bind_pair(self, host: str) -> tuple[socket.socket, socket.socket]:
        """Two bound non-blocking UDP sockets: (rtp on an even port, rtcp on port + 1)."""
        if len(self.in_use) >= self.pairs:
            raise PortRangeExhausted(
                f"all {self.pairs} RTP port pairs in {self.first}-{self.last} are in use"
            )
        start = random.randrange(self.pairs)
        attempts = 0
        for i in range(self.pairs):
            port = self.first + 2 * ((start + i) % self.pairs)
            if port in self.in_use:
                continue
            pair = _try_bind(host, port)
            if pair is not None:
                self.in_use.add(port)
                return pair
            attempts += 1
            if attempts >= MAX_ATTEMPTS:
                break
        raise PortRangeExhausted(
            f"no free RTP port pair in {self.first}-{self.last} on {host} after {attempts} attempts"
        )

    def release(self, port: int) -> None:
        self.in_use.discard(port)


def _try_bind(host: str, port: int) -> tuple[socket.socket, socket.socket] | None:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    socks: list[socket.socket] = []
    try:
        for p in (port, port + 1):
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            sock.setblocking(False)
            sock.bind((host, p))
    except OSError:
        for sock in socks:
            sock.close()
        return None
    return socks[0], socks[1]


_POOLS: dict[tuple[int, int], PortPool] = {}


def pool_for(port_range: tuple[int, int]) -> PortPool:
    """The process-wide pool of a range (one per configured range)."""
    pool = _POOLS.get(port_range)
    if pool is None:
        pool = _POOLS[port_range] = PortPool(*port_range)
    return pool
