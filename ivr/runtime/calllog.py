"""Structured call-event logging for ``ivr serve``.

One line per call event on stderr: what the caller did (``event``), what the
flow did (``action``), where the call is (``state``), keyed by ``call_id`` with
``caller`` and ``called`` on every line so one grep finds a whole call.  JSON
lines by default (``--log-format json``), ``key=value`` text otherwise.  Server
lines (ready, draining, stopped) carry ``event`` and a human ``message``; tests
and supervisors wait for ``listening on udp:HOST:PORT tcp:HOST:PORT``.  ``feeds`` get every record once it is
formatted, in batches, on the writer thread (the control socket to the console process,
:mod:`ivr.runtime.companion`, for its live events and metrics): the loop pays nothing for them.

In the server every record is handed, as the dict it is, to a writer thread that
formats and writes it (``json.dumps``, the time stamp, the write and flush are
the thread's work, never the event loop's).  The queue is bounded: when the
writer falls behind (a stderr pipe nobody reads) records are dropped and
counted, and the writer says how many in a ``log_dropped`` line once it can
write again.  A record's values must not change after it is logged (they are
fresh values: strings, numbers, lists made for the record).
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import fields, is_dataclass
from typing import Any, TextIO

from ivr.dsl.events import Action, Event
from ivr.runtime.trace import jsonable

log = logging.getLogger("ivr.runtime.calllog")


def describe(item: Event | Action) -> dict[str, Any]:
    """An event's or action's fields as JSON-friendly values, without the ``kind`` (and without the
    fields kept out of its repr: a storage call's function and its rows)."""
    out: dict[str, Any] = {}
    if is_dataclass(item):
        for name in _shown_fields(type(item)):
            value = getattr(item, name)
            if isinstance(value, str | int | float | bool | type(None)):
                out[name] = value
            elif isinstance(value, tuple | list):
                out[name] = jsonable(value)  # a ring plan stays a list of lists
            else:
                out[name] = str(value)
    return out


_SHOWN: dict[type, tuple[str, ...]] = {}  # a few dozen event and action types: their fields never change


def _shown_fields(kind: type) -> tuple[str, ...]:
    names = _SHOWN.get(kind)
    if names is None:
        names = _SHOWN[kind] = tuple(f.name for f in fields(kind) if f.repr)
    return names


#: Records queued for the writer thread at most; more are dropped and counted (about 20 s
#: of the log of 1,000 calls setting up at once: a writer that far behind is stuck).
MAX_QUEUED = 50_000


class CallLog:
    """Writes call and server events as JSON lines (or text) to a stream.

    With ``threaded=True`` (the server) records are handed to a writer thread that formats
    and writes them, so neither the encoding nor a slow reader of stderr (a pipe to a busy
    log collector) ever stalls the event loop; the order of lines is kept, and :meth:`close`
    writes whatever is still queued.  At most ``max_queued`` records wait; beyond that they
    are dropped (``dropped`` counts them) and a ``log_dropped`` line says so.
    """

    def __init__(
        self, stream: TextIO | None = None, *, fmt: str = "json", threaded: bool = False, max_queued: int = MAX_QUEUED
    ) -> None:
        if fmt not in ("json", "text"):
            raise ValueError(f"log format must be json or text, not {fmt!r}")
        self.stream = stream or sys.stderr
        self.fmt = fmt
        self.max_queued = max_queued
        self.dropped = 0  # records the queue had no room for (counted on the caller's thread)
        self._queue: queue.SimpleQueue[dict[str, Any] | None] | None = None
        self._thread: threading.Thread | None = None
        # Called with each batch of records once formatted (their "ts" a string), in order, on
        # the writer thread (in the server) or the caller's (unthreaded); a feed must not block.
        self.feeds: list[Callable[[list[dict[str, Any]]], None]] = []
        if threaded:
            self._queue = queue.SimpleQueue()
            self._thread = threading.Thread(target=self._writer, name="ivr-calllog", daemon=True)
            self._thread.start()

    def close(self) -> None:
        """Write what is queued and stop the writer thread."""
        if self._queue is not None and self._thread is not None:
            self._queue.put(None)  # after the records already queued: they are written first
            self._thread.join(10)
            self._queue = None

    def _writer(self) -> None:
        assert self._queue is not None
        q = self._queue
        reported = 0
        while True:
            batch = [q.get()]
            while len(batch) < 1000 and batch[-1] is not None:
                try:
                    batch.append(q.get_nowait())
                except queue.Empty:
                    break
            records = [r for r in batch if r is not None]
            lines = [self._format(r) for r in records]
            self._feed(records)
            if self.dropped != reported:
                lines.append(self._format(self._dropped_record(self.dropped - reported)))
                reported = self.dropped
            if lines:
                self._emit("".join(lines))
            if batch[-1] is None:
                return

    def _feed(self, records: list[dict[str, Any]]) -> None:
        for feed in list(self.feeds):
            try:
                feed(records)
            except Exception:  # a feed's bug must not stop the log
                log.exception("call log feed failed")

    @staticmethod
    def _dropped_record(count: int) -> dict[str, Any]:
        return {"ts": time.time(), "event": "log_dropped", "dropped": count,
                "message": f"{count} log record(s) dropped: the log writer fell behind"}

    def server(self, event: str, message: str, **extra: Any) -> None:
        self._write({"ts": time.time(), "event": event, "message": message, **extra})

    def call(
        self,
        call_id: str,
        *,
        caller: str,
        called: str,
        state: str,
        event: str | None = None,
        action: str | None = None,
        **extra: Any,
    ) -> None:
        record: dict[str, Any] = {"ts": time.time(), "call_id": call_id, "caller": caller, "called": called, "state": state}
        if event is not None:
            record["event"] = event
        if action is not None:
            record["action"] = action
        record.update(extra)
        self._write(record)

    def _write(self, record: dict[str, Any]) -> None:
        q = self._queue
        if q is None:
            self._emit(self._format(record))
            self._feed([record])
        elif q.qsize() < self.max_queued:
            q.put(record)
        else:
            self.dropped += 1

    def _format(self, record: dict[str, Any]) -> str:
        """One line of text for ``record`` (on the writer thread in the server)."""
        record["ts"] = _ts(record["ts"])
        if self.fmt == "json":
            line = _JSON.encode(record)
        elif "call_id" not in record:
            line = f"{record['ts']} {record['message']}"
        else:
            line = " ".join(f"{k}={_text(v)}" for k, v in record.items())
        return line + "\n"

    def _emit(self, text: str) -> None:
        try:
            self.stream.write(text)
            self.stream.flush()
        except (BrokenPipeError, ValueError, OSError):
            pass  # the reader went away; calls go on


#: One encoder for every line (``json.dumps`` with options builds a new one per call).
_JSON = json.JSONEncoder(ensure_ascii=False, default=str)
_last_second: tuple[int, str] = (-1, "")  # the last whole second formatted, and its text (replaced whole)


def _ts(now: float) -> str:
    global _last_second
    second = int(now)
    last = _last_second
    if last[0] != second:  # records come in bursts: strftime once per second, not per line
        last = _last_second = (second, time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second)))
    return f"{last[1]}.{int(now % 1 * 1000):03d}Z"


def _text(value: Any) -> str:
    text = str(value)
    return json.dumps(text) if (" " in text or '"' in text or not text) else text
