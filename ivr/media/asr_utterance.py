"""One utterance for the engines that decode whole utterances (moonshine, whisper): buffering,
the early decode during the endpointer's hangover, the audio front end, the scored result.

Sequence-to-sequence models read the whole utterance before they write, so a session
(:class:`UtteranceSession`) buffers the 8 kHz frames and decodes on ``finish``.  The decode
need not wait for the end of speech: once the caller has paused for :data:`EARLY_DECODE`
seconds, the audio so far is decoded in a worker thread while the endpointer waits out its
hangover (0.6 s), and ``finish`` takes that result unless the caller spoke again.  An engine
supplies the decode (audio to :class:`Scored`) and the margin a phrase must clear; the rest
is here, once.

The front end both engines use: :func:`denoise` (spectral subtraction of stationary line
noise) and :func:`speech_only` (the audio cut to what webrtcvad calls speech, plus 0.1 s).
"""

from __future__ import annotations

import concurrent.futures
import threading
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from ivr.media.recognizer import PCM16, RecognizerError

#: Seconds of non-speech after the caller spoke at which the decode starts on the audio so far,
#: hidden in the endpointer's hangover (None: decode only on finish).
EARLY_DECODE: float | None = 0.2


@dataclass(frozen=True)
class Scored:
    """An engine's best phrase ("" when none), its log-probability margin over the engine's
    rival for speech outside the grammar (moonshine's filler, whisper's free decode), and its
    posterior against the other phrases and that rival."""

    text: str
    margin: float
    posterior: float


NOTHING = Scored("", -np.inf, 0.0)


NOISE_QUANTILE = 0.2  # the quietest fifth of the frames estimate the line noise
NOISE_OVERSUBTRACT = 4.0
NOISE_FLOOR = 0.05  # the most a frequency bin is attenuated (amplitude), against musical noise
SPEECH_MARGIN = 0.1  # seconds kept before the first and after the last speech frame
MIN_SPEECH_RUN = 10  # 10 ms frames: a shorter run of "speech" is not a word
_FFT, _HOP = 256, 128


def denoise(pcm: PCM16) -> PCM16:
    """Spectral subtraction of stationary line noise (8 kHz, 32 ms Hann frames, half overlap).

    Moonshine writes nothing, or another name, on noisy narrowband audio far more often than on
    clean audio; the noise estimate is the mean spectrum of the utterance's quietest frames.
    """
    x = np.asarray(pcm, dtype=np.float32)
    if len(x) < _FFT:
        return np.asarray(pcm, dtype=np.int16)
    window = np.hanning(_FFT).astype(np.float32)
    padded = np.concatenate([np.zeros(_FFT, np.float32), x, np.zeros(_FFT, np.float32)])
    frames = np.lib.stride_tricks.sliding_window_view(padded, _FFT)[::_HOP] * window
    spectra = np.fft.rfft(frames, axis=1)
    power = np.abs(spectra) ** 2
    energy = power.sum(axis=1)
    noise = power[energy <= np.quantile(energy, NOISE_QUANTILE)].mean(axis=0)
    gain = np.sqrt(np.maximum(1.0 - NOISE_OVERSUBTRACT * noise / np.maximum(power, 1e-9), NOISE_FLOOR**2))
    cleaned = np.fft.irfft(spectra * gain, n=_FFT, axis=1) * window
    out = np.zeros(len(padded), np.float32)
    norm = np.zeros(len(padded), np.float32)
    for i, frame in enumerate(cleaned):
        out[i * _HOP : i * _HOP + _FFT] += frame
        norm[i * _HOP : i * _HOP + _FFT] += window**2
    restored = out[_FFT : _FFT + len(x)] / np.maximum(norm[_FFT : _FFT + len(x)], 1e-3)
    return np.clip(restored, -32768, 32767).astype(np.int16)


def speech_only(pcm: PCM16) -> PCM16:
    """The audio from the first to the last 10 ms frame webrtcvad calls speech, plus a margin.

    Long stretches of line noise before and after a name make the model write nothing.  A new
    detector per utterance: webrtcvad adapts to what it has heard, which would make results
    depend on earlier calls.
    """
    import webrtcvad

    vad = webrtcvad.Vad(2)
    step = 80  # 10 ms at 8 kHz
    flags = [vad.is_speech(pcm[i : i + step].tobytes(), 8000) for i in range(0, len(pcm) - step + 1, step)]
    runs: list[tuple[int, int]] = []  # [start, end) in frames
    for i, flag in enumerate(flags):
        if flag and runs and runs[-1][1] == i:
            runs[-1] = (runs[-1][0], i + 1)
        elif flag:
            runs.append((i, i + 1))
    # Runs shorter than a syllable are clicks, or the detector settling on its first frames.
    runs = [r for r in runs if r[1] - r[0] >= MIN_SPEECH_RUN]
    if not runs:
        return pcm[:0]
    margin = int(SPEECH_MARGIN * 8000)
    return pcm[max(0, runs[0][0] * step - margin) : min(len(pcm), runs[-1][1] * step + margin)]


class UtteranceSession:
    """One utterance: audio is buffered as it arrives and decoded on :meth:`finish`.

    ``decode`` turns the whole utterance (8 kHz) into the engine's :class:`Scored` result;
    ``margin`` gives the margin over the rival a phrase must beat (read on every ``finish``,
    so the benchmark can change it).  Early decode: once the caller has spoken and
    :data:`EARLY_DECODE` seconds of non-speech follow, the audio so far is decoded in
    ``pool`` while the endpointer waits out its hangover; if the caller does not speak
    again, :meth:`finish` takes that result instead of starting the decode only then.  Speech
    after it makes it stale (the next pause starts another).
    """

    def __init__(
        self,
        engine: str,
        decode: Callable[[PCM16], Scored],
        margin: Callable[[], float],
        pool: concurrent.futures.Executor,
    ) -> None:
        self._engine = engine
        self._decode = decode
        self._margin = margin
        self._pool = pool
        self._frames: list[np.ndarray] | None = []
        self._lock = threading.Lock()
        self._pauses = _Pauses()
        self._early: concurrent.futures.Future[Scored] | None = None

    def accept(self, pcm16_8k: PCM16) -> None:
        with self._lock:
            if self._frames is None:
                raise RecognizerError(f"{self._engine}: accept() after finish()")
            self._frames.append(np.asarray(pcm16_8k, dtype=np.int16).copy())
            if self._pauses.feed(self._frames[-1]):
                self._early = None  # the caller went on speaking: that decode is stale
            if EARLY_DECODE is not None and self._early is None and self._pauses.paused(EARLY_DECODE):
                self._early = self._pool.submit(self._decode, np.concatenate(self._frames))

    def finish(self) -> tuple[str, float]:
        found = self.finish_scored()
        if not found.text or found.margin <= self._margin():
            return "", 0.0  # speech outside the directory fits the audio about as well
        return found.text, found.posterior

    def finish_scored(self) -> Scored:
        """The best phrase and its margin over the rival, whether or not it passes the margin."""
        with self._lock:
            frames, self._frames = self._frames, None
            early, self._early = self._early, None
        if early is not None:
            return early.result()
        return self._decode(np.concatenate(frames)) if frames else NOTHING

    def close(self) -> None:
        with self._lock:
            self._frames = None
            self._early = None


class _Pauses:
    """Whether the caller has spoken, and how long the silence since the last voiced 20 ms is."""

    START_FRAMES = 3  # voiced frames in a row before the caller counts as speaking (as the endpointer)

    def __init__(self) -> None:
        import webrtcvad

        self._vad = webrtcvad.Vad(2)
        self._run = 0
        self.spoke = False
        self.silent = 0  # frames since the last voiced one

    def feed(self, pcm: PCM16) -> bool:
        """Take frames; True when one of them was voiced once the caller had started speaking."""
        again = False
        for i in range(0, len(pcm) - 159, 160):
            voiced = self._vad.is_speech(pcm[i : i + 160].tobytes(), 8000)
            self._run = self._run + 1 if voiced else 0
            again = again or (voiced and self.spoke)
            self.spoke = self.spoke or self._run >= self.START_FRAMES
            self.silent = 0 if voiced else self.silent + 1
        return again

    def paused(self, seconds: float) -> bool:
        return self.spoke and self.silent * 0.02 >= seconds
