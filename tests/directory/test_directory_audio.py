"""Directory dialogue driven by real audio: a minimal runner does what `ivr serve` does on Listen.

On ``Listen(phrases=P)`` it opens a recognizer session with P and an Endpointer, feeds the
caller's 20 ms frames (fixture WAVs through G.711) and delivers ``Speech(text)`` when the
endpointer is done; keys arrive as ``Key`` events.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import soundfile as sf

from ivr.directory.source import load_directory
from ivr.directory.speech import DirectoryDialogue
from ivr.dsl.events import Action, DirectoryResult, Event, Key, Listen, Speech
from ivr.media import g711
from ivr.media.asr import get_recognizer
from ivr.media.vad import Endpointer

DATA = Path(__file__).parent.parent / "data" / "directory"
BOOK = load_directory(DATA / "staff.csv")


def caller_says(name: str) -> np.ndarray:
    pcm, _ = sf.read(DATA / f"{name}.wav", dtype="int16")
    silence = np.zeros(8000, dtype=np.int16)
    return g711.ulaw_decode(g711.ulaw_encode(np.concatenate([silence[:2400], pcm, silence, silence])))


def hear(actions: list[Action], audio: np.ndarray) -> Event:
    """The runner's side of the last Listen: recognize ``audio`` against its phrases."""
    phrases = [a for a in actions if isinstance(a, Listen)][-1].phrases
    assert phrases, "the dialogue is not listening for speech"
    session = get_recognizer().session(phrases)
    endpointer = Endpointer()
    for i in range(0, len(audio) - 159, 160):
        frame = audio[i : i + 160]
        session.accept(frame)
        if endpointer.feed(frame) in ("done", "no_speech"):
            break
    return Speech(session.finish()[0])


def test_spoken_name_then_key_confirmation_selects_the_extension() -> None:
    d = DirectoryDialogue(BOOK)
    out = d.start(0.0)
    out = d.handle(hear(out, caller_says("siobhan-kelly-gb")), 3.0)
    assert d.state == "confirm" and d.chosen is not None and d.chosen.extension == "203"
    d.handle(Key("1"), 5.0)
    assert d.result == DirectoryResult("selected", "203", "Siobhan Kelly", "203")


def test_spoken_yes_confirms() -> None:
    d = DirectoryDialogue(BOOK)
    out = d.handle(hear(d.start(0.0), caller_says("bob-miller-m3")), 3.0)
    d.handle(hear(out, caller_says("yes")), 5.0)
    assert d.result == DirectoryResult("selected", "202", "Bob Miller", "202")


def test_unknown_names_twice_lead_to_the_keypad() -> None:
    d = DirectoryDialogue(BOOK)
    out = d.handle(hear(d.start(0.0), caller_says("leonard-dubois")), 3.0)
    assert d.state == "name" and d.misses == 1
    d.handle(hear(out, caller_says("leonard-dubois")), 6.0)
    assert d.state == "keypad"
