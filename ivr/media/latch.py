"""Where a call's RTP and RTCP go: the SDP's address, moved once by symmetric RTP latching. Sans-IO.

Symmetric RTP (RFC 4961 spirit; hijack-safe)
  Packets are accepted only from the current remote.  If the first packet
  comes from a different address, the remote moves there ONCE, and only while
  the latch window is open: until the first accepted packet, and at most
  :data:`LATCH_SECONDS` after the remote was configured.  The new source is
  plausible only if its IP equals the SDP address's IP (a NAT rewrote the
  port) or the IP the signalling came from (a NATed phone whose SDP shows its
  private address).  A first packet from the SDP address itself closes the
  window; implausible packets are refused without closing it (so junk cannot
  deny a real phone its latch).  No later re-latching: only a new SDP address
  (re-INVITE) opens a new window.

RTCP goes to ``a=rtcp`` (RFC 3605) when the SDP has it, else to the RTP port
+ 1, moved with a latch, and answered where the peer's first RTCP came from
(symmetric RTCP) unless ``a=rtcp`` fixed it.

The media session keeps the remote it sends to in its own attribute (its
per-packet checks compare against it); a :class:`Latch` decides when that
remote changes: :meth:`Latch.configure` for a new SDP, :meth:`Latch.move` for a
packet from elsewhere.  Told the time, never reading a clock.
"""

from __future__ import annotations

import functools
import ipaddress

LATCH_SECONDS = 10.0

Address = tuple[str, int]


class Latch:
    """The latch window and the RTCP destination of one call's media.

    ``open`` is True while the window is open (the session closes it itself, on its
    receive path, when the first packet comes from the SDP address); ``latched`` once
    the remote has moved; ``rtcp_remote`` is where RTCP goes.
    """

    __slots__ = ("sdp_remote", "rtcp_remote", "open", "latched", "signalling_host", "_rtcp_settled", "_until")

    def __init__(self) -> None:
        self.sdp_remote: Address | None = None
        self.rtcp_remote: Address | None = None
        self.open = False
        self.latched = False
        self.signalling_host: str | None = None
        self._rtcp_settled = False  # a=rtcp said where, or the peer's RTCP showed it
        self._until = 0.0

    def configure(
        self,
        remote: Address | None,
        *,
        rtcp: Address | None = None,
        signalling_host: str | None = None,
        now: float,
    ) -> bool:
        """The remote of a negotiated SDP (None or 0.0.0.0: hold), ``a=rtcp`` and the INVITE's source IP.

        True when the remote changed (a new window is open): the session sends there now.
        Raises ValueError for a host that is not an IP address.
        """
        if remote is not None:
            remote = (ip_literal(remote[0]), int(remote[1]))
            if _address(remote[0]).is_unspecified:
                remote = None
        if signalling_host is not None:
            self.signalling_host = signalling_host
        if remote == self.sdp_remote:
            return False
        self.sdp_remote = remote
        self.rtcp_remote = rtcp or ((remote[0], remote[1] + 1) if remote else None)
        self._rtcp_settled = rtcp is not None
        self.latched = False
        self.open = remote is not None
        self._until = now + LATCH_SECONDS
        return True

    def move(self, addr: Address, now: float) -> Address | None:
        """A packet came from ``addr``, not the remote: the new remote if the latch moves there, else None."""
        if not self.open:
            return None
        if now > self._until:
            self.open = False
            return None
        ip = addr[0]
        sdp_ip = self.sdp_remote[0] if self.sdp_remote else None
        if ip != sdp_ip and ip != self.signalling_host:
            return None
        if not self._rtcp_settled:
            self.rtcp_remote = (ip, addr[1] + 1)
        self.latched = True
        self.open = False
        return (ip, addr[1])

    def rtcp_from(self, addr: Address) -> None:
        """An accepted RTCP packet came from ``addr``: answer there from now on (once, unless a=rtcp)."""
        if not self._rtcp_settled:
            self.rtcp_remote = (addr[0], addr[1])
        self._rtcp_settled = True


@functools.lru_cache(maxsize=1024)  # every call's SDP names one of a few addresses
def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    return ipaddress.ip_address(host)


def ip_literal(host: str) -> str:
    """The address as the socket layer reports sources (so they compare equal), or ValueError."""
    try:
        return str(_address(host.strip("[]")))
    except ValueError:
        raise ValueError(
            f"remote media host {host!r} is not an IP address (resolve it first)"
        ) from None
