"""Three baresip phones in one conference room: each hears the two others, and not itself.

Each phone's microphone (aufile) is its own pseudo-random noise, band-limited to telephone
speech frequencies; what each phone hears is recorded (sndfile).  Two seconds of each
phone's signal, taken from the middle of its microphone (when all three are in the room), are
looked for in every recording, in half-second pieces, by normalised cross-correlation: in the
two others' recordings they must stand out (each hears a sum of two independent signals, so
about 1/sqrt(2) is the best a perfect mix gives, before G.711), and in its own phone's
recording they must not.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

IvrServer = Any  # conftest.IvrServer
Phone = Any  # conftest.Baresip

RATE = 8000
MIC_SECONDS = 12.0  # baresip hangs up when its microphone file ends
PROBE = (6.0, 8.0)  # seconds into each microphone: everyone is in the room by then
PIECE = 0.5  # s: the probe is looked for in pieces


def noise_mic(path: Path, seed: int) -> np.ndarray:
    """Noise from 300 to 3000 Hz at about -16 dBFS, distinct per seed."""
    rng = np.random.default_rng(seed)
    spectrum = np.fft.rfft(rng.standard_normal(int(MIC_SECONDS * RATE)))
    freqs = np.fft.rfftfreq(int(MIC_SECONDS * RATE), 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3000)] = 0
    signal = np.fft.irfft(spectrum, int(MIC_SECONDS * RATE))
    pcm = (signal / np.sqrt(np.mean(signal**2)) * 5000).clip(-32000, 32000).astype(np.int16)
    soundfile.write(path, pcm, RATE, subtype="PCM_16")
    return pcm


def best_correlation(heard: np.ndarray, probe: np.ndarray) -> float:
    """The highest normalised correlation of ``probe`` with any stretch of ``heard`` (FFT, every lag)."""
    heard = heard.astype(np.float64)
    probe = probe.astype(np.float64)
    n = len(heard) + len(probe)
    size = 1 << (n - 1).bit_length()
    corr = np.fft.irfft(np.fft.rfft(heard, size) * np.conj(np.fft.rfft(probe, size)), size)[: len(heard) - len(probe)]
    energy = np.convolve(heard**2, np.ones(len(probe)), "valid")[: len(corr)]
    norm = np.sqrt(np.maximum(energy, 1e-9) * np.dot(probe, probe))
    return float(np.max(np.abs(corr) / norm))


def test_three_phones_each_hear_the_two_others(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server("conference.ivr")
    mics = [noise_mic(tmp_path / f"mic{i}.wav", seed=i + 1) for i in range(3)]
    phones = []
    for i in range(3):
        phone = baresip(tmp_path / f"mic{i}.wav")
        phone.command("dial", f"sip:conference@{server.address}")
        phone.wait_event("CALL_ESTABLISHED")
        phones.append(phone)
    talking = server.wait_for(
        lambda r: r.get("action") == "talk_in_conference" and len(
            {x["call_id"] for x in server.call_records() if x.get("action") == "talk_in_conference"}) == 3,
        what="three phones talking in the room",
    )
    assert talking["room"] == "peers"
    for phone in phones:
        phone.wait_event("CALL_CLOSED", timeout=30)  # each microphone file played out
    ended = [server.wait_for(lambda r, c=c: r.get("call_id") == c and r.get("event") == "ended")
             for c in {x["call_id"] for x in server.call_records() if x.get("action") == "talk_in_conference"}]
    assert all(r["outcome"] == "conference" and r["detail"] == "peers" for r in ended)
    assert all(r["packets_received"] > 400 for r in ended)  # every microphone reached ivr

    heard = []
    for phone in phones:
        pcm, rate = soundfile.read(phone.heard(), dtype="int16")
        assert rate == RATE
        heard.append(pcm)
    pieces = [(int(t * RATE), int((t + PIECE) * RATE)) for t in np.arange(*PROBE, PIECE)]
    scores = [[[best_correlation(heard[listener], mics[talker][a:b]) for a, b in pieces] for talker in range(3)]
              for listener in range(3)]
    for listener in range(3):
        for talker in range(3):
            found = scores[listener][talker]
            if talker == listener:
                assert max(found) < 0.2, f"phone {listener} hears itself: {found}"
            else:  # a jitter buffer catching up under load may cut one piece, not most of them
                assert sum(f > 0.5 for f in found) >= len(found) - 1, (
                    f"phone {listener} does not hear phone {talker}: {found}")
    assert server.wait_for(lambda r: r.get("event") == "conference_left")["room"] == "peers"
