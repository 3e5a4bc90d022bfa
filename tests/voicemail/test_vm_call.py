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


def _deployment(tmp_path: Path) -> tuple[Path, Path, Path]:
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
    flow.write_text("number default -> start\n\nstart:\n    voicemail 200\n")
    return flow, data, tmp_path / "ivr.toml"


def test_a_sip_caller_leaves_a_message_and_hangs_up(tmp_path):
    flow, data, config = _deployment(tmp_path)
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
    server = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp_path,
    )
    try:
        log = Log(server.stderr)
        ready = READY.search(log.wait(READY.pattern, timeout=90))
        assert ready is not None
        port = int(ready.group(1))
        sipp = [
            "sipp", "-nostdin", "-sf", str(SCENARIO), "-m", "1", "-i", "127.0.0.1",
            "-p", str(_free_udp_port()), "-mp", str(_free_udp_port() & ~1), "-s", "100",
            "-timeout", "40", "-timeout_error", f"127.0.0.1:{port}",
        ]  # fmt: skip
        result = subprocess.run(sipp, cwd=tmp_path, capture_output=True, text=True, timeout=60)
        assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
        done = json.loads(log.wait(r'"event": "recording_done", "to": "sub"', timeout=30))
        log.wait(r"sub_finished.*result='saved'", timeout=30)
    finally:
        server.send_signal(signal.SIGTERM)
        try:
            server.wait(20)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait(5)
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
