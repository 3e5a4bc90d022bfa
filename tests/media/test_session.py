"""MediaSession on a real loop and real loopback sockets: two sessions talking, and raw peers."""

from __future__ import annotations

import asyncio
import gc
import random
import socket
import weakref
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar, cast

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.clip import Clip
from ivr.media.clock import MediaClock
from ivr.media.dtmf import DtmfError, DtmfReceiver, TelephoneEvent
from ivr.media.ports import PortPool, PortRangeExhausted
from ivr.media.rtp import (
    Bye,
    ReceiverReport,
    RtpPacket,
    SenderReport,
    SourceDescription,
    parse_rtcp,
    rtcp_bytes,
)
from ivr.media.session import MediaSession

PORTS = (41000, 41999)
T = TypeVar("T")


def run(coro: Awaitable[T]) -> T:
    async def main() -> T:
        return await asyncio.wait_for(coro, 20)

    return asyncio.run(main())


async def until(
    predicate: Callable[[], bool], clock: MediaClock, what: str, ticks: int = 250
) -> None:
    """Wait, tick by tick, until ``predicate`` holds; fail after ``ticks`` ticks (5 s)."""
    start = clock.ticks
    while not predicate():
        if clock.ticks - start > ticks:
            raise AssertionError(f"timed out waiting for {what}")
        await next_tick(clock)


async def next_tick(clock: MediaClock, count: int = 1) -> None:
    target = clock.ticks + count
    while clock.ticks < target:
        await asyncio.sleep(clock.interval / 4)


class Peer(asyncio.DatagramProtocol):
    """A raw UDP endpoint that records what it receives."""

    def __init__(self) -> None:
        self.received: list[tuple[bytes, tuple[str, int]]] = []
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.DatagramTransport, transport)

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        self.received.append((data, addr))

    @property
    def port(self) -> int:
        assert self.transport is not None
        port: int = self.transport.get_extra_info("sockname")[1]
        return port

    def send(self, data: bytes, addr: tuple[str, int]) -> None:
        assert self.transport is not None
        self.transport.sendto(data, addr)

    def rtp(self) -> list[RtpPacket]:
        return [RtpPacket.parse(d) for d, _ in self.received]


async def peer(host: str = "127.0.0.1", port: int = 0) -> Peer:
    loop = asyncio.get_running_loop()
    _, protocol = await loop.create_datagram_endpoint(Peer, local_addr=(host, port))
    return protocol


async def pair(
    clock: MediaClock, *, dtmf_pt: int | None = 101, pt: int = 0
) -> tuple[MediaSession, MediaSession]:
    a = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
    b = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
    a.configure(
        remote=("127.0.0.1", b.local_port), payload_type=pt, dtmf_pt=dtmf_pt, direction="sendrecv"
    )
    b.configure(
        remote=("127.0.0.1", a.local_port), payload_type=pt, dtmf_pt=dtmf_pt, direction="sendrecv"
    )
    return a, b


def with_clock(test: Callable[[MediaClock], Awaitable[Any]]) -> Any:
    async def main() -> Any:
        clock = MediaClock(asyncio.get_running_loop())
        clock.start()
        try:
            return await test(clock)
        finally:
            clock.stop()

    return run(main())


def dominant_hz(pcm: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(pcm.astype(np.float64)))
    return float(np.argmax(spectrum) * 8000 / len(pcm))


# --------------------------------------------------------------------------- audio and prompts


@pytest.mark.parametrize("pt", [g711.PCMU, g711.PCMA])
def test_two_sessions_exchange_audio_both_ways(pt: int) -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock, pt=pt)
        heard_a: list[np.ndarray] = []
        heard_b: list[np.ndarray] = []
        a.on_audio, b.on_audio = heard_a.append, heard_b.append
        done: list[tuple[str, int]] = []
        a.on_prompt_done = lambda pid: done.append(("a", pid))
        b.on_prompt_done = lambda pid: done.append(("b", pid))
        a.play(Clip.tone(1000, 0.4), prompt_id=1)
        b.play(Clip.tone(500, 0.4), prompt_id=2)
        await until(lambda: len(done) == 2, clock, "both prompts to finish")
        await next_tick(clock, 2)
        assert sorted(done) == [("a", 1), ("b", 2)]
        for heard, hz in ((heard_b, 1000), (heard_a, 500)):
            pcm = np.concatenate(heard)
            loud = [f for f in heard if np.abs(f.astype(np.int32)).max() > 3000]
            assert len(loud) == 20  # 0.4 s of tone in 20 ms frames, none lost or repeated
            assert dominant_hz(np.concatenate(loud)) == pytest.approx(hz, abs=10)
            assert pcm.dtype == np.int16
        assert a.stats["packets_received"] >= 20 and a.stats["lost"] == 0
        a.close()
        b.close()

    with_clock(body)


def test_rtp_headers_silence_and_timestamps() -> None:
    async def body(clock: MediaClock) -> None:
        p = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.configure(remote=("127.0.0.1", p.port), payload_type=0, dtmf_pt=101, direction="sendrecv")
        await until(lambda: len(p.received) >= 10, clock, "ten packets")
        packets = p.rtp()
        assert all(addr == ("127.0.0.1", s.local_port) for _, addr in p.received)  # symmetric RTP
        assert {(x.payload_type, x.ssrc, len(x.payload)) for x in packets} == {(0, s.ssrc, 160)}
        assert packets[0].marker and not any(x.marker for x in packets[1:])
        assert all(x.payload == b"\xff" * 160 for x in packets)  # PCMU silence while idle
        for prev, cur in zip(packets, packets[1:], strict=False):
            assert (cur.sequence - prev.sequence) % 65536 == 1
            assert (cur.timestamp - prev.timestamp) % 2**32 % 160 == 0
            assert (cur.timestamp - prev.timestamp) % 2**32 >= 160
        assert s.local_port % 2 == 0
        s.close()

    with_clock(body)


def test_codec_and_ptime_change_on_reinvite() -> None:
    async def body(clock: MediaClock) -> None:
        p = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        remote = ("127.0.0.1", p.port)
        s.configure(remote=remote, payload_type=0, dtmf_pt=None, direction="sendrecv")
        await until(lambda: len(p.received) >= 3, clock, "PCMU packets")
        s.configure(remote=remote, payload_type=8, dtmf_pt=None, direction="sendrecv", ptime=40)
        switched = len(p.received)
        await until(lambda: len(p.received) >= switched + 6, clock, "PCMA packets")
        s.configure(remote=remote, payload_type=8, dtmf_pt=None, direction="sendrecv", ptime=30)
        odd = len(p.received)
        await until(lambda: len(p.received) >= odd + 3, clock, "20 ms packets again")
        packets = p.rtp()
        pcmu, pcma, last = packets[:switched], packets[switched + 1 : odd], packets[odd + 1 :]
        assert {(x.payload_type, x.payload) for x in pcmu} == {(0, b"\xff" * 160)}
        assert {(x.payload_type, x.payload) for x in pcma} == {(8, b"\xd5" * 320)}  # PCMA silence
        assert {(x.payload_type, len(x.payload)) for x in last} == {
            (8, 160)
        }  # ptime 30: we send 20
        assert len({x.ssrc for x in packets}) == 1
        for a, b in zip(packets, packets[1:], strict=False):
            assert (b.sequence - a.sequence) % 65536 == 1  # one stream throughout
            step = (b.timestamp - a.timestamp) % 2**32
            assert step % 160 == 0 and step >= 160  # on the tick grid (more if ticks were skipped)
        assert all(
            (b.timestamp - a.timestamp) % 2**32 >= 320 for a, b in zip(pcma, pcma[1:], strict=False)
        )
        s.close()

    with_clock(body)


def test_shared_player_is_advanced_by_the_clock_and_released_when_stopped() -> None:
    class Player:
        def __init__(self) -> None:
            self.position = 0

        def advance(self, tick_no: int) -> None:
            self.position += 1

        def frame(self, payload_type: int) -> bytes:
            return bytes([self.position % 256]) * 160

    async def body(clock: MediaClock) -> None:
        p = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.configure(
            remote=("127.0.0.1", p.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        player = Player()
        s.play(player, prompt_id=9)
        await until(lambda: player.position >= 10, clock, "the player to advance")
        s.stop_prompts()
        moved_to = player.position
        await next_tick(clock, 3)
        assert player.position == moved_to  # no listener left: the clock stopped advancing it
        payloads = [x.payload[0] for x in p.rtp()]
        assert len(set(payloads)) >= 5  # frames followed the shared position
        s.close()

    with_clock(body)


class _ManualLoop:
    """The clock's loop for tests that run its ticks by hand (the sessions still use the real one)."""

    def __init__(self) -> None:
        self.now = 1000.0
        self.due: list[Callable[[], object]] = []

    def time(self) -> float:
        return self.now

    def call_at(self, when: float, callback: Callable[[], object]) -> Any:
        self.now = max(self.now, when)
        self.due.append(callback)
        return asyncio.get_running_loop().call_later(3600, lambda: None)  # a cancellable handle

    def tick(self) -> None:
        self.due.pop(0)()


def test_listeners_of_a_shared_player_hear_one_frame_per_tick_asked_once_per_codec() -> None:
    class Player:
        def __init__(self) -> None:
            self.tick = -1
            self.asked: list[tuple[int, int]] = []

        def advance(self, tick_no: int) -> None:
            self.tick = tick_no

        def frame(self, payload_type: int) -> bytes:
            self.asked.append((self.tick, payload_type))
            return bytes([self.tick % 128 + payload_type]) * 160

    async def body() -> None:
        manual = _ManualLoop()
        clock = MediaClock(manual)
        player = Player()
        listeners = []
        for pt in (g711.PCMU, g711.PCMU, g711.PCMA):
            ear = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            ear.bind(("127.0.0.1", 0))
            ear.settimeout(5)
            s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
            s.configure(remote=ear.getsockname(), payload_type=pt, dtmf_pt=None, direction="sendrecv")
            s.play(player, prompt_id=1)
            listeners.append((s, ear, pt))
        for _ in range(4):
            manual.tick()
        # asked once per tick and codec, however many calls listen
        assert player.asked == [(t, pt) for t in range(4) for pt in (g711.PCMU, g711.PCMA)]
        for s, ear, pt in listeners:
            heard = [RtpPacket.parse(ear.recv(2048)) for _ in range(4)]
            assert [p.payload for p in heard] == [bytes([t + pt]) * 160 for t in range(4)]
            assert [p.payload_type for p in heard] == [pt] * 4
            s.close()
            ear.close()
        clock.stop()
        # the frame cache keeps no player alive once nobody plays it
        gone = weakref.ref(player)
        del player, listeners, s
        gc.collect()
        assert gone() is None

    run(body())


def test_play_rejects_what_it_cannot_play() -> None:
    async def body(clock: MediaClock) -> None:
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        with pytest.raises(TypeError, match="cannot play 'hello.wav': expected a Clip"):
            s.play("hello.wav", prompt_id=1)  # type: ignore[arg-type]
        with pytest.raises(DtmfError, match="not a DTMF key: 'x'"):
            s.send_dtmf("x")
        with pytest.raises(ValueError, match="direction 'hold' is not one of sendrecv"):
            s.configure(remote=None, payload_type=0, dtmf_pt=None, direction="hold")
        with pytest.raises(ValueError, match="payload type 18 is not G.711"):
            s.configure(remote=None, payload_type=18, dtmf_pt=None, direction="sendrecv")
        with pytest.raises(
            ValueError, match="remote media host 'pbx.example' is not an IP address"
        ):
            s.configure(
                remote=("pbx.example", 4000), payload_type=0, dtmf_pt=None, direction="sendrecv"
            )
        s.close()

    with_clock(body)


# --------------------------------------------------------------------------- DTMF


def test_rfc4733_dtmf_both_ways_once_each() -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock)
        keys_a: list[str] = []
        keys_b: list[str] = []
        a.on_dtmf, b.on_dtmf = keys_a.append, keys_b.append
        a.send_dtmf("5")
        a.send_dtmf("5")
        b.send_dtmf("#")
        await until(lambda: len(keys_b) == 2 and len(keys_a) == 1, clock, "the keys")
        await next_tick(clock, 10)  # end packets and any duplicate would have arrived by now
        assert keys_b == ["5", "5"] and keys_a == ["#"]
        a.close()
        b.close()

    with_clock(body)


def test_rfc4733_packets_on_the_wire() -> None:
    async def body(clock: MediaClock) -> None:
        p = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.configure(remote=("127.0.0.1", p.port), payload_type=0, dtmf_pt=96, direction="sendrecv")
        await until(lambda: len(p.received) >= 2, clock, "audio")
        s.send_dtmf("7")
        await until(lambda: sum(x.payload_type == 96 for x in p.rtp()) >= 7, clock, "the event")
        await next_tick(clock, 2)
        packets = p.rtp()
        events = [x for x in packets if x.payload_type == 96]
        assert len(events) == 7
        assert events[0].marker and len({x.timestamp for x in events}) == 1
        assert [TelephoneEvent.parse(x.payload).end for x in events] == [False] * 4 + [True] * 3
        seqs = [x.sequence for x in packets]
        assert all(
            (b - a) % 65536 == 1 for a, b in zip(seqs, seqs[1:], strict=False)
        )  # one sequence space
        receiver = DtmfReceiver()
        assert [d for x in packets if (d := receiver.feed(x, 96))] == ["7"]
        after = packets[packets.index(events[-1]) + 1]
        assert after.payload_type == 0 and after.timestamp > events[0].timestamp
        s.close()

    with_clock(body)


def test_inband_dtmf_when_no_telephone_event_is_negotiated() -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock, dtmf_pt=None)
        keys: list[str] = []
        b.on_dtmf = keys.append
        b.enable_inband_dtmf(True)
        for key in "19#":
            a.send_dtmf(key)
        await until(lambda: len(keys) == 3, clock, "three in-band keys")
        await next_tick(clock, 10)
        assert keys == ["1", "9", "#"]
        a.close()
        b.close()
        gone = weakref.ref(b)
        del b
        await next_tick(clock, 1)  # the RTCP transport lets go of its protocol a loop turn later
        assert gone() is None  # no cycle through the in-band bank's listener: freed without gc

    with_clock(body)


def test_duplicate_keys_across_rfc4733_info_and_inband_are_suppressed() -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock)
        keys: list[str] = []
        b.on_dtmf = keys.append
        b.enable_inband_dtmf(True)
        a.send_dtmf("3")
        await until(lambda: keys == ["3"], clock, "the event")
        b.receive_info_key("3")
        assert keys == ["3"]  # the INFO for the same press is absorbed
        b.receive_info_key("4")
        assert keys == ["3", "4"]
        a.close()
        b.close()

    with_clock(body)


def test_a_key_is_reported_and_the_prompt_plays_on_until_told_to_stop() -> None:
    """Barge-in is the flow's decision: media reports the key and keeps playing."""

    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock)
        done: list[int] = []
        a.on_prompt_done = done.append
        keys: list[str] = []
        a.on_dtmf = keys.append
        a.play(Clip.tone(800, 5.0), prompt_id=1, barge_in=True)
        b.send_dtmf("1")
        await until(lambda: bool(keys), clock, "the key")
        assert a.playing == 1
        assert done == []
        a.close()
        b.close()

    with_clock(body)


def test_stopped_prompts_end_at_the_next_frame_and_are_reported_done() -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock)
        done: list[int] = []
        a.on_prompt_done = done.append
        heard: list[tuple[int, np.ndarray]] = []  # (prompts stopped when heard, pcm)
        stopped = [0]
        b.on_audio = lambda pcm: heard.append((stopped[0], pcm))
        a.play(Clip.tone(800, 5.0), prompt_id=1, barge_in=True)
        a.play(Clip.tone(400, 5.0), prompt_id=2, barge_in=True)
        await until(lambda: len(heard) >= 10, clock, "the prompt")
        a.stop_prompts()
        stopped[0] = 1
        assert a.playing is None  # both barge-in prompts dropped at once
        await next_tick(clock, 5)
        after = [pcm for n, pcm in heard if n == 1]
        assert len(after) >= 4
        # at most the frame already in flight when they were stopped, then silence
        assert all(np.abs(pcm.astype(np.int32)).max() <= 8 for pcm in after[1:])
        assert done == [1, 2]  # whoever started them learns they are over
        a.close()
        b.close()

    with_clock(body)


def test_non_barge_in_prompt_survives_stopping_the_barge_in_ones() -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock)
        done: list[int] = []
        a.on_prompt_done = done.append
        a.play(Clip.tone(800, 5.0), prompt_id=1, barge_in=False)
        a.play(Clip.tone(400, 5.0), prompt_id=2, barge_in=True)
        a.stop_prompts(only_barge_in=True)
        assert a.playing == 1
        a.stop_prompts(only_barge_in=False)
        assert a.playing is None
        await next_tick(clock, 1)
        assert done == [2, 1]
        a.close()
        b.close()

    with_clock(body)


# --------------------------------------------------------------------------- hold, timeout, latching, RTCP


def test_hold_stops_sending_and_resume_continues_the_timeline() -> None:
    async def body(clock: MediaClock) -> None:
        p = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        remote = ("127.0.0.1", p.port)
        s.configure(remote=remote, payload_type=0, dtmf_pt=101, direction="sendrecv")
        await until(lambda: len(p.received) >= 3, clock, "audio")
        s.configure(
            remote=remote, payload_type=0, dtmf_pt=101, direction="recvonly"
        )  # peer holds us
        await next_tick(clock)
        held_at = len(p.received)
        await next_tick(clock, 10)
        assert len(p.received) == held_at
        s.configure(
            remote=("0.0.0.0", p.port), payload_type=0, dtmf_pt=101, direction="sendrecv"
        )  # old style
        await next_tick(clock, 5)
        assert len(p.received) == held_at
        s.configure(remote=remote, payload_type=0, dtmf_pt=101, direction="sendrecv")
        await until(lambda: len(p.received) >= held_at + 3, clock, "audio after resume")
        packets = p.rtp()
        before, after = packets[held_at - 1], packets[held_at]
        assert after.marker and (after.sequence - before.sequence) % 65536 == 1
        assert (after.timestamp - before.timestamp) % 2**32 >= 160 * 15  # time kept running
        s.close()

    with_clock(body)


def test_media_timeout_fires_once_without_rtp_or_rtcp() -> None:
    async def body(clock: MediaClock) -> None:
        silent = await peer()
        s = await MediaSession.open(
            host="127.0.0.1", port_range=PORTS, clock=clock, media_timeout=0.3
        )
        loop = asyncio.get_running_loop()
        fired = loop.create_future()
        count: list[float] = []

        def timed_out() -> None:
            count.append(loop.time())
            if not fired.done():
                fired.set_result(loop.time())

        s.on_timeout = timed_out
        s.configure(
            remote=("127.0.0.1", silent.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        start = loop.time()
        at = await asyncio.wait_for(fired, 5)
        assert at - start >= 0.3  # not before the timeout
        await next_tick(clock, 5)
        assert len(count) == 1 and s.stats["timed_out"]  # once
        s.close()

    with_clock(body)


def test_media_timeout_is_held_off_by_rtp_and_suspended_on_hold() -> None:
    async def body(clock: MediaClock) -> None:
        a, b = await pair(clock)
        a.media_timeout = b.media_timeout = 0.2
        fired: list[str] = []
        a.on_timeout = lambda: fired.append("a")
        await next_tick(clock, 20)  # 0.4 s of two-way audio
        assert fired == []
        b.configure(
            remote=("127.0.0.1", a.local_port), payload_type=0, dtmf_pt=101, direction="inactive"
        )
        a.configure(
            remote=("127.0.0.1", b.local_port), payload_type=0, dtmf_pt=101, direction="inactive"
        )
        await next_tick(clock, 20)
        assert fired == []
        a.configure(
            remote=("127.0.0.1", b.local_port), payload_type=0, dtmf_pt=101, direction="sendrecv"
        )
        await until(lambda: fired == ["a"], clock, "the timeout after resuming with a silent peer")
        a.close()
        b.close()

    with_clock(body)


def _rtp(seq: int, ssrc: int = 0x1234, pt: int = 0, level: int = 0) -> bytes:
    pcm = (np.sin(np.arange(160) * 2 * np.pi / 8) * level).astype(np.int16)
    return bytes(RtpPacket(pt, seq, seq * 160, ssrc, g711.encode(pcm, pt)))


def test_latches_once_to_a_plausible_source_and_never_again() -> None:
    async def body(clock: MediaClock) -> None:
        nat = await peer()  # the phone's real (NATed) port; its SDP names another port
        intruder = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        heard: list[np.ndarray] = []
        s.on_audio = heard.append
        sdp_port = nat.port + 2 if nat.port + 2 != intruder.port else nat.port + 4
        s.configure(
            remote=("127.0.0.1", sdp_port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        for seq in range(3):
            nat.send(_rtp(seq, level=1000), ("127.0.0.1", s.local_port))
        await until(lambda: len(nat.received) >= 3, clock, "media sent to the latched source")
        assert s.latched and s.remote == ("127.0.0.1", nat.port)
        for seq in range(3, 6):
            intruder.send(_rtp(seq, ssrc=0x666, level=20000), ("127.0.0.1", s.local_port))
        nat.send(_rtp(3, level=1000), ("127.0.0.1", s.local_port))  # sent after the intruder's
        await until(lambda: len(heard) == 4, clock, "the phone's next frame")
        assert s.remote == ("127.0.0.1", nat.port) and intruder.received == []
        assert all(np.abs(f.astype(np.int32)).max() < 2000 for f in heard)  # none of the intruder's
        assert s.stats["packets_received"] == 4
        # on Linux the socket is now connect()ed: the kernel drops the intruder's packets
        assert s.stats["connected"] or s.stats["rejected"] == 3
        s.close()

    with_clock(body)


def test_no_latch_to_an_implausible_address_or_after_the_window() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        other = await peer("127.0.0.2")
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        other.send(_rtp(1), ("127.0.0.1", s.local_port))  # another IP, no signalling from it
        phone.send(_rtp(2), ("127.0.0.1", s.local_port))  # the SDP address itself closes the window
        await until(lambda: s.stats["packets_received"] == 1, clock, "the phone's packet")
        other.send(_rtp(3), ("127.0.0.1", s.local_port))
        sibling = await peer()  # the SDP's IP, another port: plausible, but the window is closed
        sibling.send(_rtp(4), ("127.0.0.1", s.local_port))
        phone.send(_rtp(3), ("127.0.0.1", s.local_port))
        await until(lambda: s.stats["packets_received"] == 2, clock, "the phone's next packet")
        assert not s.latched and s.remote == ("127.0.0.1", phone.port)
        assert s.stats["rejected"] == (1 if s.stats["connected"] else 3)
        # a NATed phone: SDP shows a private address, the INVITE came from 127.0.0.2
        t = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        t.configure(
            remote=("10.1.2.3", 4000),
            payload_type=0,
            dtmf_pt=None,
            direction="sendrecv",
            signalling_host="127.0.0.2",
        )
        junk = await peer("127.0.0.3")
        for seq in range(30):  # junk does not use up the window
            junk.send(_rtp(seq), ("127.0.0.1", t.local_port))
        await until(lambda: t.stats["rejected"] == 30, clock, "the junk")
        other.send(_rtp(1), ("127.0.0.1", t.local_port))
        await until(lambda: t.latched, clock, "the latch to the signalling source")
        assert t.remote == ("127.0.0.2", other.port)
        s.close()
        t.close()

    with_clock(body)


def test_peer_ssrc_change_is_accepted_and_loss_counted() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        heard: list[np.ndarray] = []
        s.on_audio = heard.append
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        for seq in (10, 11, 12, 14, 15, 17):  # 13 and 16 lost
            phone.send(_rtp(seq, ssrc=1, level=500), ("127.0.0.1", s.local_port))
        for seq in (500, 501, 501, 502, 500):  # a new SSRC (a transfer); 501 twice, 500 late
            phone.send(_rtp(seq, ssrc=2, level=500), ("127.0.0.1", s.local_port))
        await until(lambda: s.stats["packets_received"] == 11, clock, "all packets")
        voiced = [f for f in heard if np.abs(f.astype(np.int32)).max() > 100]
        silent = [f for f in heard if np.abs(f.astype(np.int32)).max() == 0]
        assert len(voiced) == 9  # the duplicate and the late packet are not heard twice
        assert [len(f) for f in silent] == [160, 160]  # each lost packet became 20 ms of silence
        assert sum(len(f) for f in heard) == 11 * 160  # so the timeline is intact
        stats = s.stats
        assert stats["lost"] == 2 and stats["late"] == 2
        s.close()

    with_clock(body)


def test_rtcp_alone_keeps_the_call_alive() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        s = await MediaSession.open(
            host="127.0.0.1", port_range=PORTS, clock=clock, media_timeout=0.2
        )
        fired: list[bool] = []
        s.on_timeout = lambda: fired.append(True)
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        rr = bytes(ReceiverReport(0x55))
        for _ in range(6):  # 0.6 s, an RTCP report every 0.1 s and never any RTP
            phone.send(rr, ("127.0.0.1", s.local_port + 1))
            await next_tick(clock, 5)
        assert fired == []
        await until(lambda: fired == [True], clock, "the timeout once RTCP stops")
        s.close()

    with_clock(body)


def test_rtcp_reports_on_the_next_port_and_bye_on_close() -> None:
    async def body(clock: MediaClock) -> None:
        port = free_block(2)  # the phone's RTP port and RTCP on port + 1
        loop = asyncio.get_running_loop()
        _, rtcp_peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", port + 1))
        _, rtp_peer = await loop.create_datagram_endpoint(Peer, local_addr=("127.0.0.1", port))
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.rtcp_interval = 0.1
        s._reporter.next_report = 0.0  # report at the next tick
        s.configure(remote=("127.0.0.1", port), payload_type=0, dtmf_pt=None, direction="sendrecv")
        for seq in range(5):
            rtp_peer.send(_rtp(seq), ("127.0.0.1", s.local_port))
        await until(lambda: len(rtcp_peer.received) >= 2, clock, "two RTCP reports")
        first = parse_rtcp(rtcp_peer.received[-1][0])
        assert rtcp_peer.received[-1][1] == ("127.0.0.1", s.local_port + 1)
        sr, sdes = first[0], first[1]
        assert isinstance(sr, SenderReport) and sr.ssrc == s.ssrc and sr.packet_count > 0
        assert sr.reports and sr.reports[0].ssrc == 0x1234 and sr.reports[0].cumulative_lost == 0
        assert isinstance(sdes, SourceDescription) and sdes.chunks[0].cname == s.cname
        s.close()
        await until(
            lambda: isinstance(parse_rtcp(rtcp_peer.received[-1][0])[-1], Bye), clock, "the BYE"
        )

    with_clock(body)


# --------------------------------------------------------------------------- ports


def free_block(size: int) -> int:
    """An even port starting ``size`` free ports, below Linux's ephemeral range (fixed ports collide)."""
    rng = random.Random()
    for _ in range(100):
        base = rng.randrange(10000, 19000, 2)
        socks = []
        try:
            for port in range(base, base + size):
                sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                socks.append(sock)
                sock.bind(("127.0.0.1", port))
        except OSError:
            continue
        finally:
            for sock in socks:
                sock.close()
        return base
    raise AssertionError("no free block of ports")


def test_port_pool_hands_out_even_pairs_and_runs_out() -> None:
    base = free_block(8)
    pool = PortPool(base - 1, base + 6)  # pairs base, +2, +4 (base+6 has no odd partner in range)
    socks = [pool.bind_pair("127.0.0.1") for _ in range(pool.pairs)]
    ports = sorted(s[0].getsockname()[1] for s in socks)
    assert ports == [base, base + 2, base + 4]
    assert all(b.getsockname()[1] == a.getsockname()[1] + 1 for a, b in socks)
    message = f"all 3 RTP port pairs in {base}-{base + 6} are in use"
    with pytest.raises(PortRangeExhausted, match=message):
        pool.bind_pair("127.0.0.1")
    first = socks[0][0].getsockname()[1]
    socks[0][0].close()
    socks[0][1].close()
    pool.release(first)
    again = pool.bind_pair("127.0.0.1")
    assert again[0].getsockname()[1] == first
    for a, b in [*socks[1:], again]:
        a.close()
        b.close()


def test_port_taken_by_someone_else_is_skipped() -> None:
    base = free_block(4)
    blocker = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    blocker.bind(("127.0.0.1", base + 1))  # the odd half of the first pair
    try:
        pool = PortPool(base, base + 3)
        rtp_sock, rtcp_sock = pool.bind_pair("127.0.0.1")
        assert rtp_sock.getsockname()[1] == base + 2
        rtp_sock.close()
        rtcp_sock.close()
    finally:
        blocker.close()


def test_session_close_frees_its_port() -> None:
    async def body(clock: MediaClock) -> None:
        base = free_block(2)
        s = await MediaSession.open(host="127.0.0.1", port_range=(base, base + 1), clock=clock)
        with pytest.raises(PortRangeExhausted):
            await MediaSession.open(host="127.0.0.1", port_range=(base, base + 1), clock=clock)
        s.close()
        await asyncio.sleep(0)
        t = await MediaSession.open(host="127.0.0.1", port_range=(base, base + 1), clock=clock)
        assert t.local_port == base
        t.close()

    with_clock(body)


def test_a_failing_audio_callback_does_not_cost_the_call_its_media() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        calls: list[int] = []

        def broken(pcm: np.ndarray) -> None:
            calls.append(len(pcm))
            raise RuntimeError("recorder bug")

        s.on_audio = broken
        keys: list[str] = []
        s.on_dtmf = keys.append
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=101, direction="sendrecv"
        )
        for seq in range(5):
            phone.send(_rtp(seq, level=500), ("127.0.0.1", s.local_port))
        event = RtpPacket(
            101, 5, 5 * 160, 0x1234, bytes(TelephoneEvent(9, True, 10, 800)), marker=True
        )
        phone.send(bytes(event), ("127.0.0.1", s.local_port))
        await until(lambda: keys == ["9"], clock, "the key after the failing callbacks")
        assert len(calls) == 5 and s.stats["packets_received"] == 6
        s.close()

    with_clock(body)


def test_reordered_audio_is_put_back_in_order_and_a_lost_packet_is_given_up() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        heard: list[int] = []  # the level of each delivered frame identifies its packet
        s.on_audio = lambda pcm: heard.append(int(np.abs(pcm.astype(np.int32)).max()))
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        level = {seq: 1000 * seq for seq in range(1, 10)}
        for seq in (1, 2, 4, 3, 5):
            phone.send(_rtp(seq, level=level[seq]), ("127.0.0.1", s.local_port))
        await until(lambda: len(heard) == 5, clock, "five frames")
        expected = [
            int(np.abs(g711.decode(_rtp(q, level=level[q])[12:], 0).astype(np.int32)).max())
            for q in range(1, 6)
        ]
        assert heard == expected and s.stats["late"] == 0
        phone.send(
            _rtp(7, level=level[7]), ("127.0.0.1", s.local_port)
        )  # 6 is lost, nothing follows
        await until(lambda: len(heard) == 7, clock, "the held packet after the reorder wait")
        assert heard[5] == 0 and heard[6] > 0  # 20 ms of silence for 6, then 7
        s.close()

    with_clock(body)


def test_reinvite_moves_media_to_a_new_address_after_the_first_was_locked_in() -> None:
    async def body(clock: MediaClock) -> None:
        first, second = await peer(), await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        heard: list[np.ndarray] = []
        s.on_audio = heard.append
        s.configure(
            remote=("127.0.0.1", first.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        first.send(_rtp(1, ssrc=1), ("127.0.0.1", s.local_port))
        await until(lambda: len(heard) == 1 and len(first.received) >= 2, clock, "the first peer")
        locked = s.stats["connected"]
        # a transfer: the re-INVITE's SDP names another media address
        s.configure(
            remote=("127.0.0.1", second.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        second.send(_rtp(1, ssrc=2), ("127.0.0.1", s.local_port))
        await until(lambda: len(heard) == 2, clock, "audio from the new address")
        sent_to_first = len(first.received)
        await until(lambda: len(second.received) >= 3, clock, "media sent to the new address")
        assert len(first.received) <= sent_to_first + 1  # at most one packet already in flight
        assert s.stats["connected"] == locked and not s.latched
        s.close()

    with_clock(body)


# --------------------------------------------------------------------------- the fast paths


def test_a_prompt_goes_on_in_the_new_codec_after_a_reinvite_mid_clip() -> None:
    async def body(clock: MediaClock) -> None:
        p = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        remote = ("127.0.0.1", p.port)
        s.configure(remote=remote, payload_type=0, dtmf_pt=None, direction="sendrecv")
        rng = np.random.default_rng(7)
        clip = Clip(rng.integers(-8000, 8000, 160 * 40).astype(np.int16), "noise")
        done: list[int] = []
        s.on_prompt_done = done.append
        s.play(clip, prompt_id=5)
        await until(lambda: len(p.received) >= 8, clock, "PCMU frames of the clip")
        s.configure(remote=remote, payload_type=8, dtmf_pt=None, direction="sendrecv")
        frames = {
            pt: [clip.encoded(pt)[k * 160 : (k + 1) * 160] for k in range(40)] for pt in (0, 8)
        }

        def in_order() -> list[tuple[int, int]]:
            return [
                (x.payload_type, frames[x.payload_type].index(x.payload))
                for x in p.rtp()
                if x.payload in frames[x.payload_type]
            ]

        await until(lambda: done == [5], clock, "the end of the clip")
        await until(lambda: in_order()[-1][1] == 39, clock, "the last frame at the peer")
        await next_tick(clock, 3)  # a frame sent twice would have arrived by now
        played = in_order()
        # every frame of the clip exactly once, in order, each in the codec of its moment
        assert [k for _, k in played] == list(range(40))
        switch = next(i for i, (pt, _) in enumerate(played) if pt == 8)
        assert 8 <= switch < 40 and {pt for pt, _ in played[switch:]} == {8}
        s.close()

    with_clock(body)


def test_audio_nobody_listens_to_is_counted_not_decoded() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        for seq in range(5):
            phone.send(_rtp(seq, level=500), ("127.0.0.1", s.local_port))
        await until(lambda: s.stats["packets_received"] == 5, clock, "five packets")
        assert s.stats["octets_received"] == 800 and s.stats["lost"] == 0
        heard: list[np.ndarray] = []
        s.on_audio = heard.append  # a recording starts: the next packets are decoded
        for seq in range(5, 8):
            phone.send(_rtp(seq, level=500), ("127.0.0.1", s.local_port))
        await until(lambda: len(heard) == 3, clock, "three decoded frames")
        expected = g711.decode(_rtp(5, level=500)[12:], 0)
        assert all(np.array_equal(pcm, expected) for pcm in heard)
        assert heard[0].dtype == np.int16 and s.stats["late"] == 0
        s.close()

    with_clock(body)


def test_close_stops_reading_at_once_and_frees_the_port() -> None:
    async def body(clock: MediaClock) -> None:
        from ivr.media.reactor import get_reactor

        reactor = get_reactor()
        base = free_block(2)
        s = await MediaSession.open(host="127.0.0.1", port_range=(base, base + 1), clock=clock)
        watched = len(reactor)
        s.close()
        assert len(reactor) == watched - 2  # RTP and RTCP: the descriptors may be reused from now on
        t = await MediaSession.open(host="127.0.0.1", port_range=(base, base + 1), clock=clock)
        assert t.local_port == base
        t.close()
        s.close()  # idempotent
        assert len(reactor) == watched - 2

    with_clock(body)


def test_rtcp_multiplexed_on_the_rtp_port_is_taken_as_rtcp() -> None:
    async def body(clock: MediaClock) -> None:
        phone = await peer()
        s = await MediaSession.open(host="127.0.0.1", port_range=PORTS, clock=clock)
        s.configure(
            remote=("127.0.0.1", phone.port), payload_type=0, dtmf_pt=None, direction="sendrecv"
        )
        for seq in range(3):
            phone.send(_rtp(seq), ("127.0.0.1", s.local_port))
        await until(lambda: s.stats["packets_received"] == 3, clock, "three RTP packets")
        assert s.stats["connected"]  # the reactor now reads with recv() on the connected socket
        report = SenderReport(0x1234, 0x0123456789ABCDEF, 480, 3, 480)  # RFC 5761 on the RTP port
        phone.send(rtcp_bytes([report]), ("127.0.0.1", s.local_port))
        await until(lambda: s._rx is not None and s._rx.last_sr != 0, clock, "the muxed SR")
        assert s._rx is not None and s._rx.last_sr == 0x456789AB  # the middle 32 bits
        stats = s.stats
        assert (stats["packets_received"], stats["invalid"], stats["rejected"]) == (3, 0, 0)
        s.close()

    with_clock(body)
