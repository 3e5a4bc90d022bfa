"""Click-to-call with real phones: the user's phone rings first, then the extension they asked for."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.config import load_config
from ivr.web.users import set_password
from tests.transfer import test_transfer_peers as transfer_peers
from tests.transfer.harness import peers

from .client import Client
from .conftest import HERE

pytestmark = [pytest.mark.slow, pytest.mark.peer, peers.needs_sipp]
uas = transfer_peers.uas  # sipp phones at fixed ports (static contacts)

SECTIONS = """
[http]
listen = "127.0.0.1:0"
admins = ["201"]  # hangs the call up from the console too
[[extensions]]
number = "201"
username = "201"
contacts = ["sip:201@127.0.0.1:{alice}"]
[[extensions]]
number = "202"
contacts = ["sip:202@127.0.0.1:{bob}"]
"""


@pytest.fixture
def phones(uas: Any, tmp_path: Path, tts_cache: Path) -> Iterator[tuple[Any, Any, Any, str]]:
    answering = str(peers.SCENARIOS / "uas_answer.xml")  # an absolute path: Uas looks in tests/transfer otherwise
    alice, bob = uas(answering), uas(answering)
    sections = SECTIONS.format(alice=alice.port, bob=bob.port)
    (tmp_path / "data").mkdir()
    (tmp_path / "users.toml").write_text(f'[server]\ndata = "{tmp_path / "data"}"\n' + sections)
    set_password(load_config(tmp_path / "users.toml"), "201", "alice-pass-201")
    shutil.copy(HERE / "flows" / "office.ivr", tmp_path / "office.ivr")
    server = peers.start_ivr(tmp_path, [tmp_path / "office.ivr"], sections=sections, tts_cache=tts_cache)
    try:
        url = server.wait_for(lambda r: r.get("event") == "http_listening")["url"]
        yield alice, bob, server, url
    finally:
        server.stop()


def test_click_to_call_rings_the_users_phone_then_the_number_and_bridges_them(phones: Any) -> None:
    alice, bob, server, url = phones
    client = Client(url)
    assert client.login("201", "alice-pass-201").status == 200
    reply = client.request("POST", "/api/v1/calls", json_body={"from": "201", "to": "202"})
    assert reply.status == 200, reply.text
    call_id = reply.json()["call_id"]
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_answered")
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
    assert (done["outcome"], done["target"]) == ("answered", "202")
    listed = client.get("/api/v1/calls").json()["click_to_call"]
    assert listed == [{"call_id": call_id, "from": "201", "to": "202", "state": "bridged"}]
    assert client.request("DELETE", f"/api/v1/calls/{call_id}").json() == {"call_id": call_id, "hung_up": True}
    ended = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    assert ended["reason"] == "console"
    alice_log, bob_log = alice.passed(), bob.passed()
    assert "BYE sip:" in alice_log and "BYE sip:" in bob_log
    invite = next(m for m in alice_log.split("-----") if "INVITE sip:201@" in m)
    assert "From: <sip:202@" in invite  # the user's phone shows the number it is about to ring
    assert client.get("/api/v1/calls").json()["click_to_call"] == []
