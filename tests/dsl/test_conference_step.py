"""The `conference` step: parsed, compiled and checked (exact diagnostics: they are the interface)."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dsl import ast
from ivr.dsl.compiler import ConferenceOp
from ivr.dsl.errors import format_diagnostics
from ivr.dsl.loader import load_flow
from ivr.runtime.deployment import check_flow


def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str) -> str:
    monkeypatch.chdir(tmp_path)
    prompts = tmp_path / "prompts"
    prompts.mkdir(exist_ok=True)
    (tmp_path / name).write_text(text, encoding="utf-8")
    return format_diagnostics(check_flow([name], prompt_folders=[prompts])).replace(str(prompts), "PROMPTS")


def test_every_option_reaches_the_compiled_state(tmp_path: Path) -> None:
    flow = tmp_path / "c.ivr"
    flow.write_text(
        'number 500 -> room\nroom:\n'
        '    conference weekly pin "4711" moderator pin "0815" max 6 music "moh/" tones announce count\n'
        '    say "Full."\n',
        encoding="utf-8",
    )
    program = load_flow([flow])
    [state] = [s for s in program.states.values() if isinstance(s.op, ConferenceOp)]
    op = state.op
    assert isinstance(op, ConferenceOp)
    assert (op.room, op.max_participants, op.music, op.tones, op.announce) == ("weekly", 6, "moh/", True, True)
    assert isinstance(op.pin, ast.Str) and op.pin.text == "4711"
    assert isinstance(op.moderator_pin, ast.Str) and op.moderator_pin.text == "0815"
    assert (state.pos.line, state.pos.column) == (3, 5)
    assert program.states[state.transitions["full"]].step == "room"  # full: on to the next line
    assert set(state.transitions) == {"done", "full"}


def test_a_bare_conference_has_no_pin_no_limit_and_no_music(tmp_path: Path) -> None:
    flow = tmp_path / "c.ivr"
    flow.write_text("number 500 -> room\nroom:\n    conference weekly\n", encoding="utf-8")
    [op] = [s.op for s in load_flow([flow]).states.values() if isinstance(s.op, ConferenceOp)]
    assert isinstance(op, ConferenceOp)
    assert (op.pin, op.moderator_pin, op.max_participants, op.music, op.tones, op.announce) == (
        None, None, 0, "", False, False)


CASES = [
    # a PIN the keypad cannot type, and a room for one
    pytest.param(
        'pin_not_digits_and_room_for_one.ivr',
        'number default -> start\nstart:\n    conference weekly pin "47a1" max 1\n',
        'pin_not_digits_and_room_for_one.ivr:3:5: error: conference weekly has room for 1: nobody could talk to anyone\n'
        '        conference weekly pin "47a1" max 1\n'
        '        ^\n'
        '  hint: write max 2 or more, or leave max out for no limit\n'
        'pin_not_digits_and_room_for_one.ivr:3:27: error: conference PIN "47a1" is not all digits\n'
        '        conference weekly pin "47a1" max 1\n'
        '                              ^\n'
        '  hint: callers type the PIN on the keypad: use 0-9 only, e.g. pin "4711"',
        id='pin_not_digits_and_room_for_one',
    ),
    # a moderator PIN without a PIN, and one equal to the PIN
    pytest.param(
        'moderator_pin.ivr',
        'number default -> start\nstart:\n    conference board moderator pin "1357"\n    conference board pin "13" moderator pin "13"\n',
        'moderator_pin.ivr:3:36: error: a moderator PIN needs a PIN for the other participants\n'
        '        conference board moderator pin "1357"\n'
        '                                       ^\n'
        '  hint: add one: conference board pin "1234" moderator pin "1357"\n'
        'moderator_pin.ivr:4:45: error: the moderator PIN is the same as the PIN\n'
        '        conference board pin "13" moderator pin "13"\n'
        '                                                ^\n'
        '  hint: give moderators a PIN of their own, or leave `moderator pin` out\n'
        'moderator_pin.ivr:4:5: warning: conference board is joined with other settings at line 3\n'
        '        conference board pin "13" moderator pin "13"\n'
        '        ^\n'
        '  hint: every caller of a room should get the same PIN, limit and music: write them the same way',
        id='moderator_pin',
    ),
    # one room joined with two sets of settings
    pytest.param(
        'room_settings_differ.ivr',
        'number default -> start\nstart:\n    conference weekly pin "1"\n    conference weekly tones\n',
        'room_settings_differ.ivr:4:5: warning: conference weekly is joined with other settings at line 3\n'
        '        conference weekly tones\n'
        '        ^\n'
        '  hint: every caller of a room should get the same PIN, limit and music: write them the same way',
        id='room_settings_differ',
    ),
    # music that is not in the prompt folders
    pytest.param(
        'music_missing.ivr',
        'number default -> start\nstart:\n    conference weekly music "nomusic/"\n',
        'music_missing.ivr:3:29: warning: prompt file not found: nomusic/\n'
        '        conference weekly music "nomusic/"\n'
        '                                ^\n'
        '  hint: looked in PROMPTS',
        id='music_missing',
    ),
    # a misspelt option
    pytest.param(
        'unknown_option.ivr',
        'number default -> start\nstart:\n    conference weekly pim "1"\n',
        "unknown_option.ivr:3:23: error: unexpected 'pim'; expected 'announce', 'max', 'moderator', 'music', 'pin', 'tones' or the end of the line\n"
        '        conference weekly pim "1"\n'
        '                          ^',
        id='unknown_option',
    ),
]


@pytest.mark.parametrize(("name", "text", "expected"), CASES)
def test_check_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, name: str, text: str, expected: str) -> None:
    """`ivr check` on the case's flow prints exactly the expected diagnostics."""
    assert check(tmp_path, monkeypatch, name, text) == expected
