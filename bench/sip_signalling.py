"""SIP signalling cost: parse/serialise throughput and full calls through two UserAgents.

Prints messages parsed per second on real captures, and calls per second for
a complete INVITE / 180 / 200 / ACK / BYE / 200 exchange between two sans-IO
user agents on a fake clock (no sockets: the signalling core alone).
"""

from __future__ import annotations

import time
from pathlib import Path

from ivr.sip.events import IncomingCall
from ivr.sip.message import parse_message
from ivr.sip.ua import UserAgent

DATA = Path(__file__).parent.parent / "tests" / "data" / "sip"
SDP = b"v=0\r\no=ivr 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\nm=audio 20000 RTP/AVP 0\r\n"


def bench_parse(rounds: int = 300) -> None:
    captures = [p.read_bytes() for p in sorted(DATA.glob("*.sip"))]
    start = time.perf_counter()
    for _ in range(rounds):
        for raw in captures:
            bytes(parse_message(raw))
    elapsed = time.perf_counter() - start
    count = rounds * len(captures)
    print(f"parse+serialise: {count} messages in {elapsed:.2f} s = {count / elapsed:,.0f} msg/s")


def pump(a: UserAgent, b: UserAgent, now: float) -> int:
    moved = 0
    while True:
        out_a, out_b = a.outgoing(), b.outgoing()
        if not out_a and not out_b:
            return moved
        for o in out_a:
            b.receive(o.data, ("127.0.0.1", a.local_port), "udp", now)
        for o in out_b:
            a.receive(o.data, ("127.0.0.1", b.local_port), "udp", now)
        moved += len(out_a) + len(out_b)


def bench_calls(calls: int = 2000) -> None:
    caller = UserAgent(local_host="127.0.0.1", local_port=5070)
    ivr = UserAgent(local_host="127.0.0.1", local_port=5060)
    messages = 0
    start = time.perf_counter()
    for i in range(calls):
        now = float(i)
        call_id = caller.invite("sip:100@127.0.0.1", SDP, now, from_uri="sip:bench@127.0.0.1",
                                destination=("127.0.0.1", 5060))
        messages += pump(caller, ivr, now)
        while (event := ivr.next_event()) is not None:
            if isinstance(event, IncomingCall):
                ivr.ringing(event.call_id, now)
                ivr.answer(event.call_id, SDP, now)
        messages += pump(caller, ivr, now)
        caller.hangup(call_id, now + 0.5)
        messages += pump(caller, ivr, now + 0.5)
        while caller.next_event() or ivr.next_event():
            pass
    elapsed = time.perf_counter() - start
    print(f"calls: {calls} in {elapsed:.2f} s = {calls / elapsed:,.0f} calls/s, "
          f"{messages / elapsed:,.0f} messages/s through both user agents")
    print(f"left behind: {len(caller.calls) + len(ivr.calls)} calls (expected 0)")


def bench_concurrent(calls: int = 1000) -> None:
    """``calls`` calls up at once (all confirmed, session timers armed), then all hung up."""
    caller = UserAgent(local_host="127.0.0.1", local_port=5070)
    ivr = UserAgent(local_host="127.0.0.1", local_port=5060)
    start = time.perf_counter()
    ids = [caller.invite("sip:100@127.0.0.1", SDP, 0.0, from_uri="sip:bench@127.0.0.1",
                         destination=("127.0.0.1", 5060), headers=[("Supported", "timer"),
                                                                   ("Session-Expires", "1800")])
           for _ in range(calls)]
    pump(caller, ivr, 0.0)
    while (event := ivr.next_event()) is not None:
        if isinstance(event, IncomingCall):
            ivr.answer(event.call_id, SDP, 0.0)
    pump(caller, ivr, 0.0)
    up = time.perf_counter() - start
    confirmed = sum(1 for c in ivr.calls.values() if c.state == "confirmed")
    ivr.handle_timer(60.0)  # every transaction timer of the set-up is due by now
    caller.handle_timer(60.0)
    start = time.perf_counter()
    for call_id in ids:
        caller.hangup(call_id, 61.0)
    pump(caller, ivr, 61.0)
    down = time.perf_counter() - start
    print(f"{calls} concurrent calls: set up in {up:.2f} s ({confirmed} confirmed), "
          f"torn down in {down:.2f} s; left behind: {len(caller.calls) + len(ivr.calls)}")


if __name__ == "__main__":
    bench_parse()
    bench_calls()
    bench_concurrent()
