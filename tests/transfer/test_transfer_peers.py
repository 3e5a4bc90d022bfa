"""Transfers with real peers: ``ivr serve`` as a process, baresip phones registered as extensions,
sipp as callers and as phones that are busy or never answer.

* key 1: baresip registered (digest) as 201 rings and answers; the caller (another baresip)
  and 201 each hear the other's test tone through ivr's bridge;
* key 2: group 203 + 201 rung together: 201 answers, 203 (sipp, ringing) gets a CANCEL;
* key 3: 202 answers 486: the flow's busy branch runs;
* key 4: 203 rings out: the flow falls through to voicemail 203 (and 203 gets a CANCEL);
* a phone with a wrong password is refused and, after repeated failures, blocked.

Every call leaves a journal row with the right outcome.
"""

from __future__ import annotations

import hashlib
import re
import shutil
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.runtime.journal import Journal, JournalRow

from .harness import SIPP, free_port

pytestmark = [
    pytest.mark.peer,
    pytest.mark.slow,
    pytest.mark.skipif(shutil.which("sipp") is None, reason="sipp (Debian sip-tester) is not installed"),
    pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed"),
]

HERE = Path(__file__).resolve().parent
FLOW = HERE / "flows" / "transfer.ivr"
SCENARIOS = HERE / "scenarios"
PASSWORD = "pw-201-Xk4q"
CALLER_TONE, CALLEE_TONE = 600.0, 1000.0


def sections(busy_port: int = 9, ring_port: int = 9, registrar: str = "", follow_me: str = "") -> str:
    return f"""
[[extensions]]
number = "201"
username = "201"
password = "{PASSWORD}"
mailbox = "201"

[[extensions]]
number = "202"
contacts = ["sip:202@127.0.0.1:{busy_port}"]
follow_me = [{follow_me}]

[[extensions]]
number = "203"
contacts = ["sip:203@127.0.0.1:{ring_port}"]
mailbox = "203"

[[extensions]]
number = "204"
username = "204"
password = "pw-204-Lq8z"

[[mailboxes]]
number = "201"

[[mailboxes]]
number = "203"

[registrar]
{registrar}
"""


def tone_wav(path: Path, freq: float, seconds: float = 60.0) -> Path:
    t = np.arange(int(seconds * 8000)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * freq * t) * 8000).astype(np.int16), 8000, subtype="PCM_16")
    return path


def tone_share(path: Path, freq: float) -> float:
    """Share of the recording's energy within 30 Hz of ``freq`` (the loud part only)."""
    pcm, rate = soundfile.read(path, dtype="float64")
    if pcm.ndim > 1:
        pcm = pcm[:, 0]
    spectrum = np.abs(np.fft.rfft(pcm)) ** 2
    freqs = np.fft.rfftfreq(len(pcm), 1 / rate)
    total = spectrum[freqs > 100].sum()
    return float(spectrum[np.abs(freqs - freq) < 30].sum() / total) if total else 0.0


def media_port() -> int:
    """A port for sipp's media: sipp binds it and port + 2 (video) at start; both must be free now.

    Passed as a second ``-mp`` (sipp takes the last), since ivr's RTP range and the phones' may
    hold port + 2 of a port that is free itself."""
    for _ in range(50):
        port = free_port()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as a, socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as b:
                a.bind(("127.0.0.1", port + 2))
                b.bind(("127.0.0.1", port + 3))
            return int(port)
        except OSError:
            continue
    raise RuntimeError("no free media ports for sipp")


class Uas:
    """A sipp phone at a fixed port (a static contact of an extension), one call."""

    def __init__(self, scenario: str, folder: Path, calls: int = 1) -> None:
        assert SIPP is not None
        self.port = free_port()
        folder.mkdir()
        self.folder = folder
        self.proc = subprocess.Popen(
            [SIPP, "-sf", str(SCENARIOS / scenario), "-i", "127.0.0.1", "-p", str(self.port),
             "-mp", str(media_port()), "-cp", str(free_port()), "-m", str(calls), "-nostdin",
             "-timeout", "60s", "-timeout_error", "-trace_msg", "-message_file", str(folder / "messages.log"),
             "-trace_err", "-error_file", str(folder / "errors.log"),
             "-trace_logs", "-log_file", str(folder / "logs.log")],
            cwd=folder, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        )  # fmt: skip

    def passed(self, timeout: float = 30.0) -> str:
        try:
            out, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            out, _ = self.proc.communicate()
        log = (self.folder / "messages.log").read_text(errors="replace") if (self.folder / "messages.log").exists() else ""
        assert self.proc.returncode == 0, f"sipp UAS failed ({self.proc.returncode}):\n{out[-2000:]}\n{log[-3000:]}"
        return log

    def logs(self) -> str:
        """What the scenario's <log> actions wrote."""
        path = self.folder / "logs.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.communicate()


@pytest.fixture
def uas(tmp_path: Path) -> Iterator[Callable[..., Uas]]:
    started: list[Uas] = []

    def start(scenario: str, calls: int = 1) -> Uas:
        phone = Uas(scenario, tmp_path / f"uas{len(started)}", calls)
        started.append(phone)
        return phone

    yield start
    for phone in started:
        phone.stop()


def caller_scenario(tmp: Path, key: str, stay_ms: int) -> str:
    text = (SCENARIOS / "uac_key.xml").read_text().replace("KEY", key).replace("STAY", str(stay_ms))
    path = tmp / f"uac_key_{key}.xml"
    path.write_text(text)
    return str(path)


def journal_row(server: Any, call_id: str, timeout: float = 10.0) -> JournalRow:
    """The call's row once it is complete: the server's writer thread completes it just after
    the call's ``ended`` log line, and only the database itself can tell this process when."""
    deadline = time.monotonic() + timeout
    while True:
        journal = Journal.reader(server.data)
        try:
            rows = [r for r in journal.query(limit=100) if r.call_id == call_id]
        finally:
            journal.close()
        if (rows and rows[0].ended is not None) or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert rows, f"no journal row for {call_id}"
    return rows[0]


def dial_the_menu(server: Any, caller: Any) -> str:
    """The caller (baresip) dials the company number and waits until the menu listens; its Call-ID."""
    caller.command("dial", f"sip:+41435435570@{server.address}")
    caller.wait_event("CALL_ESTABLISHED")
    call_id: str = server.wait_for(lambda r: r.get("event") == "incoming")["call_id"]
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("action") == "step" and r.get("step") == "welcome")
    return call_id


def register_201(server: Any, phone: Any) -> None:
    phone.command("uanew", f"<sip:201@{server.address}>;auth_pass={PASSWORD};answermode=auto;regint=120")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="201 registered")


def run_caller(sipp: Callable[..., Any], server: Any, tmp: Path, key: str, stay_ms: int) -> Any:
    result = sipp(caller_scenario(tmp, key, stay_ms), server, timeout=40, extra=("-mp", str(media_port())))
    result.check()
    return result


def test_201_answers_and_each_side_hears_the_other(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=sections())
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    register_201(server, callee)
    caller = baresip(tone_wav(tmp_path / "caller.wav", CALLER_TONE))
    call_id = dial_the_menu(server, caller)
    caller.command("sndcode", "1")
    callee.wait_event("CALL_ESTABLISHED")
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
    assert done["outcome"] == "answered" and done["target"] == "201"
    time.sleep(3.0)  # the conversation: three seconds of both tones crossing the bridge
    caller.command("hangup")
    callee.wait_event("CALL_CLOSED")  # ivr hung up 201 when the caller left
    ended = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "ended")
    assert ended["outcome"] == "transferred" and ended["detail"] == "201"
    caller.stop()
    callee.stop()
    heard_by_caller, heard_by_callee = caller.heard(), callee.heard()
    assert tone_share(heard_by_caller, CALLEE_TONE) > 0.2, "the caller did not hear 201's tone"
    assert tone_share(heard_by_callee, CALLER_TONE) > 0.5, "201 did not hear the caller's tone"
    assert tone_share(heard_by_callee, CALLEE_TONE) < 0.05  # no echo of its own voice
    row = journal_row(server, call_id)
    assert row.outcome == "transferred" and row.detail == "201"
    assert "key:1" in row.path and "transfer:answered(201)" in row.path and row.answered is not None


def test_group_second_member_answers_and_the_first_is_cancelled(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], sipp: Callable[..., Any],
    uas: Callable[..., Uas], tmp_path: Path,
) -> None:
    ringing = uas("uas_ring_cancel.xml")
    server = ivr_server(FLOW, sections=sections(ring_port=ringing.port))
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    register_201(server, callee)
    result = run_caller(sipp, server, tmp_path, "2", 4000)
    messages = ringing.passed()
    assert "CANCEL sip:203@127.0.0.1" in messages
    callee.wait_event("CALL_CLOSED")
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "201", row
    assert "pair" in row.path and "transfer:answered(201)" in row.path


def test_busy_goes_to_the_busy_branch(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    busy = uas("uas_busy.xml")
    server = ivr_server(FLOW, sections=sections(busy_port=busy.port))
    result = run_caller(sipp, server, tmp_path, "3", 20000)
    assert result.received("BYE "), "ivr should hang up after the busy branch"
    busy.passed()
    assert "busy_branch" in server.steps(result.call_id)
    row = journal_row(server, result.call_id)
    assert row.outcome == "hangup" and row.step == "busy_branch"
    assert "transfer:busy(202)" in row.path


def test_no_answer_falls_through_to_voicemail(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ringing = uas("uas_ring_cancel.xml")
    server = ivr_server(FLOW, sections=sections(ring_port=ringing.port))
    result = run_caller(sipp, server, tmp_path, "4", 9000)
    ringing.passed()
    row = journal_row(server, result.call_id)
    assert "transfer:no_answer(203)" in row.path
    assert row.outcome == "voicemail" and row.detail == "203", row


def test_wrong_password_is_refused_and_repeated_failures_are_blocked(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=sections(registrar="max_failures = 2\nthrottle_action = \"403\""))
    phone = baresip(tone_wav(tmp_path / "mic.wav", CALLEE_TONE, 5))
    phone.command("uanew", f"<sip:201@{server.address}>;auth_pass=wrong-guess;regint=120")
    server.wait_line(r"blocking 127\.0\.0\.1 for")
    statuses = [r["status"] for r in server.records if r.get("event") == "register"]
    assert 200 not in statuses and statuses.count(401) >= 2
    phone.stop(at_once=True)  # blocked: quitting would wait 10 s for an answer to its un-REGISTER


@pytest.mark.parametrize(("status", "outcome", "step"), [("200 OK", "transferred", "referred"),
                                                          ("486 Busy Here", "hangup", "busy_branch")])
def test_blind_transfer_by_refer(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], tmp_path: Path, status: str, outcome: str, step: str
) -> None:
    server = ivr_server(FLOW, sections=sections(busy_port=5999))
    text = (SCENARIOS / "uac_refer.xml").read_text().replace("KEY", "5").replace("REFER_STATUS", status)
    scenario = tmp_path / "uac_refer.xml"
    scenario.write_text(text)
    result = sipp(str(scenario), server, timeout=40, extra=("-mp", str(media_port())))
    result.check()
    [refer] = result.received("REFER ")
    assert "Referred-By: <sip:ivr@" in refer
    row = journal_row(server, result.call_id)
    assert row.outcome == outcome and row.step == step, row
    expected = "transfer:answered(202)" if outcome == "transferred" else "transfer:busy(202)"
    assert expected in row.path


def assert_digest(messages: str, header: str, method: str, password: str) -> None:
    """Recompute the RFC 2617 qop=auth response of ``header`` in sipp's trace (independent of ivr's code)."""
    m = re.search(rf"^{header}: Digest (.*)$", messages, re.M)
    assert m, f"no {header} sent"
    p = dict(re.findall(r'(\w+)="?([^",]*)"?', m.group(1)))

    def md5(text: str) -> str:
        return hashlib.md5(text.encode()).hexdigest()

    ha1 = md5(f"{p['username']}:{p['realm']}:{password}")
    ha2 = md5(f"{method}:{p['uri']}")
    assert p["response"] == md5(f"{ha1}:{p['nonce']}:{p['nc']}:{p['cnonce']}:{p['qop']}:{ha2}")


def trunk_section(port: int) -> str:
    return f"""
[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = {port}
username = "acme"
password = "trunk-Pw7"
register = true
caller_id = "+41435435570"
allow = ["+4179*"]
"""


def test_outbound_call_through_a_registering_trunk_and_numbers_it_does_not_allow(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    trunk = uas("uas_trunk.xml", calls=2)
    server = ivr_server(FLOW, sections=sections() + trunk_section(trunk.port))
    registered = server.wait_for(lambda r: r.get("event") == "trunk_registered", what="trunk registration")
    assert registered["trunk"] == "carrier" and 590 <= registered["expires"] <= 600
    result = run_caller(sipp, server, tmp_path, "6", 3000)
    messages = trunk.passed()
    assert 'Authorization: Digest username="acme", realm="trunk.example"' in messages
    assert_digest(messages, "Proxy-Authorization", "INVITE", "trunk-Pw7")
    assert "P-Asserted-Identity: <sip:+41435435570@127.0.0.1>" in messages
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "+41791234567", row

    refused = run_caller(sipp, server, tmp_path, "7", 20000)
    assert refused.received("BYE ")
    reason = server.wait_for(lambda r: r.get("call_id") == refused.call_id and r.get("event") == "transfer_target_unreachable")
    assert reason["reason"] == "+41901234567 is not allowed by any trunk's allow patterns (carrier)"
    row = journal_row(server, refused.call_id)
    assert row.outcome == "hangup" and row.step == "refused" and "transfer:failed(+41901234567)" in row.path


def test_caller_hanging_up_while_it_rings_cancels_the_leg(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ringing = uas("uas_ring_cancel.xml")
    server = ivr_server(FLOW, sections=sections(ring_port=ringing.port))
    result = run_caller(sipp, server, tmp_path, "4", 1200)  # BYE while 203 rings (it would ring 3 s)
    messages = ringing.passed()
    assert "CANCEL sip:203@127.0.0.1" in messages
    row = journal_row(server, result.call_id)
    assert row.outcome == "caller_hangup" and row.step == "slow_line" and row.hangup_cause == "bye", row


def test_callee_hanging_up_ends_the_callers_call(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    import threading

    server = ivr_server(FLOW, sections=sections())
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    register_201(server, callee)
    outcome: list[Any] = []
    caller = threading.Thread(target=lambda: outcome.append(run_caller(sipp, server, tmp_path, "1", 30000)))
    caller.start()
    try:
        callee.wait_event("CALL_ESTABLISHED")
        server.wait_for(lambda r: r.get("event") == "transfer_done" and r.get("outcome") == "answered")
        callee.command("uafind", f"sip:201@{server.address}")  # "hangup" acts on the current account
        callee.command("hangup")
    finally:
        caller.join(60)
    [result] = outcome
    assert result.received("BYE "), "ivr should hang up the caller when 201 hangs up:\n" + server.tail(25)
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "201" and row.path[-1] == "bridge_ended", row
    assert row.path.count("bridge_ended") == 1 and row.hangup_cause == "callee_bye"


def test_follow_me_rings_the_next_number_when_the_desk_phone_is_busy(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], sipp: Callable[..., Any],
    uas: Callable[..., Uas], tmp_path: Path,
) -> None:
    busy = uas("uas_busy.xml")
    server = ivr_server(FLOW, sections=sections(busy_port=busy.port, follow_me='"201"'))
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    register_201(server, callee)
    result = run_caller(sipp, server, tmp_path, "3", 3000)
    busy.passed()
    callee.wait_event("CALL_CLOSED")
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "201", row
    assert "transfer:answered(201)" in row.path


def test_a_registered_phone_picks_up_a_call_ringing_in_its_group(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    import threading

    ringing = uas("uas_ring_cancel.xml")
    server = ivr_server(FLOW, sections=sections(ring_port=ringing.port))
    outcome: list[Any] = []
    caller = threading.Thread(target=lambda: outcome.append(run_caller(sipp, server, tmp_path, "8", 30000)))
    caller.start()
    try:
        server.wait_for(lambda r: r.get("event") == "leg_progress" and r.get("target") == "203", what="203 ringing")
        # Extension 204's desk phone registers, then dials *8 and answers the 407 as that extension.
        sipp("register_auth.xml", server, service="204", extra=("-au", "204", "-ap", "pw-204-Lq8z")).check()
        picker = sipp(str(SCENARIOS / "picker.xml"), server, service="*8", timeout=30,
                      extra=("-mp", str(media_port()), "-au", "204", "-ap", "pw-204-Lq8z",
                             "-auth_uri", f"*8@127.0.0.1:{server.port}"))
    finally:
        caller.join(60)
    picker.check()
    [result] = outcome
    assert result.received("BYE "), "the caller is hung up when the picker hangs up"
    assert "CANCEL sip:203@127.0.0.1" in ringing.passed()
    waiting = [r for r in server.call_records(result.call_id) if r.get("event") == "transfer_ringback"]
    assert [r["source"] for r in waiting] == ["moh/"]  # the flow's music while it rang
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "204" and "transfer:answered(204)" in row.path, row
    picked = journal_row(server, picker.call_id)
    assert picked.outcome == "pickup" and picked.detail == "204", picked


def test_pickup_by_an_unregistered_phone_is_refused(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=sections())
    scenario = tmp_path / "rejected.xml"
    scenario.write_text((SCENARIOS / "uac_rejected.xml").read_text().replace("STATUS", "403"))
    sipp(str(scenario), server, service="*8", extra=("-mp", str(media_port()))).check()
    server.wait_for(lambda r: r.get("action") == "reject" and r.get("status") == 403
                    and r.get("reason") == "pickup: the caller is not a registered phone")


def test_caller_hears_ringback_while_it_rings(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    ringing = uas("uas_ring_cancel.xml")
    server = ivr_server(FLOW, sections=sections(ring_port=ringing.port))
    caller = baresip(tone_wav(tmp_path / "caller.wav", CALLER_TONE))
    call_id = dial_the_menu(server, caller)
    caller.command("sndcode", "4")
    ringback = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_ringback")
    assert ringback["source"] == "tone"
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done", timeout=20)
    assert done["outcome"] == "no_answer" and done["ring_time"] >= 3.0
    caller.command("hangup")
    caller.wait_event("CALL_CLOSED")
    ringing.passed()
    caller.stop()
    pcm, rate = soundfile.read(caller.heard(), dtype="float64")
    windows = [pcm[i : i + 4000] for i in range(0, len(pcm) - 4000, 2000)]  # half-second windows
    shares = []
    for w in windows:
        spectrum = np.abs(np.fft.rfft(w)) ** 2
        freqs = np.fft.rfftfreq(len(w), 1 / rate)
        total = spectrum[freqs > 100].sum()
        shares.append(spectrum[np.abs(freqs - 425) < 20].sum() / total if total else 0.0)
    assert max(shares) > 0.8, "no 425 Hz ringback heard while 203 rang"


def test_refer_accepted_then_bye_counts_as_transferred(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=sections(busy_port=5999))
    scenario = tmp_path / "uac_refer_bye.xml"
    scenario.write_text((SCENARIOS / "uac_refer_bye.xml").read_text().replace("KEY", "5"))
    result = sipp(str(scenario), server, timeout=40, extra=("-mp", str(media_port())))
    result.check()
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "202" and "transfer:answered(202)" in row.path, row


def pcap_speech() -> np.ndarray:
    """The audio of sipp's g711a.pcap (tests/data/rtp/g711a.bin: its RTP payloads), decoded."""
    import struct

    from ivr.media import g711

    data = (HERE.parent / "data" / "rtp" / "g711a.bin").read_bytes()
    payloads, pos = [], 0
    while pos < len(data):
        _, size = struct.unpack_from("!IH", data, pos)
        packet = data[pos + 6 : pos + 6 + size]
        pos += 6 + size
        if len(packet) > 12 and packet[1] & 0x7F == g711.PCMA:
            payloads.append(packet[12:])
    return g711.decode(b"".join(payloads), g711.PCMA).astype(np.float64)


def best_correlation(heard: np.ndarray, clip: np.ndarray) -> float:
    """Highest normalised correlation of ``clip`` at any offset in ``heard``."""
    dots = np.correlate(heard, clip, mode="valid")
    energy = np.cumsum(np.concatenate([[0.0], heard**2]))
    window = energy[len(clip):] - energy[: -len(clip)]
    norms = np.sqrt(np.maximum(window, 1e-9) * np.dot(clip, clip))
    return float(np.max(dots / norms))


def test_pcma_caller_speech_reaches_a_pcmu_phone_transcoded(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    server = ivr_server(FLOW, sections=sections())
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    callee.command("uanew", f"<sip:201@{server.address}>;auth_pass={PASSWORD};answermode=auto;regint=120;"
                            "audio_codecs=PCMU")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="201 registered")
    scenario = tmp_path / "pcma.xml"
    scenario.write_text((SCENARIOS / "uac_pcma_speech.xml").read_text().replace("KEY", "1").replace("STAY", "500"))
    result = sipp(str(scenario), server, timeout=40, extra=("-mp", str(media_port())))
    result.check()
    callee.wait_event("CALL_CLOSED")
    media = [r for r in server.call_records(result.call_id) if r.get("event") in ("media", "leg_answered")]
    assert [r["codec"] for r in media] == ["PCMA", "PCMU"]  # the caller's leg, then 201's
    callee.stop()
    heard, _ = soundfile.read(callee.heard(), dtype="float64")
    speech = pcap_speech()
    clip = speech[len(speech) // 3 : len(speech) // 3 + 8000]  # one second from the middle
    assert best_correlation(heard * 32768, clip) > 0.9, "201 did not hear the caller's speech"


def test_sequential_group_moves_to_the_next_member_after_the_ring_time(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], sipp: Callable[..., Any],
    uas: Callable[..., Uas], tmp_path: Path,
) -> None:
    ringing = uas("uas_ring_cancel.xml")
    server = ivr_server(FLOW, sections=sections(ring_port=ringing.port))
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    register_201(server, callee)
    result = run_caller(sipp, server, tmp_path, "pound", 7000)  # 3 s of 203, then 201 answers
    assert "CANCEL sip:203@127.0.0.1" in ringing.passed()  # 203 rang its 3 s first
    callee.wait_event("CALL_CLOSED")
    done = server.wait_for(lambda r: r.get("call_id") == result.call_id and r.get("event") == "transfer_done")
    assert done["outcome"] == "answered" and done["target"] == "201" and done["ring_time"] >= 3.0
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "201" and "hunt" in row.path, row


EARLY_TONE = 1000.0


def test_early_media_from_the_callee_replaces_our_ringback(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    """202 answers 183 with SDP and streams a tone (a carrier's announcement), then 486: the
    caller hears that tone instead of our 425 Hz ringback, and the flow's busy branch runs."""
    announcement = tone_wav(tmp_path / "announcement.wav", EARLY_TONE, 10)
    pcm, _ = soundfile.read(announcement, dtype="int16")
    # sipp streams mu-law as it is, and reads the file when it starts: it must exist before
    soundfile.write(tmp_path / "early_tone.wav", pcm, 8000, subtype="ULAW")
    carrier = uas("uas_early_media.xml")
    server = ivr_server(FLOW, sections=sections(busy_port=carrier.port))
    caller = baresip(tone_wav(tmp_path / "caller.wav", CALLER_TONE))
    call_id = dial_the_menu(server, caller)
    caller.command("sndcode", "3")
    done = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done", timeout=20)
    assert done["outcome"] == "busy" and done["target"] == "202"
    carrier.passed()
    caller.wait_event("CALL_CLOSED")  # the busy branch says its line and hangs up
    caller.stop()
    heard = caller.heard()
    assert tone_share(heard, EARLY_TONE) > 0.2, "the caller did not hear the callee's early media"
    assert tone_share(heard, 425.0) < 0.02, "the caller heard our ringback over the callee's early media"
    row = journal_row(server, call_id)
    assert "transfer:busy(202)" in row.path and row.step == "busy_branch", row


def test_a_phone_registered_over_tcp_gets_its_invite_over_tcp(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], sipp: Callable[..., Any], tmp_path: Path
) -> None:
    """201 registers over TCP (baresip, transport=tcp): the transfer's INVITE goes back on TCP to
    the address it registered from, the phone answers, and the caller is bridged to it."""
    server = ivr_server(FLOW, sections=sections())
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    callee.command("uanew", f"<sip:201@{server.address};transport=tcp>;auth_pass={PASSWORD};answermode=auto;regint=120")
    server.wait_for(lambda r: r.get("event") == "register" and r.get("status") == 200, what="201 on TCP")
    result = run_caller(sipp, server, tmp_path, "1", 4000)
    callee.wait_event("CALL_ESTABLISHED")
    [invite] = [r for r in server.call_records(result.call_id) if r.get("event") == "leg_invite"]
    assert invite["transport"] == "tcp" and invite["target"] == "201", invite
    assert "{0/TCP/v4} 200 OK" in callee.output()  # the phone registered over TCP, not UDP
    callee.wait_event("CALL_CLOSED")  # ivr hung 201 up when the caller left
    row = journal_row(server, result.call_id)
    assert row.outcome == "transferred" and row.detail == "201" and "transfer:answered(201)" in row.path, row


def test_the_caller_holding_the_bridge_plays_hold_music_to_the_callee(
    ivr_server: Callable[..., Any], baresip: Callable[[Path], Any], tmp_path: Path
) -> None:
    """While bridged to 201 the caller (baresip) holds (re-INVITE a=sendonly) and resumes: 201
    hears hold music meanwhile, and the caller's voice again after (the media of ivr's side; no
    re-INVITE goes to 201)."""
    server = ivr_server(FLOW, sections=sections())
    callee = baresip(tone_wav(tmp_path / "callee.wav", CALLEE_TONE))
    register_201(server, callee)
    caller = baresip(tone_wav(tmp_path / "caller.wav", CALLER_TONE))
    call_id = dial_the_menu(server, caller)
    caller.command("sndcode", "1")
    callee.wait_event("CALL_ESTABLISHED")
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "transfer_done")
    caller.command("hold")
    held = server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "bridge_hold")
    assert held["music"] == "default"
    time.sleep(2.0)  # two seconds of hold music for 201
    caller.command("resume")
    server.wait_for(lambda r: r.get("call_id") == call_id and r.get("event") == "bridge_resume")
    time.sleep(2.0)  # and the caller's tone again
    caller.command("hangup")
    callee.wait_event("CALL_CLOSED")
    caller.stop()
    callee.stop()
    heard = callee.heard()
    assert tone_share(heard, CALLER_TONE) > 0.2, "201 did not hear the caller after the resume"
    assert 1 - tone_share(heard, CALLER_TONE) - tone_share(heard, CALLEE_TONE) > 0.1, "201 heard no hold music"
    reinvites = [r for r in server.call_records(call_id) if r.get("event") == "reoffer"]
    assert [r["hold"] for r in reinvites][:2] == [True, False], reinvites


def test_forwarded_calls_show_the_caller_or_the_company_as_configured(
    ivr_server: Callable[..., Any], sipp: Callable[..., Any], uas: Callable[..., Uas], tmp_path: Path
) -> None:
    """One sipp peer is both the phones (static contacts) and the carrier trunk; it logs From,
    P-Asserted-Identity and Diversion of each INVITE (docs/deployment.md, "Which number forwarded
    calls show").  The caller is +41791112233 and dials +41435435580."""
    peer = uas("uas_shown_number.xml", calls=4)
    server = ivr_server(HERE / "flows" / "shown_number.ivr", sections=f"""
[[extensions]]
number = "201"
contacts = ["sip:201@127.0.0.1:{peer.port}"]

[[extensions]]
number = "204"
contacts = ["sip:204@127.0.0.1:{peer.port}"]
shown_number = "company"

[[extensions]]
number = "205"
follow_me = ["+41797001205"]
shown_number = "company"

[[trunks]]
name = "carrier"
host = "127.0.0.1"
port = {peer.port}
caller_id = "+41435435570"
allow = ["+4179*"]
shown_number = "caller"
""")
    for key in "1234":
        result = sipp(caller_scenario(tmp_path, key, 1000), server, service="+41435435580", timeout=40,
                      extra=("-mp", str(media_port())))
        result.check()
    messages = peer.passed()
    invites = [m for m in re.split(r"\n-{5,}[^\n]*\n", messages) if "INVITE sip:" in m and "received" in m]
    assert [re.search(r"INVITE (sip:[^@]+)@", m).group(1) for m in invites] == [  # type: ignore[union-attr]
        "sip:201", "sip:204", "sip:+41797654321", "sip:+41797001205"]
    assert re.findall(r"shown from=(\S*) pai=(\S*) diversion=(\S*)", peer.logs()) == [
        ("+41791112233", "", ""),  # 201's phone: the caller (the default)
        ("+41435435580", "", ""),  # 204's phone: the number the caller dialled
        ("+41791112233", "+41791112233", "+41435435570"),  # on-call mobile: the trunk shows the caller
        ("+41435435570", "+41435435570", ""),  # 205's follow-me mobile: 205 wants the company number
    ]
    assert "Diversion: <sip:+41435435570@127.0.0.1>;reason=unconditional" in invites[2]
