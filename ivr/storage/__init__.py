"""Where a deployment's state lives: embedded SQLite files or a PostgreSQL database every node shares.

:func:`open_storage` reads ``[storage]`` of the deployment file and gives a :class:`Storage`:

* embedded (no ``url``, the default): the files of the data folder, as always:
  ``journal.sqlite3``, ``voicemail/index.sqlite3`` and the audio beside it,
  ``registrations.sqlite``, ``switches.json``; each store creates its SQLite schema
  when it opens its file;
* shared (``url = "postgresql://..."``): one database (schema by ``ivr db upgrade``,
  :mod:`ivr.storage.migrations`) holding the journal, the voicemail index and outbox,
  the bindings and the switches, through one connection pool per node; voicemail
  audio and greetings live in the ``shared`` folder every node mounts (a node's own
  recordings in progress stay in its data folder until they are stored).

The stores themselves (:mod:`ivr.runtime.journal`, :mod:`ivr.voicemail.store`,
:mod:`ivr.storage.bindings`, :mod:`ivr.storage.switches`) write their SQL once against
:class:`~ivr.storage.database.Database`.  This package sits beside the runtime's other
inputs (it may use ivr.config and ivr.sip's records, never the runtime or the CLI).
PIN hashes and follow-me numbers are deployment settings in ``ivr.toml``, which every
node reads: they are not state.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from ivr.config import Config
from ivr.sip.registrar import BindingStore, RegistrationStore
from ivr.storage.database import Database, PostgresDatabase, SqliteDatabase, StorageError

__all__ = ["Storage", "StorageError", "open_storage", "JOURNAL_FILE", "VOICEMAIL_INDEX", "REGISTRATIONS_FILE"]

JOURNAL_FILE = "journal.sqlite3"
VOICEMAIL_INDEX = "voicemail/index.sqlite3"
REGISTRATIONS_FILE = "registrations.sqlite"


@dataclass
class Storage:
    """The state of one deployment as seen by one process (see the module docstring)."""

    data: Path  # this node's own data folder
    shared_folder: Path  # the base of voicemail audio (the data folder when embedded)
    db: PostgresDatabase | None = None  # the shared database; None when embedded
    _opened: list[Database] = field(default_factory=list)

    @property
    def kind(self) -> Literal["embedded", "postgresql"]:
        return "embedded" if self.db is None else "postgresql"

    def journal_db(self, *, readonly: bool = False) -> Database:
        """The call journal's database; ``readonly`` (``ivr calls``) needs an existing file."""
        if self.db is not None:
            return self.db
        path = self.data / JOURNAL_FILE
        if readonly and not path.is_file():
            raise FileNotFoundError(f"no call journal in {self.data} (no call has been taken there yet)")
        if not readonly:
            self.data.mkdir(parents=True, exist_ok=True)
        return self._keep(SqliteDatabase(path, synchronous="NORMAL", readonly=readonly, timeout=5.0))

    def voicemail_db(self) -> Database:
        """The voicemail index and outbox; FULL sync when embedded: a message survives a power cut."""
        if self.db is not None:
            return self.db
        path = self.data / VOICEMAIL_INDEX
        path.parent.mkdir(parents=True, exist_ok=True)
        return self._keep(SqliteDatabase(path, synchronous="FULL"))

    def bindings(self) -> BindingStore:
        """The registrar's bindings."""
        if self.db is not None:
            from ivr.storage.bindings import TableBindings

            return TableBindings(self.db)
        self.data.mkdir(parents=True, exist_ok=True)
        return RegistrationStore(self.data / REGISTRATIONS_FILE)

    def _keep(self, db: Database) -> Database:
        self._opened.append(db)
        return db

    def close(self) -> None:
        for db in self._opened:
            db.close()
        self._opened.clear()
        if self.db is not None:
            self.db.close()


def open_storage(config: Config, *, check_schema: bool = True) -> Storage:
    """The storage ``config`` names; a shared database must have this ivr's schema (unless not asked)."""
    shared = config.storage.shared or config.data
    if not config.storage.url:
        return Storage(config.data, config.data)
    db = PostgresDatabase(config.storage.url, max_size=config.storage.pool_size)
    if check_schema:
        from ivr.storage.migrations import check_current

        try:
            check_current(db)
        except StorageError:
            db.close()
            raise
    return Storage(config.data, shared, db)
