"""The control socket's wire format between ``ivr serve`` and its console process (sans-IO).

One JSON object per line (UTF-8, ``\\n``-terminated), in both directions over one stream
socket.  The console asks, the server answers, and the server pushes the call log's records:

* :class:`Request` (console to server): ``{"id": 7, "op": "calls", "args": {}}``
* :class:`Reply` (server to console): ``{"id": 7, "result": ...}``
* :class:`Failure` (server to console): ``{"id": 7, "status": 404, "error": "no call 'x' is up"}``;
  ``status`` is the HTTP status the console answers with
* :class:`Records` (server to console, unasked): ``{"records": [{...}, ...]}``, the call log's
  records in the order they were written (the JSON lines of stderr)

Nothing here touches a socket or a clock: :func:`encode` turns a message into bytes and a
:class:`Decoder` turns received bytes into messages, so both ends and the tests share one
implementation.  A line longer than :data:`MAX_LINE` or one that is not such an object is a
:class:`ControlProtocolError` (the connection is then closed: the two ends are the same
program, so a bad line is a bug, never something to skip).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

MAX_LINE = 8 * 1024 * 1024  # a flow's DOT text or a records batch stays far below


class ControlProtocolError(Exception):
    """A line on the control socket that is not a message of this protocol."""


@dataclass(frozen=True)
class Request:
    id: int
    op: str
    args: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Reply:
    id: int
    result: Any


@dataclass(frozen=True)
class Failure:
    id: int
    status: int
    error: str


@dataclass(frozen=True)
class Records:
    records: list[dict[str, Any]]


Message = Request | Reply | Failure | Records


def encode(message: Message) -> bytes:
    """One line of the wire format."""
    if isinstance(message, Request):
        obj: dict[str, Any] = {"id": message.id, "op": message.op, "args": message.args}
    elif isinstance(message, Reply):
        obj = {"id": message.id, "result": message.result}
    elif isinstance(message, Failure):
        obj = {"id": message.id, "status": message.status, "error": message.error}
    else:
        obj = {"records": message.records}
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"), default=str).encode() + b"\n"


def parse(line: bytes) -> Message:
    """One line (without its ``\\n``) as a message; ControlProtocolError when it is none."""
    try:
        obj = json.loads(line)
    except ValueError as exc:
        raise ControlProtocolError(f"not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise ControlProtocolError(f"not a JSON object: {line[:80]!r}")
    if "records" in obj:
        return Records(_typed(obj, "records", list))
    ident = _typed(obj, "id", int)
    if "op" in obj:
        return Request(ident, _typed(obj, "op", str), _typed(obj, "args", dict))
    if "result" in obj:
        return Reply(ident, obj["result"])
    if "error" in obj:
        return Failure(ident, _typed(obj, "status", int), _typed(obj, "error", str))
    raise ControlProtocolError(f"message {ident} has neither op, result nor error")


def _typed(obj: dict[str, Any], key: str, kind: type) -> Any:
    value = obj.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise ControlProtocolError(f"{key!r} must be {kind.__name__}, got {value!r}")
    return value


class Decoder:
    """Received bytes in, whole messages out; keeps the unfinished line between calls."""

    def __init__(self, max_line: int = MAX_LINE) -> None:
        self.max_line = max_line
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[Message]:
        self._buffer += data
        messages: list[Message] = []
        start = 0
        while (end := self._buffer.find(b"\n", start)) >= 0:
            if end - start > self.max_line:
                raise ControlProtocolError(f"line of {end - start} bytes: over {self.max_line}")
            messages.append(parse(bytes(self._buffer[start:end])))
            start = end + 1
        del self._buffer[:start]
        if len(self._buffer) > self.max_line:
            raise ControlProtocolError(f"line of over {self.max_line} bytes")
        return messages
