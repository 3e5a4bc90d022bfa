"""``ivr calls``: read the call journal (ivr.runtime.journal) of a data folder.

One line per call, newest first: start time, caller, number called, duration
and what became of the call (``transferred to 201``, ``voicemail 200``,
``hangup in goodbye``); ``--json`` prints one JSON object per line with the
full path through the flow.  ``--since`` takes an ISO date/time (UTC) or an
age like ``2h`` / ``30m`` / ``7d``.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ivr.commands.options import add_config_option, add_data_option
from ivr.runtime.journal import SinceError, parse_since

__all__ = ["SinceError", "parse_since", "register", "run"]

def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "calls",
        help="list calls from the call journal",
        description="List the calls ivr serve took, newest first, from the journal in the data folder.",
    )
    add_data_option(p)
    add_config_option(p)
    p.add_argument("--since", help="only calls started since: an age (2h, 30m, 7d) or an ISO date/time (UTC)")
    p.add_argument("--caller", help="only calls whose caller contains this")
    p.add_argument("--outcome", help="only calls with this outcome (transferred, voicemail, hangup, caller_hangup ...)")
    p.add_argument("--limit", type=int, default=50, help="at most this many calls (default 50)")
    p.add_argument("--json", action="store_true", help="one JSON object per call")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ivr.config import ConfigError, load_config
    from ivr.runtime.journal import Journal
    from ivr.storage import Storage, StorageError, open_storage

    try:
        since = parse_since(args.since) if args.since else None
        storage = Storage(Path(args.data), Path(args.data)) if args.data else open_storage(load_config(args.config))
        data = storage.data if storage.db is None else storage.db.name
        journal = Journal.reader(storage)
    except (SinceError, ConfigError, FileNotFoundError, StorageError) as exc:
        print(f"ivr calls: {exc}", file=sys.stderr)
        return 1
    if args.limit < 0:
        print("ivr calls: --limit must be 0 or more", file=sys.stderr)
        return 1
    try:
        rows = journal.query(since=since, caller=args.caller, outcome=args.outcome, limit=args.limit)
    except Exception as exc:  # StorageError: a damaged file, a database gone
        print(f"ivr calls: cannot read the journal in {data}: {exc}", file=sys.stderr)
        return 1
    finally:
        journal.close()
        storage.close()
    for row in rows:
        if args.json:
            print(json.dumps(row.as_dict(), ensure_ascii=False))
        else:
            started = time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime(row.started))
            duration = f"{row.duration:7.1f}s" if row.duration is not None else "      -"
            print(f"{started}  {row.caller or '-':<16} -> {row.called or '-':<14} {duration}  {row.describe()}")
    return 0
