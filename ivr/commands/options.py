"""The options most subcommands share, worded once: ``--config`` and ``--data``."""

from __future__ import annotations

import argparse
from pathlib import Path

from ivr.config import DEFAULT_CONFIG_NAME


def add_config_option(parser: argparse.ArgumentParser) -> None:
    """``--config FILE``: the deployment file; without it ``./ivr.toml`` when there is one, else the defaults."""
    parser.add_argument(
        "--config", type=Path, default=None, metavar="FILE",
        help=f"deployment file (default: ./{DEFAULT_CONFIG_NAME} if present)",
    )  # fmt: skip


def add_data_option(parser: argparse.ArgumentParser, what: str = "") -> None:
    """``--data DIR``: overrides the deployment file's ``[server] data`` folder."""
    parser.add_argument(
        "--data", type=Path, default=None, metavar="DIR",
        help=f"data folder{what} (default: [server] data of the deployment file)",
    )  # fmt: skip


def description(doc: str | None) -> str:
    """A command module's docstring as ``--help`` text: the reST literal quotes dropped."""
    return (doc or "").replace("``", "")
