"""Regenerate prompts/moh/default.ogg, the default hold music (public domain, see prompts/LICENSE).

A 21-second loop (8 bars at 90 bpm): a I-vi-IV-V progression in C major played as soft arpeggios
(additive sine voices with a bell-like decay) over sustained pad chords, with a
light echo.  Synthesised from scratch with numpy; no samples from anywhere.

    .venv/bin/python prompts/make_hold_music.py
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile

RATE = 16000
BPM = 90
BEAT = 60.0 / BPM


def note_freq(midi: int) -> float:
    return 440.0 * 2 ** ((midi - 69) / 12)


def bell(freq: float, seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    env = np.exp(-t * 3.0) * (1 - np.exp(-t * 200))
    tone = np.sin(2 * np.pi * freq * t) + 0.3 * np.sin(4 * np.pi * freq * t) + 0.1 * np.sin(6 * np.pi * freq * t)
    return tone * env


def pad(freqs: list[float], seconds: float) -> np.ndarray:
    t = np.arange(int(seconds * RATE)) / RATE
    env = np.minimum(1, t / 0.4) * np.minimum(1, (seconds - t) / 0.4)
    return sum(np.sin(2 * np.pi * f * t) for f in freqs) * env / len(freqs)


def main() -> None:
    chords = [[60, 64, 67], [57, 60, 64], [53, 57, 60], [55, 59, 62]]  # C, Am, F, G
    bars = chords * 2
    bar = 4 * BEAT
    total = len(bars) * bar + 2.0
    out = np.zeros(int(total * RATE))
    for i, chord in enumerate(bars):
        start = int(i * bar * RATE)
        p = pad([note_freq(n - 12) for n in chord], bar)
        out[start : start + len(p)] += 0.25 * p
        pattern = [chord[0], chord[1], chord[2], chord[0] + 12, chord[2], chord[1], chord[2], chord[0] + 12]
        for j, n in enumerate(pattern):
            s = start + int(j * BEAT / 2 * RATE)
            b = bell(note_freq(n + 12), 1.5)
            end = min(len(out), s + len(b))
            out[s:end] += 0.35 * b[: end - s]
    delay = int(0.33 * RATE)
    out[delay:] += 0.25 * out[:-delay]
    loop = int(len(bars) * bar * RATE)
    out[: len(out) - loop] += out[loop:]  # fold the tail onto the start: a seamless loop
    out = out[:loop]
    out *= 0.5 / np.max(np.abs(out))
    path = Path(__file__).parent / "moh" / "default.ogg"
    soundfile.write(path, out.astype(np.float32), RATE, format="OGG", subtype="VORBIS")
    print(f"{path}: {len(out) / RATE:.1f} s")


if __name__ == "__main__":
    main()
