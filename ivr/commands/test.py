"""``ivr test PATH...``: run flow tests (``*.ivrtest`` files, or the folders holding them).

Each test is one call on the server's own call runtime in virtual time, with the caller and
the far-end phones scripted by the test.  Prints ``PASS file: name`` or ``FAIL file: name`` with a diff of expected vs actual call trace,
then a summary; exits 1 when any test fails or a test file cannot be read.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from ivr.commands.options import description
from ivr.runtime.flowtest import FlowTestError, find_test_files, run_test_file


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("test", help="run flow tests (*.ivrtest)", description=description(__doc__))
    p.add_argument("paths", nargs="+", metavar="PATH", help=".ivrtest files or folders to search")
    p.add_argument(
        "--config", metavar="FILE",
        help="deployment file for every test (default: the test file's `config`, else ivr.toml "
        "beside the flow, else ./ivr.toml if present)",
    )
    p.add_argument(
        "-v", "--verbose", action="store_true", help="print the whole call trace of every test"
    )
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    files = find_test_files(args.paths)
    if not files:
        print("ivr test: no .ivrtest files found in " + ", ".join(args.paths), file=sys.stderr)
        return 1
    passed = failed = broken = 0
    for path in files:
        if not path.is_file():
            print(f"ERROR {path}: no such test file", file=sys.stderr)
            broken += 1
            continue
        try:
            results = run_test_file(path, config=Path(args.config) if args.config else None)
        except FlowTestError as exc:
            print(f"ERROR {exc}", file=sys.stderr)
            broken += 1
            continue
        for result in results:
            print(result.report())
            if args.verbose and result.trace is not None:
                print("\n".join("    | " + line for line in result.trace.text))
            passed += result.passed
            failed += not result.passed
    summary = f"{passed} passed, {failed} failed"
    print(summary + (f", {broken} file(s) with errors" if broken else ""))
    return 1 if failed or broken else 0
