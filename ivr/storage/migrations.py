"""Schema migrations of the PostgreSQL back end: an ordered set of SQL files and a version table.

``ivr/storage/postgresql/NNNN_name.sql`` are applied in order, each in one transaction
that also records it in ``ivr_schema`` (version, name, when), under an advisory lock so
two nodes upgrading at once apply each file once.  ``ivr db upgrade`` runs
:func:`upgrade`; ``ivr serve`` only checks (:func:`check_current`) and refuses to start on
a database that is behind or ahead of its code, naming the command to run.

Why not alembic: the schema is a handful of tables written in plain SQL, the embedded
SQLite files keep creating theirs as before, and nothing here needs an ORM's model
diffing; an ordered SQL set is read by anyone who knows SQL and adds no dependency.

Adding state (subscriptions, web users...) is one new file with the next number; the
embedded back end creates the same table in its own SQLite file (see docs/operations.md).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources

from ivr.storage.database import Database, StorageError, split_statements

VERSION_TABLE = """CREATE TABLE IF NOT EXISTS ivr_schema (
    version    integer PRIMARY KEY,
    name       text NOT NULL,
    applied_at timestamptz NOT NULL DEFAULT now()
)"""
LOCK_KEY = 0x1F7A5C  # pg_advisory_xact_lock key: one upgrade at a time
_FILE = re.compile(r"(\d{4})_([a-z0-9_]+)\.sql")


@dataclass(frozen=True)
class Migration:
    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """The SQL files shipped with this ivr, in order."""
    folder = resources.files("ivr.storage") / "postgresql"
    found = []
    for entry in folder.iterdir():
        m = _FILE.fullmatch(entry.name)
        if m:
            found.append(Migration(int(m.group(1)), m.group(2), entry.read_text(encoding="utf-8")))
    return sorted(found, key=lambda m: m.version)


def current_version(db: Database) -> int:
    """The last version applied (0 for an empty database)."""
    with db.transaction() as cur:
        cur.execute(VERSION_TABLE)
        row = cur.execute("SELECT COALESCE(MAX(version), 0) AS v FROM ivr_schema").fetchone()
    return int(row["v"]) if row else 0


def upgrade(db: Database) -> list[Migration]:
    """Apply what is missing; returns the migrations applied now (none when up to date)."""
    applied = []
    for migration in migrations():
        with db.transaction() as cur:
            cur.execute(VERSION_TABLE)
            cur.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_KEY,))
            if cur.execute("SELECT 1 FROM ivr_schema WHERE version = ?", (migration.version,)).fetchone():
                continue
            for statement in split_statements(migration.sql):
                cur.execute(statement)
            cur.execute("INSERT INTO ivr_schema (version, name) VALUES (?, ?)", (migration.version, migration.name))
        applied.append(migration)
    return applied


def check_current(db: Database) -> None:
    """StorageError unless the database has exactly this ivr's schema."""
    have, want = current_version(db), migrations()[-1].version
    if have < want:
        raise StorageError(f"{db.name}: schema version {have}, this ivr needs {want}: run `ivr db upgrade`")
    if have > want:
        raise StorageError(f"{db.name}: schema version {have} is newer than this ivr ({want})")
