"""``ivr switch``: the manual switches (``switch night`` in a flow) an admin flips.

The positions live in ``switches.json`` in the data folder, e.g. ``{"night": true}``.  Writes are
atomic (a temporary file in the same folder, fsync, rename) under an exclusive lock, so two admins
flipping switches at once both win and a running server never reads half a file.  ``ivr serve``
reads the file with :func:`read_switches` when a call starts.
"""

from __future__ import annotations

import argparse
import fcntl
import json
import re
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from ivr.commands.atomic import write_text_atomically
from ivr.commands.options import add_config_option, add_data_option

SWITCHES_FILE = "switches.json"
_NAME = re.compile(r"[a-z_][a-z0-9_]*")


class SwitchError(Exception):
    """A switch file or name that cannot be used; the message names the file or the name."""


def switches_path(data: Path) -> Path:
    return Path(data) / SWITCHES_FILE


def read_switches(data: Path) -> dict[str, bool]:
    """Switch positions from the data folder; a missing file means every switch is off."""
    path = switches_path(data)
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise SwitchError(f"{path}: cannot read switch positions: {exc}") from None
    if not isinstance(raw, dict) or not all(isinstance(v, bool) for v in raw.values()):
        raise SwitchError(f'{path}: expected an object of true/false values like {{"night": true}}')
    return {str(k): v for k, v in raw.items()}


def write_switch(data: Path, name: str, on: bool) -> dict[str, bool]:
    """Set one switch and return all positions; the file is replaced atomically."""
    if not _NAME.fullmatch(name):
        raise SwitchError(f"bad switch name {name!r}: use lower-case letters, digits and _")
    data = Path(data)
    data.mkdir(parents=True, exist_ok=True)
    with _locked(data):
        positions = read_switches(data)  # a corrupt file raises: never overwrite what we can't read
        positions[name] = on
        write_text_atomically(switches_path(data), json.dumps(positions, indent=2, sort_keys=True) + "\n")
    return positions


@contextmanager
def _locked(data: Path) -> Iterator[None]:
    with open(data / (SWITCHES_FILE + ".lock"), "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


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

    try:
        data, declared = _data_and_declared(args)
        if args.name is None:
            positions = dict.fromkeys(declared, False) | read_switches(data)
            for name, on in sorted(positions.items()):
                print(f"{name}: {'on' if on else 'off'}")
            return 0
        if declared and args.name not in declared:
            print(
                f"ivr switch: warning: no flow declares switch '{args.name}' "
                f"(declared: {', '.join(declared)})",
                file=sys.stderr,
            )
        if args.state == "status":
            on = read_switches(data).get(args.name, False)
        else:
            on = write_switch(data, args.name, args.state == "on")[args.name]
    except (SwitchError, ConfigError, OSError) as exc:
        print(f"ivr switch: {exc}", file=sys.stderr)
        return 1
    print(f"{args.name}: {'on' if on else 'off'}")
    return 0


def _data_and_declared(args: argparse.Namespace) -> tuple[Path, tuple[str, ...]]:
    """The data folder and the declared switches; --data alone is enough if the config is broken."""
    from ivr.config import ConfigError, load_config

    try:
        config = load_config(args.config)
    except ConfigError:
        if not args.data:
            raise
        return Path(args.data), ()  # the flows only add a typo check
    data = Path(args.data) if args.data else config.data
    return data, declared_switches(config.server.flows, config.prompt_folders)


def declared_switches(flows: tuple[Path, ...], prompt_folders: tuple[Path, ...]) -> tuple[str, ...]:
    """The switches the deployment's flows declare (``switch night``); () if they cannot be read."""
    if not flows:
        return ()
    from ivr.dsl.errors import FlowError
    from ivr.dsl.loader import load_flow

    try:
        return tuple(load_flow(list(flows), prompt_folders=prompt_folders).settings.switches)
    except (FlowError, OSError):
        return ()
