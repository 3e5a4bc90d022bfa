"""RTCP reporting of one call's stream: when to report and what (RFC 3550 6.2, 6.4). Sans-IO.

An :class:`RtcpReporter` builds the compound packet a media session sends every
:data:`RTCP_INTERVAL` seconds, randomised to 0.5-1.5 times the interval (RFC
3550 6.2, so calls set up together do not report together): a sender report
(SR, 6.4.1) when we sent RTP since the last report, else a receiver report (RR,
6.4.2), with one report block about the stream we receive, then an SDES CNAME
(6.5.1), and a BYE (6.6) when the call ends.  Received compounds are read for
the peer's SR, whose middle NTP bits and arrival time go back in our report
block (LSR/DLSR, so the peer can compute the round trip).

The packets themselves are :mod:`ivr.media.rtp`'s; the reception statistics
(:class:`~ivr.media.rtp.SourceStats`) are kept by the session's receive path.
Told the time and the counts, never reading a clock or a socket.
"""

from __future__ import annotations

import random

from ivr.media.rtp import (
    Bye,
    ReceiverReport,
    RtcpPacket,
    SenderReport,
    SourceDescription,
    SourceStats,
    ntp_timestamp,
    parse_rtcp,
    rtcp_bytes,
)

RTCP_INTERVAL = 5.0


class RtcpReporter:
    """The RTCP of one sending source (``ssrc``, ``cname``): when the next report is due, and its bytes."""

    __slots__ = ("ssrc", "cname", "interval", "next_report", "_reported_sent")

    def __init__(self, ssrc: int, cname: str, now: float, interval: float = RTCP_INTERVAL) -> None:
        self.ssrc = ssrc
        self.cname = cname
        self.interval = interval
        self.next_report = now + interval * random.uniform(0.5, 1.5)
        self._reported_sent = 0  # packets sent when the last report went out

    def schedule(self, now: float) -> None:
        """The next report: ``interval`` from ``now``, randomised (RFC 3550 6.2)."""
        self.next_report = now + self.interval * random.uniform(0.5, 1.5)

    def compound(
        self,
        now: float,
        *,
        wallclock: float,
        rtp_timestamp: int,
        sent: tuple[int, int],
        source: SourceStats | None,
        bye: bool = False,
    ) -> bytes:
        """The compound packet to send at ``now``: SR or RR, SDES CNAME, and BYE when ``bye``.

        ``wallclock`` (UNIX time) and ``rtp_timestamp`` are the same instant for the SR;
        ``sent`` is (packets, payload octets) sent so far; ``source`` the stream we receive.
        """
        blocks = (source.report_block(now),) if source is not None and source.received else ()
        packets_sent, octets_sent = sent
        report: RtcpPacket
        if packets_sent != self._reported_sent:
            report = SenderReport(
                self.ssrc, ntp_timestamp(wallclock), rtp_timestamp, packets_sent, octets_sent, blocks
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        self._reported_sent = packets_sent
        packets: list[RtcpPacket] = [report, SourceDescription.cname_of(self.ssrc, self.cname)]
        if bye:
            packets.append(Bye((self.ssrc,)))
        return rtcp_bytes(packets)

    @staticmethod
    def received(data: bytes, now: float, source: SourceStats | None) -> None:
        """A received compound: the SR of ``source`` is kept for our next report block.

        Raises :class:`~ivr.media.rtp.RtpError` for bytes that are not RTCP.
        """
        for packet in parse_rtcp(data):
            if isinstance(packet, SenderReport) and source is not None and packet.ssrc == source.ssrc:
                source.on_sender_report(packet, now)
