"""Registrations in the shared database: the registrar's :class:`~ivr.sip.registrar.BindingStore`
for a cluster.

Every node answers REGISTERs into one ``bindings`` table (schema in
``postgresql/0001_initial.sql``), so a phone registered through any node is found by a
transfer on every other one at once: there is no cache to go stale.  ``seq`` orders the
bindings as SQLite's rowid does for the embedded :class:`~ivr.sip.registrar.RegistrationStore`:
a refresh deletes and re-inserts, so it makes the binding the newest.
"""

from __future__ import annotations

import math
from collections.abc import Iterable

from ivr.sip.message import uri_key
from ivr.sip.registrar import Binding, RegistrationStoreError
from ivr.storage.database import Database, Row, StorageError

COLUMNS = "aor, uri_key, uri, source_host, source_port, transport, expires_at, call_id, cseq, q, params, user_agent"


class TableBindings:
    """The ``bindings`` table of a shared database; errors come out as RegistrationStoreError."""

    def __init__(self, db: Database) -> None:
        self.db = db
        self.path = db.name

    def bindings(self, aor: str, now: float | None = None) -> list[Binding]:
        after = -math.inf if now is None else now
        sql = f"SELECT {COLUMNS} FROM bindings WHERE aor = ? AND expires_at > ? ORDER BY {self.db.insertion_order}"
        try:
            return [_binding(r) for r in self.db.execute(sql, (aor, after))]
        except StorageError as exc:
            raise RegistrationStoreError(str(exc)) from exc

    def apply(self, aor: str, upserts: Iterable[Binding], removals: Iterable[str]) -> None:
        upserts = list(upserts)
        try:
            with self.db.transaction() as cur:
                for key in [uri_key(u) for u in removals] + [b.key for b in upserts]:
                    cur.execute("DELETE FROM bindings WHERE aor = ? AND uri_key = ?", (aor, key))
                for b in upserts:
                    cur.execute(f"INSERT INTO bindings ({COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)", _values(aor, b))
        except StorageError as exc:
            raise RegistrationStoreError(str(exc)) from exc

    def purge_expired(self, now: float) -> int:
        try:
            with self.db.transaction() as cur:
                return cur.execute("DELETE FROM bindings WHERE expires_at <= ?", (now,)).rowcount
        except StorageError as exc:
            raise RegistrationStoreError(str(exc)) from exc

    def close(self) -> None:
        """The database belongs to the storage: it closes it."""


def _values(aor: str, b: Binding) -> tuple[object, ...]:
    host, port = b.source if b.source else (None, None)
    return (aor, b.key, b.uri, host, port, b.transport, b.expires_at, b.call_id, b.cseq, b.q, b.params, b.user_agent)


def _binding(r: Row) -> Binding:
    source = (r["source_host"], int(r["source_port"])) if r["source_host"] is not None else None
    return Binding(r["aor"], r["uri"], source, r["transport"], r["expires_at"], r["call_id"], r["cseq"],
                   r["q"], r["params"], r["user_agent"])
