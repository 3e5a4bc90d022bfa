"""Live call events: the call log's records as server-sent events (``GET /api/v1/events``).

Each record the server logs (:class:`~ivr.runtime.calllog.CallLog`, the same JSON as on stderr),
pushed over the control socket (:mod:`ivr.web.link`), is put into the queue of every connected client whose filter it passes, and written to the
client as one ``data:`` line.  ``?extension=201`` keeps the records of calls from, to or
transferred to 201; a user (not an admin) only ever gets their own extension's call records.
A client that falls more than :data:`QUEUE` records behind is dropped (it reconnects, as
EventSource does): a slow browser never makes the console hold records without bound.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from ivr.web.routes import ApiError, Param, Route
from ivr.web.state import CONSOLE
from ivr.web.users import WebUser

QUEUE = 1000
KEEPALIVE = 15.0  # seconds between comment lines, so proxies keep the stream open
# Fields of a record that name an extension taking part in the call.
PARTY_FIELDS = ("caller", "called", "target", "targets", "extension", "to")


@dataclass(eq=False)
class Client:
    extension: str | None
    calls_only: bool
    # Each record as its ``data:`` line, serialised once for every client; None ends the stream.
    queue: asyncio.Queue[bytes | None] = field(default_factory=lambda: asyncio.Queue(QUEUE))

    def end(self) -> None:
        """End the stream: its writer, waiting on this very queue, gets None next (what is
        still queued is dropped with the client)."""
        while not self.queue.empty():
            self.queue.get_nowait()
        self.queue.put_nowait(None)

    def wants(self, record: dict[str, Any]) -> bool:
        if self.calls_only and "call_id" not in record:
            return False
        return self.extension is None or involves(record, self.extension)


def involves(record: dict[str, Any], extension: str) -> bool:
    for key in PARTY_FIELDS:
        value = record.get(key)
        if value == extension or (isinstance(value, str) and extension in value.split(",")):
            return True
    return False


class EventHub:
    """The connected clients of one server; :meth:`on_record` is a call-log listener."""

    def __init__(self) -> None:
        self.clients: set[Client] = set()
        # Call-IDs a filtered client has seen: the later records of a call (a key, its end)
        # may not name the extension again.
        self._calls: dict[str, set[str]] = {}

    def on_record(self, record: dict[str, Any]) -> None:
        """A record from the server (on the console's loop): into the queues of the clients it concerns."""
        if not self.clients:
            return
        call_id = record.get("call_id")
        line: bytes | None = None
        for client in list(self.clients):
            if not (client.wants(record) or self._followed(client, call_id)):
                continue
            if client.extension is not None and call_id:
                self._calls.setdefault(call_id, set()).add(client.extension)
            if line is None:
                line = b"data: " + json.dumps(record, ensure_ascii=False, default=str).encode() + b"\n\n"
            try:
                client.queue.put_nowait(line)
            except asyncio.QueueFull:
                self.clients.discard(client)
                client.end()
        if record.get("event") == "ended" and call_id:
            self._calls.pop(call_id, None)

    def _followed(self, client: Client, call_id: Any) -> bool:
        return bool(call_id) and client.extension is not None and client.extension in self._calls.get(call_id, ())

    def close(self) -> None:
        for client in list(self.clients):
            client.end()
        self.clients.clear()


HUB: web.AppKey[EventHub] = web.AppKey("events", EventHub)


async def events(request: web.Request) -> web.StreamResponse:
    user = request["user"]
    assert isinstance(user, WebUser)
    extension = request.query.get("extension") or None
    if not user.admin:
        if extension not in (None, user.extension):
            raise ApiError(403, f"extension {extension} is not yours")
        extension = user.extension
    elif extension is not None and request.app[CONSOLE].config.extension(extension) is None:
        raise ApiError(404, f"no extension {extension!r}")
    client = Client(extension, calls_only=not user.admin)
    hub = request.app[HUB]
    response = web.StreamResponse(headers={"Content-Type": "text/event-stream", "Cache-Control": "no-cache"})
    await response.prepare(request)
    hub.clients.add(client)
    try:
        await response.write(b": ivr events\n\n")
        while True:
            try:
                first = await asyncio.wait_for(client.queue.get(), KEEPALIVE)
            except TimeoutError:
                await response.write(b": keep-alive\n\n")
                continue
            lines, end = _batch(first, client.queue)
            if lines:
                await response.write(b"".join(lines))  # one write for what queued up meanwhile
            if end:
                break
    except ConnectionResetError:
        pass
    finally:
        hub.clients.discard(client)
    return response


def _batch(item: bytes | None, queue: asyncio.Queue[bytes | None]) -> tuple[list[bytes], bool]:
    """``item`` and what else is queued (at most 100 lines), and whether the stream ends."""
    lines: list[bytes] = []
    while item is not None:
        lines.append(item)
        if queue.empty() or len(lines) >= 100:
            return lines, False
        item = queue.get_nowait()
    return lines, True


ROUTES = (
    Route("GET", "/api/v1/events", events, "live call events (server-sent events, the call log's records)",
          "user", "events", produces="text/event-stream",
          query=(Param("extension", "only calls from, to or transferred to this extension"),)),
)
