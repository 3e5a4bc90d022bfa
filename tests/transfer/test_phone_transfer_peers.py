"""Transfers and hold by staff with real phones: ``ivr serve`` as a process, baresip phones
registered as 201 and 202, a baresip caller sent to 201 by the flow (tests/transfer/flows/transfer.ivr,
key 1).

* 201 transfers the caller to 202 with its transfer key (``/transfer``, a REFER on the leg ivr
  placed): the caller hears hold music while 202 rings, then 202; 201's leg is ended.
* 202 rejects the transferred call: the caller goes back to 201.
* a sipp phone 201 transfers the caller to an external number (a 403 sipfrag) or attended, with
  a Replaces naming no dialog (a 481 sipfrag): the call stays bridged to 201.
* 201 holds the caller (``/hold``, re-INVITE ``a=sendonly``) and resumes: the caller hears hold
  music meanwhile and 201 again after.

The phones' tones are told apart by their energy; the hold music is recognised by correlation
with the configured music itself, as the other peer tests check what callers hear.
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.media.holdmusic import DEFAULT_SOURCE
from ivr.media.prompts import load_audio
from tests.peers.conftest import REPO
from tests.peers.test_conference import best_correlation

from .test_transfer_peers import (
    CALLEE_TONE,
    CALLER_TONE,
    FLOW,
    PASSWORD,
    SCENARIOS,
    Uas,
    dial_the_menu,
    register_201,
    run_caller,
    tone_wav,
    uas,  # noqa: F401 -- the sipp phone fixture
)

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

TONE_202 = 1400.0
PASSWORD_202 = "pw-202-Vb7n"
SECTIONS = f"""
[[extensions]]
number = "201"
username = "201"
password = "{PASSWORD}"

[[extensions]]
number = "202"
username = "202"
password = "{PASSWORD_202}"
"""


def shares(path: Path, start: float = 0.0, end: float | None = None) -> dict[str, float]:
    """Energy shares of the caller's tone, 201's, 202's and everything else (the hold music) in
    ``path`` between ``start`` and ``end`` seconds."""
    pcm, rate = soundfile.read(path, dtype="float64")
    if pcm.ndim > 1:
        pcm = pcm[:, 0]
    pcm = pcm[int(start * rate): None if end is None else int(end * rate)]
    spectrum = np.abs(np.fft.rfft(pcm)) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    total = spectrum[freqs > 100].sum() or 1.0
    out = {name: float(spectrum[np.abs(freqs - f) < 30].sum() / total)
           for name, f in (("caller", CALLER_TONE), ("201", CALLEE_TONE), ("202", TONE_202))}
    out["other"] = 1 - sum(out.values())
    return out


def hold_music_heard(path: Path) -> float:
    """Seconds of ``path`` that are the configured hold music (the default, ``prompts/moh/``):
    each half-second piece whose normalised correlation with the music, at its best lag in the
    looped music, is 0.8 or more.  The tones of the phones do not correlate with it."""
    music = np.concatenate([load_audio(p).pcm for p in sorted((REPO / "prompts" / DEFAULT_SOURCE).iterdir())])
    looped = np.concatenate([music, music])  # the shared player may be anywhere in its loop
    pcm, rate = soundfile.read(path, dtype="int16")
    assert rate == 8000, rate
    pcm = pcm[:, 0] if pcm.ndim > 1 else pcm
    half = rate // 2
    pieces = [pcm[a : a + half] for a in range(0, len(pcm) - half, half)]
    return sum(0.5 for piece in pieces if np.any(piece) and best_correlation(looped, piece) >= 0.8)


def bridged_to_201(server: Any, baresip: Callable[[Path], Any], tmp: Path) -> tuple[Any, Any, str]:
    """201 registered, a caller sent to it by the flow and answered: (caller, 201, Call-ID)."""
    phone = baresip(tone_wav(tmp / "201.wav", CALLEE_TONE))
    register_201(server, phone)
    caller = baresip(tone_wav(tmp / "caller.wav", CALLER_TONE))
    call_id = dial_the_menu(server, caller)
    caller.command("sndcode", "1")
    phone.wait_event("CALL_ESTABLISHED")
    phone.command("uafind", f"sip:201@{server.address}")  # /hold and /transfer act on the current phone line
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
    assert done["outcome"] == "answered" and done["target"] == "201"
    return caller, phone, call_id


def test_201_transfers_the_caller_to_202_who_hears_hold_music_while_it_rings(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=SECTIONS)
    phone202 = baresip(tone_wav(tmp_path / "202.wav", TONE_202))
    phone202.command("uanew", f"<sip:202@{server.address}>;auth_pass={PASSWORD_202};answermode=manual;regint=120")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="202 registered")
    caller, phone201, call_id = bridged_to_201(server, baresip, tmp_path)
    time.sleep(1.5)  # the caller talks to 201 for a moment
    phone201.command("transfer", f"sip:202@{server.address}")
    phone202.wait_event("CALL_INCOMING")
    refer = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_refer")
    assert (refer["by"], refer["target"], refer["refused"]) == ("201", "202", 0), refer
    time.sleep(2.5)  # 202 rings for a while: the caller hears hold music
    phone202.command("accept")
    phone202.wait_event("CALL_ESTABLISHED")
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_refer_done")
    assert done["outcome"] == "answered", done
    phone201.wait_event("CALL_CLOSED")  # ivr ended the transferor's leg
    time.sleep(2.0)  # the caller talks to 202
    caller.command("hangup")
    phone202.wait_event("CALL_CLOSED")
    ended = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    notified = [r["status"] for r in server.call_records(call_id) if r.get("event") == "phone_refer_notify"]
    assert notified == [100, 200], notified
    for phone in (caller, phone201, phone202):
        phone.stop()
    heard = caller.heard()
    length = soundfile.info(str(heard)).duration
    whole, last = shares(heard), shares(heard, length - 1.5)
    assert whole["201"] > 0.05, f"the caller never heard 201: {whole}"
    assert hold_music_heard(heard) >= 1.0, "the caller heard less than a second of the hold music"
    assert last["202"] > 0.5, f"the caller does not hear 202 at the end: {last}"
    assert last["201"] < 0.05, last
    assert ended["outcome"] == "transferred", ended


def test_202_busy_sends_the_caller_back_to_201(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    """202 rejects the call: 201 gets a 486 sipfrag and the caller goes back to 201 (baresip
    1.0.0 drops its call when told its transfer failed, so ivr rings 201 again)."""
    server = ivr_server(FLOW, sections=SECTIONS)
    phone202 = baresip(tone_wav(tmp_path / "202.wav", TONE_202))
    phone202.command("uanew", f"<sip:202@{server.address}>;auth_pass={PASSWORD_202};answermode=manual;regint=120")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="202 registered")
    caller, phone201, call_id = bridged_to_201(server, baresip, tmp_path)
    phone201.command("transfer", f"sip:202@{server.address}")
    phone202.wait_event("CALL_INCOMING")
    phone202.command("hangup")
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_refer_done")
    assert done["outcome"] == "busy", done
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_refer_back")
    back = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "phone_refer_recall_done")
    assert back["outcome"] == "answered", back
    time.sleep(2.0)  # the caller talks to 201 again
    caller.command("hangup")
    ended = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    records = server.call_records(call_id)
    assert [r["status"] for r in records if r.get("event") == "phone_refer_notify"] == [100, 486]
    assert [r["target"] for r in records if r.get("event") == "leg_invite"] == ["201", "202", "201"]
    assert ended["outcome"] == "transferred", ended
    for phone in (caller, phone201, phone202):
        phone.stop()
    last = shares(caller.heard(), soundfile.info(str(caller.heard())).duration - 1.5)
    assert last["201"] > 0.5, f"the caller is not back with 201: {last}"


@pytest.mark.parametrize("refer_to, target, status", [
    ("<sip:+41900123456@127.0.0.1>", "+41900123456", 403),  # not an internal extension
    ("<sip:202@127.0.0.1?Replaces=other%40h%3Bto-tag%3Da%3Bfrom-tag%3Db>", "202", 481),  # attended, no such dialog
])
def test_a_refused_transfer_ends_in_a_sipfrag_and_the_call_stays(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas],  # noqa: F811
    tmp_path: Path, refer_to: str, target: str, status: int,
) -> None:
    """201 is a sipp phone (baresip 1.0.0 hangs up by itself when its transfer fails): its REFER
    gets 202, then a NOTIFY with the refusal's sipfrag, and the call stays bridged to 201 until
    the caller leaves (the scenario fails if ivr sends a BYE before that)."""
    scenario = tmp_path / "uas_refer_refused.xml"
    text = (SCENARIOS / "uas_refer_refused.xml").read_text()
    scenario.write_text(text.replace("REFER_TO", refer_to).replace("STATUS", str(status)))
    phone = uas(str(scenario))
    sections = SECTIONS.replace(f'username = "201"\npassword = "{PASSWORD}"', f'contacts = ["sip:201@127.0.0.1:{phone.port}"]')
    server = ivr_server(FLOW, sections=sections)
    result = run_caller(sipp, server, tmp_path, "1", 4000)
    phone.passed()
    records = server.call_records(result.call_id)
    [refer] = [r for r in records if r.get("event") == "phone_refer"]
    assert (refer["by"], refer["target"], refer["refused"]) == ("201", target, status), refer
    assert [r["status"] for r in records if r.get("event") == "phone_refer_notify"] == [status]
    assert [r["target"] for r in records if r.get("event") == "leg_invite"] == ["201"]
    [end] = [r for r in records if r.get("event") == "bridge_end"] or [{}]
    ended = server.wait_for(lambda r: r.get("call_id") == result.call_id and r.get("event") == "ended")
    assert ended["outcome"] == "transferred" and ended["detail"] == "201", ended
    assert end.get("reason") != "callee_bye", end


def test_201_holding_the_caller_plays_hold_music_until_it_resumes(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=SECTIONS)
    caller, phone201, call_id = bridged_to_201(server, baresip, tmp_path)
    time.sleep(1.0)
    phone201.command("hold")
    held = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "bridge_hold")
    assert held["by"] == "callee" and held["music"] == "default", held
    time.sleep(2.5)  # hold music for the caller
    phone201.command("resume")
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "bridge_resume")
    time.sleep(2.0)  # 201 again
    caller.command("hangup")
    phone201.wait_event("CALL_CLOSED")
    caller.stop()
    phone201.stop()
    heard = caller.heard()
    length = soundfile.info(str(heard)).duration
    last = shares(heard, length - 1.5)
    assert hold_music_heard(heard) >= 1.0, "the caller heard less than a second of the hold music"
    assert last["201"] > 0.5, f"the caller does not hear 201 after the resume: {last}"
    reoffers = [r["hold"] for r in server.call_records(call_id) if r.get("event") == "leg_reoffer"]
    assert reoffers[:2] == [True, False], reoffers
