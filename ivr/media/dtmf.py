"""DTMF in the media: RFC 4733 events and in-band tones.

Sans-IO: packets and PCM arrays in, digits or packets out.  Keys sent by SIP
INFO are signalling: ivr.sip.info reads those bodies.

* :class:`TelephoneEvent` -- the 4-byte RFC 4733 payload, ``parse``/``__bytes__``.
* :class:`DtmfReceiver` -- reports each RFC 4733 event exactly once.
* :class:`DtmfSender` -- the packets for one key press, with their send offsets.
* :class:`InbandBank` -- in-band DTMF on 8 kHz PCM with Q.24-style checks, every call's
  :class:`InbandStream` analysed together; :class:`GoertzelDetector` -- the same for one stream.
* :func:`dtmf_tone` -- the PCM of a key, for in-band sending.
"""

from __future__ import annotations

import functools
import struct
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr.media.rtp import RtpError, RtpPacket

#: RFC 4733 section 3.2 event codes 0-15.
EVENTS = "0123456789*#ABCD"
EVENT_CODES = {key: code for code, key in enumerate(EVENTS)}
SAMPLES_PER_FRAME = 160  # 20 ms at 8 kHz: the update interval of our events


class DtmfError(ValueError):
    """A DTMF key or payload we cannot use; the message names it."""


def event_code(digit: str) -> int:
    code = EVENT_CODES.get(digit.upper())
    if code is None:
        raise DtmfError(f"not a DTMF key: {digit!r} (expected one of {EVENTS})")
    return code


@dataclass(frozen=True)
class TelephoneEvent:
    """The telephone-event payload (RFC 4733 section 2.3): event, E bit, volume, duration."""

    event: int
    end: bool = False
    volume: int = 10
    duration: int = 0

    @classmethod
    def parse(cls, data: bytes) -> TelephoneEvent:
        if len(data) < 4:
            raise RtpError(f"telephone-event payload too short: {len(data)} bytes, needs 4")
        event, flags, duration = struct.unpack_from("!BBH", data)
        return cls(event, bool(flags & 0x80), flags & 0x3F, duration)

    def __bytes__(self) -> bytes:
        return struct.pack(
            "!BBH", self.event, (0x80 if self.end else 0) | (self.volume & 0x3F), self.duration
        )

    @property
    def digit(self) -> str | None:
        return EVENTS[self.event] if self.event < len(EVENTS) else None


class DtmfReceiver:
    """Turns RFC 4733 telephone-event packets into digits, each exactly once (RFC 4733 2.5.2).

    An event is identified by its RTP timestamp: every update and the three
    end packets repeat it, so the digit is reported on the first packet seen
    with a new timestamp (the marker packet, or a later one if that was
    lost) and every other packet of the event is absorbed.  A long event
    split into segments (2.5.1.5) continues with a new timestamp but no
    marker and is not reported again.  A new SSRC is accepted: some senders
    (sipp) start a fresh stream for events.
    """

    def __init__(self, memory: int = 16) -> None:
        self._recent: deque[tuple[int, int]] = deque(
            maxlen=memory
        )  # (ssrc, timestamp) already seen
        self._last: tuple[int, int, int, bool] | None = None  # ssrc, event, end timestamp, ended

    def feed(self, packet: RtpPacket, telephone_event_pt: int) -> str | None:
        if packet.payload_type != telephone_event_pt:
            return None
        try:
            event = TelephoneEvent.parse(packet.payload)
        except RtpError:
            return None
        if event.digit is None:  # flash and other signals: not keys
            return None
        key = (packet.ssrc, packet.timestamp)
        if key in self._recent:
            self._note(packet, event)
            return None
        continuation = self._continues(packet, event)
        self._recent.append(key)
        self._note(packet, event)
        return None if continuation else event.digit

    def _continues(self, packet: RtpPacket, event: TelephoneEvent) -> bool:
        """A new segment of a long event: same source and event, no marker, previous not ended."""
        if self._last is None or packet.marker:
            return False
        ssrc, code, end_ts, ended = self._last
        gap = (packet.timestamp - end_ts) & 0xFFFFFFFF
        return (
            ssrc == packet.ssrc
            and code == event.event
            and not ended
            and gap <= 8 * SAMPLES_PER_FRAME
        )

    def _note(self, packet: RtpPacket, event: TelephoneEvent) -> None:
        self._last = (
            packet.ssrc,
            event.event,
            (packet.timestamp + event.duration) & 0xFFFFFFFF,
            event.end,
        )


class DtmfSender:
    """Packets for one key press (RFC 4733 section 2.5.1).

    One timestamp for the whole event, the marker bit on the first packet,
    an update every 20 ms with the duration so far, and the final packet
    (E bit) sent three times, 20 ms apart, each with its own sequence number.
    ``packets`` returns ``(offset_frames, packet)``: send each ``offset``
    ticks after the first.
    """

    def __init__(self, volume: int = 10) -> None:
        self.volume = volume

    def packets(
        self, digit: str, *, ssrc: int, seq: int, timestamp: int, pt: int, duration_ms: int = 100
    ) -> list[tuple[int, RtpPacket]]:
        code = event_code(digit)
        updates = max(1, round(duration_ms / 20))
        out: list[tuple[int, RtpPacket]] = []
        for i in range(updates + 2):
            end = i >= updates - 1
            duration = min(i + 1, updates) * SAMPLES_PER_FRAME
            payload = bytes(TelephoneEvent(code, end, self.volume, duration))
            packet = RtpPacket(pt, (seq + i) & 0xFFFF, timestamp, ssrc, payload, marker=i == 0)
            out.append((i, packet))
        return out


# --------------------------------------------------------------------------- in-band

ROWS = (697.0, 770.0, 852.0, 941.0)
COLS = (1209.0, 1336.0, 1477.0, 1633.0)
KEYPAD = ("123A", "456B", "789C", "*0#D")
RATE = 8000
PCM16 = npt.NDArray[np.int16]


def dtmf_tone(digit: str, duration_ms: int = 100, level: float = 0.25, rate: int = RATE) -> PCM16:
    """The two-tone PCM of a key (each tone at ``level`` of full scale)."""
    code = event_code(digit)
    key = EVENTS[code]
    row = next(r for r, keys in enumerate(KEYPAD) if key in keys)
    col = KEYPAD[row].index(key)
    t = np.arange(int(rate * duration_ms / 1000)) / rate
    tone = np.sin(2 * np.pi * ROWS[row] * t) + np.sin(2 * np.pi * COLS[col] * t)
    return (tone * level * 32767).astype(np.int16)


@functools.cache
def _goertzel_basis(window: int) -> npt.NDArray[np.float32]:
    """The real basis (cos | sin) of the 16 tones, ``window`` x 32, in single precision (twice
    the products per instruction; the checks are in dB).  One for every stream."""
    freqs = np.array(ROWS + COLS + tuple(2 * f for f in ROWS + COLS))
    phase = 2 * np.pi * np.outer(np.arange(window), freqs) / RATE
    basis = np.ascontiguousarray(np.hstack([np.cos(phase), np.sin(phase)]), dtype=np.float32)
    basis.flags.writeable = False
    return basis


_ZEROS = np.zeros(2 * 80, dtype=np.float32)  # padding: up to two rows of InbandBank.HOP


class InbandBank:
    """In-band DTMF detection (ITU-T Q.23/Q.24 style) for many streams at once: 8 kHz PCM in,
    keys out.

    A 205-sample window (25.6 ms) slides by 10 ms; in each window the power at
    the eight DTMF frequencies and their second harmonics is computed (the
    Goertzel terms, evaluated as a matrix product).  A window holds a key when:

    * both the strongest row and column tone are above ``min_level`` (dBFS
      per tone, about -30 dBm0 with the default),
    * twist is within +``max_twist``/-``max_reverse_twist`` dB,
    * each tone beats the others of its group by ``min_peak_ratio`` dB,
    * the two tones hold at least ``min_purity`` of the window's energy and
      their second harmonics are weak (speech and music are broadband and
      harmonic: this is what prevents talk-off).

    A key is reported once when it holds for ``min_windows`` consecutive
    windows (about 40 ms), and again only after ``release_windows`` windows
    without it, so a short dropout in the tone does not repeat the key.

    Each call that listens has an :class:`InbandStream` (:meth:`stream`) and feeds it its
    20 ms frames; :meth:`analyse` (the media clock runs it once a tick) analyses every stream
    that has ``batch`` samples waiting (40 ms by default), all of them in one matrix product.
    What costs at 50 frames a second per call is numpy's overhead per operation, not the
    arithmetic, so a thousand calls cost a few operations a tick instead of a dozen per call
    per frame.  A key is reported at most ``batch`` samples later than frame by frame would;
    the windows and the decisions are the same.
    """

    WINDOW = 205
    HOP = 80
    BATCH = 320  # samples a stream gathers before it is analysed (two 20 ms frames)

    def __init__(
        self,
        *,
        min_level: float = -36.0,
        max_twist: float = 8.0,
        max_reverse_twist: float = 4.0,
        min_peak_ratio: float = 8.0,
        min_purity: float = 0.80,
        min_windows: int = 2,
        release_windows: int = 4,
        batch: int = BATCH,
    ) -> None:
        self.min_level = min_level
        self.min_purity = min_purity
        self.min_windows = min_windows
        self.release_windows = release_windows
        self.batch = batch
        self._basis = _goertzel_basis(self.WINDOW)
        # The samples stay in int16 units (full scale 32768) and the powers unscaled until a
        # window reaches _decide: the floor is converted here once instead of every sample.
        self._floor = 10 ** (min_level / 10) * self.WINDOW / 2  # a tone at min_level, as energy
        self._energy_floor = 2 * self._floor * 32768.0**2  # window energy of two such tones
        self._twist_hi = 10 ** (max_reverse_twist / 10)
        self._twist_lo = 10 ** (-max_twist / 10)
        self._peak = 10 ** (min_peak_ratio / 10)
        # squares of the projections -> (power of the eight fundamentals) / min_purity, unscaled
        weights = np.zeros(32, dtype=np.float32)
        weights[0:8] = weights[16:24] = 2.0 / (self.WINDOW * min_purity)
        self._purity_weights = weights
        self._ready: list[InbandStream] = []  # streams with ``batch`` samples waiting

    def stream(self) -> InbandStream:
        """A new stream to feed (one call's received audio)."""
        return InbandStream(self)

    def analyse(self) -> list[tuple[InbandStream, str]]:
        """Analyse every stream with ``batch`` samples waiting; the keys that started, in order.

        The streams' audio is laid end to end, each stream starting on a multiple of ``HOP``,
        and seen as rows of ``HOP`` samples.  A window is then three consecutive rows (80 + 80
        + 45 samples), so its projections are three matrix products of the rows, shifted by one
        row each, and its energy three sums: all windows of all streams without copying a
        window out (a row straddling two streams is computed too, and not used).
        """
        ready, self._ready = self._ready, []
        if not ready:
            return []
        window, hop = self.WINDOW, self.HOP
        parts: list[npt.NDArray[Any]] = []
        spans: list[tuple[int, int, int]] = []  # per stream: first row, samples, windows
        rows = 0
        for stream in ready:
            stream.queued = False
            parts.append(stream.buffer)
            parts.extend(stream.pending)
            samples = len(stream.buffer) + stream.pending_samples
            stream.pending, stream.pending_samples = [], 0
            count = (samples - window) // hop + 1 if samples >= window else 0
            spans.append((rows, samples, count))
            used = -(-samples // hop)
            if used * hop > samples:
                parts.append(_ZEROS[: used * hop - samples])  # the next stream starts on a row
            rows += used
        parts.append(_ZEROS[: 2 * hop])  # the last windows reach two rows further
        audio = np.concatenate(parts, dtype=np.float32)
        blocks = audio.reshape(-1, hop)  # rows + 2 of them
        tail = window - 2 * hop  # the third row's part of a window (45 samples)
        squared = blocks * blocks
        whole, part = squared.sum(axis=1), squared[:, :tail].sum(axis=1)
        energies = whole[:-2] + whole[1:-1] + part[2:]  # window r: rows r, r + 1 and r + 2
        candidates: list[int] = []
        squares: npt.NDArray[np.float32] | None = None
        if energies.max() >= self._energy_floor:  # else too quiet for two tones anywhere
            b = self._basis
            projections = blocks[:-2] @ b[:hop]
            projections += blocks[1:-1] @ b[hop : 2 * hop]
            projections += blocks[2:, :tail] @ b[2 * hop :]
            squares = projections * projections
            # The purity check first, for all windows at once, in its weaker form: the eight
            # fundamentals together must hold min_purity of the window's energy (row and
            # column peak alone must, in _decide).  Speech and music fail it, so most windows
            # of talking callers never reach the checks in Python.
            margins = squares @ self._purity_weights - energies
            candidates = np.flatnonzero(margins > 0.0).tolist()
        keys: list[tuple[InbandStream, str]] = []
        candidates.append(rows)  # (the end)
        taken = 0
        for stream, (first, samples, count) in zip(ready, spans, strict=True):
            start = first * hop
            stream.buffer = audio[start + count * hop : start + samples]
            while candidates[taken] < first:  # a row straddling two streams
                taken += 1
            if candidates[taken] < first + count:
                assert squares is not None
                for i in range(first, first + count):
                    decision = None
                    if i == candidates[taken]:
                        decision = self._decide(float(energies[i]), squares[i])
                        taken += 1
                    if key := stream.step(decision, self):
                        keys.append((stream, key))
            elif stream.candidate is None and stream.reported is None:
                stream.count += count  # what stepping through ``count`` Nones would do
            else:
                for _ in range(count):
                    stream.step(None, self)
        return keys

    def _decide(self, raw_energy: float, squares: npt.NDArray[np.floating[Any]]) -> str | None:
        """The checks of the class docstring on one window: its energy and the squares of its
        32 projections, unscaled (int16 units)."""
        if raw_energy <= 0.0:
            return None
        scale = 2.0 / (self.WINDOW * 32768.0**2)
        power = ((squares[:16] + squares[16:]) * scale).tolist()  # plain floats from here: fast
        energy = raw_energy / 32768.0**2
        rows, cols = power[0:4], power[4:8]
        row_p, col_p = max(rows), max(cols)
        if row_p < self._floor or col_p < self._floor:
            return None
        if row_p + col_p < self.min_purity * energy:
            return None
        if not self._twist_lo <= col_p / row_p <= self._twist_hi:
            return None
        r, c = rows.index(row_p), cols.index(col_p)
        limit_r, limit_c = row_p / self._peak, col_p / self._peak
        if any(p > limit_r for i, p in enumerate(rows) if i != r):
            return None
        if any(p > limit_c for i, p in enumerate(cols) if i != c):
            return None
        if power[8 + r] * 10 > row_p or power[12 + c] * 10 > col_p:
            return None
        return KEYPAD[r][c]


class InbandStream:
    """One call's received audio in an :class:`InbandBank`: the samples waiting for the next
    analysis, the tail of the last one (the next window starts there), and the key state."""

    __slots__ = (
        "bank",
        "pending",
        "pending_samples",
        "buffer",
        "queued",
        "candidate",
        "count",
        "reported",
        "absent",
        "listener",
    )

    def __init__(self, bank: InbandBank) -> None:
        self.bank: InbandBank | None = bank
        self.pending: list[npt.NDArray[np.int16]] = []
        self.pending_samples = 0
        self.buffer: npt.NDArray[Any] = np.zeros(0, dtype=np.float32)
        self.queued = False  # in the bank's list of streams to analyse
        self.candidate: str | None = None
        self.count = 0
        self.reported: str | None = None
        self.absent = 0
        self.listener: Callable[[str], None] | None = None  # for the owner's use: who hears keys

    def feed(self, pcm16_8k: npt.ArrayLike) -> None:
        """Samples received (any length): analysed once ``batch`` of them are waiting."""
        bank = self.bank
        if bank is None:  # closed: a late frame is dropped
            return
        samples = np.asarray(pcm16_8k)
        self.pending.append(samples)
        self.pending_samples += len(samples)
        if not self.queued and self.pending_samples >= bank.batch:
            self.queued = True
            bank._ready.append(self)  # noqa: SLF001 -- the bank's own list, kept by its streams

    def close(self) -> None:
        """Stop: the bank drops the stream, and the stream its listener."""
        self._drop_pending()
        self.bank = self.listener = None

    def reset(self) -> None:
        """Forget the audio and the key state (a new detection from here)."""
        self._drop_pending()
        self.buffer = np.zeros(0, dtype=np.float32)
        self.candidate, self.count, self.reported, self.absent = None, 0, None, 0

    def _drop_pending(self) -> None:
        if self.bank is not None and self.queued:
            self.bank._ready.remove(self)  # noqa: SLF001 -- the bank's own list, kept by its streams
        self.queued = False
        self.pending, self.pending_samples = [], 0

    def step(self, key: str | None, bank: InbandBank) -> str | None:
        """One window's decision through the hold and release rules; the key if one starts."""
        if key is not None and key == self.reported:
            self.absent = 0
            return None
        if key != self.candidate:
            self.candidate, self.count = key, 0
        self.count += 1
        if self.reported is not None:
            self.absent += 1
            if self.absent >= bank.release_windows:
                self.reported = None
        if key is not None and self.reported is None and self.count >= bank.min_windows:
            self.reported, self.absent = key, 0
            return key
        return None


class GoertzelDetector:
    """In-band DTMF on one stream, keys returned by :meth:`feed`: an :class:`InbandBank` of one
    (its docstring has the checks; the parameters are the bank's)."""

    def __init__(self, **parameters: Any) -> None:
        self.bank = InbandBank(**parameters)
        self._stream = self.bank.stream()

    def reset(self) -> None:
        self._stream.reset()

    def feed(self, pcm16_8k: npt.ArrayLike) -> list[str]:
        """Feed samples (any length); returns the keys that started in the samples analysed."""
        self._stream.feed(pcm16_8k)
        return [key for _, key in self.bank.analyse()]
