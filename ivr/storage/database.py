"""One SQL database, embedded (SQLite) or shared (PostgreSQL), behind one small interface.

The stores that keep ivr's state (the call journal, the voicemail index, the switches,
the registrations) write their SQL once, in the subset both engines speak: ``?``
placeholders, ``INSERT ... RETURNING``, ``ON CONFLICT``, rows read by column name.
A :class:`Database` runs it: :meth:`Database.transaction` gives a :class:`Cursor` inside
one transaction (SQLite ``BEGIN IMMEDIATE``; a PostgreSQL connection borrowed from the
pool), :meth:`Database.execute` runs one statement in a transaction of its own.

What differs between the engines stays here: :class:`SqliteDatabase` keeps one
connection per file (WAL, the ``synchronous`` level its store asks for) behind a lock;
:class:`PostgresDatabase` shares a ``psycopg_pool.ConnectionPool`` and turns ``?`` into
psycopg's ``%s``.  Both raise :class:`StorageError` (naming the database) for any
failure of the engine, so a store catches one class whichever back end it runs on.

Every call blocks: the runtime calls these from worker threads (the journal's writer,
the registrar's executor, the switch listener, the storage workers that run the voicemail
dialogues' and the transfers' lookups), never from the event loop once calls are taken.
"""

from __future__ import annotations

import contextlib
import re
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

if TYPE_CHECKING:
    import psycopg
    from psycopg_pool import ConnectionPool

Row = dict[str, Any]
Params = Sequence[Any]
Dialect = Literal["sqlite", "postgresql"]


class StorageError(Exception):
    """The database failed (cannot connect, disk full, constraint...); the message names it."""


class Cursor(ABC):
    """Statements inside one transaction; rows come back as dicts keyed by column name."""

    @abstractmethod
    def execute(self, sql: str, params: Params = ()) -> Cursor: ...

    @abstractmethod
    def fetchone(self) -> Row | None: ...

    @abstractmethod
    def fetchall(self) -> list[Row]: ...

    @property
    @abstractmethod
    def rowcount(self) -> int: ...


class Database(ABC):
    """A database that runs the stores' portable SQL (see the module docstring)."""

    dialect: Dialect
    name: str  # the file or the URL without its password, for messages
    insertion_order: str  # the column that orders rows as they were inserted (SQLite's rowid)

    @abstractmethod
    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        """One transaction: committed when the block ends, rolled back when it raises."""

    def execute(self, sql: str, params: Params = ()) -> list[Row]:
        """One statement in its own transaction; its rows (none for a write)."""
        with self.transaction() as cur:
            return cur.execute(sql, params).fetchall()

    def script(self, sql: str) -> None:
        """Several ``;``-separated statements (a schema) in one transaction."""
        with self.transaction() as cur:
            for statement in split_statements(sql):
                cur.execute(statement)

    @abstractmethod
    def close(self) -> None: ...


def split_statements(sql: str) -> list[str]:
    """The statements of a schema script (no ``;`` inside literals or function bodies there)."""
    out, buf, in_body = [], [], False
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        in_body ^= line.count("$$") % 2 == 1
        buf.append(line)
        if not in_body and line.rstrip().endswith(";"):
            out.append("\n".join(buf).strip().rstrip(";"))
            buf = []
    rest = "\n".join(buf).strip()
    return [s for s in [*out, rest] if s]


# --------------------------------------------------------------------------- SQLite


class _SqliteCursor(Cursor):
    def __init__(self, db: sqlite3.Connection, name: str) -> None:
        try:
            self.cur = db.cursor()
        except sqlite3.Error as exc:  # a closed connection
            raise StorageError(f"{name}: {exc}") from exc
        self.name = name

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        try:
            self.cur.execute(sql, tuple(params))
        except sqlite3.Error as exc:
            raise StorageError(f"{self.name}: {exc}") from exc
        return self

    def fetchone(self) -> Row | None:
        row = self.cur.fetchone()
        return dict(row) if row is not None else None

    def fetchall(self) -> list[Row]:
        return [dict(r) for r in self.cur.fetchall()]

    @property
    def rowcount(self) -> int:
        return self.cur.rowcount


class SqliteDatabase(Database):
    """One SQLite file (or ``":memory:"``): one connection, one lock, WAL on files.

    ``synchronous`` is the store's durability: ``NORMAL`` (a commit survives a crash of
    the process) or ``FULL`` (it survives a power cut).  ``readonly`` opens an existing
    file for queries only (``ivr calls`` next to a running server).
    """

    dialect: Dialect = "sqlite"
    insertion_order = "rowid"

    def __init__(
        self, path: str | Path, *, synchronous: str = "NORMAL", readonly: bool = False, timeout: float = 10.0
    ) -> None:
        self.path = str(path)
        self.name = self.path
        self._begin = "BEGIN" if readonly else "BEGIN IMMEDIATE"  # a reader takes no write lock
        self._lock = threading.RLock()
        try:
            if readonly:
                self._db = sqlite3.connect(f"file:{path}?mode=ro", uri=True, check_same_thread=False,
                                           timeout=timeout, isolation_level=None)
            else:
                self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=timeout,
                                           isolation_level=None)
            self._db.row_factory = sqlite3.Row
            self.connection = self._db  # for tests that watch the SQL it runs
            if not readonly and self.path != ":memory:":
                self._db.execute("PRAGMA journal_mode=WAL")  # readers never block the writer
                self._db.execute(f"PRAGMA synchronous={synchronous}")
        except sqlite3.Error as exc:
            raise StorageError(f"{self.path}: {exc}") from None

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        with self._lock:
            cur = _SqliteCursor(self._db, self.name)
            cur.execute(self._begin)
            try:
                yield cur
            except BaseException:
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            cur.execute("COMMIT")

    def user_version(self) -> int:
        with self._lock:
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    def set_user_version(self, version: int) -> None:
        with self._lock:
            self._db.execute(f"PRAGMA user_version={int(version)}")

    def close(self) -> None:
        with self._lock:
            self._db.close()


# --------------------------------------------------------------------------- PostgreSQL

_PLACEHOLDER = re.compile(r"\?")


def to_psycopg(sql: str) -> str:
    """``?`` placeholders as psycopg's ``%s`` (a literal ``%`` doubled)."""
    return _PLACEHOLDER.sub("%s", sql.replace("%", "%%"))


class _PostgresCursor(Cursor):
    def __init__(self, cur: psycopg.Cursor[Row], name: str) -> None:
        self.cur = cur
        self.name = name

    def execute(self, sql: str, params: Params = ()) -> Cursor:
        import psycopg

        try:
            self.cur.execute(to_psycopg(sql), tuple(params))  # type: ignore[arg-type]
        except psycopg.Error as exc:
            raise StorageError(f"{self.name}: {exc}") from exc
        return self

    def fetchone(self) -> Row | None:
        return self.cur.fetchone() if self.cur.description is not None else None

    def fetchall(self) -> list[Row]:
        return self.cur.fetchall() if self.cur.description is not None else []

    @property
    def rowcount(self) -> int:
        return self.cur.rowcount


class PostgresDatabase(Database):
    """A PostgreSQL database through a pool of ``min_size``..``max_size`` connections.

    ``timeout`` bounds the wait for a free connection, a new connection and every statement.
    """

    dialect: Dialect = "postgresql"
    insertion_order = "seq"

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 8, timeout: float = 5.0) -> None:
        from psycopg.rows import dict_row
        from psycopg_pool import ConnectionPool, PoolTimeout

        self.url = url
        self.name = redact(url)
        self.timeout = timeout
        self.pool: ConnectionPool[Any] = ConnectionPool(
            url, min_size=min_size, max_size=max_size, open=False, timeout=timeout,
            # A database that stops answering holds a caller for at most ``timeout``: no statement
            # runs longer, and no connection is waited for longer (see "Limits" in docs/operations.md).
            kwargs={"row_factory": dict_row, "autocommit": True, "connect_timeout": max(1, round(timeout)),
                    "options": f"-c statement_timeout={round(timeout * 1000)}"},
            name="ivr",
        )
        try:
            self.pool.open(wait=True, timeout=timeout)
        except PoolTimeout:
            self.pool.close()
            raise StorageError(f"{self.name}: cannot connect within {timeout:g} s") from None

    @contextmanager
    def transaction(self) -> Iterator[Cursor]:
        import psycopg
        from psycopg_pool import PoolTimeout

        try:
            with self.pool.connection() as conn, conn.transaction(), conn.cursor() as cur:
                yield _PostgresCursor(cur, self.name)
        except PoolTimeout:
            raise StorageError(f"{self.name}: no connection free within {self.timeout:g} s") from None
        except psycopg.Error as exc:  # commit failed, connection lost
            raise StorageError(f"{self.name}: {exc}") from exc

    def connect(self) -> psycopg.Connection[Row]:
        """A connection of its own, outside the pool (LISTEN needs one that stays put)."""
        import psycopg
        from psycopg.rows import dict_row

        try:
            return psycopg.connect(self.url, autocommit=True, row_factory=dict_row, connect_timeout=10)
        except psycopg.Error as exc:
            raise StorageError(f"{self.name}: {exc}") from exc

    def close(self) -> None:
        self.pool.close()


def redact(url: str) -> str:
    """``url`` without its password, for logs and messages."""
    return re.sub(r"(://[^:/@]*):[^@/]*@", r"\1:***@", url)
