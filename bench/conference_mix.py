"""Conference mixing benchmark: ROOMS rooms of N participants on one core, real media path.

``ivr serve`` (pinned to core 1) runs a flow of ROOMS conference rooms, one number each
(``number 9000 -> r0`` ... with ``conference r0``); sipp (pinned to core 0) places
ROOMS x N calls at ``--rate`` per second, call k to room k mod ROOMS, and every caller
talks: sipp replays its bundled ``g711a.pcap`` (7 s of PCMA speech, with its own gaps) into
the call again and again, so every room mixes N live inputs on every tick.  ivr decodes
each caller, makes one mix per room per 20 ms tick (each participant hears the others) and
sends each participant its own row, encoded in its codec (PCMU here).

Printed per step: calls placed / succeeded / seated in a room (ivr's log), the CPU of the
ivr process while every call was up (% of one core, and per participant), the media
clock's worst lateness and skipped ticks, and what the participants received, from a
loopback capture of ivr's RTP ports (dumpcap) read by ``tshark -z rtp,streams``, as
bench/load_sipp.py does: packets lost, p99 and max over streams of each stream's max
inter-packet delta and max jitter.  The pass bar (/work/shared/PEERS.md): every call
succeeds, no packet lost, p99 max jitter <= 5 ms, p99 max delta <= 40 ms.

    python bench/conference_mix.py [--steps 10x6,50x6] [--rate 20] [--silent] [--no-pin]

``--silent``: the callers send no audio (sipp sends nothing), so ivr mixes silence: the cost
and quality of the rooms without the load of 300 talking callers on the sipp side.

``--mix-only`` measures the mixing alone, in-process, without sockets: for each step, the
rooms' mixers (ivr/media/mixer.py) fed one 20 ms frame of speech-like noise per participant
per tick, mixed, and every participant's frame encoded in PCMU, over 1,000 ticks: the CPU
microseconds per tick (the thread's CPU time, so other processes on a shared machine do not
count) and the share of one core that is (what the mix adds to the RTP work
bench/media_clock.py measures).

Bounded: sipp -m with -timeout and -timeout_error, every wait has a limit.  Needs root
(sipp's pcap replay uses raw sockets), sipp, dumpcap and tshark.
"""

from __future__ import annotations

import argparse
import math
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import load_sipp  # noqa: E402  (the density benchmark's server, capture and tshark reading)
from load_sipp import Server, Step, free_udp_port, measure_cpu_while_all_up, pin, rtp_streams  # noqa: E402

SPEECH = Path("/usr/share/sip-tester/g711a.pcap")
SPEECH_SECONDS = 7.05
FIRST_NUMBER = 9000


def flow(rooms: int) -> str:
    lines = ["# Conference mixing benchmark: one number per room."]
    lines += [f"number {FIRST_NUMBER + r} -> r{r}" for r in range(rooms)]
    for r in range(rooms):
        lines += ["", f"r{r}:", f"    conference r{r}"]
    return "\n".join(lines) + "\n"


SILENT = False  # --silent: callers send no audio (what a room of listeners costs)


def scenario(folder: Path, plays: int) -> Path:
    """load_call.xml with the room's number from the injection file and ``plays`` replays of speech."""
    text = load_sipp.SCENARIO.read_text(encoding="iso-8859-1")
    text = text.replace("[service]", "[field0]")
    play = "" if SILENT else f'  <nop><action><exec play_pcap_audio="{SPEECH}"/></action></nop>\n'
    talk = "\n".join(f'{play}  <pause milliseconds="{int(SPEECH_SECONDS * 1000)}"/>' for _ in range(plays))
    start = text.index('  <pause milliseconds="6000"/>')
    end = text.index('  <pause milliseconds="10000"/>') + len('  <pause milliseconds="10000"/>')
    path = folder / "conference_call.xml"
    path.write_text(text[:start] + talk + text[end:], encoding="iso-8859-1")
    return path


def injection(folder: Path, rooms: int, calls: int) -> Path:
    path = folder / "rooms.csv"
    path.write_text("SEQUENTIAL\n" + "".join(f"{FIRST_NUMBER + k % rooms};\n" for k in range(calls)))
    return path


def run_step(rooms: int, participants: int, rate: float, folder: Path) -> tuple[Step, int]:
    calls = rooms * participants
    step = Step(calls)
    base = random.randrange(33000, 50000, 2)
    rtp = (base, base + 4 * calls + 100)
    server = Server(folder, rtp, flow_text=flow(rooms))
    plays = math.ceil((calls / rate + 15) / SPEECH_SECONDS)
    capture = folder / "rtp.pcapng"
    dumpcap = subprocess.Popen(
        ["dumpcap", "-q", "-i", "lo", "-f", f"udp src portrange {rtp[0]}-{rtp[1]}", "-w", str(capture)],
        stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    time.sleep(1.0)  # dumpcap has no ready signal on stdout; give it a moment to open the interface
    output = ""
    try:
        sipp = subprocess.Popen(
            ["sipp", f"127.0.0.1:{server.port}", "-sf", str(scenario(folder, plays)),
             "-inf", str(injection(folder, rooms, calls)), "-i", "127.0.0.1",
             "-p", str(free_udp_port()), "-mp", str(free_udp_port()),
             "-r", str(rate), "-l", str(calls), "-m", str(calls), "-nostdin",
             "-timeout", f"{int(calls / rate + plays * SPEECH_SECONDS) + 60}s", "-timeout_error",
             "-cp", str(free_udp_port()), "-trace_err", "-error_file", str(folder / "errors.log")],
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=folder, preexec_fn=lambda: pin(0),
        )
        cpu = measure_cpu_while_all_up(server, calls, time.monotonic() + calls / rate + 60)
        output, _ = sipp.communicate(timeout=calls / rate + plays * SPEECH_SECONDS + 120)
    finally:
        time.sleep(0.5)
        dumpcap.send_signal(signal.SIGINT)
        dumpcap.wait(30)
        server.stop()
    step.succeeded = int(load_sipp._sipp_counter(output, "Successful call"))
    step.failed = int(load_sipp._sipp_counter(output, "Failed call"))
    if step.succeeded < calls:
        errors = folder / "errors.log"
        detail = errors.read_text(errors="replace") if errors.exists() else output
        print(f"sipp: {step.failed} call(s) failed:\n{detail[-1500:]}", file=sys.stderr)
    seated = server.count(lambda r: r.get("action") == "talk_in_conference")
    stopped = [r for r in server.records if r.get("event") == "stopped"]
    step.clock_late_ms = float(stopped[-1].get("clock_max_lateness_ms", 0.0)) if stopped else 0.0
    step.clock_skipped = int(stopped[-1].get("clock_late_ticks", 0)) if stopped else 0
    if cpu is not None:
        step.cpu_total, step.cpu_per_call = cpu[0] * 100, cpu[0] * 100 / calls
        step.user_share = cpu[1] / cpu[0] if cpu[0] else 0.0
    else:
        step.notes.append("never had all calls up at once")
    rtp_streams(capture, rtp, step)
    return step, seated


def mix_only(rooms: int, participants: int, ticks: int = 1000) -> tuple[float, float]:
    """Mean and p99 CPU microseconds per tick for ``rooms`` mixers of ``participants`` (no sockets)."""
    import numpy as np

    from ivr.media import g711
    from ivr.media.mixer import Mixer

    rng = np.random.default_rng(1)
    speech = (rng.standard_normal((participants, 50 * 160)) * 3000).astype(np.int16)
    mixers = [Mixer(f"r{r}") for r in range(rooms)]
    seats = [[m.add() for _ in range(participants)] for m in mixers]
    costs = []
    for tick in range(ticks):
        at = (tick % 50) * 160
        t0 = time.thread_time()
        for mixer, room in zip(mixers, seats, strict=True):
            for i, seat in enumerate(room):
                seat.push(speech[i, at : at + 160])  # what each session's receive path does
            mixer.advance(tick)
            for seat in room:
                seat.frame(g711.PCMU)  # what each session's tick sends
        costs.append(time.thread_time() - t0)
    ordered = sorted(costs[50:])  # after the relays' prebuffer
    return sum(ordered) / len(ordered) * 1e6, ordered[int(len(ordered) * 0.99)] * 1e6


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", default="10x6,50x6", help="ROOMSxPARTICIPANTS per step")
    parser.add_argument("--rate", type=float, default=20.0, help="new calls per second")
    parser.add_argument("--no-pin", action="store_true", help="do not pin sipp to core 0 and ivr to core 1")
    parser.add_argument("--mix-only", action="store_true", help="the mixing alone, in-process, no sockets")
    parser.add_argument("--silent", action="store_true", help="callers send no audio (rooms of listeners)")
    args = parser.parse_args()
    load_sipp.PIN = not args.no_pin
    global SILENT
    SILENT = args.silent
    if args.mix_only:
        print("rooms x n  participants  cpu us/tick mean  p99  % of a core")
        for spec in args.steps.split(","):
            rooms, participants = (int(x) for x in spec.lower().split("x"))
            mean, p99 = mix_only(rooms, participants)
            print(f"{rooms:5d} x {participants:<2d} {rooms * participants:12d} {mean:17.0f} {p99:5.0f} {mean / 200:11.1f}")
        return 0
    for tool in ("sipp", "dumpcap", "tshark"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
            return 2
    print("rooms x n  calls   ok  seated  cpu%  cpu%/participant  user%  streams  lost  delta p99/max ms  "
          "jitter p99/max ms  tick late ms/skipped  pass")
    failed = False
    for spec in args.steps.split(","):
        rooms, participants = (int(x) for x in spec.lower().split("x"))
        with tempfile.TemporaryDirectory(prefix="ivr-conference-") as tmp:
            step, seated = run_step(rooms, participants, args.rate, Path(tmp))
        ok = step.passed and seated == step.calls
        failed |= not ok
        print(
            f"{rooms:5d} x {participants:<2d} {step.calls:5d} {step.succeeded:4d} {seated:7d} {step.cpu_total:5.1f} "
            f"{step.cpu_per_call:17.3f} {step.user_share * 100:6.0f} {step.streams:8d} {step.lost:5d} "
            f"{step.delta_p99:8.1f}/{step.delta_max:<8.1f} {step.jitter_p99:8.2f}/{step.jitter_max:<8.2f} "
            f"{step.clock_late_ms:12.1f}/{step.clock_skipped:<7d}  {'yes' if ok else 'no'} {' '.join(step.notes)}",
            flush=True,
        )
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
