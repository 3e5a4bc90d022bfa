"""Dial-by-name through ``ivr serve``: baresip spells a last name on the keypad (DTMF), picks the
person from the list read out, and the call is routed to that person's extension.
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

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "directory"
IvrServer = Any  # conftest.IvrServer
EXTENSION_201 = """
[[extensions]]
number = "201"
name = "Alice Johnson"
"""
Phone = Any  # conftest.Baresip


def test_keypad_directory_routes_to_the_chosen_person(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server("directory.ivr", sections=EXTENSION_201)
    soundfile.write(tmp_path / "quiet.wav", np.zeros(60 * 8000, np.int16), 8000, subtype="PCM_16")
    phone = baresip(tmp_path / "quiet.wav")
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]

    def said(text: str) -> dict[str, Any]:
        return server.wait_for(
            lambda r: r.get("call_id") == call_id and r.get("action") == "say" and text in r.get("text", ""),
            timeout=60,
            what=repr(text),
        )

    said("first three letters")
    phone.command("sndcode", "564#")  # J-O-H: Johnson, Johnston
    said("Alice Johnson")
    said("Jack Johnston")  # both names starting J-O-H are read out
    says = [r["text"] for r in server.call_records(call_id) if r.get("action") == "say"]
    before = says[says.index(next(t for t in says if "Alice Johnson" in t)) - 1]  # "Press N for"
    number = before.removeprefix("Press").removesuffix("for").strip()
    assert number.isdigit(), before
    phone.command("sndcode", number)
    result = server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("event") == "directory_result", timeout=60
    )
    assert (result["outcome"], result["extension"], result["name"]) == ("selected", "201", "Alice Johnson")
    transfer = server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("action") == "transfer", timeout=30
    )
    assert "201" in str(transfer.get("plan"))
    outcome = server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_result", timeout=30
    )
    assert outcome["outcome"] == "unavailable"  # extension 201 exists, but no phone registered it
    phone.command("hangup")
    phone.wait_event("CALL_CLOSED")
    phone.stop()


def test_spoken_name_is_confirmed_by_key_and_routed(
    ivr_server: Callable[..., IvrServer], baresip: Callable[[Path], Phone], tmp_path: Path
) -> None:
    server = ivr_server("directory_speech.ivr", sections=EXTENSION_201)
    name, rate = soundfile.read(FIXTURES / "alice-johnson-us.wav", dtype="int16")
    assert rate == 8000
    mic = np.zeros(60 * 8000, np.int16)
    mic[7 * 8000 : 7 * 8000 + len(name)] = name  # after "Please say the name of the person ..."
    soundfile.write(tmp_path / "mic.wav", mic, 8000, subtype="PCM_16")
    phone = baresip(tmp_path / "mic.wav")
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("action") == "say" and "Did you say Alice Johnson" in r.get("text", ""),
        timeout=60,
        what="the confirmation question",
    )
    phone.command("sndcode", "1")
    result = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "directory_result", timeout=60)
    assert (result["outcome"], result["extension"]) == ("selected", "201")
    outcome = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_result", timeout=30)
    assert outcome["outcome"] == "unavailable"
    phone.command("hangup")
    phone.wait_event("CALL_CLOSED")
    phone.stop()
