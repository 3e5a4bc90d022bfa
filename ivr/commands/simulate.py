"""``ivr simulate``: one call through a flow in the terminal, at a chosen time, from a chosen number.

The call runs on the server's own call runtime in virtual time: the flow, prompts,
transfers, the directory and voicemail dialogues are ``ivr serve``'s code; the caller, the
far-end phones and the clock are simulated.

Prints what the caller hears and what the system does, one line per action (or one JSON object per
line with ``--json``), and where the call ends.  Without ``--input`` the caller's part is read
from standard input, a line of tokens at a time, whenever the flow waits.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import datetime
from pathlib import Path
from typing import Any

from ivr.commands.options import description
from ivr.commands.switch import SwitchError, read_switches
from ivr.config import Config, ConfigError, load_config
from ivr.dsl.schedule import ScheduleError, format_local, parse_local, wall_to_epoch, zone
from ivr.runtime.simulate import (
    CallerInput,
    Scenario,
    Simulation,
    SimulationError,
    parse_inputs,
)
from ivr.runtime.trace import TraceLine

EPILOG = """\
input tokens: 1 2 # * (keys; 123# presses several), say:alice_johnson or say:"alice johnson"
(speech), say:alice_johnson|alicia_jensen (heard two ways), say: (speech that matches nothing), wait:10s (let time pass), wait (until the next
timeout), hangup.  A leading ! delivers the token at once, interrupting the prompt (!1).

far ends: a target is rung as ivr serve rings it (an extension of the deployment, where every
extension has a phone in a simulation, and its follow-me numbers; an external number only through
a trunk that allows it).  Every phone rung answers after 5 s unless named in --busy/--no-answer/
--unavailable/--fail; with --answer only the targets named there answer (--answer none: nobody).
* names every target.

--json: one object per line: {"action": "say", "text": ..., "t": seconds} for what the flow does,
{"event": "key", "digit": "1", "t": ...} for the caller and the network, {"note": ...} for the
call and schedule lines, and last {"outcome": ..., "detail": ..., "step": ...}.
"""


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "simulate",
        help="simulate a call through a flow in the terminal",
        description=description(__doc__),
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("files", nargs="+", metavar="FILE", help="flow file(s) (.ivr)")
    p.add_argument(
        "--config", metavar="FILE",
        help="deployment file (default: ivr.toml beside the flow, else ./ivr.toml if present)"
    )
    p.add_argument("--at", help='"YYYY-MM-DD HH:MM" in the flow\'s time zone (default: now)')
    p.add_argument("--caller", default="anonymous", help="the caller's number")
    p.add_argument("--phone", action="store_true",
                   help="the caller is the phone of extension --caller, logged in: the call runs the dial plan")
    p.add_argument(
        "--called", default="", help="the number called (default: the flow's first number)"
    )
    p.add_argument(
        "--input",
        dest="input_text",
        help='caller input, e.g. "1 9 say:alice_johnson wait:10s # hangup"',
    )
    p.add_argument("--json", action="store_true", help="one JSON object per line")
    p.add_argument(
        "--times", action="store_true", help="start each line with the seconds since the call began"
    )
    for flag, what in (
        ("--answer", "answer"),
        ("--busy", "are busy"),
        ("--no-answer", "do not answer"),
        ("--unavailable", "are unavailable"),
        ("--fail", "fail"),
        ("--early-media", "send early media (183 with SDP) while they ring"),
    ):
        p.add_argument(
            flag,
            action="append",
            default=[],
            metavar="EXT",
            help=f"these targets {what} (repeat or comma-separate)",
        )
    p.add_argument(
        "--directory-select",
        action="append",
        default=[],
        metavar="NAME",
        help='when the directory asks, the caller says NAME and confirms it with 1; '
        '"not found": says a name nobody has; "operator": presses 0',
    )
    p.add_argument(
        "--switch", action="append", default=[], metavar="NAME=on|off",
        help="switch positions (default: as `ivr switch` set them in the data folder)",
    )
    p.add_argument(
        "--var", action="append", default=[], metavar="NAME=VALUE", help="preset a flow variable"
    )
    p.add_argument("--voicemail-empty", action="store_true", help="the caller leaves no message")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ivr.dsl.errors import FlowError
    from ivr.dsl.machine import MachineError
    from ivr.runtime.deployment import load_flow

    try:
        config = find_config(args.config, args.files)
        program = load_flow([Path(f) for f in args.files], prompt_folders=config.prompt_folders, config=config)
        scenario = build_scenario(args, program.settings.timezone, read_switches(config.data))
    except FlowError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (SwitchError, ConfigError, SimulationError, ScheduleError, LookupError) as exc:
        print(f"ivr simulate: {exc}", file=sys.stderr)
        return 2
    if args.at:
        warning = dst_warning(args.at, program.settings.timezone)
        if warning:
            print(f"ivr simulate: {warning}", file=sys.stderr)
    more = None if args.input_text is not None else read_stdin_input
    printer = print_json if args.json else print_timed if args.times else print_plain
    try:
        Simulation(
            program,
            scenario,
            more_input=more,
            on_line=printer,
            config=config,
        ).run()
    except LookupError as exc:  # no entry point for the called number
        print(f"ivr simulate: {exc}", file=sys.stderr)
        return 2
    except MachineError as exc:  # the flow machine refused an event: a bug worth reporting whole
        print(f"ivr simulate: the flow machine stopped: {exc}", file=sys.stderr)
        return 1
    return 0


def find_config(explicit: str | None, files: list[str]) -> Config:
    """The deployment file: --config, else ivr.toml beside the first flow, else ./ivr.toml."""
    if explicit:
        return load_config(explicit)
    beside = Path(files[0]).resolve().parent / "ivr.toml"
    if beside.is_file():
        return load_config(beside)
    return load_config(None)


def build_scenario(args: argparse.Namespace, timezone: str, switches: dict[str, bool] | None = None) -> Scenario:
    """The scenario the flags describe; ``switches``: the positions in the data folder, which --switch overrides."""
    start = parse_local(args.at, timezone) if args.at else time.time()
    inputs = tuple(parse_inputs(args.input_text)) if args.input_text is not None else ()
    answer = _targets(args.answer)
    return Scenario(
        start=start,
        caller=args.caller,
        phone=args.phone,
        called=args.called,
        inputs=inputs,
        switches={**(switches or {}), **parse_switches(args.switch)},
        variables=_pairs(args.var, "--var"),
        answer=answer if args.answer else None,
        busy=_targets(args.busy),
        no_answer=_targets(args.no_answer),
        unavailable=_targets(args.unavailable),
        failed=_targets(args.fail),
        early_media=_targets(args.early_media),
        directory=tuple(args.directory_select),
        voicemail_result="empty" if args.voicemail_empty else "saved",
    )


def dst_warning(text: str, timezone: str) -> str | None:
    """Say so when ``--at`` names a wall time that daylight saving skips or repeats."""
    start = parse_local(text, timezone)
    local = datetime.fromtimestamp(start, zone(timezone))
    wanted = " ".join(text.split()).replace("T", " ")[:16]
    if local.strftime("%Y-%m-%d %H:%M") != wanted and local.strftime("%Y-%m-%d %-H:%M") != wanted:
        return f"{wanted} does not exist in {timezone} (clocks jump); simulating {format_local(start, timezone)}"
    later = wall_to_epoch(local.date(), local.hour * 60 + local.minute, timezone, fold=1)
    if later != start - local.second:
        return f"{wanted} happens twice in {timezone}; simulating the first, {format_local(start, timezone)}"
    return None


def _targets(values: list[str]) -> frozenset[str]:
    items = {v.strip() for value in values for v in value.split(",") if v.strip()}
    return frozenset(items - {"none"})


def _pairs(values: list[str], flag: str) -> dict[str, str]:
    out: dict[str, str] = {}
    for value in values:
        name, sep, rest = value.partition("=")
        if not sep or not name.strip():
            raise SimulationError(f"{flag} {value!r}: expected NAME=VALUE")
        out[name.strip()] = rest.strip()
    return out


def parse_switches(values: list[str]) -> dict[str, bool]:
    """``["night=on", "storm=off"]`` -> {"night": True, "storm": False}; a bare name means on."""
    out: dict[str, bool] = {}
    for value in values:
        name, sep, state = value.partition("=")
        state = state.strip().lower() if sep else "on"
        if state not in ("on", "off", "true", "false", "1", "0"):
            raise SimulationError(f"--switch {value!r}: expected NAME=on or NAME=off")
        out[name.strip()] = state in ("on", "true", "1")
    return out


def print_plain(line: TraceLine) -> None:
    print(line.text, flush=True)


def print_timed(line: TraceLine) -> None:
    print(f"{line.at:8.2f}s  {line.text}", flush=True)


def print_json(line: TraceLine) -> None:
    print(json.dumps(dict(line.data), ensure_ascii=False), flush=True)


def read_stdin_input() -> list[CallerInput] | None:
    """One line of tokens from the terminal; an empty line lets the next timeout happen."""
    while True:
        if sys.stdin.isatty():
            print("caller> ", end="", file=sys.stderr, flush=True)
        line = sys.stdin.readline()
        if not line:
            return None
        try:
            return parse_inputs(line)
        except SimulationError as exc:
            print(f"  {exc}", file=sys.stderr)
            if not sys.stdin.isatty():
                return None
