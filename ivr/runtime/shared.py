"""Start-up of the state a server keeps outside its own process (``[storage]``, :mod:`ivr.storage`).

:func:`open_state` runs before the server binds its ports: it opens the storage (for a
shared PostgreSQL database: connects its pool and checks the schema is this ivr's) and
starts following the switches (LISTEN/NOTIFY), so a node that cannot reach the
database, or whose database wants ``ivr db upgrade``, says so and exits 1 instead of
taking calls it cannot journal.  The embedded SQLite files open as before, lazily.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ivr.storage import StorageError
from ivr.storage.switches import SwitchError

if TYPE_CHECKING:
    from ivr.runtime.services import Services


def open_state(services: Services) -> str | None:
    """Open the storage and watch the switches; the reason it failed, or None."""
    if not services.config.storage.shared_database:
        return None
    try:
        services.storage  # noqa: B018  (connects and checks the schema)
        services.watch_switches()
    except (StorageError, SwitchError) as exc:
        return f"storage: {exc}"
    return None
