"""A German call for real: baresip leaves a message in a German flow, then logs in and listens to
it.  What baresip heard is compared with the server's own German renderings (espeak-ng's ``de``
voice) by correlation, as the other baresip tests do: the greeting, the goodbye and the summary
of the mailbox must each be found in the audio."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.media import g711
from ivr.media.tts import TtsEngine
from ivr.voicemail.pins import hash_pin
from ivr.voicemail.store import VoicemailStore
from tests.peers.test_acme import caller_voice, tone_frames
from tests.peers.test_baresip import best_match, refine

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

IvrServer = Any  # conftest.IvrServer
Phone = Any  # conftest.Baresip

MAILBOX = f"""
[[mailboxes]]
number = "200"
owner = "Anna Meier"
pin_hash = "{hash_pin("2580", "200")}"
max_length = "3s"
"""
GREETING = (
    "Anna Meier ist zurzeit nicht erreichbar. Bitte hinterlassen Sie nach dem Signalton eine Nachricht und "
    "drücken Sie die Rautetaste, wenn Sie fertig sind."
)
SAVED = "Ihre Nachricht wurde gespeichert. Auf Wiederhören."
ASK_PIN = "Bitte geben Sie Ihre PIN ein und drücken Sie dann die Rautetaste."
SUMMARY = "Sie haben eine neue Nachricht und keine gespeicherten Nachrichten."
VOICE_HZ = 310.0  # test_acme's caller voice


def found_in(heard: np.ndarray, server: IvrServer, text: str) -> list[float]:
    """Correlation of four 0.5 s pieces of the server's German rendering of ``text`` with the audio."""
    tts = TtsEngine(server.data / "tts-cache")  # the server's cache: no synthesis here
    clip = g711.decode(tts.render(text, voice="de").encoded(0), 0)  # as sent in PCMU
    scores = []
    for start in range(0, 16000, 4000):
        piece = clip[start : start + 4000]
        score, lag = best_match(heard, piece, search=len(heard))
        scores.append(refine(heard, piece, lag) if score > 0.5 else score)
    return scores


def wait_said(server: IvrServer, call_id: str, text: str) -> dict[str, Any]:
    """The ``say`` record of ``text`` once its prompt has played out."""
    said = server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("action") == "say" and r.get("text") == text, timeout=60, what=text
    )
    server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("event") == "prompt_done" and r.get("prompt_id") == said["prompt_id"],
        timeout=60, what=f"the end of {text!r}",
    )
    return said


def test_a_german_caller_leaves_a_message_and_listens_to_it(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server("german_voicemail.ivr", sections=MAILBOX)

    leaving = baresip(caller_voice(tmp_path / "voice.wav"))
    leaving.command("dial", f"sip:+41435435570@{server.address}")
    leaving.wait_event("CALL_ESTABLISHED")
    first = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    leaving.wait_event("CALL_CLOSED", timeout=90)  # greeting, tone, 3 s of message, goodbye, BYE
    server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "ended")
    leaving.stop()
    messages = VoicemailStore(server.data).list("200")
    assert len(messages) == 1 and messages[0].duration >= 2.5
    heard, rate = soundfile.read(leaving.heard(), dtype="int16")
    assert rate == 8000
    for text in (GREETING, SAVED):
        scores = found_in(heard, server, text)
        assert sum(score > 0.8 for score in scores) >= 3, f"baresip did not hear {text!r} in German: {scores}"

    listening = baresip(caller_voice(tmp_path / "quiet.wav", seconds=90.0))
    listening.command("dial", f"sip:+41435435599@{server.address}")
    listening.wait_event("CALL_ESTABLISHED")
    second = server.wait_for(lambda r: r.get("event") == "incoming" and r.get("call_id") != first)["call_id"]
    wait_said(server, second, ASK_PIN)
    listening.command("sndcode", "2580#")
    wait_said(server, second, SUMMARY)
    listening.command("sndcode", "1")
    play = server.wait_for(
        lambda r: r.get("call_id") == second and r.get("action") == "play" and str(r.get("path", "")).startswith("data:"),
        timeout=60,
    )
    server.wait_for(
        lambda r: r.get("call_id") == second and r.get("event") == "prompt_done" and r.get("prompt_id") == play["prompt_id"],
        timeout=60,
    )
    listening.command("hangup")
    listening.wait_event("CALL_CLOSED")
    server.wait_for(lambda r: r.get("call_id") == second and r.get("event") == "ended")
    listening.stop()

    heard, rate = soundfile.read(listening.heard(), dtype="int16")
    for text in (ASK_PIN, SUMMARY):
        scores = found_in(heard, server, text)
        assert sum(score > 0.8 for score in scores) >= 3, f"baresip did not hear {text!r} in German: {scores}"
    assert tone_frames(heard, rate, VOICE_HZ) >= 75, "the owner did not hear the message left in the first call"
    said = [r["text"] for r in server.call_records(second) if r.get("action") == "say"]
    assert said[:2] == [ASK_PIN, SUMMARY]
    assert said[2].startswith("Um Ihre Nachrichten abzuhören") and said[3].startswith("Neue Nachricht eins von eins.")
    assert not any(r.get("event") == "flow_error" for r in server.call_records())
