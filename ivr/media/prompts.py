"""Prompt files: where they may live, and how they become telephone audio.

A :class:`PromptStore` resolves a prompt path as written in a flow (``play
"menu/welcome.wav"``) only inside the configured prompt folders, or, for
``data:`` paths (recorded messages, greetings, names), inside the data folder.
``..``, absolute paths and symlinks leading out are refused with
:class:`PromptPathError`: a flow author must not be able to play (and so leak
to a caller) an arbitrary file of the server.

Audio in any format libsndfile reads (WAV, FLAC, OGG/Vorbis...), at any sample
rate and channel count, is mixed down to mono and resampled to 8 kHz (soxr)
once, then kept as a :class:`~ivr.media.clip.Clip` whose G.711 encodings are
also cached: one decode and one encode per file, whatever the number of calls.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

import numpy as np
import soundfile
import soxr

from ivr.media.clip import RATE, Clip

DATA_PREFIX = "data:"
AUDIO_SUFFIXES = (".wav", ".flac", ".ogg", ".oga")
DATA_CACHE_SIZE = 64


class PromptPathError(ValueError):
    """A prompt path that escapes the prompt folders (``..``, absolute, or a symlink leading out)."""


class PromptFormatError(ValueError):
    """A prompt file that exists but cannot be decoded as audio; the message names the file."""


def load_audio(path: Path) -> Clip:
    """Decode ``path`` (any libsndfile format, rate, channels) to an 8 kHz mono clip."""
    try:
        samples, rate = soundfile.read(str(path), dtype="float32", always_2d=True)
    except FileNotFoundError:
        raise
    except (soundfile.LibsndfileError, RuntimeError, TypeError) as exc:
        raise PromptFormatError(f"{path}: not a readable audio file ({exc})") from None
    return Clip(to_pcm16_8k(samples, rate), name=str(path))


def to_pcm16_8k(samples: np.ndarray, rate: int) -> np.ndarray:
    """Float samples (frames x channels, or mono) at ``rate`` -> int16 8 kHz mono."""
    mono = samples.mean(axis=1) if samples.ndim == 2 else samples
    mono = np.asarray(mono, dtype=np.float32)
    if rate != RATE and len(mono):
        mono = soxr.resample(mono, rate, RATE, quality="HQ")
    return np.clip(np.round(mono * 32767.0), -32768, 32767).astype(np.int16)


class PromptStore:
    """Prompt lookup confined to ``folders`` (and ``data_dir`` for ``data:`` paths), with a clip cache.

    The cache holds one clip per file and is invalidated when the file's mtime
    or size changes, so an admin replacing a prompt is heard on the next play.
    Prompt-folder files stay cached (the admin's prompt set is bounded); ``data:``
    files (messages, greetings: they grow with use) are kept in an LRU of
    :data:`DATA_CACHE_SIZE` entries.  Thread-safe: the runner may load from worker threads.
    """

    def __init__(self, folders: Sequence[Path], data_dir: Path | None = None, *, shared_data: Sequence[Path] = ()) -> None:
        self.folders = tuple(Path(f).resolve() for f in folders)
        self.data_dir = Path(data_dir).resolve() if data_dir is not None else None
        # Folders searched before data_dir for data: paths (voicemail in a folder every node shares).
        self.shared_data = tuple(Path(f).resolve() for f in shared_data)
        self._cache: dict[Path, tuple[int, int, Clip]] = {}
        self._data_cache: OrderedDict[Path, tuple[int, int, Clip]] = OrderedDict()
        self._lock = threading.Lock()

    def resolve(self, path: str) -> Path:
        """The real file or folder ``path`` names; PromptPathError or FileNotFoundError otherwise."""
        if path.startswith(DATA_PREFIX):
            if self.data_dir is None:
                raise PromptPathError(f"{path!r}: no data folder configured for data: paths")
            return _resolve_in(path[len(DATA_PREFIX) :], (*self.shared_data, self.data_dir), path, "the data folder")
        if not self.folders:
            raise FileNotFoundError(f"prompt {path!r} not found: no prompt folders configured")
        return _resolve_in(path, self.folders, path, "the prompt folders")

    def load(self, path: str) -> Clip:
        """The clip for ``path`` (decoded once; re-decoded when the file changes)."""
        real = self.resolve(path)
        if real.is_dir():
            raise PromptFormatError(f"{path!r} is a folder, not an audio file")
        st = real.stat()
        data = path.startswith(DATA_PREFIX)
        cache = self._data_cache if data else self._cache
        with self._lock:
            hit = cache.get(real)
            if hit is not None and hit[0] == st.st_mtime_ns and hit[1] == st.st_size:
                if data:
                    self._data_cache.move_to_end(real)
                return hit[2]
        clip = load_audio(real)
        with self._lock:
            cache[real] = (st.st_mtime_ns, st.st_size, clip)
            while len(self._data_cache) > DATA_CACHE_SIZE:
                self._data_cache.popitem(last=False)
        return clip

    def check(self, path: str) -> str | None:
        """A message saying why ``path`` cannot be played, or None when it can (for ``ivr check``)."""
        try:
            real = self.resolve(path)
            if real.is_file():
                soundfile.info(str(real))
        except (PromptPathError, FileNotFoundError) as exc:
            return str(exc)
        except (soundfile.LibsndfileError, RuntimeError) as exc:
            return f"prompt {path!r} is not a readable audio file ({exc})"
        return None

    def audio_files(self, path: str) -> list[Path]:
        """The audio files ``path`` names: the file itself, or a folder's audio files sorted by name."""
        real = self.resolve(path)
        if real.is_file():
            return [real]
        base = self._root_of(real)
        files = []
        for p in sorted(real.iterdir()):
            if p.suffix.lower() in AUDIO_SUFFIXES and p.is_file() and _inside(p.resolve(), base):
                files.append(p.resolve())
        return files

    def relative(self, real: Path) -> str:
        """The store path (as :meth:`load` accepts it) of a resolved file."""
        for folder in self.folders:
            if _inside(real, folder):
                return real.relative_to(folder).as_posix()
        if self.data_dir is not None and _inside(real, self.data_dir):
            return DATA_PREFIX + real.relative_to(self.data_dir).as_posix()
        raise PromptPathError(f"{real} is outside the prompt folders")

    def _root_of(self, real: Path) -> Path:
        roots = self.folders + ((self.data_dir,) if self.data_dir else ())
        return next(r for r in roots if _inside(real, r))


def _inside(path: Path, folder: Path) -> bool:
    return path == folder or path.is_relative_to(folder)


def _resolve_in(rel: str, roots: Sequence[Path], original: str, what: str) -> Path:
    pure = PurePosixPath(rel.replace("\\", "/"))
    if not rel or pure.is_absolute() or Path(rel).is_absolute():
        raise PromptPathError(
            f"prompt path {original!r} escapes {what}: absolute paths are not allowed"
        )
    if ".." in pure.parts:
        raise PromptPathError(f"prompt path {original!r} escapes {what}: '..' is not allowed")
    for root in roots:
        candidate = root.joinpath(*pure.parts)
        if not (candidate.exists() or candidate.is_symlink()):
            continue
        real = candidate.resolve()
        if not _inside(real, root):
            raise PromptPathError(
                f"prompt path {original!r} escapes {what}: a symlink leads to {real}"
            )
        if not real.exists():
            raise FileNotFoundError(f"prompt {original!r}: dangling symlink in {root}")
        return real
    where = ", ".join(str(r) for r in roots)
    raise FileNotFoundError(f"prompt {original!r} not found in {what} ({where})")
