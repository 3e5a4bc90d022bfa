"""Reload benchmark: SIGHUP ``ivr serve`` while calls are up, and see what the loop and the media clock felt.

Serves a generated flow of ``--lines`` lines (bench/compile_flow.py's generator), places
``--calls`` sipp calls that stay up (tests/peers/scenarios/held_call.xml), sends ``--reloads``
SIGHUPs one after the other, then stops the server and prints:

* each reload's duration, SIGHUP to the ``reloaded`` record (load, check, pre-render, switch);
* the ``loop_stall`` records of the whole run (the watchdog's 50 ms threshold) and where the
  loop was;
* the media clock's late ticks and worst lateness (from the ``stopped`` record).

Run it with ``--reloads 0`` for the same figures without reloads.  Bounded: sipp -m N with
-timeout, every wait has a limit.

    python bench/serve_reload.py [--lines 2000] [--calls 20] [--reloads 5]
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
HELD_CALL = ROOT / "tests" / "peers" / "scenarios" / "held_call.xml"


# The callers' number leads to a menu that re-prompts for as long as they stay (the generated
# menus end calls on their own: voicemail out of hours, transfers to nobody).
HOLD_LINE = """
menu hold_line:
    ask "Please hold."
    wait 5s, retry 60 times
    1 -> hangup
    exhausted -> hangup
"""


def generated_flow(lines: int) -> str:
    """bench/compile_flow.py's flow, reached on another number; default callers hold."""
    spec = importlib.util.spec_from_file_location("compile_flow", ROOT / "bench" / "compile_flow.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    text = str(module.generate(lines))
    entry = "number default -> start\n"
    assert entry in text, "compile_flow.py's header changed"
    return text.replace(entry, "number default -> hold_line\nnumber +41435435599 -> start\n") + HOLD_LINE


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Server:
    """``ivr serve`` with its JSON log read by a thread; ``wait`` for a record with a deadline."""

    def __init__(self, folder: Path, flow: Path) -> None:
        rtp = free_port() // 2 * 2
        (folder / "ivr.toml").write_text(f'[server]\nrtp_ports = "{rtp}-{rtp + 400}"\n')
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ivr", "serve", str(flow), "--config", str(folder / "ivr.toml"),
             "--data", str(folder / "data"), "--listen", "127.0.0.1:0"],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, cwd=folder,
        )  # fmt: skip
        self.records: list[dict[str, Any]] = []
        self.reading = True
        self.cond = threading.Condition()
        threading.Thread(target=self._read, daemon=True).start()
        listening = self.wait(lambda r: r.get("event") == "listening", 120)
        self.address = str(listening["message"]).split("udp:")[1].split()[0]

    def _read(self) -> None:
        assert self.proc.stderr is not None
        for line in self.proc.stderr:
            try:
                record = json.loads(line)
            except ValueError:
                print(line, end="", file=sys.stderr)  # diagnostics of a flow that does not load
                continue
            with self.cond:
                self.records.append(record)
                self.cond.notify_all()
        with self.cond:
            self.reading = False
            self.cond.notify_all()

    def wait(self, predicate: Any, timeout: float) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        with self.cond:
            while True:
                for record in self.records:
                    if predicate(record):
                        return record
                left = deadline - time.monotonic()
                if left <= 0:
                    raise SystemExit(f"timed out after {timeout}s waiting in ivr serve's log")
                if self.proc.poll() is not None and not self.reading:
                    raise SystemExit(f"ivr serve exited ({self.proc.returncode}); see its stderr above")
                self.cond.wait(min(left, 1.0))

    def count(self, predicate: Any) -> int:
        with self.cond:
            return sum(1 for r in self.records if predicate(r))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lines", type=int, default=2000)
    parser.add_argument("--calls", type=int, default=20)
    parser.add_argument("--reloads", type=int, default=5)
    args = parser.parse_args()
    sipp = shutil.which("sipp")
    if sipp is None:
        print("sipp (Debian sip-tester) is not installed")
        return 1
    folder = Path(tempfile.mkdtemp(prefix="ivr-reload-"))
    flow = folder / "big.ivr"
    flow.write_text(generated_flow(args.lines))
    server = Server(folder, flow)
    hold_ms = 15000 + 2000 * args.reloads
    callers = subprocess.Popen(
        [sipp, server.address, "-sf", str(HELD_CALL), "-i", "127.0.0.1", "-p", str(free_port()),
         "-m", str(args.calls), "-l", str(args.calls), "-r", "20", "-d", str(hold_ms), "-nostdin",
         "-timeout", f"{hold_ms // 1000 + 60}s", "-s", "+41435435570"],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=folder,
    )  # fmt: skip
    try:
        server.wait(lambda r: server.count(lambda x: x.get("action") == "answer") >= args.calls, 60)
        durations = []
        for done in range(args.reloads):
            started = time.monotonic()
            server.proc.send_signal(signal.SIGHUP)
            server.wait(lambda r, n=done: server.count(lambda x: x.get("event") in ("reloaded", "reload_failed")) > n,
                        120)
            durations.append(time.monotonic() - started)
        up = server.count(lambda r: r.get("action") == "answer") - server.count(lambda r: r.get("event") == "ended")
    finally:
        server.proc.send_signal(signal.SIGTERM)  # drains: the calls end with their own BYEs
        callers.wait(hold_ms / 1000 + 90)
    stopped = server.wait(lambda r: r.get("event") == "stopped", 60)
    stalls = [r for r in server.records if r.get("event") == "loop_stall"]
    print(f"flow: {args.lines} lines; calls up during the reloads: {up} of {args.calls}")
    print("reloads (s): " + ", ".join(f"{d:.2f}" for d in durations))
    print(f"loop stalls: {len(stalls)} " + str([r["stalled_ms"] for r in stalls]))
    for record in stalls:
        print("   ", record["stalled_ms"], "ms at", (record.get("where") or ["?"])[-1][:160])
    print(f"media clock: {stopped['clock_late_ticks']} late ticks of {stopped['clock_ticks']}, "
          f"worst {stopped['clock_max_lateness_ms']} ms late")
    return 0


if __name__ == "__main__":
    sys.exit(main())
