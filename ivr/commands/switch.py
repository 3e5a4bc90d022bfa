"""``ivr switch``: the manual switches (``switch night`` in a flow) an admin flips.

The file, its format (``switches.json`` in the data folder) and its writing belong to
:mod:`ivr.runtime.switches`, which ``ivr serve`` reads when a call starts and the console's API
flips switches with.  Writes are
atomic (a temporary file in the same folder, fsync, rename) under an exclusive lock, so two admins
flipping switches at once both win and a running server never reads half a file.  When the
deployment's flows can be read, only the switches they declare are accepted: a typo (``nigth``)
is refused with the declared names, not written as a switch no flow reads.

With ``[storage] url`` (nodes sharing a PostgreSQL database) the positions are the database's
``switches`` table instead (:class:`ivr.storage.switches.TableSwitches`): a flip there is seen by
every node at once.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ivr.commands.options import add_config_option, add_data_option
from ivr.dsl.checks import did_you_mean
from ivr.runtime.switches import (
    SwitchError,
    declared_switches,
    read_switches,
    switch_positions,
    write_switch,
)

if TYPE_CHECKING:
    from ivr.config import Config

__all__ = ["SwitchError", "read_switches", "register", "run", "write_switch"]


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "switch",
        help="show or flip a manual switch (e.g. night)",
        description="Show or flip a manual switch declared in a flow with `switch NAME`. "
        "Without a name, lists every switch that has been set.",
    )
    p.add_argument("name", nargs="?", metavar="NAME", help="the switch, e.g. night")
    p.add_argument("state", nargs="?", choices=("on", "off", "status"), default="status",
                   metavar="on|off|status", help="flip it, or show it (default: status)")
    add_data_option(p, " holding switches.json")
    add_config_option(p)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ivr.config import ConfigError
    from ivr.storage import StorageError

    storage = None
    try:
        data, declared, config = _data_and_declared(args)
        if config is not None and config.storage.shared_database:  # the nodes' shared database
            from ivr.storage import open_storage

            storage = open_storage(config)
        read, write = switch_positions(data, storage)
        if args.name is None:
            positions = dict.fromkeys(declared or (), False) | read()
            for name, on in sorted(positions.items()):
                print(f"{name}: {'on' if on else 'off'}")
            return 0
        if declared is not None and args.name not in declared:
            raise SwitchError(_undeclared(args.name, declared))
        on = read().get(args.name, False) if args.state == "status" else write(args.name, args.state == "on")[args.name]
    except (SwitchError, ConfigError, OSError, StorageError) as exc:
        print(f"ivr switch: {exc}", file=sys.stderr)
        return 1
    finally:
        if storage is not None:
            storage.close()
    print(f"{args.name}: {'on' if on else 'off'}")
    return 0


def _undeclared(name: str, declared: tuple[str, ...]) -> str:
    if not declared:
        return f"no flow declares switch '{name}': the flows declare no switches (add `switch {name}` to one)"
    return f"no flow declares switch '{name}'{did_you_mean(name, declared)} (declared: {', '.join(declared)})"


def _data_and_declared(args: argparse.Namespace) -> tuple[Path, tuple[str, ...] | None, Config | None]:
    """The data folder, the declared switches (None: unknown, any name is taken) and the deployment.

    --data alone is enough if the deployment file is broken.
    """
    from ivr.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError:
        if not args.data:
            raise
        return Path(args.data), None, None  # the flows only add a typo check
    data = Path(args.data) if args.data else config.data
    return data, declared_switches(config.server.flows), config
