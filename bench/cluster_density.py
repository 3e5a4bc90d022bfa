"""Cluster density: sipp through Kamailio into one and then two ``ivr serve`` nodes on one PostgreSQL.

Three steps, each with N calls (tests/peers/scenarios/load_call.xml made to follow the route
set: menu prompt, key 1, second prompt and hold music, caller hangs up after 16 s):

* ``direct``: one node, sipp straight at it (the lone node, no proxy);
* ``proxy-1``: the same through Kamailio (deploy/kamailio/kamailio.cfg as shipped);
* ``proxy-2``: through Kamailio into two nodes (round robin).

Every node uses the shared database ([storage] url): journal rows and switches go there.
For each step it prints the calls placed and succeeded, the calls each node carried, the CPU
(cores) of each node, of Kamailio (all its processes), of PostgreSQL (all its processes) and of
sipp over a 3 s window in which every call was up, call set-up time as sipp measured it
(INVITE to 200, p50 and p99, from ``-trace_rtt``), and what the callers received (a loopback
capture of the nodes' RTP ports read by ``tshark -z rtp,streams``: packets lost, p99 of each
stream's max delta and max jitter), with the PEERS.md pass bar: every call succeeds, nothing
lost, p99 max jitter <= 5 ms, p99 max delta <= 40 ms.  Nothing is pinned to a core: Kamailio,
PostgreSQL, sipp and the nodes share the machine, as they would on one box.

    python bench/cluster_density.py [--calls 100] [--rate 20]

Needs the Debian packages postgresql, kamailio, sip-tester, tshark; run as root (PostgreSQL
runs as the postgres user through runuser).  Bounded: sipp -m N with -timeout, every wait has a
deadline.
"""

from __future__ import annotations

import argparse
import csv
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import load_sipp  # noqa: E402  (bench/load_sipp.py: the server, the Step record, RTP and sipp readers)

from tests.postgres import Postgres  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
CFG = REPO / "deploy" / "kamailio" / "kamailio.cfg"


# A node is load_sipp's Server (its log in a file, polled for records) on the shared database.
Node = load_sipp.Server
NODE_STOP = 40.0  # s a node gets to drain and close its database pool after SIGTERM


def start_node(folder: Path, url: str, rtp: tuple[int, int]) -> Node:
    folder.mkdir()
    return load_sipp.Server(folder, rtp, overload="", sections=f'[storage]\nurl = "{url}"\npool_size = 4\n')


def start_kamailio(folder: Path, nodes: list[Node]) -> tuple[subprocess.Popen[bytes], int]:
    listing = folder / "dispatcher.list"
    listing.write_text("".join(f"1 sip:127.0.0.1:{n.port} 0 0\n" for n in nodes))
    (folder / "kamailio").mkdir()
    port = load_sipp.free_udp_port()
    with open(folder / "kamailio.log", "w") as out:
        proc = subprocess.Popen(
            ["kamailio", "-f", str(CFG), "-DD", "-E", "-A", f"LISTEN=udp:127.0.0.1:{port}",
             "-A", f'DISPATCHER_LIST="{listing}"', "-A", "PROBE_INTERVAL=1", "-Y", str(folder / "kamailio"),
             "-P", str(folder / "kamailio" / "kamailio.pid")], stdout=subprocess.DEVNULL, stderr=out)
    deadline = time.monotonic() + 20
    while "SO_RCVBUF is finally" not in (folder / "kamailio.log").read_text(errors="replace"):
        if time.monotonic() > deadline or proc.poll() is not None:
            raise SystemExit("kamailio did not start:\n" + (folder / "kamailio.log").read_text()[-2000:])
        time.sleep(0.1)  # polling its log for the bound socket
    return proc, port


def routed_scenario(folder: Path) -> Path:
    """load_call.xml with the route set on ACK and BYE, so they pass the proxy to the node."""
    text = load_sipp.SCENARIO.read_text(encoding="iso-8859-1")
    for method in ("ACK", "BYE"):
        head = f"{method} [next_url] SIP/2.0\n      Via: SIP/2.0/[transport] [local_ip]:[local_port];branch=[branch]\n"
        if head not in text:
            raise SystemExit(f"{load_sipp.SCENARIO}: no {method} line to add the route set to")
        text = text.replace(head, head + "      [routes]\n")
    path = folder / "routed_call.xml"
    path.write_text(text, encoding="iso-8859-1")
    return path


def family(pid: int) -> list[int]:
    """``pid`` and its descendants (Kamailio's and PostgreSQL's worker processes)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo += children.get(p, [])
    return out


def cpu(pids: list[int]) -> float:
    total = 0.0
    for pid in pids:
        try:
            total += load_sipp.cpu_seconds(pid)
        except OSError:
            pass  # ended meanwhile
    return total


@dataclass
class Result:
    name: str
    step: load_sipp.Step
    per_node: list[int]
    cores: dict[str, float]
    setup_p50: float = 0.0
    setup_p99: float = 0.0


def run(name: str, nodes_wanted: int, proxied: bool, calls: int, rate: float, url: str, pg_pid: int) -> Result:
    with tempfile.TemporaryDirectory(prefix="ivr-cluster-bench-") as tmp:
        folder = Path(tmp)
        base = random.randrange(33000, 48000, 2)
        width = 4 * calls + 100
        nodes = [start_node(folder / f"node{i}", url, (base + i * width, base + (i + 1) * width - 1))
                 for i in range(nodes_wanted)]
        rtp = (base, base + nodes_wanted * width)
        kamailio, target = (start_kamailio(folder, nodes) if proxied else (None, nodes[0].port))
        capture = folder / "rtp.pcapng"
        dumpcap = subprocess.Popen(["dumpcap", "-q", "-i", "lo", "-f", f"udp src portrange {rtp[0]}-{rtp[1]}",
                                    "-w", str(capture)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        time.sleep(1.0)  # dumpcap has no ready signal; give it a moment to open the interface
        step = load_sipp.Step(calls)
        cores: dict[str, float] = {}
        try:
            sipp = subprocess.Popen(
                load_sipp.sipp_calls(f"127.0.0.1:{target}", routed_scenario(folder), calls, rate,
                                     int(calls / rate) + 60, "-trace_rtt", "-rtt_freq", "1"),
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder)
            cores = measure(nodes, kamailio, pg_pid, sipp, calls, time.monotonic() + calls / rate + 60)
            output, _ = sipp.communicate(timeout=calls / rate + 120)
        finally:
            time.sleep(0.5)
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(30)
            if kamailio is not None:
                kamailio.terminate()
                kamailio.wait(20)
            for node in nodes:
                node.stop(NODE_STOP)
        step.succeeded = int(load_sipp._sipp_counter(output, "Successful call"))
        load_sipp.rtp_streams(capture, rtp, step)
        result = Result(name, step, [n.count(lambda r: r.get("action") == "answer") for n in nodes], cores)
        result.setup_p50, result.setup_p99 = setup_times(folder)
        return result


def measure(nodes: list[Node], kamailio: subprocess.Popen[bytes] | None, pg_pid: int,
            sipp: subprocess.Popen[str], calls: int, deadline: float) -> dict[str, float]:
    """Cores used by each part over 3 s while every call is up (empty if that never happened)."""
    while sum(n.count(lambda r: r.get("action") == "answer") for n in nodes) < calls:
        if time.monotonic() > deadline or any(n.count(lambda r: r.get("event") == "ended") for n in nodes):
            return {}
        time.sleep(0.05)  # polling the nodes' logs
    parts = {f"node{i}": [n.proc.pid] for i, n in enumerate(nodes)}
    if kamailio is not None:
        parts["kamailio"] = family(kamailio.pid)
    parts["postgres"] = family(pg_pid)
    parts["sipp"] = [sipp.pid]
    before, t0 = {k: cpu(v) for k, v in parts.items()}, time.monotonic()
    time.sleep(3.0)  # the measuring window
    wall = time.monotonic() - t0
    if any(n.count(lambda r: r.get("event") == "ended") for n in nodes):
        return {}
    return {k: (cpu(v) - before[k]) / wall for k, v in parts.items()}


def setup_times(folder: Path) -> tuple[float, float]:
    """p50 and p99 of INVITE to 200 in ms, from sipp's -trace_rtt file."""
    values: list[float] = []
    for path in folder.glob("*_rtt.csv"):
        with open(path) as f:
            for row in csv.DictReader(f, delimiter=";"):
                for key, value in row.items():
                    if key and key.startswith("response_time") and value:
                        values.append(float(value))
    if not values:
        return 0.0, 0.0
    return load_sipp.percentile(values, 50), load_sipp.percentile(values, 99)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=100, help="concurrent calls per step")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    args = parser.parse_args()
    load_sipp.PIN = False  # nothing is pinned to a core (see above)
    for tool in ("sipp", "dumpcap", "tshark", "kamailio"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    postgres = Postgres()
    postgres.start()
    try:
        url = postgres.new_database("bench")
        subprocess.run([sys.executable, "-m", "ivr", "db", "upgrade", "--config", str(storage_toml(url))],
                       check=True, stdout=subprocess.DEVNULL)
        pg_pid = int((postgres.folder / "data" / "postmaster.pid").read_text().split()[0])
        print(f"load average {os.getloadavg()[0]:.1f}; {args.calls} calls at {args.rate:g}/s per step")
        print("step      ok  per node    lost  delta p99 ms  jitter p99 ms  setup p50/p99 ms  cores: nodes | kamailio | postgres | sipp  pass")
        failed = False
        for name, nodes, proxied in (("direct", 1, False), ("proxy-1", 1, True), ("proxy-2", 2, True)):
            r = run(name, nodes, proxied, args.calls, args.rate, url, pg_pid)
            s = r.step
            failed |= not s.passed
            node_cores = " + ".join(f"{r.cores.get(f'node{i}', 0):.2f}" for i in range(nodes))
            print(f"{name:8s} {s.succeeded:4d}  {'/'.join(map(str, r.per_node)):10s} {s.lost:4d} {s.delta_p99:12.1f}"
                  f" {s.jitter_p99:14.2f}  {r.setup_p50:7.1f}/{r.setup_p99:<7.1f}  {node_cores} |"
                  f" {r.cores.get('kamailio', 0):.2f} | {r.cores.get('postgres', 0):.2f} | {r.cores.get('sipp', 0):.2f}"
                  f"  {'yes' if s.passed else 'no'}{'' if r.cores else ' (never all up at once)'}", flush=True)
        return 1 if failed else 0
    finally:
        postgres.stop()


def storage_toml(url: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix="ivr-cluster-bench-cfg-")) / "ivr.toml"
    path.write_text(f'[storage]\nurl = "{url}"\n')
    return path


if __name__ == "__main__":
    sys.exit(main())
