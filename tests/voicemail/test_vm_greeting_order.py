"""Which greeting a caller hears (docs/voicemail.md, "Which greeting plays"), and the flow's `no temporary`."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.config import Mailbox
from ivr.dsl.events import Action, Play, Say
from ivr.voicemail.leave import LeaveMessage
from ivr.voicemail.store import VoicemailStore

from .helpers import Driver

PROVISIONED = Mailbox(
    number="200",
    owner="Alice Example",
    greetings=(("temporary", "g/away.wav"), ("busy", "g/busy.wav"), ("unavailable", "g/unavail.wav")),
)


def first_greeting(tmp_path: Path, box: Mailbox, greeting: str, temporary_first: bool) -> list[str]:
    machine = LeaveMessage(mailbox=box, store=VoicemailStore(tmp_path), caller="1", data_dir=tmp_path,
                           greeting=greeting, temporary_first=temporary_first)
    return [_shown(a) for a in Driver(machine).start()]


def _shown(action: Action) -> str:
    return action.path if isinstance(action, Play) else action.text if isinstance(action, Say) else action.kind


def record_by_phone(tmp_path: Path, kind: str) -> None:
    path = VoicemailStore(tmp_path).greeting_path("200", kind)
    path.parent.mkdir(parents=True, exist_ok=True)
    soundfile.write(path, np.zeros(800, np.int16), 8000)


@pytest.mark.parametrize(("greeting", "temporary_first", "heard"), [
    ("busy", True, "g/away.wav"),  # the temporary greeting wins over busy ...
    ("unavailable", True, "g/away.wav"),  # ... and over unavailable
    ("busy", False, "g/busy.wav"),  # `no temporary`: the step's own kind
    ("unavailable", False, "g/unavail.wav"),
    ("temporary", True, "g/away.wav"),
])
def test_the_temporary_greeting_wins_unless_the_step_says_no_temporary(
    tmp_path: Path, greeting: str, temporary_first: bool, heard: str
) -> None:
    assert first_greeting(tmp_path, PROVISIONED, greeting, temporary_first) == [heard]


def test_recorded_by_phone_wins_over_provisioned_within_each_kind(tmp_path: Path) -> None:
    record_by_phone(tmp_path, "busy")
    assert first_greeting(tmp_path, PROVISIONED, "busy", True) == ["g/away.wav"]  # kind order first
    assert first_greeting(tmp_path, PROVISIONED, "busy", False) == ["data:voicemail/200/greetings/busy.wav"]
    record_by_phone(tmp_path, "temporary")
    assert first_greeting(tmp_path, PROVISIONED, "busy", True) == ["data:voicemail/200/greetings/temporary.wav"]


def test_without_a_greeting_of_the_kind_the_name_then_tts_follow(tmp_path: Path) -> None:
    only_temporary = Mailbox(number="200", owner="Alice Example", greetings=(("temporary", "g/away.wav"),))
    assert first_greeting(tmp_path, only_temporary, "busy", False) == [
        "Alice Example is on another call. Please leave a message after the tone, and press hash when you are done."
    ]
    record_by_phone(tmp_path, "name")
    assert first_greeting(tmp_path, only_temporary, "busy", False) == [
        "data:voicemail/200/greetings/name.wav",
        "Is on another call. Please leave a message after the tone, and press hash when you are done.",
    ]
