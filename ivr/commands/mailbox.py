"""``ivr mailbox``: set a mailbox PIN in the deployment file, list, play and delete messages.

``set-pin`` rewrites only that mailbox's ``pin_hash`` in the TOML file (tomlkit
keeps comments, order and formatting of everything else) and replaces the file
atomically.  Message numbers are those a caller hears on the phone: new
messages first, then saved ones, oldest first within each.
"""

from __future__ import annotations

import argparse
import getpass
import shutil
import sys
import time
import tomllib
from collections.abc import Callable
from pathlib import Path

import tomlkit

from ivr.commands.options import add_config_option, add_data_option
from ivr.config import DEFAULT_CONFIG_NAME, Config, ConfigError, load_config
from ivr.runtime.atomic import write_text_atomically
from ivr.voicemail.pins import PinError, hash_pin, validate_pin
from ivr.voicemail.store import Message, VoicemailStore


class CommandError(Exception):
    """A mistake the admin can fix; printed as ``ivr mailbox: <message>``."""


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "mailbox", help="voicemail boxes: set PINs, list, play and delete messages"
    )
    sub = p.add_subparsers(dest="mailbox_command", metavar="ACTION", required=True)
    config_only = argparse.ArgumentParser(add_help=False)
    add_config_option(config_only)
    common = argparse.ArgumentParser(add_help=False, parents=[config_only])
    add_data_option(common)

    s = sub.add_parser(  # set-pin writes the deployment file only: no --data
        "set-pin", parents=[config_only], help="set a mailbox PIN (stored hashed in the deployment file)"
    )
    s.add_argument("box", metavar="BOX", help="mailbox number")
    s.add_argument(
        "--pin", help="the new PIN (default: asked twice on the terminal, or one line on stdin)"
    )
    s.set_defaults(func=run_set_pin)

    ls = sub.add_parser("list", parents=[common], help="list a mailbox's messages")
    ls.add_argument("box", metavar="BOX", help="mailbox number")
    ls.set_defaults(func=run_list)

    pl = sub.add_parser("play", parents=[common], help="write message N of a mailbox to a WAV file")
    pl.add_argument("box", metavar="BOX", help="mailbox number")
    pl.add_argument("n", type=int, metavar="N", help="message number, as `ivr mailbox list` shows it")
    pl.add_argument("-o", "--output", required=True, type=Path, help="WAV file to write")
    pl.set_defaults(func=run_play)

    de = sub.add_parser("delete", parents=[common], help="delete message N of a mailbox")
    de.add_argument("box", metavar="BOX", help="mailbox number")
    de.add_argument("n", type=int, metavar="N", help="message number, as `ivr mailbox list` shows it")
    de.set_defaults(func=run_delete)


Handler = Callable[[argparse.Namespace], int]


def _guard(func: Handler) -> Handler:
    """Turn the admin's mistakes into one line on stderr and exit code 1."""

    def wrapper(args: argparse.Namespace) -> int:
        try:
            return int(func(args))
        except (CommandError, ConfigError, PinError, OSError) as exc:
            print(f"ivr mailbox: {exc}", file=sys.stderr)
            return 1

    return wrapper


def _config(args: argparse.Namespace) -> Config:
    return load_config(args.config, data=args.data)


def _store(config: Config) -> VoicemailStore:
    """The deployment's voicemail (the data folder's, or the nodes' shared database and folder)."""
    from ivr.storage import StorageError, open_storage

    try:
        return VoicemailStore.on(open_storage(config))
    except StorageError as exc:
        raise CommandError(str(exc)) from None


def _message(args: argparse.Namespace) -> tuple[VoicemailStore, Message]:
    config = _config(args)
    _known_box(config, args.box)
    store = _store(config)
    messages = store.list(args.box)
    if not 1 <= args.n <= len(messages):
        raise CommandError(
            f"mailbox {args.box} has {len(messages)} message(s); there is no message {args.n}"
        )
    return store, messages[args.n - 1]


def _known_box(config: Config, box: str) -> None:
    if config.mailbox(box) is None:
        where = config.path or "the defaults (no deployment file)"
        raise CommandError(f"no mailbox {box} in {where}")


@_guard
def run_list(args: argparse.Namespace) -> int:
    config = _config(args)
    _known_box(config, args.box)
    store = _store(config)
    counts = store.counts(args.box)
    print(f"mailbox {args.box}: {counts.new} new, {counts.saved} saved")
    for n, m in enumerate(store.list(args.box), 1):
        when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(m.received_at))
        print(f"{n:>3}  {m.status:<5}  {when}  {m.duration:6.1f} s  {m.caller}")
    return 0


@_guard
def run_play(args: argparse.Namespace) -> int:
    _, message = _message(args)
    shutil.copyfile(message.path, args.output)
    print(
        f"{args.output}: message {args.n} of mailbox {args.box}, {message.duration:.1f} s from {message.caller}"
    )
    return 0


@_guard
def run_delete(args: argparse.Namespace) -> int:
    store, message = _message(args)
    store.delete(message.id)
    print(
        f"deleted message {args.n} of mailbox {args.box} ({message.caller}, {message.duration:.1f} s)"
    )
    return 0


@_guard
def run_set_pin(args: argparse.Namespace) -> int:
    path = Path(args.config) if args.config else Path(DEFAULT_CONFIG_NAME)
    if not path.is_file():
        raise CommandError(f"{path}: no such deployment file (set-pin writes the PIN hash into it)")
    pin = args.pin if args.pin is not None else _read_pin()
    validate_pin(pin, args.box)
    set_pin_hash(path, args.box, hash_pin(pin, args.box))
    print(f"PIN of mailbox {args.box} set in {path}")
    return 0


def _read_pin() -> str:
    if not sys.stdin.isatty():
        return sys.stdin.readline().strip()
    first = getpass.getpass("New PIN: ")
    if getpass.getpass("Again: ") != first:
        raise CommandError("the two PINs differ; nothing changed")
    return first


def set_pin_hash(path: Path, box: str, pin_hash: str) -> None:
    """Rewrite ``pin_hash`` of mailbox ``box`` in the TOML file at ``path``, keeping everything else."""
    doc = tomlkit.parse(path.read_text(encoding="utf-8"))
    tables = doc.get("mailboxes")
    entry = next((t for t in tables or [] if str(t.get("number", "")) == box), None)
    if entry is None:
        raise CommandError(f"{path}: no [[mailboxes]] entry with number {box}")
    entry["pin_hash"] = pin_hash
    text = tomlkit.dumps(doc)
    _check_toml(text, path)
    write_text_atomically(path, text)


def _check_toml(text: str, path: Path) -> None:
    """Refuse to write a file the server could not read back (never leave a broken deployment)."""
    try:
        tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise CommandError(
            f"{path}: rewriting would produce invalid TOML ({exc}); nothing changed"
        ) from None
