"""A conference room's audio: every participant hears the sum of the others, on the media clock.

A :class:`Mixer` is one room.  Each participant has a :class:`Seat`: the participant's
decoded audio goes into the seat (:meth:`Seat.push`, a media session's ``on_audio``), and
the participant's session plays the seat (:meth:`Seat.frame`, a player of
:meth:`~ivr.media.session.MediaSession.play`).  The mixer is a shared source of the
:class:`~ivr.media.clock.MediaClock`: the clock calls :meth:`Mixer.advance` once per 20 ms
tick, before any session sends, and the mixer makes that tick's output for every seat at
once (one mix per tick per room, not one per pair of participants):

* one frame is taken from each seat's jitter buffer (:class:`~ivr.media.relay.AudioRelay`)
  into the rows of an ``(N, 160)`` int32 matrix; a seat with nothing queued (silence, a
  jitter gap, a phone that sends nothing) is a row of zeros: the room never waits for anyone;
* the sum of the rows is computed once, and participant *i* hears ``sum - row[i]``: the
  others, never itself;
* sounds for the room (entry and exit tones) are added to every row but the excluded one;
* the rows go through the limiter, then through the G.711 table of each codec some seat
  asks for, as one numpy take over the whole matrix; a seat's frame is then one row.

Clipping protection: a *soft limiter*, memoryless and per sample.  Samples up to
``KNEE`` (about -2.5 dBFS) pass unchanged, so a single talker (the usual case in a
meeting) reaches the others bit-exact; above the knee the excess is bent by ``tanh``
towards full scale, which it never reaches.  A saturating sum would be cheaper but
flattens the peaks of two people talking loudly at once into square edges (odd harmonics,
the harsh crackle of an overloaded PBX); the knee bends them smoothly instead, and costs
nothing on ticks where no sample exceeds it (numpy computes ``tanh`` only for the few
samples above the knee).  It needs no state and adds no delay, unlike an automatic gain
control, so it cannot pump or lag behind someone who starts to shout.

Sans-IO: the mixer is told the tick number, never reads a clock, opens nothing.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES
from ivr.media.relay import AudioRelay

KNEE = 24576  # samples up to this magnitude pass the limiter unchanged (-2.5 dBFS)
FULL_SCALE = 32767
_SPAN = FULL_SCALE - KNEE

PCM = npt.NDArray[np.int16]


def soft_limit(mix: npt.NDArray[np.int32]) -> npt.NDArray[np.int32]:
    """Bend the samples of ``mix`` above ``KNEE`` towards full scale, in place; the rest is untouched."""
    magnitude = np.abs(mix)
    over = magnitude > KNEE
    if over.any():
        excess = (magnitude[over] - KNEE) / _SPAN
        bent = KNEE + np.floor(_SPAN * np.tanh(excess)).astype(np.int32)
        mix[over] = np.where(mix[over] < 0, -bent, bent)
    return mix


class Seat:
    """One participant's place in a room: audio in (``push``), this tick's mix out (``frame``)."""

    __slots__ = ("mixer", "index", "relay", "name")

    def __init__(self, mixer: Mixer, index: int, name: str = "") -> None:
        self.mixer = mixer
        self.index = index  # row of the mix matrix; -1 once the seat has left
        self.relay = AudioRelay()
        self.name = name

    def push(self, pcm: PCM) -> None:
        """The participant's decoded audio (8 kHz int16), at the pace it arrives."""
        if self.index >= 0:
            self.relay.push(pcm)

    def frame(self, payload_type: int) -> bytes:
        """What this participant hears during the current tick, in its codec (the others' sum)."""
        return self.mixer.frame_for(self, payload_type)

    def pcm_frame(self) -> PCM:
        """The same as 8 kHz int16 samples (recordings, tests)."""
        return self.mixer.pcm_for(self)

    @property
    def seated(self) -> bool:
        return self.index >= 0


class _Sound:
    """A sound heard by the whole room but one seat (an entry or exit tone)."""

    __slots__ = ("pcm", "position", "exclude")

    def __init__(self, pcm: PCM, exclude: Seat | None) -> None:
        self.pcm = pcm
        self.position = 0
        self.exclude = exclude


class Mixer:
    """One room's mix on the shared tick (see the module docstring).

    ``add()`` gives a new :class:`Seat`, ``remove(seat)`` takes it out; ``advance(tick_no)``
    (the clock's, once per tick) mixes; ``sound(pcm, exclude=seat)`` plays a sound to the
    room.  Stats: ``ticks`` mixed, ``limited`` ticks on which the limiter bent samples.
    """

    def __init__(self, name: str = "") -> None:
        self.name = name
        self.seats: list[Seat] = []
        self._sounds: deque[_Sound] = deque()
        self._tick: int | None = None
        self._inputs = np.zeros((0, FRAME_SAMPLES), dtype=np.int32)
        self._mix = np.zeros((0, FRAME_SAMPLES), dtype=np.int32)
        self._encoded: dict[int, npt.NDArray[np.uint8]] = {}
        self.ticks = 0
        self.limited = 0

    # -- membership

    def add(self, name: str = "") -> Seat:
        seat = Seat(self, len(self.seats), name)
        self.seats.append(seat)
        self._resize()
        return seat

    def remove(self, seat: Seat) -> None:
        if seat.index < 0 or seat.mixer is not self:
            return
        del self.seats[seat.index]
        seat.index = -1
        for i, other in enumerate(self.seats):
            other.index = i
        for sound in self._sounds:
            if sound.exclude is seat:
                sound.exclude = None
        self._resize()

    def __len__(self) -> int:
        return len(self.seats)

    def sound(self, pcm: PCM, *, exclude: Seat | None = None) -> None:
        """Play ``pcm`` to every seat but ``exclude``, mixed with the talk, from the next tick on."""
        if len(pcm):
            self._sounds.append(_Sound(np.asarray(pcm, dtype=np.int16), exclude))

    # -- the tick

    def advance(self, tick_no: int) -> None:
        """Mix this tick for every seat (idempotent per tick, like every shared source)."""
        if tick_no == self._tick:
            return
        self._tick = tick_no
        self.ticks += 1
        inputs = self._inputs
        for i, seat in enumerate(self.seats):
            pcm = seat.relay.pcm_frame()
            if pcm is None:
                inputs[i] = 0  # nothing from this participant now: the room does not wait
            else:
                inputs[i] = pcm
        mix = self._mix
        np.subtract(inputs.sum(axis=0), inputs, out=mix)  # each row: everyone but itself
        if self._sounds:
            self._add_sounds(mix)
        if np.abs(mix).max(initial=0) > KNEE:
            soft_limit(mix)
            self.limited += 1
        self._encoded.clear()

    def frame_for(self, seat: Seat, payload_type: int) -> bytes:
        """``seat``'s row of this tick's mix in G.711 ``payload_type`` (whole matrix encoded once per codec)."""
        encoded = self._encoded.get(payload_type)
        if encoded is None:
            table = g711.ULAW_ENCODE if payload_type == g711.PCMU else g711.ALAW_ENCODE
            encoded = self._encoded[payload_type] = table.take(self._mix + 32768)
        if seat.index < 0 or seat.index >= len(encoded):
            return _SILENCE[payload_type]
        return encoded[seat.index].tobytes()

    def pcm_for(self, seat: Seat) -> PCM:
        if seat.index < 0 or seat.index >= len(self._mix):
            return np.zeros(FRAME_SAMPLES, dtype=np.int16)
        return self._mix[seat.index].astype(np.int16)

    # -- internals

    def _resize(self) -> None:
        n = len(self.seats)
        self._inputs = np.zeros((n, FRAME_SAMPLES), dtype=np.int32)
        self._mix = np.zeros((n, FRAME_SAMPLES), dtype=np.int32)
        self._encoded.clear()

    def _add_sounds(self, mix: npt.NDArray[np.int32]) -> None:
        for sound in list(self._sounds):
            chunk = sound.pcm[sound.position : sound.position + FRAME_SAMPLES]
            sound.position += FRAME_SAMPLES
            frame = np.zeros(FRAME_SAMPLES, dtype=np.int32)
            frame[: len(chunk)] = chunk
            mix += frame
            if sound.exclude is not None and sound.exclude.index >= 0:
                mix[sound.exclude.index] -= frame
            if sound.position >= len(sound.pcm):
                self._sounds.remove(sound)


_SILENCE = {pt: bytes([code]) * FRAME_SAMPLES for pt, code in g711.SILENCE.items()}
