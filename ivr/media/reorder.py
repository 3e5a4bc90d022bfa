"""Received audio put back in sequence order, and its timeline kept whole: sans-IO.

RTP over UDP may arrive out of order, twice, or not at all (RFC 3550 5.1: the
sequence number is there so the receiver can restore the order).  A
:class:`ReorderBuffer` takes the audio packets of one stream as they arrive and
hands them on in sequence order through ``deliver``.  It is a reorder window,
not a playout buffer: a packet that arrives in order (the common case) is
handed on at once, and only while one is missing are up to
:data:`REORDER_PACKETS` later ones held, for at most :data:`REORDER_WAIT`
seconds; then the missing one is given up.  Duplicates and packets older than
what was handed on are dropped and counted (``late``).  A jump of more than
:data:`MAX_REORDER_JUMP` is the sender restarting its numbering, not
reordering: nothing is waited for.

The timeline: when a packet's timestamp is not where the previous one ended
(lost packets, or an RFC 4733 event sent instead of audio), ``silence`` gets
the missing samples first (up to :data:`MAX_GAP_FILL`), so recordings and
recognisers stay on the caller's time.

Told the time (``now``), never reading a clock: the media session calls
:meth:`ReorderBuffer.push` from its receive path and :meth:`ReorderBuffer.expire`
from its tick while packets are held.  The receive path runs for every call 50
times a second, so the in-order case is a few inline checks and one call of
``deliver``; audio nobody listens to never reaches the buffer (the session
only advances ``expected``).
"""

from __future__ import annotations

from collections.abc import Callable

from ivr.media.rtp import RtpPacket

REORDER_PACKETS = 2  # audio packets held while waiting for a missing one (40 ms)
REORDER_WAIT = 0.06  # s: after this a missing packet is given up even if nothing follows
MAX_REORDER_JUMP = 100  # a sequence jump beyond this is a restart, not reordering
MAX_GAP_FILL = 8000  # samples: up to 1 s of missing audio is delivered as silence

#: ``deliver(pt, packet_or_payload, start)``: the G.711 audio is ``packet_or_payload[start:]``
Deliver = Callable[[int, bytes, int], None]


class ReorderBuffer:
    """One received stream's audio in sequence order (RFC 3550 5.1, A.1 sequence arithmetic).

    ``expected`` is the next sequence number to hand on (None before the first packet),
    ``octets`` the audio payload accepted, ``late`` the duplicates and too-late packets
    dropped, ``held`` the packets waiting for a missing one (sequence -> pt, timestamp,
    payload).
    """

    __slots__ = ("expected", "octets", "late", "held", "_next_ts", "_since", "_deliver", "_silence")

    def __init__(self, deliver: Deliver, silence: Callable[[int], None]) -> None:
        self._deliver = deliver
        self._silence = silence
        self.expected: int | None = None
        self.octets = 0
        self.late = 0
        self.held: dict[int, tuple[int, int, bytes]] = {}
        self._next_ts: int | None = None  # the timestamp that follows the last audio handed on
        self._since = 0.0  # when the oldest held packet started waiting

    def detach(self) -> None:
        """Hand nothing on any more (the stream's session closed): drops the references to its
        session, so a closed session and its buffer are freed as soon as they are dropped, without
        waiting for the cyclic garbage collector."""
        self._deliver, self._silence = _drop, _drop
        self.held.clear()

    def push(self, data: bytes, pt: int, seq: int, ts: int, now: float) -> bool:
        """One received RTP packet (``data``, its payload type, sequence number and timestamp).

        Returns True while packets are held: call :meth:`expire` soon (the next tick).
        Raises :class:`~ivr.media.rtp.RtpError` for a packet whose header extension or
        padding does not fit it.
        """
        if seq == self.expected and not self.held and data[0] & 0x3F == 0:
            # the common case: in order, nothing held, a plain header; handed on in place
            self.octets += len(data) - 12
            self.expected = (seq + 1) & 0xFFFF
            next_ts, self._next_ts = self._next_ts, (ts + len(data) - 12) & 0xFFFFFFFF
            if next_ts != ts and next_ts is not None:
                self._fill(ts, next_ts)
            self._deliver(pt, data, 12)
            return False
        expected = self.expected
        delta = 0 if expected is None else (seq - expected) & 0xFFFF
        if delta >= 0x8000 or seq in self.held:
            self.late += 1  # a duplicate, or older than what we delivered: too late to use
            return bool(self.held)
        # no padding, extension or CSRCs: the payload follows the fixed header
        payload = data[12:] if data[0] & 0x3F == 0 else RtpPacket.parse(data).payload
        self.octets += len(payload)
        if delta == 0:
            self._emit(pt, ts, payload)
            self.expected = (seq + 1) & 0xFFFF
            if self.held:
                self._drain(now)
        elif delta > MAX_REORDER_JUMP:  # the sender restarted its numbering: no point waiting
            self.flush()
            self._emit(pt, ts, payload)
            self.expected = (seq + 1) & 0xFFFF
        else:
            if not self.held:
                self._since = now
            self.held[seq] = (pt, ts, payload)
            if len(self.held) > REORDER_PACKETS:
                self.flush()
        return bool(self.held)

    def expire(self, now: float) -> None:
        """Give up on a missing packet once the held ones have waited :data:`REORDER_WAIT`."""
        if self.held and now - self._since > REORDER_WAIT:
            self.flush()

    def flush(self) -> None:
        """Give up on the missing packets: they are lost (their time becomes silence)."""
        expected = self.expected
        while self.held:
            assert expected is not None
            seq = min(self.held, key=lambda s: (s - expected) & 0xFFFF)
            self.expected = seq
            self._drain(self._since)  # (empty at the end: when it started waiting no longer matters)

    def restart(self) -> None:
        """A new stream (the peer changed its SSRC): hand on what is held, then start afresh."""
        self.flush()
        self.expected = self._next_ts = None

    def _drain(self, now: float) -> None:
        """Deliver held packets that are now in order."""
        held = self.held
        while self.expected in held:
            pt, ts, payload = held.pop(self.expected)
            self._emit(pt, ts, payload)
            self.expected = (self.expected + 1) & 0xFFFF  # type: ignore[operator]
        if held:
            self._since = now

    def _emit(self, pt: int, ts: int, payload: bytes) -> None:
        next_ts, self._next_ts = self._next_ts, (ts + len(payload)) & 0xFFFFFFFF
        if next_ts != ts and next_ts is not None:
            self._fill(ts, next_ts)
        self._deliver(pt, payload, 0)

    def _fill(self, ts: int, next_ts: int) -> None:
        gap = (ts - next_ts) & 0xFFFFFFFF
        if gap <= MAX_GAP_FILL:
            self._silence(gap)


def _drop(*_: object) -> None:
    """What a detached buffer hands audio and silence to."""
