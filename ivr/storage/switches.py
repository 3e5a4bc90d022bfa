"""The manual switches' positions (``switch night`` in a flow): where ``ivr switch`` writes them.

Embedded: ``switches.json`` in the data folder, an object of true/false values such as
``{"night": true}``; a missing file means every switch is off.  ``ivr serve`` reads the
file with :func:`read_switches` when a call starts; ``ivr switch`` replaces it atomically.

Shared (PostgreSQL): the ``switches`` table (:class:`TableSwitches`).  Flipping one
writes the row and sends ``NOTIFY ivr_switches`` in the same transaction; each node's
:class:`SwitchWatcher` LISTENs on its own connection, in its own thread, and reloads the
table when told, so a call reads the positions from memory (never the database on the
event loop) and a switch flipped anywhere is seen by every node as soon as it commits.
"""

from __future__ import annotations

import json
import logging
import re
import threading
import time
from collections.abc import Callable
from pathlib import Path

from ivr.storage.adminfile import read_json_file
from ivr.storage.database import PostgresDatabase, StorageError

log = logging.getLogger("ivr.storage.switches")

SWITCHES_FILE = "switches.json"
SWITCH_NAME = re.compile(r"[a-z_][a-z0-9_]*")
CHANNEL = "ivr_switches"


class SwitchError(Exception):
    """A switch file or name that cannot be used; the message names the file or the name."""


def switches_path(data: Path) -> Path:
    return Path(data) / SWITCHES_FILE


def read_switches(data: Path) -> dict[str, bool]:
    """Switch positions from the data folder; a missing file means every switch is off."""
    path = switches_path(data)
    raw = read_json_file(path, "switch positions", SwitchError, default={})
    if not isinstance(raw, dict) or not all(isinstance(v, bool) for v in raw.values()):
        raise SwitchError(f'{path}: expected an object of true/false values like {{"night": true}}')
    return {str(k): v for k, v in raw.items()}


def format_switches(positions: dict[str, bool]) -> str:
    """The file's text for ``positions``."""
    return json.dumps(positions, indent=2, sort_keys=True) + "\n"


def check_name(name: str) -> str:
    if not SWITCH_NAME.fullmatch(name):
        raise SwitchError(f"bad switch name {name!r}: use lower-case letters, digits and _")
    return name


class TableSwitches:
    """The ``switches`` table of a shared database; StorageError becomes SwitchError."""

    def __init__(self, db: PostgresDatabase) -> None:
        self.db = db

    def read(self) -> dict[str, bool]:
        try:
            rows = self.db.execute("SELECT name, is_on FROM switches")
        except StorageError as exc:
            raise SwitchError(f"cannot read switch positions: {exc}") from None
        return {r["name"]: bool(r["is_on"]) for r in rows}

    def set(self, name: str, on: bool) -> dict[str, bool]:
        """Flip one switch and tell every node (NOTIFY, delivered at commit); all positions."""
        check_name(name)
        try:
            with self.db.transaction() as cur:
                cur.execute(
                    "INSERT INTO switches (name, is_on, changed_at) VALUES (?, ?, ?) ON CONFLICT (name)"
                    " DO UPDATE SET is_on = excluded.is_on, changed_at = excluded.changed_at",
                    (name, on, time.time()),
                )
                cur.execute(f"NOTIFY {CHANNEL}")
        except StorageError as exc:
            raise SwitchError(f"cannot set switch {name}: {exc}") from None
        return self.read()


class SwitchWatcher:
    """The positions of :class:`TableSwitches`, kept current by LISTEN/NOTIFY in a thread.

    :meth:`start` returns once the first read is in (or raises SwitchError); after a lost
    connection the thread reconnects and reads the table again, keeping the last
    positions it knew meanwhile.  ``on_change`` is called (in the thread) with the new
    positions whenever they differ from the old ones.
    """

    def __init__(self, switches: TableSwitches, on_change: Callable[[dict[str, bool]], None] | None = None) -> None:
        self.switches = switches
        self.on_change = on_change
        self._positions: dict[str, bool] = {}
        self._stop = threading.Event()
        self._ready = threading.Event()
        self._error: Exception | None = None
        self._thread: threading.Thread | None = None

    def positions(self) -> dict[str, bool]:
        return dict(self._positions)

    def start(self, timeout: float = 10.0) -> None:
        self._thread = threading.Thread(target=self._run, name="ivr-switches", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout) or self._error is not None:
            self.stop()
            raise SwitchError(f"cannot watch switch positions: {self._error or 'no answer'}")

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(5.0)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as exc:  # connection lost: keep the positions, try again
                self._error = exc
                self._ready.set()
                if not self._stop.is_set():
                    log.warning("switch watcher: %s; reconnecting", exc)
                self._stop.wait(1.0)

    def _listen(self) -> None:
        with self.switches.db.connect() as conn:
            conn.execute(f"LISTEN {CHANNEL}")
            self._update(self.switches.read())  # after LISTEN: a flip in between is not missed
            self._error = None
            self._ready.set()
            while not self._stop.is_set():
                if any(True for _ in conn.notifies(timeout=0.5, stop_after=1)):
                    self._update(self.switches.read())

    def _update(self, positions: dict[str, bool]) -> None:
        if positions != self._positions:
            self._positions = positions
            if self.on_change is not None:
                self.on_change(dict(positions))
