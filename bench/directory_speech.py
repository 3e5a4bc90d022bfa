"""Benchmark of dial-by-name by speech: top-1 accuracy, false accepts and latency.

Builds a directory of at least 100 people (common English names plus names
cmudict lacks), synthesizes every name with espeak-ng in several voices and
speeds, and passes each through what a call does to it: resampling to 8 kHz,
background noise at a fixed SNR, G.711 mu-law, 20 ms frames through the
:class:`~ivr.media.vad.Endpointer` and a recognizer session.  Names *not* in
the directory (a disjoint list) measure false accepts.  Latency is the time
``session.finish()`` takes once the endpointer says the caller is done,
i.e. what the caller waits after the end-of-speech hangover.

    python bench/directory_speech.py                 # full run (700 utterances, a few minutes)
    python bench/directory_speech.py --quick         # CI: fewer voices and people
    python bench/directory_speech.py --engine moonshine   # Moonshine base (PyPI moonshine-cpp)
    python bench/directory_speech.py --engine moonshine --filler-margin 4 --beam 16
"""

from __future__ import annotations

import argparse
import random
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ivr.directory.matching import PhraseIndex
from ivr.directory.source import load_directory
from ivr.media import asr, g711
from ivr.media.recognizer import Recognizer, filler_words
from ivr.media.vad import FRAME_SAMPLES, Endpointer

FIRST = (
    "alice bob carol david emma frank grace henry irene jack karen liam maria noah olivia peter "
    "quinn rachel samuel tina ursula victor wendy xavier yvonne zachary amelia benjamin chloe "
    "daniel eleanor felix georgia hugo isabel james julia kevin laura martin nadia oscar paula "
    "sophie thomas vanessa william siobhan minh"
).split()
LAST = (
    "johnson miller white garcia wilson moore taylor anderson jackson thompson robinson clark "
    "lewis walker hall young king wright lopez hill green adams baker nelson carter mitchell "
    "perez roberts turner phillips campbell parker evans edwards collins stewart morris rogers "
    "reed cook morgan bell murphy bailey cooper richardson cox howard ward torres peterson gray "
    "ramirez watson brooks kelly sanders price bennett wood barnes ross henderson coleman jenkins "
    "perry powell patterson hughes flores washington butler simmons foster gonzales bryant "
    "alexander russell griffin diaz hayes myers ford hamilton graham sullivan wallace woods cole "
    "west jordan owens nguyen zurcher dvorak okonkwo"
).split()
# Out-of-directory callers' names: no word in common with the directory or the filler list.
OUTSIDERS = [
    f"{f} {sur}"
    for f, sur in zip(
        "leonard gwendolyn rupert agnes bernard cecilia dominic florence herbert ingrid lucille "
        "marcus norman phoebe rosalind sylvia vernon wilbur harriet conrad "
        "ambrose beatrix cornelius delphine ezekiel fenella gideon hortense ignatius jemima "
        "lysander marguerite octavia percival rosamund thaddeus winifred barnaby clementine desmond".split(),
        "dubois svensson okafor schneider novak yamamoto fischer rossi kowalski nakamura "
        "lindqvist brennan gallagher hargreaves whitfield pemberton blackwood moreau castellano petrov "
        "abernathy bancroft delacroix eriksen fairbanks hawthorne ishikawa jablonski kavanagh lindgren "
        "mcallister nakashima oyelaran pritchard quesada rasmussen szymanski thackeray vandermeer wojcik".split(),
        strict=True,
    )
]
VOICES = [
    ("en-us", 150),
    ("en-gb+f2", 140),
    ("en-us+m3", 175),
    ("en-gb+m1", 160),
    ("en-us+f4", 130),
]
SNR_DB = 25.0


@dataclass
class Trial:
    expected: str  # display name, or "" for an outsider
    got: str
    latency: float
    group: int  # number of the person (or outsider) in its list: even = tuning split, odd = held-out
    heard: str = ""  # the recognizer's phrase, for the confusion list
    said: str = ""  # an outsider's name (expected is "")

    @property
    def held_out(self) -> bool:
        return self.group % 2 == 1


def make_directory(people: int, folder: Path) -> Path:
    rng = random.Random(5)
    names: list[tuple[str, str]] = []
    while len(names) < people:
        pair = (rng.choice(FIRST), rng.choice(LAST))
        if pair not in names:
            names.append(pair)
    rows = [f"{f.title()},{sur.title()},{200 + i}" for i, (f, sur) in enumerate(names)]
    path = folder / "bench.csv"
    path.write_text("first_name,last_name,extension\n" + "\n".join(rows) + "\n", encoding="utf-8")
    return path


def synthesize(text: str, voice: str, speed: int, rng: np.random.Generator) -> np.ndarray:
    with tempfile.NamedTemporaryFile(suffix=".wav") as tmp:
        subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", tmp.name, text], check=True)
        audio, rate = sf.read(tmp.name, dtype="float32")
    audio = soxr.resample(audio, rate, 8000)
    audio = np.concatenate([np.zeros(4000, np.float32), audio, np.zeros(8000, np.float32)])
    speech_power = float(np.mean(audio[audio != 0] ** 2)) if np.any(audio) else 1e-6
    noise = rng.normal(0.0, np.sqrt(speech_power / 10 ** (SNR_DB / 10)), len(audio)).astype(np.float32)
    pcm = np.clip((audio + noise) * 32767, -32768, 32767).astype(np.int16)
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def recognize(recognizer: Recognizer, phrases: tuple[str, ...], pcm: np.ndarray) -> tuple[str, float]:
    session = recognizer.session(phrases)
    endpointer = Endpointer(no_speech_timeout=5.0, max_utterance=8.0, hangover=0.6)
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = pcm[i : i + FRAME_SAMPLES]
        session.accept(frame)
        if endpointer.feed(frame) in ("done", "no_speech"):
            break
    start = time.perf_counter()
    text, _ = session.finish()
    return text, time.perf_counter() - start


def run(args: argparse.Namespace) -> list[Trial]:
    recognizer = asr.get_recognizer(args.engine, args.model)
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as folder:
        book = load_directory(make_directory(args.people, Path(folder)))
    index = PhraseIndex.build(book)
    taken = {w for p in index.phrases for w in p.split()} | set(filler_words())
    overlap = sorted(taken.intersection(w for name in OUTSIDERS for w in name.split()))
    if overlap:
        raise SystemExit(f"outsiders' names must not share words with the directory or the filler: {overlap}")
    voices = VOICES[: args.voices]
    trials: list[Trial] = []
    for n, person in enumerate(book.people):
        for voice, speed in voices if not args.quick else [voices[n % len(voices)]]:
            text, latency = recognize(recognizer, index.phrases, synthesize(person.display_name, voice, speed, rng))
            got = index.lookup(text)
            trials.append(Trial(person.display_name, got[0].display_name if got else "", latency, n, text))
    for n, name in enumerate(OUTSIDERS[: args.outsiders]):
        for voice, speed in voices if not args.quick else [voices[n % len(voices)]]:
            text, latency = recognize(recognizer, index.phrases, synthesize(name.title(), voice, speed, rng))
            got = index.lookup(text)
            trials.append(Trial("", got[0].display_name if got else "", latency, n, text, name.title()))
    return trials


def figures(trials: list[Trial], label: str) -> None:
    inside = [t for t in trials if t.expected]
    outside = [t for t in trials if not t.expected]
    if not inside or not outside:
        return
    correct = sum(t.got == t.expected for t in inside)
    wrong = sum(bool(t.got) and t.got != t.expected for t in inside)
    false_accepts = sum(bool(t.got) for t in outside)
    latencies = sorted(t.latency * 1000 for t in trials)
    p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
    print(f"[{label}] utterances: {len(inside)} in directory, {len(outside)} outsiders")
    print(f"top-1 accuracy:   {100 * correct / len(inside):5.1f}%  ({correct}/{len(inside)})")
    print(f"wrong person:     {100 * wrong / len(inside):5.1f}%  ({wrong}/{len(inside)})")
    print(f"rejected (no match): {100 * (len(inside) - correct - wrong) / len(inside):5.1f}%")
    print(f"false accepts:    {100 * false_accepts / len(outside):5.1f}%  ({false_accepts}/{len(outside)})")
    print(f"latency after end of speech: mean {statistics.mean(latencies):.1f} ms, p95 {p95:.1f} ms")


def confusions(trials: list[Trial], top: int) -> None:
    """The most frequent mistakes, said -> heard ("-" for no match), to find bad pronunciations."""
    counts = Counter(
        (t.expected or f"outsider {t.said}", t.heard or "-")
        for t in trials
        if (t.expected and t.got != t.expected) or (not t.expected and t.got)
    )
    if counts:
        print(f"most frequent mistakes (of {sum(counts.values())}):")
    for (said, heard), count in counts.most_common(top):
        print(f"  {count} x {said} -> {heard}")


def report(trials: list[Trial], people: int, top: int) -> None:
    print(f"directory: {people} people")
    print("split: tuning = even-numbered people and outsiders, held-out = odd-numbered (all voices each)")
    figures([t for t in trials if not t.held_out], "tuning")
    figures([t for t in trials if t.held_out], "held-out")
    figures(trials, "all")
    confusions(trials, top)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="pocketsphinx", choices=asr.ENGINES)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--voices", type=int, default=len(VOICES))
    parser.add_argument("--outsiders", type=int, default=len(OUTSIDERS), help="names not in the directory")
    parser.add_argument("--confusions", type=int, default=15, help="how many frequent mistakes to list")
    parser.add_argument("--quick", action="store_true", help="one voice per name (CI)")
    parser.add_argument("--filler-weight", type=float, default=None, help="override the filler branch weight")
    parser.add_argument("--fold", type=float, default=None, help="override the spectral folding level")
    parser.add_argument(
        "--filler-margin", type=float, default=None, help="moonshine: log-probability a phrase must beat the filler by"
    )
    parser.add_argument("--beam", type=int, default=None, help="moonshine: hypotheses kept per beam and step")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="pocketsphinx decoder option")
    parser.add_argument(
        "--feature", action="append", default=[], metavar="KEY=VALUE", help="front-end option over feat.params (cmn=live)"
    )
    args = parser.parse_args()
    if shutil.which("espeak-ng") is None:
        print("espeak-ng is not installed", file=sys.stderr)
        return 1
    if args.filler_weight is not None:
        asr.FILLER_WEIGHT = args.filler_weight
    for option in args.option:
        key, _, value = option.partition("=")
        asr.DECODER_OPTIONS[key] = float(value) if value.replace(".", "").replace("e-", "").isdigit() else value
    for option in args.feature:
        key, _, value = option.partition("=")
        asr.FEATURE_OPTIONS[key] = value
    if args.fold is not None:
        asr.FOLD_LEVEL = args.fold
    if args.filler_margin is not None or args.beam is not None:
        from ivr.media import asr_moonshine

        if args.filler_margin is not None:
            asr_moonshine.FILLER_MARGIN = args.filler_margin
        if args.beam is not None:
            asr_moonshine.BEAM = args.beam
    report(run(args), args.people, args.confusions)
    return 0


if __name__ == "__main__":
    sys.exit(main())
