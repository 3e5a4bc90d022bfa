"""The console beside ``ivr serve``: a child process, restarted on the same address when it dies."""

from __future__ import annotations

import os
import signal

import pytest

from .conftest import PASSWORDS, WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]


def test_a_crashed_console_is_restarted_on_the_same_address(web_server: WebServer) -> None:
    ivr = web_server.ivr
    started = ivr.wait_for(lambda r: r.get("event") == "console_started")  # type: ignore[attr-defined]
    pid = int(started["pid"])
    assert pid != ivr.proc.pid  # type: ignore[attr-defined]  # a process of its own
    assert web_server.client("100").get("/api/v1/calls").status == 200
    os.kill(pid, signal.SIGKILL)
    exited = ivr.wait_for(lambda r: r.get("event") == "console_exited")  # type: ignore[attr-defined]
    assert exited["status"] == -signal.SIGKILL and exited["restart_in"] == 1.0
    again = ivr.wait_for(lambda r: r.get("event") == "console_started" and r["pid"] != pid)  # type: ignore[attr-defined]
    web_server._logins.clear()  # sessions lived in the old process: everyone logs in again
    # The same URL: the server kept the listening socket, the new process accepts on it.
    client = web_server.client()
    assert client.get("/api/v1/calls").status == 401
    assert client.login("100", PASSWORDS["100"]).status == 200
    assert client.get("/api/v1/calls").json()["calls"] == []
    assert int(again["pid"]) != pid and ivr.proc.poll() is None  # type: ignore[attr-defined]
