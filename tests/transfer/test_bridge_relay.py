"""The bridge's audio relay: PCM in at the peer's pace, frames out on the clock, transcoding."""

from __future__ import annotations

import numpy as np

from ivr.media import g711
from ivr.runtime.bridge import AudioRelay


def tone(samples: int, freq: float = 1000.0) -> np.ndarray:
    t = np.arange(samples) / 8000
    return (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16)


def test_prebuffers_then_plays_in_order_across_chunk_boundaries() -> None:
    relay = AudioRelay(prebuffer=2, max_frames=10)
    pcm = tone(480)
    relay.push(pcm[:100])
    relay.push(pcm[100:250])
    assert relay.pcm_frame() is None  # 250 samples < 2 frames: still buffering
    relay.push(pcm[250:])
    first, second, third = (relay.pcm_frame() for _ in range(3))
    assert first is not None and second is not None and third is not None
    assert np.array_equal(np.concatenate([first, second, third]), pcm)
    assert relay.pcm_frame() is None and relay.underruns == 1


def test_delay_is_bounded_by_dropping_the_oldest_audio() -> None:
    relay = AudioRelay(prebuffer=1, max_frames=3)
    frames = [np.full(160, i, dtype=np.int16) for i in range(5)]
    for f in frames:
        relay.push(f)
    assert relay.queued == 480 and relay.dropped == 320
    out = relay.pcm_frame()
    assert out is not None and int(out[0]) == 2  # frames 0 and 1 were dropped


def test_same_codec_round_trips_exactly_and_other_codec_is_transcoded() -> None:
    ulaw = g711.encode(tone(160), g711.PCMU)
    relay = AudioRelay(prebuffer=1)
    relay.push(g711.decode(ulaw, g711.PCMU))  # what the caller's session hands over
    assert relay.frame(g711.PCMU) == ulaw
    relay.push(g711.decode(ulaw, g711.PCMU))
    alaw = relay.frame(g711.PCMA)
    assert alaw != ulaw and len(alaw) == 160
    back = g711.decode(alaw, g711.PCMA).astype(np.int32)
    assert np.max(np.abs(back - g711.decode(ulaw, g711.PCMU))) < 300  # same tone, other law


def test_silence_while_buffering_in_the_leg_codec() -> None:
    relay = AudioRelay()
    assert relay.frame(g711.PCMA) == bytes([g711.SILENCE[g711.PCMA]]) * 160
    assert relay.frame(g711.PCMU) == bytes([g711.SILENCE[g711.PCMU]]) * 160
