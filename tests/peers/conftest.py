"""Harness for tests with real peers: ``ivr serve`` as a subprocess, sipp and baresip against it.

* :func:`ivr_server` starts ``ivr serve`` on ``127.0.0.1:0`` with a temporary
  data folder and deployment file, reads its stderr in a thread, and returns
  once the ``listening on udp:... tcp:...`` line names the port.  Tests wait
  for log records with :meth:`IvrServer.wait_for` (a condition variable fed
  by the reader thread), never with sleeps.  The server is stopped (SIGTERM,
  then SIGKILL) when the test ends.
* :func:`sipp` runs one sipp scenario from ``scenarios/`` against a server,
  bounded by ``-m``, ``-timeout``/``-timeout_error`` and a process timeout,
  with its message trace kept in the test's temporary folder.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

HERE = Path(__file__).resolve().parent
SCENARIOS = HERE / "scenarios"
FLOWS = HERE / "flows"
REPO = HERE.parents[1]
EXAMPLES = REPO / "flows"
READY = re.compile(r"listening on udp:(?P<host>[^ ]+):(?P<port>\d+) tcp:")
START_TIMEOUT = 60.0  # first start pre-renders prompts with espeak-ng: generous on a loaded 2-core box

SIPP = shutil.which("sipp")
BARESIP = shutil.which("baresip")

needs_sipp = pytest.mark.skipif(SIPP is None, reason="sipp (Debian sip-tester) is not installed")
needs_baresip = pytest.mark.skipif(BARESIP is None, reason="baresip (Debian baresip-core) is not installed")


def free_port(span: int = 2) -> int:
    """An even port free for TCP and UDP, with the ``span - 1`` ports above it free for UDP, right now.

    For peers that cannot be told to pick their own port (RTCP is port + 1; sipp's media port
    also takes port + 2 and + 3 for video).  Probed with UDP: Linux hands out odd ports to
    TCP bind(0).
    """
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        if port % 2 or port + span > 65535:
            continue
        held: list[socket.socket] = []
        try:
            tcp = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            held.append(tcp)
            tcp.bind(("127.0.0.1", port))
            for p in range(port, port + span):
                udp = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                held.append(udp)
                udp.bind(("127.0.0.1", p))
            return port
        except OSError:
            continue
        finally:
            for sock in held:
                sock.close()
    raise RuntimeError("no free run of ports on 127.0.0.1")


@dataclass
class IvrServer:
    proc: subprocess.Popen[str]
    host: str
    port: int
    data: Path
    lines: list[str] = field(default_factory=list)
    records: list[dict[str, Any]] = field(default_factory=list)
    cond: threading.Condition = field(default_factory=threading.Condition)
    closed: bool = False

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            with self.cond:
                self.lines.append(line.rstrip("\n"))
                try:
                    record = json.loads(line)
                except ValueError:
                    record = None
                if isinstance(record, dict):
                    self.records.append(record)
                self.cond.notify_all()
        with self.cond:
            self.closed = True
            self.cond.notify_all()

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 30.0, what: str = "") -> dict[str, Any]:
        """The first log record matching ``predicate``, waiting for it if needed."""
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for record in self.records[seen:]:
                    if predicate(record):
                        return record
                seen = len(self.records)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(
                        f"no log record {what or 'matching'} within {timeout}s; server said:\n" + self.tail()
                    )
                self.cond.wait(left)

    def wait_line(self, pattern: str, timeout: float = 30.0) -> re.Match[str]:
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        seen = 0
        with self.cond:
            while True:
                for line in self.lines[seen:]:
                    m = regex.search(line)
                    if m:
                        return m
                seen = len(self.lines)
                left = deadline - time.monotonic()
                if left <= 0 or self.closed:
                    raise AssertionError(f"no line matching {pattern!r} within {timeout}s; server said:\n" + self.tail())
                self.cond.wait(left)

    def call_records(self, call_id: str | None = None) -> list[dict[str, Any]]:
        with self.cond:
            return [r for r in self.records if "call_id" in r and (call_id is None or r["call_id"] == call_id)]

    def steps(self, call_id: str | None = None) -> list[str]:
        return [r["step"] for r in self.call_records(call_id) if r.get("action") == "step"]

    def tail(self, n: int = 60) -> str:
        with self.cond:
            return "\n".join(self.lines[-n:])

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def wait_exit(self, timeout: float = 30.0) -> int:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError("ivr serve did not exit; server said:\n" + self.tail()) from None

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


def start_ivr(
    tmp: Path,
    flows: list[Path],
    *,
    config: str = "",
    sections: str = "",
    data_files: dict[str, str] | None = None,
    extra: tuple[str, ...] = (),
    env: dict[str, str] | None = None,
    tts_cache: Path | None = None,
    prompt_folders: tuple[Path, ...] = (),
) -> IvrServer:
    data = tmp / "data"
    data.mkdir(exist_ok=True)
    if tts_cache is not None:  # one espeak-ng rendering per text for the whole test session
        (data / "tts-cache").symlink_to(tts_cache, target_is_directory=True)
    for name, text in (data_files or {}).items():
        (data / name).write_text(text)
    rtp = free_port()
    folders = ", ".join(f'"{p}"' for p in (*prompt_folders, REPO / "prompts", FLOWS))
    toml = tmp / "ivr.toml"
    toml.write_text(
        '[server]\nlisten = "127.0.0.1:0"\n'
        f'rtp_ports = "{rtp}-{rtp + 400}"\n'
        f"{config}\n"
        f"[prompts]\nfolders = [{folders}]\n"
        f"{sections}\n"
    )
    cmd = [
        sys.executable, "-m", "ivr", "serve", *map(str, flows),
        "--config", str(toml), "--data", str(data), "--listen", "127.0.0.1:0", "--log-format", "json", *extra,
    ]
    proc = subprocess.Popen(
        cmd,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
        cwd=tmp,
        env={**os.environ, **(env or {})},
    )
    server = IvrServer(proc, "127.0.0.1", 0, data)
    threading.Thread(target=server._read, daemon=True).start()
    try:
        m = server.wait_line(READY.pattern, timeout=START_TIMEOUT)
    except AssertionError:
        server.stop()
        raise
    server.host, server.port = m.group("host"), int(m.group("port"))
    return server


@pytest.fixture(scope="module")
def menu_server(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[IvrServer]:
    """One server on tests/peers/flows/menu.ivr shared by a module's tests (each filters by Call-ID)."""
    server = start_ivr(tmp_path_factory.mktemp("menu"), [FLOWS / "menu.ivr"], tts_cache=tts_cache)
    yield server
    server.stop()


@pytest.fixture
def ivr_server(tmp_path: Path, tts_cache: Path) -> Iterator[Callable[..., IvrServer]]:
    """Factory: ``ivr_server("menu.ivr", config='answer_delay = "5s"')`` -> a running IvrServer.

    ``config`` adds lines to [server]; ``sections`` appends whole TOML sections; ``data_files``
    are written into the data folder before the start (e.g. switches.json).
    """
    started: list[IvrServer] = []

    def start(
        *flows: str | Path,
        config: str = "",
        sections: str = "",
        data_files: dict[str, str] | None = None,
        extra: tuple[str, ...] = (),
    ) -> IvrServer:
        paths = [f if isinstance(f, Path) else FLOWS / f for f in flows]
        server = start_ivr(
            tmp_path, paths, config=config, sections=sections, data_files=data_files, extra=extra, tts_cache=tts_cache
        )
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@dataclass
class SippResult:
    returncode: int
    stdout: str
    messages: str
    errors: str
    logs: str

    def received(self, first_line: str) -> list[str]:
        """Messages sipp received whose first line starts with ``first_line``, as text."""
        return [m for m in self._messages("received") if m.startswith(first_line)]

    def sent(self, first_line: str) -> list[str]:
        return [m for m in self._messages("sent") if m.startswith(first_line)]

    def _messages(self, direction: str) -> list[str]:
        # -trace_msg blocks: "----- ... \nUDP message received [N] bytes :\n\n<message>\n"
        out = []
        for block in re.split(r"\n-{5,}[^\n]*\n", "\n" + self.messages):
            m = re.match(rf"\s*(?:UDP|TCP) message {direction} (?:\[\d+\] bytes :|\(\d+ bytes\):)\s*\n\n?(.*)", block, re.S)
            if m:
                out.append(m.group(1).lstrip())
        return out

    @property
    def call_id(self) -> str:
        m = re.search(r"^Call-ID:\s*(\S+)", self.messages, re.M | re.I)
        assert m, "no Call-ID in sipp's message trace"
        return m.group(1)

    def check(self) -> None:
        assert self.returncode == 0, (
            f"sipp failed ({self.returncode})\n--- errors\n{self.errors[-3000:]}\n--- stdout\n{self.stdout[-2000:]}"
        )


@pytest.fixture
def sipp(tmp_path: Path) -> Callable[..., SippResult]:
    """Run one scenario: ``sipp("options.xml", server)`` -> SippResult (returncode 0 = all calls passed)."""
    runs = 0

    def run(
        scenario: str,
        server: IvrServer,
        *,
        service: str = "+41435435570",
        variables: dict[str, str] | None = None,
        timeout: float = 30.0,
        calls: int = 1,
        extra: tuple[str, ...] = (),
        files: dict[str, bytes] | None = None,
    ) -> SippResult:
        nonlocal runs
        runs += 1
        assert SIPP is not None
        out = tmp_path / f"sipp{runs}"
        out.mkdir()
        for name, data in (files or {}).items():  # e.g. a pcap the scenario plays, by relative path
            (out / name).write_bytes(data)
        cmd = [
            SIPP, server.address,
            "-sf", str(SCENARIOS / scenario),
            "-i", "127.0.0.1", "-p", str(free_port()), "-mp", str(free_port(span=4)),
            "-s", service, "-m", str(calls), "-nostdin",
            "-timeout", f"{int(timeout)}s", "-timeout_error",
            "-trace_msg", "-message_file", str(out / "messages.log"),
            "-trace_err", "-error_file", str(out / "errors.log"),
            "-trace_logs", "-log_file", str(out / "logs.log"),
            "-cp", str(free_port()),
            *extra,
        ]
        for name, value in (variables or {}).items():
            cmd += ["-set", name, value]
        proc = subprocess.run(
            cmd, cwd=out, stdin=subprocess.DEVNULL, capture_output=True, text=True, timeout=timeout + 30
        )

        def read(name: str) -> str:
            p = out / name
            return p.read_text(errors="replace") if p.exists() else ""

        return SippResult(proc.returncode, proc.stdout + proc.stderr, read("messages.log"), read("errors.log"), read("logs.log"))

    return run


# --------------------------------------------------------------------------- baresip

BARESIP_CONFIG = """\
poll_method\t\tepoll
sip_listen\t\t127.0.0.1:{sip_port}
sip_trans_def\t\tudp
module_path\t\t/usr/lib/baresip/modules
module\t\t\tg711.so
module\t\t\taufile.so
module\t\t\taubridge.so
module\t\t\tsndfile.so
module\t\t\tctrl_tcp.so
module_app\t\tmenu.so
module_app\t\taccount.so
audio_source\t\taufile,{mic}
audio_player\t\taubridge,nowhere
audio_alert\t\taubridge,nowhere
ausrc_srate\t\t8000
auplay_srate\t\t8000
ausrc_channels\t\t1
auplay_channels\t\t1
rtp_ports\t\t{rtp_low}-{rtp_high}
snd_path\t\t{recordings}
ctrl_tcp_listen\t\t127.0.0.1:{ctrl_port}
"""


class Baresip:
    """A baresip softphone driven over ctrl_tcp (netstring JSON), recording what it hears.

    Its microphone is ``mic`` (a WAV played by the aufile module); the sndfile module writes
    what it hears to ``recordings/dump-*-dec.wav``.  Events (CALL_ESTABLISHED, CALL_CLOSED...)
    are read from the control connection, so tests wait for them instead of sleeping.
    """

    def __init__(self, folder: Path, mic: Path, account: str = "", modules: tuple[str, ...] = (),
                 contacts: str = "") -> None:
        assert BARESIP is not None
        self.folder = folder
        self.recordings = folder / "recordings"
        self.recordings.mkdir(parents=True)
        self.ctrl_port = free_port()
        rtp = free_port()
        (folder / "config").write_text(
            BARESIP_CONFIG.format(
                sip_port=free_port(), mic=mic, rtp_low=rtp, rtp_high=rtp + 20,
                recordings=self.recordings, ctrl_port=self.ctrl_port,
            )
            + "".join(f"module_app\t\t{m}\n" for m in modules)  # e.g. mwi.so (message waiting)
        )
        # ``account``: an accounts line of a phone that registers (default: one that never does).
        (folder / "accounts").write_text((account or "<sip:tester@127.0.0.1>;regint=0;audio_codecs=PCMU,PCMA") + "\n")
        if contacts:  # the address book (contact.so), e.g. buddies with ;presence=p2p
            (folder / "contacts").write_text(contacts + "\n")
        self.log = open(folder / "baresip.log", "w")  # noqa: SIM115 -- closed in stop()
        self.proc = subprocess.Popen(
            [BARESIP, "-f", str(folder)], stdin=subprocess.DEVNULL, stdout=self.log, stderr=subprocess.STDOUT
        )
        self.events: list[dict[str, Any]] = []
        self.responses: list[dict[str, Any]] = []
        self._buffer = b""
        self.sock = self._connect()

    def _connect(self, timeout: float = 20.0) -> socket.socket:
        deadline = time.monotonic() + timeout
        while True:
            try:
                return socket.create_connection(("127.0.0.1", self.ctrl_port), timeout=1)
            except OSError:
                if time.monotonic() > deadline or self.proc.poll() is not None:
                    raise AssertionError("baresip's control port never opened:\n" + self.output()) from None
                time.sleep(0.05)  # polling a port that is not open yet: nothing to wait on

    def command(self, command: str, params: str = "") -> None:
        body = json.dumps({"command": command, "params": params, "token": command}).encode()
        self.sock.sendall(str(len(body)).encode() + b":" + body + b",")

    def wait_event(self, kind: str, timeout: float = 30.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        seen = 0
        while True:
            for event in self.events[seen:]:
                if event.get("type") == kind:
                    return event
            seen = len(self.events)
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"baresip: no {kind} within {timeout}s; events: {[e.get('type') for e in self.events]}")
            self._receive(left, lambda: f"waiting for {kind}:\n" + self.output())

    def _receive(self, timeout: float, doing: Callable[[], str]) -> None:
        """Read what baresip sends within ``timeout`` and parse it (nothing, on a timeout)."""
        self.sock.settimeout(timeout)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            return
        if not chunk:
            raise AssertionError(f"baresip closed its control connection {doing()}")
        self._buffer += chunk
        self._parse()

    def _parse(self) -> None:
        while True:
            head, sep, rest = self._buffer.partition(b":")
            if not sep or not head.isdigit() or len(rest) < int(head) + 1:
                return
            size = int(head)
            payload, self._buffer = rest[:size], rest[size + 1 :]
            try:
                message = json.loads(payload)
            except ValueError:
                continue
            if message.get("event"):
                self.events.append(message)
            elif message.get("response"):
                self.responses.append(message)

    def ask(self, command: str, timeout: float = 10.0) -> str:
        """Run a command and return the text baresip answers (its ctrl_tcp response)."""
        self.responses.clear()
        self.command(command)
        deadline = time.monotonic() + timeout
        while not self.responses:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"baresip: no answer to {command!r} within {timeout}s")
            self._receive(left, lambda: f"answering {command!r}")
        return str(self.responses.pop(0).get("data", ""))

    def heard(self) -> Path:
        """The WAV of what baresip heard in its (last) call."""
        files = sorted(self.recordings.glob("dump-*-dec.wav"))
        assert files, "baresip recorded nothing:\n" + self.output()
        return files[-1]

    def output(self) -> str:
        self.log.flush()
        return (self.folder / "baresip.log").read_text(errors="replace")[-4000:]

    def stop(self, *, at_once: bool = False) -> None:
        """Quit (un-REGISTER first); ``at_once``: end the process instead, where quitting would wait
        10 s for the answer to its un-REGISTER that a registrar gone or blocking it never gives."""
        if self.proc.poll() is None and not at_once:
            try:
                self.command("quit")
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                pass
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.sock.close()
        self.log.close()


@pytest.fixture
def baresip(tmp_path: Path) -> Iterator[Callable[..., Baresip]]:
    """Factory: ``baresip(mic_wav, account="")`` -> a running Baresip phone; stopped after the test."""
    phones: list[Baresip] = []

    def start(mic: Path, account: str = "", modules: tuple[str, ...] = (), contacts: str = "") -> Baresip:
        phone = Baresip(tmp_path / f"baresip{len(phones)}", mic, account, modules, contacts)
        phones.append(phone)
        return phone

    yield start
    for phone in phones:
        phone.stop()
