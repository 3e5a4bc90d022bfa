"""Density benchmark: sipp places N concurrent calls into ``ivr serve`` and we measure what callers hear.

Each call (tests/peers/scenarios/load_call.xml) hears the menu prompt, presses 1 (RFC 4733 events
from sipp's bundled capture), hears a second prompt and hold music, and hangs up after 16 s.
Calls are placed at ``--rate`` per second.  For each step (default 50, 100, 200 calls) it prints:

* calls: placed / succeeded (sipp) / key recognised by the flow (ivr's log) / peak concurrent;
* setup rate: calls answered per second (ivr's log);
* CPU of the ivr process (from /proc/PID/stat) per call, while all calls were up: % of a core,
  the same as microseconds per call per 20 ms tick (bench/media_clock.py's unit), and the user
  space share of it (the rest is the kernel's: sending RTP, on loopback also delivering it);
* RTP as the callers received it, from a loopback capture of ivr's RTP ports (dumpcap) read by
  ``tshark -z rtp,streams``: packets lost, and over streams the p99 and max of each stream's max
  inter-packet delta and max jitter.

The pass bar (/work/shared/PEERS.md): every call succeeds, no RTP packet lost, p99 of max jitter
<= 5 ms, p99 of max delta <= 40 ms.  Bounded: sipp -m N with -timeout, every wait has a limit.
sipp is pinned to core 0 and ivr to core 1 when the machine has two cores or more.

    python bench/load_sipp.py [--steps 50,100,200] [--rate 20] [--profile FILE]

``--hold SECONDS`` keeps every call SECONDS after its key instead of 10 s and measures the CPU in
the steady state (every call on hold music, 4 s after the last key, for 5 s): the figure to compare
with bench/media_clock.py's ``send`` mode.  ``--profile FILE`` samples ivr with py-spy (``pip install py-spy``; not a project dependency)
over the same 3 s window, without pausing it, into FILE as collapsed stacks.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SCENARIO = REPO / "tests" / "peers" / "scenarios" / "load_call.xml"
READY = re.compile(r"listening on udp:(?P<host>[^ ]+):(?P<port>\d+) tcp:")
CLK_TCK = os.sysconf("SC_CLK_TCK")

FLOW = """\
# Density benchmark flow: a menu prompt, key 1, a second prompt, then hold music.
hold music "moh/"
number default -> welcome

menu welcome:
    ask "Thank you for calling the density benchmark. Please press one to continue."
    wait 20s, retry 1 times
    1 -> chosen
    exhausted -> hangup

chosen:
    say "You pressed one. Please hold the line."
    hold for 60s
    hangup
"""


@dataclass
class Step:
    calls: int
    succeeded: int = 0
    failed: int = 0
    keys: int = 0
    peak: int = 0
    setup_rate: float = 0.0
    cpu_per_call: float = 0.0  # % of one core per call, while all calls were up
    cpu_total: float = 0.0  # % of one core, while all calls were up
    user_share: float = 0.0  # the part of cpu_total in user space (the rest is the kernel's)
    clock_late_ms: float = 0.0  # worst lateness of ivr's media clock tick
    clock_skipped: int = 0  # ticks ivr's media clock skipped: its loop (or the process) stalled
    streams: int = 0
    lost: int = 0
    delta_p99: float = 0.0
    delta_max: float = 0.0
    jitter_p99: float = 0.0
    jitter_max: float = 0.0
    notes: list[str] = field(default_factory=list)

    @property
    def passed(self) -> bool:
        # ``streams`` is printed, not judged: tshark's heuristic occasionally splits or misses
        # a stream; a missing call shows in ``ok`` and ``keys`` anyway.
        return self.succeeded == self.calls and self.lost == 0 and self.jitter_p99 <= 5.0 and self.delta_p99 <= 40.0


def free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cpu_seconds(pid: int) -> float:
    return sum(cpu_times(pid))


def cpu_times(pid: int) -> tuple[float, float]:
    """User and kernel CPU seconds of ``pid`` (utime, stime of /proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) / CLK_TCK, int(fields[12]) / CLK_TCK


HOLD = 0.0  # --hold: seconds each call stays after its key (0: the scenario's 10 s)
STEADY_AFTER_KEY = 4.0  # s after the last key: the second prompt is over, everyone hears hold music
STEADY_WINDOW = 5.0


def scenario(folder: Path) -> Path:
    """The call scenario; with --hold, a copy whose pause after the key lasts HOLD seconds."""
    if not HOLD:
        return SCENARIO
    text = SCENARIO.read_text(encoding="iso-8859-1")
    held = text.replace('<pause milliseconds="10000"/>', f'<pause milliseconds="{int(HOLD * 1000)}"/>')
    if held == text:
        raise SystemExit(f"{SCENARIO} has no 10 s pause after the key to lengthen")
    path = folder / "held_call.xml"
    path.write_text(held, encoding="iso-8859-1")
    return path


PIN = True  # --no-pin: let the scheduler place sipp and ivr (better on a machine others use too)


def pin(core: int) -> None:
    if PIN and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {core})


class Server:
    """``ivr serve`` on the bench flow.

    Its log goes to a file, not a pipe: a pipe whose reader falls behind would block the
    server's writes and show up as RTP stalls that are the benchmark's own fault.
    """

    def __init__(self, folder: Path, rtp: tuple[int, int], flow_text: str = FLOW, sections: str = "") -> None:
        flow = folder / "bench.ivr"
        flow.write_text(flow_text)
        (folder / "ivr.toml").write_text(
            f'[server]\nlisten = "127.0.0.1:0"\nrtp_ports = "{rtp[0]}-{rtp[1]}"\nmedia_timeout = "60s"\n'
            f'[prompts]\nfolders = ["{REPO / "prompts"}"]\n{sections}'
        )
        self.log_path = folder / "ivr.log"
        self.records: list[dict] = []
        self._offset = 0
        self._partial = ""
        self.keep = os.environ.get("LOAD_SIPP_KEEP")  # a folder to copy the server log to, for digging
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "ivr", "serve", str(flow), "--config", str(folder / "ivr.toml"),
                 "--data", str(folder / "data"), "--listen", "127.0.0.1:0"],
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=log, text=True,
                preexec_fn=lambda: pin(1),
            )
        self.port = 0
        deadline = time.monotonic() + 120
        while not self.port:
            self.poll()
            if time.monotonic() > deadline or self.proc.poll() is not None:
                self.stop()
                raise SystemExit("ivr serve did not become ready:\n" + self.log_path.read_text()[-3000:])
            time.sleep(0.1)  # polling the log file for the ready line

    def poll(self) -> None:
        """Read what the server logged since the last poll."""
        with open(self.log_path) as log:
            log.seek(self._offset)
            chunk = log.read()
            self._offset = log.tell()
        lines = (self._partial + chunk).split("\n")
        self._partial = lines.pop()
        for line in lines:
            m = READY.search(line)
            if m:
                self.port = int(m.group("port"))
            try:
                record = json.loads(line)
            except ValueError:
                continue
            if isinstance(record, dict):
                self.records.append(record)

    def count(self, predicate) -> int:  # type: ignore[no-untyped-def]
        self.poll()
        return sum(1 for r in self.records if predicate(r))

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(30)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.poll()
        if self.keep:
            shutil.copy(self.log_path, Path(self.keep) / f"ivr-{len(self.records)}.log")


def run_step(calls: int, rate: float, folder: Path) -> Step:
    step = Step(calls)
    base = random.randrange(33000, 50000, 2)  # ivr's RTP ports; the capture keeps only these sources
    rtp = (base, base + 4 * calls + 100)
    server = Server(folder, rtp)
    media_port = free_udp_port()
    capture = folder / "rtp.pcapng"
    dumpcap = subprocess.Popen(
        ["dumpcap", "-q", "-i", "lo", "-f", f"udp src portrange {rtp[0]}-{rtp[1]}", "-w", str(capture)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # dumpcap has no ready signal on stdout; give it a moment to open the interface
    try:
        sipp = subprocess.Popen(
            ["sipp", f"127.0.0.1:{server.port}", "-sf", str(scenario(folder)), "-i", "127.0.0.1",
             "-p", str(free_udp_port()), "-mp", str(media_port), "-s", "+41435435570",
             "-r", str(rate), "-l", str(calls), "-m", str(calls), "-nostdin",
             "-timeout", f"{int(calls / rate + HOLD) + 60}s", "-timeout_error", "-cp", str(free_udp_port()),
             "-trace_err", "-error_file", str(folder / "errors.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder, preexec_fn=lambda: pin(0),
        )
        deadline = time.monotonic() + calls / rate + 60
        cpu = measure_cpu_steady(server, calls, deadline) if HOLD else measure_cpu_while_all_up(server, calls, deadline)
        output, _ = sipp.communicate(timeout=calls / rate + HOLD + 120)
    finally:
        time.sleep(0.5)
        dumpcap.send_signal(signal.SIGINT)
        dumpcap.wait(30)
        server.stop()
    step.succeeded = int(_sipp_counter(output, "Successful call"))
    step.failed = int(_sipp_counter(output, "Failed call"))
    if step.succeeded < calls:
        errors = folder / "errors.log"
        detail = errors.read_text(errors="replace") if errors.exists() else output
        print(f"sipp: {step.failed} call(s) failed:\n{detail[-1500:]}", file=sys.stderr)
    step.keys = server.count(_keyed)
    step.peak, step.setup_rate = concurrency(server.records)
    stopped = [r for r in server.records if r.get("event") == "stopped"]
    step.clock_late_ms = float(stopped[-1].get("clock_max_lateness_ms", 0.0)) if stopped else 0.0
    step.clock_skipped = int(stopped[-1].get("clock_late_ticks", 0)) if stopped else 0
    if cpu is not None:
        step.cpu_total = cpu[0] * 100
        step.cpu_per_call = cpu[0] * 100 / calls
        step.user_share = cpu[1] / cpu[0] if cpu[0] else 0.0
    else:
        step.notes.append("never had all calls up at once")
    rtp_streams(capture, rtp, step)
    return step


def measure_cpu_while_all_up(server: Server, calls: int, deadline: float) -> tuple[float, float] | None:
    """Cores used by ivr (all, user) over a window in which every call was answered and none had ended."""
    answered = lambda r: r.get("action") == "answer"  # noqa: E731
    ended = lambda r: r.get("event") == "ended"  # noqa: E731
    while server.count(answered) < calls:
        if time.monotonic() > deadline or server.count(ended) > 0:
            return None
        time.sleep(0.05)  # polling the log the reader thread fills
    if server.count(ended):
        return None
    cpu = cpu_window(server.proc.pid, 3.0)
    return None if server.count(ended) else cpu


def _keyed(record: dict) -> bool:
    """The flow's record of a call's key 1 (one per call; the media's own key records have no "via")."""
    return record.get("event") == "key" and record.get("digit") == "1" and "via" in record


def measure_cpu_steady(server: Server, calls: int, deadline: float) -> tuple[float, float] | None:
    """Cores used by ivr (all, user) while every call is on hold music (--hold)."""
    ended = lambda r: r.get("event") == "ended"  # noqa: E731
    while server.count(_keyed) < calls:
        if time.monotonic() > deadline + 10 or server.count(ended) > 0:
            return None
        time.sleep(0.1)  # polling the log file
    time.sleep(STEADY_AFTER_KEY)
    cpu = cpu_window(server.proc.pid, STEADY_WINDOW)
    return None if server.count(ended) else cpu


def cpu_window(pid: int, seconds: float) -> tuple[float, float]:
    """Cores used by ``pid`` over the next ``seconds``, all and user space (py-spy alongside if asked)."""
    t0, (u0, s0) = time.monotonic(), cpu_times(pid)
    spy = _profiler(pid, seconds)
    time.sleep(seconds)
    if spy is not None:
        spy.wait(30)
    (u1, s1), wall = cpu_times(pid), time.monotonic() - t0
    return (u1 - u0 + s1 - s0) / wall, (u1 - u0) / wall


PROFILE: Path | None = None  # --profile: py-spy's collapsed stacks of ivr over the CPU window


def _profiler(pid: int, seconds: float) -> subprocess.Popen[bytes] | None:
    """py-spy sampling ivr over the CPU window, without pausing it (its own CPU is not ivr's)."""
    if PROFILE is None:
        return None
    return subprocess.Popen(
        [_py_spy(), "record", "--nonblocking", "-r", "200", "-d", str(round(seconds)), "-f", "raw",
         "-o", str(PROFILE), "-p", str(pid)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )


def _py_spy() -> str:
    """py-spy on PATH, or next to this Python (a venv not activated)."""
    return shutil.which("py-spy") or str(Path(sys.executable).parent / "py-spy")


def concurrency(records: list[dict]) -> tuple[int, float]:
    events: list[tuple[float, int]] = []
    answers: list[float] = []
    for r in records:
        if "call_id" not in r:
            continue
        ts = time.mktime(time.strptime(r["ts"][:19], "%Y-%m-%dT%H:%M:%S")) + float(r["ts"][19:-1] or 0)
        if r.get("action") == "answer":
            events.append((ts, 1))
            answers.append(ts)
        elif r.get("event") == "ended":
            events.append((ts, -1))
    peak = level = 0
    for _, delta in sorted(events):
        level += delta
        peak = max(peak, level)
    rate = (len(answers) - 1) / (max(answers) - min(answers)) if len(answers) > 1 and max(answers) > min(answers) else 0.0
    return peak, rate


def rtp_streams(capture: Path, rtp: tuple[int, int], step: Step) -> None:
    out = subprocess.run(
        ["tshark", "-r", str(capture), "-q", "-z", "rtp,streams", "-o", "rtp.heuristic_rtp:TRUE"],
        capture_output=True, text=True, timeout=600,
    ).stdout
    deltas: list[float] = []
    jitters: list[float] = []
    for line in out.splitlines():
        # Start time, End time, Src IP, Src port, Dst IP, Dst port, SSRC, Payload, Pkts, Lost (pct), Min/Mean/Max delta, Min/Mean/Max jitter
        parts = line.split()
        if len(parts) < 14 or not parts[3].isdigit() or not rtp[0] <= int(parts[3]) <= rtp[1]:
            continue
        lost_m = re.search(r"\s(-?\d+)\s+\((-?[\d.]+)%\)", line)
        numbers = re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.%])", line.split(")")[-1])
        if lost_m is None or len(numbers) < 6:
            continue
        step.lost += max(0, int(lost_m.group(1)))
        max_delta, max_jitter = float(numbers[2]), float(numbers[5])
        deltas.append(max_delta)
        jitters.append(max_jitter)
    step.streams = len(deltas)
    if deltas:
        step.delta_p99, step.delta_max = percentile(deltas, 99), max(deltas)
        step.jitter_p99, step.jitter_max = percentile(jitters, 99), max(jitters)


def percentile(values: list[float], pct: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, int(round(pct / 100 * len(ordered) + 0.5)) - 1))
    return ordered[index]


def _sipp_counter(output: str, name: str) -> float:
    """The cumulative column of the last statistics screen sipp printed."""
    values = re.findall(rf"{name}\s*\|\s*\d+\s*\|\s*(\d+)", output)
    return float(values[-1]) if values else 0.0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="50,100,200", help="concurrent calls per step")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument("--no-pin", action="store_true", help="do not pin sipp to core 0 and ivr to core 1")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds each call stays after its key; CPU measured on hold")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of ivr while all calls are up (needs py-spy)")
    args = parser.parse_args()
    global PIN, PROFILE, HOLD
    PIN = not args.no_pin
    PROFILE = args.profile
    HOLD = args.hold
    if HOLD and HOLD < STEADY_AFTER_KEY + STEADY_WINDOW + 5:
        parser.error(f"--hold must be at least {STEADY_AFTER_KEY + STEADY_WINDOW + 5:g} s (the steady window)")
    for tool in ("sipp", "dumpcap", "tshark") + ((_py_spy(),) if PROFILE else ()):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    print("calls  ok  keys  peak  setup/s  cpu%  cpu%/call  us/call/tick  user%  streams  lost  delta p99/max ms  jitter p99/max ms  tick late ms/skipped  pass")
    failed = False
    for calls in (int(s) for s in args.steps.split(",")):
        with tempfile.TemporaryDirectory(prefix="ivr-load-") as tmp:
            step = run_step(calls, args.rate, Path(tmp))
        failed |= step.succeeded != step.calls
        print(
            f"{step.calls:5d} {step.succeeded:4d} {step.keys:5d} {step.peak:5d} {step.setup_rate:8.1f} "
            f"{step.cpu_total:5.1f} {step.cpu_per_call:10.3f} {step.cpu_per_call / 100 * 20000:13.1f} "
            f"{step.user_share * 100:6.0f} {step.streams:8d} {step.lost:5d} "
            f"{step.delta_p99:8.1f}/{step.delta_max:<8.1f} {step.jitter_p99:8.2f}/{step.jitter_max:<8.2f} "
            f"{step.clock_late_ms:12.1f}/{step.clock_skipped:<7d}  {'yes' if step.passed else 'no'} {' '.join(step.notes)}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
