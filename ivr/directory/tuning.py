"""Per-deployment learning for speech dial-by-name: labelled recordings in, per-name score offsets out.

An admin records people's names (or keeps callers' confirmed utterances) and labels them, by
file name (``alice-johnson.wav``, ``alice_johnson-2.wav``) or by a CSV file with the columns
``audio,name`` (paths relative to the CSV).  ``ivr directory tune`` scores every recording
once with the whisper engine (:class:`~ivr.media.asr_whisper.PhraseScores`) and learns an
offset per phrase (:func:`learn_offsets`): a name the model under-rates for this deployment's
voices and lines gets a bonus, a name that wins where it should not a malus, each bounded by
:data:`MAX_OFFSET` so that one name cannot swallow strangers.  The offsets go into the
deployment's tuning file (``[speech] tuning``, table ``[whisper.offsets]``), which the engine
reads when it loads.

Accuracy before and after is measured on the same recordings (what the admin gave); it shows
what the offsets fix, not what they would do on new speech.
"""

from __future__ import annotations

import csv
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from ivr.directory.matching import PhraseIndex
from ivr.directory.source import normalize_phrase
from ivr.media.asr_whisper import PhraseScores, best_phrase

#: The largest bonus or malus a phrase gets (log-probability).
MAX_OFFSET = 4.0
#: How far past its rival a corrected phrase is pushed (log-probability).
CLEARANCE = 0.5
EPOCHS = 8

Outcome = Literal["right", "wrong", "none"]


class TuningError(Exception):
    """Labels that cannot be used; the message names the file and the cause."""


@dataclass(frozen=True)
class Sample:
    audio: Path
    phrase: str  # the person's phrase in the directory's grammar


def labelled(paths: Iterable[Path], index: PhraseIndex) -> list[Sample]:
    """The recordings and their phrases: WAV files labelled by name, CSV files of ``audio,name``."""
    samples: list[Sample] = []
    for path in paths:
        if path.suffix.lower() == ".csv":
            samples.extend(_from_csv(path, index))
        else:
            samples.append(Sample(path, _phrase(index, _name_of(path), str(path))))
    return samples


def _name_of(path: Path) -> str:
    """``alice_johnson-2.wav`` -> "alice johnson": separators become spaces, a trailing number goes."""
    return re.sub(r"[\s_-]*\d+$", "", path.stem).replace("_", " ").replace("-", " ")


def _phrase(index: PhraseIndex, name: str, where: str) -> str:
    phrase = normalize_phrase(name)
    if not index.lookup(phrase):
        raise TuningError(f"{where}: {name!r} names nobody in the directory")
    return phrase


def _from_csv(path: Path, index: PhraseIndex) -> list[Sample]:
    with path.open(encoding="utf-8", newline="") as f:
        rows = list(csv.DictReader(f))
    samples = []
    for line, row in enumerate(rows, start=2):
        if not row.get("audio") or not row.get("name"):
            raise TuningError(f"{path}:{line}: needs the columns audio and name")
        samples.append(Sample(path.parent / row["audio"], _phrase(index, row["name"], f"{path}:{line}")))
    return samples


def outcome(scores: PhraseScores, phrase: str, offsets: Mapping[str, float], margin: float) -> Outcome:
    found = best_phrase(scores, offsets)
    if not found.text or found.margin <= margin:
        return "none"
    return "right" if found.text == phrase else "wrong"


def learn_offsets(
    samples: Sequence[tuple[PhraseScores, str]], offsets: Mapping[str, float], margin: float
) -> dict[str, float]:
    """Offsets that make the labelled utterances come out right where a bounded change can.

    A perceptron over the utterances: a missed phrase is raised past its best rival (another
    phrase, or the free transcription plus ``margin``) by :data:`CLEARANCE`; a phrase that won
    wrongly is lowered below the right one.  Every offset stays within :data:`MAX_OFFSET`.
    """
    learnt = dict(offsets)
    for _ in range(EPOCHS):
        changed = False
        for scores, phrase in samples:
            if phrase not in scores.phrases or outcome(scores, phrase, learnt, margin) == "right":
                continue  # right already, or never shortlisted: an offset cannot help
            own = scores.phrases[phrase] + learnt.get(phrase, 0.0)
            rivals = {p: s + learnt.get(p, 0.0) for p, s in scores.phrases.items() if p != phrase}
            rival = max([scores.free + margin, *rivals.values()])
            _nudge(learnt, phrase, rival - own + CLEARANCE)
            for other, value in rivals.items():
                if value > own:
                    _nudge(learnt, other, -(value - own + CLEARANCE) / 2)
            changed = True
        if not changed:
            break
    return {p: round(v, 3) for p, v in learnt.items() if abs(v) > 1e-9}


def _nudge(offsets: dict[str, float], phrase: str, by: float) -> None:
    offsets[phrase] = max(-MAX_OFFSET, min(MAX_OFFSET, offsets.get(phrase, 0.0) + by))


def write_tuning(path: Path, offsets: Mapping[str, float]) -> None:
    """The tuning file the whisper engine reads (``[speech] tuning``): ``[whisper.offsets]``."""
    lines = ["# written by `ivr directory tune`: per-name score offsets of the whisper engine", "[whisper.offsets]"]
    lines += [f"{json.dumps(p)} = {v:g}" for p, v in sorted(offsets.items())]
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
