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
    )
    p.add_argument("flows", nargs="*", metavar="FLOW", help="flow files (default: server.flows in the config)")
    p.add_argument("--config", help="deployment file (default: ./ivr.toml if present)")
    p.add_argument("--listen", metavar="HOST:PORT", help="SIP address (default: server.listen, 127.0.0.1:5060)")
    p.add_argument("--data", metavar="DIR", help="data folder (default: from the config, ./data)")
    p.add_argument("--drain-timeout", metavar="DURATION", help="how long SIGTERM waits for calls (default 30s)")
    p.add_argument("--log-format", choices=("json", "text"), default="json", help="call event log format")
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
    from ivr.dsl.loader import load_flow

    try:
        program = load_flow(flows, prompt_folders=settings.config.prompt_folders)
    except FlowError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 1
    for warning in getattr(program, "warnings", ()):
        print(warning.format(), file=sys.stderr)
    from ivr.runtime.server import prepare_data, run_server

    try:
        _prerender(program, settings.config, calllog)
        prepare_data(settings.config.data, calllog)
    except Exception as exc:  # TTS voice missing, data folder unwritable: fail before binding
        print(f"ivr serve: {exc}", file=sys.stderr)
        return 1
    calllog = CallLog(sys.stderr, fmt=args.log_format, threaded=True)  # from here on, never block the loop
    try:
        return run_server(settings, program, calllog)
    finally:
        calllog.close()


def _settings(args: argparse.Namespace) -> tuple[Any, list[Path]]:
    from ivr.runtime.server import ServeSettings

    config = load_config(args.config, data=args.data)
    listen = config.server.listen
    if args.listen:
        listen = parse_hostport(args.listen, where="--listen")
    drain = config.server.drain_timeout
    if args.drain_timeout is not None:
        drain = parse_duration(args.drain_timeout, where="--drain-timeout")
    flows = [Path(f) for f in args.flows] or list(config.server.flows)
    if not flows:
        raise ConfigError("no flow given: name one (ivr serve FLOW) or set server.flows in the deployment file")
    return ServeSettings(config=config, listen=listen, drain_timeout=drain), flows


def _prerender(program: Any, config: Any, calllog: CallLog) -> None:
    """Render every constant ``say`` of the flow and the voicemail dialogues' texts now, so no caller waits for synthesis."""
    from ivr.commands.prompts import voicemail_texts
    from ivr.media.tts import TtsEngine, texts_of

    texts = texts_of(program) + voicemail_texts(program, config)
    if not texts:
        return
    engine = TtsEngine.for_config(config)
    engine.prerender(texts)
    calllog.server("prerendered", f"pre-rendered {len(texts)} prompt text(s)", texts=len(texts))
