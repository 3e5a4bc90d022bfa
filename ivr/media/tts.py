"""Text-to-speech for ``say``: pyttsx3 on espeak-ng, cached on disk and in memory.

Each rendering is keyed by sha256 of (text, voice, rate) and kept as an 8 kHz
mono PCM16 WAV under the cache folder, so a text is synthesised once per
installation and later loads are a file read.  :meth:`TtsEngine.prerender`
renders the constant texts of a flow (:func:`ivr.dsl.texts.texts_of`) when it
loads (``ivr prompts render``, ``ivr serve`` at start-up): no caller waits for
synthesis.  Texts with ``{variables}`` are rendered at call time.  The engine
knows no deployment file: it takes a folder, a voice and a rate
(:class:`TtsSettings` is what it reads of the ``[tts]`` settings).

Synthesis runs in a short-lived worker process (this module run as a script,
about 0.15 s): pyttsx3's espeak driver is not re-entrant (one espeak instance
per process), and in a long-lived process espeak-ng applies a changed rate or
voice only to some later rendering, so each worker sets voice and rate once on
a fresh espeak instance.  Workers are independent, so renders from several
threads run side by side (at most :data:`MAX_WORKERS` at a time).
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import tempfile
import threading
import time
from collections import OrderedDict
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import soundfile

from ivr.media.clip import RATE, Clip
from ivr.media.prompts import load_audio, to_pcm16_8k

MIN_RATE, MAX_RATE = 80, 450  # words per minute espeak-ng accepts
MEMORY_CACHE_SIZE = 512
MAX_WORKERS = 2
CACHE_FOLDER = "tts-cache"  # below the data folder
WORKER_TIMEOUT = 60.0


class TtsError(RuntimeError):
    """Synthesis failed or was asked for something espeak-ng cannot do (unknown voice, bad rate)."""


class TtsSettings(Protocol):
    """The default voice and rate of a deployment (``[tts]`` in ivr.toml; the runtime passes its record)."""

    @property
    def voice(self) -> str: ...

    @property
    def rate(self) -> int: ...


def cache_key(text: str, voice: str, rate: int) -> str:
    """The hex sha256 naming the cached WAV of ``text`` in ``voice`` at ``rate``."""
    return hashlib.sha256(f"{voice}\0{rate}\0{text}".encode()).hexdigest()


class TtsEngine:
    """Renders text to 8 kHz clips with espeak-ng (via pyttsx3); thread-safe."""

    def __init__(self, cache_dir: Path, voice: str = "en-us", rate: int = 160) -> None:
        self.cache_dir = Path(cache_dir)
        self.voice = voice
        self.rate = rate
        self._voices: dict[str, str] | None = None  # accepted name -> espeak-ng voice file name
        self._voices_lock = threading.Lock()
        self._workers = threading.BoundedSemaphore(MAX_WORKERS)
        self._mem_lock = threading.Lock()
        self._clips: OrderedDict[str, Clip] = OrderedDict()
        self._rendering: dict[str, threading.Lock] = {}
        self.rendered = 0  # syntheses done by this engine (cache misses), for tests and logs

    @classmethod
    def in_data_folder(cls, data: Path, settings: TtsSettings) -> TtsEngine:
        """The engine of a deployment: its voice and rate, renderings cached in ``data/tts-cache``."""
        return cls(Path(data) / CACHE_FOLDER, voice=settings.voice, rate=settings.rate)

    def path_for(self, text: str, *, voice: str | None = None, rate: int | None = None) -> Path:
        """Where the rendering of ``text`` is (or will be) cached."""
        return self._path(cache_key(text, voice or self.voice, rate or self.rate))

    def _path(self, key: str) -> Path:
        return self.cache_dir / key[:2] / f"{key}.wav"

    def render(
        self,
        text: str,
        *,
        voice: str | None = None,
        rate: int | None = None,
        language: str | None = None,
    ) -> Clip:
        """The clip of ``text`` spoken in ``voice`` at ``rate`` (words per minute).

        Without a voice, ``language`` (the call's language, e.g. ``de``) picks espeak-ng's voice
        for it; the engine's default voice is the last resort.
        """
        voice = voice or (self.voice_for(language) if language else None) or self.voice
        rate = rate or self.rate
        key = cache_key(text, voice, rate)
        clip = self._in_memory(key)
        if clip is not None:
            return clip
        clip = load_audio(self._ensure_file(text, voice, rate, self._path(key)))
        clip.name = f"tts:{text[:40]}"
        with self._mem_lock:
            self._clips[key] = clip
            while len(self._clips) > MEMORY_CACHE_SIZE:
                self._clips.popitem(last=False)
        return clip

    def cached(self, text: str, *, voice: str | None = None, rate: int | None = None) -> Clip | None:
        """The clip :meth:`render` would give, if it is in memory already, else None; touches no file.

        A caller on the event loop plays a text rendered before straight away, without a
        hop through the thread pool (each hop is a chance for the loop to wait)."""
        return self._in_memory(cache_key(text, voice or self.voice, rate or self.rate))

    def _in_memory(self, key: str) -> Clip | None:
        with self._mem_lock:
            clip = self._clips.get(key)
            if clip is not None:
                self._clips.move_to_end(key)
            return clip

    def prerender(self, texts: Iterable[tuple[str, str | None, int | None]]) -> list[Path]:
        """Render every (text, voice, rate) not yet on disk; returns the cache file of each, in order.

        Missing texts of one voice and rate are synthesised by one worker process.
        """
        items = [(text, voice or self.voice, rate or self.rate) for text, voice, rate in texts]
        missing: dict[tuple[str, int], list[str]] = {}
        for text, voice, rate in items:
            if not self.path_for(text, voice=voice, rate=rate).is_file():
                missing.setdefault((voice, rate), []).append(text)
        for (voice, rate), batch in missing.items():
            self._render_files(list(dict.fromkeys(batch)), voice, rate)
        return [self.path_for(text, voice=voice, rate=rate) for text, voice, rate in items]

    def _ensure_file(self, text: str, voice: str, rate: int, path: Path) -> Path:
        if path.is_file():
            return path
        with self._mem_lock:
            key_lock = self._rendering.setdefault(path.name, threading.Lock())
        with key_lock:  # two calls asking for the same new text: one synthesis, the other waits
            if not path.is_file():
                self._render_files([text], voice, rate)
        with self._mem_lock:
            self._rendering.pop(path.name, None)
        return path

    def _render_files(self, texts: list[str], voice: str, rate: int) -> None:
        self._validate(voice, rate)
        spoken = [t for t in texts if t.strip()]
        for text, pcm in zip(spoken, self._synthesise(spoken, voice, rate), strict=True):
            _write_atomically(self.path_for(text, voice=voice, rate=rate), pcm)
        for text in texts:
            if not text.strip():
                _write_atomically(
                    self.path_for(text, voice=voice, rate=rate), np.zeros(0, np.int16)
                )

    def _validate(self, voice: str, rate: int) -> None:
        if not MIN_RATE <= rate <= MAX_RATE:
            raise TtsError(
                f"TTS rate {rate} out of range: espeak-ng speaks {MIN_RATE}-{MAX_RATE} words per minute"
            )
        voices = self.voices()
        if voice.lower() not in voices:
            sample = ", ".join(sorted(v for v in voices if v.startswith("en") and "/" not in v)[:6])
            raise TtsError(f"unknown TTS voice {voice!r}; espeak-ng voices include {sample}")

    def voice_for(self, language: str) -> str | None:
        """The voice espeak-ng has for ``language`` (``de``, ``fr-ch``, ``en_GB``), or None."""
        lang = language.lower().replace("_", "-")
        voices = self.voices()
        while lang:
            if lang in voices:
                return lang
            lang = lang.rpartition("-")[0]
        return None

    def voices(self) -> dict[str, str]:
        """Every name accepted for a voice (language like ``en-gb``, file name, identifier) -> file name."""
        with self._voices_lock:
            if self._voices is None:
                listed = json.loads(_run_worker(["--voices"], b""))
                names: dict[str, str] = {}
                for vid, langs in listed:  # languages first: file names and identifiers win a clash
                    for lang in langs:
                        names.setdefault(lang.lower(), _file_name(vid))
                for vid, _langs in listed:
                    names[vid.lower()] = names[_file_name(vid).lower()] = _file_name(vid)
                self._voices = names
            return self._voices

    def _synthesise(self, texts: list[str], voice: str, rate: int) -> list[np.ndarray]:
        """8 kHz audio of each text, synthesised by one worker process."""
        if not texts:
            return []
        self.cache_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=self.cache_dir, prefix="render-") as tmp:
            raws = [str(Path(tmp) / f"{i}.wav") for i in range(len(texts))]
            job = json.dumps([list(pair) for pair in zip(texts, raws, strict=True)]).encode()
            with self._workers:
                _run_worker([self.voices()[voice.lower()], str(rate)], job)
            self.rendered += len(texts)
            try:
                return [
                    to_pcm16_8k(*soundfile.read(raw, dtype="float32", always_2d=True))
                    for raw in raws
                ]
            except (OSError, soundfile.LibsndfileError) as exc:
                raise TtsError(
                    f"espeak-ng produced no audio for {texts[0][:60]!r}...: {exc}"
                ) from exc


def _file_name(voice_id: str) -> str:
    # espeak-ng's SetVoiceByName takes the voice file name ("en-us", "en"), not "gmw/en-us".
    return voice_id.rsplit("/", 1)[-1]


def _run_worker(args: list[str], stdin: bytes) -> bytes:
    """Run the synthesis worker (this module as a script) and return its stdout."""
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "ivr.media.tts", *args],
            input=stdin,
            capture_output=True,
            timeout=WORKER_TIMEOUT,
            check=False,
        )
    except subprocess.TimeoutExpired:
        raise TtsError(f"espeak-ng (pyttsx3) did not finish within {WORKER_TIMEOUT:g} s") from None
    if proc.returncode != 0:
        detail = proc.stderr.decode(errors="replace").strip().splitlines()
        raise TtsError(f"espeak-ng (pyttsx3) failed: {detail[-1] if detail else proc.returncode}")
    return proc.stdout


def _write_atomically(path: Path, pcm: np.ndarray) -> None:
    """Write the 8 kHz WAV under a temporary name and rename it: a crash never leaves half a file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp_name = tempfile.mkstemp(suffix=".tmp", dir=path.parent)
    os.close(fd)
    try:
        soundfile.write(tmp_name, pcm, RATE, subtype="PCM_16", format="WAV")
        os.replace(tmp_name, path)
    finally:
        Path(tmp_name).unlink(missing_ok=True)


def _worker_main(argv: list[str]) -> int:
    """``python -m ivr.media.tts VOICE RATE`` < [[text, wav_path], ...]; ``--voices`` lists voices."""
    import pyttsx3

    engine = pyttsx3.init("espeak")
    if argv == ["--voices"]:
        voices = [
            [v.id, [lang for lang in (v.languages or []) if isinstance(lang, str)]]
            for v in engine.getProperty("voices")
        ]
        sys.stdout.write(json.dumps(voices))
        return 0
    voice, rate = argv
    driver = engine.proxy._driver  # set on the driver: Engine.setProperty is queued behind the loop
    driver.setProperty("voice", voice)
    driver.setProperty("rate", int(rate))
    for text, path in json.load(sys.stdin):
        engine.save_to_file(text, path)
        engine.runAndWait()
        _wait_for_synthesis(driver)
        if not Path(path).is_file():
            sys.stderr.write(f"no audio written for {text[:60]!r}\n")
            return 1
    return 0


def _wait_for_synthesis(driver: Any) -> None:
    """Block until espeak-ng has delivered the whole utterance.

    pyttsx3 initialises espeak-ng with AUDIO_OUTPUT_RETRIEVAL, which synthesises on espeak's own
    thread: ``runAndWait`` can return before the driver's callback has written the WAV, and a
    worker exiting then leaves no file (seen in about half the runs under load).
    """
    from pyttsx3.drivers import _espeak

    _espeak.Synchronize()
    deadline = time.monotonic() + WORKER_TIMEOUT
    while driver._speaking and time.monotonic() < deadline:
        time.sleep(0.005)  # the callback thread finishes writing right after Synchronize returns

if __name__ == "__main__":
    sys.exit(_worker_main(sys.argv[1:]))
