"""Hold music cost: 200 held callers on one shared player vs 200 separate prompt cursors.

Prints CPU time per 20 ms tick for producing every listener's frame (what the
media clock does each tick), the audio memory held, and the one-off start-up cost: the
shared player decodes and encodes the track once; separate per-call players
(a naive design) decode and encode it once per caller.  No RTP here: the
end-to-end version comes with the server's load benchmark.

    .venv/bin/python bench/holdmusic.py [--listeners 200] [--ticks 1500]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from ivr.media import g711
from ivr.media.clip import Clip, Cursor
from ivr.media.holdmusic import HoldMusic, MusicPlayer
from ivr.media.prompts import PromptStore, load_audio

PROMPTS = Path(__file__).resolve().parents[1] / "prompts"


def audio_bytes(clips: list[Clip]) -> int:
    """Memory held by the distinct clips: samples plus their cached G.711 encodings."""
    distinct = {id(c): c for c in clips}.values()
    return sum(c.pcm.nbytes + sum(len(e) for e in c._encoded.values()) for c in distinct)


def shared(listeners: int, ticks: int) -> tuple[float, float, int]:
    start = time.process_time()
    music = HoldMusic(PromptStore([PROMPTS]))
    players = [music.player("moh/") for _ in range(listeners)]
    players[0].frame(g711.PCMU)
    setup = time.process_time() - start
    start = time.process_time()
    for tick in range(ticks):
        players[0].advance(tick)  # the clock advances the one shared player once per tick
        for p in players:
            p.frame(g711.PCMU)
    return setup, time.process_time() - start, audio_bytes([p.clip for p in players])


def cursors(listeners: int, ticks: int) -> tuple[float, float, int]:
    start = time.process_time()
    store = PromptStore([PROMPTS])
    clip = store.load(store.relative(store.audio_files("moh/")[0]))
    all_cursors = [Cursor(clip, loop=True) for _ in range(listeners)]
    setup = time.process_time() - start
    start = time.process_time()
    for _ in range(ticks):
        for c in all_cursors:
            c.next_frame(g711.PCMU)
    return setup, time.process_time() - start, audio_bytes([c.clip for c in all_cursors])


def separate_players(listeners: int, ticks: int) -> tuple[float, float, int]:
    path = PromptStore([PROMPTS]).audio_files("moh/")[0]
    start = time.process_time()
    players = [MusicPlayer([load_audio(path)], name=str(i)) for i in range(listeners)]
    for p in players:
        p.frame(g711.PCMU)
    setup = time.process_time() - start
    start = time.process_time()
    for tick in range(ticks):
        for p in players:
            p.advance(tick)
            p.frame(g711.PCMU)
    return setup, time.process_time() - start, audio_bytes([p.clip for p in players])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--listeners", type=int, default=200)
    ap.add_argument("--ticks", type=int, default=1500)
    args = ap.parse_args()
    n, ticks = args.listeners, args.ticks
    print(f"{n} listeners, {ticks} ticks of 20 ms ({ticks * 0.02:.0f} s of music), PCMU")
    print(f"{'design':<42}{'setup CPU':>12}{'CPU/tick':>12}{'of a tick':>11}{'audio RAM':>12}")
    for name, fn in (
        ("one shared MusicPlayer", shared),
        ("separate cursors on one cached clip", cursors),
        ("separate players, each decoding the track", separate_players),
    ):
        setup, run, ram = fn(n, ticks)
        per_tick = run / ticks
        print(
            f"{name:<42}{setup * 1000:>10.1f}ms{per_tick * 1e6:>10.1f}us{per_tick / 0.02:>10.2%}"
            f"{ram / 1e6:>10.1f}MB"
        )


if __name__ == "__main__":
    main()
