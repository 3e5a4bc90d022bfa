"""Garbage collection in ``ivr serve``: timed and logged, full collections when nobody hears them, calls without cycles.

A full collection walks every live call's objects while every thread waits; with a thousand
calls that is a gap every caller hears.  The server therefore runs full collections itself
(when the last call has ended, and at most every ``gc_full_interval``), which is only safe
for memory if a call leaves no reference cycles: reference counting must free it as it ends.
The call here is a whole one through the server's own code (its user agent, services and
call runner, a real media session on loopback sending and receiving RTP, a key pressed),
and afterwards the collector must find no garbage of ivr's own types.
"""

from __future__ import annotations

import asyncio
import gc
import io
import json
import socket
import struct
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.runtime.calllog import CallLog
from ivr.runtime.deployment import load_flow
from ivr.runtime.gcwatch import NEVER, FullCollections, GcWatch
from tests.runtime.wire_harness import Wired, exchange, wire_server

FLOW = """\
number default -> welcome

menu welcome:
    ask "Press one."
    wait 20s
    1 -> welcome
"""


def test_a_collection_over_the_threshold_is_logged_with_its_generation_and_pause() -> None:
    out = io.StringIO()
    watch = GcWatch(CallLog(out), threshold=0.0)  # every collection is "long"
    watch.install()
    try:
        gc.collect(1)
    finally:
        watch.remove()
    (record,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert record["event"] == "gc_pause" and record["generation"] == 1
    assert record["message"] == f"garbage collection of generation 1 held every thread for {record['pause_ms']:.0f} ms"
    assert watch.collections[1] == 1 and watch.paused_since(0.0) == pytest.approx(record["pause_ms"] / 1000, abs=1e-4)
    summary = watch.summary()
    assert summary["gc_collections"] == [0, 1, 0] and summary["gc_ms"][1] == record["pause_ms"]


def test_a_short_collection_is_counted_not_logged() -> None:
    out = io.StringIO()
    watch = GcWatch(CallLog(out), threshold=10.0)
    watch.install()
    try:
        gc.collect(0)
    finally:
        watch.remove()
    assert out.getvalue() == "" and watch.collections[0] == 1


def test_full_collections_wait_for_the_server_and_the_thresholds_come_back() -> None:
    saved = gc.get_threshold()
    watch = GcWatch(CallLog(io.StringIO()), threshold=10.0)

    async def serve() -> tuple[int, int]:
        collections = FullCollections(interval=600.0)
        collections.start(asyncio.get_running_loop())
        assert gc.get_threshold() == (saved[0], saved[1], NEVER)  # CPython's counters start none
        collections.last -= 60  # the last full collection was a while ago
        watch.install()
        collections.idle()
        collections.idle()  # twice at once: one collection
        await asyncio.sleep(0)
        full = watch.collections[2]
        collections.idle()  # just collected: not again
        await asyncio.sleep(0)
        collections.stop()
        return full, watch.collections[2]

    try:
        assert asyncio.run(serve()) == (1, 1)
    finally:
        watch.remove()
    assert gc.get_threshold() == saved


def test_the_interval_is_a_deployment_setting_and_0_leaves_full_collections_to_cpython(tmp_path: Path) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text('[server]\ngc_full_interval = "2m"\n')
    assert load_config(toml, data=tmp_path).server.gc_full_interval == 120.0
    toml.write_text("[server]\n")
    assert load_config(toml, data=tmp_path).server.gc_full_interval == 900.0
    saved = gc.get_threshold()

    async def serve() -> tuple[int, int, int]:
        collections = FullCollections(interval=0.0)
        collections.start(asyncio.get_running_loop())
        collections.idle()
        frozen = gc.get_freeze_count()
        collections.reloaded()
        assert gc.get_freeze_count() == frozen
        return gc.get_threshold()

    assert asyncio.run(serve()) == saved


def test_a_whole_call_leaves_no_reference_cycle(tmp_path: Path) -> None:
    garbage = asyncio.run(_one_call(tmp_path))
    assert garbage == []


async def _one_call(folder: Path) -> list[str]:
    """One call (set-up, prompt, RTP both ways, key 1 by RFC 4733, hang-up); the ivr objects the
    collector then finds unreachable."""
    wired = _server(folder)
    server, caller = wired.server, wired.caller
    gc.collect()  # what start-up (and earlier tests) left is not this call's: ivr serve collects it too
    phone = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    phone.bind(("127.0.0.1", 0))
    phone.setblocking(False)
    loop = asyncio.get_running_loop()
    keyed = asyncio.Event()
    server.calllog.feeds.append(  # called with batches of records on the call log's writer thread
        lambda records: loop.call_soon_threadsafe(keyed.set) if any(r.get("event") == "key" for r in records) else None)
    try:
        sdp = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
               b"m=audio %d RTP/AVP 0 101\r\na=rtpmap:0 PCMU/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
               % phone.getsockname()[1])
        call_id = caller.invite("sip:100@127.0.0.1:5060", sdp, loop.time(), from_uri="sip:200@127.0.0.1",
                                destination=("127.0.0.1", 5060))
        # the server's tasks (TTS in its pool) run between rounds
        await exchange(wired, lambda: caller.calls[call_id].state == "confirmed", tries=2000, pause=0.005)
        runner = server.calls[call_id]
        assert runner.media is not None
        ivr_rtp = ("127.0.0.1", runner.media.local_port)
        await asyncio.wait_for(loop.sock_recv(phone, 2048), 20)  # ivr's prompt reaches the phone
        heard = await _talk(phone, ivr_rtp)
        assert heard >= 10  # and goes on while the phone talks
        await asyncio.wait_for(keyed.wait(), 10)
        del runner
        caller.hangup(call_id, loop.time())
        await exchange(wired, lambda: not server.calls, tries=2000, pause=0.005)
        for _ in range(10):
            await asyncio.sleep(0)
    finally:
        phone.close()
        wired.services.close_journal()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        gc.collect()
        return sorted({type(o).__qualname__ for o in gc.garbage if type(o).__module__.startswith("ivr.")})
    finally:
        gc.set_debug(0)
        gc.garbage.clear()


def _server(folder: Path) -> Wired:
    """The server's pieces wired as ``ivr serve`` wires them (tests/runtime/wire_harness.py), its clock running."""
    flow = folder / "call.ivr"
    flow.write_text(FLOW)
    toml = folder / "ivr.toml"
    toml.write_text('[server]\nlisten = "127.0.0.1:5060"\nrtp_ports = "41000-41999"\n[overload]\nrate = 0\n'
                    '[tts]\nengine = "espeak"\n')
    config = load_config(toml, data=folder / "data")
    program = load_flow([flow], config=config)
    wired = wire_server(config, program, CallLog(io.StringIO()))
    wired.clock.start()
    return wired


async def _talk(phone: socket.socket, ivr: tuple[str, int]) -> int:
    """50 packets of audio and key 1 (RFC 4733) to ivr, one per 20 ms; what ivr sent meanwhile."""
    heard = 0
    for seq in range(60):
        if seq < 50:
            phone.sendto(struct.pack("!BBHII", 0x80, 0, seq, seq * 160, 0x1234) + b"\xff" * 160, ivr)
        else:  # key 1: one event, its end sent three times (RFC 4733 2.5.1.4)
            end = 0x80 if seq >= 57 else 0
            event = struct.pack("!BBH", 1, end | 10, (seq - 49) * 160)
            phone.sendto(struct.pack("!BBHII", 0x80, 101 | (0x80 if seq == 50 else 0), seq, 50 * 160, 0x1234) + event, ivr)
        await asyncio.sleep(0.02)
        while True:
            try:
                phone.recv(2048)
            except BlockingIOError:
                break
            heard += 1
    return heard
