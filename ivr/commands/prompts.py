"""``ivr prompts render FLOW...``: synthesise every constant ``say`` of the flows ahead of calls.

With mailboxes in the deployment file, the voicemail dialogues' texts are rendered too.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from ivr.commands.options import add_config_option, add_data_option
from ivr.config import ConfigError, load_config
from ivr.media.tts import TtsEngine, TtsError
from ivr.runtime.prepare import flow_texts


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("prompts", help="prompt tools (render the TTS cache of flows)")
    sub = p.add_subparsers(dest="prompts_command", metavar="ACTION", required=True)
    r = sub.add_parser(
        "render", help="render every constant `say` text of the flows into the TTS cache"
    )
    r.add_argument("flows", nargs="+", type=Path, metavar="FLOW", help="flow files (.ivr)")
    add_config_option(r)
    add_data_option(r, ", whose tts-cache/ is filled")
    r.set_defaults(func=run_render)


def run_render(args: argparse.Namespace) -> int:
    from ivr.dsl.errors import FlowError
    from ivr.runtime.deployment import load_flow

    try:
        config = load_config(args.config, data=args.data)
        program = load_flow(args.flows, prompt_folders=config.prompt_folders)
        engine = TtsEngine.in_data_folder(config.data, config.tts)
        texts = flow_texts(program, config, engine.voice_for)
        before = engine.rendered
        paths = engine.prerender(texts)
    except FlowError as exc:
        print(str(exc), file=sys.stderr)
        return 1
    except (ConfigError, TtsError) as exc:
        print(f"ivr prompts render: {exc}", file=sys.stderr)
        return 1
    for (text, voice, rate), path in zip(texts, paths, strict=True):
        print(f"{path}  [{voice or config.tts.voice} {rate or config.tts.rate}]  {text}")
    print(
        f"{len(paths)} text(s), {engine.rendered - before} newly rendered, cache {engine.cache_dir}"
    )
    return 0
