"""``ivr prompts render FLOW...``: synthesise every constant ``say`` of the flows ahead of calls.
``ivr prompts missing --language de``: ivr's own sentences without a recording in ``de/``.

With mailboxes in the deployment file, the voicemail dialogues' texts are rendered too.  A
recording of one of ivr's own constant sentences in the prompt folders
(``de/voicemail.leave.saved_goodbye.wav``) plays instead of TTS (docs/languages.md).
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
    m = sub.add_parser(
        "missing", help="list ivr's own sentences of a language that have no recording in the prompt folders"
    )
    m.add_argument("--language", default="en", metavar="LANG", help="the language (de, fr, it, en; default en)")
    add_config_option(m)
    m.set_defaults(func=run_missing)


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


def run_missing(args: argparse.Namespace) -> int:
    """Each constant catalogue sentence of the language with no ``LANG/ID.wav`` in the prompt folders."""
    from ivr.language import base_language, catalogue, known
    from ivr.media.prompts import PromptStore
    from ivr.runtime.languages import has_recording, recording_path

    if not known(args.language):
        print(f"ivr prompts missing: no message catalogue for language {args.language!r}", file=sys.stderr)
        return 1
    try:
        config = load_config(args.config)
    except ConfigError as exc:
        print(f"ivr prompts missing: {exc}", file=sys.stderr)
        return 1
    lang, store = catalogue(args.language), PromptStore(config.prompt_folders)
    sentences = [m for m in lang.ids() if lang.constant(m)]
    missing = [m for m in sentences if not has_recording(store, lang.language, m)]
    for message in missing:
        print(f"{recording_path(lang.language, message)}  {lang.say(message)}")
    folders = ", ".join(str(f) for f in config.prompt_folders) or "no prompt folders"
    print(f"{len(missing)} of {len(sentences)} sentences in {base_language(args.language)} have no recording ({folders})")
    return 0
