"""Drive a voicemail dialogue like the runner does, with a fake clock and real recordings.

As the runner does, the driver carries out a dialogue's ``StorageWork`` (here at once, in this
thread) and hands back its ``StorageDone``, unless the dialogue has finished meanwhile; the
actions that answer returns come back with the ones that asked for it.
"""

from __future__ import annotations

import re
from pathlib import Path

import numpy as np

from ivr.dsl.events import (
    Action,
    Event,
    Listen,
    Play,
    PromptDone,
    Say,
    StartRecording,
    StorageDone,
    StorageWork,
    TimerFired,
    Tone,
)
from ivr.media.recording import WavRecorder
from ivr.voicemail import prompt_texts

DYNAMIC = [
    re.compile(r"You have \d+ new messages? and \d+ saved messages?\.$"),
    re.compile(
        r"(New|Saved) message \d+ of \d+\. Received \w+, \w+ \d+, at \d+:\d\d [AP]M, from .+\.$"
    ),
]


def prompts(actions: list[Action]) -> list[Say | Play | Tone]:
    return [a for a in actions if isinstance(a, Say | Play | Tone)]


def texts(actions: list[Action]) -> list[str]:
    return [a.text if isinstance(a, Say) else f"<{a.kind}>" for a in prompts(actions)]


def last_prompt_done(actions: list[Action]) -> PromptDone:
    return PromptDone(prompts(actions)[-1].prompt_id)


def record(action: StartRecording, seconds: float) -> float:
    """Write ``seconds`` of a tone through WavRecorder to the path the dialogue asked for."""
    rec = WavRecorder(Path(action.path), max_length=action.max_length, min_length=action.min_length)
    t = np.arange(int(seconds * 8000)) / 8000
    rec.write((np.sin(2 * np.pi * 350 * t) * 8000).astype(np.int16))
    return rec.close()


class Driver:
    """Feeds events at a fake time; ``play_out`` acknowledges prompts as the media session would."""

    def __init__(self, machine, now: float = 1_700_000_000.0) -> None:
        self.m = machine
        self.now = now
        self.log: list[Action] = []
        boxes = getattr(machine, "mailboxes", None)
        boxes = list(boxes.values()) if isinstance(boxes, dict) else [machine.mailbox]
        self.known = set(prompt_texts(boxes, getattr(machine, "language", "") or "en"))

    def start(self) -> list[Action]:
        """Start the dialogue; its first action (stop speech recognition) is checked and left out."""
        actions = self._keep(self.m.start(self.now))
        assert actions[0] == Listen()
        return actions[1:]

    def send(self, event: Event, advance: float = 0.5) -> list[Action]:
        self.now += advance
        return self._keep(self.m.handle(event, self.now))

    def play_out(self, actions: list[Action]) -> list[Action]:
        """Let the prompts of ``actions`` finish; returns what the dialogue did next."""
        return self.send(last_prompt_done(actions), advance=2.0)

    def wait_timer(self) -> list[Action]:
        assert self.m.next_timer is not None
        self.now = self.m.next_timer
        return self._keep(self.m.handle(TimerFired(), self.now))

    def _keep(self, actions: list[Action]) -> list[Action]:
        self.log.extend(actions)
        done: list[Action] = []
        for a in actions:
            if isinstance(a, StorageWork):
                answer = _run(a)
                done += [] if self.m.finished else self._keep(self.m.handle(answer, self.now))
        actions = [a for a in actions if not isinstance(a, StorageWork)] + done
        for a in actions:
            if isinstance(a, Say):
                assert a.text in self.known or any(p.match(a.text) for p in DYNAMIC), (
                    f"{a.text!r} is missing from ivr.voicemail.prompt_texts (it would not be pre-rendered)"
                )
        return actions


def _run(work: StorageWork) -> StorageDone:
    try:
        return StorageDone(work.what, work.work())
    except Exception as exc:  # noqa: BLE001 -- handed to the dialogue, as the runner does
        return StorageDone(work.what, None, f"{type(exc).__name__}: {exc}")
