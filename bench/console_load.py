"""What the console costs the media clock: 200 sipp calls, with and without 20 live-event clients and 50 API requests/s.

Two runs of the same load (bench/load_sipp.py's flow, scenario and server, with ``[http]`` on in
both): the first with nobody using the console, the second with ``--clients`` server-sent event
streams (``/api/v1/events``) open and ``--rate`` API requests per second (the calls now, the
journal, the switches, ``/metrics`` and the dashboard's calls table in turn, as a logged-in admin)
from the first call until the last one ends.  For each run it prints the media clock's tick
lateness p99 and maximum and its skipped ticks (the ``stopped`` record of ``ivr serve``), and the
requests made and events received, and the CPU seconds ``ivr serve`` and its console process
used meanwhile (steadier than the lateness on a machine others use).  The bar: the difference of
the medians under 1 ms p99 with no extra skipped tick.

The console is a child process of ``ivr serve`` (ivr.runtime.companion).  The bench pins
``ivr serve`` to core 1 (bench/load_sipp.py) and its console, which would inherit that, to
core 0 with sipp and this load generator, as a deployment lets the kernel put it on another core.

    python bench/console_load.py [--calls 200] [--call-rate 20] [--clients 20] [--rate 50] [--repeat 3]

The runs alternate (quiet, loaded, quiet, ...) and the verdict compares medians: on a machine
others use, one pair of runs differs by more than the console costs.

Bounded: sipp -m N with -timeout, the load stops when sipp does, every wait has a limit.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import load_sipp  # noqa: E402  (the density bench's server and scenario)

from ivr.config import load_config  # noqa: E402
from ivr.web.users import set_password  # noqa: E402

PASSWORD = "bench-console-pw"
SECTIONS = """
[http]
listen = "127.0.0.1:0"
admins = ["100"]
[[extensions]]
number = "100"
username = "100"
"""
PATHS = ("/api/v1/calls", "/api/v1/journal?limit=20", "/api/v1/switches", "/metrics", "/console/calls")


@dataclass
class Run:
    label: str
    succeeded: int = 0
    calls: int = 0
    p99_ms: float = 0.0
    max_ms: float = 0.0
    skipped: int = 0
    requests: int = 0
    errors: int = 0
    events: int = 0
    cpu: float = 0.0  # ivr serve's CPU seconds (user + system) from the first call until sipp is done
    console_cpu: float = 0.0  # the console process's, meanwhile


async def console_load(url: str, clients: int, rate: float, stop: threading.Event, run: Run) -> None:
    """``clients`` event streams and ``rate`` requests/s until ``stop`` is set."""
    async with aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True)) as session:  # an IP address host
        async with session.post(f"{url}/api/v1/login", json={"username": "100", "password": PASSWORD}) as r:
            r.raise_for_status()
        streams = [asyncio.create_task(_stream(session, url, run)) for _ in range(clients)]
        started = time.monotonic()
        while not stop.is_set():
            due = started + run.requests / rate
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            asyncio.create_task(_get(session, url + PATHS[run.requests % len(PATHS)], run))
            run.requests += 1
        for task in streams:
            task.cancel()
        await asyncio.gather(*streams, return_exceptions=True)


async def _get(session: aiohttp.ClientSession, url: str, run: Run) -> None:
    try:
        async with session.get(url, timeout=aiohttp.ClientTimeout(total=10)) as r:
            await r.read()
            run.errors += r.status != 200
    except (aiohttp.ClientError, TimeoutError):
        run.errors += 1


async def _stream(session: aiohttp.ClientSession, url: str, run: Run) -> None:
    async with session.get(f"{url}/api/v1/events", timeout=aiohttp.ClientTimeout(total=None)) as r:
        async for line in r.content:
            if line.startswith(b"data: "):
                run.events += 1


def one_run(label: str, calls: int, call_rate: float, clients: int, rate: float) -> Run:
    run = Run(label)
    with tempfile.TemporaryDirectory(prefix="ivr-console-load-") as tmp:
        folder = Path(tmp)
        (folder / "data").mkdir()
        (folder / "users.toml").write_text(f'[server]\ndata = "{folder / "data"}"\n{SECTIONS}')
        set_password(load_config(folder / "users.toml"), "100", PASSWORD)
        base = random.randrange(33000, 50000, 2)
        server = load_sipp.Server(folder, (base, base + 4 * calls + 100), sections=SECTIONS)
        url, console = _console(server)
        stop = threading.Event()
        loader = threading.Thread(target=lambda: asyncio.run(console_load(url, clients, rate, stop, run)))
        cpu_before = load_sipp.cpu_seconds(server.proc.pid)
        console_before = load_sipp.cpu_seconds(console)
        try:
            sipp = subprocess.Popen(
                load_sipp.sipp_calls(f"127.0.0.1:{server.port}", load_sipp.SCENARIO, calls, call_rate,
                                     int(calls / call_rate) + 60),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder,
                preexec_fn=lambda: load_sipp.pin(0),
            )
            if clients or rate:
                loader.start()
            output, _ = sipp.communicate(timeout=calls / call_rate + 120)
            run.cpu = load_sipp.cpu_seconds(server.proc.pid) - cpu_before
            run.console_cpu = load_sipp.cpu_seconds(console) - console_before
        finally:
            stop.set()
            if loader.is_alive():
                loader.join(30)
            server.stop()
        run.calls = calls
        run.succeeded = int(load_sipp._sipp_counter(output, "Successful call"))
        stopped = [r for r in server.records if r.get("event") == "stopped"][-1]
        run.p99_ms = float(stopped["clock_lateness_p99_ms"])
        run.max_ms = float(stopped["clock_max_lateness_ms"])
        run.skipped = int(stopped["clock_late_ticks"])
    return run


def _console(server: load_sipp.Server) -> tuple[str, int]:
    """The console's URL and process id, once it answers; the process pinned to core 0."""
    deadline = time.monotonic() + 30
    url, pid = "", 0
    while time.monotonic() < deadline and not (url and pid):
        server.poll()
        for record in server.records:
            if record.get("event") == "http_listening":
                url = str(record["url"])
            elif record.get("event") == "console_started":
                pid = int(record["pid"])
        time.sleep(0.1)  # polling the server's log file
    if not (url and pid):
        raise SystemExit("the console did not start")
    if load_sipp.PIN and (os.cpu_count() or 1) >= 2:
        os.sched_setaffinity(pid, {0})
    return url, pid


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--call-rate", type=float, default=20.0)
    parser.add_argument("--clients", type=int, default=20)
    parser.add_argument("--rate", type=float, default=50.0)
    parser.add_argument("--repeat", type=int, default=3, help="pairs of runs, alternating (a shared machine is noisy)")
    args = parser.parse_args()
    print(f"{'run':40} {'calls ok':>9} {'tick p99 ms':>12} {'max ms':>8} {'skipped':>8} {'requests':>9} "
          f"{'errors':>7} {'events':>7} {'ivr cpu s':>9} {'console s':>9}", flush=True)
    quiet: list[Run] = []
    loaded: list[Run] = []
    for _ in range(args.repeat):
        quiet.append(_show(one_run("without console load", args.calls, args.call_rate, 0, 0)))
        loaded.append(_show(one_run(f"{args.clients} event clients + {args.rate:g} API req/s", args.calls,
                                    args.call_rate, args.clients, args.rate)))
    difference = statistics.median(r.p99_ms for r in loaded) - statistics.median(r.p99_ms for r in quiet)
    extra = statistics.median(r.skipped for r in loaded) - statistics.median(r.skipped for r in quiet)
    verdict = "within the bar" if difference < 1.0 and extra <= 0 else "over the bar"
    cpu = statistics.median(r.cpu for r in loaded) - statistics.median(r.cpu for r in quiet)
    print(f"medians: p99 difference {difference:+.3f} ms, extra skipped ticks {extra:+g}, "
          f"ivr CPU {cpu:+.1f} s: {verdict}")
    return 0


def _show(r: Run) -> Run:
    print(f"{r.label:40} {r.succeeded:>4}/{r.calls:<4} {r.p99_ms:>12.3f} {r.max_ms:>8.1f} {r.skipped:>8} "
          f"{r.requests:>9} {r.errors:>7} {r.events:>7} {r.cpu:>9.1f} {r.console_cpu:>9.1f}", flush=True)
    return r


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
