"""``ivr serve FLOW...``: answer calls with a flow (see :mod:`ivr.runtime.server`)."""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path
from typing import Any

from ivr.config import ConfigError, load_config, parse_duration, parse_hostport
from ivr.runtime.calllog import CallLog


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "serve",
        help="answer SIP calls with a flow",
        description=(
            "Load and check the flows, then answer calls on SIP (UDP and TCP). "
            "SIGTERM drains: new calls get 503, running calls finish."
        ),
        epilog=(
            "Signals: SIGTERM or SIGINT drains (new INVITEs and OPTIONS get 503, running calls "
            "finish, then exit; a second signal stops at once). SIGHUP reloads: the deployment "
            "file is read again and the flows loaded, checked and their texts pre-rendered; new "
            "calls then run the new flows while running calls finish on the old ones. A flow that "
            "fails the check is logged (reload_failed, with file:line:col diagnostics) and the old "
            "flows keep serving. listen, public_address, data, rtp_ports, [smtp] and [storage] need a "
            "restart (reload_ignored names them). SIGHUP while draining is ignored. With [http] listen set "
            "(or --http), the browser console, the JSON API and /metrics are served too (docs/console.md)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("flows", nargs="*", metavar="FLOW", help="flow files (default: server.flows in the config)")
    p.add_argument("--config", help="deployment file (default: ./ivr.toml if present)")
    p.add_argument("--listen", metavar="HOST:PORT", help="SIP address (default: server.listen, 127.0.0.1:5060)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: from the config, ./data)")
    p.add_argument("--drain-timeout", metavar="DURATION", help="how long SIGTERM waits for calls (default 30s)")
    p.add_argument(
        "--max-calls", metavar="N", type=_positive,
        help="calls up at once, more get 503 (default: server.max_calls, else half the RTP port pairs)",
    )
    p.add_argument("--log-format", choices=("json", "text"), default="json", help="call event log format")
    p.add_argument("--http", metavar="HOST:PORT",
                   help="serve the console, the API and /metrics here (default: [http] listen; \"off\": not at all)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    calllog = CallLog(sys.stderr, fmt=args.log_format)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    try:
        settings, flows = _settings(args)
    except ConfigError as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 2
    from ivr.dsl.errors import FlowError
    from ivr.runtime.deployment import load_flow

    try:
        program = load_flow(flows, prompt_folders=settings.config.prompt_folders, config=settings.config)
    except FlowError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 1
    for warning in getattr(program, "warnings", ()):
        print(warning.format(), file=sys.stderr)
    from ivr.runtime.prepare import prerender
    from ivr.runtime.server import prepare_data, run_server

    try:
        prerender(program, settings.config, calllog)
        prepare_data(settings.config.data, calllog)
    except Exception as exc:  # TTS voice missing, data folder unwritable: fail before binding
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 1
    calllog = CallLog(sys.stderr, fmt=args.log_format, threaded=True)  # from here on, never block the loop
    try:
        return run_server(settings, program, calllog, _companions(settings))
    finally:
        calllog.close()


def _companions(settings: Any) -> list[Any]:
    """The console process (ivr.web, beside the server) when the deployment file or --http asks for it."""
    if settings.config.http.listen is None:
        return []
    from ivr.runtime.companion import ConsoleProcess

    return [ConsoleProcess()]


def _positive(value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of calls of at least 1, got {value!r}")
    return number


def _settings(args: argparse.Namespace) -> tuple[Any, list[Path]]:
    """The deployment file overridden by the options, and the flows; SIGHUP calls it again."""
    from ivr.runtime.settings import ServeSettings

    config = load_config(args.config, data=args.data)
    listen = config.server.listen
    if args.listen:
        listen = parse_hostport(args.listen, where="--listen")
    drain = config.server.drain_timeout
    if args.drain_timeout is not None:
        drain = parse_duration(args.drain_timeout, where="--drain-timeout")
    if args.http is not None:
        config = _with_http(config, args.http)
    flows = [Path(f) for f in args.flows] or list(config.server.flows)
    if not flows:
        raise ConfigError("no flow given: name one (ivr serve FLOW) or set server.flows in the deployment file")
    settings = ServeSettings(
        config=config, listen=listen, drain_timeout=drain, max_calls=args.max_calls or 0,
        reread=lambda: _settings(args),
    )
    return settings, flows


def _with_http(config: Any, value: str) -> Any:
    """The config with --http's address in [http] listen (checked as the file's would be)."""
    import dataclasses

    from ivr.config import LOOPBACK

    http = config.http
    if value == "off":
        return dataclasses.replace(config, http=dataclasses.replace(http, listen=None))
    listen = parse_hostport(value, where="--http", default_port=8080)
    if listen[0] not in LOOPBACK and not http.tls:
        raise ConfigError(f"--http {value}: not loopback: set tls_cert and tls_key in [http]")
    return dataclasses.replace(config, http=dataclasses.replace(http, listen=listen))
