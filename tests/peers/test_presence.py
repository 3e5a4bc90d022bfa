"""Presence (RFC 3856, PIDF) against a live ``ivr serve``, watched by a real softphone.

baresip's ``presence`` module (Debian's baresip-core ships it) subscribes to every
address-book entry marked ``;presence=p2p`` and turns the PIDF it gets into the
buddy's status: ``<basic>open</basic>`` is online, ``<rpid:on-the-phone/>`` busy,
``closed`` offline.  Extension 201's softphone watches colleague 202: offline
before 202's phone registers, online once it has, busy while 202 takes a call,
online again after it.

And a desk phone (sipp as extension 201) picks the call ringing 202 up from the
busy lamp: an INVITE with ``Replaces`` naming the early dialog the dialog
NOTIFY describes (RFC 4235 section 4.1.6, RFC 3891).
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.peers.test_lamps import BLF_SECTIONS, Subscriber, subscriptions, tone

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None or shutil.which("baresip") is None,
                       reason="sipp (sip-tester) and baresip (baresip-core) are needed"),
]

IvrServer = Any


def presence_answered(server: IvrServer, text: str, after: int = 0) -> int:
    """The CSeq of the first NOTIFY for 202 after CSeq ``after`` whose PIDF has ``text``, once the
    watching phone has answered it (baresip sets the buddy's status as it answers)."""
    sent = server.wait_for(lambda r: r.get("event") == "notify" and r.get("event_package") == "presence"
                           and r.get("cseq", 0) > after and text in r.get("body", ""),
                           timeout=60, what=f"a presence NOTIFY with {text!r}")
    server.wait_for(lambda r: r.get("event") == "notify_answered" and r.get("event_package") == "presence"
                    and r.get("cseq") == sent["cseq"] and r.get("status") == 200,
                    timeout=30, what=f"the 200 to NOTIFY {sent['cseq']}")
    return int(sent["cseq"])


def buddy(phone: Any) -> str:
    """How the watching softphone shows 202 in its ``contacts`` list: Offline, Online or Busy."""
    line = next((line for line in phone.ask("contacts").splitlines() if "202@" in line), "")
    return re.sub(r"\x1b\[[0-9;]*m", "", line).split()[1]


def activity(body: str) -> str:
    basic = re.search(r"<basic>(\w+)</basic>", body)
    note = re.search(r"<dm:note>([^<]+)</dm:note>", body)
    return f"{basic.group(1) if basic else '?'}/{note.group(1) if note else '?'}"


def test_a_softphone_sees_a_colleague_go_on_the_phone_and_back(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], tmp_path: Path
) -> None:
    server = ivr_server("ring_202.ivr", sections=BLF_SECTIONS)
    watcher = baresip(
        tone(tmp_path / "w.wav", 300, 60),
        f"<sip:201@127.0.0.1:{server.port}>;auth_pass=desk-201-secret;regint=300",
        modules=("contact.so", "presence.so"),
        contacts=f'"Bob" <sip:202@127.0.0.1:{server.port}>;presence=p2p',
    )
    seen = presence_answered(server, "<basic>closed</basic>")  # 202 has no phone registered yet
    assert buddy(watcher) == "Offline"
    account = f"<sip:202@127.0.0.1:{server.port}>;auth_pass=desk-202-secret;regint=300;answermode=auto"
    colleague = baresip(tone(tmp_path / "b.wav", 700, 60), account)
    seen = presence_answered(server, "<basic>open</basic>", seen)
    assert buddy(watcher) == "Online"
    caller = baresip(tone(tmp_path / "a.wav", 440, 4))  # talks for 4 s, then hangs up
    caller.command("dial", f"sip:+41435435570@127.0.0.1:{server.port}")
    colleague.wait_event("CALL_ESTABLISHED")
    seen = presence_answered(server, "<rpid:on-the-phone/>", seen)
    assert buddy(watcher) == "Busy"
    caller.wait_event("CALL_CLOSED", timeout=40)
    presence_answered(server, "<dm:note>Idle</dm:note>", seen)
    assert buddy(watcher) == "Online"
    bodies = [r["body"] for r in server.records if r.get("event") == "notify" and r.get("event_package") == "presence"]
    assert [activity(b) for b in bodies] == ["closed/Idle", "open/Idle", "open/Ringing", "open/On the phone",
                                            "open/Idle"]
    assert subscriptions(server) == 1  # the softphone's subscription, kept in the data folder


def test_a_desk_phone_picks_up_a_ringing_colleague_from_its_lamp(
    ivr_server: Callable[..., IvrServer], baresip: Callable[..., Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    """201 watches 202's line; the dialog NOTIFY of ringing 202 gives the call's Call-ID and tags;
    sipp as 201's desk phone sends an INVITE with ``Replaces`` of that early dialog and takes the
    call (RFC 3891); 202's phone stops ringing."""
    server = ivr_server("ring_202.ivr", sections=BLF_SECTIONS)
    colleague = baresip(tone(tmp_path / "b.wav", 700, 30),  # rings, nobody answers
                        f"<sip:202@127.0.0.1:{server.port}>;auth_pass=desk-202-secret;regint=300")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="202 registered")
    lamp = Subscriber(server, "201", "desk-201-secret")
    try:
        assert lamp.subscribe("202", "dialog") == 200
        caller = baresip(tone(tmp_path / "a.wav", 440, 30))
        caller.command("dial", f"sip:+41435435570@127.0.0.1:{server.port}")
        colleague.wait_event("CALL_INCOMING")
        told = server.wait_for(lambda r: r.get("event") == "notify" and "local-tag=" in r.get("body", ""),
                               what="a dialog NOTIFY with the ringing phone's tag")
        dialog = re.search(r'call-id="([^"]+)" local-tag="([^"]+)" remote-tag="([^"]+)" direction="recipient"',
                           told["body"])
        assert dialog is not None and "<state>early</state>" in told["body"], told["body"]
        leg, phone_tag, ivr_tag = dialog.groups()
        result = sipp("blf_pickup.xml", server, service="202", timeout=60,
                      variables={"user": "201", "target": "202", "leg": leg, "ivrtag": ivr_tag, "phonetag": phone_tag},
                      extra=("-au", "201", "-ap", "desk-201-secret", "-auth_uri", f"202@127.0.0.1:{server.port}"))
    finally:
        lamp.close()
    result.check()
    colleague.wait_event("CALL_CLOSED")  # 202 stopped ringing
    rung = server.wait_for(lambda r: r.get("event") == "leg_invite" and r.get("target") == "202", what="202 rung")
    assert rung["leg"] == leg  # the early dialog in which 202's phone rang
    answered = server.wait_for(lambda r: r.get("action") == "answer" and r.get("pickup"), what="the pickup")
    assert answered["pickup"] == "201" and answered["call_id"] == result.call_id
    picked = server.wait_for(lambda r: r.get("event") == "picked_up", what="the caller's call picked up")
    assert picked["by"] == "201"


def test_a_replaces_naming_no_ringing_call_gets_481(
    ivr_server: Callable[..., IvrServer], sipp: Callable[..., Any]
) -> None:
    server = ivr_server("ring_202.ivr", sections=BLF_SECTIONS)
    result = sipp("blf_pickup.xml", server, service="202", timeout=30,
                  variables={"user": "201", "target": "202", "leg": "gone@127.0.0.1", "ivrtag": "a", "phonetag": "b"},
                  extra=("-au", "201", "-ap", "desk-201-secret", "-auth_uri", f"202@127.0.0.1:{server.port}"))
    assert result.returncode != 0 and len(result.received("SIP/2.0 481")) == 1
    refused = server.wait_for(lambda r: r.get("action") == "reject" and r.get("status") == 481, what="the 481")
    assert refused["reason"] == "no dialog gone@127.0.0.1 with to-tag a and from-tag b"
