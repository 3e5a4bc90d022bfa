"""``ivr phones``: who is registered from where, and each extension's line.

Reads the data folder a server uses: the registrar's bindings
(``registrations.sqlite``: contact, the address the REGISTER came from, the
phone's User-Agent, seconds left) and the lamps' store (``subscriptions.sqlite``:
which lines are ringing or talking, how many subscriptions each user holds).
One block per extension of the deployment file; ``--json`` prints one JSON
object per extension.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from ivr.commands.options import add_config_option, add_data_option

LINE_WORDS = {"terminated": "idle", "early": "ringing or dialling", "confirmed": "on a call"}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "phones",
        help="show registered phones and each extension's state",
        description="Show, per extension, the phones registered (from where, user agent, expiry) "
        "and whether the extension is idle, ringing or on a call.",
    )
    add_data_option(p)
    add_config_option(p)
    p.add_argument("--json", action="store_true", help="one JSON object per extension")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ivr.config import ConfigError, load_config

    try:
        config = load_config(args.config, data=args.data)
    except ConfigError as exc:
        print(f"ivr phones: {exc}", file=sys.stderr)
        return 1
    try:
        report = phones_report(config, time.time())
    except Exception as exc:  # sqlite3.Error: a damaged file
        print(f"ivr phones: cannot read {config.data}: {exc}", file=sys.stderr)
        return 1
    for entry in report:
        print(json.dumps(entry) if args.json else describe(entry))
    return 0


def phones_report(config: Any, now: float) -> list[dict[str, Any]]:
    """One dict per extension: number, name, line state, registrations, static contacts, subscriptions."""
    from ivr.runtime import sipconfig
    from ivr.sip.registrar import RegistrationStore
    from ivr.sip.subscription import SubscriptionStore

    data: Path = config.data
    regs = RegistrationStore(data / "registrations.sqlite") if (data / "registrations.sqlite").exists() else None
    subs = SubscriptionStore(data / "subscriptions.sqlite") if (data / "subscriptions.sqlite").exists() else None
    try:
        registrar = sipconfig.registrar(config, store=regs or RegistrationStore())
        lines = subs.lines() if subs is not None else {}
        report = []
        for ext in config.extensions:
            bindings = registrar.contacts(ext.number, now)
            state, since = lines.get(ext.number, ("terminated", None))
            report.append({
                "extension": ext.number, "name": ext.name, "state": state,
                "since": round(since, 3) if since is not None else None,
                "registrations": [{"contact": b.uri, "source": f"{b.source[0]}:{b.source[1]}" if b.source else "",
                                   "transport": b.transport, "user_agent": b.user_agent,
                                   "expires_in": b.expires_in(now)} for b in bindings if not b.static],
                "static": [b.uri for b in bindings if b.static],
                "subscriptions": subs.count_for(ext.number) if subs is not None else 0,
            })
        return report
    finally:
        for store in (regs, subs):
            if store is not None:
                store.close()


def describe(entry: dict[str, Any]) -> str:
    name = f"  {entry['name']}" if entry["name"] else ""
    lines = [f"{entry['extension']}{name}: {LINE_WORDS.get(entry['state'], entry['state'])}"
             + (f", {entry['subscriptions']} lamp subscription(s)" if entry["subscriptions"] else "")]
    for reg in entry["registrations"]:
        agent = f"  {reg['user_agent']}" if reg["user_agent"] else ""
        lines.append(f"    {reg['contact']}  from {reg['source']} {reg['transport']}{agent}"
                     f"  expires in {reg['expires_in']} s")
    lines += [f"    {uri}  (static)" for uri in entry["static"]]
    if not entry["registrations"] and not entry["static"]:
        lines.append("    no phone registered")
    return "\n".join(lines)
