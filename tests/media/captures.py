"""The RTP and RTCP captures of tests/data/rtp, as (arrival seconds, UDP payload) records."""

from __future__ import annotations

import struct
from pathlib import Path

DATA = Path(__file__).resolve().parents[1] / "data" / "rtp"


def capture(name: str) -> list[tuple[float, bytes]]:
    """(arrival seconds, UDP payload) records of tests/data/rtp/NAME.bin (see make_captures.py)."""
    data, pos, out = (DATA / f"{name}.bin").read_bytes(), 0, []
    while pos < len(data):
        usec, length = struct.unpack_from("!IH", data, pos)
        out.append((usec / 1e6, data[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return out
