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

    python bench/load_sipp.py [--steps 50,100,200] [--rate 20] [--profile FILE] [--duplex [--speech]]
    python bench/load_sipp.py --setup-rate 100 [--seconds 10]
    python bench/load_sipp.py --flood 400 [--flood-calls 8000] [--calls 20] [--rate 2] [--up 100]

``--duplex``: callers that talk.  Every caller streams speech (rendered by ivr's own TTS and
G.711 encoder into raw PCMU) in a loop for the whole call with sipp's ``rtp_stream``, offering
PCMU only, and presses 1 from the same stream's port; the table then has both directions:
what ivr sent (the capture, as above) and what the callers sent and ivr received (capture
against ivr's own count of received packets in its ``ended`` records).

``--duplex --speech``: the same callers, and every menu of the flow also listens for speech the
whole call (``speech ->`` with no phrases: the endpointer alone decides, as a menu that takes a
spoken name does before its recogniser), so every frame is decoded and fed to the endpointer;
the utterances it ended are counted.

``--setup-rate R``: call set-up cost.  sipp's ``uac`` places 1 s calls (``-d 1000``) at R per
second for ``--seconds`` (10 s worth) with ``-trace_rtt`` and ``-trace_stat``; printed: calls
ok, INVITE-to-200 p50/p99/max (sipp's response times), retransmissions, the CPU ivr used over
the run, and its loop stalls.

``--max-lag D`` sets ivr's ``[overload] max_lag`` (``0``: never shed new calls while the loop
lags, to measure set-up cost alone on a machine others load too).

``--flood R``: overload.  sipp bound to 127.0.0.2 floods 1 s calls at R per second
(``--flood-calls`` in all) while sipp bound to 127.0.0.3 places ``--calls`` ordinary calls at
``--rate``; ivr runs with its default ``[overload]`` settings.  Before the flood, sipp bound to
127.0.0.4 sets up ``--up`` calls (the density scenario, key 1, then on hold music until the flood
is over), whose RTP from ivr is captured and judged by the density steps' bar: the calls already
up must keep their quality.  Printed: the ordinary calls' success and INVITE-to-200 p50/p99, the
flood's calls ok / failed (503 or dropped), ivr's ``refused`` log records (count and lines), its
peak RSS and loop stalls, and the calls up: ok, streams, lost, max delta and jitter, pass.

Every mode also prints the floor: the CPU one loopback ``sendto`` of an RTP-sized datagram
costs this process (user and kernel), measured the same way (``/proc``), so CPU per call per
tick reads as a ratio to what the kernel alone must spend.

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
import threading
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

# --speech: every menu also listens for speech all along (a "speech ->" option with no phrases:
# the endpointer alone decides, as for a menu whose caller may just say a name), so every frame a
# caller sends is decoded and fed to the speech endpointer for the whole call.
SPEECH_FLOW = """\
# Density benchmark flow, callers that talk: every menu listens for speech all along.
number default -> welcome

menu welcome:
    ask "Thank you for calling the density benchmark. Please press one to continue."
    wait 20s, retry 1 times
    1 -> chosen
    speech -> welcome
    exhausted -> hangup

menu chosen:
    ask "You pressed one. Please hold the line."
    wait 60s, retry 10 times
    speech -> chosen
    0 -> hangup
    exhausted -> hangup
"""
SPEECH = False  # --speech


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
    stalls: int = 0  # loop_stall records of ivr's watchdog
    stall_max_ms: int = 0
    # --duplex: what the callers sent (capture) and what ivr counted as received (its ended records)
    rx_streams: int = 0
    rx_packets: int = 0
    rx_lost: int = 0
    ivr_received: int = 0
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


def sipp_calls(target: str, scenario: Path, calls: int, rate: float, timeout: int, *extra: str,
               media_port: int | None = None, ip: str = "127.0.0.1") -> list[str]:
    """sipp placing ``calls`` calls of ``scenario`` to the service number at ``target`` (host:port)
    from ``ip``, ``rate`` new calls a second, all of them up at once at most, failing after
    ``timeout`` s."""
    return ["sipp", target, "-sf", str(scenario), "-i", ip,
            "-p", str(free_udp_port()), "-mp", str(media_port or free_udp_port()), "-s", "+41435435570",
            "-r", str(rate), "-l", str(calls), "-m", str(calls), "-nostdin",
            "-timeout", f"{timeout}s", "-timeout_error", "-cp", str(free_udp_port()), *extra]


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
    """The call scenario; with --hold, a copy whose pause after the key lasts HOLD seconds; with --duplex,
    a caller who talks all along and presses 1 in-band (:func:`duplex_scenario`)."""
    if not HOLD and not DUPLEX:
        return SCENARIO
    text = SCENARIO.read_text(encoding="iso-8859-1")
    held = text.replace('<pause milliseconds="10000"/>', f'<pause milliseconds="{int((HOLD or 10) * 1000)}"/>')
    if HOLD and held == text:
        raise SystemExit(f"{SCENARIO} has no 10 s pause after the key to lengthen")
    if DUPLEX:
        held = duplex_scenario(held, caller_audio(folder))
    path = folder / "held_call.xml"
    path.write_text(held, encoding="iso-8859-1")
    return path


DUPLEX = False  # --duplex: callers stream speech for the whole call
CALLER_SPEECH = ("Hello, I am calling about the invoice I received last week. "
                 "Could somebody please call me back this afternoon?")
KEY_AT = 6.0  # s into the caller's stream: the in-band key 1 (the send-only scenario presses it at 6 s too)


def duplex_scenario(text: str, audio: Path) -> str:
    """The call with a PCMU-only offer from sipp's rtp_stream port, the stream looping from the ACK on,
    and no RFC 4733 key (the key is in the stream: with symmetric RTP ivr accepts one source only)."""
    offer = "m=audio [media_port] RTP/AVP 0 8 101"
    if offer not in text or "dtmf_2833_1.pcap" not in text:
        raise SystemExit(f"{SCENARIO} changed: no {offer!r} or no RFC 4733 key to replace")
    text = text.replace(offer, "m=audio [rtpstream_audio_port] RTP/AVP 0")
    text = re.sub(r"\s*a=rtpmap:8 PCMA/8000|\s*a=rtpmap:101 telephone-event/8000|\s*a=fmtp:101 0-15", "", text)
    text = text.replace('<exec play_pcap_audio="/usr/share/sip-tester/dtmf_2833_1.pcap"/>', '<log message="key"/>')
    stream = f'  <nop>\n    <action>\n      <exec rtp_stream="{audio},-1,0"/>\n    </action>\n  </nop>\n'
    return text.replace('  <pause milliseconds="6000"/>', stream + '  <pause milliseconds="6000"/>', 1)


def caller_audio(folder: Path) -> Path:
    """Raw PCMU of a caller talking, with key 1 in-band at KEY_AT s: ivr's own TTS, DTMF and G.711 encoder."""
    import numpy as np

    from ivr.media.dtmf import dtmf_tone
    from ivr.media.g711 import ulaw_encode
    from ivr.media.tts import TtsEngine

    speech = TtsEngine(folder / "tts").render(CALLER_SPEECH).pcm
    gap = np.zeros(4000, dtype=np.int16)
    before = np.concatenate([speech, gap])[: int(KEY_AT * 8000)]
    before = np.concatenate([before, np.zeros(int(KEY_AT * 8000) - len(before), dtype=np.int16)])
    pcm = np.concatenate([before, dtmf_tone("1", 150), gap, speech, gap]).astype(np.int16)
    path = folder / "caller.ulaw"
    path.write_bytes(ulaw_encode(pcm[: len(pcm) // 160 * 160]))
    return path


#: sipp places every call of the density and set-up modes from 127.0.0.1: trusted, as a proxy in
#: front would be (the per-address rate limit would refuse it); shedding on loop lag stays on.
OVERLOAD_TRUSTED = '[overload]\ntrusted = ["127.0.0.1"]\n'
MAX_LAG: str | None = None  # --max-lag: ivr's [overload] max_lag ("0" measures without shedding)

PIN = True  # --no-pin: let the scheduler place sipp and ivr (better on a machine others use too)


def pin(core: int) -> None:
    if PIN and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(0, {core})


class Server:
    """``ivr serve`` on the bench flow.

    Its log goes to a file, not a pipe: a pipe whose reader falls behind would block the
    server's writes and show up as RTP stalls that are the benchmark's own fault.
    """

    def __init__(self, folder: Path, rtp: tuple[int, int], overload: str = OVERLOAD_TRUSTED,
                 flow_text: str = FLOW, sections: str = "") -> None:
        if MAX_LAG is not None:
            overload = (overload or "[overload]\n") + f'max_lag = "{MAX_LAG}"\n'
        flow = folder / "bench.ivr"
        flow.write_text(flow_text)
        (folder / "ivr.toml").write_text(
            f'[server]\nlisten = "127.0.0.1:0"\nrtp_ports = "{rtp[0]}-{rtp[1]}"\nmedia_timeout = "60s"\n'
            f'[prompts]\nfolders = ["{REPO / "prompts"}"]\n{overload}{sections}'
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

    def stop(self, timeout: float = 30.0) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
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
    server = Server(folder, rtp, flow_text=SPEECH_FLOW if SPEECH else FLOW)
    rss_before = rss_peak_mb(server.proc.pid, "VmRSS")
    media_port = free_udp_port()
    capture = folder / "rtp.pcapng"
    direction = "" if DUPLEX else "src "  # duplex: the callers' streams to ivr's ports too
    dumpcap = subprocess.Popen(
        ["dumpcap", "-q", "-i", "lo", "-f", f"udp {direction}portrange {rtp[0]}-{rtp[1]}", "-w", str(capture)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # dumpcap has no ready signal on stdout; give it a moment to open the interface
    try:
        sipp = subprocess.Popen(
            sipp_calls(f"127.0.0.1:{server.port}", scenario(folder), calls, rate, int(calls / rate + HOLD) + 60,
                       "-trace_err", "-error_file", str(folder / "errors.log"), media_port=media_port),
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder, preexec_fn=lambda: pin(0),
        )
        deadline = time.monotonic() + calls / rate + 60
        cpu = measure_cpu_steady(server, calls, deadline) if HOLD else measure_cpu_while_all_up(server, calls, deadline)
        output, _ = sipp.communicate(timeout=calls / rate + HOLD + 120)
        time.sleep(0.5)  # the last BYEs answered, the calls ended
        rss_after = rss_peak_mb(server.proc.pid, "VmRSS")
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
    step.stalls, step.stall_max_ms = stalls(server.records)
    if any(r.get("event") == "refused" for r in server.records):
        step.notes.append(f"shed while the loop lagged: {shed(server.records)}")
    if SPEECH:
        step.notes.append(f"utterances ended by the endpointer: {server.count(lambda r: r.get('event') == 'speech')}")
    step.ivr_received = sum(int(r.get("packets_received") or 0) for r in server.records if r.get("event") == "ended")
    if cpu is not None:
        step.cpu_total = cpu[0] * 100
        step.cpu_per_call = cpu[0] * 100 / calls
        step.user_share = cpu[1] / cpu[0] if cpu[0] else 0.0
    else:
        step.notes.append("never had all calls up at once")
    rtp_streams(capture, rtp, step)
    step.notes.append(gc_note(server.records, (rss_before, rss_after)))
    return step


def shed(records: list[dict]) -> str:
    """New calls ivr refused while its loop lagged (its refused records), and how often it began shedding."""
    count = sum(int(r.get("count", 0)) for r in records if r.get("event") == "refused" and r.get("reason") == "overload")
    return f"{count} ({sum(1 for r in records if r.get('event') == 'overload')})"


def stalls(records: list[dict]) -> tuple[int, int]:
    """ivr's loop_stall records: how many, and the longest (ms)."""
    found = [int(r.get("stalled_ms", 0)) for r in records if r.get("event") == "loop_stall"]
    return len(found), max(found, default=0)


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
        if len(parts) < 14 or not parts[3].isdigit() or not parts[5].isdigit():
            continue
        lost_m = re.search(r"\s(-?\d+)\s+\((-?[\d.]+)%\)", line)
        numbers = re.findall(r"(?<![\w.])-?\d+\.\d+(?![\w.%])", line.split(")")[-1])
        if lost_m is None or len(numbers) < 6:
            continue
        if not rtp[0] <= int(parts[3]) <= rtp[1]:
            if rtp[0] <= int(parts[5]) <= rtp[1]:  # a caller's stream to ivr (--duplex)
                step.rx_streams += 1
                step.rx_packets += int(parts[8]) if parts[8].isdigit() else 0
                step.rx_lost += max(0, int(lost_m.group(1)))
            continue
        step.lost += max(0, int(lost_m.group(1)))
        max_delta, max_jitter = float(numbers[2]), float(numbers[5])
        deltas.append(max_delta)
        jitters.append(max_jitter)
    step.streams = len(deltas)
    if deltas:
        step.delta_p99, step.delta_max = percentile(deltas, 99), max(deltas)
        step.jitter_p99, step.jitter_max = percentile(jitters, 99), max(jitters)


# --------------------------------------------------------------------------- the floor

def loopback_send_cost(sends: int = 200_000) -> tuple[float, float]:
    """Microseconds of CPU one loopback sendto of an RTP-sized datagram costs: (user, kernel).

    The kernel part is the floor of any RTP sender on this machine: ivr's kernel CPU per call
    per tick divided by it says how close to that limit the server is.  A reader thread keeps
    the receiving socket drained, as the callers' sockets are; its CPU counts in too, as it
    does for a call (on loopback the receive is the same process's delivery work)."""
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    tx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dest, packet = rx.getsockname(), bytes(172)  # 12 bytes of RTP header and 160 of G.711
    reader = threading.Thread(target=_drain, args=(rx,), daemon=True)
    reader.start()
    before = os.times()
    for _ in range(sends):
        tx.sendto(packet, dest)
    tx.sendto(b"", dest)  # the end
    reader.join(30)
    after = os.times()
    rx.close()
    tx.close()
    return ((after.user - before.user) / sends * 1e6, (after.system - before.system) / sends * 1e6)


def _drain(sock: socket.socket) -> None:
    sock.settimeout(1.0)  # the end marker may be lost with a full buffer: then a second of silence ends it
    try:
        while sock.recv(2048):
            pass
    except TimeoutError:
        pass


def print_floor() -> tuple[float, float]:
    user, kernel = loopback_send_cost()
    print(f"floor: one loopback sendto of 172 bytes costs {kernel:.2f} us of kernel CPU "
          f"({user:.2f} us in Python around it), measured by this bench now")
    return user, kernel


# --------------------------------------------------------------------------- sipp runs of the set-up and flood modes

@dataclass
class SippRun:
    """One sipp process of the set-up or flood mode, and what it reported."""

    proc: subprocess.Popen[str]
    folder: Path
    output: str = ""

    def finish(self, timeout: float) -> SippRun:
        try:
            self.output, _ = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.output, _ = self.proc.communicate()
        return self

    def counter(self, name: str) -> int:
        return int(_sipp_counter(self.output, name))

    def stat(self, column: str) -> int:
        """A cumulative column of sipp's -trace_stat file (its last row)."""
        files = sorted(self.folder.glob("*_.csv"))
        if not files:
            return 0
        rows = [r.split(";") for r in files[-1].read_text(errors="replace").splitlines() if r.strip()]
        head = rows[0]
        return int(rows[-1][head.index(column)]) if column in head and len(rows) > 1 else 0

    def response_times(self) -> list[float]:
        """INVITE-to-200 of every call, ms (sipp's -trace_rtt, rtd on the 200)."""
        out: list[float] = []
        for path in self.folder.glob("*_rtt.csv"):
            for row in path.read_text(errors="replace").splitlines()[1:]:
                cols = row.split(";")
                if len(cols) >= 2:
                    try:
                        out.append(float(cols[1]))
                    except ValueError:
                        continue
        return out


def start_sipp(server: Server, folder: Path, ip: str, args: list[str], core: int) -> SippRun:
    folder.mkdir(parents=True, exist_ok=True)
    cmd = ["sipp", f"127.0.0.1:{server.port}", "-i", ip, "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
           "-cp", str(free_udp_port()), "-s", "+41435435570", "-nostdin", "-timeout_error",
           "-trace_stat", "-fd", "1", "-trace_rtt", "-rtt_freq", "1",
           "-trace_err", "-error_file", str(folder / "errors.log"), *args]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder,
                            preexec_fn=lambda: pin(core))
    return SippRun(proc, folder)


def keep(folder: Path) -> None:
    """LOAD_SIPP_KEEP=DIR: copy the run's folder (ivr's log, sipp's traces) there, for digging."""
    target = os.environ.get("LOAD_SIPP_KEEP")
    if target:
        shutil.copytree(folder, Path(target) / folder.name, dirs_exist_ok=True,
                        ignore=shutil.ignore_patterns("*.pcapng", "data"))


def rss_peak_mb(pid: int, field: str = "VmHWM") -> float:
    """The process's peak resident memory (``field="VmRSS"``: its resident memory now), MB."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1]) / 1024
    return 0.0


def gc_note(records: list[dict], rss: tuple[float, float]) -> str:
    """ivr's garbage collections (its stopped and gc_pause records) and its RSS before the calls and after them."""
    stopped = [r for r in records if r.get("event") == "stopped"]
    if not stopped or "gc_collections" not in stopped[-1]:
        return f"RSS {rss[0]:.0f} -> {rss[1]:.0f} MB"
    s = stopped[-1]
    pauses = [r for r in records if r.get("event") == "gc_pause"]
    in_stalls = [r.get("gc_ms", 0) for r in records if r.get("event") == "loop_stall" and r.get("gc_ms")]
    collections = "/".join(str(n) for n in s["gc_collections"])
    longest = "/".join(f"{ms:g}" for ms in s["gc_longest_ms"])
    return (f"gc: collections {collections} (gen 0/1/2), longest {longest} ms, {len(pauses)} over the stall threshold,"
            f" {len(in_stalls)} stalls with gc in them; objects freed {sum(s['gc_collected'])} + {s['gc_garbage']} at"
            f" the end, tracked {s['gc_tracked'][0]} -> {s['gc_tracked'][1]}; RSS {rss[0]:.0f} -> {rss[1]:.0f} MB")


def run_setup_rate(rate: float, seconds: float, folder: Path) -> int:
    """--setup-rate: 1 s calls at ``rate`` per second for ``seconds``; set-up latency, retransmissions, CPU."""
    calls = int(rate * seconds)
    base = random.randrange(33000, 50000, 2)
    server = Server(folder, (base, base + 4 * int(rate * 3) + 100))
    try:
        cpu0, t0 = cpu_times(server.proc.pid), time.monotonic()
        run = start_sipp(server, folder / "sipp", "127.0.0.1",
                         ["-sn", "uac", "-r", f"{rate:g}", "-d", "1000", "-m", str(calls), "-l", str(calls),
                          "-timeout", f"{int(seconds) + 60}s"], core=0)
        run.finish(seconds + 120)
        cpu1, wall = cpu_times(server.proc.pid), time.monotonic() - t0
    finally:
        server.stop()
    keep(folder)
    rtts = run.response_times()
    ok, failed = run.counter("Successful call"), run.counter("Failed call")
    user, kernel = cpu1[0] - cpu0[0], cpu1[1] - cpu0[1]
    count, longest = stalls(server.records)
    print("rate/s  calls    ok  failed  retrans  invite-200 p50/p99/max ms  cpu% (user/kernel)  cpu ms/call  stalls (max ms)"
          "  503s (overload periods)")
    print(f"{rate:6g} {calls:6d} {ok:5d} {failed:7d} {run.stat('Retransmissions(C)'):8d} "
          f"{_pct(rtts, 50):8.1f}/{_pct(rtts, 99):6.1f}/{max(rtts, default=0):<8.1f} "
          f"{(user + kernel) / wall * 100:7.1f} ({user / wall * 100:.0f}/{kernel / wall * 100:.0f})   "
          f"{(user + kernel) / max(ok, 1) * 1000:10.2f}  {count:6d} ({longest})  {run.stat('FailedUnexpectedMessage(C)')} "
          f"({sum(1 for r in server.records if r.get('event') == 'overload')})", flush=True)
    return 0 if ok == calls else 1


FLOOD_LOG_INTERVAL = 1.0


UP_RATE = 20.0  # --flood: the calls already up are set up at this rate before the flood


def run_flood(flood_rate: float, flood_calls: int, calls: int, rate: float, up: int, folder: Path) -> int:
    """--flood: one address floods, another places ordinary calls, while a third one's calls are up;
    ivr's default [overload] settings."""
    global HOLD
    base = random.randrange(33000, 50000, 2)
    rtp = (base, base + 4 * int(flood_rate * 2 + calls + up) + 200)
    # The default [overload] settings, but refusals logged every second, so the count is complete at the end.
    server = Server(folder, rtp, overload=f'[overload]\nlog_interval = "{FLOOD_LOG_INTERVAL:g}s"\n')
    flood_seconds = flood_calls / flood_rate
    HOLD = flood_seconds + 15  # the calls up stay on hold music until after the flood
    held = Step(up)
    capture = folder / "up.pcapng"
    dumpcap = subprocess.Popen(  # what ivr sends the calls that are up (only they are at 127.0.0.4)
        ["dumpcap", "-q", "-i", "lo", "-f", f"udp and dst host 127.0.0.4 and src portrange {rtp[0]}-{rtp[1]}",
         "-w", str(capture)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # dumpcap has no ready signal on stdout; give it a moment to open the interface
    up_sipp: subprocess.Popen[str] | None = None
    try:
        if up:
            up_sipp = subprocess.Popen(
                sipp_calls(f"127.0.0.1:{server.port}", scenario(folder), up, UP_RATE,
                           int(up / UP_RATE + HOLD) + 60, "-trace_err", "-error_file", str(folder / "up-errors.log"), "-mi", "127.0.0.4",
                           ip="127.0.0.4"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder, preexec_fn=lambda: pin(0),
            )
            deadline = time.monotonic() + up / UP_RATE + 30
            while server.count(_keyed) < up and time.monotonic() < deadline and up_sipp.poll() is None:
                time.sleep(0.1)  # polling the log the server writes
        flood = start_sipp(server, folder / "flood", "127.0.0.2",
                           ["-sn", "uac", "-r", f"{flood_rate:g}", "-d", "1000", "-m", str(flood_calls),
                            "-l", str(flood_calls), "-timeout", f"{int(flood_seconds) + 60}s"], core=0)
        time.sleep(1.0)  # the flood is on before the first ordinary call (a bench pacing, not a synchronisation)
        ordinary = start_sipp(server, folder / "ordinary", "127.0.0.3",
                              ["-sn", "uac", "-r", f"{rate:g}", "-d", "1000", "-m", str(calls),
                               "-timeout", f"{int(calls / rate) + 60}s"], core=0)
        ordinary.finish(calls / rate + 120)
        flood.finish(flood_seconds + 120)
        rss = rss_peak_mb(server.proc.pid)
        if up_sipp is not None:
            output, _ = up_sipp.communicate(timeout=HOLD + 120)
            held.succeeded = int(_sipp_counter(output, "Successful call"))
        time.sleep(FLOOD_LOG_INTERVAL + 0.5)  # the last refusals are logged at the end of their interval
    finally:
        if up_sipp is not None and up_sipp.poll() is None:
            up_sipp.kill()
        dumpcap.send_signal(signal.SIGINT)
        dumpcap.wait(30)
        server.stop()
    keep(folder)
    rtts = ordinary.response_times()
    ok = ordinary.counter("Successful call")
    refused = [r for r in server.records if r.get("event") == "refused"]
    count, longest = stalls(server.records)
    print("ordinary ok  invite-200 p50/p99/max ms | flood calls  ok  failed (503 or dropped) | refused (log lines)  overload  rss MB  stalls (max ms)")
    print(f"{ok:5d}/{calls:<5d} {_pct(rtts, 50):8.1f}/{_pct(rtts, 99):6.1f}/{max(rtts, default=0):<8.1f} | "
          f"{flood_calls:11d} {flood.counter('Successful call'):4d} {flood.counter('Failed call'):7d}                | "
          f"{sum(r.get('count', 0) for r in refused):8d} ({len(refused)})"
          f"  {sum(1 for r in server.records if r.get('event') == 'overload'):8d}  {rss:6.0f}  {count:6d} ({longest})",
          flush=True)
    if up:
        rtp_streams(capture, rtp, held)
        print("calls up during the flood: ok  streams  lost  delta p99/max ms  jitter p99/max ms  pass")
        print(f"{held.succeeded:30d}/{up:<4d} {held.streams:7d} {held.lost:5d}  {held.delta_p99:8.1f}/{held.delta_max:<8.1f}"
              f"  {held.jitter_p99:8.2f}/{held.jitter_max:<8.2f}  {'yes' if held.passed and held.streams else 'no'}",
              flush=True)
    return 0 if ok == calls and (not up or (held.passed and held.streams)) else 1


def _pct(values: list[float], pct: float) -> float:
    return percentile(values, pct) if values else 0.0


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
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second (--flood: the ordinary calls')")
    parser.add_argument("--no-pin", action="store_true", help="do not pin sipp to core 0 and ivr to core 1")
    parser.add_argument("--hold", type=float, default=0.0, help="seconds each call stays after its key; CPU measured on hold")
    parser.add_argument("--profile", type=Path, help="py-spy collapsed stacks of ivr while all calls are up (needs py-spy)")
    parser.add_argument("--duplex", action="store_true", help="callers stream speech all along and press 1 in-band")
    parser.add_argument("--speech", action="store_true",
                        help="with --duplex: every menu listens for speech all along (the endpointer hears every frame)")
    parser.add_argument("--setup-rate", type=float, help="set-up mode: 1 s calls at this many per second")
    parser.add_argument("--seconds", type=float, default=10.0, help="set-up mode: seconds worth of calls")
    parser.add_argument("--flood", type=float, help="flood mode: INVITEs per second from 127.0.0.2")
    parser.add_argument("--flood-calls", type=int, default=8000, help="flood mode: calls the flood places in all")
    parser.add_argument("--calls", type=int, default=20, help="flood mode: ordinary calls from 127.0.0.3")
    parser.add_argument("--up", type=int, default=100,
                        help="flood mode: calls from 127.0.0.4 up (on hold music) during the flood, judged by the bar")
    parser.add_argument("--max-lag", help="ivr's [overload] max_lag, e.g. 0 (never shed) or 50ms (default: ivr's)")
    args = parser.parse_args()
    global PIN, PROFILE, HOLD, DUPLEX, MAX_LAG, SPEECH
    MAX_LAG = args.max_lag
    PIN = not args.no_pin
    PROFILE = args.profile
    HOLD = args.hold
    DUPLEX = args.duplex or args.speech
    SPEECH = args.speech
    if HOLD and HOLD < STEADY_AFTER_KEY + STEADY_WINDOW + 5:
        parser.error(f"--hold must be at least {STEADY_AFTER_KEY + STEADY_WINDOW + 5:g} s (the steady window)")
    for tool in ("sipp", "dumpcap", "tshark") + ((_py_spy(),) if PROFILE else ()):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    _, floor = print_floor()
    if args.setup_rate:
        with tempfile.TemporaryDirectory(prefix="ivr-setup-") as tmp:
            return run_setup_rate(args.setup_rate, args.seconds, Path(tmp))
    if args.flood:
        with tempfile.TemporaryDirectory(prefix="ivr-flood-") as tmp:
            return run_flood(args.flood, args.flood_calls, args.calls, args.rate, args.up, Path(tmp))
    return run_steps(args.steps, args.rate, floor)


def run_steps(steps: str, rate: float, floor: float) -> int:
    print("calls  ok  keys  peak  setup/s  cpu%  cpu%/call  us/call/tick  user%  x floor  streams  lost  delta p99/max ms"
          "  jitter p99/max ms  tick late ms/skipped  stalls (max ms)  pass"
          + ("  | rx streams  pkts  lost  ivr received" if DUPLEX else ""))
    failed = False
    for calls in (int(s) for s in steps.split(",")):
        with tempfile.TemporaryDirectory(prefix="ivr-load-") as tmp:
            step = run_step(calls, rate, Path(tmp))
        failed |= step.succeeded != step.calls
        tick_us = step.cpu_per_call / 100 * 20000
        kernel_tick_us = tick_us * (1 - step.user_share)
        duplex = (f"  | {step.rx_streams:10d} {step.rx_packets:6d} {step.rx_lost:5d} {step.ivr_received:13d}"
                  if DUPLEX else "")
        print(
            f"{step.calls:5d} {step.succeeded:4d} {step.keys:5d} {step.peak:5d} {step.setup_rate:8.1f} "
            f"{step.cpu_total:5.1f} {step.cpu_per_call:10.3f} {tick_us:13.1f} "
            f"{step.user_share * 100:6.0f} {kernel_tick_us / floor if floor else 0:8.1f} {step.streams:8d} {step.lost:5d} "
            f"{step.delta_p99:8.1f}/{step.delta_max:<8.1f} {step.jitter_p99:8.2f}/{step.jitter_max:<8.2f} "
            f"{step.clock_late_ms:12.1f}/{step.clock_skipped:<7d} {step.stalls:6d} ({step.stall_max_ms})"
            f"  {'yes' if step.passed else 'no'}{duplex} {' '.join(step.notes)}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
