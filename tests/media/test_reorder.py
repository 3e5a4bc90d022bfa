"""ReorderBuffer on sipp's real PCMA capture: order restored, gaps filled, late packets dropped."""

from __future__ import annotations

from dataclasses import replace

import pytest

from ivr.media import g711
from ivr.media.reorder import MAX_GAP_FILL, REORDER_PACKETS, REORDER_WAIT, ReorderBuffer
from ivr.media.rtp import RtpError, RtpPacket
from tests.media.captures import capture

PACKETS = [data for _, data in capture("g711a")]  # PCMA, 30 ms (240 samples), in sequence
SAMPLES = 240


class Heard:
    """What the buffer handed on: ("audio", payload) per packet, ("silence", samples) per gap."""

    def __init__(self) -> None:
        self.log: list[tuple[str, bytes | int]] = []

    def deliver(self, pt: int, payload: bytes, start: int) -> None:
        assert pt == g711.PCMA
        self.log.append(("audio", bytes(payload[start:])))

    def silence(self, samples: int) -> None:
        self.log.append(("silence", samples))


def _push(buffer: ReorderBuffer, data: bytes, now: float = 0.0) -> bool:
    packet = RtpPacket.parse(data)
    return buffer.push(data, packet.payload_type, packet.sequence, packet.timestamp, now)


def _seqs(indexes: list[int]) -> list[tuple[str, bytes | int]]:
    """What handing on these packets of the capture looks like."""
    return [("audio", PACKETS[i][12:]) for i in indexes]


def make() -> tuple[ReorderBuffer, Heard]:
    heard = Heard()
    return ReorderBuffer(heard.deliver, heard.silence), heard


def test_packets_in_order_are_handed_on_at_once_unchanged() -> None:
    buffer, heard = make()
    for data in PACKETS:
        assert _push(buffer, data) is False
    assert heard.log == _seqs(list(range(len(PACKETS))))
    assert (buffer.octets, buffer.late, buffer.held) == (SAMPLES * len(PACKETS), 0, {})


def test_two_swapped_packets_are_put_back_in_order() -> None:
    buffer, heard = make()
    for i in (0, 1, 3):
        _push(buffer, PACKETS[i])
    assert heard.log == _seqs([0, 1])  # 3 waits for 2
    assert _push(buffer, PACKETS[2]) is False  # nothing held any more
    _push(buffer, PACKETS[4])
    assert heard.log == _seqs([0, 1, 2, 3, 4]) and buffer.late == 0


def test_a_lost_packet_is_given_up_when_the_window_is_full_and_its_time_is_silence() -> None:
    buffer, heard = make()
    _push(buffer, PACKETS[0])
    held = [_push(buffer, PACKETS[i]) for i in range(2, 2 + REORDER_PACKETS + 1)]
    assert held == [True] * REORDER_PACKETS + [False]  # the third one overflows the window
    assert heard.log == _seqs([0]) + [("silence", SAMPLES)] + _seqs([2, 3, 4])
    _push(buffer, PACKETS[1])  # arrives after all: too late to use
    assert buffer.late == 1 and heard.log[-1] == _seqs([4])[0]


def test_a_gap_is_given_up_after_the_wait_even_if_nothing_follows() -> None:
    buffer, heard = make()
    _push(buffer, PACKETS[0], now=10.0)
    assert _push(buffer, PACKETS[2], now=10.02) is True
    buffer.expire(10.02 + REORDER_WAIT / 2)
    assert heard.log == _seqs([0])
    buffer.expire(10.02 + REORDER_WAIT * 1.5)
    assert heard.log == _seqs([0]) + [("silence", SAMPLES)] + _seqs([2]) and not buffer.held


def test_duplicates_are_dropped_and_counted() -> None:
    buffer, heard = make()
    for i in (0, 1, 1, 0, 3, 3):
        _push(buffer, PACKETS[i])
    assert heard.log == _seqs([0, 1]) and buffer.late == 3  # 1, 0, then 3 while it is held
    assert buffer.octets == 3 * SAMPLES


def test_a_sequence_jump_is_a_restart_not_reordering() -> None:
    buffer, heard = make()
    _push(buffer, PACKETS[0])
    far = RtpPacket.parse(PACKETS[1])
    far = replace(far, sequence=(far.sequence + 1000) & 0xFFFF, timestamp=far.timestamp + 8 * 60_000)
    assert _push(buffer, bytes(far)) is False
    assert [kind for kind, _ in heard.log] == ["audio", "audio"]  # a minute later: no silence
    assert buffer.expected == (far.sequence + 1) & 0xFFFF


def test_a_gap_longer_than_a_second_is_not_filled() -> None:
    buffer, heard = make()
    _push(buffer, PACKETS[0])
    late = RtpPacket.parse(PACKETS[1])
    _push(buffer, bytes(replace(late, timestamp=late.timestamp + MAX_GAP_FILL + 1)))
    _push(buffer, PACKETS[2])  # timestamps now go backwards: not a gap to fill either
    assert [kind for kind, _ in heard.log] == ["audio", "audio", "audio"]


def test_a_new_source_hands_on_what_is_held_and_starts_afresh() -> None:
    buffer, heard = make()
    for i in (0, 2):
        _push(buffer, PACKETS[i])
    buffer.restart()
    assert heard.log == _seqs([0]) + [("silence", SAMPLES)] + _seqs([2])
    _push(buffer, PACKETS[10])  # any number and timestamp: a new stream
    assert heard.log[-1] == _seqs([10])[0]
    assert buffer.expected == (RtpPacket.parse(PACKETS[10]).sequence + 1) & 0xFFFF


def test_a_packet_with_a_header_extension_gives_its_payload() -> None:
    buffer, heard = make()
    _push(buffer, PACKETS[0])
    packet = replace(
        RtpPacket.parse(PACKETS[1]), extension=True, extension_profile=0xBEDE, extension_data=b"\x10\xaa\x00\x00"
    )
    _push(buffer, bytes(packet))
    assert heard.log == _seqs([0, 1])  # the payload alone, after the extension


def test_a_packet_whose_extension_overruns_it_raises() -> None:
    buffer, _ = make()
    _push(buffer, PACKETS[0])
    bad = bytearray(PACKETS[1])
    bad[0] |= 0x10  # claims an extension: its length word is read from the payload
    bad[14:16] = b"\x7f\xff"
    with pytest.raises(RtpError, match="RTP header extension of 131068 bytes overruns the packet"):
        buffer.push(bytes(bad), g711.PCMA, RtpPacket.parse(PACKETS[1]).sequence, 0, 0.0)
