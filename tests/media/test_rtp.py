"""RTP/RTCP packets on real captures, their errors, and RFC 3550 reception statistics."""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.media import g711
from ivr.media.rtp import (
    Bye,
    ReceiverReport,
    ReportBlock,
    RtcpPacket,
    RtcpUnknown,
    RtpError,
    RtpPacket,
    SdesChunk,
    SenderReport,
    SourceDescription,
    SourceStats,
    is_rtcp,
    ntp_middle,
    ntp_timestamp,
    parse_rtcp,
    rtcp_bytes,
)
from tests.media.captures import DATA, capture

CAPTURES = sorted(p.stem for p in DATA.glob("*.bin") if not p.stem.endswith("_rtcp"))


def test_captures_are_present() -> None:
    assert len(CAPTURES) == 13  # sipp's 12 DTMF keys and its PCMA speech
    assert "g711a" in CAPTURES and (DATA / "baresip_rtcp.bin").exists()


@pytest.mark.parametrize("name", CAPTURES)
def test_every_captured_packet_round_trips(name: str) -> None:
    for _, data in capture(name):
        packet = RtpPacket.parse(data)
        assert bytes(packet) == data


def test_dtmf_capture_header_fields() -> None:
    first = RtpPacket.parse(capture("dtmf_2833_5")[0][1])
    assert (first.payload_type, first.marker, first.sequence, first.timestamp) == (
        101,
        True,
        8155,
        43200,
    )
    assert first.ssrc == 0x0E05384E
    assert first.payload == bytes.fromhex("050a0000")


def test_g711a_capture_decodes_to_audio_not_silence() -> None:
    packets = [RtpPacket.parse(d) for _, d in capture("g711a")]
    assert {p.payload_type for p in packets} == {g711.PCMA}
    assert all(len(p.payload) == 240 for p in packets)  # 30 ms packets
    seqs = [p.sequence for p in packets]
    assert all((b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False))
    pcm = np.concatenate([g711.decode(p.payload, g711.PCMA) for p in packets]).astype(np.float64)
    rms_per_frame = np.sqrt(np.mean(pcm.reshape(-1, 240) ** 2, axis=1))
    assert np.sqrt(np.mean(pcm**2)) > 300  # speech level, not codec silence (|x| <= 8)
    assert np.count_nonzero(rms_per_frame > 100) > len(packets) // 3


def test_packet_with_csrc_extension_and_padding_round_trips() -> None:
    packet = RtpPacket(
        payload_type=0,
        sequence=65535,
        timestamp=0xFFFFFFFF,
        ssrc=0x12345678,
        payload=b"\xff" * 160,
        marker=True,
        csrc=(1, 2, 3),
        padding=4,
        extension=True,
        extension_profile=0xBEDE,
        extension_data=b"\x10\xaa\x00\x00",
    )
    data = bytes(packet)
    assert len(data) == 12 + 12 + 8 + 160 + 4
    assert data[0] == 0x80 | 0x20 | 0x10 | 3
    assert data[-1] == 4
    assert RtpPacket.parse(data) == packet


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\x00\x00", "RTP packet too short: 3 bytes, the header needs 12"),
        (b"\x40" + bytes(11), "RTP version 1, expected 2"),
        (b"\x82" + bytes(15), "RTP packet truncated in its CSRC list (2 CSRCs, 16 bytes)"),
        (b"\x90" + bytes(13), "RTP packet truncated in its header extension"),
        (
            b"\x90" + bytes(11) + b"\x00\x00\x00\x02" + bytes(4),
            "RTP header extension of 8 bytes overruns the packet",
        ),
        (b"\xa0" + bytes(11) + b"\x00", "RTP padding count 0 is invalid for a 13-byte packet"),
        (b"\xa0" + bytes(11) + b"\x0e", "RTP padding count 14 is invalid for a 13-byte packet"),
    ],
)
def test_invalid_rtp_packets_raise_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as info:
        RtpPacket.parse(data)
    assert str(info.value) == message


@settings(deadline=None)  # timing is not under test; a loaded CI machine must not fail it
@given(st.binary(max_size=64))
def test_any_bytes_parse_or_raise_rtp_error(data: bytes) -> None:
    try:
        packet = RtpPacket.parse(data)
    except RtpError:
        return
    assert bytes(packet)[:12] == data[:12]


@settings(deadline=None)  # timing is not under test; a loaded CI machine must not fail it
@given(st.binary(max_size=96))
def test_any_bytes_parse_as_rtcp_or_raise_rtp_error(data: bytes) -> None:
    try:
        parse_rtcp(data)
    except RtpError:
        pass


def test_is_rtcp_tells_multiplexed_rtcp_from_rtp() -> None:
    assert is_rtcp(bytes(ReceiverReport(1)))
    assert not is_rtcp(capture("g711a")[0][1])
    assert not is_rtcp(capture("dtmf_2833_1")[0][1])


# --------------------------------------------------------------------------- RTCP


def _compound() -> list[RtcpPacket]:
    block = ReportBlock(0xCAFEBABE, 25, -3, 70000, 123, 0x12345678, 65536)
    return [
        SenderReport(0xDEADBEEF, ntp_timestamp(1_700_000_000.5), 160_000, 1000, 160_000, (block,)),
        SourceDescription.cname_of(0xDEADBEEF, "ivr@127.0.0.1"),
    ]


def test_sender_report_and_sdes_compound_round_trip() -> None:
    packets = _compound()
    data = rtcp_bytes(packets)
    assert len(data) == 4 + 24 + 24 + 4 + 4 + 2 + 13 + 1
    assert parse_rtcp(data) == packets
    assert rtcp_bytes(parse_rtcp(data)) == data
    sdes = parse_rtcp(data)[1]
    assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "ivr@127.0.0.1"


def test_report_block_keeps_negative_cumulative_loss() -> None:
    block = ReportBlock.parse(bytes(ReportBlock(7, 0, -3, 1, 2, 3, 4)))
    assert block.cumulative_lost == -3


def test_receiver_report_bye_app_and_padding_round_trip() -> None:
    packets: list[RtcpPacket] = [
        ReceiverReport(42, (ReportBlock(1, 0, 5, 100, 7, 0, 0), ReportBlock(2))),
        Bye((42,), "call ended"),
        RtcpUnknown(204, 1, b"\x00\x00\x00\x2aNAME1234"),
    ]
    data = rtcp_bytes(packets)
    assert parse_rtcp(data) == packets
    padded = bytearray(data + b"\x00\x00\x00\x04")
    last = len(data) - len(bytes(packets[-1]))
    padded[last] |= 0x20
    struct.pack_into("!H", padded, last + 2, (len(bytes(packets[-1])) + 4) // 4 - 1)
    assert parse_rtcp(bytes(padded)) == packets


@pytest.mark.parametrize(
    "data, message",
    [
        (b"\x80\xc8", "RTCP packet too short: 2 bytes"),
        (b"\x40\xc9\x00\x01\x00\x00\x00\x01", "RTCP version 1, expected 2"),
        (b"\x80\xc9\x00\x05\x00\x00\x00\x01", "RTCP packet type 201 claims 20 bytes, only 4 left"),
        (b"\x81\xc9\x00\x01\x00\x00\x00\x01", "RTCP RR truncated: 1 report blocks need 24 bytes"),
        (
            b"\x80\xc8\x00\x01\x00\x00\x00\x01",
            "RTCP SR too short: 4 bytes, the sender info needs 24",
        ),
        (b"\x81\xca\x00\x02\x00\x00\x00\x01\x01\x05ab", "RTCP SDES item 1 overruns the packet"),
    ],
)
def test_invalid_rtcp_raises_with_reason(data: bytes, message: str) -> None:
    with pytest.raises(RtpError) as info:
        parse_rtcp(data)
    assert str(info.value) == message


def _pcap(udp_payload: bytes, port: int = 5005) -> bytes:
    udp = struct.pack("!HHHH", port, port, 8 + len(udp_payload), 0) + udp_payload
    ip = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, 17, 0, b"\x7f\0\0\1", b"\x7f\0\0\1"
    )
    frame = ip + udp
    return (
        struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101)
        + struct.pack("<IIII", 0, 0, len(frame), len(frame))
        + frame
    )


@pytest.mark.skipif(shutil.which("tshark") is None, reason="tshark not installed")
def test_wireshark_dissects_our_compound_rtcp(tmp_path: Path) -> None:
    """An independent dissector reads the same fields we wrote."""
    path = tmp_path / "rtcp.pcap"
    path.write_bytes(_pcap(rtcp_bytes(_compound())))
    fields = ["rtcp.senderssrc", "rtcp.timestamp.rtp", "rtcp.sender.packetcount", "rtcp.ssrc.cum_nr",
              "rtcp.ssrc.jitter", "rtcp.sdes.text"]  # fmt: skip
    out = subprocess.run(
        ["tshark", "-r", str(path), "-d", "udp.port==5005,rtcp", "-T", "fields", "-E", "separator=|"]
        + [a for f in fields for a in ("-e", f)],
        capture_output=True, text=True, timeout=60, check=True,
    )  # fmt: skip
    assert out.stdout.strip().split("|") == [
        "0xdeadbeef",
        "160000",
        "1000",
        "-3",
        "123",
        "ivr@127.0.0.1",
    ]


def test_ntp_conversion() -> None:
    ntp = ntp_timestamp(0.5)
    assert ntp >> 32 == 2208988800 and ntp & 0xFFFFFFFF == 1 << 31
    assert ntp_middle(ntp) == ((2208988800 & 0xFFFF) << 16) | 0x8000


def test_sdes_chunk_with_several_items() -> None:
    sdes = SourceDescription(
        (SdesChunk(1, ((1, b"a@b"), (6, b"ivr"))), SdesChunk(2, ((1, b"abcd"),)))
    )
    assert parse_rtcp(bytes(sdes)) == [sdes]


# --------------------------------------------------------------------------- statistics


def _feed(stats: SourceStats, seqs: list[int], start_ts: int = 1000) -> None:
    for i, seq in enumerate(seqs):
        stats.update(seq % 65536, start_ts + 160 * i, 5000.0 + 160 * i)


def test_stats_count_loss_over_a_sequence_wrap() -> None:
    stats = SourceStats(ssrc=9)
    seqs = [s for s in range(65530, 65546) if s not in (65534, 65540)]
    _feed(stats, seqs)
    block = stats.report_block(now=0.0)
    assert stats.expected == 15  # the first packet is still on probation (A.1)
    assert block.cumulative_lost == 2
    assert block.highest_sequence == 65536 + 9
    assert block.fraction_lost == (2 << 8) // 15
    _feed(stats, list(range(65546, 65556)))
    assert stats.report_block(now=0.0).fraction_lost == 0  # a new interval without loss


def test_stats_duplicates_make_loss_negative() -> None:
    stats = SourceStats(ssrc=9)
    _feed(stats, [1, 2, 3, 3, 4])
    assert stats.lost == -1


def test_stats_jitter_follows_a8() -> None:
    stats = SourceStats(ssrc=1)
    for i in range(200):  # arrivals alternate 0 / +80 units (10 ms) late
        stats.update(i, 160 * i, 160 * i + (80 if i % 2 else 0))
    assert stats.jitter == pytest.approx(80, rel=0.01)
    assert stats.jitter_ms == pytest.approx(10, rel=0.01)
    steady = SourceStats(ssrc=2)
    for i in range(50):
        steady.update(i, 160 * i, 7 + 160 * i)
    assert steady.jitter == 0


def test_stats_accept_a_restarted_source_after_two_sequential_packets() -> None:
    stats = SourceStats(ssrc=1)
    _feed(stats, list(range(100, 110)))
    assert stats.update(40000, 0, 0) is False
    assert stats.update(40001, 160, 160) is True
    assert stats.expected == 1 and stats.lost == 0


def test_report_block_carries_lsr_and_dlsr() -> None:
    stats = SourceStats(ssrc=1)
    _feed(stats, [1, 2, 3])
    sr = SenderReport(1, ntp_timestamp(1000.25), 0, 3, 480)
    stats.on_sender_report(sr, now=50.0)
    block = stats.report_block(now=51.5)
    assert block.lsr == ntp_middle(sr.ntp_timestamp)
    assert block.dlsr == int(1.5 * 65536)


@settings(deadline=None)  # timing is not under test; a loaded CI machine must not fail it
@given(
    st.builds(
        RtpPacket,
        payload_type=st.integers(0, 127),
        sequence=st.integers(0, 0xFFFF),
        timestamp=st.integers(0, 0xFFFFFFFF),
        ssrc=st.integers(0, 0xFFFFFFFF),
        payload=st.binary(max_size=200),
        marker=st.booleans(),
        csrc=st.lists(st.integers(0, 0xFFFFFFFF), max_size=15).map(tuple),
        padding=st.integers(0, 255),
        extension=st.booleans(),
        extension_profile=st.integers(0, 0xFFFF),
        extension_data=st.binary(max_size=12).map(lambda b: b[: len(b) // 4 * 4]),
    )
)
def test_any_packet_round_trips(packet: RtpPacket) -> None:
    if not packet.extension:
        packet = replace(packet, extension_profile=0, extension_data=b"")
    assert RtpPacket.parse(bytes(packet)) == packet


# --------------------------------------------------------------------------- real RTCP (baresip)


def test_baresip_rtcp_round_trips_and_reads_right() -> None:
    """RTCP baresip 1.0.0 sent in a call with a MediaSession (capture_baresip_rtcp.py)."""
    datagrams = [data for _, data in capture("baresip_rtcp")]
    compounds = [parse_rtcp(d) for d in datagrams]
    assert [rtcp_bytes(c) for c in compounds] == datagrams
    app, first, second, bye = compounds
    assert len(app) == 1 and isinstance(app[0], RtcpUnknown)
    assert (app[0].packet_type, app[0].count) == (204, 0) and app[0].body.endswith(b"PINGPONG")
    for compound, packets in ((first, 250), (second, 500)):  # 5 s and 10 s of 20 ms packets
        sr, sdes = compound
        assert isinstance(sr, SenderReport) and sr.packet_count == packets
        assert sr.octet_count == 160 * packets
        assert len(sr.reports) == 1 and sr.reports[0].cumulative_lost == 0
        assert (
            isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == "sip:capture@127.0.0.1"
        )
    assert isinstance(second[0], SenderReport) and second[0].reports[0].lsr != 0  # it echoed our SR
    assert isinstance(bye[0], Bye) and bye[0].reason == "Adjo"
