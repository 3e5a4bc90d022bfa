"""Voicemail storage: message audio under ``data/voicemail/<box>/``, an SQLite (WAL) index.

Layout of the data folder::

    voicemail/index.sqlite3              messages + the e-mail outbox (one transaction adds both)
    voicemail/<box>/<stamp>-<id>.wav     stored messages
    voicemail/<box>/incoming/*.wav       recordings in progress (caller and time in the name)
    voicemail/<box>/greetings/<kind>.wav unavailable, busy, temporary, name

A message is first recorded under ``incoming/`` and moved into the box when it
is stored.  After a crash :meth:`VoicemailStore.recover` repairs what was
being recorded and indexes it (and any stored file the index lost), so a
message survives ``kill -9`` of the server.  A deleted message whose e-mail is
still queued keeps its audio until the mail has gone out.
"""

from __future__ import annotations

import builtins
import os
import re
import sqlite3
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import soundfile

from ivr.media.recording import needs_repair, repair_wav

Status = Literal["new", "saved"]
GREETINGS = ("unavailable", "busy", "temporary", "name")
_BOX_RE = re.compile(r"[0-9A-Za-z_+.-]{1,40}")

SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    mailbox TEXT NOT NULL,
    caller TEXT NOT NULL,
    received_at REAL NOT NULL,
    duration REAL NOT NULL,
    status TEXT NOT NULL CHECK (status IN ('new', 'saved', 'deleted')),
    path TEXT NOT NULL UNIQUE
);
CREATE INDEX IF NOT EXISTS messages_box ON messages (mailbox, status, received_at);
CREATE TABLE IF NOT EXISTS outbox (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    message_id INTEGER NOT NULL REFERENCES messages (id),
    recipients TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    next_attempt REAL NOT NULL,
    last_error TEXT NOT NULL DEFAULT '',
    sent_at REAL
);
CREATE INDEX IF NOT EXISTS outbox_due ON outbox (sent_at, next_attempt);
"""


class MailboxFull(Exception):
    """The mailbox holds its ``max_messages`` already."""


@dataclass(frozen=True)
class Message:
    id: int
    mailbox: str
    caller: str
    received_at: float
    duration: float
    status: str
    path: Path


@dataclass(frozen=True)
class OutboxItem:
    id: int
    message: Message
    recipients: tuple[str, ...]
    attempts: int
    next_attempt: float
    last_error: str


class Counts(NamedTuple):
    new: int
    saved: int


def check_box(box: str) -> str:
    """``box`` if it is usable as a folder name; ValueError otherwise."""
    if not _BOX_RE.fullmatch(box) or box in (".", ".."):
        raise ValueError(
            f"mailbox number {box!r} must be 1-40 letters, digits, '+', '-', '_' or '.'"
        )
    return box


class VoicemailStore:
    """Messages, greetings and the e-mail outbox of every mailbox under ``data_dir``; thread-safe."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.root = self.data_dir / "voicemail"
        self.root.mkdir(parents=True, exist_ok=True)
        self.db_path = self.root / "index.sqlite3"
        self._lock = threading.RLock()
        # Told the mailbox whenever its messages change (added, saved, deleted): the message
        # waiting lamps (ivr.runtime.lamps).  Called on the thread that made the change.
        self.listeners: list[Callable[[str], None]] = []
        db = self._connect()
        try:
            db.execute("PRAGMA journal_mode=WAL")  # persistent: readers never block the writer
            db.executescript(SCHEMA)
        finally:
            db.close()

    # ------------------------------------------------------------------ paths

    def box_dir(self, box: str) -> Path:
        return self.root / check_box(box)

    def incoming_path(self, box: str, caller: str, now: float) -> Path:
        """A fresh file to record a message for ``box`` into (caller and time kept in the name)."""
        safe_caller = re.sub(r"[^0-9A-Za-z+]", "", caller)[:32] or "unknown"
        name = f"{int(now)}-{safe_caller}-{uuid.uuid4().hex[:8]}.wav"
        return self.box_dir(box) / "incoming" / name

    def greeting_path(self, box: str, kind: str) -> Path:
        if kind not in GREETINGS:
            raise ValueError(f"unknown greeting {kind!r}; one of {', '.join(GREETINGS)}")
        return self.box_dir(box) / "greetings" / f"{kind}.wav"

    def has_greeting(self, box: str, kind: str) -> bool:
        return self.greeting_path(box, kind).is_file()

    def data_ref(self, path: Path) -> str:
        """The ``data:`` prompt path of a file in the data folder, for ``Play``."""
        return "data:" + Path(path).resolve().relative_to(self.data_dir).as_posix()

    # ------------------------------------------------------------------ messages

    def add(
        self,
        mailbox: str,
        *,
        caller: str,
        duration: float,
        source: Path,
        received_at: float | None = None,
        notify: Sequence[str] = (),
        max_messages: int | None = None,
    ) -> Message:
        """Move the recording ``source`` into ``mailbox`` and index it (and queue its e-mail to ``notify``)."""
        received_at = time.time() if received_at is None else received_at
        if max_messages is not None and sum(self.counts(mailbox)) >= max_messages:
            raise MailboxFull(f"mailbox {mailbox} is full ({max_messages} messages)")
        stamp = time.strftime("%Y%m%d-%H%M%S", time.gmtime(received_at))
        final = self.box_dir(mailbox) / f"{stamp}-{uuid.uuid4().hex[:8]}.wav"
        final.parent.mkdir(parents=True, exist_ok=True)
        os.replace(source, final)  # same file system: atomic; the recording is never half moved
        message = self._index(mailbox, caller, received_at, duration, final, notify)
        self._changed(mailbox)
        return message

    def _index(
        self,
        mailbox: str,
        caller: str,
        received_at: float,
        duration: float,
        path: Path,
        notify: Sequence[str],
    ) -> Message:
        rel = path.relative_to(self.data_dir).as_posix()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO messages (mailbox, caller, received_at, duration, status, path) VALUES (?, ?, ?, ?, 'new', ?)",
                (mailbox, caller, received_at, duration, rel),
            )
            message_id = int(cur.lastrowid or 0)
            if notify:
                db.execute(
                    "INSERT INTO outbox (message_id, recipients, next_attempt) VALUES (?, ?, ?)",
                    (message_id, ",".join(notify), received_at),
                )
        return Message(message_id, mailbox, caller, received_at, duration, "new", path)

    def list(self, mailbox: str, status: Status | None = None) -> list[Message]:
        """Messages of ``mailbox``, new ones first, each group oldest first (the order callers hear)."""
        sql = "SELECT * FROM messages WHERE mailbox = ? AND status != 'deleted'"
        args: tuple[str, ...] = (mailbox,)
        if status is not None:
            sql, args = sql + " AND status = ?", (mailbox, status)
        sql += " ORDER BY status = 'saved', received_at, id"
        with self._tx() as db:
            return [self._message(row) for row in db.execute(sql, args)]

    def get(self, message_id: int) -> Message | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM messages WHERE id = ? AND status != 'deleted'", (message_id,)
            ).fetchone()
        return self._message(row) if row else None

    def mark_saved(self, message_id: int) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE messages SET status = 'saved' WHERE id = ? AND status = 'new'",
                (message_id,),
            )
        message = self.get(message_id)
        if message is not None:
            self._changed(message.mailbox)

    def _changed(self, mailbox: str) -> None:
        for listener in list(self.listeners):
            listener(mailbox)

    def delete(self, message_id: int) -> bool:
        """Delete a message; its audio stays until a queued e-mail carrying it has been sent."""
        with self._tx() as db:
            row = db.execute(
                "SELECT * FROM messages WHERE id = ? AND status != 'deleted'", (message_id,)
            ).fetchone()
            if row is None:
                return False
            pending = db.execute(
                "SELECT 1 FROM outbox WHERE message_id = ? AND sent_at IS NULL", (message_id,)
            ).fetchone()
            if pending:
                db.execute("UPDATE messages SET status = 'deleted' WHERE id = ?", (message_id,))
            else:
                db.execute("DELETE FROM outbox WHERE message_id = ?", (message_id,))
                db.execute("DELETE FROM messages WHERE id = ?", (message_id,))
        if not pending:
            (self.data_dir / row["path"]).unlink(missing_ok=True)
        self._changed(row["mailbox"])
        return True

    def counts(self, mailbox: str) -> Counts:
        with self._tx() as db:
            rows = dict(
                db.execute(
                    "SELECT status, COUNT(*) FROM messages WHERE mailbox = ? GROUP BY status",
                    (mailbox,),
                ).fetchall()
            )
        return Counts(rows.get("new", 0), rows.get("saved", 0))

    # ------------------------------------------------------------------ outbox (Voice2Mail)

    def due_mail(self, now: float) -> builtins.list[OutboxItem]:
        sql = (
            "SELECT o.id AS oid, o.recipients, o.attempts, o.next_attempt, o.last_error, m.* FROM outbox o "
            "JOIN messages m ON m.id = o.message_id WHERE o.sent_at IS NULL AND o.next_attempt <= ? "
            "ORDER BY o.next_attempt, o.id"
        )
        with self._tx() as db:
            rows = db.execute(sql, (now,)).fetchall()
        return [
            OutboxItem(
                row["oid"],
                self._message(row),
                tuple(row["recipients"].split(",")),
                row["attempts"],
                row["next_attempt"],
                row["last_error"],
            )
            for row in rows
        ]

    def next_mail_due(self) -> float | None:
        with self._tx() as db:
            row = db.execute(
                "SELECT MIN(next_attempt) FROM outbox WHERE sent_at IS NULL"
            ).fetchone()
        return row[0]

    def mail_sent(self, item_id: int, now: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET sent_at = ?, last_error = '' WHERE id = ?", (now, item_id)
            )
            row = db.execute(
                "SELECT m.id, m.path FROM messages m JOIN outbox o ON o.message_id = m.id "
                "WHERE o.id = ? AND m.status = 'deleted'",
                (item_id,),
            ).fetchone()
        if row is not None:  # deleted by its owner while the mail was queued: now it can go
            with self._tx() as db:
                db.execute("DELETE FROM outbox WHERE message_id = ?", (row["id"],))
                db.execute("DELETE FROM messages WHERE id = ?", (row["id"],))
            (self.data_dir / row["path"]).unlink(missing_ok=True)

    def mail_failed(self, item_id: int, error: str, next_attempt: float) -> None:
        with self._tx() as db:
            db.execute(
                "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ?",
                (error[:500], next_attempt, item_id),
            )

    def mail_status(self, message_id: int) -> builtins.list[tuple[int, str, float | None]]:
        """(attempts, last_error, sent_at) of each queued e-mail of a message."""
        with self._tx() as db:
            rows = db.execute(
                "SELECT attempts, last_error, sent_at FROM outbox WHERE message_id = ? ORDER BY id",
                (message_id,),
            ).fetchall()
        return [(r[0], r[1], r[2]) for r in rows]

    # ------------------------------------------------------------------ crash recovery

    def recover(
        self, notify: Mapping[str, Sequence[str]] = {}, *, min_length: float = 1.0
    ) -> builtins.list[Message]:
        """Index what a crash left: recordings in ``incoming/`` (repaired) and stored files the index lost."""
        recovered = []
        for box_dir in sorted(
            p for p in self.root.iterdir() if p.is_dir() and _BOX_RE.fullmatch(p.name)
        ):
            box = box_dir.name
            for path in sorted((box_dir / "incoming").glob("*.wav")):
                message = self._recover_incoming(box, path, notify.get(box, ()), min_length)
                if message is not None:
                    recovered.append(message)
            with self._tx() as db:
                known = {row[0] for row in db.execute("SELECT path FROM messages")}
            for path in sorted(box_dir.glob("*.wav")):
                if path.relative_to(self.data_dir).as_posix() not in known:
                    duration = _duration(path)
                    recovered.append(
                        self._index(box, "unknown", path.stat().st_mtime, duration, path, ())
                    )
        return recovered

    def _recover_incoming(
        self, box: str, path: Path, notify: Sequence[str], min_length: float
    ) -> Message | None:
        try:
            duration = repair_wav(path) if needs_repair(path) else _duration(path)
        except (OSError, RuntimeError):
            return None  # not audio at all: leave it for the admin
        if duration < min_length:
            path.unlink(missing_ok=True)
            return None
        stamp, _, rest = path.stem.partition("-")
        caller = rest.rsplit("-", 1)[0] if "-" in rest else "unknown"
        received = float(stamp) if stamp.isdigit() else path.stat().st_mtime
        return self.add(
            box, caller=caller, duration=duration, source=path, received_at=received, notify=notify
        )

    # ------------------------------------------------------------------ internals

    def _message(self, row: sqlite3.Row) -> Message:
        return Message(
            row["id"],
            row["mailbox"],
            row["caller"],
            row["received_at"],
            row["duration"],
            row["status"],
            self.data_dir / row["path"],
        )

    def _connect(self) -> sqlite3.Connection:
        db = sqlite3.connect(self.db_path, timeout=10, isolation_level=None)
        db.row_factory = sqlite3.Row
        db.execute(
            "PRAGMA synchronous=FULL"
        )  # a stored message survives a power cut, not just a crash
        return db

    @contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        with self._lock:
            db = self._connect()
            try:
                db.execute("BEGIN IMMEDIATE")
                try:
                    yield db
                except BaseException:
                    db.execute("ROLLBACK")
                    raise
                db.execute("COMMIT")
            finally:
                db.close()


def _duration(path: Path) -> float:
    return float(soundfile.info(str(path)).duration)
