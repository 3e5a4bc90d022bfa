"""``ivr tts "text" -o out.wav``: speak a text with the deployment's TTS settings, for admins."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import soundfile

from ivr.commands.options import add_config_option, add_data_option, description
from ivr.config import ConfigError, load_config
from ivr.media.clip import RATE
from ivr.media.tts import TtsEngine, TtsError


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser("tts", help="render a text to an 8 kHz WAV with espeak-ng", description=description(__doc__))
    p.add_argument("text", help="what to say")
    p.add_argument("-o", "--output", required=True, type=Path, help="WAV file to write (8 kHz mono PCM16)")
    p.add_argument("--voice", help="espeak-ng voice (default: [tts] voice of the deployment file)")
    p.add_argument("--rate", type=int, help="words per minute (default: [tts] rate)")
    add_config_option(p)
    add_data_option(p, ", whose tts-cache/ is used")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        config = load_config(args.config, data=args.data)
        engine = TtsEngine.in_data_folder(config.data, config.tts)
        clip = engine.render(args.text, voice=args.voice, rate=args.rate)
    except (ConfigError, TtsError) as exc:
        print(f"ivr tts: {exc}", file=sys.stderr)
        return 1
    try:
        soundfile.write(str(args.output), clip.pcm, RATE, subtype="PCM_16", format="WAV")
    except (OSError, soundfile.LibsndfileError) as exc:
        print(f"ivr tts: cannot write {args.output}: {exc}", file=sys.stderr)
        return 1
    print(f"{args.output}: {clip.duration:.2f} s, 8000 Hz mono PCM16")
    return 0
