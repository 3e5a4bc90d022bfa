"""The call journal: one row per call, in SQLite (WAL) in the data folder or in the shared database.

``journal.sqlite3`` (or the ``calls`` table of PostgreSQL, :mod:`ivr.storage`) holds, for every call ``ivr serve`` took: when it
started, was answered and ended, the caller and the number called, the path
through the flow (steps entered and the caller's events: keys, speech,
transfer results...), the outcome (``transferred`` with whom, ``voicemail``
with the mailbox, ``hangup`` or ``caller_hangup`` with the step it happened
in, ``rejected``...), the duration and the hangup cause.  ``ivr calls``
and the console read it, filtered alike (:func:`parse_since` reads ``--since``).

The runner feeds the journal the same records it writes to the call log
(:meth:`Journal.record`), so the two never disagree.  A row is written when
the call starts (a crash still leaves a trace), updated when it is
answered, and completed when it ends; the path is kept in memory meanwhile.
WAL mode lets ``ivr calls`` read while the server writes.  Writes go through
one writer thread, in order (those queued meanwhile in one transaction), so a slow disk, a WAL checkpoint or a database
across the network never stalls the event loop that paces every call's media; reads wait for the writes queued
before them.  A journal that cannot be written is logged and the call goes on:
the journal never costs a caller their call.
"""

from __future__ import annotations

import json
import logging
import queue
import re
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from ivr.storage import JOURNAL_FILE, Storage
from ivr.storage.database import Database, Row, StorageError

log = logging.getLogger("ivr.runtime.journal")

__all__ = ["JOURNAL_FILE", "Journal", "JournalRow"]
MAX_PATH = 400  # entries kept per call: a caller looping in a menu for an hour is not a reason to grow
MAX_BATCH = 500  # writes the writer thread commits in one transaction at most

SCHEMA = """
CREATE TABLE IF NOT EXISTS calls (
    call_id      TEXT PRIMARY KEY,
    started      REAL NOT NULL,
    answered     REAL,
    ended        REAL,
    caller       TEXT NOT NULL DEFAULT '',
    called       TEXT NOT NULL DEFAULT '',
    path         TEXT NOT NULL DEFAULT '[]',
    outcome      TEXT,
    detail       TEXT NOT NULL DEFAULT '',
    step         TEXT NOT NULL DEFAULT '',
    duration     REAL,
    hangup_cause TEXT NOT NULL DEFAULT ''
);
CREATE INDEX IF NOT EXISTS calls_started ON calls (started);
"""

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*(s|m|h|d)")


class SinceError(ValueError):
    """A --since value that is neither an age nor an ISO date/time."""


def parse_since(value: str, now: float | None = None) -> float:
    """Epoch seconds from ``"2h"`` (ago) or ``"2026-11-22"`` / ``"2026-11-22T08:00"`` (UTC)."""
    now = time.time() if now is None else now
    m = _AGE.fullmatch(value.strip())
    if m:
        return now - float(m.group(1)) * {"s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
    try:
        parsed = datetime.fromisoformat(value.strip().removesuffix("Z"))
    except ValueError:
        raise SinceError(f"--since {value!r}: expected an age like 2h, 30m, 7d or a date like 2026-11-22T08:00") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    return parsed.timestamp()


# Caller-side events worth a place in the path (prompt_done and timers are noise).
PATH_EVENTS = ("key", "speech", "transfer_result", "directory_result", "action_done", "recording_done",
               "bridge_ended", "cancel", "bye", "media_timeout")


@dataclass(frozen=True)
class JournalRow:
    """One call as stored; times are epoch seconds."""

    call_id: str
    started: float
    answered: float | None
    ended: float | None
    caller: str
    called: str
    path: tuple[str, ...]
    outcome: str | None
    detail: str
    step: str
    duration: float | None
    hangup_cause: str

    def describe(self) -> str:
        """The outcome in words: ``transferred to 201``, ``voicemail 200``, ``hangup in menu``."""
        if self.outcome is None:
            return "in progress" if self.ended is None else "unknown"
        if self.outcome == "transferred":
            return f"transferred to {self.detail}" if self.detail else "transferred"
        if self.outcome == "pickup":
            return f"picked up a call at {self.detail}"
        if self.outcome in ("voicemail", "voicemail_access"):
            return f"{self.outcome} {self.detail}".strip()
        where = f" in {self.step}" if self.step else ""
        return f"{self.outcome}{where}" + (f" ({self.detail})" if self.detail else "")

    def as_dict(self) -> dict[str, Any]:
        return {
            "call_id": self.call_id, "started": _iso(self.started), "answered": _iso(self.answered),
            "ended": _iso(self.ended), "caller": self.caller, "called": self.called, "path": list(self.path),
            "outcome": self.outcome, "detail": self.detail, "step": self.step, "duration": self.duration,
            "hangup_cause": self.hangup_cause, "summary": self.describe(),
        }


@dataclass
class _Live:
    path: list[str] = field(default_factory=list)
    step: str = ""
    transfer: str = ""  # who answered the last transfer, for calls that end while bridged
    pickup: str = ""  # a phone's call to the pickup code: the extension that picked up
    bridge_end: str = ""  # why the last bridge ended (callee_bye ...): the real hangup cause


class Journal:
    """Writes the call journal (see the module docstring); thread-safe."""

    def __init__(self, db: Database | None, path: Path | str | None = None, *, owns: bool = True) -> None:
        self.db = db
        self.path = path if path is not None else (db.name if db is not None else None)
        self.owns = owns  # close the database with the journal (an embedded file of its own)
        self.live: dict[str, _Live] = {}
        self.failed = False
        # Writes, None (stop) and flush markers; a SimpleQueue's put runs no Python code on the loop.
        self._queue: queue.SimpleQueue[tuple[str, tuple[Any, ...]] | threading.Event | None] = queue.SimpleQueue()
        self._writer: threading.Thread | None = None

    @classmethod
    def open(cls, source: Path | Storage) -> Journal:
        """The journal of a data folder or a storage; one that cannot be opened is logged and writes nothing."""
        storage = source if isinstance(source, Storage) else Storage(Path(source), Path(source))
        try:
            db = storage.journal_db()
            if db.dialect == "sqlite":
                db.script(SCHEMA)
        except (OSError, StorageError) as exc:
            path = storage.data / JOURNAL_FILE if storage.db is None else storage.db.name
            log.error("call journal %s cannot be opened, calls are not journalled: %s", path, exc)
            journal = cls(None, path)
            journal.failed = True
            return journal
        return cls(db, owns=storage.db is None)

    @classmethod
    def reader(cls, source: Path | Storage) -> Journal:
        """Open an existing journal for queries (``ivr calls``); FileNotFoundError if there is none."""
        storage = source if isinstance(source, Storage) else Storage(Path(source), Path(source))
        return cls(storage.journal_db(readonly=True), owns=storage.db is None)

    def close(self) -> None:
        """Write what is queued, stop the writer, close the database."""
        if self._writer is not None:
            self._queue.put(None)
            self._writer.join()
            self._writer = None
        if self.db is not None and self.owns:
            self.db.close()

    def flush(self) -> None:
        """Wait until every write queued so far is in the database."""
        if self._writer is not None:
            done = threading.Event()
            self._queue.put(done)  # set by the writer once the writes queued before it are done
            done.wait()

    # ------------------------------------------------------------------ writing

    def record(self, call_id: str, caller: str, called: str, fields: Mapping[str, Any]) -> None:
        """Take one call-log record of the runner (``event``/``action`` plus details)."""
        event, action = fields.get("event"), fields.get("action")
        if event == "incoming":
            self.started(call_id, caller, called)
            return
        live = self.live.get(call_id)
        if live is None:
            return
        if action == "answer":
            live.pickup = str(fields.get("pickup") or "")
            self.answered(call_id)
        elif action == "step":
            live.step = str(fields.get("step", ""))
            self._add(live, str(fields.get("step", "")))
        elif event == "ended":
            self.ended(call_id, outcome=fields.get("outcome"), detail=fields.get("detail"),
                       cause=str(fields.get("reason", "")))
        elif event == "transfer_result":
            target = str(fields.get("target", ""))
            if fields.get("outcome") == "answered":
                live.transfer = target
            self._add(live, f"transfer:{fields.get('outcome')}" + (f"({target})" if target else ""))
        elif event == "bridge_end":
            live.bridge_end = str(fields.get("reason", ""))
        elif event in PATH_EVENTS and not (event == "key" and "via" in fields):  # a key is logged twice
            self._add(live, _entry(str(event), fields))
        elif action == "reject":
            live.path.append(f"rejected:{fields.get('status')}")

    def started(self, call_id: str, caller: str, called: str, at: float | None = None) -> None:
        self.live[call_id] = _Live()
        self._write(  # a Call-ID seen again starts a fresh row, as INSERT OR REPLACE did
            "INSERT INTO calls (call_id, started, caller, called) VALUES (?, ?, ?, ?) ON CONFLICT (call_id) DO UPDATE"
            " SET started = excluded.started, caller = excluded.caller, called = excluded.called, answered = NULL,"
            " ended = NULL, path = '[]', outcome = NULL, detail = '', step = '', duration = NULL, hangup_cause = ''",
            (call_id, time.time() if at is None else at, caller, called),
        )

    def answered(self, call_id: str, at: float | None = None) -> None:
        self._write("UPDATE calls SET answered = ? WHERE call_id = ?", (time.time() if at is None else at, call_id))

    def ended(self, call_id: str, *, outcome: Any, detail: Any, cause: str, at: float | None = None) -> None:
        live = self.live.pop(call_id, None) or _Live()
        at = time.time() if at is None else at
        result = str(outcome) if outcome else ("rejected" if cause == "rejected" else "caller_hangup")
        text = str(detail or "")
        if not outcome and live.pickup:
            result, text = "pickup", live.pickup
        if live.bridge_end and cause in ("normal", "flow_finished"):
            cause = live.bridge_end  # the flow only hung up because the callee had
        if result == "transferred" and not text:
            text = live.transfer
        self._write(
            "UPDATE calls SET ended = ?, outcome = ?, detail = ?, step = ?, path = ?, hangup_cause = ?,"
            " duration = round(CAST(? - started AS NUMERIC), 3) WHERE call_id = ?",
            (at, result, text, live.step, json.dumps(live.path), cause, at, call_id),
        )

    def _add(self, live: _Live, entry: str) -> None:
        if len(live.path) < MAX_PATH:
            live.path.append(entry)

    def _write(self, sql: str, params: tuple[Any, ...]) -> None:
        if self.db is None:
            return
        if self._writer is None:
            self._writer = threading.Thread(target=self._write_queued, name="ivr-journal", daemon=True)
            self._writer.start()
        self._queue.put((sql, params))

    def _write_queued(self) -> None:
        while True:
            batch = [self._queue.get()]
            while batch[-1] is not None and len(batch) < MAX_BATCH:
                try:
                    batch.append(self._queue.get_nowait())
                except queue.Empty:
                    break
            try:
                self._execute_batch([item for item in batch if isinstance(item, tuple)])
            finally:
                for item in batch:
                    if isinstance(item, threading.Event):
                        item.set()
            if batch[-1] is None:
                return

    def _execute_batch(self, writes: list[tuple[str, tuple[Any, ...]]]) -> None:
        """The writes queued meanwhile in one transaction: one commit, not one per row (calls
        setting up at a few hundred a second queue several rows between two commits).  If the
        database refuses one of them, each is written again on its own, so a bad row costs only
        itself, as before."""
        assert self.db is not None
        if len(writes) > 1:
            try:
                with self.db.transaction() as cur:
                    for sql, params in writes:
                        cur.execute(sql, _clean(params))
                return
            except StorageError:
                pass
        for sql, params in writes:
            self._execute(sql, params)

    def _execute(self, sql: str, params: tuple[Any, ...]) -> None:
        assert self.db is not None
        try:
            self.db.execute(sql, _clean(params))
        except StorageError as exc:
            if not self.failed:  # once: a full disk must not flood the log
                log.error("call journal %s cannot be written: %s", self.path, exc)
            self.failed = True

    # ------------------------------------------------------------------ reading

    def query(
        self, *, since: float | None = None, caller: str | None = None, outcome: str | None = None, limit: int = 50
    ) -> list[JournalRow]:
        """Newest calls first, filtered by start time, caller (substring) and outcome."""
        where: list[str] = []
        params: list[Any] = []
        if since is not None:
            where.append("started >= ?")
            params.append(since)
        if caller:
            where.append("instr(caller, ?) > 0")
            params.append(caller)
        if outcome:
            where.append("outcome = ?")
            params.append(outcome)
        sql = "SELECT call_id, started, answered, ended, caller, called, path, outcome, detail, step, duration," \
              " hangup_cause FROM calls"
        if where:
            sql += " WHERE " + " AND ".join(where)
        if self.db is None:
            return []
        sql += f" ORDER BY started DESC, {self.db.insertion_order} DESC LIMIT ?"
        params.append(max(0, limit))
        self.flush()
        return [_row(r) for r in self.db.execute(sql, params)]


def _entry(event: str, fields: Mapping[str, Any]) -> str:
    if event == "key":
        return f"key:{fields.get('digit', '')}"
    if event == "speech":
        return f"speech:{fields.get('text', '')}"
    if event == "directory_result":
        return f"directory:{fields.get('outcome', '')}" + (f"({fields['extension']})" if fields.get("extension") else "")
    if event == "action_done":
        return f"{fields.get('action', 'action')}:{fields.get('result', '')}"
    return event


def _clean(params: tuple[Any, ...]) -> tuple[Any, ...]:
    # Text a caller chose may hold bytes that were not UTF-8 (surrogates) or NUL: the
    # databases refuse them, and the exception would end the writer thread and every
    # later row with it.
    return tuple(_text(p) if isinstance(p, str) else p for p in params)


def _text(value: str) -> str:
    return value.encode("utf-8", "replace").decode().replace("\x00", "")


def _row(r: Row) -> JournalRow:
    try:
        path = tuple(str(p) for p in json.loads(r["path"] or "[]"))
    except ValueError:
        path = ()
    return JournalRow(r["call_id"], r["started"], r["answered"], r["ended"], r["caller"], r["called"], path,
                      r["outcome"], r["detail"] or "", r["step"] or "", r["duration"], r["hangup_cause"] or "")


def _iso(t: float | None) -> str | None:
    if t is None:
        return None
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t % 1 * 1000):03d}Z"
