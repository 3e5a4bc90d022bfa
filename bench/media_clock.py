"""Benchmark: the shared media clock driving N MediaSessions over real UDP on loopback.

Three measurements, for each N (default 200, 500, 1000):

``cpu``   sessions in pairs send to each other; ticks run back to back (no
          waiting for deadlines), so the CPU per call per tick (user and
          kernel) is measured without wall-clock effects: the figure that
          holds on a machine shared with other work.
``sink``  N sessions play a prompt (looped) into a sink process on the other
          CPU that checks, per stream, loss, the largest inter-packet delta
          and the RFC 3550 jitter: the pass bar of /work/shared/PEERS.md (no
          loss, p99 of per-stream max jitter <= 5 ms, p99 of per-stream max
          delta <= 40 ms).
``ring``  sessions in pairs play to each other in real time and decode what
          they hear: a full call's cost (send and receive), tick lateness.
``send``  the steady state of ``ivr serve`` under bench/load_sipp.py: send
          only, every session connected to one socket nobody reads (sipp's
          media port), hearing a prompt (a clip) or shared hold music; ticks
          back to back (``cpu``, the repeatable figure, and the one to run
          under ``valgrind --tool=callgrind``) and in real time (``rt``, where
          the caches are cold at every tick: about twice the CPU).

Every real-time step reports process CPU per call per tick, the share of
one core, tick lateness p50/p99/max, the longest garbage-collection pause,
packets sent/received/lost and the load average (the machine is shared:
lateness is only meaningful when the load average is low).

Usage: python bench/media_clock.py [--calls 200,500,1000] [--seconds 5]
       [--mode cpu,sink,phones,ring,send] [--ticks 100]
Bounded: each real-time step runs ``--seconds`` (at most 15) plus ``--warmup``
(at most 2 s); the sink and phone processes stop on their own; a cpu step runs
``--ticks`` ticks (at most 500).
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import os
import random
import resource
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from ivr.media.clip import Clip
from ivr.media.clock import MediaClock, single_threaded_numerics
from ivr.media.holdmusic import MusicPlayer
from ivr.media.reactor import get_reactor
from ivr.media.session import MediaSession
from ivr.media.vad import Endpointer

PORTS = (50000, 59999)
MAX_SECONDS = 15.0

SINK = r"""
import json, socket, struct, sys, time
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(("127.0.0.1", 0))
print(sock.getsockname()[1], flush=True)
warmup, seconds = float(sys.argv[1]), float(sys.argv[2])
# non-blocking, drained until empty, then one wait: one system call per packet, and the
# process sleeps (and must be woken by the sender's CPU) only when it has caught up
sock.setblocking(False)
import select
poller = select.epoll()
poller.register(sock.fileno(), select.EPOLLIN)
streams = {}  # ssrc -> [last_seq, last_arrival, last_ts, received, lost, max_delta, jitter, max_jitter, transit]
deadline = None
t_start = None
while True:
    try:
        data = sock.recv(2048)
    except BlockingIOError:
        if deadline is not None and time.monotonic() > deadline:
            break
        poller.poll(0.5)
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


PHONES = r"""
import json, socket, struct, sys, time
# Independent phones: each call's packets every 20 ms, the calls spread evenly over the period,
# all from one socket (the sessions' remote); what the sessions send back is drained.
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
sock.bind(("127.0.0.1", 0))
sock.setblocking(False)
print(sock.getsockname()[1], flush=True)
ports = json.loads(sys.stdin.readline())
seconds = float(sys.argv[1])
packet = bytearray(172)
packet[12:] = bytes([0xFF]) * 160
header = struct.Struct("!BBHII")
slots = 20  # 1 ms slots
groups = [[("127.0.0.1", p) for p in ports[i::slots]] for i in range(slots)]
seq = 0
sent = received = 0
start = time.perf_counter()
deadline = start + seconds
while time.perf_counter() < deadline:
    for i, group in enumerate(groups):
        due = start + (seq * slots + i) * 0.001
        while (wait := due - time.perf_counter()) > 0:
            time.sleep(wait if wait > 0.0002 else 0)
        for addr in group:
            header.pack_into(packet, 0, 0x80, 0, seq & 0xFFFF, (seq * 160) & 0xFFFFFFFF, addr[1])
            sock.sendto(packet, addr)
            sent += 1
        try:
            while True:
                sock.recv(2048)
                received += 1
        except BlockingIOError:
            pass
    seq += 1
print(json.dumps({"sent": sent, "received": received}), flush=True)
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


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(values, q)) if values else float("nan")


class GcPauses:
    """The longest garbage collection while installed (gc.callbacks)."""

    def __init__(self) -> None:
        self.longest = 0.0
        self.collections = 0
        self._t0 = 0.0

    def __call__(self, phase: str, info: dict[str, Any]) -> None:
        if phase == "start":
            self._t0 = time.perf_counter()
        else:
            self.collections += 1
            self.longest = max(self.longest, time.perf_counter() - self._t0)

    def __enter__(self) -> GcPauses:
        gc.callbacks.append(self)
        return self

    def __exit__(self, *_: object) -> None:
        gc.callbacks.remove(self)


def _packets(streams: list[Any]) -> tuple[int, int]:
    """Packets sent and received so far by all sessions."""
    stats = [s.stats for s in streams]
    return sum(st["packets_sent"] for st in stats), sum(st["packets_received"] for st in stats)


async def measure(clock: MediaClock, calls: int, seconds: float) -> dict[str, float]:
    """Run the clock in real time for ``seconds``; CPU, lateness and GC of this process."""
    sessions = list(clock._snapshot)  # noqa: SLF001 -- the streams are the sessions
    sent0, received0 = _packets(sessions)
    ticks0, late0 = clock.ticks, clock.late_ticks
    cpu0, wall0 = time.process_time(), time.monotonic()
    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    lateness_from = len(clock.lateness)
    with GcPauses() as pauses:
        await asyncio.sleep(seconds)
    ticks, late = clock.ticks - ticks0, clock.late_ticks - late0
    cpu, wall = time.process_time() - cpu0, time.monotonic() - wall0
    usage = resource.getrusage(resource.RUSAGE_SELF)
    per = 1e6 / max(ticks, 1) / calls
    lateness = list(clock.lateness)[lateness_from:]
    sent, received = _packets(sessions)
    return {
        "calls": calls,
        "sent": sent - sent0,
        "received": received - received0,
        "cpu_cores": cpu / wall,
        "us_per_call_tick": cpu * per,
        "user_us": (usage.ru_utime - usage0.ru_utime) * per,
        "sys_us": (usage.ru_stime - usage0.ru_stime) * per,
        "late_ticks": late,
        "lateness_p50_ms": pct(lateness, 50) * 1000,
        "lateness_p99_ms": pct(lateness, 99) * 1000,
        "lateness_max_ms": max(lateness, default=float("nan")) * 1000,
        "gc_max_ms": pauses.longest * 1000,
        "load": os.getloadavg()[0],
    }


async def open_sessions(clock: MediaClock, calls: int) -> list[MediaSession]:
    sessions = []
    for _ in range(calls):
        sessions.append(
            await MediaSession.open(
                host="127.0.0.1", port_range=PORTS, clock=clock, media_timeout=3600
            )
        )
    return sessions


def pair_up(sessions: list[MediaSession], prompt: Clip) -> None:
    """Each session plays ``prompt`` (looped) to its partner; an odd one out talks to itself."""
    for i, s in enumerate(sessions):
        peer = sessions[i ^ 1] if (i ^ 1) < len(sessions) else s
        s.configure(
            remote=("127.0.0.1", peer.local_port), payload_type=0, dtmf_pt=101, direction="sendrecv"
        )
        s.on_prompt_done = _replay(s, prompt)
        s.play(prompt, prompt_id=1)


async def sink_step(calls: int, seconds: float, warmup: float) -> dict[str, float]:
    sink = subprocess.Popen(
        [sys.executable, "-c", SINK, str(warmup), str(seconds)],
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin_sink,  # only sets CPU affinity
    )
    assert sink.stdout is not None
    sink_port = int(sink.stdout.readline())
    clock = MediaClock(asyncio.get_running_loop())
    prompt = Clip.tone(440, 3.0, name="bench")
    sessions: list[MediaSession] = []
    try:
        sessions = await open_sessions(clock, calls)
        for s in sessions:
            s.configure(
                remote=("127.0.0.1", sink_port), payload_type=0, dtmf_pt=101, direction="sendrecv"
            )
            s.on_prompt_done = _replay(s, prompt)
            s.play(prompt, prompt_id=1)
        clock.start()
        await asyncio.sleep(warmup)
        result = await measure(clock, calls, seconds)
    finally:
        clock.stop()
        for s in sessions:
            s.close()
    out, _ = sink.communicate(timeout=seconds + warmup + 30)
    report = json.loads(out.strip().splitlines()[-1])
    result.update(
        received=report["packets"],  # by the sink, in its own window of the same length
        lost=report["lost"],
        p99_max_delta_ms=pct(report["max_delta_ms"], 99),
        p99_max_jitter_ms=pct(report["max_jitter_ms"], 99),
    )
    return result


async def phones_step(calls: int, seconds: float, warmup: float) -> dict[str, float]:
    """N calls with independent phones (another process): packets arrive spread over each
    20 ms, not in bursts right after our tick as in ``ring``; every wake-up of the loop costs.
    The sessions send prompt audio back and have an ``on_audio`` consumer."""
    phones = subprocess.Popen(
        [sys.executable, "-c", PHONES, str(warmup + seconds + 0.5)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        preexec_fn=_pin_sink,  # only sets CPU affinity
    )
    assert phones.stdout is not None and phones.stdin is not None
    phone_port = int(phones.stdout.readline())
    clock = MediaClock(asyncio.get_running_loop())
    prompt = Clip.tone(440, 3.0, name="bench")
    sessions: list[MediaSession] = []
    frames = [0]

    def heard(pcm: object) -> None:
        frames[0] += 1

    try:
        sessions = await open_sessions(clock, calls)
        for s in sessions:
            s.configure(
                remote=("127.0.0.1", phone_port), payload_type=0, dtmf_pt=101, direction="sendrecv"
            )
            s.on_audio = heard
            s.on_prompt_done = _replay(s, prompt)
            s.play(prompt, prompt_id=1)
        phones.stdin.write(json.dumps([s.local_port for s in sessions]) + "\n")
        phones.stdin.flush()
        await asyncio.sleep(warmup)
        reactor = get_reactor()
        wakeups0 = reactor.wakeups
        result = await measure(clock, calls, seconds)
        result["wakeups_per_tick"] = (reactor.wakeups - wakeups0) / (seconds / clock.interval)
        stats = [s.stats for s in sessions]
    finally:
        clock.stop()
        for s in sessions:
            s.close()
    out, _ = phones.communicate(timeout=seconds + warmup + 30)
    report = json.loads(out.strip().splitlines()[-1])
    result.update(
        lost=sum(st["lost"] for st in stats),
        phones_sent=report["sent"],
        p99_jitter_ms=pct([st["jitter_ms"] for st in stats], 99),
    )
    return result


async def ring_step(calls: int, seconds: float, warmup: float) -> dict[str, float]:
    """Sessions in pairs, each playing to its partner: each sends AND receives 50 packets/s.

    One session of a pair stands for the IVR's side of a call, the other for the caller,
    so ``calls`` sessions are ``calls`` streams each way; the CPU per session per tick is
    what one call costs the IVR.  Every session has an ``on_audio`` consumer (as a call
    that records or listens), so every frame is decoded.
    """
    clock = MediaClock(asyncio.get_running_loop())
    prompt = Clip.tone(440, 3.0, name="bench")
    sessions: list[MediaSession] = []
    frames = [0]

    def heard(pcm: object) -> None:  # what a recorder's cheapest callback costs
        frames[0] += 1

    try:
        sessions = await open_sessions(clock, calls)
        for s in sessions:
            s.on_audio = heard
        pair_up(sessions, prompt)
        await asyncio.sleep(warmup)
        result = await measure(clock, calls, seconds)
        stats = [s.stats for s in sessions]
    finally:
        clock.stop()
        for s in sessions:
            s.close()
    result.update(
        lost=sum(st["lost"] for st in stats),
        p99_jitter_ms=pct([st["jitter_ms"] for st in stats], 99),
    )
    return result


async def cpu_step(calls: int, ticks: int, listen: str) -> dict[str, float]:
    """Ticks run back to back (no waiting for deadlines): the CPU cost alone, per call per tick.

    The sessions are paired as in :func:`ring_step`; after each tick the loop runs until the
    packets of the tick have been received.  Wall-clock lateness plays no part, so the figure
    holds on a machine shared with other work (cache contention aside).  ``listen``: an
    ``on_audio`` consumer (every frame decoded, "yes"), or every frame also fed to a speech
    endpointer of its own ("vad": what a call listening for speech adds per packet), or
    in-band DTMF detection ("keys": a call whose phone offered no telephone-event, listening
    for keys in the audio); "no": nobody listens and the decode is skipped.
    Repeatable under ``valgrind --tool=callgrind`` as the ``send`` mode is: seeded, no RTCP,
    the tick's own time.
    """
    random.seed(1)
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    prompt = Clip.tone(440, 3.0, name="bench")
    sessions: list[MediaSession] = []
    heard = [0]

    def on_audio(pcm: object) -> None:
        heard[0] += 1

    def endpointer() -> Callable[[npt.NDArray[np.int16]], None]:
        vad = Endpointer()

        def feed(pcm: npt.NDArray[np.int16]) -> None:
            if vad.feed(pcm) in ("done", "no_speech"):
                vad.reset()  # a listener starts a fresh one: listening all along

        return feed

    try:
        sessions = await open_sessions(clock, calls)
        clock.stop()  # open() starts it; this benchmark drives the ticks itself
        for s in sessions:
            s.on_audio = {"yes": on_audio, "vad": endpointer(), "no": None, "keys": None}[listen]
            s.enable_inband_dtmf(listen == "keys")
            s._reporter.next_report = float("inf")  # noqa: SLF001 -- no RTCP (valgrind runs 50 times slower)
        pair_up(sessions, prompt)
        start = loop.time()

        async def run(first: int, count: int) -> None:
            for tick in range(first, first + count):
                # the tick body, without the timer, at the tick's own time
                clock._run(tick, start + tick * clock.interval)  # noqa: SLF001
                target = calls * (tick + 1)
                for _ in range(20):
                    await asyncio.sleep(0)
                    if sum(st._packets_received for st in sessions) >= target:  # noqa: SLF001
                        break

        await run(0, 10)  # warm-up: latching, connect(), caches
        before = resource.getrusage(resource.RUSAGE_SELF)
        cpu0 = time.process_time()
        # the check for completion is bench overhead: measure it alone and take it off
        await run(10, ticks)
        cpu = time.process_time() - cpu0
        after = resource.getrusage(resource.RUSAGE_SELF)
        t0 = time.process_time()
        for _ in range(ticks):
            sum(st._packets_received for st in sessions)  # noqa: SLF001
        overhead = time.process_time() - t0
        stats = [s.stats for s in sessions]
    finally:
        for s in sessions:
            s.close()
    per = 1e6 / (ticks * calls)
    return {
        "calls": calls,
        "us_per_call_tick": (cpu - overhead) * per,
        "user_us": (after.ru_utime - before.ru_utime - overhead) * per,
        "sys_us": (after.ru_stime - before.ru_stime) * per,
        "sent": sum(st["packets_sent"] for st in stats),
        "received": sum(st["packets_received"] for st in stats),
        "lost": sum(st["lost"] for st in stats),
    }


async def send_step(
    calls: int, source: str, *, ticks: int = 0, seconds: float = 0.0, warmup: float = 0.0
) -> dict[str, Any]:
    """Send only, as ``ivr serve`` holds calls: ``ticks`` back to back, else ``seconds`` in real time.

    Every session is connected to one socket that is never read (its small buffer overflows,
    as sipp's media port does), and plays ``source``: ``clip`` (a looped prompt) or ``moh``
    (one shared hold music player, advanced by the clock).
    """
    if ticks:
        random.seed(1)  # the same SSRCs, sequence numbers and ports: repeatable instruction counts
    loop = asyncio.get_running_loop()
    clock = MediaClock(loop)
    sink = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sink.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sink.bind(("127.0.0.1", 0))
    prompt = Clip.tone(440, 3.0, name="bench")
    player = MusicPlayer([prompt])
    sessions: list[MediaSession] = []
    try:
        sessions = await open_sessions(clock, calls)
        clock.stop()
        for s in sessions:
            s.configure(
                remote=sink.getsockname(), payload_type=0, dtmf_pt=101, direction="sendrecv"
            )
            s._latch.open = False  # noqa: SLF001 -- as after the phone's first packet:
            s._connect()  # noqa: SLF001 -- connected, as in ivr serve once the key came
            if ticks:  # no RTCP: under valgrind the ticks run 50 times slower than real time
                s._reporter.next_report = float("inf")  # noqa: SLF001
            if source == "moh":
                s.play(player, prompt_id=1)  # adds the player to the clock's shared sources
            else:
                s.on_prompt_done = _replay(s, prompt)
                s.play(prompt, prompt_id=1)
        if not ticks:
            clock.start()
            await asyncio.sleep(warmup)
            return {**await measure(clock, calls, seconds), "source": source, "timing": "rt"}
        first, start = 0, loop.time()

        async def run(count: int) -> None:
            nonlocal first
            for tick in range(first, first + count):
                # the tick body, without the timer; the tick's own time (not the wall clock, which
                # valgrind slows down 50 times), so housekeeping runs every 5th tick as in real time
                clock._run(tick, start + tick * clock.interval)  # noqa: SLF001
                if tick % 10 == 0:
                    await asyncio.sleep(0)  # prompt-done callbacks
            first += count

        await run(20)  # warm-up
        before, cpu0 = resource.getrusage(resource.RUSAGE_SELF), time.process_time()
        await run(ticks)
        cpu, after = time.process_time() - cpu0, resource.getrusage(resource.RUSAGE_SELF)
        per = 1e6 / (ticks * calls)
        return {
            "calls": calls,
            "source": source,
            "timing": "cpu",
            "us_per_call_tick": cpu * per,
            "user_us": (after.ru_utime - before.ru_utime) * per,
            "sys_us": (after.ru_stime - before.ru_stime) * per,
            "sent": sum(s.stats["packets_sent"] for s in sessions),
        }
    finally:
        clock.stop()
        for s in sessions:
            s.close()
        sink.close()


def _row(columns: list[tuple[str, str, int]], r: dict[str, Any]) -> str:
    return " ".join(format(r[key], f">{width}{fmt}") for key, fmt, width in columns)


def _header(columns: list[tuple[str, str, int]]) -> str:
    return " ".join(format(key, f">{width}") for key, _, width in columns)


REALTIME = [
    ("calls", "d", 5),
    ("us_per_call_tick", ".1f", 16),
    ("user_us", ".1f", 7),
    ("sys_us", ".1f", 6),
    ("cpu_cores", ".2f", 9),
    ("late_ticks", "d", 10),
    ("lateness_p50_ms", ".2f", 15),
    ("lateness_p99_ms", ".2f", 15),
    ("lateness_max_ms", ".1f", 15),
    ("gc_max_ms", ".2f", 9),
    ("sent", "d", 8),
    ("received", "d", 8),
    ("lost", "d", 5),
    ("load", ".2f", 5),
]
SINK_COLUMNS = [*REALTIME, ("p99_max_delta_ms", ".1f", 16), ("p99_max_jitter_ms", ".2f", 17)]
RING_COLUMNS = [*REALTIME, ("p99_jitter_ms", ".2f", 13)]
PHONES_COLUMNS = [*RING_COLUMNS, ("wakeups_per_tick", ".1f", 16)]
SEND_COLUMNS = [
    ("calls", "d", 5),
    ("source", "", 6),
    ("timing", "", 6),
    ("us_per_call_tick", ".1f", 16),
    ("user_us", ".1f", 7),
    ("sys_us", ".1f", 6),
    ("sent", "d", 8),
]
CPU_COLUMNS = [
    ("calls", "d", 5),
    ("listen", "", 6),
    ("us_per_call_tick", ".1f", 16),
    ("user_us", ".1f", 7),
    ("sys_us", ".1f", 6),
    ("sent", "d", 8),
    ("received", "d", 8),
    ("lost", "d", 5),
]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--calls", default="200,500,1000")
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--warmup", type=float, default=1.0)
    parser.add_argument("--ticks", type=int, default=100, help="ticks per cpu step")
    parser.add_argument(
        "--mode", default="cpu,sink,phones,ring", help="any of cpu, sink, phones, ring, send"
    )
    parser.add_argument(
        "--timing", default="cpu,rt", help="send mode: cpu (back to back), rt (real time) or both"
    )
    parser.add_argument("--listen", default="yes,no",
                        help="cpu mode: yes (an on_audio consumer), vad (a speech endpointer per call), "
                        "keys (in-band DTMF detection per call), no, or a list")
    parser.add_argument("--source", default="clip,moh", help="send mode: clip, moh or both")
    parser.add_argument("--blas-threads", action="store_true",
                        help="leave numpy's BLAS its worker threads (ivr serve keeps it on the loop's thread)")
    args = parser.parse_args()
    if not args.blas_threads:
        single_threaded_numerics()  # as ivr serve does
    # every step bounded: at most 15 s measured after at most 2 s of warm-up, 500 cpu ticks
    seconds, warmup, ticks = (
        min(args.seconds, MAX_SECONDS),
        min(args.warmup, 2.0),
        min(args.ticks, 500),
    )
    modes = set(args.mode.split(","))
    cpus = _cpus()
    if len(cpus) >= 2:
        os.sched_setaffinity(0, {cpus[-1]})
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, 8192)), hard))
    counts = [int(c) for c in args.calls.split(",")]
    # as `ivr serve` does after start-up: imported modules and tables are never collected
    gc.collect()
    gc.freeze()
    load = os.getloadavg()
    print(
        f"media clock benchmark: loopback UDP, sessions on CPU {sorted(os.sched_getaffinity(0))}; "
        f"load average {load[0]:.2f} {load[1]:.2f} {load[2]:.2f} (the machine may be shared)"
    )
    if "cpu" in modes:
        print(
            f"\ncpu: pairs, {ticks} ticks back to back; us = CPU per call (send+receive) per tick"
        )
        print(_header(CPU_COLUMNS))
        for listen in args.listen.split(","):
            for calls in counts:
                r = asyncio.run(cpu_step(calls, ticks, listen))
                print(_row(CPU_COLUMNS, {**r, "listen": listen}), flush=True)
    if "send" in modes:
        print(
            f"\nsend: send only into a socket nobody reads, {ticks} ticks back to back (cpu) "
            f"and {seconds:g} s in real time (rt); us = CPU per call per tick"
        )
        print(_header(SEND_COLUMNS))
        for source in args.source.split(","):
            for calls in counts:
                if "cpu" in args.timing:
                    r = asyncio.run(send_step(calls, source, ticks=ticks))
                    print(_row(SEND_COLUMNS, r), flush=True)
                if "rt" in args.timing:
                    r = asyncio.run(send_step(calls, source, seconds=seconds, warmup=warmup))
                    print(_row(SEND_COLUMNS, r), flush=True)
    if "sink" in modes:
        print(f"\nsink: send only into a sink process on another CPU, {seconds:g} s per step")
        print(_header(SINK_COLUMNS) + "  verdict")
        for calls in counts:
            r = asyncio.run(sink_step(calls, seconds, warmup))
            ok = r["lost"] == 0 and r["p99_max_jitter_ms"] <= 5 and r["p99_max_delta_ms"] <= 40
            print(_row(SINK_COLUMNS, r) + ("  pass" if ok else "  FAIL"), flush=True)
    if "phones" in modes:
        print(
            f"\nphones: independent phones (another process) send to every call, {seconds:g} s per step"
        )
        print(_header(PHONES_COLUMNS))
        for calls in counts:
            r = asyncio.run(phones_step(calls, seconds, warmup))
            print(_row(PHONES_COLUMNS, r), flush=True)
    if "ring" in modes:
        print(f"\nring: pairs play to each other and decode, real time, {seconds:g} s per step")
        print(_header(RING_COLUMNS))
        for calls in counts:
            r = asyncio.run(ring_step(calls, seconds, warmup))
            print(_row(RING_COLUMNS, r), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
