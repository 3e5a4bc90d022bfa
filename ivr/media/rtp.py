"""RTP and RTCP on the wire, and per-source reception statistics (RFC 3550).

Sans-IO: packets are parsed from and serialised to bytes; statistics are fed
sequence numbers, timestamps and arrival times and return report blocks.
Nothing here touches a socket or a clock.

* :class:`RtpPacket` -- the fixed header, CSRCs, header extension and padding
  (RFC 3550 section 5.1), with ``parse`` and ``__bytes__``.
* RTCP packets (section 6): :class:`SenderReport`, :class:`ReceiverReport`
  with :class:`ReportBlock`, :class:`SourceDescription` (CNAME), :class:`Bye`,
  and :class:`RtcpUnknown` for anything else (APP, feedback) so a compound
  packet always round-trips.  :func:`parse_rtcp` splits a compound packet;
  :func:`rtcp_bytes` joins one.
* :class:`SourceStats` -- sequence validation (appendix A.1), loss (A.3) and
  interarrival jitter (A.8) for one SSRC.
* :func:`is_rtcp` tells RTCP from RTP on a multiplexed port (RFC 5761 4).
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from dataclasses import dataclass, field

RTP_VERSION = 2
RTP_HEADER = struct.Struct("!BBHII")
NTP_EPOCH_OFFSET = 2208988800  # seconds from 1900-01-01 (NTP) to 1970-01-01 (UNIX)


class RtpError(ValueError):
    """A datagram that is not a valid RTP or RTCP packet; the message says why."""


# --------------------------------------------------------------------------- RTP


@dataclass(frozen=True)
class RtpPacket:
    """One RTP packet (RFC 3550 section 5.1).

    ``padding`` is the number of padding octets (0 = no padding; the count is
    the last octet, as on the wire).  ``extension`` is the X bit; the header
    extension itself (section 5.3.1) is ``extension_profile`` and
    ``extension_data`` (a multiple of 4 octets).
    """

    payload_type: int
    sequence: int
    timestamp: int
    ssrc: int
    payload: bytes = b""
    marker: bool = False
    csrc: tuple[int, ...] = ()
    padding: int = 0
    extension: bool = False
    extension_profile: int = 0
    extension_data: bytes = b""
    version: int = RTP_VERSION

    @classmethod
    def parse(cls, data: bytes) -> RtpPacket:
        if len(data) < 12:
            raise RtpError(f"RTP packet too short: {len(data)} bytes, the header needs 12")
        b0, b1, sequence, timestamp, ssrc = RTP_HEADER.unpack_from(data)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTP version {b0 >> 6}, expected 2")
        pos = 12 + 4 * (b0 & 0x0F)
        if len(data) < pos:
            raise RtpError(
                f"RTP packet truncated in its CSRC list ({b0 & 0x0F} CSRCs, {len(data)} bytes)"
            )
        csrc = struct.unpack_from(f"!{b0 & 0x0F}I", data, 12)
        profile, ext_data = 0, b""
        if b0 & 0x10:
            if len(data) < pos + 4:
                raise RtpError("RTP packet truncated in its header extension")
            profile, words = struct.unpack_from("!HH", data, pos)
            ext_data = bytes(data[pos + 4 : pos + 4 + 4 * words])
            pos += 4 + 4 * words
            if len(data) < pos:
                raise RtpError(f"RTP header extension of {4 * words} bytes overruns the packet")
        end = len(data)
        padding = 0
        if b0 & 0x20:
            padding = data[-1]
            if padding == 0 or end - padding < pos:
                raise RtpError(f"RTP padding count {padding} is invalid for a {end}-byte packet")
            end -= padding
        return cls(
            payload_type=b1 & 0x7F,
            sequence=sequence,
            timestamp=timestamp,
            ssrc=ssrc,
            payload=bytes(data[pos:end]),
            marker=bool(b1 & 0x80),
            csrc=csrc,
            padding=padding,
            extension=bool(b0 & 0x10),
            extension_profile=profile,
            extension_data=ext_data,
            version=b0 >> 6,
        )

    def __bytes__(self) -> bytes:
        if len(self.csrc) > 15:
            raise RtpError(f"an RTP packet carries at most 15 CSRCs, not {len(self.csrc)}")
        if len(self.extension_data) % 4:
            raise RtpError("RTP header extension data must be a multiple of 4 bytes")
        b0 = (self.version << 6) | (0x20 if self.padding else 0) | (0x10 if self.extension else 0)
        b0 |= len(self.csrc)
        b1 = (0x80 if self.marker else 0) | (self.payload_type & 0x7F)
        parts = [
            RTP_HEADER.pack(b0, b1, self.sequence & 0xFFFF, self.timestamp & 0xFFFFFFFF, self.ssrc),
            struct.pack(f"!{len(self.csrc)}I", *self.csrc),
        ]
        if self.extension:
            parts.append(struct.pack("!HH", self.extension_profile, len(self.extension_data) // 4))
            parts.append(self.extension_data)
        parts.append(self.payload)
        if self.padding:
            parts.append(bytes(self.padding - 1) + bytes([self.padding]))
        return b"".join(parts)


def is_rtcp(data: bytes) -> bool:
    """RTCP rather than RTP on a multiplexed port: packet type 192-223 (RFC 5761 section 4)."""
    return len(data) >= 2 and 192 <= data[1] <= 223


# --------------------------------------------------------------------------- RTCP

RTCP_SR = 200
RTCP_RR = 201
RTCP_SDES = 202
RTCP_BYE = 203
RTCP_APP = 204
SDES_CNAME = 1

_REPORT_BLOCK = struct.Struct("!IIIIII")


@dataclass(frozen=True)
class ReportBlock:
    """One reception report block (RFC 3550 section 6.4.1).

    ``cumulative_lost`` is signed (24 bits on the wire): duplicates can make it negative.
    ``jitter`` is in RTP timestamp units; ``lsr``/``dlsr`` are NTP middle-32 and 1/65536 s.
    """

    ssrc: int
    fraction_lost: int = 0
    cumulative_lost: int = 0
    highest_sequence: int = 0
    jitter: int = 0
    lsr: int = 0
    dlsr: int = 0

    @classmethod
    def parse(cls, data: bytes, offset: int = 0) -> ReportBlock:
        ssrc, lost, highest, jitter, lsr, dlsr = _REPORT_BLOCK.unpack_from(data, offset)
        cumulative = lost & 0xFFFFFF
        if cumulative & 0x800000:
            cumulative -= 0x1000000
        return cls(ssrc, lost >> 24, cumulative, highest, jitter, lsr, dlsr)

    def __bytes__(self) -> bytes:
        cumulative = max(-0x800000, min(self.cumulative_lost, 0x7FFFFF)) & 0xFFFFFF
        lost = (self.fraction_lost & 0xFF) << 24 | cumulative
        return _REPORT_BLOCK.pack(
            self.ssrc, lost, self.highest_sequence, self.jitter, self.lsr, self.dlsr
        )


def _rtcp_header(packet_type: int, count: int, body_len: int) -> bytes:
    if body_len % 4:
        raise RtpError(
            f"RTCP packet type {packet_type} body of {body_len} bytes is not 32-bit aligned"
        )
    return struct.pack("!BBH", 0x80 | count, packet_type, body_len // 4)


def _blocks(data: bytes, offset: int, count: int, where: str) -> tuple[ReportBlock, ...]:
    if len(data) < offset + 24 * count:
        raise RtpError(f"RTCP {where} truncated: {count} report blocks need {24 * count} bytes")
    return tuple(ReportBlock.parse(data, offset + 24 * i) for i in range(count))


@dataclass(frozen=True)
class SenderReport:
    """RTCP SR (RFC 3550 section 6.4.1); ``ntp_timestamp`` is the 64-bit NTP time."""

    ssrc: int
    ntp_timestamp: int
    rtp_timestamp: int
    packet_count: int
    octet_count: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""  # profile-specific extension, kept for the round trip

    packet_type = RTCP_SR

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> SenderReport:
        if len(body) < 24:
            raise RtpError(f"RTCP SR too short: {len(body)} bytes, the sender info needs 24")
        ssrc, ntp_hi, ntp_lo, rtp_ts, packets, octets = struct.unpack_from("!IIIIII", body)
        reports = _blocks(body, 24, count, "SR")
        return cls(
            ssrc,
            ntp_hi << 32 | ntp_lo,
            rtp_ts,
            packets,
            octets,
            reports,
            bytes(body[24 + 24 * count :]),
        )

    def __bytes__(self) -> bytes:
        body = struct.pack(
            "!IIIIII",
            self.ssrc,
            self.ntp_timestamp >> 32,
            self.ntp_timestamp & 0xFFFFFFFF,
            self.rtp_timestamp & 0xFFFFFFFF,
            self.packet_count & 0xFFFFFFFF,
            self.octet_count & 0xFFFFFFFF,
        )
        body += b"".join(bytes(r) for r in self.reports) + self.extension
        return _rtcp_header(RTCP_SR, len(self.reports), len(body)) + body


@dataclass(frozen=True)
class ReceiverReport:
    """RTCP RR (RFC 3550 section 6.4.2)."""

    ssrc: int
    reports: tuple[ReportBlock, ...] = ()
    extension: bytes = b""

    packet_type = RTCP_RR

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> ReceiverReport:
        if len(body) < 4:
            raise RtpError("RTCP RR too short: no SSRC")
        (ssrc,) = struct.unpack_from("!I", body)
        return cls(ssrc, _blocks(body, 4, count, "RR"), bytes(body[4 + 24 * count :]))

    def __bytes__(self) -> bytes:
        body = (
            struct.pack("!I", self.ssrc) + b"".join(bytes(r) for r in self.reports) + self.extension
        )
        return _rtcp_header(RTCP_RR, len(self.reports), len(body)) + body


@dataclass(frozen=True)
class SdesChunk:
    """One SDES chunk: an SSRC and its (item type, value) pairs (RFC 3550 section 6.5)."""

    ssrc: int
    items: tuple[tuple[int, bytes], ...] = ()

    @property
    def cname(self) -> str | None:
        return next((v.decode("utf-8", "replace") for t, v in self.items if t == SDES_CNAME), None)

    def __bytes__(self) -> bytes:
        out = bytearray(struct.pack("!I", self.ssrc))
        for item_type, value in self.items:
            if len(value) > 255:
                raise RtpError(f"SDES item {item_type} is {len(value)} bytes, at most 255")
            out += bytes([item_type, len(value)]) + value
        out += bytes(4 - len(out) % 4)  # the terminating null item, padded to 32 bits
        return bytes(out)


@dataclass(frozen=True)
class SourceDescription:
    """RTCP SDES (RFC 3550 section 6.5)."""

    chunks: tuple[SdesChunk, ...] = ()

    packet_type = RTCP_SDES

    @classmethod
    def cname_of(cls, ssrc: int, cname: str) -> SourceDescription:
        return cls((SdesChunk(ssrc, ((SDES_CNAME, cname.encode()),)),))

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> SourceDescription:
        chunks, pos = [], 0
        for _ in range(count):
            chunk, pos = _parse_chunk(body, pos)
            chunks.append(chunk)
        return cls(tuple(chunks))

    def __bytes__(self) -> bytes:
        body = b"".join(bytes(c) for c in self.chunks)
        return _rtcp_header(RTCP_SDES, len(self.chunks), len(body)) + body


def _parse_chunk(body: bytes, pos: int) -> tuple[SdesChunk, int]:
    if len(body) < pos + 4:
        raise RtpError("RTCP SDES truncated: a chunk without its SSRC")
    (ssrc,) = struct.unpack_from("!I", body, pos)
    pos += 4
    items: list[tuple[int, bytes]] = []
    while True:
        if pos >= len(body):
            raise RtpError("RTCP SDES chunk is not terminated by a null item")
        item_type = body[pos]
        if item_type == 0:
            pos = (pos + 4) & ~3  # skip the null octet(s) up to the next 32-bit boundary
            return SdesChunk(ssrc, tuple(items)), pos
        if pos + 2 > len(body) or pos + 2 + body[pos + 1] > len(body):
            raise RtpError(f"RTCP SDES item {item_type} overruns the packet")
        length = body[pos + 1]
        items.append((item_type, bytes(body[pos + 2 : pos + 2 + length])))
        pos += 2 + length


@dataclass(frozen=True)
class Bye:
    """RTCP BYE (RFC 3550 section 6.6)."""

    sources: tuple[int, ...]
    reason: str = ""

    packet_type = RTCP_BYE

    @classmethod
    def parse_body(cls, count: int, body: bytes) -> Bye:
        if len(body) < 4 * count:
            raise RtpError(f"RTCP BYE truncated: {count} sources need {4 * count} bytes")
        sources = struct.unpack_from(f"!{count}I", body)
        reason = ""
        if len(body) > 4 * count:
            length = body[4 * count]
            reason = bytes(body[4 * count + 1 : 4 * count + 1 + length]).decode("utf-8", "replace")
        return cls(sources, reason)

    def __bytes__(self) -> bytes:
        body = struct.pack(f"!{len(self.sources)}I", *self.sources)
        if self.reason:
            text = self.reason.encode()[:255]
            body += bytes([len(text)]) + text
            body += bytes(-len(body) % 4)
        return _rtcp_header(RTCP_BYE, len(self.sources), len(body)) + body


@dataclass(frozen=True)
class RtcpUnknown:
    """Any other RTCP packet (APP, RTPFB, PSFB, XR), kept verbatim so compounds round-trip."""

    packet_type: int
    count: int
    body: bytes = field(default=b"")

    def __bytes__(self) -> bytes:
        return _rtcp_header(self.packet_type, self.count, len(self.body)) + self.body


RtcpPacket = SenderReport | ReceiverReport | SourceDescription | Bye | RtcpUnknown
_PARSERS: dict[int, Callable[[int, bytes], RtcpPacket]] = {
    RTCP_SR: SenderReport.parse_body,
    RTCP_RR: ReceiverReport.parse_body,
    RTCP_SDES: SourceDescription.parse_body,
    RTCP_BYE: Bye.parse_body,
}


def parse_rtcp(data: bytes) -> list[RtcpPacket]:
    """Split and parse a compound RTCP packet (RFC 3550 section 6.1).

    Padding (the P bit) is allowed on the last packet only; it is removed.
    """
    packets: list[RtcpPacket] = []
    pos = 0
    if len(data) < 4:
        raise RtpError(f"RTCP packet too short: {len(data)} bytes")
    while pos < len(data):
        if len(data) < pos + 4:
            raise RtpError(f"RTCP compound packet has {len(data) - pos} trailing bytes")
        b0, packet_type, words = struct.unpack_from("!BBH", data, pos)
        if b0 >> 6 != RTP_VERSION:
            raise RtpError(f"RTCP version {b0 >> 6}, expected 2")
        end = pos + 4 + 4 * words
        if end > len(data):
            raise RtpError(
                f"RTCP packet type {packet_type} claims {4 * words} bytes, only {len(data) - pos - 4} left"
            )
        body = data[pos + 4 : end]
        if b0 & 0x20:
            if end != len(data) or not body or body[-1] == 0 or body[-1] > len(body):
                raise RtpError(
                    "RTCP padding is only allowed, and must be valid, on the last packet"
                )
            body = body[: -body[-1]]
        parser = _PARSERS.get(packet_type)
        if parser is None:
            packets.append(RtcpUnknown(packet_type, b0 & 0x1F, bytes(body)))
        else:
            packets.append(parser(b0 & 0x1F, body))
        pos = end
    return packets


def rtcp_bytes(packets: list[RtcpPacket] | tuple[RtcpPacket, ...]) -> bytes:
    """Serialise a compound RTCP packet."""
    return b"".join(bytes(p) for p in packets)


# --------------------------------------------------------------------------- time


def ntp_timestamp(unix_time: float) -> int:
    """UNIX seconds -> 64-bit NTP timestamp (RFC 3550 section 4)."""
    return int((unix_time + NTP_EPOCH_OFFSET) * (1 << 32)) & 0xFFFFFFFFFFFFFFFF


def ntp_middle(ntp: int) -> int:
    """The middle 32 bits of an NTP timestamp, as carried in LSR."""
    return (ntp >> 16) & 0xFFFFFFFF


# --------------------------------------------------------------------------- statistics

RTP_SEQ_MOD = 1 << 16
MAX_DROPOUT = 3000
MAX_MISORDER = 100
MIN_SEQUENTIAL = 2


@dataclass
class SourceStats:
    """Reception statistics of one SSRC (RFC 3550 appendix A.1, A.3, A.8).

    ``update(seq, timestamp, arrival)`` with ``arrival`` in RTP timestamp units
    (seconds * clock rate) returns False for a packet the sequence validation
    rejects (probation, a large jump not yet confirmed).  ``report_block(now)``
    builds the RR block and starts a new reporting interval.
    """

    ssrc: int
    clock_rate: int = 8000
    max_seq: int = 0
    cycles: int = 0
    base_seq: int = 0
    bad_seq: int = RTP_SEQ_MOD + 1
    probation: int = MIN_SEQUENTIAL
    received: int = 0
    expected_prior: int = 0
    received_prior: int = 0
    transit: float | None = None
    jitter: float = 0.0  # in timestamp units, the A.8 running estimate
    last_sr: int = 0  # middle 32 bits of the last SR's NTP time
    last_sr_at: float | None = None  # our clock when it arrived, seconds
    started: bool = False

    def _init_seq(self, seq: int) -> None:
        self.base_seq = self.max_seq = seq
        self.bad_seq = RTP_SEQ_MOD + 1
        self.cycles = self.received = self.received_prior = self.expected_prior = 0

    def update(self, seq: int, timestamp: int, arrival: float) -> bool:
        max_seq = self.max_seq
        if not self.probation and self.started and 0 < (seq - max_seq) % RTP_SEQ_MOD < MAX_DROPOUT:
            # the common case, inline (once per packet per call): the next packet, or a small gap
            if seq < max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
            self.received += 1
            # _update_jitter, inline for the same reason
            transit = arrival - timestamp
            d = abs(transit - self.transit) if self.transit is not None else 1 << 30
            if d < 1 << 30:
                self.jitter += (d - self.jitter) / 16
            self.transit = transit
            return True
        if not self._update_seq(seq):
            return False
        self._update_jitter(timestamp, arrival)
        return True

    def _update_seq(self, seq: int) -> bool:
        if not self.started:  # A.1: the first packet starts probation
            self.started = True
            self._init_seq(seq)
            self.max_seq = (seq - 1) % RTP_SEQ_MOD
            self.probation = MIN_SEQUENTIAL
        udelta = (seq - self.max_seq) % RTP_SEQ_MOD
        if self.probation:
            if seq == (self.max_seq + 1) % RTP_SEQ_MOD:
                self.probation -= 1
                self.max_seq = seq
                if self.probation == 0:
                    self._init_seq(seq)
                    self.received += 1
                    return True
            else:
                self.probation = MIN_SEQUENTIAL - 1
                self.max_seq = seq
            return False
        if udelta < MAX_DROPOUT:
            if seq < self.max_seq:
                self.cycles += RTP_SEQ_MOD
            self.max_seq = seq
        elif udelta <= RTP_SEQ_MOD - MAX_MISORDER:
            if seq == self.bad_seq:
                self._init_seq(seq)  # two sequential packets: the source restarted
            else:
                self.bad_seq = (seq + 1) % RTP_SEQ_MOD
                return False
        # else: a duplicate or reordered packet, counted as received
        self.received += 1
        return True

    def _update_jitter(self, timestamp: int, arrival: float) -> None:
        transit = arrival - timestamp
        if self.transit is not None:
            d = abs(transit - self.transit)
            if d < 1 << 30:  # ignore timestamp wraps and jumps
                self.jitter += (d - self.jitter) / 16
        self.transit = transit

    @property
    def extended_max(self) -> int:
        return self.cycles + self.max_seq

    @property
    def expected(self) -> int:
        return self.extended_max - self.base_seq + 1 if self.received else 0

    @property
    def lost(self) -> int:
        return self.expected - self.received

    @property
    def jitter_ms(self) -> float:
        return self.jitter * 1000.0 / self.clock_rate

    def on_sender_report(self, sr: SenderReport, now: float) -> None:
        self.last_sr = ntp_middle(sr.ntp_timestamp)
        self.last_sr_at = now

    def report_block(self, now: float) -> ReportBlock:
        expected_interval = self.expected - self.expected_prior
        received_interval = self.received - self.received_prior
        self.expected_prior, self.received_prior = self.expected, self.received
        lost_interval = expected_interval - received_interval
        fraction = (
            0
            if expected_interval <= 0 or lost_interval <= 0
            else (lost_interval << 8) // expected_interval
        )
        dlsr = 0 if self.last_sr_at is None else int((now - self.last_sr_at) * 65536)
        return ReportBlock(
            ssrc=self.ssrc,
            fraction_lost=min(fraction, 255),
            cumulative_lost=self.lost,
            highest_sequence=self.extended_max & 0xFFFFFFFF,
            jitter=int(self.jitter),
            lsr=self.last_sr,
            dlsr=dlsr & 0xFFFFFFFF,
        )
