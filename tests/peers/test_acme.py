"""The example flow flows/acme.ivr served for real: with the night switch on, a baresip caller
hears that Acme is closed, leaves a message after the tone, ends it with # and the message is in
mailbox 200 -- the same path a caller takes every evening.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.voicemail.store import VoicemailStore

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

ACME = Path(__file__).resolve().parents[2] / "flows" / "acme.ivr"
IvrServer = Any  # conftest.IvrServer
Phone = Any  # conftest.Baresip

# The people of flows/staff.csv (the flow's directory): ivr serve checks the directory against the
# deployment, so their extensions and mailboxes are defined; mailbox 200 follows, last (a test adds its PIN).
STAFF = "".join(
    f'[[extensions]]\nnumber = "{n}"\n[[mailboxes]]\nnumber = "{n}"\n' for n in ("100", *map(str, range(201, 214)), "300")
)
MAILBOX_200 = STAFF + """
[[mailboxes]]
number = "200"
owner = "Sales team"
"""
VOICE_HZ = 310.0  # the caller's "voice": a steady tone, easy to find again in the recording


def caller_voice(path: Path, seconds: float = 60.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * VOICE_HZ * t) * 6000).astype(np.int16), 8000, subtype="PCM_16")
    return path


def tone_frames(pcm: np.ndarray, rate: int, hz: float) -> int:
    """20 ms frames in which a pure tone at ``hz`` carries most of the energy (speech never does)."""
    n = rate // 50
    frames = pcm[: len(pcm) // n * n].astype(np.float64).reshape(-1, n)
    t = np.arange(n) / rate
    i = frames @ np.cos(2 * np.pi * hz * t)
    q = frames @ np.sin(2 * np.pi * hz * t)
    tone = 2 * (i**2 + q**2) / n  # energy of the hz component in each frame
    total = (frames**2).sum(axis=1)
    return int(np.sum((total > 1e6) & (tone > 0.8 * total)))


def test_acme_at_night_caller_leaves_a_message_in_mailbox_200(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server(ACME, sections=MAILBOX_200, data_files={"switches.json": '{"night": true}'})
    phone = baresip(caller_voice(tmp_path / "voice.wav"))
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("action") == "start_recording", timeout=60, what="recording"
    )
    time.sleep(3.0)  # the caller speaks for three seconds (this is the scenario, not a synchronisation)
    phone.command("sndcode", "#")
    phone.wait_event("CALL_CLOSED", timeout=60)
    record = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    phone.stop()

    assert server.steps(call_id)[:2] == ["start", "closed_today"]
    assert record["outcome"] == "voicemail" and record["detail"] == "200"
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "recording_done")
    assert done["reason"] == "key"

    messages = VoicemailStore(server.data).list("200")
    assert len(messages) == 1
    message = messages[0]
    assert 2.0 <= message.duration <= 5.0, message.duration
    audio, rate = soundfile.read(message.path, dtype="int16")
    assert rate == 8000 and abs(len(audio) / 8000 - message.duration) < 0.1
    spectrum = np.abs(np.fft.rfft(audio.astype(np.float64)))
    peak_hz = np.argmax(spectrum) * rate / len(audio)
    assert abs(peak_hz - VOICE_HZ) < 5, f"the recording's main frequency is {peak_hz:.0f} Hz"


def test_acme_mailbox_owner_logs_in_and_hears_the_message(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    from ivr.language import catalogue
    from ivr.voicemail.pins import hash_pin

    english = catalogue("en")
    ASK_BOX, ASK_PIN = english.say("voicemail.access.ask_box"), english.say("voicemail.access.ask_pin")  # noqa: N806

    sections = MAILBOX_200 + f'pin_hash = "{hash_pin("4826", "200")}"\n'
    server = ivr_server(ACME, sections=sections)
    message = tmp_path / "message.wav"
    t = np.arange(2 * 8000) / 8000
    soundfile.write(message, (np.sin(2 * np.pi * VOICE_HZ * t) * 8000).astype(np.int16), 8000, subtype="PCM_16")
    VoicemailStore(server.data).add("200", caller="+41791112233", duration=2.0, source=message)

    phone = baresip(caller_voice(tmp_path / "quiet.wav", seconds=90.0))
    phone.command("dial", f"sip:+41435435599@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]

    def said(text: str) -> dict[str, Any]:
        return server.wait_for(lambda r: r.get("call_id") == call_id and r.get("action") == "say" and text in r.get("text", ""), timeout=60, what=text)

    said(ASK_BOX)
    phone.command("sndcode", "200#")
    said(ASK_PIN)
    phone.command("sndcode", "4826#")
    said("To listen to your messages, press 1")
    phone.command("sndcode", "1")
    play = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("action") == "play" and str(r.get("path", "")).startswith("data:"), timeout=60)
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "prompt_done" and r.get("prompt_id") == play["prompt_id"], timeout=60)
    phone.command("hangup")
    phone.wait_event("CALL_CLOSED")
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    phone.stop()

    heard, rate = soundfile.read(phone.heard(), dtype="int16")
    assert tone_frames(heard, rate, VOICE_HZ) >= 75, "the owner did not hear the 2 s message"
    assert not any(r.get("event") == "flow_error" for r in server.call_records(call_id))
