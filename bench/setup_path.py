"""Call set-up cost in ``ivr serve``'s own code: INVITE in, 100 and 200 out, ACK, BYE, one call after another.

The server's pieces are wired as ``ivr serve`` wires them (its :class:`ServerAgent` with the
admission gate, :class:`Services`, :class:`Server`'s event handling, a :class:`SipEndpoint`),
but the SIP socket is a recorder and the caller a sans-IO :class:`UserAgent` fed from it
(tests/runtime/wire_harness.py, which the garbage-collection tests use too), and the media
clock is not started: what is measured is the set-up path alone (parsing,
transactions and dialogs, SDP, port allocation and the call's RTP sockets, the flow's start,
the TTS cache lookup, journal rows, log records), with nothing paced by wall-clock time, so
``valgrind --tool=callgrind`` counts the same instructions run after run:

    OPENBLAS_NUM_THREADS=1 PYTHONHASHSEED=0 valgrind --tool=callgrind --callgrind-out-file=/dev/null \\
        python bench/setup_path.py --calls 200      # minus the same with --calls 100: 100 calls

Without valgrind it prints CPU microseconds per call (``time.process_time``), and with
``--profile FILE`` writes a cProfile of the calls.

``--up N`` then sets up N calls at once and keeps them up (no media clock: no packets) to
measure what they cost the cyclic garbage collector: objects it tracks per call (both
sides: the sans-IO caller's too), the thread CPU of one full collection with them up (best
of three), and, after all of them hang up, the objects a full collection still finds
unreachable (reference cycles the calls left; ``ivr serve`` needs none, see
``ivr.runtime.gcwatch``).  These are counts and CPU time, not wall-clock figures.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import io
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ivr.config import load_config  # noqa: E402
from ivr.runtime.calllog import CallLog  # noqa: E402
from ivr.runtime.deployment import load_flow  # noqa: E402
from ivr.runtime.prepare import flow_texts, prerender  # noqa: E402
from tests.runtime.wire_harness import Wired, exchange, wire_server  # noqa: E402  (shared with the gc tests)

FLOW = """\
number default -> welcome

menu welcome:
    ask "Thank you for calling the set-up benchmark. Please press one to continue."
    wait 20s
    1 -> welcome
"""
SDP = (b"v=0\r\no=sipp 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 6000 RTP/AVP 0 8 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:8 PCMA/8000\r\n"
       b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-15\r\n")


async def run_calls(folder: Path, calls: int, profile: cProfile.Profile | None, up: int = 0) -> float:
    flow = folder / "setup.ivr"
    flow.write_text(FLOW)
    toml = folder / "ivr.toml"
    toml.write_text('[server]\nlisten = "127.0.0.1:5060"\nrtp_ports = "40000-49999"\n[overload]\nrate = 0\n')
    config = load_config(toml, data=folder / "data")
    program = load_flow([flow], config=config)
    prerender(program, config, None)  # as ivr serve does before it binds its port
    calllog = CallLog(io.StringIO(), threaded=True)
    wired = wire_server(config, program, calllog)
    for text, voice, rate in flow_texts(program, config, wired.services.tts.voice_for):  # in memory, as after the first caller
        wired.services.tts.render(text, voice=voice, rate=rate)
    await one_call(wired, 0)  # the first opens the journal: not measured
    if profile is not None:
        profile.enable()
    start = time.process_time()
    for n in range(1, calls + 1):
        await one_call(wired, n)
    elapsed = time.process_time() - start
    if profile is not None:
        profile.disable()
    if up:
        await calls_up(wired, up)
    wired.services.close_journal()
    calllog.close()
    return elapsed


async def calls_up(wired: Wired, count: int) -> None:
    """``count`` calls up at once: the garbage collector's view of them, then of what they leave."""
    loop, caller = asyncio.get_running_loop(), wired.caller
    gc.collect()
    gc.freeze()  # as ivr serve does after start-up
    before = len(gc.get_objects())
    ids = []
    for _ in range(count):
        call_id = caller.invite("sip:+41435435570@127.0.0.1:5060", SDP, loop.time(),
                                from_uri="sip:+41791112233@127.0.0.1", destination=("127.0.0.1", 5060))
        await exchange(wired, lambda c=call_id: caller.calls[c].state == "confirmed")
        ids.append(call_id)
    gc.collect(1)  # the young generations empty: what is left lives as long as the calls
    tracked = len(gc.get_objects()) - before
    pauses = []
    for _ in range(3):
        start = time.thread_time()
        gc.collect()
        pauses.append(time.thread_time() - start)
    for call_id in ids:
        caller.hangup(call_id, loop.time())
    await exchange(wired, lambda: not wired.server.calls)
    for _ in range(10):
        await asyncio.sleep(0)
    left = gc.collect()
    gc.unfreeze()
    print(f"{count} calls up: {tracked / count:.0f} objects tracked per call, a full collection {min(pauses) * 1000:.1f} ms"
          f" of CPU; after they ended a full collection found {left} unreachable objects ({left / count:.1f} per call)",
          file=sys.stderr)


async def one_call(wired: Wired, n: int) -> None:
    loop, caller = asyncio.get_running_loop(), wired.caller
    call_id = caller.invite("sip:+41435435570@127.0.0.1:5060", SDP, loop.time(), from_uri="sip:+41791112233@127.0.0.1",
                            destination=("127.0.0.1", 5060))
    await exchange(wired, lambda: caller.calls[call_id].state == "confirmed")
    caller.hangup(call_id, loop.time())
    await exchange(wired, lambda: not wired.server.calls)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=200)
    parser.add_argument("--profile", type=Path, help="write a cProfile of the measured calls here")
    parser.add_argument("--up", type=int, default=0, help="then N calls up at once: their cost to the garbage collector")
    parser.add_argument("--tts-cache", type=Path, help="a TTS cache folder to reuse (no espeak-ng run: steadier counts)")
    args = parser.parse_args()
    profile = cProfile.Profile(time.thread_time) if args.profile else None  # CPU of the loop's thread: no wall time lost to others
    with tempfile.TemporaryDirectory(prefix="ivr-setup-path-") as tmp:
        if args.tts_cache is not None:
            args.tts_cache.mkdir(parents=True, exist_ok=True)
            (Path(tmp) / "data").mkdir()
            (Path(tmp) / "data" / "tts-cache").symlink_to(args.tts_cache.resolve(), target_is_directory=True)
        elapsed = asyncio.run(run_calls(Path(tmp), args.calls, profile, args.up))
    if profile is not None:
        profile.dump_stats(str(args.profile))
    print(f"{args.calls} calls set up and torn down: {elapsed / args.calls * 1e6:.0f} us of CPU per call", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
