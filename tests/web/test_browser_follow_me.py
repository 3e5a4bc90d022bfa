"""A user sets a follow-me number in the browser and the next transfer to them rings it: Chromium
against a real ``ivr serve``, a sipp caller, and a sipp UAS as the carrier trunk the mobile is
reached through (Bob's desk phone is not registered, so the transfer goes on to his follow-me)."""

from __future__ import annotations

import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from ivr.config import load_config
from ivr.web.users import set_password
from tests.transfer import test_transfer_peers as transfer_peers
from tests.transfer.harness import peers

from .conftest import HERE, PASSWORDS, WebServer
from .test_browser import EC, By, browser, pytestmark, saved_after, shots, wait  # noqa: F401 (fixtures)
from .test_browser import log_in as browser_log_in

uas = transfer_peers.uas  # a sipp UAS at a free port: here the carrier trunk
SECTIONS = """
[http]
listen = "127.0.0.1:0"
[[extensions]]
number = "202"
username = "202"
may_call_out = true
allow = ["+4179*"]
[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = {trunk}
caller_id = "+41435435570"
allow = ["+4179*"]
"""


@pytest.fixture
def bob_server(uas: Any, tmp_path: Path, tts_cache: Path) -> Iterator[tuple[WebServer, Any]]:
    trunk = uas(str(peers.SCENARIOS / "uas_answer.xml"))  # answers the one call the follow-me number gets, stays until ivr's BYE
    sections = SECTIONS.format(trunk=trunk.port)
    (tmp_path / "data").mkdir()
    (tmp_path / "users.toml").write_text(f'[server]\ndata = "{tmp_path / "data"}"\n' + sections)
    set_password(load_config(tmp_path / "users.toml"), "202", PASSWORDS["202"])
    shutil.copy(HERE / "flows" / "bob.ivr", tmp_path / "bob.ivr")
    server = peers.start_ivr(tmp_path, [tmp_path / "bob.ivr"], sections=sections, tts_cache=tts_cache)
    try:
        url = server.wait_for(lambda r: r.get("event") == "http_listening")["url"]
        yield WebServer(server, url, tmp_path / "bob.ivr", server.data, tmp_path / "prompts"), trunk
    finally:
        server.stop()


def test_a_user_sets_a_follow_me_number_and_a_transfer_rings_it(
    browser: Any, bob_server: tuple[WebServer, Any], sipp: Any, shots: Path  # noqa: F811
) -> None:
    web, trunk = bob_server
    browser_log_in(browser, web, "202")
    field = browser.find_element(By.ID, "follow-me")
    field.clear()
    field.send_keys("+41 79 700 12 02")
    saved_after(browser, browser.find_element(By.ID, "save").click)
    browser.save_screenshot(str(shots / "follow-me.png"))

    run = sipp("long_call.xml", web.ivr)
    run.check()
    done = web.ivr.wait_for(lambda r: r.get("call_id") == run.call_id and r.get("event") == "transfer_done")
    assert (done["outcome"], done["target"]) == ("answered", "+41797001202")
    invites = re.findall(r"INVITE (sip:[^@ ]+)@", trunk.passed())
    assert invites == ["sip:+41797001202"]  # the number set in the browser, through the trunk
