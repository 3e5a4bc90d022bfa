"""CPU cost of bridged calls in the media path: one 20 ms tick of N bridges (both directions).

Per bridge and tick, each direction decodes one received G.711 frame (as the media session does),
queues it in an AudioRelay and encodes one frame for the other leg.  Half the bridges transcode
(PCMU in, PCMA out), half do not.  Prints the time per tick for 100, 500 and 1,000 bridges and the
share of the 20 ms budget it uses (the media clock serves every call of the process in that budget).
"""

from __future__ import annotations

import time

import numpy as np

from ivr.media import g711
from ivr.runtime.bridge import AudioRelay


def run(bridges: int, ticks: int = 200) -> float:
    t = np.arange(160) / 8000
    frame_u = g711.encode((np.sin(2 * np.pi * 600 * t) * 8000).astype(np.int16), g711.PCMU)
    relays = [(AudioRelay(), AudioRelay()) for _ in range(bridges)]
    out_pt = [g711.PCMA if i % 2 else g711.PCMU for i in range(bridges)]
    start = time.perf_counter()
    for _ in range(ticks):
        for (a, b), pt in zip(relays, out_pt, strict=True):
            a.push(g711.decode(frame_u, g711.PCMU))
            b.push(g711.decode(frame_u, g711.PCMU))
            a.frame(pt)
            b.frame(g711.PCMU)
    return (time.perf_counter() - start) / ticks


def main() -> None:
    for n in (100, 500, 1000):
        per_tick = run(n)
        print(f"{n:5d} bridges: {per_tick * 1000:7.2f} ms per 20 ms tick ({per_tick / 0.02:6.1%} of the budget), "
              f"{per_tick / n * 1e6:6.1f} us per bridge")


if __name__ == "__main__":
    main()
