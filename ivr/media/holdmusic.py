"""Hold music: one shared player per music source, however many callers are held.

A :class:`MusicPlayer` is a radio station, not a tape per caller: the media
clock calls :meth:`MusicPlayer.advance` once per 20 ms tick (it is registered
with ``clock.add_shared``) and every held call's stream reads the same
:meth:`MusicPlayer.frame`.  The files are decoded once (through the
:class:`~ivr.media.prompts.PromptStore` cache) and each clip is G.711-encoded
once per codec, so a frame for a held caller is a slice of bytes.

A source is a file or a folder inside the prompt folders (a folder plays its
audio files sorted by name), or several of them separated by commas.  The
prefix ``random:`` shuffles the play list on every round (``random:moh/``),
as does a file named ``.shuffle`` in a music folder (the way to ask for it from
a flow's ``hold music "moh/"``, whose path must name a real folder).
:class:`HoldMusic` hands out players, counts listeners, and takes a player off
the clock when its last listener is released.
"""

from __future__ import annotations

import random
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

from ivr.media.clip import FRAME_SAMPLES, Clip
from ivr.media.prompts import PromptStore

DEFAULT_SOURCE = "moh/"
RANDOM_PREFIX = "random:"
SHUFFLE_MARKER = ".shuffle"
MAX_CATCH_UP = 50  # frames; a tick gap longer than 1 s (a stalled loop) is not replayed
Order = Literal["fixed", "random"]


class HoldMusicError(ValueError):
    """A music source that names no playable audio; the message names the source."""


class MusicPlayer:
    """A looped play list at one shared position, advanced by the media clock."""

    def __init__(
        self,
        clips: Sequence[Clip],
        *,
        order: Order = "fixed",
        name: str = "",
        seed: int | None = None,
    ) -> None:
        playable = [c for c in clips if c.frames]
        if not playable:
            raise HoldMusicError(f"hold music {name!r}: no audio to play")
        self.name = name
        self.order = order
        self._clips = tuple(playable)
        self._random = random.Random(seed)
        self._playlist = self._new_round()
        self._item = 0
        self._position = 0
        self._last_tick: int | None = None

    @property
    def clip(self) -> Clip:
        """The clip playing now."""
        return self._playlist[self._item]

    @property
    def position(self) -> int:
        """Frame index within :attr:`clip`."""
        return self._position

    def advance(self, tick_no: int) -> None:
        """Move to the frame of ``tick_no`` (idempotent per tick; a gap of skipped ticks is skipped too)."""
        if self._last_tick is None:
            self._last_tick = tick_no
            return
        steps = tick_no - self._last_tick
        if steps < 0:
            self._last_tick = tick_no  # a new clock (restarted loop) counts from scratch
        if steps <= 0:
            return
        self._last_tick = tick_no
        for _ in range(min(steps, MAX_CATCH_UP)):
            self._step()

    def frame(self, payload_type: int) -> bytes:
        """The 160 bytes of G.711 everyone on this player hears during the current tick."""
        return self.clip.frame(self._position, payload_type)

    def pcm_frame(self) -> Any:
        """The current frame as 8 kHz int16 samples (for mixing or tests)."""
        start = self._position * FRAME_SAMPLES
        return self.clip.pcm[start : start + FRAME_SAMPLES]

    def _step(self) -> None:
        self._position += 1
        if self._position < self.clip.frames:
            return
        self._position = 0
        self._item += 1
        if self._item >= len(self._playlist):
            self._item = 0
            self._playlist = self._new_round()

    def _new_round(self) -> tuple[Clip, ...]:
        if self.order == "fixed" or len(self._clips) < 2:
            return self._clips
        previous = getattr(self, "_playlist", None)
        clips = list(self._clips)
        self._random.shuffle(clips)
        if previous is not None and clips[0] is previous[-1]:
            clips.append(clips.pop(0))  # never the same track twice in a row across rounds
        return tuple(clips)


@dataclass
class _Entry:
    player: MusicPlayer
    listeners: int = 0


class HoldMusic:
    """Shared :class:`MusicPlayer` per source, registered with the media clock while someone listens.

    ``clock`` is the media engineer's ``MediaClock`` (anything with ``add_shared`` /
    ``remove_shared``), or None when the caller advances players itself (tests, benchmarks).
    """

    def __init__(
        self, store: PromptStore, clock: Any = None, *, default: str = DEFAULT_SOURCE
    ) -> None:
        self.store = store
        self.clock = clock
        self.default = default
        self._entries: dict[str, _Entry] = {}
        self._lock = threading.Lock()

    def player(self, source: str = "") -> MusicPlayer:
        """The shared player of ``source`` (``""``: the default), one more listener counted."""
        key = (source or self.default).strip()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                entry = self._entries[key] = _Entry(self._build(key))
                if self.clock is not None:
                    self.clock.add_shared(entry.player)
            entry.listeners += 1
            return entry.player

    def release(self, player: MusicPlayer) -> None:
        """One listener of ``player`` left; the last one takes the player off the clock."""
        with self._lock:
            for key, entry in self._entries.items():
                if entry.player is player:
                    entry.listeners -= 1
                    if entry.listeners <= 0:
                        del self._entries[key]
                        if self.clock is not None:
                            self.clock.remove_shared(player)
                    return
        raise ValueError(f"hold music player {player.name!r} is not in use")

    def listeners(self, source: str = "") -> int:
        entry = self._entries.get((source or self.default).strip())
        return entry.listeners if entry else 0

    def check(self, source: str) -> str | None:
        """Why ``source`` cannot be played, or None (for ``ivr check``)."""
        try:
            self._files(source)
        except (HoldMusicError, ValueError, FileNotFoundError) as exc:
            return str(exc)
        return None

    def _build(self, key: str) -> MusicPlayer:
        order: Order = (
            "random" if key.startswith(RANDOM_PREFIX) or self._marked_shuffle(key) else "fixed"
        )
        clips = [self.store.load(path) for path in self._files(key)]
        return MusicPlayer(clips, order=order, name=key)

    def _marked_shuffle(self, source: str) -> bool:
        """A folder holding a file named ``.shuffle`` plays in random order."""
        for part in (p.strip() for p in source.split(",")):
            real = self.store.resolve(part) if part else None
            if real is not None and real.is_dir() and (real / SHUFFLE_MARKER).is_file():
                return True
        return False

    def _files(self, source: str) -> list[str]:
        spec = source[len(RANDOM_PREFIX) :] if source.startswith(RANDOM_PREFIX) else source
        files: list[str] = []
        for part in (p.strip() for p in spec.split(",")):
            if part:
                files.extend(self.store.relative(p) for p in self.store.audio_files(part))
        if not files:
            raise HoldMusicError(f"hold music {source!r}: no audio files found")
        return files
