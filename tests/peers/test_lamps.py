"""The lamps on the phones against a live ``ivr serve``: message waiting and the busy lamp field.

* baresip's ``mwi`` module subscribes to ``message-summary`` for extension 201
  (digest-authenticated); a caller leaves a voicemail for 201 and the phone gets a
  NOTIFY with ``Messages-Waiting: yes`` and one new message.
* A subscription survives a restart: the restarted server sends it a NOTIFY.
* A sipp subscriber watching colleague 202's line (RFC 4235) sees terminated, then
  early and confirmed while 202 takes a call, then terminated again.
* A SUBSCRIBE to an unknown event package gets 489, one to another user's mailbox
  403; neither leaves a subscription behind.
"""

from __future__ import annotations

import shutil
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("baresip") is None,
                       reason="sipp (sip-tester) and baresip (baresip-core) are needed"),
]

IvrServer = Any
SECTIONS = """
[[extensions]]
number = "201"
password = "desk-201-secret"
mailbox = "201"

[[extensions]]
number = "202"
password = "desk-202-secret"

[[mailboxes]]
number = "201"
owner = "Alice"
silence = "0s"
"""


def tone(path: Path, hz: float, seconds: float) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * hz * t) * 8000).astype(np.int16), 8000, subtype="PCM_16")
    return path


def notified(server: IvrServer, resource: str, text: str) -> dict[str, Any]:
    return server.wait_for(lambda r: r.get("event") == "notify" and r.get("resource") == resource
                           and text in r.get("body", ""), timeout=60, what=f"a NOTIFY for {resource} with {text!r}")


def mwi_body(phone: Any) -> str:
    """The body of the next MWI_NOTIFY baresip reports (consumed, so the next call gets the next one)."""
    event = phone.wait_event("MWI_NOTIFY", timeout=30)
    phone.events.remove(event)
    return str(event.get("param", ""))


def subscriptions(server: IvrServer) -> int:
    with sqlite3.connect(server.data / "subscriptions.sqlite") as db:
        return int(db.execute("SELECT COUNT(*) FROM subscriptions").fetchone()[0])


def test_the_message_lamp_lights_when_a_voicemail_is_left(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server = ivr_server("leave_message.ivr", sections=SECTIONS)
    account = f"<sip:201@127.0.0.1:{server.port}>;auth_pass=desk-201-secret;regint=300;mwi=yes;audio_codecs=PCMU"
    phone = baresip(tone(tmp_path / "quiet.wav", 300, 60), account, modules=("mwi.so",))
    notified(server, "201", "Voice-Message: 0/0")
    caller = baresip(tone(tmp_path / "message.wav", 440, 14))  # speaks until its mic ends, then hangs up
    caller.command("dial", f"sip:+41435435570@127.0.0.1:{server.port}")
    caller.wait_event("CALL_CLOSED", timeout=60)
    record = notified(server, "201", "Voice-Message: 1/0")
    assert "Messages-Waiting: yes" in record["body"]
    # The phone reports each NOTIFY (the first may come before this test's control connection does).
    bodies = [mwi_body(phone)]
    while "Voice-Message: 1/0" not in bodies[-1] and len(bodies) < 3:
        bodies.append(mwi_body(phone))
    assert "Messages-Waiting: yes" in bodies[-1] and "Voice-Message: 1/0" in bodies[-1], bodies
    assert subscriptions(server) == 1
