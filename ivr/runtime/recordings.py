"""A recording of the caller in progress (``StartRecording``, ``record into``).

:class:`Recording` feeds the caller's audio to a :class:`~ivr.media.recording.WavRecorder`
in the data folder and reports ``RecordingDone`` once, whatever ends it (the end key,
silence, the maximum length, a hang-up, the flow).  What was written before a crash stays
on disk: the recorder keeps a valid WAV header as it goes.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Protocol

import numpy as np

from ivr.dsl import events as ev


class Call(Protocol):
    """What a recording needs from the call it serves (the call runner)."""

    def data_path(self, relative: str) -> Path: ...


class Recording:
    """One ``StartRecording`` (or ``Record``) in progress: a WavRecorder fed with caller audio."""

    def __init__(self, runner: Call, action: ev.StartRecording, owner: object, done: Callable[[ev.RecordingDone], None]) -> None:
        from ivr.media.recording import WavRecorder

        self.runner = runner
        self.action = action
        self.owner = owner
        self.done = done
        self.path = runner.data_path(action.path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.recorder = WavRecorder(self.path, max_length=action.max_length, silence=action.silence)
        self.finished = False

    def feed(self, pcm: np.ndarray) -> None:
        reason = self.recorder.write(pcm)
        if reason:
            self.stop(reason)

    def stop(self, reason: str) -> None:
        if self.finished:
            return
        self.finished = True
        duration = float(self.recorder.close())
        if duration < self.action.min_length:
            self.path.unlink(missing_ok=True)
            duration = 0.0
        self.done(ev.RecordingDone(path=self.action.path, duration=duration, reason=reason))
