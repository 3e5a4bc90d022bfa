"""Shared audio: a clip decoded once and encoded once per codec, read by many calls.

A :class:`Clip` is immutable 8 kHz mono 16-bit audio plus its G.711
encodings, built lazily and cached on the clip, so a prompt heard by a
thousand callers is encoded once.  A :class:`Cursor` is one call's position
in a clip; it hands out 20 ms frames (160 bytes of G.711).  The last frame is
padded with codec silence.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from ivr.media import g711

RATE = 8000
FRAME_SAMPLES = 160  # 20 ms at 8 kHz


@dataclass(eq=False)
class Clip:
    """8 kHz mono int16 audio with cached G.711 encodings (PCMU=0, PCMA=8)."""

    pcm: g711.PCM16
    name: str = ""
    _encoded: dict[int, bytes] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        pcm = np.ascontiguousarray(self.pcm, dtype=np.int16)
        pad = (-len(pcm)) % FRAME_SAMPLES
        if pad:
            pcm = np.concatenate([pcm, np.zeros(pad, dtype=np.int16)])
        pcm.setflags(write=False)
        self.pcm = pcm

    @property
    def frames(self) -> int:
        return len(self.pcm) // FRAME_SAMPLES

    @property
    def duration(self) -> float:
        return len(self.pcm) / RATE

    def encoded(self, payload_type: int) -> bytes:
        data = self._encoded.get(payload_type)
        if data is None:
            data = self._encoded[payload_type] = g711.encode(self.pcm, payload_type)
        return data

    def frame(self, index: int, payload_type: int) -> bytes:
        start = index * FRAME_SAMPLES
        return self.encoded(payload_type)[start : start + FRAME_SAMPLES]

    @classmethod
    def silence(cls, seconds: float, name: str = "silence") -> Clip:
        return cls(np.zeros(int(seconds * RATE), dtype=np.int16), name)

    @classmethod
    def tone(cls, freq: float, seconds: float, level: float = 0.3, name: str = "") -> Clip:
        t = np.arange(int(seconds * RATE)) / RATE
        pcm = (np.sin(2 * np.pi * freq * t) * level * 32767).astype(np.int16)
        return cls(pcm, name or f"tone-{freq:g}Hz")


@dataclass
class Cursor:
    """One listener's position in a clip; ``loop`` restarts at the end."""

    clip: Clip
    position: int = 0
    loop: bool = False

    @property
    def done(self) -> bool:
        return not self.loop and self.position >= self.clip.frames

    def next_frame(self, payload_type: int) -> bytes | None:
        if self.position >= self.clip.frames:
            if not self.loop or self.clip.frames == 0:
                return None
            self.position = 0
        frame = self.clip.frame(self.position, payload_type)
        self.position += 1
        return frame
