"""The live-event hub's filter: per extension, a call followed once it named the extension."""

from __future__ import annotations

import asyncio
import json

from ivr.web.events import Client, EventHub


def test_a_filtered_client_gets_the_calls_of_its_extension_and_their_later_records() -> None:
    async def run() -> list[list[str]]:
        hub = EventHub()
        alice, everyone = Client("201", calls_only=True), Client(None, calls_only=False)
        hub.clients |= {alice, everyone}
        for record in (
            {"call_id": "a", "caller": "+4179", "called": "100", "event": "incoming"},
            {"call_id": "a", "caller": "+4179", "called": "100", "event": "transfer_start", "targets": "201,202"},
            {"call_id": "a", "caller": "+4179", "called": "100", "event": "key"},
            {"call_id": "b", "caller": "202", "called": "100", "event": "incoming"},
            {"event": "reloaded", "message": "reloaded"},
            {"call_id": "a", "caller": "+4179", "called": "100", "event": "ended"},
        ):
            hub.on_record(record)
        return [[str(r.get("event")) for r in _drain(c.queue)] for c in (alice, everyone)]

    mine, all_ = asyncio.run(run())
    assert mine == ["transfer_start", "key", "ended"]
    assert all_ == ["incoming", "transfer_start", "key", "incoming", "reloaded", "ended"]


def test_a_client_too_far_behind_is_dropped() -> None:
    async def run() -> tuple[bool, object]:
        hub = EventHub()
        slow = Client(None, calls_only=False)
        hub.clients.add(slow)
        for i in range(1001):
            hub.on_record({"call_id": str(i), "event": "incoming", "caller": "", "called": ""})
        return slow in hub.clients, slow.queue.get_nowait()

    assert asyncio.run(run()) == (False, None)


def _drain(q: asyncio.Queue) -> list[dict]:  # type: ignore[type-arg]
    out = []
    while not q.empty():
        item = q.get_nowait()
        if item is not None:
            assert item.startswith(b"data: ") and item.endswith(b"\n\n")
            out.append(json.loads(item[6:]))
    return out


def test_closing_the_hub_wakes_a_stream_waiting_on_its_queue() -> None:
    async def run() -> object:
        hub = EventHub()
        client = Client(None, calls_only=False)
        hub.clients.add(client)
        waiting = asyncio.create_task(client.queue.get())  # the stream's writer, as in events()
        await asyncio.sleep(0)
        hub.close()
        return await asyncio.wait_for(waiting, 1)

    assert asyncio.run(run()) is None
