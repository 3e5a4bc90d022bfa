"""The ``ivr`` command: discovers subcommands in :mod:`ivr.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

import ivr
import ivr.commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="ivr",
        description="Voice IVR and auto-attendant engine: check, draw, simulate, test and serve call flows.",
    )
    parser.add_argument("--version", action="version", version=f"ivr {ivr.__version__}")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(ivr.commands.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"ivr.commands.{info.name}")
        register = getattr(module, "register", None)
        if register is not None:
            register(subparsers)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    sys.exit(main())
