"""``ivr check FILE... [--strict] [--prompts DIR]... [--config ivr.toml]``: validate flows.

The flow's own checks (:mod:`ivr.dsl.checks`) and the deployment's
(:mod:`ivr.runtime.deployment`): prompt files, and with a deployment file the
extensions, mailboxes and external numbers the flow dials and the people of its
directories.  Prints every diagnostic as ``file:line:col: severity: message`` with
the source line, a caret and a hint; exit 0 when the flow is valid (warnings allowed
unless ``--strict``), 1 otherwise.  Prompt folders come from the deployment
file (``[prompts] folders``) plus any ``--prompts``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ivr.commands.options import add_config_option, description
from ivr.config import ConfigError, load_config
from ivr.dsl.errors import format_diagnostics
from ivr.dsl.loader import flow_sources
from ivr.runtime.deployment import check_flow


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "check", help="check flow files for errors and warnings", description=description(__doc__)
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="flow files (.ivr)")
    parser.add_argument("--strict", action="store_true", help="treat warnings as errors")
    parser.add_argument("--prompts", action="append", type=Path, default=[], metavar="DIR",
                        help="a prompt folder (repeatable; added to the deployment file's)")
    add_config_option(parser)
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ivr check: {exc}", file=sys.stderr)
        return 1
    folders = [*config.prompt_folders, *(p.resolve() for p in args.prompts)]
    diagnostics = check_flow(args.files, prompt_folders=folders, config=config)
    if diagnostics:
        print(format_diagnostics(diagnostics, flow_sources(args.files)))
    errors = sum(1 for d in diagnostics if d.severity == "error")
    warnings = len(diagnostics) - errors
    failed = errors > 0 or (args.strict and warnings > 0)
    names = ", ".join(str(f) for f in args.files)
    summary = f"{names}: {errors} error{'s' if errors != 1 else ''}, {warnings} warning{'s' if warnings != 1 else ''}"
    print(summary if failed or diagnostics else f"{names}: ok", file=sys.stderr if failed else sys.stdout)
    return 1 if failed else 0
