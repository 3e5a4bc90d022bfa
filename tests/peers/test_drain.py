"""SIGTERM drains ``ivr serve``: new calls and OPTIONS get 503, running calls finish, then exit.

With a drain timeout shorter than the calls, ivr hangs up what is left (the caller gets a BYE)
and exits.  Both are checked with real sipp calls and the server's own log.
"""

from __future__ import annotations

import shutil
import threading
from collections.abc import Callable
from typing import Any

import pytest

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
]

IvrServer = Any  # conftest.IvrServer
Sipp = Callable[..., Any]


def in_background(run: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    out: list[Any] = []
    thread = threading.Thread(target=lambda: out.append(run()), daemon=True)
    thread.start()
    return thread, out


def test_sigterm_rejects_new_calls_and_lets_running_ones_finish(
    ivr_server: Callable[..., IvrServer], sipp: Sipp
) -> None:
    server = ivr_server("menu.ivr", extra=("--drain-timeout", "60s"))
    thread, out = in_background(lambda: sipp("long_call.xml", server))
    server.wait_for(lambda r: r.get("action") == "answer", what="the long call answered")

    server.terminate()
    draining = server.wait_for(lambda r: r.get("event") == "draining", what="draining")
    assert draining["calls"] == 1

    options = sipp("options_draining.xml", server)
    options.check()
    rejected = sipp("invite_rejected.xml", server)
    rejected.check()
    assert rejected.received("SIP/2.0 503")
    assert server.proc.poll() is None  # still up: a call is running

    thread.join(60)
    long_call = out[0]
    long_call.check()  # the running call went on to its own BYE
    assert server.wait_exit(30) == 0
    stopped = server.wait_for(lambda r: r.get("event") == "stopped")  # the reader thread may lag the exit
    events = [r.get("event") for r in server.call_records(long_call.call_id)]
    assert events[-1] == "ended"
    assert server.records.index(stopped) == len(server.records) - 1
    assert not any(r.get("event") == "incoming" for r in server.call_records(rejected.call_id))


def test_drain_timeout_hangs_up_the_calls_left(ivr_server: Callable[..., IvrServer], sipp: Sipp) -> None:
    server = ivr_server("menu.ivr", extra=("--drain-timeout", "1s"))
    thread, out = in_background(lambda: sipp("basic_ivr_bye.xml", server))
    server.wait_for(lambda r: r.get("action") == "answer", what="the call answered")
    server.terminate()
    thread.join(60)
    out[0].check()  # sipp got ivr's BYE and answered it
    assert server.wait_exit(30) == 0
    server.wait_for(lambda r: r.get("event") == "drain_timeout")
    bye = server.wait_for(lambda r: r.get("action") == "bye")
    assert bye["reason"] == "shutdown"
