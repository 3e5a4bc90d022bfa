"""A name said at a speech menu, through ``ivr serve`` with the real recogniser: the menu's grammar
holds the directory's names, and the directory confirms the name without asking for it again."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from .test_directory import EXTENSION_201, FIXTURES

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]


def test_a_name_said_at_the_menu_is_confirmed_without_asking_again(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    server = ivr_server("menu_directory.ivr", sections=EXTENSION_201)
    name, rate = soundfile.read(FIXTURES / "alice-johnson-us.wav", dtype="int16")
    assert rate == 8000
    mic = np.zeros(60 * 8000, np.int16)
    mic[4 * 8000 : 4 * 8000 + len(name)] = name  # after "For sales, say sales. Or say a name."
    soundfile.write(tmp_path / "mic.wav", mic, 8000, subtype="PCM_16")
    phone = baresip(tmp_path / "mic.wav")
    phone.command("dial", f"sip:+41435435570@{server.address}")
    phone.wait_event("CALL_ESTABLISHED")
    call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    directory = server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("action") == "directory", timeout=60, what="the directory"
    )
    # The recogniser hears one of Alice's phrases in the menu's grammar: her name or her alias Ali.
    assert directory["heard"] in ("alice johnson", "ali") and directory["keypad_key"] == "9", directory
    server.wait_for(
        lambda r: r.get("call_id") == call_id and r.get("action") == "say" and "Did you say Alice Johnson" in r.get("text", ""),
        timeout=60,
        what="the confirmation question",
    )
    says = [r["text"] for r in server.call_records(call_id) if r.get("action") == "say"]
    assert not any("Please say the name" in text for text in says), says
    phone.command("sndcode", "1")
    result = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "directory_result", timeout=60)
    assert (result["outcome"], result["extension"]) == ("selected", "201")
    phone.command("hangup")
    phone.wait_event("CALL_CLOSED")
    phone.stop()
