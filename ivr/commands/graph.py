"""``ivr graph FILE... -o OUT.(dot|gv|svg|png|pdf)``: draw a flow's compiled state machine."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ivr.commands.options import description
from ivr.dsl.errors import FlowError
from ivr.dsl.graph import GraphError, render, to_dot
from ivr.dsl.loader import load_flow


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "graph", help="draw a flow's states and transitions (DOT, SVG, PNG, PDF)", description=description(__doc__)
    )
    parser.add_argument("files", nargs="+", type=Path, metavar="FILE", help="flow files (.ivr)")
    parser.add_argument("-o", "--output", type=Path, required=True, metavar="OUT",
                        help="output file: .dot (or .gv), .svg, .png or .pdf")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        program = load_flow(args.files)
    except FlowError as exc:
        print(exc, file=sys.stderr)
        return 1
    try:
        render(to_dot(program, title=args.files[0].stem), args.output)
    except (GraphError, OSError) as exc:
        print(f"ivr graph: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {args.output} ({len(program.states)} states)")
    return 0
