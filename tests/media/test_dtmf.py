"""DTMF: RFC 4733 on sipp's captures and our own sender, in-band Goertzel (SIP INFO: tests/sip/test_info.py)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.media import g711
from ivr.media.dtmf import (
    DtmfError,
    DtmfReceiver,
    DtmfSender,
    GoertzelDetector,
    InbandBank,
    TelephoneEvent,
    dtmf_tone,
)
from ivr.media.rtp import RtpPacket

DATA = Path(__file__).resolve().parents[1] / "data" / "rtp"
KEYS = {str(i): str(i) for i in range(10)} | {"star": "*", "pound": "#"}


def capture_packets(name: str) -> list[RtpPacket]:
    data, pos, out = (DATA / f"{name}.bin").read_bytes(), 0, []
    while pos < len(data):
        _, length = struct.unpack_from("!IH", data, pos)
        out.append(RtpPacket.parse(data[pos + 6 : pos + 6 + length]))
        pos += 6 + length
    return out


# --------------------------------------------------------------------------- RFC 4733 receive


@pytest.mark.parametrize("name, key", sorted(KEYS.items()))
def test_sipp_capture_yields_its_digit_exactly_once(name: str, key: str) -> None:
    receiver = DtmfReceiver()
    digits = [d for p in capture_packets(f"dtmf_2833_{name}") if (d := receiver.feed(p, 101))]
    assert digits == [key]


def test_other_payload_types_are_not_events() -> None:
    receiver = DtmfReceiver()
    assert all(receiver.feed(p, 96) is None for p in capture_packets("dtmf_2833_5"))


def test_capture_replayed_under_a_new_ssrc_counts_again() -> None:
    receiver = DtmfReceiver()
    first = capture_packets("dtmf_2833_5")
    again = [replace(p, ssrc=p.ssrc + 1, timestamp=p.timestamp + 8000) for p in first]
    digits = [d for p in first + again if (d := receiver.feed(p, 101))]
    assert digits == ["5", "5"]


def test_digit_reported_when_the_first_packets_are_lost() -> None:
    receiver = DtmfReceiver()
    digits = [d for p in capture_packets("dtmf_2833_7")[3:] if (d := receiver.feed(p, 101))]
    assert digits == ["7"]


def test_late_end_packet_of_an_earlier_event_is_not_a_new_key() -> None:
    receiver = DtmfReceiver()
    one = capture_packets("dtmf_2833_1")
    two = [
        replace(p, timestamp=p.timestamp + 2000, sequence=p.sequence + 10)
        for p in capture_packets("dtmf_2833_2")
    ]
    order = one[:8] + two[:3] + one[8:] + two[3:]
    assert [d for p in order if (d := receiver.feed(p, 101))] == ["1", "2"]


def test_long_event_segments_report_one_key() -> None:
    receiver = DtmfReceiver()
    seg1 = RtpPacket(101, 1, 1000, 5, bytes(TelephoneEvent(3, False, 10, 0xFFFF)), marker=True)
    seg2 = RtpPacket(101, 2, 1000 + 0xFFFF, 5, bytes(TelephoneEvent(3, False, 800)))
    end = RtpPacket(101, 3, 1000 + 0xFFFF, 5, bytes(TelephoneEvent(3, True, 1600)))
    assert [receiver.feed(p, 101) for p in (seg1, seg2, end)] == ["3", None, None]


def test_garbage_event_payload_is_ignored() -> None:
    receiver = DtmfReceiver()
    assert receiver.feed(RtpPacket(101, 1, 1, 1, b"\x05"), 101) is None
    assert receiver.feed(RtpPacket(101, 2, 2, 1, bytes(TelephoneEvent(16))), 101) is None  # flash


# --------------------------------------------------------------------------- RFC 4733 send


def test_sender_packets_follow_rfc4733() -> None:
    packets = DtmfSender().packets("#", ssrc=77, seq=65534, timestamp=4000, pt=96, duration_ms=100)
    offsets = [o for o, _ in packets]
    assert offsets == list(range(7))  # 5 updates (the 5th is the first end packet) + 2 end repeats
    rtp = [p for _, p in packets]
    assert [p.marker for p in rtp] == [True] + [False] * 6
    assert {(p.timestamp, p.ssrc, p.payload_type) for p in rtp} == {(4000, 77, 96)}
    assert [p.sequence for p in rtp] == [65534, 65535, 0, 1, 2, 3, 4]
    events = [TelephoneEvent.parse(p.payload) for p in rtp]
    assert [e.duration for e in events] == [160, 320, 480, 640, 800, 800, 800]
    assert [e.end for e in events] == [False] * 4 + [True] * 3
    assert {e.event for e in events} == {11}


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_sender_output_fed_back_yields_the_digit_once(digit: str) -> None:
    receiver = DtmfReceiver()
    packets = DtmfSender().packets(digit, ssrc=1, seq=10, timestamp=320, pt=101)
    wire = [RtpPacket.parse(bytes(p)) for _, p in packets]
    assert [d for p in wire if (d := receiver.feed(p, 101))] == [digit]


def test_same_key_twice_is_two_keys() -> None:
    sender, receiver = DtmfSender(), DtmfReceiver()
    first = sender.packets("5", ssrc=1, seq=0, timestamp=0, pt=101)
    second = sender.packets("5", ssrc=1, seq=7, timestamp=1600, pt=101)
    assert [d for _, p in first + second if (d := receiver.feed(p, 101))] == ["5", "5"]


def test_sender_rejects_a_non_key() -> None:
    with pytest.raises(DtmfError) as info:
        DtmfSender().packets("x", ssrc=1, seq=0, timestamp=0, pt=101)
    assert str(info.value) == "not a DTMF key: 'x' (expected one of 0123456789*#ABCD)"


# --------------------------------------------------------------------------- in-band


def run(detector: GoertzelDetector, pcm: np.ndarray, frame: int = 160) -> list[str]:
    """Feed in 20 ms frames, as a call does."""
    pcm = np.clip(pcm, -32768, 32767).astype(np.int16)
    return [k for i in range(0, len(pcm), frame) for k in detector.feed(pcm[i : i + frame])]


def gap(ms: int) -> np.ndarray:
    return np.zeros(8 * ms)


def noise(n: int, rms: float, seed: int = 7) -> np.ndarray:
    return np.random.default_rng(seed).normal(0, rms, n)


@pytest.mark.parametrize("digit", list("0123456789*#ABCD"))
def test_goertzel_detects_every_key_in_noise_once(digit: str) -> None:
    pcm = np.concatenate([gap(100), dtmf_tone(digit, 80, level=0.2), gap(100)])
    pcm = pcm + noise(len(pcm), 400)  # about 20 dB SNR
    assert run(GoertzelDetector(), pcm) == [digit]


def test_goertzel_minimum_duration() -> None:
    assert run(GoertzelDetector(), np.concatenate([gap(50), dtmf_tone("5", 40), gap(50)])) == ["5"]
    assert run(GoertzelDetector(), np.concatenate([gap(50), dtmf_tone("5", 20), gap(50)])) == []


@pytest.mark.parametrize("offset", [0, 16, 48, 72])
def test_goertzel_repeated_key_and_dropout(offset: int) -> None:
    tone, lead = dtmf_tone("9", 100), np.zeros(offset)
    two_presses = np.concatenate([lead, tone, gap(40), tone, gap(60)])
    assert run(GoertzelDetector(), two_presses) == ["9", "9"]
    dropout = np.concatenate([lead, tone, gap(10), tone, gap(60)])
    assert run(GoertzelDetector(), dropout) == ["9"]


def test_goertzel_twist_and_level_limits() -> None:
    t = np.arange(800) / 8000
    row, col = np.sin(2 * np.pi * 770 * t), np.sin(2 * np.pi * 1336 * t)  # key 5
    ok = (row * 0.3 + col * 0.3 * 10 ** (-6 / 20)) * 32767  # 6 dB normal twist
    too_much = (row * 0.3 + col * 0.3 * 10 ** (-12 / 20)) * 32767
    reverse = (row * 0.3 * 10 ** (-6 / 20) + col * 0.3) * 32767  # 6 dB reverse twist
    quiet = (row + col) * 32767 * 10 ** (-45 / 20)
    assert run(GoertzelDetector(), ok) == ["5"]
    assert run(GoertzelDetector(), too_much) == []
    assert run(GoertzelDetector(), reverse) == []
    assert run(GoertzelDetector(), quiet) == []


@pytest.mark.parametrize("payload_type", [g711.PCMU, g711.PCMA])
def test_goertzel_after_g711_round_trip(payload_type: int) -> None:
    pcm = np.concatenate([dtmf_tone(d, 70) if d != " " else gap(70) for d in "1 2 3 # "]).astype(
        np.int16
    )
    decoded = g711.decode(g711.encode(pcm, payload_type), payload_type)
    assert run(GoertzelDetector(), decoded) == ["1", "2", "3", "#"]


def vowel(f0: float, formants: tuple[float, ...], seconds: float) -> np.ndarray:
    """A voiced vowel: a glottal pulse train with harmonics shaped by formant peaks."""
    t = np.arange(int(8000 * seconds)) / 8000
    vibrato = f0 * (1 + 0.02 * np.sin(2 * np.pi * 5 * t))
    phase = 2 * np.pi * np.cumsum(vibrato) / 8000
    out = np.zeros_like(t)
    for h in range(1, int(3800 // f0)):
        gain = sum(1 / (1 + ((h * f0 - f) / 90) ** 2) for f in formants) / h**0.5
        out += gain * np.sin(h * phase)
    return out / np.max(np.abs(out)) * 12000


def test_goertzel_no_talk_off_on_synthesised_vowels_and_chords() -> None:
    signals = [
        vowel(f0, fm, 1.0)
        for f0 in (95, 120, 180, 230)
        for fm in ((730, 1090, 2440), (270, 2290, 3010), (570, 840, 2410))
    ]
    t = np.arange(8000) / 8000
    chord = (
        np.sum([np.sin(2 * np.pi * f * t) for f in (440, 554.37, 659.25, 880)], axis=0) * 6000
    )  # A major
    interval = (
        np.sin(2 * np.pi * 698.46 * t) + np.sin(2 * np.pi * 1318.5 * t)
    ) * 3000  # F5/E6 piano-ish, off-grid
    for signal in [*signals, chord]:
        assert run(GoertzelDetector(), signal) == []
    assert run(GoertzelDetector(), interval + vowel(120, (730, 1090, 2440), 1.0)) == []


@pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng not installed")
@pytest.mark.parametrize("voice", ["en-us", "en+f3", "de"])
def test_goertzel_no_talk_off_on_speech(tmp_path: Path, voice: str) -> None:
    text = (
        "Thank you for calling. For sales, press one. For support, press two. "
        "Please hold while we connect your call. Your message has been saved. Goodbye."
    )
    wav = tmp_path / "speech.wav"
    subprocess.run(["espeak-ng", "-v", voice, "-w", str(wav), text], check=True, timeout=60)
    data = wav.read_bytes()
    rate = struct.unpack_from("<I", data, 24)[0]
    pcm = np.frombuffer(data[44:], dtype=np.int16).astype(np.float64)
    pcm = np.interp(np.arange(0, len(pcm), rate / 8000), np.arange(len(pcm)), pcm)  # to 8 kHz
    assert len(pcm) > 8000 * 4
    pcm = pcm / np.max(np.abs(pcm)) * 30000
    assert run(GoertzelDetector(), pcm) == []
    # and a key pressed during the speech is still heard
    mixed = pcm.copy()
    mixed[16000 : 16000 + 800] = mixed[16000 : 16000 + 800] * 0.1 + dtmf_tone("4", 100, level=0.3)
    assert run(GoertzelDetector(), mixed) == ["4"]


def test_bank_analyses_many_streams_together_and_keeps_their_keys_apart() -> None:
    """Forty calls fed frame by frame, as the media clock's ticks see them: each gets its own
    key (at its own time, in noise, beside callers who only talk), once, and no other."""
    bank = InbandBank()
    streams = [bank.stream() for _ in range(40)]
    expected: list[list[str]] = []
    audio = []
    for i, _ in enumerate(streams):
        pcm = noise(8000, 300, seed=i)  # 1 s each
        keys: list[str] = []
        if i % 3:  # every third caller only talks (noise): no key
            key = "0123456789*#ABCD"[i % 16]
            start = 800 + 37 * i  # keys at different times, not on frame boundaries
            pcm[start : start + 640] += dtmf_tone(key, 80, level=0.2)
            keys = [key]
        expected.append(keys)
        audio.append(np.clip(pcm, -32768, 32767).astype(np.int16))
    heard: list[list[str]] = [[] for _ in streams]
    index = {id(s): i for i, s in enumerate(streams)}
    for frame in range(0, 8000, 160):
        for stream, pcm in zip(streams, audio, strict=True):
            stream.feed(pcm[frame : frame + 160])
        for stream, key in bank.analyse():  # once a tick
            heard[index[id(stream)]].append(key)
    assert heard == expected
    assert sum(map(len, expected)) == 26


def test_bank_a_closed_stream_is_not_analysed_and_drops_its_listener() -> None:
    bank = InbandBank()
    closing, staying = bank.stream(), bank.stream()
    closing.listener = staying.listener = print
    tone = dtmf_tone("7", 100, level=0.3)
    for stream in (closing, staying):
        stream.feed(tone)
    closing.close()
    assert [(s is staying, key) for s, key in bank.analyse()] == [(True, "7")]
    assert closing.listener is None and staying.listener is print
    closing.feed(tone)  # a late packet after the close: dropped, not kept
    assert bank.analyse() == [] and closing.pending == []


# --------------------------------------------------------------------------- robustness


@settings(deadline=None)  # timing is not under test; a loaded CI machine must not fail it
@given(st.binary(max_size=24), st.integers(0, 127), st.booleans())
def test_receiver_never_raises_on_any_payload(payload: bytes, pt: int, marker: bool) -> None:
    receiver = DtmfReceiver()
    digit = receiver.feed(RtpPacket(pt, 1, 1000, 7, payload, marker=marker), 101)
    assert digit is None or digit in "0123456789*#ABCD"
