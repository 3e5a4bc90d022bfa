"""``ivr db migrate-from-sqlite DATA``: an embedded installation's state moved into the shared database.

Read from the data folder (never changed: the old installation stays as it was):
``journal.sqlite3`` (every call), ``voicemail/index.sqlite3`` (messages keep their
numbers, the e-mail outbox its queue), the audio of every box and its greetings
(copied into the shared folder, same layout), ``registrations.sqlite`` (bindings) and
``switches.json``.  Everything is written in one transaction: a failure leaves the
database as it was.  The voicemail tables must be empty (message numbers are kept);
calls and bindings already there are kept, switches are overwritten.  Recordings
still in ``incoming/`` are not moved: ``ivr serve`` on the old folder recovers them.
"""

from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

from ivr.storage import JOURNAL_FILE, REGISTRATIONS_FILE, VOICEMAIL_INDEX, Storage
from ivr.storage.bindings import COLUMNS as BINDING_COLUMNS
from ivr.storage.database import Cursor, Row, SqliteDatabase, StorageError
from ivr.storage.switches import read_switches

CALL_COLUMNS = "call_id, started, answered, ended, caller, called, path, outcome, detail, step, duration, hangup_cause"
MESSAGE_COLUMNS = "id, mailbox, caller, received_at, duration, status, path"
OUTBOX_COLUMNS = "id, message_id, recipients, attempts, next_attempt, last_error, sent_at"


@dataclass
class Imported:
    """How many of each were moved."""

    calls: int = 0
    messages: int = 0
    outbox: int = 0
    audio_files: int = 0
    bindings: int = 0
    switches: int = 0
    left_incoming: int = 0

    def describe(self) -> str:
        text = (f"{self.calls} call(s), {self.messages} message(s) with {self.audio_files} audio file(s),"
                f" {self.outbox} queued e-mail(s), {self.bindings} registration(s), {self.switches} switch(es)")
        if self.left_incoming:
            text += f"; {self.left_incoming} recording(s) left in incoming/ (serve the old folder once to recover them)"
        return text


def migrate_from_sqlite(data: Path, storage: Storage) -> Imported:
    """Move ``data``'s embedded state into ``storage``'s shared database (see the module docstring)."""
    data = Path(data).resolve()
    if storage.db is None:
        raise StorageError("[storage] has no url: there is no shared database to migrate into")
    if not data.is_dir():
        raise StorageError(f"{data}: no such data folder")
    done = Imported()
    with storage.db.transaction() as cur:
        done.calls = _copy(cur, data / JOURNAL_FILE, "calls", CALL_COLUMNS, "rowid", "ON CONFLICT DO NOTHING")
        if cur.execute("SELECT 1 FROM messages LIMIT 1").fetchone():
            raise StorageError(f"{storage.db.name}: the voicemail tables already hold messages; migrate into an empty one")
        done.messages = _copy(cur, data / VOICEMAIL_INDEX, "messages", MESSAGE_COLUMNS, "id")
        done.outbox = _copy(cur, data / VOICEMAIL_INDEX, "outbox", OUTBOX_COLUMNS, "id")
        for table in ("messages", "outbox"):
            cur.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), COALESCE(MAX(id), 0) + 1, false)"
                        f" FROM {table}")
        done.bindings = _copy(cur, data / REGISTRATIONS_FILE, "bindings", BINDING_COLUMNS, "rowid",
                              "ON CONFLICT DO NOTHING")
        for name, on in read_switches(data).items():
            cur.execute("INSERT INTO switches (name, is_on, changed_at) VALUES (?, ?, 0) ON CONFLICT (name)"
                        " DO UPDATE SET is_on = excluded.is_on", (name, on))
            done.switches += 1
        done.audio_files, done.left_incoming = _copy_audio(data, storage.shared_folder)
    return done


def _rows(path: Path, table: str, columns: str, order: str) -> list[Row]:
    if not path.is_file():
        return []
    db = SqliteDatabase(path, readonly=True)
    try:
        return db.execute(f"SELECT {columns} FROM {table} ORDER BY {order}")
    finally:
        db.close()


def _copy(cur: Cursor, path: Path, table: str, columns: str, order: str, conflict: str = "") -> int:
    rows = _rows(path, table, columns, order)
    marks = ", ".join("?" * len(columns.split(",")))
    for row in rows:
        cur.execute(f"INSERT INTO {table} ({columns}) VALUES ({marks}) {conflict}", tuple(row.values()))
    return len(rows)


def _copy_audio(data: Path, shared: Path) -> tuple[int, int]:
    """Boxes and greetings into the shared folder (nothing to copy when it is the data folder)."""
    source = data / "voicemail"
    if not source.is_dir():
        return 0, 0
    copied = left = 0
    for path in sorted(source.rglob("*.wav")):
        rel = path.relative_to(data)
        if "incoming" in rel.parts:
            left += 1
            continue
        target = Path(shared).resolve() / rel
        if target != path:
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(path, target)
        copied += 1
    return copied, left
