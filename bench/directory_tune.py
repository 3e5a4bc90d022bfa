"""What per-deployment tuning (``ivr directory tune``) buys: offsets learnt on some voices, checked on others.

The held-out people and outsiders of ``bench/directory_speech.py`` (its bench voices, white
noise, mu-law) are scored once by the whisper engine.  Offsets are learnt
(:func:`~ivr.directory.tuning.learn_offsets`) from the names spoken by the first ``--learn``
voices, as an admin's recordings would be, and the accuracy is reported before and after on
those recordings and on the other voices of the same people, with the strangers accepted.

    python bench/directory_tune.py            # learn on voices 0-2, check on voices 3-4
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np
from directory_speech import OUTSIDERS, VOICES, make_directory, voice_audio, white_line

from ivr.directory.matching import PhraseIndex
from ivr.directory.source import load_directory
from ivr.directory.tuning import learn_offsets, outcome
from ivr.media import asr_whisper
from ivr.media.asr_whisper import PhraseScores, WhisperRecognizer, best_phrase

Scored = list[tuple[str, int, PhraseScores]]  # (phrase said, "" for an outsider; voice; scores)


def score_all(recognizer: WhisperRecognizer, index: PhraseIndex, people: list[str]) -> Scored:
    rng = np.random.default_rng(7)
    said = [(name, name.lower()) for name in people] + [(o.title(), "") for o in OUTSIDERS[1::2]]
    out: Scored = []
    for text, phrase in said:
        for voice, (name, speed) in enumerate(VOICES):
            pcm = white_line(voice_audio(text, name, speed), rng)
            out.append((phrase, voice, recognizer.utterance_scores(pcm, index.phrases)))
    return out


def line(items: Scored, offsets: dict[str, float]) -> str:
    margin = asr_whisper.FREE_MARGIN
    inside = [outcome(s, p, offsets, margin) for p, _, s in items if p]
    strangers = [s for p, _, s in items if not p]
    taken = sum(1 for s in strangers if (b := best_phrase(s, offsets)).text and b.margin > margin)
    return (
        f"right {100 * inside.count('right') / len(inside):.1f} %, wrong {100 * inside.count('wrong') / len(inside):.1f} %, "
        f"no match {100 * inside.count('none') / len(inside):.1f} %, strangers accepted {100 * taken / len(strangers):.1f} % "
        f"({len(inside)} names, {len(strangers)} strangers)"
    )


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--learn", type=int, default=3, help="voices whose recordings the offsets are learnt from")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        book = load_directory(make_directory(100, Path(folder)))
    index = PhraseIndex.build(book)
    people = [p.display_name for i, p in enumerate(book.people) if i % 2 == 1]  # the held-out people
    items = score_all(WhisperRecognizer(), index, people)
    learnt, other = [x for x in items if x[1] < args.learn], [x for x in items if x[1] >= args.learn]
    offsets = learn_offsets([(s, p) for p, _, s in learnt if p], {}, asr_whisper.FREE_MARGIN)
    print(f"offsets learnt: {len(offsets)} (from voices 0-{args.learn - 1})")
    print(f"recordings learnt from, before: {line(learnt, {})}")
    print(f"recordings learnt from, after:  {line(learnt, offsets)}")
    print(f"other voices, before:           {line(other, {})}")
    print(f"other voices, after:            {line(other, offsets)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
