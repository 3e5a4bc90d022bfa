"""The message lamp of a desk phone follows what its owner does in the console.

A real ``ivr serve`` with the console on (tests/web/conftest.py's office set-up), and Bob's
phone (extension 202): baresip with its ``mwi`` module, subscribed to ``message-summary``
(RFC 3842) for its mailbox.  A message waits in mailbox 202, so the lamp is lit.  Bob logs in
to the console's API and marks the message heard: the console writes the store and tells the
server (``mailbox_changed`` on the control connection), and the phone gets a NOTIFY with
``Messages-Waiting: no`` and the message counted as old.  Deleting it gives 0/0.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from ivr.voicemail.store import VoicemailStore
from tests.peers.test_lamps import mwi_body, notified, tone

from .conftest import start_web

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]


def lamp(phone: Any, counts: str) -> str:
    """The body of the NOTIFY that brings ``counts`` (``new/old``) to the phone (earlier ones skipped)."""
    bodies = [mwi_body(phone)]
    while f"Voice-Message: {counts}" not in bodies[-1] and len(bodies) < 4:
        bodies.append(mwi_body(phone))
    assert f"Voice-Message: {counts}" in bodies[-1], bodies
    return bodies[-1]


@pytest.mark.xfail(
    strict=False,
    reason="known flake, 2 of about 15 runs (the last clean-clone CI among them): baresip's SUBSCRIBE "
    "for message-summary is answered 401 again and again and the first NOTIFY never comes; cause not "
    "found yet (see the note on issue 15). It runs in CI; a pass shows as XPASS.",
)
def test_the_lamp_goes_out_when_the_owner_marks_the_message_heard_in_the_console(
    baresip: Callable[..., Any], tmp_path: Path, tts_cache: Path
) -> None:
    (tmp_path / "web").mkdir()
    web = start_web(tmp_path / "web", tts_cache)
    ivr: Any = web.ivr
    phone = None
    try:
        # A caller's message in mailbox 202, in the store the server and the console share.
        store = VoicemailStore(web.data)
        message = store.add("202", caller="+41791112233", duration=2.0, source=tone(tmp_path / "msg.wav", 440, 2))
        account = f"<sip:202@{ivr.address}>;auth_pass=bob-secret-202;regint=300;mwi=yes;audio_codecs=PCMU"
        phone = baresip(tone(tmp_path / "quiet.wav", 300, 60), account, modules=("mwi.so",))
        ivr.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200 and r.get("aor") == "202",
                     what="202 registered")
        # lit (the phone may report this first NOTIFY before the test's control connection is up)
        assert "Messages-Waiting: yes" in notified(ivr, "202", "Voice-Message: 1/0")["body"]

        bob = web.client("202")
        reply = bob.request("PATCH", f"/api/v1/mailboxes/202/messages/{message.id}", json_body={"status": "saved"})
        assert (reply.status, reply.json()) == (200, {"id": message.id, "status": "saved"})
        body = lamp(phone, "0/1")
        assert "Messages-Waiting: no" in body and "Message-Account: sip:202@" in body
        assert "Messages-Waiting: no" in notified(ivr, "202", "Voice-Message: 0/1")["body"]

        reply = bob.request("DELETE", f"/api/v1/mailboxes/202/messages/{message.id}")
        assert (reply.status, reply.json()) == (200, {"id": message.id, "deleted": True})
        assert "Messages-Waiting: no" in lamp(phone, "0/0")
    finally:
        if phone is not None:
            phone.stop()  # un-REGISTERs while the server still answers
        ivr.stop()
