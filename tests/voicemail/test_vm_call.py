"""A real SIP call leaves a voicemail: ``ivr serve`` as a process, sipp as the caller.

sipp offers PCMA, waits through the greeting and beep, replays its bundled
``g711a.pcap`` speech into the call and hangs up in the middle of it.  The
message must be in the mailbox with the caller's number, about as long as
the time between the beep and the BYE, and with the caller's audio in it
(not silence).  The server's JSON log is read by a thread; the test waits on
it with a condition variable, never with sleeps.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.voicemail.pins import hash_pin
from ivr.voicemail.store import VoicemailStore
from tests.transfer.harness import peers

SCENARIO = Path(__file__).resolve().parent / "data" / "leave_message.xml"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
MAILBOX = '[[mailboxes]]\nnumber = "200"\nowner = "Alice Example"\ngreetings = {{ unavailable = "greeting.wav" }}\n{pin}'

pytestmark = [
    pytest.mark.slow,
    pytest.mark.peer,
    pytest.mark.skipif(
        shutil.which("sipp") is None or not PCAP.exists(), reason="sipp (sip-tester) not installed"
    ),
]


def _serve(tmp_path: Path, steps: str, *, pin: bool = False) -> Any:
    """``ivr serve`` (the peer harness) on a one-step flow, mailbox 200 with a 1 s greeting file."""
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    t = np.arange(8000) / 8000  # a 1 s greeting file keeps the call short
    soundfile.write(
        prompts / "greeting.wav", (np.sin(2 * np.pi * 440 * t) * 0.2).astype(np.float32), 8000
    )
    flow = tmp_path / "vm.ivr"
    flow.write_text("number default -> start\n\n" + steps)
    pin_line = f'pin_hash = "{hash_pin("2580", "200")}"\n' if pin else ""
    return peers.start_ivr(tmp_path, [flow], sections=MAILBOX.format(pin=pin_line), prompt_folders=(prompts,))


def _line(server: Any, pattern: str, timeout: float) -> str:
    return str(server.wait_line(pattern, timeout=timeout).string)


def test_a_sip_caller_leaves_a_message_and_hangs_up(tmp_path: Path, sipp: Callable[..., Any]) -> None:
    server = _serve(tmp_path, "start:\n    voicemail 200\n")
    try:
        sipp(str(SCENARIO), server, timeout=40).check()
        done = json.loads(_line(server, r'"event": "recording_done", "to": "sub"', timeout=30))
        _line(server, r"sub_finished.*result='saved'", timeout=30)
    finally:
        server.stop()
    (message,) = VoicemailStore(server.data).list("200")
    assert message.caller == "+41791112233" and message.status == "new"
    assert done["reason"] == "hangup"
    # The scenario hangs up about 4.75 s after the beep (2 s pause + 4 s - greeting and beep).
    assert 3.0 < message.duration < 6.5
    audio, rate = soundfile.read(message.path, dtype="int16")
    assert rate == 8000 and abs(len(audio) / 8000 - message.duration) < 0.05
    assert (
        float(np.sqrt(np.mean(audio.astype(float) ** 2))) > 300
    )  # the caller's speech, not silence


def _info_scenario(typed: list[tuple[str, int]]) -> str:
    """sipp scenario: call, type each group of keys by SIP INFO (application/dtmf-relay) followed by
    a pause in ms, then expect ivr's BYE."""
    head, _, _ = SCENARIO.read_text().partition('  <pause milliseconds="2000"/>')
    head = head.replace("Leave a voicemail and hang up", "Mailbox keys by SIP INFO")
    head = head.replace("RTP/AVP 8 101", "RTP/AVP 0 101").replace(
        "a=rtpmap:8 PCMA/8000", "a=rtpmap:0 PCMU/8000"
    )
    body, cseq = ['  <pause milliseconds="1000"/>'], 1
    for keys, pause in typed:
        for digit in keys:
            cseq += 1
            body.append(INFO.replace("@CSEQ@", str(cseq)).replace("@KEY@", digit))
            body.append('  <pause milliseconds="150"/>')
        body.append(f'  <pause milliseconds="{pause}"/>')
    return head + "\n".join(body) + BYE_FROM_IVR


INFO = """  <send retrans="500">
    <![CDATA[

      INFO sip:[service]@[remote_ip]:[remote_port] SIP/2.0
      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]
      From: "sipp" <sip:+41791112233@[local_ip]:[local_port]>;tag=[pid]SIPpTag00[call_number]
      To: <sip:[service]@[remote_ip]:[remote_port]>[peer_tag_param]
      Call-ID: [call_id]
      CSeq: @CSEQ@ INFO
      Contact: <sip:sipp@[local_ip]:[local_port];transport=[transport]>
      Max-Forwards: 70
      Content-Type: application/dtmf-relay
      Content-Length: [len]

      Signal=@KEY@
      Duration=160

    ]]>
  </send>
  <recv response="200"/>"""

BYE_FROM_IVR = """
  <recv request="BYE" timeout="30000"/>
  <send>
    <![CDATA[

      SIP/2.0 200 OK
      [last_Via:]
      [last_From:]
      [last_To:]
      [last_Call-ID:]
      [last_CSeq:]
      Content-Length: 0

    ]]>
  </send>
</scenario>
"""


def test_owner_logs_in_listens_and_deletes_over_sip(tmp_path: Path, sipp: Callable[..., Any]) -> None:
    store = VoicemailStore(tmp_path / "data")
    src = tmp_path / "left.wav"
    soundfile.write(src, np.zeros(4000, np.int16), 8000)
    message = store.add("200", caller="+41445556677", duration=0.5, source=src)
    scenario = tmp_path / "listen.xml"
    scenario.write_text(_info_scenario([("2580#", 1200), ("1", 1500), ("3", 800), ("*", 300)]))
    server = _serve(tmp_path, "start:\n    voicemail access 200\n    hangup\n", pin=True)
    try:
        sipp(str(scenario), server, timeout=40).check()
        play = json.loads(_line(server, r'"action": "play"', timeout=10))
        assert play["path"] == store.data_ref(message.path)
        _line(server, r"sub_finished.*voicemail_access.*result='done'", timeout=10)
    finally:
        server.stop()
    assert store.list("200") == [] and not message.path.exists()
    assert not any("prompt_error" in line for line in server.lines)


def test_three_wrong_pins_over_sip_end_the_call_and_are_logged(tmp_path: Path, sipp: Callable[..., Any]) -> None:
    scenario = tmp_path / "wrong_pins.xml"
    scenario.write_text(_info_scenario([("1357#", 800), ("9999#", 800), ("2581#", 300)]))
    server = _serve(tmp_path, "start:\n    voicemail access 200\n    hangup\n", pin=True)
    try:
        sipp(str(scenario), server, timeout=40).check()
        for n in (1, 2, 3):
            _line(server, rf"failed login to mailbox 200 from \+41791112233 \({n} of 3\)", timeout=10)
        _line(server, r"sub_finished.*voicemail_access.*result='locked'", timeout=10)
        hangup = json.loads(_line(server, r'"action": "hangup"', timeout=10))
        assert hangup["reason"] == "voicemail_locked"
    finally:
        server.stop()
