"""One direction of audio between two clocks: PCM in at the sender's pace, frames out on the tick.

An :class:`AudioRelay` is the small jitter buffer of a bridge (ivr.runtime.bridge: one per
direction) and of every participant of a conference room (:mod:`ivr.media.mixer`).  It
absorbs the two clocks' drift and network jitter: playback starts once ``PREBUFFER`` frames
are queued, an underrun gives silence and rebuffers, and more than ``MAX_FRAMES`` queued
drops the oldest audio so the delay never grows.
"""

from __future__ import annotations

from collections import deque

import numpy as np
import numpy.typing as npt

from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES

PREBUFFER = 2  # frames (40 ms) queued before a relay starts playing
MAX_FRAMES = 10  # frames (200 ms): beyond this the oldest audio is dropped


class AudioRelay:
    """PCM in at the sender's pace, G.711 frames out at the media clock's (one direction of a bridge)."""

    def __init__(self, prebuffer: int = PREBUFFER, max_frames: int = MAX_FRAMES) -> None:
        self.prebuffer = prebuffer * FRAME_SAMPLES
        self.limit = max_frames * FRAME_SAMPLES
        self.chunks: deque[npt.NDArray[np.int16]] = deque()
        self.queued = 0
        self.playing = False
        self.underruns = 0
        self.dropped = 0  # samples dropped to bound the delay
        self.frames_out = 0

    def push(self, pcm: npt.NDArray[np.int16]) -> None:
        if not len(pcm):
            return
        self.chunks.append(pcm)
        self.queued += len(pcm)
        excess = self.queued - self.limit
        if excess > 0:
            self._discard(excess)

    def pcm_frame(self) -> npt.NDArray[np.int16] | None:
        """The next 160 samples, or None (silence) while buffering."""
        if not self.playing:
            if self.queued < self.prebuffer:
                return None
            self.playing = True
        if self.queued < FRAME_SAMPLES:
            self.playing = False
            self.underruns += 1
            return None
        self.queued -= FRAME_SAMPLES
        self.frames_out += 1
        if len(self.chunks[0]) == FRAME_SAMPLES:  # the usual case: one received packet is one frame
            return self.chunks.popleft()
        out = np.empty(FRAME_SAMPLES, dtype=np.int16)
        filled = 0
        while filled < FRAME_SAMPLES:
            chunk = self.chunks[0]
            take = min(FRAME_SAMPLES - filled, len(chunk))
            out[filled : filled + take] = chunk[:take]
            filled += take
            if take == len(chunk):
                self.chunks.popleft()
            else:
                self.chunks[0] = chunk[take:]
        return out

    def frame(self, payload_type: int) -> bytes:
        """A player for :meth:`MediaSession.play`: this tick's frame in the leg's codec."""
        pcm = self.pcm_frame()
        if pcm is None:
            return _SILENCE[payload_type]
        return g711.encode(pcm, payload_type)

    def _discard(self, samples: int) -> None:
        self.dropped += samples
        self.queued -= samples
        while samples > 0:
            chunk = self.chunks[0]
            if len(chunk) <= samples:
                self.chunks.popleft()
                samples -= len(chunk)
            else:
                self.chunks[0] = chunk[samples:]
                samples = 0



_SILENCE = {pt: bytes([code]) * FRAME_SAMPLES for pt, code in g711.SILENCE.items()}
