"""The night switch and follow-me codes from a phone, against a live ``ivr serve``.

Extension 204 is a scripted phone (tests/transfer/scripted_phone.py) that dials the codes with
digest credentials and types keys by SIP INFO: ``*41`` and the night PIN turn the night
switch on in the data folder's ``switches.json``; ``*50`` turns 204's follow-me number off
(kept aside in ``forwarding.json``) and ``*51`` on again.  Each call is answered, says what
changed and is ended by ivr.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from .scripted_phone import Dialog, ScriptedPhone
from .test_transfer_peers import FLOW

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

PASSWORD = "pw-204-Qm3t"
SECTIONS = f"""
[features]
night_pin = "8642"

[[extensions]]
number = "204"
username = "204"
password = "{PASSWORD}"
follow_me = ["+41797001204"]
"""


@pytest.fixture
def phone204(ivr_server: Callable[..., Any]) -> Iterator[tuple[Any, ScriptedPhone]]:
    server = ivr_server(FLOW, sections=SECTIONS)
    phone = ScriptedPhone((server.host, server.port), "204", PASSWORD)
    yield server, phone
    phone.close()


def dial(server: Any, phone: ScriptedPhone, code: str, keys: str = "") -> list[str]:
    """Dial ``code``, type ``keys``, wait for ivr's BYE: what the call said."""
    call = phone.call(code)
    assert isinstance(call, Dialog), call
    if keys:
        server.wait_for(lambda r: r.get("call_id") == call.call_id and r.get("action") == "say")
        phone.keys(call, keys)
    phone.wait(lambda t: t.startswith("BYE ") and call.call_id in t, f"BYE after {code}")
    server.wait_for(lambda r: r.get("call_id") == call.call_id and r.get("event") == "ended")
    return [r["text"] for r in server.call_records(call.call_id) if r.get("action") == "say"]


def test_night_switch_with_its_pin_then_follow_me_off_and_on(phone204: tuple[Any, ScriptedPhone]) -> None:
    server, phone = phone204
    said = dial(server, phone, "*41", "8642#")
    assert said[-1] == "The night switch is on. Calls are now handled as outside office hours."
    assert json.loads((server.data / "switches.json").read_text())["night"] is True
    assert dial(server, phone, "*50") == ["Follow-me is off. Your calls ring only this extension."]
    stored = json.loads((server.data / "forwarding.json").read_text())
    assert stored == {"204": {"follow_me": [], "paused": ["+41797001204"]}}
    assert dial(server, phone, "*51") == ["Follow-me is on. Your calls also ring your other numbers."]
    assert json.loads((server.data / "forwarding.json").read_text()) == {"204": {"follow_me": ["+41797001204"]}}
