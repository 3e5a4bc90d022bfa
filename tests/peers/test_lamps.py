"""The lamps on the phones against a live ``ivr serve``: message waiting and the busy lamp field.

* baresip's ``mwi`` module subscribes to ``message-summary`` for extension 201
  (digest-authenticated); a caller leaves a voicemail for 201 and the phone gets a
  NOTIFY with ``Messages-Waiting: yes`` and one new message.
* A subscription survives a restart: the restarted server sends it a NOTIFY.
* A sipp subscriber watching colleague 202's line (RFC 4235) sees terminated, then
  early (again once 202's phone answers 180 with its tag) and confirmed while 202
  takes a call, then terminated again.
* A SUBSCRIBE to an unknown event package gets 489, one to another user's mailbox
  or to a colleague outside the user's ``watch`` patterns 403; none leaves a
  subscription behind.
"""

from __future__ import annotations

import re
import shutil
import socket
import sqlite3
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.sip.auth import authorization_for
from tests.peers.conftest import FLOWS, start_ivr

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


BLF_SECTIONS = """
[[extensions]]
number = "201"
password = "desk-201-secret"

[[extensions]]
number = "202"
password = "desk-202-secret"
"""


def test_the_busy_lamp_of_a_colleague_follows_the_call(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    server = ivr_server("ring_202.ivr", sections=BLF_SECTIONS)
    account = f"<sip:202@127.0.0.1:{server.port}>;auth_pass=desk-202-secret;regint=300;answermode=auto"
    colleague = baresip(tone(tmp_path / "b.wav", 700, 60), account)
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="202 registered")
    with ThreadPoolExecutor(1) as pool:
        watcher = pool.submit(
            sipp, "blf_subscriber.xml", server, service="202", variables={"user": "201", "target": "202"},
            timeout=60, extra=("-au", "201", "-ap", "desk-201-secret", "-auth_uri", f"202@127.0.0.1:{server.port}"),
        )
        notified(server, "202", "<state>terminated</state>")  # the lamp is off: 202 is idle
        caller = baresip(tone(tmp_path / "a.wav", 440, 4))  # talks for 4 s, then hangs up
        caller.command("dial", f"sip:+41435435570@127.0.0.1:{server.port}")
        colleague.wait_event("CALL_ESTABLISHED")
        caller.wait_event("CALL_CLOSED", timeout=40)
        result = watcher.result(timeout=90)
    result.check()
    states = [n.split("<state>")[1].split("<")[0] for n in result.received("NOTIFY ")]
    assert states == ["terminated", "early", "early", "confirmed", "terminated", "terminated"]
    ringing = result.received("NOTIFY ")[2]  # RFC 4235 4.1.6: what a BLF key needs to pick the call up
    assert 'direction="recipient"' in ringing and f'<target uri="sip:**202@127.0.0.1:{server.port}"/>' in ringing
    assert "Subscription-State: terminated" in result.received("NOTIFY ")[-1]
    assert subscriptions(server) == 0  # the unsubscribe left nothing behind


def test_a_subscription_survives_a_restart(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], tmp_path: Path, tts_cache: Path
) -> None:
    first = ivr_server("leave_message.ivr", sections=SECTIONS)
    account = f"<sip:201@127.0.0.1:{first.port}>;auth_pass=desk-201-secret;regint=300;mwi=yes;audio_codecs=PCMU"
    phone = baresip(tone(tmp_path / "quiet.wav", 300, 60), account, modules=("mwi.so",))
    notified(first, "201", "Voice-Message: 0/0")
    first.terminate()
    assert first.wait_exit() == 0
    assert subscriptions(first) == 1
    (tmp_path / "again").mkdir()
    again = start_ivr(tmp_path / "again", [FLOWS / "leave_message.ivr"], sections=SECTIONS,
                      extra=("--data", str(first.data)))  # the same data folder
    try:
        record = notified(again, "201", "Voice-Message: 0/0")  # the subscription is back: the phone hears
        assert record["state"] == "active"
        phone.wait_event("MWI_NOTIFY")
    finally:
        phone.stop(at_once=True)  # it registered with the first server, which is gone
        again.stop()


class Subscriber:
    """A scripted phone on one UDP socket that SUBSCRIBEs with digest credentials."""

    def __init__(self, server: IvrServer, user: str, password: str) -> None:
        self.server = (server.host, server.port)
        self.user, self.password = user, password
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.cseq = 0

    def subscribe(self, resource: str, event: str) -> int:
        """SUBSCRIBE, answer a 401 once, and return the final status."""
        uri = f"sip:{resource}@{self.server[0]}:{self.server[1]}"
        call_id = f"sub-{self.port}-{resource}-{event}"
        reply = self._send(uri, call_id, event, "")
        if reply.startswith("SIP/2.0 401 "):
            challenge = re.search(r"(?mi)^WWW-Authenticate:\s*(.*?)\r$", reply).group(1)  # type: ignore[union-attr]
            value = authorization_for(challenge, "SUBSCRIBE", uri, self.user, self.password, "cn", 1)
            reply = self._send(uri, call_id, event, f"Authorization: {value}\r\n")
        return int(reply.split(" ", 2)[1])

    def _send(self, uri: str, call_id: str, event: str, extra: str) -> str:
        self.cseq += 1
        branch = f"z9hG4bK-sub-{self.cseq}-{self.port}"
        self.sock.sendto((
            f"SUBSCRIBE {uri} SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{self.port};branch={branch};rport\r\n"
            f"Max-Forwards: 70\r\nFrom: <sip:{self.user}@127.0.0.1>;tag=t{self.port}\r\nTo: <{uri}>\r\n"
            f"Call-ID: {call_id}\r\nCSeq: {self.cseq} SUBSCRIBE\r\nContact: <sip:{self.user}@127.0.0.1:{self.port}>\r\n"
            f"Event: {event}\r\nExpires: 600\r\n{extra}Content-Length: 0\r\n\r\n").encode(), self.server)
        self.sock.settimeout(15)
        while True:
            text = self.sock.recv(65536).decode("utf-8", "replace")
            if branch in text and text.startswith("SIP/2.0 ") and not text.startswith("SIP/2.0 1"):
                return text

    def close(self) -> None:
        self.sock.close()


def test_refused_subscriptions_leave_nothing_behind(ivr_server: Callable[..., IvrServer]) -> None:
    watching = SECTIONS.replace('mailbox = "201"\n', 'mailbox = "201"\nwatch = ["20?"]\n', 1)
    server = ivr_server("leave_message.ivr",
                        sections=watching + '\n[[mailboxes]]\nnumber = "202"\n\n[[extensions]]\nnumber = "300"\n')
    alice, intruder = Subscriber(server, "201", "desk-201-secret"), Subscriber(server, "201", "wrong")
    try:
        assert alice.subscribe("201", "presence.winfo") == 489  # a package ivr does not serve
        assert alice.subscribe("202", "message-summary") == 403  # a colleague's mailbox
        assert alice.subscribe("299", "dialog") == 404  # no such extension
        assert alice.subscribe("300", "presence") == 403  # not in 201's watch patterns
        assert alice.subscribe("300", "dialog") == 403
        assert intruder.subscribe("201", "message-summary") == 401  # the wrong password: challenged again
    finally:
        alice.close()
        intruder.close()
    def answers() -> int:
        return sum(r.get("event") == "subscribe" for r in list(server.records))

    server.wait_for(lambda r: answers() >= 11, what="the 11th SUBSCRIBE's answer")  # another thread reads the log
    answered = [r["status"] for r in server.records if r.get("event") == "subscribe"]
    assert answered == [489, 401, 403, 401, 404, 401, 403, 401, 403, 401, 401]
    assert subscriptions(server) == 0 and not any(r.get("event") == "notify" for r in server.records)
