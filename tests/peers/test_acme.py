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

MAILBOX_200 = """
[[mailboxes]]
number = "200"
owner = "Sales team"
"""
VOICE_HZ = 310.0  # the caller's "voice": a steady tone, easy to find again in the recording


def caller_voice(path: Path, seconds: float = 60.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * VOICE_HZ * t) * 6000).astype(np.int16), 8000, subtype="PCM_16")
    return path


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
