"""Attended transfer and "Makeln" by a desk phone, against a live ``ivr serve``.

A baresip caller dials the company (tests/transfer/flows/transfer.ivr, key 1) and is
bridged to 201, a scripted phone (tests/transfer/scripted_phone.py: baresip 1.0.0 does
neither attended transfer nor two calls on hold) with a static contact and digest
credentials.  202 is a baresip phone that answers by itself.

* Makeln, then attended transfer: 201 holds the caller (who hears hold music), calls 202
  through ivr, toggles between the two calls with re-INVITEs (each held side hears hold
  music, both calls stay up), then sends REFER on the caller's call with
  ``Replaces`` naming its call to 202 (RFC 5589 section 7): a ``200`` sipfrag, BYE on both
  of 201's calls, and the caller talks to 202.
* A Replaces naming no dialog (``481``) or the call being transferred (``403``): the
  sipfrag says so and both calls stay as they were (the caller still bridged to 201).
* Two callers put through to 201 (call waiting): the first is transferred to the second.
* An INVITE with Replaces naming no dialog gets ``481``; one from 202's phone naming the leg
  that rings 201 picks the caller up; one from 201's second phone naming the call at 201's desk
  phone moves the call there (from 202's phone: ``403``).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import numpy as np
import pytest
import soundfile

from tests.peers.test_phones import ivr_phones

from .scripted_phone import Dialog, ScriptedPhone, header, status_of, tag_of
from .test_phone_transfer_peers import PASSWORD_202, TONE_202, shares
from .test_transfer_peers import CALLEE_TONE, CALLER_TONE, FLOW, PASSWORD, dial_the_menu, tone_wav

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]


def sections(port: int, waiting: bool = False) -> str:
    return f"""
[[extensions]]
number = "201"
username = "201"
password = "{PASSWORD}"
contacts = ["sip:201@127.0.0.1:{port}"]
call_waiting = {str(waiting).lower()}

[[extensions]]
number = "202"
username = "202"
password = "{PASSWORD_202}"
"""


@pytest.fixture
def phone201() -> Iterator[ScriptedPhone]:
    phone = ScriptedPhone(("127.0.0.1", 0), "201", PASSWORD)
    yield phone
    phone.close()


def music_seconds(path: Path, end: float) -> float:
    """Seconds of sound in ``path`` before ``end`` that are none of the test's tones: the phone
    at 201 sends no audio, so what a party bridged to it hears is silence but for ivr's prompt
    and hold music."""
    pcm, rate = soundfile.read(path, dtype="float64")
    if pcm.ndim > 1:
        pcm = pcm[:, 0]
    n = int(rate * 0.1)
    loud = 0
    for start in range(0, min(len(pcm), int(end * rate)) - n, n):
        chunk = pcm[start:start + n]
        if np.sqrt(np.mean(chunk**2)) < 0.01:
            continue
        spectrum = np.abs(np.fft.rfft(chunk)) ** 2
        freqs = np.fft.rfftfreq(n, 1 / rate)
        tones = sum(spectrum[np.abs(freqs - f) < 40].sum() for f in (CALLER_TONE, TONE_202))
        loud += tones < 0.5 * spectrum[freqs > 100].sum()
    return loud * 0.1


def replaces(dialog: Dialog) -> str:
    """``Refer-To`` for an attended transfer to ``dialog``'s far end (RFC 3891 section 6.1, as the
    transferor sees the dialog: to-tag is the far end's, from-tag its own)."""
    value = f"{dialog.call_id};to-tag={dialog.remote_tag};from-tag={dialog.local_tag}"
    return f"<{dialog.target}?Replaces={quote(value, safe='')}>"


def bridged(server: Any, baresip: Callable[..., Any], phone: ScriptedPhone, tmp: Path,
            waiting: bool = False) -> tuple[Any, Any, Dialog]:
    """ivr up with 201 = ``phone``, a baresip caller bridged to it: (server, caller, call A)."""
    server = server(FLOW, sections=sections(phone.port, waiting), config='media_timeout = "120s"')
    phone.server = (server.host, server.port)
    caller = baresip(tone_wav(tmp / "caller.wav", CALLER_TONE))
    call_id = dial_the_menu(server, caller)
    caller.command("sndcode", "1")
    call_a = phone.answer()
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
    assert done["outcome"] == "answered" and done["target"] == "201"
    return server, caller, call_a


def test_makeln_then_attended_transfer_joins_the_caller_with_202(
    ivr_server: Callable[..., Any], baresip: Callable[..., Any], phone201: ScriptedPhone, tmp_path: Path
) -> None:
    server, caller, call_a = bridged(ivr_server, baresip, phone201, tmp_path)
    phone202 = baresip(tone_wav(tmp_path / "202.wav", TONE_202))
    phone202.command("uanew", f"<sip:202@{server.address}>;auth_pass={PASSWORD_202};answermode=auto;regint=120")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="202 registered")
    first = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]

    assert phone201.hold(call_a) == 200  # the caller hears hold music from here on
    held = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "bridge_hold")
    assert held["by"] == "callee", held
    time.sleep(2.0)  # hold music for the caller (201 itself sends no audio: anything else is music)
    call_b = phone201.call("202")
    assert isinstance(call_b, Dialog), call_b
    phone202.wait_event("CALL_ESTABLISHED")
    # Makeln: back to the caller (202 on hold), then to 202 again (the caller on hold)
    assert phone201.hold(call_b) == 200
    assert phone201.hold(call_a, held=False) == 200
    time.sleep(2.0)  # hold music for 202 (201 itself sends no audio: anything else is music)
    assert phone201.hold(call_a) == 200
    assert phone201.hold(call_b, held=False) == 200
    server.wait_for(lambda r: r.get("call_id") == call_b.call_id and r.get("event") == "bridge_resume")
    b_holds = [r for r in server.call_records(call_b.call_id) if r.get("event") in ("bridge_hold", "bridge_resume")]
    assert [(r["event"], r["by"]) for r in b_holds] == [("bridge_hold", "caller"), ("bridge_resume", "caller")]
    server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "bridge_hold"
                    and r is not held, what="the caller held again")
    a_holds = [r["event"] for r in server.call_records(first) if r.get("event") in ("bridge_hold", "bridge_resume")]
    assert a_holds == ["bridge_hold", "bridge_resume", "bridge_hold"], a_holds

    assert status_of(phone201.in_dialog(call_a, "REFER", f"Refer-To: {replaces(call_b)}\r\n")) == 202
    phone201.wait(lambda t: t.startswith("BYE ") and call_a.call_id in t, "BYE on the caller's call")
    phone201.wait(lambda t: t.startswith("BYE ") and call_b.call_id in t, "BYE on the call to 202")
    assert phone201.sipfrags(call_a) == [100, 200]
    done = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "phone_refer_done")
    assert (done["target"], done["attended"], done["consultation"]) == ("202", True, call_b.call_id), done
    server.wait_for(lambda r: r.get("call_id") == call_b.call_id and r.get("event") == "ended"
                    and r.get("reason") == "transferred", what="201's call to 202 ended by the transfer")
    deadline = time.monotonic() + 15  # the lines reach the state file `ivr phones` reads a moment later
    while (lines := {e["extension"]: e["state"] for e in ivr_phones(server)}) != {"201": "terminated",
                                                                                "202": "confirmed"}:
        assert time.monotonic() < deadline, lines  # 201 has no call left, 202 talks
    time.sleep(2.0)  # the caller talks to 202
    caller.command("hangup")
    phone202.wait_event("CALL_CLOSED")  # the caller's hangup ends 202's leg, now the caller's
    ended = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "ended")
    assert ended["outcome"] == "transferred", ended
    for phone in (caller, phone202):
        phone.stop()
    heard = caller.heard()
    length = soundfile.info(str(heard)).duration
    last = shares(heard, length - 1.5)
    assert music_seconds(heard, length - 2.5) >= 1.5, "the caller heard no hold music while 201 held it"
    assert music_seconds(phone202.heard(), 60.0) >= 1.5, "202 heard no hold music while 201 held it"
    assert last["202"] > 0.5, f"the caller does not hear 202 at the end: {last}"
    assert shares(phone202.heard())["caller"] > 0.3, "202 does not hear the caller"
    assert not [m for m in phone201.messages if m.startswith("INVITE ")][1:], "ivr rang 201 again"


def test_a_replaces_that_cannot_be_carried_out_leaves_both_calls_as_they_were(
    ivr_server: Callable[..., Any], baresip: Callable[..., Any], phone201: ScriptedPhone, tmp_path: Path,
) -> None:
    server, caller, call_a = bridged(ivr_server, baresip, phone201, tmp_path)
    first = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    nowhere = Dialog("no-such-call@127.0.0.1", "<sip:201@x>;tag=a1", "<sip:202@x>;tag=b2", call_a.target)
    itself = Dialog(call_a.call_id, call_a.local, call_a.remote, call_a.target)
    for named, status in ((nowhere, 481), (itself, 403)):
        assert phone201.hold(call_a) == 200
        held = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "bridge_hold"
                               and not r.get("seen"))  # music plays
        held["seen"] = True
        assert status_of(phone201.in_dialog(call_a, "REFER", f"Refer-To: {replaces(named)}\r\n")) == 202
        phone201.wait(lambda t, s=status: t.startswith("NOTIFY ") and call_a.call_id in t and f"SIP/2.0 {s} " in t,
                      f"the {status} NOTIFY")
        refer = server.wait_for(lambda r, s=status: r.get("call_id") == first and r.get("event") == "phone_refer"
                                and r.get("refused") == s, what=f"the REFER refused {status}")
        assert refer["replaces"] == named.call_id, refer
        assert phone201.hold(call_a, held=False) == 200  # the call to 201 is still up, and can be resumed
        resumed = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "bridge_resume"
                                  and not r.get("seen"))
        resumed["seen"] = True
        assert resumed["by"] == "callee", resumed
    assert phone201.sipfrags(call_a) == [481, 403]
    # An INVITE with Replaces naming no dialog: 481, and nothing starts
    refused = phone201.call("202", extra="Replaces: no-such-call@127.0.0.1;to-tag=a1;from-tag=b2\r\n")
    assert refused == 481, refused
    caller.command("hangup")
    phone201.wait(lambda t: t.startswith("BYE ") and call_a.call_id in t, "BYE when the caller leaves")
    ended = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "ended")
    assert ended["outcome"] == "transferred" and ended["detail"] == "201", ended
    records = server.call_records()
    assert [r["target"] for r in records if r.get("event") == "leg_invite"] == ["201"], "a leg was placed"
    assert not [r for r in records if r.get("event") == "leg_bye_transferred"]
    caller.stop()


def test_attended_transfer_between_two_callers_put_through_to_201(
    ivr_server: Callable[..., Any], baresip: Callable[..., Any], phone201: ScriptedPhone, tmp_path: Path
) -> None:
    """201 (call waiting on) has two callers ivr put through; it holds the first, talks to the
    second, and transfers the first to the second: the two callers talk, 201 is out."""
    server, caller, call_a = bridged(ivr_server, baresip, phone201, tmp_path, waiting=True)
    first = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    assert phone201.hold(call_a) == 200
    other = baresip(tone_wav(tmp_path / "other.wav", CALLEE_TONE))
    other.command("dial", f"sip:+41435435570@{server.address}")
    other.wait_event("CALL_ESTABLISHED")
    second = server.wait_for(lambda r: r.get("event") == "incoming" and r["call_id"] != first)["call_id"]
    server.wait_for(lambda r: r.get("call_id") == second and r.get("action") == "step" and r.get("step") == "welcome")
    other.command("sndcode", "1")
    call_b = phone201.answer()
    assert status_of(phone201.in_dialog(call_a, "REFER", f"Refer-To: {replaces(call_b)}\r\n")) == 202
    phone201.wait(lambda t: t.startswith("BYE ") and call_a.call_id in t, "BYE on the first caller's call")
    phone201.wait(lambda t: t.startswith("BYE ") and call_b.call_id in t, "BYE on the second caller's call")
    assert phone201.sipfrags(call_a) == [100, 200]
    done = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "phone_refer_done")
    assert (done["attended"], done["consultation"]) == (True, second), done
    time.sleep(2.0)  # the two callers talk
    caller.command("hangup")
    other.wait_event("CALL_CLOSED")  # ivr ends the second caller's call with the first's
    for phone in (caller, other):
        phone.stop()
    heard = caller.heard()
    last = shares(heard, soundfile.info(str(heard)).duration - 1.5)
    assert last["201"] > 0.5, f"the first caller does not hear the second: {last}"  # (its tone is 201's)


def test_an_invite_with_replaces_picks_up_the_leg_that_rings(
    ivr_server: Callable[..., Any], baresip: Callable[..., Any], phone201: ScriptedPhone, tmp_path: Path
) -> None:
    """202's phone takes the call ringing at 201 with an INVITE whose Replaces names that leg
    (a desk phone's BLF key, RFC 3891 ``early-only``): 201 gets CANCEL, the caller talks to 202."""
    server = ivr_server(FLOW, sections=sections(phone201.port), config='media_timeout = "120s"')
    phone201.server = (server.host, server.port)
    caller = baresip(tone_wav(tmp_path / "caller.wav", CALLER_TONE))
    first = dial_the_menu(server, caller)
    caller.command("sndcode", "1")
    ringing, tag201 = phone201.ring()
    leg = header(ringing, "Call-ID")
    phone202 = ScriptedPhone((server.host, server.port), "202", PASSWORD_202)
    try:
        call = phone202.call("201", extra=f"Replaces: {leg};to-tag={tag_of(header(ringing, 'From'))}"
                                          f";from-tag={tag201};early-only\r\n")
        assert isinstance(call, Dialog), call
        phone201.wait(lambda t: t.startswith("CANCEL ") and leg in t, "CANCEL to 201")
        picked = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "picked_up")
        assert picked["by"] == "202", picked
        caller.command("hangup")
        phone202.wait(lambda t: t.startswith("BYE ") and call.call_id in t, "BYE when the caller leaves")
    finally:
        phone202.close()
    caller.stop()


def test_an_invite_with_replaces_moves_the_call_to_another_phone_of_the_extension(
    ivr_server: Callable[..., Any], baresip: Callable[..., Any], phone201: ScriptedPhone, tmp_path: Path
) -> None:
    """201's second phone takes over the call ivr put through to 201's desk phone (RFC 3891):
    the desk phone gets BYE, the caller talks to the second phone until it leaves."""
    server, caller, call_a = bridged(ivr_server, baresip, phone201, tmp_path)
    first = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    mobile = ScriptedPhone((server.host, server.port), "201", PASSWORD)
    try:
        stranger = ScriptedPhone((server.host, server.port), "202", PASSWORD_202)
        value = f"{call_a.call_id};to-tag={call_a.remote_tag};from-tag={call_a.local_tag}"
        try:  # another extension may not take 201's call over
            assert stranger.call("201", extra=f"Replaces: {value}\r\n") == 403
        finally:
            stranger.close()
        call = mobile.call("201", extra=f"Replaces: {value}\r\n")
        assert isinstance(call, Dialog), call
        phone201.wait(lambda t: t.startswith("BYE ") and call_a.call_id in t, "BYE to the desk phone")
        replaced = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "leg_replaced")
        assert replaced["by"] == call.call_id, replaced
        caller.command("hangup")
        mobile.wait(lambda t: t.startswith("BYE ") and call.call_id in t, "BYE when the caller leaves")
    finally:
        mobile.close()
    ended = server.wait_for(lambda r: r.get("call_id") == first and r.get("event") == "ended")
    assert ended["outcome"] == "transferred", ended
    caller.stop()
