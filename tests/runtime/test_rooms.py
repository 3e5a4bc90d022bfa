"""Conference rooms: seats, limits, music while alone, tones, and the room leaving the media clock."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from ivr.config import load_config
from ivr.dsl.schedule import parse_local
from ivr.media import g711
from ivr.media.clip import FRAME_SAMPLES
from ivr.media.holdmusic import HoldMusic
from ivr.media.mixer import Mixer
from ivr.media.prompts import PromptStore
from ivr.runtime.deployment import load_flow
from ivr.runtime.flowtest import FlowTestError, parse_test_file, run_test_file
from ivr.runtime.rooms import ENTRY_PCM, EXIT_PCM, Rooms
from ivr.runtime.simulate import Scenario, Simulation, parse_inputs

PROMPTS = Path(__file__).resolve().parents[2] / "prompts"


class Clock:
    """The media clock's shared-source registry (what Rooms uses of it), ticked by hand."""

    def __init__(self) -> None:
        self.shared: dict[object, int] = {}

    def add_shared(self, source: object) -> None:
        self.shared[source] = self.shared.get(source, 0) + 1

    def remove_shared(self, source: object) -> None:
        self.shared[source] -= 1
        if not self.shared[source]:
            del self.shared[source]

    def tick(self, n: int) -> None:
        for source in list(self.shared):
            source.advance(n)  # type: ignore[attr-defined]


def voice(freq: float) -> np.ndarray:
    t = np.arange(2 * FRAME_SAMPLES) / 8000
    return (np.sin(2 * np.pi * freq * t) * 3000).astype(np.int16)


def test_a_room_exists_while_someone_is_in_it_and_its_mixer_is_on_the_clock() -> None:
    clock = Clock()
    rooms = Rooms(clock)
    a = rooms.join("weekly", who="a")
    b = rooms.join("weekly", who="b")
    assert a is not None and b is not None and rooms.count("weekly") == 2
    [mixer] = clock.shared
    assert isinstance(mixer, Mixer) and mixer is a.room.mixer
    a.leave()
    assert rooms.count("weekly") == 1 and clock.shared
    b.leave()
    b.leave()  # twice: nothing more happens
    assert rooms.rooms == {} and clock.shared == {}


def test_the_limit_is_the_joining_callers() -> None:
    rooms = Rooms()
    rooms.fill("weekly", 3)
    assert rooms.join("weekly", max_participants=3) is None
    assert rooms.count("weekly") == 3
    assert rooms.join("weekly", max_participants=4) is not None


def test_participants_hear_each_other_and_music_only_while_alone() -> None:
    clock = Clock()
    music = HoldMusic(PromptStore([PROMPTS]), clock)
    rooms = Rooms(clock)
    a = rooms.join("weekly", who="a", music="moh/")
    assert a is not None
    a.talk(None, music)
    assert a.hears_music and music.listeners("moh/") == 1
    clock.tick(1)
    assert a.frame(g711.PCMU) == a.music.frame(g711.PCMU)  # alone: the room's music
    b = rooms.join("weekly", who="b", music="moh/")
    assert b is not None
    b.talk(None, music)
    assert not a.hears_music and not b.hears_music
    a.seat.push(voice(400))
    b.seat.push(voice(1000))
    clock.tick(2)
    assert a.frame(g711.PCMU) == g711.encode(voice(1000)[:FRAME_SAMPLES], g711.PCMU)
    assert b.frame(g711.PCMA) == g711.encode(voice(400)[:FRAME_SAMPLES], g711.PCMA)
    b.leave()
    assert a.hears_music and music.listeners("moh/") == 1
    a.leave()
    assert music.listeners("moh/") == 0


def test_entry_and_exit_tones_reach_the_others_only() -> None:
    rooms = Rooms()
    a = rooms.join("weekly", who="a", tones=True)
    b = rooms.join("weekly", who="b", tones=True)
    c = rooms.join("weekly", who="c", tones=True)
    assert a is not None and b is not None and c is not None
    mixer = a.room.mixer
    c.talk(None, None)  # c comes in: a and b hear the entry tone, c does not
    mixer.advance(1)
    assert np.array_equal(a.seat.pcm_frame(), ENTRY_PCM[:FRAME_SAMPLES])
    assert np.array_equal(b.seat.pcm_frame(), ENTRY_PCM[:FRAME_SAMPLES])
    assert not c.seat.pcm_frame().any()
    for tick in range(2, 20):
        mixer.advance(tick)  # the entry tone plays out
    c.leave()
    mixer.advance(20)
    assert np.array_equal(a.seat.pcm_frame(), EXIT_PCM[:FRAME_SAMPLES])


def test_waiting_for_the_moderator() -> None:
    rooms = Rooms()
    member = rooms.join("board", who="m", wait_for_moderator=True)
    other = rooms.join("board", who="o", wait_for_moderator=True)
    assert member is not None and other is not None
    assert member.room.hears_music(member) and member.room.hears_music(other)
    chair = rooms.join("board", who="chair", moderator=True, wait_for_moderator=True)
    assert chair is not None
    assert not any(p.room.hears_music(p) for p in (member, other, chair))
    chair.leave()
    assert member.room.hears_music(member)


def test_a_call_that_ends_leaves_no_seat_behind() -> None:
    flows = Path(__file__).resolve().parents[2] / "flows"
    config = load_config(flows / "ivr.toml")
    program = load_flow([flows / "conference.ivr"], prompt_folders=config.prompt_folders, config=config)
    start = parse_local("2026-11-23 10:00", "Europe/Zurich")
    for keys, seated_after in (("4711# wait:30s hangup", 2), ("1# 2# 3#", 2)):
        scenario = Scenario(start=start, called="+41435435590", inputs=parse_inputs(keys),
                            conferences={"weekly": 2})
        sim = Simulation(program, scenario, config=config)
        result = sim.run()
        assert sim.services is not None
        assert sim.services.conferences.count("weekly") == seated_after  # only the two already there
    assert result.outcome is not None  # three wrong PINs
    assert (result.outcome.result, result.outcome.detail) == ("hangup", "wrong conference PIN")
    assert any(r.get("action") == "bye" and r.get("reason") == "conference_pin" for r in result.records)


def test_the_flow_test_line_that_fills_a_room(tmp_path: Path) -> None:
    path = tmp_path / "c.ivrtest"
    path.write_text('flow "c.ivr"\nconference weekly has 6 people\ntest "x":\n    at 2026-01-01 10:00\n'
                    "    conference board has 1 person\n    expect hangup\n")
    [test] = parse_test_file(path).tests
    assert test.setup.conferences == (("board", 1), ("weekly", 6))
    path.write_text('flow "c.ivr"\ntest "x":\n    at 2026-01-01 10:00\n    conference weekly is full\n'
                    "    expect hangup\n")
    with pytest.raises(FlowTestError) as info:
        parse_test_file(path)
    assert str(info.value) == f"{path}:4: expected: conference ROOM has N people"


def test_the_conference_cases_with_people_already_in_the_room() -> None:
    results = run_test_file(Path(__file__).resolve().parent / "flows" / "conference-rooms.ivrtest")
    assert len(results) == 4
    assert all(r.passed for r in results), "\n".join(r.report() for r in results)
