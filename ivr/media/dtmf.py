"""DTMF in the media: RFC 4733 events and in-band tones.

Sans-IO: packets and PCM arrays in, digits or packets out.  Keys sent by SIP
INFO are signalling: ivr.sip.info reads those bodies.

* :class:`TelephoneEvent` -- the 4-byte RFC 4733 payload, ``parse``/``__bytes__``.
* :class:`DtmfReceiver` -- reports each RFC 4733 event exactly once.
* :class:`DtmfSender` -- the packets for one key press, with their send offsets.
* :class:`GoertzelDetector` -- in-band DTMF on 8 kHz PCM with Q.24-style checks.
* :func:`dtmf_tone` -- the PCM of a key, for in-band sending.
"""

from __future__ import annotations

import functools
import struct
from collections import deque
from dataclasses import dataclass

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
def _goertzel_basis(window: int) -> npt.NDArray[np.float64]:
    """The real basis (cos | sin) of the 16 tones, ``window`` x 32: all windows of a batch in
    one matrix product.  One for every detector: 52 kB each would crowd the CPU's caches with
    a thousand calls listening."""
    freqs = np.array(ROWS + COLS + tuple(2 * f for f in ROWS + COLS))
    phase = 2 * np.pi * np.outer(np.arange(window), freqs) / RATE
    basis = np.ascontiguousarray(np.hstack([np.cos(phase), np.sin(phase)]))
    basis.flags.writeable = False
    return basis


class GoertzelDetector:
    """In-band DTMF detection on 8 kHz PCM (ITU-T Q.23/Q.24 style).

    A 205-sample window (25.6 ms) slides by 10 ms; in each window the power at
    the eight DTMF frequencies and their second harmonics is computed (the
    Goertzel terms, evaluated as one small matrix product).  A window holds a
    key when:

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

    The received audio is analysed ``batch`` samples at a time (40 ms by
    default): a call feeds 20 ms frames, 50 a second for as long as it listens,
    and what costs is numpy's overhead per operation, not the arithmetic, so
    two frames' windows share one pass.  A key is reported at most that much
    later; the windows and the decisions are the same as frame by frame.
    """

    WINDOW = 205
    HOP = 80
    BATCH = 320  # samples analysed at once (two 20 ms frames)

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
        self.max_twist = max_twist
        self.max_reverse_twist = max_reverse_twist
        self.min_peak_ratio = min_peak_ratio
        self.min_purity = min_purity
        self.min_windows = min_windows
        self.release_windows = release_windows
        self.batch = batch
        self._basis = _goertzel_basis(self.WINDOW)
        # The samples stay in int16 units (full scale 32768) and the tone powers unscaled
        # (their 2 / WINDOW left out): the ratios below do not depend on the scale, and
        # the level floor is converted once, here, instead of every sample and power per frame.
        self._floor = 10 ** (min_level / 10) * self.WINDOW / 2  # a tone at min_level, as energy
        self._energy_floor = 2 * self._floor * 32768.0**2  # window energy of two such tones
        self._twist_hi = 10 ** (max_reverse_twist / 10)
        self._twist_lo = 10 ** (-max_twist / 10)
        self._peak = 10 ** (min_peak_ratio / 10)
        # squares of the projections -> (power of the eight fundamentals) / min_purity, unscaled
        fundamentals = np.zeros(32)
        fundamentals[0:8] = fundamentals[16:24] = 2.0 / (self.WINDOW * min_purity)
        self._purity_weights = fundamentals
        self._buffer: npt.NDArray[np.float64] = np.zeros(0, dtype=np.float64)
        self._pending: list[npt.NDArray[np.int16]] = []
        self._pending_samples = 0
        self._candidate: str | None = None
        self._count = 0
        self._reported: str | None = None
        self._absent = 0

    def reset(self) -> None:
        self._buffer = np.zeros(0, dtype=np.float64)
        self._pending, self._pending_samples = [], 0
        self._candidate, self._count, self._reported, self._absent = None, 0, None, 0

    def feed(self, pcm16_8k: npt.ArrayLike) -> list[str]:
        """Feed samples (any length); returns the keys that started in the samples analysed.

        Samples wait until ``batch`` of them have come (see the class docstring).
        """
        samples = np.asarray(pcm16_8k)
        self._pending.append(samples)
        self._pending_samples += len(samples)
        if self._pending_samples < self.batch:
            return []
        buffer = np.concatenate((self._buffer, *self._pending), dtype=np.float64)
        self._pending, self._pending_samples = [], 0
        count = (len(buffer) - self.WINDOW) // self.HOP + 1 if len(buffer) >= self.WINDOW else 0
        keys: list[str] = []
        stepped = False
        if count:
            # overlapping windows as a strided view (no copy), then one product for all of them
            windows = np.ndarray((count, self.WINDOW), np.float64, buffer, 0, (8 * self.HOP, 8))
            energies = np.einsum("ij,ij->i", windows, windows)
            if energies.max() >= self._energy_floor:
                projections = windows @ self._basis
                squares = projections * projections
                # The purity check first, for all windows at once, in its weaker form: the
                # eight fundamentals together must hold min_purity of the window's energy
                # (row and column peak alone must in _decide).  Speech and music fail it,
                # so most windows of a talking caller never reach the checks in Python.
                margins = squares @ self._purity_weights - energies
                if margins.max() > 0.0:
                    scale = 2.0 / (self.WINDOW * 32768.0**2)
                    for i, (margin, energy) in enumerate(
                        zip(margins.tolist(), energies.tolist(), strict=True)
                    ):
                        decision = None
                        if margin > 0.0:
                            power = (squares[i, :16] + squares[i, 16:]) * scale
                            decision = self._decide(energy / 32768.0**2, power.tolist())
                        if key := self._step(decision):
                            keys.append(key)
                    stepped = True
            if not stepped:  # no window holds a key
                if self._candidate is None and self._reported is None:
                    self._count += count  # what stepping through ``count`` Nones would do
                else:
                    for _ in range(count):
                        self._step(None)
        self._buffer = buffer[count * self.HOP :]
        return keys

    def classify(self, window: npt.NDArray[np.float64]) -> str | None:
        """The key held in one 205-sample window (floats, full scale 1.0), or None."""
        projection = window @ self._basis
        power = (projection[:16] ** 2 + projection[16:] ** 2) * (2.0 / self.WINDOW)
        return self._decide(float(np.dot(window, window)), power.tolist())

    def _decide(self, energy: float, power: list[float]) -> str | None:
        """The checks of the class docstring on one window's 16 tone powers (plain floats: fast)."""
        if energy <= 0.0:
            return None
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

    def _step(self, key: str | None) -> str | None:
        if key is not None and key == self._reported:
            self._absent = 0
            return None
        if key != self._candidate:
            self._candidate, self._count = key, 0
        self._count += 1
        if self._reported is not None:
            self._absent += 1
            if self._absent >= self.release_windows:
                self._reported = None
        if key is not None and self._reported is None and self._count >= self.min_windows:
            self._reported, self._absent = key, 0
            return key
        return None
