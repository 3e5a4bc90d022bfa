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
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.voicemail.pins import hash_pin
from ivr.voicemail.store import VoicemailStore

SCENARIO = Path(__file__).resolve().parent / "data" / "leave_message.xml"
PCAP = Path("/usr/share/sip-tester/g711a.pcap")
READY = re.compile(r"listening on udp:127\.0\.0\.1:(\d+) ")

pytestmark = [
    pytest.mark.slow,
    pytest.mark.peer,
    pytest.mark.skipif(
        shutil.which("sipp") is None or not PCAP.exists(), reason="sipp (sip-tester) not installed"
    ),
]


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Log:
    """Lines of the server's stderr, collected by a thread; ``wait`` blocks until one matches."""

    def __init__(self, stream: Any) -> None:
        self.lines: list[str] = []
        self.cond = threading.Condition()
        self.closed = False
        threading.Thread(target=self._read, args=(stream,), daemon=True).start()

    def _read(self, stream: Any) -> None:
        for line in stream:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait(self, pattern: str, timeout: float) -> str:
        """The first line matching ``pattern`` (waiting for it up to ``timeout`` seconds)."""
        regex, seen = re.compile(pattern), 0
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    if regex.search(line):
                        return line
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(
                        f"no line matching {pattern!r}; server said:\n"
                        + "\n".join(self.lines[-40:])
                    )
                self.cond.wait(left)


def _deployment(tmp_path: Path, steps: str) -> tuple[Path, Path, Path]:
    prompts, data = tmp_path / "prompts", tmp_path / "data"
    prompts.mkdir()
    t = np.arange(8000) / 8000  # a 1 s greeting file keeps the call short
    soundfile.write(
        prompts / "greeting.wav", (np.sin(2 * np.pi * 440 * t) * 0.2).astype(np.float32), 8000
    )
    rtp = _free_udp_port() & ~1
    (tmp_path / "ivr.toml").write_text(
        f'[server]\nrtp_ports = "{rtp}-{rtp + 200}"\n\n[prompts]\nfolders = ["{prompts}"]\n\n'
        '[[mailboxes]]\nnumber = "200"\nowner = "Alice Example"\n'
        'greetings = { unavailable = "greeting.wav" }\n'
    )
    flow = tmp_path / "vm.ivr"
    flow.write_text("number default -> start\n\n" + steps)
    return flow, data, tmp_path / "ivr.toml"


class Server:
    """``ivr serve`` on a free loopback port with its log read by a thread."""

    def __init__(self, tmp_path: Path, flow: Path, config: Path, data: Path) -> None:
        cmd = [
            sys.executable,
            "-m",
            "ivr",
            "serve",
            str(flow),
            "--config",
            str(config),
            "--data",
            str(data),
        ]
        cmd += ["--listen", "127.0.0.1:0", "--log-format", "json"]
        self.proc = subprocess.Popen(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
            cwd=tmp_path,
        )
        self.log = Log(self.proc.stderr)
        try:
            ready = READY.search(self.log.wait(READY.pattern, timeout=90))
        except BaseException:
            self.stop()
            raise
        assert ready is not None
        self.port = int(ready.group(1))

    def sipp(self, scenario: Path, cwd: Path) -> None:
        cmd = [
            "sipp", "-nostdin", "-sf", str(scenario), "-m", "1", "-i", "127.0.0.1",
            "-p", str(_free_udp_port()), "-mp", str(_free_udp_port() & ~1), "-s", "100",
            "-timeout", "40", "-timeout_error", f"127.0.0.1:{self.port}",
        ]  # fmt: skip
        result = subprocess.run(cmd, cwd=cwd, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, (
            result.stdout[-2000:] + result.stderr[-2000:] + "\n".join(self.log.lines[-30:])
        )

    def stop(self) -> None:
        self.proc.send_signal(signal.SIGTERM)
        try:
            self.proc.wait(20)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(5)


def test_a_sip_caller_leaves_a_message_and_hangs_up(tmp_path):
    flow, data, config = _deployment(tmp_path, "start:\n    voicemail 200\n")
    server = Server(tmp_path, flow, config, data)
    try:
        server.sipp(SCENARIO, tmp_path)
        done = json.loads(server.log.wait(r'"event": "recording_done", "to": "sub"', timeout=30))
        server.log.wait(r"sub_finished.*result='saved'", timeout=30)
    finally:
        server.stop()
    (message,) = VoicemailStore(data).list("200")
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


def _with_pin(config: Path) -> None:
    pin_hash = hash_pin("2580", "200")
    text = config.read_text().replace(
        'owner = "Alice Example"', f'owner = "Alice Example"\npin_hash = "{pin_hash}"'
    )
    config.write_text(text)


def test_owner_logs_in_listens_and_deletes_over_sip(tmp_path):
    flow, data, config = _deployment(tmp_path, "start:\n    voicemail access 200\n    hangup\n")
    _with_pin(config)
    store = VoicemailStore(data)
    src = tmp_path / "left.wav"
    soundfile.write(src, np.zeros(4000, np.int16), 8000)
    message = store.add("200", caller="+41445556677", duration=0.5, source=src)
    scenario = tmp_path / "listen.xml"
    scenario.write_text(_info_scenario([("2580#", 1200), ("1", 1500), ("3", 800), ("*", 300)]))
    server = Server(tmp_path, flow, config, data)
    try:
        server.sipp(scenario, tmp_path)
        play = json.loads(server.log.wait(r'"action": "play"', timeout=10))
        assert play["path"] == store.data_ref(message.path)
        server.log.wait(r"sub_finished.*voicemail_access.*result='done'", timeout=10)
    finally:
        server.stop()
    assert store.list("200") == [] and not message.path.exists()
    assert not any("prompt_error" in line for line in server.log.lines)


def test_three_wrong_pins_over_sip_end_the_call_and_are_logged(tmp_path):
    flow, data, config = _deployment(tmp_path, "start:\n    voicemail access 200\n    hangup\n")
    _with_pin(config)
    scenario = tmp_path / "wrong_pins.xml"
    scenario.write_text(_info_scenario([("1357#", 800), ("9999#", 800), ("2581#", 300)]))
    server = Server(tmp_path, flow, config, data)
    try:
        server.sipp(scenario, tmp_path)
        for n in (1, 2, 3):
            server.log.wait(
                rf"failed login to mailbox 200 from \+41791112233 \({n} of 3\)", timeout=10
            )
        server.log.wait(r"sub_finished.*voicemail_access.*result='locked'", timeout=10)
        hangup = json.loads(server.log.wait(r'"action": "hangup"', timeout=10))
        assert hangup["reason"] == "voicemail_locked"
    finally:
        server.stop()
