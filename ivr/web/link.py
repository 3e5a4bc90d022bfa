"""The console's end of the control socket to ``ivr serve`` (:mod:`ivr.runtime.controlwire`).

:class:`ServerLink` asks the server what only it knows (:meth:`ServerLink.ask`, one
:class:`~ivr.runtime.controlwire.Request` per question, answered by
:mod:`ivr.runtime.control`) and hands the call log's records the server pushes to its
``listeners`` (the live events, the metrics' counts), one record at a time, on the console's
loop.  A failure comes back as :class:`~ivr.web.routes.ApiError` with the server's status;
a server that does not answer in time is a 504, a closed socket a 503 (and ``closed`` is set:
the console process then exits, and ``ivr serve`` starts a new one if it is still running).
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import Any

from ivr.runtime.controlwire import (
    ControlProtocolError,
    Decoder,
    Failure,
    Records,
    Reply,
    Request,
    encode,
)
from ivr.web.routes import ApiError

ASK_TIMEOUT = 30.0
SLOW_OPS = {"reload": 300.0}  # a reload checks and pre-renders every flow


class ServerLink:
    """Requests to the server and the records it pushes, over one connected stream socket."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.listeners: list[Callable[[dict[str, Any]], None]] = []
        self.closed = asyncio.Event()
        self._pending: dict[int, asyncio.Future[Any]] = {}
        self._next = 0
        self._task: asyncio.Task[None] | None = None

    @classmethod
    async def open(cls, sock: socket.socket) -> ServerLink:
        reader, writer = await asyncio.open_connection(sock=sock)
        link = cls(reader, writer)
        link._task = asyncio.create_task(link._read())
        return link

    async def ask(self, op: str, **args: Any) -> Any:
        """The server's answer to ``op``; ApiError with its status when it refuses."""
        if self.closed.is_set():
            raise ApiError(503, "ivr serve is not answering (its control socket is closed)")
        self._next += 1
        ident = self._next
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending[ident] = future
        self.writer.write(encode(Request(ident, op, args)))
        try:
            return await asyncio.wait_for(future, SLOW_OPS.get(op, ASK_TIMEOUT))
        except TimeoutError:
            raise ApiError(504, f"ivr serve did not answer {op!r} in time") from None
        finally:
            self._pending.pop(ident, None)

    async def _read(self) -> None:
        decoder = Decoder()
        try:
            while data := await self.reader.read(65536):
                for message in decoder.feed(data):
                    self._received(message)
        except (ConnectionError, ControlProtocolError):
            pass
        finally:
            self.closed.set()
            for future in self._pending.values():
                if not future.done():
                    future.set_exception(ApiError(503, "ivr serve closed the control socket"))

    def _received(self, message: object) -> None:
        if isinstance(message, Records):
            for record in message.records:
                for listener in list(self.listeners):
                    listener(record)
        elif isinstance(message, Reply | Failure):
            future = self._pending.get(message.id)
            if future is None or future.done():
                return  # answered after its asker gave up
            if isinstance(message, Reply):
                future.set_result(message.result)
            else:
                future.set_exception(ApiError(message.status, message.error))

    def close(self) -> None:
        self.writer.close()
        if self._task is not None:
            self._task.cancel()
