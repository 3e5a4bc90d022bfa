"""``ivr directory``: admin tools for dial-by-name directories.

``ivr directory list FILE`` prints the people of a CSV/TOML directory and the
problems :func:`~ivr.directory.source.check_directory` finds.
``ivr directory test FILE AUDIO...`` runs each recording (WAV, any rate) the
way a call would (8 kHz, G.711, endpointing, the directory's grammar) and
prints ``AUDIO<TAB>display name`` or ``AUDIO<TAB>-`` for no match, and
``AUDIO<TAB>name or other name`` when the recognizer heard two people (the combined
engine's models disagreed: a call would ask the caller which one).
``ivr directory tune FILE AUDIO...`` learns the deployment's per-name score offsets of the
whisper engine from labelled recordings (:mod:`ivr.directory.tuning`), prints the accuracy
before and after, and writes them to the tuning file (``[speech] tuning`` or ``--output``).
"""

from __future__ import annotations

import argparse
import sys
from collections import Counter
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ivr.commands.options import add_config_option
from ivr.directory.matching import PhraseIndex
from ivr.directory.source import DirectoryBook, DirectoryError, check_directory, load_directory
from ivr.media.asr import ENGINES
from ivr.media.recognizer import Recognition

if TYPE_CHECKING:
    from ivr.directory.tuning import Sample
    from ivr.media.asr_whisper import PhraseScores


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("directory", help="list a dial-by-name directory or test speech against it")
    sub = parser.add_subparsers(dest="directory_command", metavar="ACTION", required=True)
    lister = sub.add_parser("list", help="print the people of a directory file and its problems")
    lister.add_argument("file", type=Path, metavar="FILE", help="directory file (.csv or .toml)")
    lister.set_defaults(func=list_handler)
    tester = sub.add_parser("test", help="recognize recorded names against a directory")
    tester.add_argument("file", type=Path, metavar="FILE", help="directory file (.csv or .toml)")
    tester.add_argument("audio", type=Path, nargs="+", help="WAV files (any rate, mono or stereo)")
    tester.add_argument("--engine", choices=ENGINES, default=None, help="default: [speech] engine")
    tester.add_argument("--model", type=Path, default=None, help="model folder (vosk); default: [speech] model")
    add_config_option(tester)
    tester.add_argument("--codec", choices=("pcmu", "pcma", "none"), default="pcmu", help="G.711 codec the audio passes through first, as on a call (default: pcmu)")
    tester.set_defaults(func=test_handler)
    tuner = sub.add_parser("tune", help="learn per-name score offsets (whisper) from labelled recordings")
    tuner.add_argument("file", type=Path, metavar="FILE", help="directory file (.csv or .toml)")
    tuner.add_argument(
        "audio", type=Path, nargs="+", help="WAV files named after the person (alice-johnson-2.wav) or CSV files of audio,name"
    )
    tuner.add_argument("--output", type=Path, default=None, help="tuning file to write; default: [speech] tuning")
    tuner.add_argument("--model", type=Path, default=None, help="Whisper model folder; default: the installed one")
    add_config_option(tuner)
    tuner.add_argument("--codec", choices=("pcmu", "pcma", "none"), default="pcmu", help="G.711 codec the audio passes through first (default: pcmu)")
    tuner.set_defaults(func=tune_handler)


def _load(path: Path) -> DirectoryBook | None:
    try:
        return load_directory(path)
    except DirectoryError as exc:
        print(f"ivr directory: {exc}", file=sys.stderr)
        return None


def list_handler(args: argparse.Namespace) -> int:
    book = _load(args.file)
    if book is None:
        return 1
    rows = [("NAME", "EXTENSION", "DEPARTMENT", "MAILBOX", "ALIASES", "NOTES")]
    for p in book.people:
        notes = ", ".join(n for n, on in (("hidden", p.hidden), (f"recording {p.name_recording}", p.name_recording)) if on)
        rows.append((p.display_name, p.extension, p.department, p.mailbox or "", "; ".join(p.aliases), notes))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)).rstrip())
    problems = check_directory(book, extensions=None)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    return 0


def _book_and_speech(args: argparse.Namespace) -> tuple[Any, Any] | None:
    """The directory file and the deployment's ``[speech]``; None (said on stderr) when either fails."""
    from ivr.config import ConfigError, load_config

    book = _load(args.file)
    if book is None:
        return None
    try:
        return book, load_config(args.config).speech
    except ConfigError as exc:
        print(f"ivr directory: {exc}", file=sys.stderr)
        return None


def test_handler(args: argparse.Namespace) -> int:
    from ivr.media.asr import get_recognizer
    from ivr.media.recognizer import RecognizerError

    loaded = _book_and_speech(args)
    if loaded is None:
        return 1
    book, speech = loaded
    engine = args.engine or speech.engine
    model = args.model if args.model is not None else (speech.model if engine == speech.engine else None)
    index = PhraseIndex.build(book)
    try:
        recognizer = get_recognizer(engine, model, speech.tuning)
        phrases = _usable_phrases(recognizer, index.phrases)
    except RecognizerError as exc:
        print(f"ivr directory: {exc}", file=sys.stderr)
        return 1
    status = 0
    for audio in args.audio:
        try:
            pcm = read_call_audio(audio, args.codec)
        except (OSError, RuntimeError, ValueError) as exc:
            print(f"ivr directory: cannot read {audio}: {exc}", file=sys.stderr)
            status = 1
            continue
        heard = recognize(recognizer, phrases, pcm)
        print(f"{audio}\t{heard_names(index, heard.text, heard.alternatives)}", flush=True)
    return status


def heard_names(index: PhraseIndex, text: str, alternatives: tuple[str, ...]) -> str:
    """"Alice Johnson", "Alice Johnson or Alicia Jensen" (two people heard), or "-" for no match."""
    names = [p.display_name for phrase in (text, *alternatives) if phrase for p in index.lookup(phrase)[:1]]
    return " or ".join(dict.fromkeys(names)) or "-"


def _usable_phrases(recognizer: Any, phrases: tuple[str, ...]) -> tuple[str, ...]:
    """Report (on stderr) the phrases the engine cannot recognize, and keep the others."""
    problems = recognizer.check(phrases)
    for problem in problems:
        print(f"warning: {problem}", file=sys.stderr)
    if not problems:
        return phrases
    usable = tuple(p for p in phrases if not recognizer.check([p]))
    if not usable:
        from ivr.media.recognizer import RecognizerError

        raise RecognizerError(f"{recognizer.engine}: no phrase of the directory can be recognized")
    return usable


def read_call_audio(path: Path, codec: str) -> np.ndarray:
    """A WAV file as the caller's side of a call: mono, 8 kHz, optionally through G.711."""
    import soundfile as sf
    import soxr

    from ivr.media import g711

    audio, rate = sf.read(path, dtype="float32", always_2d=True)
    mono = audio.mean(axis=1)
    if rate != 8000:
        mono = soxr.resample(mono, rate, 8000)
    pcm = np.clip(mono * 32768.0, -32768, 32767).astype(np.int16)
    pcm = np.concatenate([pcm, np.zeros(8000, dtype=np.int16)])  # room for the end-of-speech hangover
    if codec == "none":
        return pcm
    pt = g711.PCMU if codec == "pcmu" else g711.PCMA
    return g711.decode(g711.encode(pcm, pt), pt)


def recognize(recognizer: Any, phrases: tuple[str, ...], pcm: np.ndarray) -> Recognition:
    """Frames through the endpointer and a session, as the call runner does; "" for no match."""
    from ivr.media.recognizer import finish_recognition
    from ivr.media.vad import FRAME_SAMPLES, Endpointer

    session = recognizer.session(phrases)
    endpointer = Endpointer()
    heard = False
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = pcm[i : i + FRAME_SAMPLES]
        session.accept(frame)
        state = endpointer.feed(frame)
        heard = heard or state != "waiting"
        if state in ("done", "no_speech"):
            break
    if not heard:
        session.close()
        return Recognition("", 0.0)
    return finish_recognition(session)


def tune_handler(args: argparse.Namespace) -> int:
    from ivr.directory import tuning
    from ivr.media import asr_whisper
    from ivr.media.asr import get_recognizer
    from ivr.media.recognizer import RecognizerError

    loaded = _book_and_speech(args)
    if loaded is None:
        return 1
    book, speech = loaded
    output = args.output or speech.tuning
    if output is None:
        print("ivr directory: no tuning file: set [speech] tuning in the deployment file or give --output", file=sys.stderr)
        return 1
    index = PhraseIndex.build(book)
    try:
        samples = tuning.labelled(args.audio, index)
        recognizer = get_recognizer("whisper", args.model)
        assert isinstance(recognizer, asr_whisper.WhisperRecognizer)
        before = asr_whisper.read_offsets(output) if output.exists() else {}
        scored = [(recognizer.utterance_scores(read_call_audio(s.audio, args.codec), index.phrases), s.phrase) for s in samples]
    except (tuning.TuningError, RecognizerError) as exc:
        print(f"ivr directory: {exc}", file=sys.stderr)
        return 1
    except (OSError, RuntimeError, ValueError) as exc:
        print(f"ivr directory: cannot read a recording: {exc}", file=sys.stderr)
        return 1
    after = tuning.learn_offsets(scored, before, asr_whisper.FREE_MARGIN)
    _tune_report(index, samples, scored, before, after)
    tuning.write_tuning(output, after)
    print(f"wrote {len(after)} offsets to {output}")
    return 0


def _tune_report(
    index: PhraseIndex,
    samples: list[Sample],
    scored: list[tuple[PhraseScores, str]],
    before: Mapping[str, float],
    after: Mapping[str, float],
) -> None:
    from ivr.directory import tuning
    from ivr.media.asr_whisper import FREE_MARGIN, best_phrase

    def heard(scores: PhraseScores, offsets: Mapping[str, float]) -> str:
        found = best_phrase(scores, offsets)
        return heard_names(index, found.text, ()) if found.text and found.margin > FREE_MARGIN else "-"

    for sample, (scores, _) in zip(samples, scored, strict=True):
        expected = heard_names(index, sample.phrase, ())
        print(f"{sample.audio}\t{expected}\tbefore: {heard(scores, before)}\tafter: {heard(scores, after)}")
    for label, offsets in (("before", before), ("after", after)):
        counts = Counter(tuning.outcome(scores, phrase, offsets, FREE_MARGIN) for scores, phrase in scored)
        print(
            f"{label}: {counts['right']}/{len(scored)} right ({100 * counts['right'] / len(scored):.1f} %), "
            f"{counts['wrong']} wrong, {counts['none']} no match"
        )
