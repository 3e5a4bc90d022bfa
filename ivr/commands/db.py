"""``ivr db``: the shared database of several nodes (``[storage] url`` in the deployment file).

``ivr db upgrade`` applies the schema migrations this ivr ships (:mod:`ivr.storage.migrations`);
every node checks the schema when it starts and refuses a database that is behind.
``ivr db migrate-from-sqlite DATA`` moves an embedded installation's data folder into the
database and the shared folder (:mod:`ivr.storage.importing`).  Without ``[storage] url`` both
say there is nothing to do: the embedded SQLite files create their schemas themselves.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ivr.commands.options import add_config_option


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "db",
        help="set up the database several nodes share ([storage] url)",
        description="Schema upgrades of the shared PostgreSQL database, and moving an embedded "
        "installation (SQLite files in a data folder) into it.",
    )
    sub = p.add_subparsers(dest="db_command", metavar="COMMAND", required=True)
    up = sub.add_parser("upgrade", help="apply the schema migrations the database lacks")
    add_config_option(up)
    up.set_defaults(func=run_upgrade)
    mig = sub.add_parser("migrate-from-sqlite", help="move a data folder's SQLite state and voicemail audio in")
    mig.add_argument("data", metavar="DATA", help="the embedded installation's data folder")
    add_config_option(mig)
    mig.set_defaults(func=run_migrate)


def run_upgrade(args: argparse.Namespace) -> int:
    from ivr.storage import StorageError, open_storage
    from ivr.storage.migrations import upgrade

    try:
        storage = _shared(args, open_storage)
        assert storage.db is not None
        try:
            applied = upgrade(storage.db)
        finally:
            storage.close()
    except (_Nothing, StorageError) as exc:
        return _fail(exc)
    if not applied:
        print(f"{storage.db.name}: schema up to date")
    for migration in applied:
        print(f"{storage.db.name}: applied {migration.version:04d}_{migration.name}")
    return 0


def run_migrate(args: argparse.Namespace) -> int:
    from ivr.storage import StorageError, open_storage
    from ivr.storage.importing import migrate_from_sqlite

    try:
        storage = _shared(args, open_storage)
        try:
            done = migrate_from_sqlite(Path(args.data), storage)
        finally:
            storage.close()
    except (_Nothing, StorageError, OSError) as exc:
        return _fail(exc)
    print(f"moved {done.describe()}")
    return 0


class _Nothing(Exception):
    """No shared database is configured."""


def _shared(args: argparse.Namespace, open_storage: Any) -> Any:
    from ivr.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError as exc:
        raise _Nothing(str(exc)) from None
    if not config.storage.shared_database:
        where = config.path or "the defaults (no deployment file)"
        raise _Nothing(f"{where} has no [storage] url: the embedded SQLite files need no upgrade")
    return open_storage(config, check_schema=args.func is not run_upgrade)


def _fail(exc: Exception) -> int:
    print(f"ivr db: {exc}", file=sys.stderr)
    return 1
