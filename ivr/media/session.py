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
    0.5-1.5x, RFC 3550 6.2) to the remote RTP port + 1; BYE on close
    (what and when: :mod:`ivr.media.rtcp_reports`).

Symmetric RTP latching (RFC 4961 spirit; hijack-safe)
  Packets are accepted only from the current remote; the first one from
  elsewhere may move it once, early, to a plausible source (the rules:
  :mod:`ivr.media.latch`; ``configure(signalling_host=...)`` names the IP the
  INVITE came from).  Once the latch window closes, the RTP socket is
  connect()ed to the remote (Linux), so the kernel itself drops everyone
  else's packets and sends are cheaper.

Receiving
  RTP is read through the loop's :class:`~ivr.media.reactor.Reactor` (one
  epoll wake-up serves many calls; no asyncio transport per packet), and so
  is RTCP on the port above (a transport of its own would cost every call's
  set-up and tear-down a few loop turns, for a few packets a minute).
  Audio (PCMU/PCMA, whatever the negotiated codec: a re-INVITE may switch) is
  put back in sequence order through a 2-packet / 60 ms reorder window
  (:mod:`ivr.media.reorder`), duplicates and too-late packets are dropped, and
  the time of lost packets (or of an RFC 4733 event sent instead of audio) is
  delivered as silence, so recordings and recognisers stay on the caller's
  timeline; with no
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
from ivr.media.dtmf import (
    DtmfReceiver,
    DtmfSender,
    InbandBank,
    InbandStream,
    dtmf_tone,
    event_code,
)
from ivr.media.latch import Latch
from ivr.media.ports import PortPool, pool_for
from ivr.media.reactor import Reactor, get_reactor
from ivr.media.reorder import ReorderBuffer
from ivr.media.rtcp_reports import RtcpReporter
from ivr.media.rtp import RTP_HEADER, RtpError, RtpPacket, SourceStats

log = logging.getLogger(__name__)

DIRECTIONS = ("sendrecv", "sendonly", "recvonly", "inactive")
DTMF_GAP_TICKS = 3  # audio frames between two sent events (60 ms inter-digit pause)
DUPLICATE_KEY_WINDOW = 0.5  # s: the same key from another source within this is the same press
INBAND_KEY_MS = 100
RECV_SIZE = 4096  # bytes: G.711 at ptime 200 ms is 1612; RTCP compounds are smaller
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


class _InbandKeys:
    """Every listening call's in-band key detection on one media clock, run once per tick as a
    shared source: one :class:`~ivr.media.dtmf.InbandBank` analyses all the calls' audio
    together, and each key goes to its call's listener (one failing listener costs the others
    nothing)."""

    __slots__ = ("bank",)

    def __init__(self) -> None:
        self.bank = InbandBank()

    def advance(self, tick_no: int) -> None:
        for stream, key in self.bank.analyse():
            listener = stream.listener
            if listener is None:
                continue
            try:
                listener(key)
            except Exception:
                log.exception("media: handling the in-band key %r failed", key)


_INBAND: weakref.WeakKeyDictionary[MediaClock, _InbandKeys] = weakref.WeakKeyDictionary()


def _inband_keys(clock: MediaClock) -> _InbandKeys:
    keys = _INBAND.get(clock)
    if keys is None:
        keys = _INBAND[clock] = _InbandKeys()
    return keys


def _shared_frames(source: SharedPlayer) -> _SharedFrames | None:
    """The per-tick frame cache of a shared player (None if it cannot be a weak key)."""
    try:
        shared = _SHARED.get(source)
        if shared is None:
            shared = _SHARED[source] = _SharedFrames()
    except TypeError:  # not hashable or not weakly referenceable: asked on every tick
        return None
    return shared


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
        "_reorder",
        "_octets_unheard",
        "_invalid",
        "_latch",
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
        "_dtmf_rx",
        "_oob_keys_seen",
        "_last_key",
        "_rejected",
        "_lost_before",
        "_timeout_armed",
        "_timed_out",
        "_reporter",
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
        # destination and latching
        self.remote: tuple[str, int] | None = None  # where we send RTP now (the latch moves it)
        self._latch = Latch()
        # receiving
        self._rx: SourceStats | None = None
        self._reorder = ReorderBuffer(self._deliver, self._deliver_silence)
        self._dtmf_rx = DtmfReceiver()
        self._inband: InbandStream | None = None
        self._oob_keys_seen = False
        self._last_key: tuple[str, str, float] = ("", "", -1e9)  # digit, source, time
        self._packets_received = 0
        self._octets_unheard = 0  # audio octets nobody listened to (the buffer counts the rest)
        self._rejected = 0
        self._invalid = 0
        self._lost_before: int = 0  # loss of earlier SSRCs of this call
        self._last_rx = self.loop.time()
        self._timeout_armed = False
        self._timed_out = False
        cname = f"ivr-{self.ssrc:08x}@{self.local_host}"
        self._reporter = RtcpReporter(self.ssrc, cname, self.loop.time())
        self._next_house = 0.0  # when on_tick next looks at RTCP and the media timeout

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
        """Bind an even RTP port (and RTCP on port + 1) in ``port_range`` on ``host``.

        Nothing here waits: a caller awaiting it gets the session in the same turn of the loop
        (the call's 200 OK goes out without waiting for another turn)."""
        pool = pool_for(port_range)
        rtp_sock, rtcp_sock = pool.bind_pair(host)
        session = cls(
            clock=clock,
            pool=pool,
            rtp_sock=rtp_sock,
            rtcp_sock=rtcp_sock,
            media_timeout=media_timeout,
        )
        # RTP (50 packets/s) and RTCP bypass asyncio's transports: see ivr.media.reactor.
        reactor = get_reactor()
        try:
            reactor.add(rtp_sock.fileno(), session._rtp_readable)
            reactor.add(rtcp_sock.fileno(), session._rtcp_readable)
        except BaseException:
            reactor.remove(rtp_sock.fileno())
            rtp_sock.close()
            rtcp_sock.close()
            pool.release(session.local_port)
            raise
        session._reactor = reactor
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
        if self._reactor is not None:  # before the descriptors are reused
            self._reactor.remove(self._rtp_sock.fileno())
            self._reactor.remove(self._rtcp_sock.fileno())
        self._rtp_sock.close()
        self._rtcp_sock.close()
        self._pool.release(self.local_port)
        self._detach()

    def _detach(self) -> None:
        """Drop the callbacks into the call and the buffer's into this session: no reference cycle
        is left, so a closed session is freed when its call drops it, not by the cyclic collector."""
        self.on_prompt_done = self.on_dtmf = _noop
        self.on_timeout = _noop
        self.on_audio = None
        self._reorder.detach()
        self._stop_inband()

    @property
    def closed(self) -> bool:
        return self._closed

    @property
    def latched(self) -> bool:
        """True once the remote moved to where the peer's media came from (symmetric RTP)."""
        return self._latch.latched

    @property
    def cname(self) -> str:
        """Our RTCP SDES CNAME."""
        return self._reporter.cname

    @property
    def rtcp_interval(self) -> float:
        """Seconds between RTCP reports, before randomisation (RFC 3550 6.2)."""
        return self._reporter.interval

    @rtcp_interval.setter
    def rtcp_interval(self, seconds: float) -> None:
        self._reporter.interval = seconds

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
        latch = self._latch
        if latch.configure(
            remote, rtcp=remote_rtcp, signalling_host=signalling_host, now=self.loop.time()
        ):
            self._disconnect()
            self.remote = latch.sdp_remote
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
        if self._reorder.held:
            self._reorder.expire(now)
        if self._timeout_armed and now - self._last_rx > self.media_timeout:
            self._fire_timeout()
        if now >= self._reporter.next_report:
            self._send_rtcp(now)
        # while received packets are held for reordering, look again at the next tick
        self._next_house = (
            0.0 if self._reorder.held else min(self._reporter.next_report, now + HOUSEKEEPING)
        )

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
            if remote is None or addr[1] != remote[1] or addr[0] != remote[0]:
                if not self._latch_to(addr, now):
                    self._rejected += 1
                    return
            elif self._latch.open:
                # media from the SDP address itself: nothing to latch, and nobody may later
                self._latch.open = False
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
            self._reorder.restart()
        stats.update(seq, ts, now * 8000)
        if pt == self._dtmf_pt:
            self._on_event_packet(data)
            return
        if pt != g711.PCMU and pt != g711.PCMA:
            return  # comfort noise, sipp's filler, anything we did not offer
        if self._receiving and (self.on_audio is not None or self._inband is not None):
            try:
                if self._reorder.push(data, pt, seq, ts, now):
                    self._next_house = 0.0  # the tick gives up on the gap after REORDER_WAIT
            except RtpError:
                self._invalid += 1
        else:  # nobody listens: no reordering and no decoding, only the bookkeeping
            self._reorder.expected = (seq + 1) & 0xFFFF
            self._octets_unheard += len(data) - 12

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

    def _deliver(self, pt: int, payload: bytes, start: int) -> None:
        """Decode ``payload[start:]`` (G.711 ``pt``, in sequence order) and hand it on."""
        # a view of the packet itself (no copy of the payload) through the decoding table
        pcm = (_ULAW if pt == g711.PCMU else _ALAW).take(np.frombuffer(payload, _U8, -1, start))
        if self._inband is not None:
            self._inband.feed(pcm)  # keys come at the next tick (see _InbandKeys)
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

    def _latch_to(self, addr: tuple[str, int], now: float) -> bool:
        """Move the remote to ``addr`` if the latch allows it (see :mod:`ivr.media.latch`)."""
        remote = self._latch.move(addr, now)
        if remote is None:
            return False
        log.info(
            "RTP on port %d latched to %s:%d (SDP said %s)",
            self.local_port,
            remote[0],
            remote[1],
            self._latch.sdp_remote,
        )
        self.remote = remote
        self._connect()
        return True

    # ------------------------------------------------------------------ DTMF in

    @property
    def inband_dtmf(self) -> bool:
        """Whether keys are detected in the received audio (see :meth:`enable_inband_dtmf`)."""
        return self._inband is not None

    def enable_inband_dtmf(self, on: bool) -> None:
        """In-band key detection on received audio (when no telephone-event was negotiated)."""
        if not on:
            self._stop_inband()
        elif self._inband is None and not self._closed:  # a re-INVITE keeps one mid-key
            keys = _inband_keys(self.clock)
            self._inband = keys.bank.stream()
            self._inband.listener = self._inband_key
            self.clock.add_shared(keys)

    def _inband_key(self, digit: str) -> None:
        self._key(digit, "inband")

    def _stop_inband(self) -> None:
        """No more in-band detection: the stream leaves its bank, and its listener (this session)
        is dropped, so no reference cycle is left."""
        if self._inband is not None:
            self._inband.close()
            self._inband = None
            self.clock.remove_shared(_inband_keys(self.clock))

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

    def _rtcp_readable(self, now: float) -> None:
        """The reactor's handler of the RTCP socket: one datagram."""
        try:
            data, addr = self._rtcp_sock.recvfrom(RECV_SIZE)
        except (BlockingIOError, InterruptedError):
            return
        except OSError as exc:
            # ICMP port unreachable from a peer that went away: the media timeout handles it.
            log.debug("RTCP socket error on port %d: %s", self.local_port + 1, exc)
            return
        self._on_rtcp(data, addr)

    def _on_rtcp(self, data: bytes, addr: tuple[str, int]) -> None:
        if self.remote is None or addr[0] != self.remote[0]:
            self._rejected += 1
            return
        now = self.loop.time()
        try:
            self._reporter.received(data, now, self._rx)
        except RtpError:
            self._invalid += 1
            return
        self._last_rx = now
        self._latch.rtcp_from(addr)  # symmetric RTCP: answer where it comes from

    def _send_rtcp(self, now: float, *, bye: bool = False) -> None:
        reporter = self._reporter
        reporter.schedule(now)
        dest = self._latch.rtcp_remote
        if self._reactor is None or dest is None or self._closed:  # (not open yet: nothing to say)
            return
        tick = self.clock.current_tick - (self._tick0 or 0)
        data = reporter.compound(
            now,
            wallclock=time.time(),
            rtp_timestamp=(self._ts_base + tick * FRAME_SAMPLES) & 0xFFFFFFFF,
            sent=self._sent_totals(),
            source=self._rx,
            bye=bye,
        )
        try:
            self._rtcp_sock.sendto(data, dest)
        except OSError as exc:  # a full buffer or an unreachable peer: the next report goes out
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
            "octets_received": self._reorder.octets + self._octets_unheard,
            "lost": self._lost_before + (max(rx.lost, 0) if rx else 0),
            "jitter_ms": rx.jitter_ms if rx else 0.0,
            "late": self._reorder.late,
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

