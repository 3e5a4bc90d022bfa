"""One call's media endpoint: RTP/RTCP sockets, prompt queue, DTMF in and out.

A :class:`MediaSession` owns an even RTP port and the RTCP port above it
(:mod:`ivr.media.ports`), and is one stream of the shared
:class:`~ivr.media.clock.MediaClock`: on each 20 ms tick it sends at most one
packet (the next prompt frame, a DTMF event packet, or codec silence) built
into a preallocated buffer.  Received packets are decoded to 8 kHz int16 and
handed to ``on_audio``; keys from RFC 4733, in-band tones or SIP INFO reach
``on_dtmf`` once.  Media never decides barge-in: the flow stops prompts
(``stop_prompts``), and every prompt that ends, played out or stopped, is
reported to ``on_prompt_done``.

Sending rules
  * Random SSRC, initial sequence number and timestamp (RFC 3550 5.1); the
    timestamp follows the clock's tick number, so it keeps advancing through
    silence, hold and clock stalls; the first packet after a gap has the marker.
  * While the call is up and our direction allows sending, an idle session
    sends codec silence (keeps NAT bindings open; what most PBXs do).  On hold
    (our direction ``recvonly``/``inactive``, or no/0.0.0.0 remote) it sends
    nothing; prompts still advance in real time.
  * RTCP SR (RR when we sent nothing) with SDES CNAME every ~5 s (randomised
    0.5-1.5x, RFC 3550 6.2) to the remote RTP port + 1; BYE on close.

Symmetric RTP latching (RFC 4961 spirit; hijack-safe)
  Packets are accepted only from the current remote.  If the first packet
  comes from a different address, the session moves its remote there ONCE,
  and only while the latch window is open: until the first accepted packet,
  and at most ``LATCH_SECONDS`` after the remote was configured.  The new
  source is plausible only if its IP equals the SDP address's IP (a NAT
  rewrote the port) or the IP the signalling came from
  (``configure(signalling_host=...)``: a NATed phone whose SDP shows its
  private address).  A first packet from the SDP address itself closes the
  window; implausible packets are dropped without closing it (so junk cannot
  deny a real phone its latch).  No later re-latching: only a new SDP
  address (re-INVITE) opens a new window.  Once the window closes, the RTP
  socket is connect()ed to the remote (Linux), so the kernel itself drops
  everyone else's packets and sends are cheaper.

Receiving
  RTP is read through the loop's :class:`~ivr.media.reactor.Reactor` (one
  epoll wake-up serves many calls; no asyncio transport per packet); RTCP,
  a few packets a minute, through an ordinary asyncio datagram endpoint.
  Audio (PCMU/PCMA, whatever the negotiated codec: a re-INVITE may switch) is
  put back in sequence order through a 2-packet / 60 ms reorder window,
  duplicates and too-late packets are dropped, and the time of lost packets
  (or of an RFC 4733 event sent instead of audio) is delivered as silence, so
  recordings and recognisers stay on the caller's timeline; with no
  ``on_audio`` and no in-band detector nothing is decoded.  A new SSRC from
  the peer is accepted.  Callbacks run on the event loop; one that raises is
  logged and the call keeps its media.

Media timeout
  ``on_timeout`` fires once when neither RTP nor RTCP arrived for
  ``media_timeout`` seconds while our direction is ``sendrecv`` (on hold the
  peer may legitimately send nothing; session timers catch dead dialogs).
"""

from __future__ import annotations

import asyncio
import ctypes
import ipaddress
import logging
import random
import socket
import struct
import sys
import time
import weakref
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, Self

import numpy as np
import numpy.typing as npt

from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES, Clip
from ivr.media.clock import MediaClock
from ivr.media.dtmf import DtmfReceiver, DtmfSender, GoertzelDetector, dtmf_tone, event_code
from ivr.media.ports import PortPool, pool_for
from ivr.media.reactor import Reactor, get_reactor
from ivr.media.rtp import (
    RTP_HEADER,
    Bye,
    ReceiverReport,
    RtcpPacket,
    RtpError,
    RtpPacket,
    SenderReport,
    SourceDescription,
    SourceStats,
    ntp_timestamp,
    parse_rtcp,
    rtcp_bytes,
)

log = logging.getLogger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
LATCH_SECONDS = 10.0
RTCP_INTERVAL = 5.0
DTMF_GAP_TICKS = 3  # audio frames between two sent events (60 ms inter-digit pause)
DUPLICATE_KEY_WINDOW = 0.5  # s: the same key from another source within this is the same press
INBAND_KEY_MS = 100
MAX_GAP_FILL = 8000  # samples: up to 1 s of missing audio is delivered as silence
REORDER_PACKETS = 2  # audio packets held while waiting for a missing one (40 ms)
REORDER_WAIT = 0.06  # s: after this a missing packet is given up even if nothing follows
RECV_SIZE = 4096  # bytes: G.711 at ptime 200 ms is 1612; RTCP compounds are smaller
MAX_REORDER_JUMP = 100  # a sequence jump beyond this is a restart, not reordering
HOUSEKEEPING = 0.1  # s: how often a tick looks at RTCP and media timeout (not every 20 ms)


class SharedPlayer(Protocol):
    """A source shared by many calls (hold music); ``advance`` is driven by the clock."""

    def frame(self, payload_type: int) -> bytes: ...


@dataclass(slots=True)
class _Item:
    source: Any
    prompt_id: int
    barge_in: bool
    clip: Clip | None  # None: a shared player, never done
    position: int = 0  # next frame of the clip
    # the tick's fast path: the clip's encoding in ``pt`` and its frame count (0: a player)
    pt: int = -1
    data: bytes = b""
    frames: int = 0
    shared: _SharedFrames | None = None  # a player the clock advances: one frame per tick


class _SharedFrames:
    """The frames a shared player (hold music) plays during the current tick, per payload type.

    The clock advances a shared source once per tick before any stream reads it, so
    within a tick every listener hears the same frame: it is asked of the player once
    per tick and payload type, not once per held call (four calls deep for hold music).
    It holds no reference to the player (it is the value of a weak-keyed registry).
    """

    __slots__ = ("tick", "frames")

    def __init__(self) -> None:
        self.tick = -1
        self.frames: list[bytes | None] = [None] * 128  # by RTP payload type (7 bits)

    def fetch(self, source: SharedPlayer, pt: int, tick_no: int) -> bytes:
        if tick_no != self.tick:
            self.tick, self.frames = tick_no, [None] * 128
        frame = self.frames[pt] = source.frame(pt)
        return frame


_SHARED: weakref.WeakKeyDictionary[Any, _SharedFrames] = weakref.WeakKeyDictionary()


def _shared_frames(source: SharedPlayer) -> _SharedFrames | None:
    """The per-tick frame cache of a shared player (None if it cannot be a weak key)."""
    try:
        shared = _SHARED.get(source)
        if shared is None:
            shared = _SHARED[source] = _SharedFrames()
    except TypeError:  # not hashable or not weakly referenceable: asked on every tick
        return None
    return shared


class _Endpoint(asyncio.DatagramProtocol):
    def __init__(
        self, receive: Callable[[bytes, tuple[str, int]], None], lost: Callable[[], None]
    ) -> None:
        self.receive = receive
        self.lost = lost
        self.errors = 0

    def datagram_received(self, data: bytes, addr: tuple[str, int]) -> None:
        try:
            self.receive(data, addr)
        except Exception:
            # A failing callback (recorder, recogniser) must not cost the call its media.
            self.errors += 1
            if self.errors <= 5 or self.errors % 1000 == 0:
                log.exception(
                    "media: handling a packet from %s failed (%d so far)", addr, self.errors
                )

    def error_received(self, exc: Exception) -> None:
        # ICMP port unreachable from a peer that went away: the media timeout handles it.
        log.debug("RTP socket error: %s", exc)

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost()


def _noop(*_: object) -> None:
    return None


class MediaSession:
    """One call's RTP endpoint (RFC 3550, RFC 3551 PCMU/PCMA, RFC 4733 events)."""

    # attributes in slots, not an instance dict (seventy-odd would not fit CPython's shared-key
    # dict): the tick's and the receive path's come first, so they share a few cache lines
    __slots__ = (
        "_next_house",
        "_pt",
        "_ts_offset",
        "remote",
        "_sending",
        "_plain",
        "_head",
        "_queue",
        "_marker",
        "_buf",
        "_payload",
        "_seq",
        "_connected",
        "_rtp_sock",
        "_frames_sent",
        "_last_rx",
        "_packets_received",
        "_rx",
        "_dtmf_pt",
        "_receiving",
        "on_audio",
        "_inband",
        "_rx_expected",
        "_octets_received",
        "clock",
        "loop",
        "media_timeout",
        "_pool",
        "_rtcp_sock",
        "local_host",
        "local_port",
        "on_prompt_done",
        "on_dtmf",
        "on_timeout",
        "_reactor",
        "_rtcp",
        "_closed",
        "ssrc",
        "_ts_base",
        "_tick0",
        "direction",
        "_frames_per_packet",
        "_frame_count",
        "_packet_ts",
        "_digits",
        "_event",
        "_event_start",
        "_dtmf_pause",
        "_inband_frames",
        "_packets_sent",
        "_send_dropped",
        "_send_errors",
        "_octets_sent",
        "_reported_sent",
        "_sdp_remote",
        "_rtcp_remote",
        "_rtcp_latched",
        "_signalling_host",
        "_latch_open",
        "_latch_until",
        "latched",
        "_rx_next_ts",
        "_reorder",
        "_reorder_since",
        "_dtmf_rx",
        "_oob_keys_seen",
        "_last_key",
        "_rejected",
        "_invalid",
        "_late",
        "_lost_before",
        "_timeout_armed",
        "_timed_out",
        "rtcp_interval",
        "_next_rtcp",
        "cname",
        "__weakref__",
    )

    on_prompt_done: Callable[[int], None]
    on_dtmf: Callable[[str], None]
    on_audio: Callable[[npt.NDArray[np.int16]], None] | None
    on_timeout: Callable[[], None]

    def __init__(
        self,
        *,
        clock: MediaClock,
        pool: PortPool,
        rtp_sock: socket.socket,
        rtcp_sock: socket.socket,
        media_timeout: float = 30.0,
    ) -> None:
        self.clock = clock
        self.loop = asyncio.get_running_loop()
        self.media_timeout = media_timeout
        self._pool = pool
        self._rtp_sock, self._rtcp_sock = rtp_sock, rtcp_sock
        self.local_host: str = rtp_sock.getsockname()[0]
        self.local_port: int = rtp_sock.getsockname()[1]
        self.on_prompt_done = _noop
        self.on_dtmf = _noop
        self.on_audio = None
        self.on_timeout = _noop
        self._reactor: Reactor | None = None
        self._rtcp: asyncio.DatagramTransport | None = None
        self._closed = False
        # sending
        self.ssrc = random.getrandbits(32)
        self._seq = random.getrandbits(16)
        self._ts_base = random.getrandbits(32)
        self._tick0: int | None = None
        self._ts_offset: int | None = None  # timestamp of tick 0 (_ts_base - _tick0 * 160)
        self._buf, self._payload = self._packet_buffer(1)
        self._marker = True
        self._pt: int | None = None
        self._dtmf_pt: int | None = None
        self.direction = "inactive"
        self._frames_per_packet = 1
        self._frame_count = 0
        self._packet_ts = 0
        self._queue: deque[_Item] = deque()
        self._head: _Item | None = None  # _queue[0]: the tick reads it without the deque's block
        self._digits: deque[str] = deque()
        self._event: list[tuple[int, RtpPacket]] = []
        self._event_start = 0
        self._dtmf_pause = 0
        self._inband_frames: deque[bytes] = deque()
        # False while a key, its pause, in-band tone frames or ptime > 20 need _special_tick:
        # the tick's fast path then tests one attribute instead of four containers and counters
        self._plain = True
        self._packets_sent = 0  # by _transmit; the tick's fast path counts in _frames_sent
        self._frames_sent = 0  # packets of one 160-byte frame sent by the fast path
        self._send_dropped = 0
        self._send_errors = 0
        self._sending = False
        self._receiving = False
        self._connected = False  # the RTP socket is connect()ed to the remote
        self._octets_sent = 0
        self._reported_sent = 0  # packets sent when the last RTCP report went out
        # destination and latching
        self.remote: tuple[str, int] | None = None  # where we send RTP now
        self._sdp_remote: tuple[str, int] | None = None
        self._rtcp_remote: tuple[str, int] | None = None
        self._rtcp_latched = False
        self._signalling_host: str | None = None
        self._latch_open = False
        self._latch_until = 0.0
        self.latched = False
        # receiving
        self._rx: SourceStats | None = None
        self._rx_expected: int | None = None  # the next audio sequence number to deliver
        self._rx_next_ts: int | None = None  # the timestamp that follows the last delivered audio
        self._reorder: dict[int, tuple[int, int, bytes]] = {}  # seq -> (pt, ts, payload), held
        self._reorder_since = 0.0
        self._dtmf_rx = DtmfReceiver()
        self._inband: GoertzelDetector | None = None
        self._oob_keys_seen = False
        self._last_key: tuple[str, str, float] = ("", "", -1e9)  # digit, source, time
        self._packets_received = 0
        self._octets_received = 0
        self._rejected = 0
        self._invalid = 0
        self._late = 0
        self._lost_before: int = 0  # loss of earlier SSRCs of this call
        self._last_rx = self.loop.time()
        self._timeout_armed = False
        self._timed_out = False
        self.rtcp_interval = RTCP_INTERVAL
        self._next_rtcp = self.loop.time() + RTCP_INTERVAL * random.uniform(0.5, 1.5)
        self._next_house = 0.0  # when on_tick next looks at RTCP and the media timeout
        self.cname = f"ivr-{self.ssrc:08x}@{self.local_host}"

    # ------------------------------------------------------------------ lifecycle

    @classmethod
    async def open(
        cls,
        *,
        host: str,
        port_range: tuple[int, int],
        clock: MediaClock,
        media_timeout: float = 30.0,
    ) -> Self:
        """Bind an even RTP port (and RTCP on port + 1) in ``port_range`` on ``host``."""
        loop = asyncio.get_running_loop()
        pool = pool_for(port_range)
        rtp_sock, rtcp_sock = pool.bind_pair(host)
        session = cls(
            clock=clock,
            pool=pool,
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            media_timeout=media_timeout,
        )
        try:
            rtcp, _ = await loop.create_datagram_endpoint(
                lambda: _Endpoint(session._on_rtcp, _noop), sock=rtcp_sock
            )
            # RTP (50 packets/s) bypasses asyncio's transport: see ivr.media.reactor.
            reactor = get_reactor()
            reactor.add(rtp_sock.fileno(), session._rtp_readable)
        except BaseException:
            rtp_sock.close()
            rtcp_sock.close()
            pool.release(session.local_port)
            raise
        # asyncio reads datagrams into a 256 KiB buffer by default, which costs ten
        # times the system call itself; our packets are small.
        if hasattr(rtcp, "max_size"):
            setattr(rtcp, "max_size", RECV_SIZE)  # noqa: B010
        session._reactor, session._rtcp = reactor, rtcp
        clock.add(session)
        clock.start()  # idempotent: the runner's clock is normally running already
        return session

    def close(self) -> None:
        """Stop sending, say RTCP BYE, free the ports.  Idempotent."""
        if self._closed:
            return
        self._send_rtcp(self.loop.time(), bye=True)
        self._closed = True
        self.clock.remove(self)
        for item in self._queue:
            self._release(item)
        self._queue.clear()
        self._head = None
        if self._reactor is not None:
            self._reactor.remove(self._rtp_sock.fileno())  # before the descriptor is reused
        self._rtp_sock.close()
        self._pool.release(self.local_port)
        if self._rtcp is not None:
            self._rtcp.close()

    @property
    def closed(self) -> bool:
        return self._closed

    # ------------------------------------------------------------------ negotiation

    def configure(
        self,
        *,
        remote: tuple[str, int] | None,
        payload_type: int,
        dtmf_pt: int | None,
        direction: str,
        ptime: int = 20,
        signalling_host: str | None = None,
        remote_rtcp: tuple[str, int] | None = None,
    ) -> None:
        """Apply a negotiated SDP (again on each re-INVITE).

        ``direction`` is OUR direction.  ``remote`` None or 0.0.0.0 is the old
        hold.  ``ptime`` multiples of 20 ms (up to 200) are honoured; any other
        value sends 20 ms packets (``a=ptime`` is a preference, RFC 4566).
        ``signalling_host`` is the IP the INVITE came from (for latching);
        ``remote_rtcp`` is ``a=rtcp`` (RFC 3605), default remote port + 1.
        """
        if payload_type not in g711.CODEC_NAMES:
            raise ValueError(f"payload type {payload_type} is not G.711 (0 PCMU or 8 PCMA)")
        if direction not in DIRECTIONS:
            raise ValueError(f"direction {direction!r} is not one of {', '.join(DIRECTIONS)}")
        if remote is not None:
            remote = (_ip_literal(remote[0]), int(remote[1]))
            if ipaddress.ip_address(remote[0]).is_unspecified:
                remote = None
        if remote != self._sdp_remote:
            self._disconnect()
            self._sdp_remote = self.remote = remote
            self._rtcp_remote = remote_rtcp or ((remote[0], remote[1] + 1) if remote else None)
            self._rtcp_latched = remote_rtcp is not None
            self.latched = False
            self._latch_open = remote is not None
            self._latch_until = self.loop.time() + LATCH_SECONDS
        if signalling_host is not None:
            self._signalling_host = signalling_host
        frames = ptime // 20 if ptime % 20 == 0 and 20 <= ptime <= 200 else 1
        if frames != self._frames_per_packet or payload_type != self._pt:
            self._frames_per_packet, self._frame_count = frames, 0
            self._buf, self._payload = self._packet_buffer(frames)
            self._update_plain()
        self._pt = payload_type
        self._dtmf_pt = dtmf_pt
        armed = direction == "sendrecv"
        if armed and not self._timeout_armed:
            self._last_rx = self.loop.time()  # count from now, not from before the hold
        self._timeout_armed = armed
        if direction != self.direction:
            self._marker = True
        self.direction = direction
        self._sending = direction in ("sendrecv", "sendonly")
        self._receiving = direction in ("sendrecv", "recvonly")

    def _packet_buffer(self, frames: int) -> tuple[bytearray, memoryview]:
        """A packet of ``frames`` 20 ms frames, with the header's fixed parts (V=2, SSRC) set.

        The tick then writes only what changes (payload type and marker, sequence,
        timestamp) and copies the payload through the view: a copy into a memoryview
        costs half a bytearray slice assignment.
        """
        buf = bytearray(12 + FRAME_SAMPLES * frames)
        RTP_HEADER.pack_into(buf, 0, 0x80, 0, 0, 0, self.ssrc)
        return buf, memoryview(buf)[12:]

    # ------------------------------------------------------------------ prompts

    def play(self, source: Clip | SharedPlayer, *, prompt_id: int, barge_in: bool = True) -> None:
        """Queue a Clip (played once) or a shared player (until stopped) after what is playing."""
        if self._closed:
            return
        if isinstance(source, Clip):
            pt = g711.PCMU if self._pt is None else self._pt
            # encoded now, not in the tick; a re-INVITE to the other codec takes the slow path
            item = _Item(
                source, prompt_id, barge_in, source, 0, pt, source.encoded(pt), source.frames
            )
        elif callable(getattr(source, "frame", None)):
            item = _Item(source, prompt_id, barge_in, None)
            if callable(getattr(source, "advance", None)):
                self.clock.add_shared(source)  # type: ignore[arg-type]
                item.shared = _shared_frames(source)
        else:
            raise TypeError(
                f"cannot play {source!r}: expected a Clip or a shared player with .frame(pt)"
            )
        self._queue.append(item)
        self._head = self._queue[0]

    def stop_prompts(self, *, only_barge_in: bool = True) -> None:
        """Drop queued prompts (all, or those with ``barge_in``); the next frame sent reflects it.

        Each dropped prompt is reported to ``on_prompt_done`` like one that played to its end:
        whoever started it learns that it is over, whoever stopped it.
        """
        keep: deque[_Item] = deque()
        for item in self._queue:
            if only_barge_in and not item.barge_in:
                keep.append(item)
            else:
                self._release(item)
                self.loop.call_soon(self._prompt_done, item.prompt_id)  # a stopped prompt is over too
        self._queue = keep
        self._head = keep[0] if keep else None

    @property
    def playing(self) -> int | None:
        """The prompt_id playing now, if any."""
        return self._queue[0].prompt_id if self._queue else None

    def _release(self, item: _Item) -> None:
        if item.clip is None and callable(getattr(item.source, "advance", None)):
            self.clock.remove_shared(item.source)

    def _next_frame(self, pt: int) -> bytes | None:
        """This tick's frame: in-band DTMF, else the head of the queue; None means silence."""
        if self._inband_frames:
            return self._inband_frames.popleft()
        queue = self._queue
        while queue:
            item = queue[0]
            clip = item.clip
            if clip is None:
                frame: bytes = item.source.frame(pt)
                return frame
            position = item.position
            item.position = position + 1
            # the last frame (or an empty clip): the prompt is done once this frame is out
            if position + 1 >= clip.frames:
                queue.popleft()
                self._head = queue[0] if queue else None
                self.loop.call_soon(self._prompt_done, item.prompt_id)
                if position >= clip.frames:
                    continue
            start = position * FRAME_SAMPLES
            return clip.encoded(pt)[start : start + FRAME_SAMPLES]
        return None

    def _prompt_done(self, prompt_id: int) -> None:
        if not self._closed:
            self.on_prompt_done(prompt_id)

    # ------------------------------------------------------------------ DTMF out

    def send_dtmf(self, digit: str) -> None:
        """Send a key: RFC 4733 events when negotiated, else an in-band tone."""
        event_code(digit)  # raises DtmfError for a non-key, before anything is queued
        self._digits.append(digit.upper())
        self._plain = False

    def _start_event(self, pt: int, ts: int) -> None:
        digit = self._digits.popleft()
        if self._dtmf_pt is None:
            pcm = np.concatenate(
                [dtmf_tone(digit, INBAND_KEY_MS), np.zeros(8 * 60, dtype=np.int16)]
            )
            encoded = g711.encode(pcm, pt)
            frames = [encoded[i : i + FRAME_SAMPLES] for i in range(0, len(encoded), FRAME_SAMPLES)]
            self._inband_frames.extend(f for f in frames if len(f) == FRAME_SAMPLES)
            return
        self._event = DtmfSender().packets(
            digit, ssrc=self.ssrc, seq=self._seq, timestamp=ts, pt=self._dtmf_pt
        )
        self._event_start = 0

    def _send_event_packet(self) -> None:
        _, packet = self._event[self._event_start]
        self._event_start += 1
        if self._event_start >= len(self._event):
            self._event = []
            self._dtmf_pause = DTMF_GAP_TICKS
        data = bytes(packet)
        self._seq = (packet.sequence + 1) & 0xFFFF
        self._transmit(data)
        self._marker = False

    # ------------------------------------------------------------------ the tick

    def on_tick(self, tick_no: int, now: float) -> None:
        """At most one packet per tick; the common case (one frame, no DTMF) stays on a short path.

        Run for every call 50 times a second, so it avoids calls and allocations
        where it can: housekeeping (RTCP, media timeout) is looked at every
        ``HOUSEKEEPING`` seconds, a clip's next frame is sliced straight from its
        encoding, the packet is built in place in a preallocated buffer.
        """
        if now >= self._next_house:
            self._housekeeping(now)
        pt = self._pt
        if pt is None:
            return
        offset = self._ts_offset
        if offset is None:
            self._tick0 = tick_no
            offset = self._ts_offset = self._ts_base - tick_no * FRAME_SAMPLES
        ts = (offset + tick_no * FRAME_SAMPLES) & 0xFFFFFFFF
        remote = self.remote
        sending = remote is not None and self._sending
        if not self._plain:
            self._special_tick(pt, ts, sending)
            self._update_plain()
            return
        frame: bytes | None = None
        item = self._head
        if item is not None:
            position = item.position
            if position + 1 < item.frames and item.pt == pt:  # a clip, not its last frame
                item.position = position + 1
                start = position * FRAME_SAMPLES
                frame = item.data[start : start + FRAME_SAMPLES]
            elif item.shared is not None:  # hold music: the frame all its listeners hear
                shared = item.shared
                frame = shared.frames[pt] if shared.tick == tick_no else None
                if frame is None:
                    frame = shared.fetch(item.source, pt, tick_no)
            else:
                frame = self._next_frame(pt)
        if not sending:
            self._marker = True
            return
        buf = self._buf
        self._payload[:] = _SILENCE[pt] if frame is None or len(frame) != FRAME_SAMPLES else frame
        buf[1] = pt | 0x80 if self._marker else pt
        _SEQ_TS.pack_into(buf, 2, self._seq, ts)  # V=2 and the SSRC are in place already
        self._seq = (self._seq + 1) & 0xFFFF
        self._marker = False
        try:
            if self._connected:
                self._rtp_sock.send(buf)
            else:
                self._rtp_sock.sendto(buf, remote)  # type: ignore[arg-type]
        except OSError:
            self._transmit(buf)  # the slow path retries once, then counts and logs
            return
        self._frames_sent += 1

    def _update_plain(self) -> None:
        self._plain = not (
            self._digits
            or self._event
            or self._dtmf_pause
            or self._inband_frames
            or self._frames_per_packet != 1
        )

    def _housekeeping(self, now: float) -> None:
        if self._reorder and now - self._reorder_since > REORDER_WAIT:
            self._flush_reorder()
        if self._timeout_armed and now - self._last_rx > self.media_timeout:
            self._fire_timeout()
        if now >= self._next_rtcp:
            self._send_rtcp(now)
        # while received packets are held for reordering, look again at the next tick
        self._next_house = 0.0 if self._reorder else min(self._next_rtcp, now + HOUSEKEEPING)

    def _special_tick(self, pt: int, ts: int, sending: bool) -> None:
        """DTMF events, the pause after them, and packets of several frames (ptime > 20)."""
        if sending and (
            self._event or (self._digits and not self._dtmf_pause and not self._inband_frames)
        ):
            if not self._event:
                self._start_event(pt, ts)
            if self._event:
                self._frame_count = 0
                self._send_event_packet()
                return
        if self._dtmf_pause:
            self._dtmf_pause -= 1
        frame = self._next_frame(pt)
        if not sending:
            self._marker = True
            self._frame_count = 0
            return
        self._send_frame(pt, ts, frame)

    def _send_frame(self, pt: int, ts: int, frame: bytes | None) -> None:
        buf = self._buf
        k = self._frame_count
        start = 12 + k * FRAME_SAMPLES
        buf[start : start + FRAME_SAMPLES] = (
            _SILENCE[pt] if frame is None or len(frame) != FRAME_SAMPLES else frame
        )
        if k == 0:
            self._packet_ts = ts
        if k + 1 < self._frames_per_packet:
            self._frame_count = k + 1
            return
        self._frame_count = 0
        RTP_HEADER.pack_into(
            buf, 0, 0x80, pt | 0x80 if self._marker else pt, self._seq, self._packet_ts, self.ssrc
        )
        self._seq = (self._seq + 1) & 0xFFFF
        self._marker = False
        self._transmit(buf)

    def _transmit(self, data: bytes | bytearray) -> None:
        remote = self.remote
        if remote is None or self._closed:
            return
        try:
            if self._connected:
                self._rtp_sock.send(data)
            else:
                self._rtp_sock.sendto(data, remote)
        except (BlockingIOError, InterruptedError):
            # socket buffer full: drop, a late frame is worth less than the next one
            self._send_dropped += 1
            return
        except OSError as exc:
            self._send_errors += 1
            log.debug("RTP send to %s failed: %s", remote, exc)
            return
        self._packets_sent += 1
        self._octets_sent += len(data) - 12

    def _fire_timeout(self) -> None:
        self._timeout_armed = False
        self._timed_out = True
        self.loop.call_soon(self._timeout_callback)

    def _timeout_callback(self) -> None:
        if not self._closed:
            self.on_timeout()

    # ------------------------------------------------------------------ receiving RTP

    def _rtp_readable(self, now: float) -> None:
        """The reactor's handler: read ONE datagram (level-triggered: more wake us again).

        Run for every call 50 times a second: the checks of a packet are inline here
        rather than in a function of their own, and audio nobody listens to costs only
        its bookkeeping (no call of :meth:`_on_audio_packet`).
        """
        try:
            if not self._connected:
                data, addr = self._rtp_sock.recvfrom(RECV_SIZE)
            else:  # the kernel only lets the remote's packets in
                data = self._rtp_sock.recv(RECV_SIZE)
                addr = self.remote
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # ICMP port unreachable from a peer that went away: the media timeout handles it.
            log.debug("RTP socket error on port %d: %s", self.local_port, exc)
            return
        if len(data) < 12 or data[0] & 0xC0 != 0x80:
            self._invalid += 1
            return
        if 192 <= data[1] <= 223:  # RTCP multiplexed on the RTP port (RFC 5761)
            self._on_rtcp(data, addr)
            return
        if not self._connected:  # (connected: the kernel let only the remote's packets in)
            remote = self.remote
            if (
                remote is None or addr[1] != remote[1] or addr[0] != remote[0]
            ) and not self._try_latch(addr, now):
                self._rejected += 1
                return
            if self._latch_open:
                # media from the SDP address itself: nothing to latch, and nobody may later
                self._latch_open = False
                self._connect()
        self._last_rx = now
        self._packets_received += 1
        _, b1, seq, ts, ssrc = RTP_HEADER.unpack_from(data)
        pt = b1 & 0x7F
        stats = self._rx
        if stats is None or stats.ssrc != ssrc:
            if stats is not None:
                self._lost_before += max(stats.lost, 0)
            stats = self._rx = SourceStats(ssrc)
            self._flush_reorder()
            self._rx_expected = self._rx_next_ts = None
        stats.update(seq, ts, now * 8000)
        if pt == self._dtmf_pt:
            self._on_event_packet(data)
            return
        if pt != g711.PCMU and pt != g711.PCMA:
            return  # comfort noise, sipp's filler, anything we did not offer
        if self._receiving and (self.on_audio is not None or self._inband is not None):
            self._on_audio_packet(data, pt, seq, ts)
        else:  # nobody listens: no reordering and no decoding, only the bookkeeping
            self._rx_expected = (seq + 1) & 0xFFFF
            self._octets_received += len(data) - 12

    def _on_event_packet(self, data: bytes) -> None:
        try:
            packet = RtpPacket.parse(data)
        except RtpError:
            self._invalid += 1
            return
        assert self._dtmf_pt is not None
        digit = self._dtmf_rx.feed(packet, self._dtmf_pt)
        if digit is not None:
            self._key(digit, "rfc4733")

    def _on_audio_packet(self, data: bytes, pt: int, seq: int, ts: int) -> None:
        """Put audio back in sequence order (a small reorder window), then deliver it."""
        expected = self._rx_expected
        delta = 0 if expected is None else (seq - expected) & 0xFFFF
        if delta == 0 and not self._reorder and data[0] & 0x3F == 0:
            # the common case: in order, nothing held, a plain header; decoded in place
            self._octets_received += len(data) - 12
            self._rx_expected = (seq + 1) & 0xFFFF
            self._deliver(pt, ts, data, 12)
            return
        if delta >= 0x8000 or seq in self._reorder:
            self._late += 1  # a duplicate, or older than what we delivered: too late to use
            return
        if data[0] & 0x3F == 0:  # no padding, extension or CSRCs
            payload = data[12:]
        else:
            try:
                payload = RtpPacket.parse(data).payload
            except RtpError:
                self._invalid += 1
                return
        self._octets_received += len(payload)
        if delta == 0:
            self._deliver(pt, ts, payload)
            self._rx_expected = (seq + 1) & 0xFFFF
            if self._reorder:
                self._drain()
        elif delta > MAX_REORDER_JUMP:  # the sender restarted its numbering: no point waiting
            self._flush_reorder()
            self._deliver(pt, ts, payload)
            self._rx_expected = (seq + 1) & 0xFFFF
        else:
            if not self._reorder:
                self._reorder_since = self.loop.time()
                self._next_house = 0.0  # the tick gives up on the gap after REORDER_WAIT
            self._reorder[seq] = (pt, ts, payload)
            if len(self._reorder) > REORDER_PACKETS:
                self._flush_reorder()

    def _drain(self) -> None:
        """Deliver held packets that are now in order."""
        while self._rx_expected in self._reorder:
            pt, ts, payload = self._reorder.pop(self._rx_expected)
            self._deliver(pt, ts, payload)
            self._rx_expected = (self._rx_expected + 1) & 0xFFFF  # type: ignore[operator]
        if self._reorder:
            self._reorder_since = self.loop.time()

    def _flush_reorder(self) -> None:
        """Give up on the missing packets: they are lost (their time becomes silence)."""
        expected = self._rx_expected
        while self._reorder:
            assert expected is not None
            seq = min(self._reorder, key=lambda s: (s - expected) & 0xFFFF)
            self._rx_expected = seq
            self._drain()

    def _deliver(self, pt: int, ts: int, payload: bytes, start: int = 0) -> None:
        """Decode ``payload[start:]`` (G.711 ``pt``) and hand it on, after silence for any gap."""
        expected, self._rx_next_ts = self._rx_next_ts, (ts + len(payload) - start) & 0xFFFFFFFF
        if expected is not None and expected != ts:
            gap = (ts - expected) & 0xFFFFFFFF
            if gap <= MAX_GAP_FILL:
                self._deliver_silence(gap)
        # a view of the packet itself (no copy of the payload) through the decoding table
        pcm = (_ULAW if pt == g711.PCMU else _ALAW).take(np.frombuffer(payload, _U8, -1, start))
        if self._inband is not None:
            for key in self._inband.feed(pcm):
                self._key(key, "inband")
        if self.on_audio is not None:
            self.on_audio(pcm)

    def _deliver_silence(self, samples: int) -> None:
        """Lost packets (or an event in place of audio): keep recordings and recognisers on time."""
        if self.on_audio is not None:
            self.on_audio(np.zeros(samples, dtype=np.int16))

    def _connect(self) -> None:
        """Once the remote is final, connect() the RTP socket to it.

        The kernel then drops packets from anyone else before they cost us a
        wake-up, and a send skips the per-packet address lookup (a third of
        its cost).  Only where the association can be dissolved again, for a
        re-INVITE that moves the media (see :func:`_dissolve`).
        """
        if self._connected or self.remote is None or not _CAN_DISSOLVE:
            return
        try:
            self._rtp_sock.connect(self.remote)
        except OSError as exc:
            log.debug("RTP socket stays unconnected: %s", exc)
            return
        self._connected = True

    def _disconnect(self) -> None:
        if self._connected:
            self._connected = not _dissolve(self._rtp_sock)

    def _try_latch(self, addr: tuple[str, int], now: float) -> bool:
        """Move the remote to ``addr`` once, early, and only if plausible (see the module docstring)."""
        if not self._latch_open:
            return False
        if now > self._latch_until:
            self._latch_open = False
            return False
        ip = addr[0]
        sdp_ip = self._sdp_remote[0] if self._sdp_remote else None
        if ip != sdp_ip and ip != self._signalling_host:
            return False
        log.info(
            "RTP on port %d latched to %s:%d (SDP said %s)",
            self.local_port,
            ip,
            addr[1],
            self._sdp_remote,
        )
        self.remote = (ip, addr[1])
        if not self._rtcp_latched:
            self._rtcp_remote = (ip, addr[1] + 1)
        self.latched = True
        self._latch_open = False
        self._connect()
        return True

    # ------------------------------------------------------------------ DTMF in

    def enable_inband_dtmf(self, on: bool) -> None:
        """In-band key detection on received audio (when no telephone-event was negotiated)."""
        if not on:
            self._inband = None
        elif self._inband is None:  # a re-INVITE keeps a detector that may be mid-key
            self._inband = GoertzelDetector()

    def receive_info_key(self, digit: str) -> None:
        """A key the signalling already parsed (SIP INFO): same duplicate suppression as RTP keys."""
        self._key(digit, "info")

    def _key(self, digit: str, source: str) -> None:
        now = self.loop.time()
        if source == "inband" and self._oob_keys_seen:
            return  # the peer signals keys out of band; these tones are the same presses
        last_digit, last_source, last_time = self._last_key
        if source != "inband":
            self._oob_keys_seen = True
        if digit == last_digit and source != last_source and now - last_time < DUPLICATE_KEY_WINDOW:
            return  # the same press seen twice (RFC 4733 and INFO, or a tone before its event)
        self._last_key = (digit, source, now)
        self.on_dtmf(digit)  # whether the key interrupts the prompt is the flow's decision

    # ------------------------------------------------------------------ RTCP

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.remote is None or addr[0] != self.remote[0]:
            self._rejected += 1
            return
        try:
            packets = parse_rtcp(data)
        except RtpError:
            self._invalid += 1
            return
        now = self.loop.time()
        self._last_rx = now
        if not self._rtcp_latched:  # symmetric RTCP: answer where it comes from, once
            self._rtcp_remote = (addr[0], addr[1])
        self._rtcp_latched = True
        for packet in packets:
            if (
                isinstance(packet, SenderReport)
                and self._rx is not None
                and packet.ssrc == self._rx.ssrc
            ):
                self._rx.on_sender_report(packet, now)

    def _send_rtcp(self, now: float, *, bye: bool = False) -> None:
        self._next_rtcp = now + self.rtcp_interval * random.uniform(0.5, 1.5)
        transport, dest = self._rtcp, self._rtcp_remote
        if transport is None or dest is None or self._closed:
            return
        blocks = (self._rx.report_block(now),) if self._rx is not None and self._rx.received else ()
        report: RtcpPacket
        packets_sent, octets_sent = self._sent_totals()
        if packets_sent != self._reported_sent:
            tick = self.clock.current_tick - (self._tick0 or 0)
            rtp_ts = (self._ts_base + tick * FRAME_SAMPLES) & 0xFFFFFFFF
            report = SenderReport(
                self.ssrc,
                ntp_timestamp(time.time()),
                rtp_ts,
                packets_sent,
                octets_sent,
                blocks,
            )
        else:
            report = ReceiverReport(self.ssrc, blocks)
        self._reported_sent = packets_sent
        packets: list[RtcpPacket] = [report, SourceDescription.cname_of(self.ssrc, self.cname)]
        if bye:
            packets.append(Bye((self.ssrc,)))
        try:
            transport.sendto(rtcp_bytes(packets), dest)
        except OSError as exc:  # pragma: no cover - unreachable peers surface in error_received
            log.debug("RTCP send failed: %s", exc)

    # ------------------------------------------------------------------ stats

    def _sent_totals(self) -> tuple[int, int]:
        """Packets and payload octets sent, by the tick's fast path and by _transmit."""
        frames = self._frames_sent
        return self._packets_sent + frames, self._octets_sent + frames * FRAME_SAMPLES

    @property
    def stats(self) -> dict[str, Any]:
        rx = self._rx
        packets_sent, octets_sent = self._sent_totals()
        return {
            "local_port": self.local_port,
            "remote": self.remote,
            "latched": self.latched,
            "connected": self._connected,
            "packets_sent": packets_sent,
            "send_dropped": self._send_dropped,
            "send_errors": self._send_errors,
            "octets_sent": octets_sent,
            "packets_received": self._packets_received,
            "octets_received": self._octets_received,
            "lost": self._lost_before + (max(rx.lost, 0) if rx else 0),
            "jitter_ms": rx.jitter_ms if rx else 0.0,
            "late": self._late,
            "rejected": self._rejected,
            "invalid": self._invalid,
            "timed_out": self._timed_out,
        }


_SILENCE = {pt: bytes([code]) * FRAME_SAMPLES for pt, code in g711.SILENCE.items()}
_ULAW, _ALAW = g711.ULAW_DECODE, g711.ALAW_DECODE
_SEQ_TS = struct.Struct("!HI")  # RTP header bytes 2-7: sequence number, timestamp
_U8 = np.dtype(np.uint8)  # a dtype object, positional arguments: numpy parses no keywords


class _Sockaddr(ctypes.Structure):
    _fields_ = [("sa_family", ctypes.c_ushort), ("sa_data", ctypes.c_char * 14)]


def _load_libc() -> Any:
    try:
        return ctypes.CDLL(None, use_errno=True)
    except OSError:  # pragma: no cover - not on Linux
        return None


_LIBC = _load_libc() if sys.platform.startswith("linux") else None
_CAN_DISSOLVE = _LIBC is not None and hasattr(_LIBC, "connect")


def _dissolve(sock: socket.socket) -> bool:
    """Undo connect() on a UDP socket: connect to AF_UNSPEC (Linux; Python has no call for it).

    The socket keeps its explicitly bound address and port.
    """
    if _LIBC is None:
        return False
    address = _Sockaddr(socket.AF_UNSPEC)
    if _LIBC.connect(sock.fileno(), ctypes.byref(address), ctypes.sizeof(address)) != 0:
        log.warning("cannot dissolve RTP socket association: errno %d", ctypes.get_errno())
        return False
    return True


def _ip_literal(host: str) -> str:
    """The address as the socket layer reports sources (so they compare equal), or ValueError."""
    try:
        return str(ipaddress.ip_address(host.strip("[]")))
    except ValueError:
        raise ValueError(
            f"remote media host {host!r} is not an IP address (resolve it first)"
        ) from None
