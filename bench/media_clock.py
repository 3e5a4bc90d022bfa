"""Benchmark: the shared media clock driving N MediaSessions over real UDP on loopback.

For each N (default 200, 500, 1000) the sessions play a pre-encoded prompt
(looped by re-queueing) to a sink process that receives every packet and
measures, per stream, loss (sequence gaps), the largest inter-packet delta
and the RFC 3550 interarrival jitter.  This process reports the CPU it
spent per stream per tick and the tick lateness (p99, max).  The pass bar
follows /work/shared/PEERS.md: no loss, p99 of per-stream max jitter <= 5 ms,
p99 of per-stream max inter-packet delta <= 40 ms.

Usage: python bench/media_clock.py [--calls 200,500,1000] [--seconds 5]
Bounded: each step runs ``--seconds`` (plus 1 s warm-up); the sink stops on
its own after the run.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import subprocess
import sys
import time
from collections.abc import Callable

import numpy as np

from ivr.media.clip import Clip
from ivr.media.clock import MediaClock
from ivr.media.session import MediaSession

PORTS = (50000, 59999)

SINK = r"""
import json, socket, struct, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
warmup, seconds = float(sys.argv[1]), float(sys.argv[2])
sock.settimeout(0.5)
streams = {}  # ssrc -> [last_seq, last_arrival, last_ts, received, lost, max_delta, jitter, max_jitter, transit]
deadline = None
t_start = None
while True:
    try:
        data = sock.recv(2048)
    except socket.timeout:
        if deadline is not None and time.monotonic() > deadline:
            break
        continue
    now = time.monotonic()
    if t_start is None:
        t_start, deadline = now, now + warmup + seconds
    if now > deadline:
        break
    seq, ts, ssrc = struct.unpack_from("!HII", data, 2)
    s = streams.get(ssrc)
    if s is None or now < t_start + warmup:
        streams[ssrc] = [seq, now, ts, 0, 0, 0.0, 0.0, 0.0, now * 8000 - ts]
        continue
    gap = (seq - s[0]) % 65536
    if 1 < gap < 30000:
        s[4] += gap - 1
    delta = now - s[1]
    s[5] = max(s[5], delta)
    transit = now * 8000 - ts
    d = abs(transit - s[8])
    s[6] += (d - s[6]) / 16
    s[7] = max(s[7], s[6])
    s[0], s[1], s[2], s[8] = seq, now, ts, transit
    s[3] += 1
measured = [s for s in streams.values() if s[3]]
print(json.dumps({
    "streams": len(measured),
    "packets": sum(s[3] for s in measured),
    "lost": sum(s[4] for s in measured),
    "max_delta_ms": sorted(s[5] * 1000 for s in measured),
    "max_jitter_ms": sorted(s[7] / 8 for s in measured),
}), flush=True)
"""


def _replay(session: MediaSession, prompt: Clip) -> Callable[[int], None]:
    """Loop the prompt: queue it again when it finishes."""
    return lambda prompt_id: session.play(prompt, prompt_id=prompt_id + 1)


def _cpus() -> list[int]:
    return sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else []


def _pin_sink() -> None:
    """The sink on the first CPU, this process on the last (as PEERS.md's harness pins peers)."""
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[0]})


def p99(values: list[float]) -> float:
    return float(np.percentile(values, 99)) if values else float("nan")


async def step(calls: int, seconds: float, warmup: float) -> dict[str, float]:
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(warmup), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin_sink,  # only sets CPU affinity
    )
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    prompt = Clip.tone(440, 3.0, name="bench")
    sessions = []
    try:
        for _ in range(calls):
            s = await MediaSession.open(
                host="127.0.0.1", port_range=PORTS, clock=clock, media_timeout=3600
            )
            s.configure(
                remote=("127.0.0.1", sink_port), payload_type=0, dtmf_pt=101, direction="sendrecv"
            )
            s.on_prompt_done = _replay(s, prompt)
            s.play(prompt, prompt_id=1)
            sessions.append(s)
        clock.start()
        await asyncio.sleep(warmup)
        ticks0, late0, cpu0, wall0 = (
            clock.ticks,
            clock.late_ticks,
            time.process_time(),
            time.monotonic(),
        )
        lateness_from = len(clock.lateness)
        await asyncio.sleep(seconds)
        ticks, late = clock.ticks - ticks0, clock.late_ticks - late0
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        lateness = list(clock.lateness)[lateness_from:]
    finally:
        clock.stop()
        for s in sessions:
            s.close()
    out, _ = sink.communicate(timeout=seconds + warmup + 30)
    report = json.loads(out.strip().splitlines()[-1])
    sent = sum(s.stats["packets_sent"] for s in sessions)
    return {
        "calls": calls,
        "cpu_cores": cpu / wall,
        "us_per_stream_tick": cpu / max(ticks, 1) / calls * 1e6,
        "ticks": ticks,
        "late_ticks": late,
        "lateness_p99_ms": p99(lateness) * 1000,
        "lateness_max_ms": max(lateness, default=float("nan")) * 1000,
        "sent": sent,
        "received": report["packets"],
        "lost": report["lost"],
        "p99_max_delta_ms": p99(report["max_delta_ms"]),
        "p99_max_jitter_ms": p99(report["max_jitter_ms"]),
    }


async def ring_step(calls: int, seconds: float, warmup: float) -> dict[str, float]:
    """Sessions in pairs, each playing to its partner: each sends AND receives 50 packets/s.

    One session of a pair stands for the IVR's side of a call, the other for the caller,
    so ``calls`` sessions are ``calls`` streams each way; the CPU per session per tick is
    what one call costs the IVR.
    """
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    prompt = Clip.tone(440, 3.0, name="bench")
    sessions: list[MediaSession] = []
    frames = [0]

    def heard(pcm: object) -> None:  # what a recorder's cheapest callback costs
        frames[0] += 1

    try:
        for _ in range(calls):
            s = await MediaSession.open(
                host="127.0.0.1", port_range=PORTS, clock=clock, media_timeout=3600
            )
            s.on_audio = heard
            s.on_prompt_done = _replay(s, prompt)
            sessions.append(s)
        for i, s in enumerate(sessions):
            peer = sessions[i ^ 1] if (i ^ 1) < calls else s  # an odd one out talks to itself
            s.configure(
                remote=("127.0.0.1", peer.local_port),
                payload_type=0,
                dtmf_pt=101,
                direction="sendrecv",
            )
            s.play(prompt, prompt_id=1)
        await asyncio.sleep(warmup)
        ticks0, late0, cpu0, wall0 = (
            clock.ticks,
            clock.late_ticks,
            time.process_time(),
            time.monotonic(),
        )
        lateness_from = len(clock.lateness)
        await asyncio.sleep(seconds)
        ticks, late = clock.ticks - ticks0, clock.late_ticks - late0
        cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
        lateness = list(clock.lateness)[lateness_from:]
        stats = [s.stats for s in sessions]
    finally:
        clock.stop()
        for s in sessions:
            s.close()
    return {
        "calls": calls,
        "cpu_cores": cpu / wall,
        "us_per_stream_tick": cpu / max(ticks, 1) / calls * 1e6,
        "late_ticks": late,
        "lateness_p99_ms": p99(lateness) * 1000,
        "lateness_max_ms": max(lateness, default=float("nan")) * 1000,
        "lost": sum(st["lost"] for st in stats),
        "p99_jitter_ms": p99([st["jitter_ms"] for st in stats]),
        "frames_heard": frames[0],
        "frames_per_session_tick": frames[0] / max(clock.ticks, 1) / calls,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", default="200,500,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--mode", choices=("sink", "ring", "both"), default="both")
    args = parser.parse_args()
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[-1]})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    print(
        f"media clock benchmark: loopback UDP, {args.seconds:g} s per step, "
        f"sessions on CPU {sorted(os.sched_getaffinity(0))}; "
        f"load average {os.getloadavg()[0]:.2f}"
    )
    counts = [int(c) for c in args.calls.split(",")]
    if args.mode in ("sink", "both"):
        print("\nsend only: N sessions play a prompt into a sink process (on another CPU)")
        print(
            f"{'calls':>6} {'cores':>6} {'us/stream/tick':>15} {'late ticks':>10} {'lateness p99':>13} "
            f"{'max':>7} {'lost':>6} {'p99 delta':>10} {'p99 jitter':>11}  verdict"
        )
        for calls in counts:
            r = asyncio.run(step(calls, args.seconds, args.warmup))
            ok = r["lost"] == 0 and r["p99_max_jitter_ms"] <= 5 and r["p99_max_delta_ms"] <= 40
            print(
                f"{r['calls']:>6} {r['cpu_cores']:>6.2f} {r['us_per_stream_tick']:>15.1f} {r['late_ticks']:>10} "
                f"{r['lateness_p99_ms']:>11.2f}ms {r['lateness_max_ms']:>5.1f}ms {r['lost']:>6} "
                f"{r['p99_max_delta_ms']:>8.1f}ms {r['p99_max_jitter_ms']:>9.2f}ms  {'pass' if ok else 'FAIL'}",
                flush=True,
            )
    if args.mode in ("ring", "both"):
        print(
            "\nsend and receive: sessions in pairs, each plays to its partner and decodes what it hears"
        )
        print(
            f"{'calls':>6} {'cores':>6} {'us/call/tick':>13} {'late ticks':>10} {'lateness p99':>13} "
            f"{'max':>7} {'lost':>6} {'p99 jitter':>11}"
        )
        for calls in counts:
            r = asyncio.run(ring_step(calls, args.seconds, args.warmup))
            print(
                f"{r['calls']:>6} {r['cpu_cores']:>6.2f} {r['us_per_stream_tick']:>13.1f} {r['late_ticks']:>10} "
                f"{r['lateness_p99_ms']:>11.2f}ms {r['lateness_max_ms']:>5.1f}ms {r['lost']:>6} "
                f"{r['p99_jitter_ms']:>9.2f}ms",
                flush=True,
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
