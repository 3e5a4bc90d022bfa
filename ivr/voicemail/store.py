"""Voicemail storage: message audio under ``voicemail/<box>/``, an index in SQLite (WAL) or PostgreSQL.

Layout of the data folder (embedded, the default)::

    voicemail/index.sqlite3              messages + the e-mail outbox (one transaction adds both)
    voicemail/<box>/<stamp>-<id>.wav     stored messages
    voicemail/<box>/incoming/*.wav       recordings in progress (caller and time in the name)
    voicemail/<box>/greetings/<kind>.wav unavailable, busy, temporary, name

A message is first recorded under ``incoming/`` and moved into the box when it
is stored.  After a crash :meth:`VoicemailStore.recover` repairs what was
being recorded and indexes it (and any stored file the index lost), so a
message survives ``kill -9`` of the server.  A deleted message whose e-mail is
still queued keeps its audio until the mail has gone out.

Several nodes (``[storage]`` with a PostgreSQL ``url``, :mod:`ivr.storage`): the index
is the database's ``messages`` and ``outbox`` tables and the boxes and greetings live
in the ``shared`` folder every node mounts (same layout, without ``index.sqlite3``);
a recording in progress stays under this node's own ``data/voicemail/<box>/incoming/``
until it is stored, so a node starting up recovers only its own.  Paths in the index
and in ``data:`` prompt references are relative to the shared folder (the data
folder when embedded).
"""

from __future__ import annotations

import builtins
import errno
import os
import re
import shutil
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple

import soundfile

from ivr.media.recording import needs_repair, repair_wav
from ivr.storage import VOICEMAIL_INDEX, Storage
from ivr.storage.database import Database, Row, StorageError

Status = Literal["new", "saved"]
GREETINGS = ("unavailable", "busy", "temporary", "name")
_BOX_RE = re.compile(r"[0-9A-Za-z_+.-]{1,40}")
SETTLE = 60.0  # seconds: a shared box's unindexed file younger than this may be another node's add in progress

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
    """Messages, greetings and the e-mail outbox of every mailbox; thread-safe.

    ``data_dir`` is this process's data folder; ``db`` the index (by default the SQLite
    file in it) and ``shared`` the folder holding the boxes (by default ``data_dir``).
    """

    def __init__(self, data_dir: Path, db: Database | None = None, *, shared: Path | None = None) -> None:
        self.data_dir = Path(data_dir).resolve()
        self.base = Path(shared).resolve() if shared is not None else self.data_dir
        self.root = self.base / "voicemail"
        self.root.mkdir(parents=True, exist_ok=True)
        self.incoming_root = self.data_dir / "voicemail"
        self.db_path = self.data_dir / VOICEMAIL_INDEX
        self.db = db if db is not None else Storage(self.data_dir, self.data_dir).voicemail_db()
        if self.db.dialect == "sqlite":
            self.db.script(SCHEMA)
        # Told the mailbox whenever its messages change (added, saved, deleted): the message
        # waiting lamps (ivr.runtime.lamps).  Called on the thread that made the change.
        self.listeners: list[Callable[[str], None]] = []

    @classmethod
    def on(cls, storage: Storage) -> VoicemailStore:
        """The store of a deployment's storage (embedded or shared)."""
        return cls(storage.data, storage.voicemail_db(), shared=storage.shared_folder)

    @property
    def shared(self) -> bool:
        return self.base != self.data_dir

    # ------------------------------------------------------------------ paths

    def box_dir(self, box: str) -> Path:
        return self.root / check_box(box)

    def incoming_path(self, box: str, caller: str, now: float) -> Path:
        """A fresh file to record a message for ``box`` into (caller and time kept in the name)."""
        safe_caller = re.sub(r"[^0-9A-Za-z+]", "", caller)[:32] or "unknown"
        name = f"{int(now)}-{safe_caller}-{uuid.uuid4().hex[:8]}.wav"
        return self.incoming_root / check_box(box) / "incoming" / name

    def greeting_path(self, box: str, kind: str) -> Path:
        if kind not in GREETINGS:
            raise ValueError(f"unknown greeting {kind!r}; one of {', '.join(GREETINGS)}")
        return self.box_dir(box) / "greetings" / f"{kind}.wav"

    def has_greeting(self, box: str, kind: str) -> bool:
        return self.greeting_path(box, kind).is_file()

    def greeting_draft(self, box: str, kind: str) -> Path:
        """Where a greeting recorded by phone goes until its owner keeps it: this node's data folder
        (a call records only there), beside the greeting when embedded."""
        name = self.greeting_path(box, kind).stem
        return self.incoming_root / check_box(box) / "greetings" / f".{name}-new.wav"

    def keep_greeting(self, box: str, kind: str, draft: Path) -> None:
        """Put a recorded draft in place of the greeting (copied into a shared folder on another disk)."""
        final = self.greeting_path(box, kind)
        final.parent.mkdir(parents=True, exist_ok=True)
        _move(Path(draft), final)

    def remove_greeting(self, box: str, kind: str) -> bool:
        """Delete a greeting; whether there was one."""
        path = self.greeting_path(box, kind)
        existed = path.exists()
        path.unlink(missing_ok=True)
        return existed

    def data_ref(self, path: Path) -> str:
        """The ``data:`` prompt path of a file in the shared or the data folder, for ``Play``."""
        real = Path(path).resolve()
        base = self.base if real.is_relative_to(self.base) else self.data_dir
        return "data:" + real.relative_to(base).as_posix()

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
        _move(Path(source), final)
        message = self._index(mailbox, caller, received_at, duration, final, notify)
        self.changed(mailbox)
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
        rel = path.relative_to(self.base).as_posix()
        with self.db.transaction() as db:
            row = db.execute(
                "INSERT INTO messages (mailbox, caller, received_at, duration, status, path)"
                " VALUES (?, ?, ?, ?, 'new', ?) RETURNING id",
                (mailbox, caller, received_at, duration, rel),
            ).fetchone()
            message_id = int(row["id"]) if row else 0
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
        return [self._message(row) for row in self.db.execute(sql, args)]

    def get(self, message_id: int) -> Message | None:
        rows = self.db.execute("SELECT * FROM messages WHERE id = ? AND status != 'deleted'", (message_id,))
        return self._message(rows[0]) if rows else None

    def mark_saved(self, message_id: int) -> None:
        self.db.execute("UPDATE messages SET status = 'saved' WHERE id = ? AND status = 'new'", (message_id,))
        message = self.get(message_id)
        if message is not None:
            self.changed(message.mailbox)

    def changed(self, mailbox: str) -> None:
        """Tell the listeners (the lamps) that ``mailbox`` changed (also when another process changed it)."""
        for listener in list(self.listeners):
            listener(mailbox)

    def delete(self, message_id: int) -> bool:
        """Delete a message; its audio stays until a queued e-mail carrying it has been sent."""
        with self.db.transaction() as db:
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
            (self.base / row["path"]).unlink(missing_ok=True)
        self.changed(row["mailbox"])
        return True

    def counts(self, mailbox: str) -> Counts:
        found = self.db.execute(
            "SELECT status, COUNT(*) AS n FROM messages WHERE mailbox = ? GROUP BY status", (mailbox,)
        )
        rows = {r["status"]: int(r["n"]) for r in found}
        return Counts(rows.get("new", 0), rows.get("saved", 0))

    # ------------------------------------------------------------------ outbox (Voice2Mail)

    def due_mail(self, now: float) -> builtins.list[OutboxItem]:
        sql = (
            "SELECT o.id AS oid, o.recipients, o.attempts, o.next_attempt, o.last_error, m.* FROM outbox o "
            "JOIN messages m ON m.id = o.message_id WHERE o.sent_at IS NULL AND o.next_attempt <= ? "
            "ORDER BY o.next_attempt, o.id"
        )
        rows = self.db.execute(sql, (now,))
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
        rows = self.db.execute("SELECT MIN(next_attempt) AS due FROM outbox WHERE sent_at IS NULL")
        return rows[0]["due"] if rows else None

    def mail_sent(self, item_id: int, now: float) -> None:
        with self.db.transaction() as db:
            db.execute(
                "UPDATE outbox SET sent_at = ?, last_error = '' WHERE id = ?", (now, item_id)
            )
            row = db.execute(
                "SELECT m.id, m.path FROM messages m JOIN outbox o ON o.message_id = m.id "
                "WHERE o.id = ? AND m.status = 'deleted'",
                (item_id,),
            ).fetchone()
        if row is not None:  # deleted by its owner while the mail was queued: now it can go
            with self.db.transaction() as db:
                db.execute("DELETE FROM outbox WHERE message_id = ?", (row["id"],))
                db.execute("DELETE FROM messages WHERE id = ?", (row["id"],))
            (self.base / row["path"]).unlink(missing_ok=True)

    def mail_failed(self, item_id: int, error: str, next_attempt: float) -> None:
        self.db.execute(
            "UPDATE outbox SET attempts = attempts + 1, last_error = ?, next_attempt = ? WHERE id = ?",
            (error[:500], next_attempt, item_id),
        )

    def mail_status(self, message_id: int) -> builtins.list[tuple[int, str, float | None]]:
        """(attempts, last_error, sent_at) of each queued e-mail of a message."""
        rows = self.db.execute(
            "SELECT attempts, last_error, sent_at FROM outbox WHERE message_id = ? ORDER BY id", (message_id,)
        )
        return [(r["attempts"], r["last_error"], r["sent_at"]) for r in rows]

    # ------------------------------------------------------------------ crash recovery

    def recover(
        self, notify: Mapping[str, Sequence[str]] = {}, *, min_length: float = 1.0
    ) -> builtins.list[Message]:
        """Index what a crash left: recordings in ``incoming/`` (repaired) and stored files the index lost.

        In a shared folder a file younger than :data:`SETTLE` is left alone (another node may
        be indexing it right now), and one another node indexed first is skipped.
        """
        recovered = []
        for box_dir in _boxes(self.incoming_root):
            for path in sorted((box_dir / "incoming").glob("*.wav")):
                message = self._recover_incoming(box_dir.name, path, notify.get(box_dir.name, ()), min_length)
                if message is not None:
                    recovered.append(message)
        known = {row["path"] for row in self.db.execute("SELECT path FROM messages")}
        settled = time.time() - SETTLE if self.shared else float("inf")
        for box_dir in _boxes(self.root):
            for path in sorted(box_dir.glob("*.wav")):
                if path.relative_to(self.base).as_posix() in known or path.stat().st_mtime > settled:
                    continue
                try:
                    message = self._index(box_dir.name, "unknown", path.stat().st_mtime, _duration(path), path, ())
                except StorageError:
                    if not self.shared:
                        raise
                    continue  # another node indexed it meanwhile
                recovered.append(message)
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

    def _message(self, row: Row) -> Message:
        return Message(
            int(row["id"]),
            row["mailbox"],
            row["caller"],
            row["received_at"],
            row["duration"],
            row["status"],
            self.base / row["path"],
        )


def _boxes(root: Path) -> builtins.list[Path]:
    if not root.is_dir():
        return []
    return sorted(p for p in root.iterdir() if p.is_dir() and _BOX_RE.fullmatch(p.name))


def _move(source: Path, final: Path) -> None:
    """Move a recording into its box: atomic on one file system; copied, synced and renamed into a shared one."""
    try:
        os.replace(source, final)
        return
    except OSError as exc:
        if exc.errno != errno.EXDEV:
            raise
    partial = final.with_name(f".{final.name}.part")
    with open(source, "rb") as src, open(partial, "wb") as dst:
        shutil.copyfileobj(src, dst)
        dst.flush()
        os.fsync(dst.fileno())
    os.replace(partial, final)  # never half a message under its final name
    source.unlink()


def _duration(path: Path) -> float:
    return float(soundfile.info(str(path)).duration)
