"""During a bridged call, with real baresip phones: recording it, and adding a third person.

Extensions 201, 202 and 203 are baresip phones that register with digest; 201 may record
(``may_record``) and has mailbox 201.  Each phone's microphone is its own band-limited
noise; what is heard or recorded is checked by normalised cross-correlation with what each
phone sent (tests/peers/test_conference.py explains the measure).

* 201 calls 202 and presses ``*1``: the conversation is recorded.  202 presses ``*1`` too
  and is refused (it may not record), and the call goes on.  When 201 hangs up, the
  recording is a message in mailbox 201 (voicemail's index) that contains both sides.
* 201 calls 202 and types ``*3 203 #``: 203 rings, answers, and each of the three phones
  hears the two others (and not itself).
* After each call the server holds no leg and no room (``/metrics``).
"""

from __future__ import annotations

import shutil
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile
from prometheus_client.parser import text_string_to_metric_families

from ivr.voicemail.store import VoicemailStore
from tests.peers.conftest import FLOWS, free_port
from tests.peers.test_conference import best_correlation

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

IvrServer = Any
RATE = 8000
PASSWORDS = {"201": "desk-201-secret", "202": "desk-202-secret", "203": "desk-203-secret"}
CALLER_SECONDS = 12.0  # 201's microphone: baresip hangs up when it ends
PIECE = 0.5


def noise(path: Path, seed: int, seconds: float) -> np.ndarray:
    """Noise from 300 to 3000 Hz at about -16 dBFS, distinct per seed."""
    n = int(seconds * RATE)
    spectrum = np.fft.rfft(np.random.default_rng(seed).standard_normal(n))
    freqs = np.fft.rfftfreq(n, 1 / RATE)
    spectrum[(freqs < 300) | (freqs > 3000)] = 0
    signal = np.fft.irfft(spectrum, n)
    pcm = (signal / np.sqrt(np.mean(signal**2)) * 5000).clip(-32000, 32000).astype(np.int16)
    soundfile.write(path, pcm, RATE, subtype="PCM_16")
    return pcm


def found(heard: np.ndarray, mic: np.ndarray, start: float, end: float) -> list[float]:
    """How well each half-second piece of ``mic`` between ``start`` and ``end`` s is found in ``heard``."""
    return [best_correlation(heard, mic[int(t * RATE): int((t + PIECE) * RATE)]) for t in np.arange(start, end, PIECE)]


def account(number: str, server: IvrServer) -> str:
    return (f"<sip:{number}@127.0.0.1:{server.port}>;auth_pass={PASSWORDS[number]};regint=300"
            f";audio_codecs=PCMU,PCMA;answermode=auto")


def pbx(ivr_server: Callable[..., IvrServer]) -> tuple[IvrServer, int]:
    http = free_port()
    extensions = "".join(
        f'[[extensions]]\nnumber = "{n}"\nusername = "{n}"\npassword = "{p}"\n'
        + ('mailbox = "201"\nmay_record = true\n' if n == "201" else "") + "\n"
        for n, p in PASSWORDS.items()
    )
    sections = extensions + '[[mailboxes]]\nnumber = "201"\nowner = "Alice"\n\n' + f'[http]\nlisten = "127.0.0.1:{http}"\n'
    return ivr_server(FLOWS / "dial_anything.ivr", sections=sections, extra=("--drain-timeout", "1s")), http


def phone(baresip: Callable[..., Any], server: IvrServer, number: str, mic: Path) -> Any:
    device = baresip(mic, account(number, server))
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200 and r.get("aor") == number,
                    what=f"{number} registered")
    return device


def press(device: Any, keys: str) -> None:
    for key in keys:
        device.command("sndcode", key)


def call_202(baresip: Callable[..., Any], server: IvrServer, mics: Path, numbers: tuple[str, ...]) -> list[Any]:
    """The phones ``numbers`` registered (each with ``mics/NUMBER.wav``), 201 calling 202, both talking."""
    devices = {n: phone(baresip, server, n, mics / f"{n}.wav") for n in numbers}
    devices["201"].command("dial", f"sip:202@{server.address}")
    devices["201"].wait_event("CALL_ESTABLISHED")
    devices["202"].wait_event("CALL_ESTABLISHED")
    return [devices[n] for n in ("201", "202", *sorted(set(numbers) - {"201", "202"}))]


def assert_nothing_held(server: IvrServer, http: int) -> None:
    """After the call's end the server holds no call, transfer leg or conference room."""
    server.wait_for(lambda r: r.get("event") == "ended", what="the call's end")
    assert held_by_server(http) == {"ivr_calls_up": 0, "ivr_transfer_legs": 0, "ivr_conference_rooms": 0}


def held_by_server(http: int) -> dict[str, float]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    return {s.name: s.value for f in text_string_to_metric_families(text) for s in f.samples
            if s.name in ("ivr_calls_up", "ivr_transfer_legs", "ivr_conference_rooms")}


def test_a_recorded_call_is_a_message_with_both_sides(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server, http = pbx(ivr_server)
    mic201 = noise(tmp_path / "201.wav", 1, CALLER_SECONDS)
    mic202 = noise(tmp_path / "202.wav", 2, 30.0)
    caller, callee = call_202(baresip, server, tmp_path, ("202", "201"))
    press(caller, "*1")
    started = server.wait_for(lambda r: r.get("event") == "call_recording", what="the recording")
    assert (started["mailbox"], started["other"]) == ("201", "202")
    press(callee, "*1")  # 202 may not record: refused, the call goes on
    refused = server.wait_for(lambda r: r.get("event") == "call_recording_refused", what="202's refusal")
    assert refused["by"] == "202"
    said = server.wait_for(lambda r: r.get("event") == "incall_say" and r.get("side") == "callee"
                           and "not allowed" in r.get("text", ""), what="202 told")
    assert said["text"] == "You are not allowed to record calls."
    caller.wait_event("CALL_CLOSED", timeout=40)
    callee.wait_event("CALL_CLOSED", timeout=20)
    stopped = server.wait_for(lambda r: r.get("event") == "call_recording_stopped", what="the recording's end")
    assert stopped["reason"] == "bridge_ended" and stopped["duration"] > 6
    assert len([r for r in server.records if r.get("event") == "call_recording"]) == 1
    stored = server.wait_for(lambda r: r.get("event") == "call_recording_stored", what="the message")

    [message] = VoicemailStore(server.data).list("201")
    assert message.id == stored["message"]
    assert (message.caller, message.status) == ("202", "new")
    recorded, rate = soundfile.read(message.path, dtype="int16")
    assert rate == RATE and abs(len(recorded) / RATE - message.duration) < 0.05
    for who, mic in (("201", mic201), ("202", mic202)):  # a stall of the loaded machine may cost a piece or two
        scores = found(recorded, mic, 5.0, 8.0)
        assert sum(s > 0.5 for s in scores) >= len(scores) - 2, f"the recording lacks {who}: {scores}"
    never_sent = noise(tmp_path / "nobody.wav", 3, CALLER_SECONDS)
    assert max(found(recorded, never_sent, 5.0, 8.0)) < 0.2  # the measure finds only what was sent
    assert_nothing_held(server, http)


def test_a_third_person_added_to_a_call_hears_and_is_heard(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server, http = pbx(ivr_server)
    mics = {"201": noise(tmp_path / "201.wav", 1, CALLER_SECONDS),
            "202": noise(tmp_path / "202.wav", 2, 30.0), "203": noise(tmp_path / "203.wav", 3, 30.0)}
    caller, callee, third = call_202(baresip, server, tmp_path, ("203", "202", "201"))
    press(caller, "*3203#")
    adhoc = server.wait_for(lambda r: r.get("event") == "conference_adhoc", what="the call becoming a room")
    assert (adhoc["by"], adhoc["adding"]) == ("201", "203")
    third.wait_event("CALL_ESTABLISHED")
    server.wait_for(lambda r: r.get("event") == "conference_added", what="203 in the room")
    caller.wait_event("CALL_CLOSED", timeout=40)  # 201's microphone ended: the call ends for all
    callee.wait_event("CALL_CLOSED", timeout=20)
    third.wait_event("CALL_CLOSED", timeout=20)

    heard = {n: soundfile.read(p.heard(), dtype="int16")[0] for n, p in (("201", caller), ("202", callee),
                                                                          ("203", third))}
    # three seconds of each microphone while all three are in the room (203's starts later); a
    # stall of the loaded machine may cost a piece or two of them
    probes = {"201": (5.5, 8.5), "202": (5.5, 8.5), "203": (2.5, 5.5)}
    for listener in heard:
        for talker, mic in mics.items():
            scores = found(heard[listener], mic, *probes[talker])
            if talker == listener:
                assert max(scores) < 0.2, f"{listener} hears itself: {scores}"
            else:
                assert sum(s > 0.5 for s in scores) >= len(scores) - 2, f"{listener} does not hear {talker}: {scores}"
    assert_nothing_held(server, http)
