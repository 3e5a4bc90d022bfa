"""The conference mixer on real sample values: each seat hears exactly the others, never itself."""

from __future__ import annotations

import numpy as np
import pytest

from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES
from ivr.media.mixer import KNEE, Mixer, soft_limit


def tone(freq: float, amplitude: int, frames: int = 1, phase: int = 0) -> np.ndarray:
    t = (np.arange(frames * FRAME_SAMPLES) + phase) / 8000
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def fill(mixer: Mixer, signals: list[np.ndarray]) -> None:
    """Push two frames per seat (the relay's prebuffer) so the next tick plays the first."""
    for seat, pcm in zip(mixer.seats, signals, strict=True):
        seat.push(pcm)


@pytest.mark.parametrize("n", [2, 3, 6])
def test_each_participant_hears_exactly_the_sum_of_the_others(n: int) -> None:
    mixer = Mixer("weekly")
    for i in range(n):
        mixer.add(f"p{i}")
    signals = [tone(300 + 170 * i, 3000, frames=2) for i in range(n)]
    fill(mixer, signals)
    mixer.advance(1)
    first = [s[:FRAME_SAMPLES].astype(np.int32) for s in signals]
    total = sum(first)
    for i, seat in enumerate(mixer.seats):
        expected = (total - first[i]).astype(np.int16)
        assert np.array_equal(seat.pcm_frame(), expected)
        assert seat.frame(g711.PCMU) == g711.encode(expected, g711.PCMU)
        assert seat.frame(g711.PCMA) == g711.encode(expected, g711.PCMA)
    mixer.advance(2)  # the second frame of everyone
    second = [s[FRAME_SAMPLES:].astype(np.int32) for s in signals]
    assert np.array_equal(mixer.seats[0].pcm_frame(), (sum(second) - second[0]).astype(np.int16))


def test_nobody_hears_their_own_voice() -> None:
    mixer = Mixer()
    a, b, c = mixer.add("a"), mixer.add("b"), mixer.add("c")
    voices = [tone(400, 6000, 2), tone(1000, 6000, 2), np.zeros(2 * FRAME_SAMPLES, np.int16)]
    fill(mixer, voices)
    mixer.advance(7)
    heard_by_a = a.pcm_frame().astype(np.float64)
    own = voices[0][:FRAME_SAMPLES].astype(np.float64)
    other = voices[1][:FRAME_SAMPLES].astype(np.float64)
    assert abs(np.dot(heard_by_a, own)) < 0.01 * np.dot(own, own)  # 400 Hz (whole periods in a frame) is absent
    assert np.dot(heard_by_a, other) == pytest.approx(np.dot(other, other), rel=1e-6)
    assert np.array_equal(c.pcm_frame(), (voices[0][:160].astype(np.int32) + voices[1][:160]).astype(np.int16))
    assert b.pcm_frame().tolist() == voices[0][:FRAME_SAMPLES].tolist()


def test_the_mix_is_made_once_per_tick() -> None:
    mixer = Mixer()
    a, b = mixer.add(), mixer.add()
    fill(mixer, [tone(500, 1000, 2), tone(700, 1000, 2)])
    mixer.advance(3)
    heard = b.pcm_frame()
    mixer.advance(3)  # a second listener's advance in the same tick: nothing consumed again
    assert np.array_equal(b.pcm_frame(), heard) and mixer.ticks == 1
    assert a.relay.queued == FRAME_SAMPLES  # one frame left of two


def test_loud_sums_are_bent_below_full_scale_and_quiet_ones_pass_unchanged() -> None:
    mixer = Mixer()
    seats = [mixer.add() for _ in range(4)]
    loud = tone(200, 20000, 2)  # three of these at once: up to 60000 before the limiter
    fill(mixer, [loud, loud, loud, loud])
    mixer.advance(1)
    heard = seats[0].pcm_frame().astype(np.int32)
    raw = 3 * loud[:FRAME_SAMPLES].astype(np.int32)
    assert heard.max() <= 32767 and heard.min() >= -32767
    assert mixer.limited == 1
    quiet = np.abs(raw) <= KNEE
    assert np.array_equal(heard[quiet], raw[quiet])  # below the knee: bit-exact
    assert np.all(np.sign(heard) == np.sign(raw))  # bent, never folded over
    order = np.argsort(raw)  # and the shape is kept: louder in stays louder out
    assert np.all(np.diff(heard[order]) >= 0)
    assert seats[0].frame(g711.PCMU) == g711.encode(heard.astype(np.int16), g711.PCMU)


def test_soft_limit_of_exact_values() -> None:
    mix = np.array([0, KNEE, KNEE + 1, 40000, -40000, 200000, -KNEE], dtype=np.int32)
    out = soft_limit(mix.copy())
    assert out[:3].tolist() == [0, KNEE, KNEE]  # 1 above the knee bends to (almost) nothing
    assert out[3] == -out[4] and KNEE < out[3] < 32767
    assert out[5] == 32767  # full scale is reached only in the limit
    assert out[6] == -KNEE


def test_a_participant_who_sends_nothing_does_not_stall_the_room() -> None:
    mixer = Mixer()
    talker, silent, listener = mixer.add("talker"), mixer.add("silent"), mixer.add("listener")
    voice = tone(600, 5000, 10)
    talker.push(voice[: 2 * FRAME_SAMPLES])
    heard = []
    for tick in range(1, 9):
        mixer.advance(tick)
        heard.append(listener.pcm_frame())
        if tick < 8:  # the talker keeps sending, one frame a tick; 'silent' never does
            talker.push(voice[(tick + 1) * FRAME_SAMPLES : (tick + 2) * FRAME_SAMPLES])
    assert np.array_equal(np.concatenate(heard), voice[: 8 * FRAME_SAMPLES])
    assert not silent.pcm_frame().any() or np.array_equal(silent.pcm_frame(), heard[-1])


def test_a_jitter_gap_is_silence_and_the_others_go_on() -> None:
    mixer = Mixer()
    a, b, c = mixer.add("a"), mixer.add("b"), mixer.add("c")
    va, vb = tone(400, 4000, 6), tone(900, 4000, 6)
    a.push(va[:320])
    b.push(vb[:320])
    mixer.advance(1)
    mixer.advance(2)
    mixer.advance(3)  # a and b ran dry (a gap in the network): c hears silence, nobody waits
    assert not c.pcm_frame().any()
    b.push(vb[320:640])  # b is back, a is still silent
    mixer.advance(4)
    mixer.advance(5)
    assert np.array_equal(c.pcm_frame(), vb[320:480]) and np.array_equal(a.pcm_frame(), vb[320:480])
    assert not b.pcm_frame().any()


def test_tones_reach_everyone_but_the_excluded_seat() -> None:
    mixer = Mixer()
    a, b, c = mixer.add("a"), mixer.add("b"), mixer.add("c")
    beep = tone(1200, 4000, 1)
    mixer.sound(beep, exclude=c)
    mixer.advance(1)
    assert np.array_equal(a.pcm_frame(), beep) and np.array_equal(b.pcm_frame(), beep)
    assert not c.pcm_frame().any()
    mixer.advance(2)  # played once
    assert not a.pcm_frame().any()


def test_leaving_renumbers_the_rows_and_a_left_seat_hears_silence() -> None:
    mixer = Mixer()
    a, b, c = mixer.add("a"), mixer.add("b"), mixer.add("c")
    mixer.remove(a)
    assert (a.index, b.index, c.index) == (-1, 0, 1) and len(mixer) == 2
    vb = tone(700, 3000, 2)
    b.push(vb)
    a.push(vb)  # ignored: a has left
    mixer.advance(1)
    assert np.array_equal(c.pcm_frame(), vb[:160])
    assert a.frame(g711.PCMU) == bytes([0xFF]) * 160
    mixer.remove(a)  # twice: nothing happens
    assert len(mixer) == 2
