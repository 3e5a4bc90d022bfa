"""Endpointing: deciding from the caller's audio when an utterance started and when it ended.

:class:`Endpointer` is sans-IO: it is fed the caller's 20 ms frames (8 kHz
16-bit, 160 samples) in order and counts time in frames, so it needs no
clock.  Voice activity comes from webrtcvad (the WebRTC GMM detector).  Speech
starts after ``start_frames`` voiced frames in a row; the utterance is
``done`` after ``hangover`` seconds of non-speech, or at ``max_utterance``
seconds after it started; ``no_speech`` when nothing started within
``no_speech_timeout`` seconds.  After ``done``/``no_speech`` the verdict
stays put until :meth:`Endpointer.reset`.
"""

from __future__ import annotations

from typing import Literal

import _webrtcvad  # webrtcvad's C extension (installed with it)
import numpy as np
import numpy.typing as npt
import webrtcvad

State = Literal["waiting", "speaking", "done", "no_speech"]
RATE = 8000
FRAME_SAMPLES = 160
FRAME_SECONDS = FRAME_SAMPLES / RATE


class Endpointer:
    """Start and end of one utterance from 20 ms frames (webrtcvad at 8 kHz)."""

    def __init__(
        self,
        no_speech_timeout: float = 5.0,
        max_utterance: float = 8.0,
        hangover: float = 0.6,
        *,
        aggressiveness: int = 2,
        start_frames: int = 3,
    ) -> None:
        if not 0 <= aggressiveness <= 3:
            raise ValueError(f"aggressiveness must be 0..3, got {aggressiveness}")
        self.no_speech_timeout = no_speech_timeout
        self.max_utterance = max_utterance
        self.hangover = hangover
        self.start_frames = start_frames
        self._vad = webrtcvad.Vad(aggressiveness)
        self._handle = self._vad._vad  # the detector's state, for _webrtcvad.process (see feed)
        self.reset()

    def reset(self) -> None:
        self.state: State = "waiting"
        self.frames = 0  # frames fed since reset
        self.speech_start: int | None = None  # frame index where speech began
        self.speech_end: int | None = None  # frame index after the last voiced frame
        self._voiced_run = 0
        self._silent_run = 0

    @property
    def speech_seconds(self) -> tuple[float, float] | None:
        """(start, end) of the utterance in seconds since reset, once it has started."""
        if self.speech_start is None:
            return None
        end = self.speech_end if self.speech_end is not None else self.frames
        return self.speech_start * FRAME_SECONDS, end * FRAME_SECONDS

    def feed(self, pcm16_8k_frame: npt.NDArray[np.int16] | bytes) -> State:
        """One 20 ms frame (160 samples); returns the state after it."""
        state = self.state
        if state == "done" or state == "no_speech":
            return state
        frame = pcm16_8k_frame
        if not isinstance(frame, bytes):
            frame = np.ascontiguousarray(frame, dtype=np.int16)  # the decoded frame itself, no copy
        size = len(frame) if isinstance(frame, bytes) else frame.nbytes
        if size != FRAME_SAMPLES * 2:
            raise ValueError(f"Endpointer.feed wants 160 samples (20 ms at 8 kHz), got {size // 2}")
        # webrtcvad's C function itself, on the frame's own buffer: its Python wrapper (Vad.is_speech)
        # wants bytes (a copy of every frame) and re-checks the length on every call.
        voiced = _webrtcvad.process(self._handle, RATE, frame, FRAME_SAMPLES)
        self.frames += 1
        if state == "waiting":
            self._waiting(voiced)
        else:
            self._speaking(voiced)
        return self.state

    def _waiting(self, voiced: bool) -> None:
        self._voiced_run = self._voiced_run + 1 if voiced else 0
        if self._voiced_run >= self.start_frames:
            self.state = "speaking"
            self.speech_start = self.frames - self._voiced_run
        elif self.frames * FRAME_SECONDS >= self.no_speech_timeout:
            self.state = "no_speech"

    def _speaking(self, voiced: bool) -> None:
        assert self.speech_start is not None
        self._silent_run = 0 if voiced else self._silent_run + 1
        if voiced:
            self.speech_end = self.frames
        if self._silent_run * FRAME_SECONDS >= self.hangover:
            self.state = "done"
        elif (self.frames - self.speech_start) * FRAME_SECONDS >= self.max_utterance:
            self.state = "done"
            self.speech_end = self.frames
