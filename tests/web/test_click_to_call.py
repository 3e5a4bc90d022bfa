"""Click-to-call and the console's transfer with real phones and a test trunk (sipp).

Click-to-call rings the user's phone first, then the extension or the number outside (through
the trunk) they asked for, under the phone's own dial plan: a user whose extension may not
call out gets 403 and nothing is dialled.  The console transfers a live call to an extension
(an admin any call, a user only the calls to their extension).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest

from ivr.config import load_config
from ivr.web.users import set_password
from tests.peers.test_phones import Trunk
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
may_call_out = true
allow = ["+4179*"]
caller_id = "+41435435501"
[[extensions]]
number = "202"
username = "202"
contacts = ["sip:202@127.0.0.1:{bob}"]
[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = {trunk}
allow = ["+41*"]
"""
PASSWORDS = {"201": "alice-pass-201", "202": "bob-pass-202"}
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def trunk(tmp_path: Path) -> Iterator[Trunk]:
    carrier = Trunk(tmp_path / "trunk")  # a sipp uas answering one call
    yield carrier
    carrier.stop()


@pytest.fixture
def phones(uas: Any, trunk: Trunk, tmp_path: Path, tts_cache: Path) -> Iterator[tuple[Any, Any, Any, str]]:
    answering = str(peers.SCENARIOS / "uas_answer.xml")  # an absolute path: Uas looks in tests/transfer otherwise
    alice, bob = uas(answering), uas(answering)
    sections = SECTIONS.format(alice=alice.port, bob=bob.port, trunk=trunk.port)
    (tmp_path / "data").mkdir()
    (tmp_path / "users.toml").write_text(f'[server]\ndata = "{tmp_path / "data"}"\n' + sections)
    for user, password in PASSWORDS.items():
        set_password(load_config(tmp_path / "users.toml"), user, password)
    shutil.copy(HERE / "flows" / "office.ivr", tmp_path / "office.ivr")
    server = peers.start_ivr(tmp_path, [tmp_path / "office.ivr"], sections=sections, tts_cache=tts_cache)
    try:
        url = server.wait_for(lambda r: r.get("event") == "http_listening")["url"]
        yield alice, bob, server, url
    finally:
        server.stop()


def logged_in(url: str, user: str) -> Client:
    client = Client(url)
    assert client.login(user, PASSWORDS[user]).status == 200
    return client


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
    # transfer_done is logged (by the call log's own thread) just before the click-to-call hears
    # that it is bridged, on the server's loop: the API may still show "dialling" for a moment
    deadline = time.monotonic() + 10
    while (listed := client.get("/api/v1/calls").json()["click_to_call"]) and listed[0]["state"] == "dialling":
        assert time.monotonic() < deadline, listed
        time.sleep(0.05)
    assert listed == [{"call_id": call_id, "from": "201", "to": "202", "state": "bridged"}]
    assert client.request("DELETE", f"/api/v1/calls/{call_id}").json() == {"call_id": call_id, "hung_up": True}
    ended = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    assert ended["reason"] == "console"
    alice_log, bob_log = alice.passed(), bob.passed()
    assert "BYE sip:" in alice_log and "BYE sip:" in bob_log
    invite = next(m for m in alice_log.split("-----") if "INVITE sip:201@" in m)
    assert "From: <sip:202@" in invite  # the user's phone shows the number it is about to ring
    assert client.get("/api/v1/calls").json()["click_to_call"] == []


def test_click_to_call_dials_a_number_outside_through_the_trunk_when_the_user_may_call_out(
    phones: Any, trunk: Trunk
) -> None:
    alice, _, server, url = phones
    client = logged_in(url, "201")
    reply = client.request("POST", "/api/v1/calls", json_body={"from": "201", "to": "+41791234567"})
    assert reply.status == 200, reply.text
    call_id = reply.json()["call_id"]
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_answered")
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
    assert (done["outcome"], done["target"]) == ("answered", "+41791234567")
    assert client.request("DELETE", f"/api/v1/calls/{call_id}").status == 200
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    assert trunk.wait() == 0  # the trunk's call went through to its BYE
    invite = next(m for m in trunk.messages().split("-----") if "INVITE sip:+41791234567@" in m)
    assert "From: <sip:+41435435501@" in invite  # the user's own number, as from their phone
    assert "BYE sip:" in alice.passed()


@pytest.mark.parametrize("user, number, error", [
    ("202", "+41791234567", "extension 202 may not call out (may_call_out = false)"),
    ("201", "+33612345678", "+33612345678 is not in extension 201's allow patterns"),
])
def test_click_to_call_outside_the_dial_plan_is_refused_and_nothing_is_dialled(
    phones: Any, trunk: Trunk, user: str, number: str, error: str
) -> None:
    alice, bob, server, url = phones
    reply = logged_in(url, user).request("POST", "/api/v1/calls", json_body={"from": user, "to": number})
    assert (reply.status, reply.json()) == (403, {"error": error})
    assert logged_in(url, "201").get("/api/v1/calls").json()["click_to_call"] == []
    alice.stop()
    bob.stop()
    trunk.stop()
    assert "INVITE" not in trunk.messages()
    for phone in (alice, bob):
        log = phone.folder / "messages.log"
        assert not log.exists() or "INVITE" not in log.read_text(errors="replace")


def test_the_console_transfers_a_live_call_to_an_extension(phones: Any, sipp: Any) -> None:
    _, bob, server, url = phones
    result: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: result.update(run=sipp("long_call.xml", server)))
    caller.start()
    try:
        call_id = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
        server.wait_for(lambda r: r.get("call_id") == call_id and r.get("action") == "answer")
        bob_client = logged_in(url, "202")  # a user: the call is to 100, not to their extension
        refused = bob_client.request("POST", f"/api/v1/calls/{call_id}/transfer", json_body={"to": "202"})
        assert (refused.status, refused.json()) == (403, {"error": f"call {call_id} is not to your extension"})
        admin = logged_in(url, "201")
        outside = admin.request("POST", f"/api/v1/calls/{call_id}/transfer", json_body={"to": "+41791234567"})
        assert (outside.status, outside.json()) == (
            403, {"error": "+41791234567 is not an extension: the console transfers to extensions only"})
        form = f'action="/console/calls/{call_id}/transfer"'
        assert form in admin.get("/console/calls").text  # the dashboard's Transfer button
        reply = admin.request("POST", f"/console/calls/{call_id}/transfer", content_type=FORM,
                              data=urlencode({"to": "202", "csrf": admin.csrf}).encode())
        assert (reply.status, reply.headers["Location"]) == (303, "/")
        assert server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "console_transfer")
        done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
        assert (done["outcome"], done["target"]) == ("answered", "202")
        server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    finally:
        caller.join(60)
    result["run"].check()
    assert "BYE sip:" in bob.passed()  # the caller's hang-up ended the bridge to 202
