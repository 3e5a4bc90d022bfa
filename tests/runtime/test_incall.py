"""In-call features: the feature-code matcher (sans-IO) and the recording of a bridged call."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import soundfile

from ivr.config import Config, FeaturesConfig, Mailbox
from ivr.media.clip import FRAME_SAMPLES
from ivr.media.mixer import Mixer
from ivr.runtime.callrecording import CallRecording, owner_mailbox
from ivr.runtime.incall import Code, CodeMatcher
from ivr.voicemail.store import VoicemailStore
from tests.runtime.test_rooms import Clock

CODES = {"*1": "record", "*3": "add_party", "": "off"}


def typed(matcher: CodeMatcher, keys: str, now: float = 0.0) -> tuple[str, list[Code]]:
    relayed, codes = "", []
    for key in keys:
        relay, code = matcher.key(key, now)
        relayed += relay
        codes += [code] if code else []
    return relayed, codes


@pytest.mark.parametrize(("keys", "relayed", "codes"), [
    ("*1", "", [Code("record")]),
    ("5", "5", []),  # not the start of a code: to the other side at once
    ("*5", "*5", []),  # began like one, was none: both keys go on
    ("*3203#", "", [Code("add_party", "203")]),
    ("*3*", "", []),  # changed one's mind while typing the number
    ("*1*1", "", [Code("record"), Code("record")]),
    ("12*1", "12", [Code("record")]),
])
def test_feature_codes_are_kept_from_the_other_side(keys: str, relayed: str, codes: list[Code]) -> None:
    assert typed(CodeMatcher(CODES), keys) == (relayed, codes)


def test_a_pause_relays_a_code_begun_and_ends_a_number() -> None:
    matcher = CodeMatcher(CODES)
    assert typed(matcher, "*", now=10.0) == ("", [])
    assert matcher.next_timer == 12.0
    assert matcher.timer(11.9) == ("", None)
    assert matcher.timer(12.0) == ("*", None)
    assert typed(matcher, "*3202", now=20.0) == ("", [])
    assert matcher.timer(25.0) == ("", Code("add_party", "202"))
    assert matcher.next_timer is None


def test_a_code_turned_off_is_no_code() -> None:
    matcher = CodeMatcher({"*1": "record", "": "add_party"})
    assert typed(matcher, "*3") == ("*3", [])


def tone(freq: float, frames: int, amplitude: int = 4000) -> np.ndarray:
    t = np.arange(frames * FRAME_SAMPLES) / 8000
    return (np.sin(2 * np.pi * freq * t) * amplitude).astype(np.int16)


def services(tmp_path: Path, clock: Clock, executor: ThreadPoolExecutor) -> SimpleNamespace:
    """The parts of the runtime's Services a recording uses."""
    config = Config(data=tmp_path, mailboxes=(Mailbox("201"),), features=FeaturesConfig())
    return SimpleNamespace(config=config, wall=lambda: 1_800_000_000.0, clock=clock, storage_executor=executor,
                    voicemail_store=VoicemailStore(tmp_path))


def feed(recording: CallRecording, caller: np.ndarray, callee: np.ndarray, clock: Clock, first_tick: int) -> None:
    """Both sides' audio frame by frame, one media-clock tick after each (as RTP arrives)."""
    to_caller, to_callee = recording.sinks
    for i in range(len(caller) // FRAME_SAMPLES):
        to_caller(caller[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        to_callee(callee[i * FRAME_SAMPLES:(i + 1) * FRAME_SAMPLES])
        clock.tick(first_tick + i)


def recorded_call(tmp_path: Path, clock: Clock, talk: Callable[[CallRecording], None]) -> list[dict[str, object]]:
    """A recording for mailbox 201 made by ``talk``, stopped and stored; the call log's records."""
    log: list[dict[str, object]] = []

    async def call() -> None:
        with ThreadPoolExecutor(1) as executor:
            done = asyncio.get_running_loop().create_future()

            def report(**fields: object) -> None:
                log.append(fields)
                if fields["event"] == "call_recording_stored":
                    done.set_result(fields)

            recording = CallRecording(services(tmp_path, clock, executor), mailbox="201", other="+41791234567",
                                      report=report)
            assert recording in clock.shared
            talk(recording)
            recording.stop("bridge_ended")
            assert recording not in clock.shared
            await asyncio.wait_for(done, 10)

    asyncio.run(call())
    return log


def test_a_recording_holds_both_sides_mixed_and_is_a_message_of_the_owner(tmp_path: Path) -> None:
    clock = Clock()
    caller, callee = tone(440, 50), tone(700, 50)
    log = recorded_call(tmp_path, clock, lambda recording: feed(recording, caller, callee, clock, first_tick=1))
    assert [e["event"] for e in log] == ["call_recording", "call_recording_stopped", "call_recording_stored"]
    [message] = VoicemailStore(tmp_path).list("201")
    assert (message.caller, message.status, message.duration) == ("+41791234567", "new", 1.0)
    assert log[-1]["message"] == message.id
    recorded, _ = soundfile.read(message.path, dtype="int16")
    # Each side's relay starts after PREBUFFER (2) frames: one frame of silence, then the exact sum.
    assert not recorded[:FRAME_SAMPLES].any()
    assert np.array_equal(recorded[FRAME_SAMPLES:], (caller.astype(np.int32) + callee)[: 49 * FRAME_SAMPLES])
    assert not list((tmp_path / "voicemail" / "201" / "incoming").glob("*.wav"))


def test_a_crash_keeps_what_was_recorded_and_start_up_indexes_it(tmp_path: Path) -> None:
    clock = Clock()
    with ThreadPoolExecutor(1) as executor:
        recording = CallRecording(services(tmp_path, clock, executor), mailbox="201", other="202",
                                  report=lambda **_: None)
        feed(recording, tone(440, 100), tone(700, 100), clock, first_tick=1)
    # no stop(): the process died here.  Start-up recovery repairs and indexes the file.
    [message] = VoicemailStore(tmp_path).recover()
    assert (message.mailbox, message.caller) == ("201", "202")
    assert message.duration == pytest.approx(2.0)


def test_a_recording_follows_the_call_into_a_conference_room(tmp_path: Path) -> None:
    clock = Clock()
    room = Mixer("room")
    seats = [room.add(n) for n in ("caller", "callee", "third")]
    clock.add_shared(room)
    voices = [tone(300 + 200 * i, 10, 2000) for i in range(3)]

    def talk(recording: CallRecording) -> None:
        recording.follow(room)
        assert len(recording.mixer) == 2 and len(room) == 4  # its ear left the private mix for the room's
        for tick in range(10):
            for seat, pcm in zip(seats, voices, strict=True):
                seat.push(pcm[tick * FRAME_SAMPLES:(tick + 1) * FRAME_SAMPLES])
            clock.tick(tick + 1)

    recorded_call(tmp_path, clock, talk)
    assert len(room) == 3  # the ear left the room with the recording's end
    [message] = VoicemailStore(tmp_path).list("201")
    recorded, _ = soundfile.read(message.path, dtype="int16")
    everyone = sum(v.astype(np.int32) for v in voices)
    assert np.array_equal(recorded[FRAME_SAMPLES:], everyone[: 9 * FRAME_SAMPLES])


def test_the_owner_is_the_extensions_mailbox(tmp_path: Path) -> None:
    from ivr.config import Extension

    config = Config(data=tmp_path, extensions=(Extension("201", mailbox="200"), Extension("202"),
                                               Extension("203")),
                    mailboxes=(Mailbox("200"), Mailbox("203")))
    assert owner_mailbox(config, "201") == "200"
    assert owner_mailbox(config, "202") is None  # no mailbox of its own: not recorded
    assert owner_mailbox(config, "203") == "203"
    assert owner_mailbox(config, "999") is None


@pytest.mark.parametrize(("caller", "keys", "far_ends"), [
    ("201", "wait:10s *1", {}),  # refused: 201 may not record
    ("100", "wait:10s *1 wait:5s *1", {}),  # recording on and off
    ("100", "wait:10s *1", {}),  # recording until the bridge ends
    ("201", "wait:10s *3203#", {}),  # Zuschalten, 203 answers
    ("201", "wait:10s *3203# wait:100s", {}),  # 202 leaves, then 203: the room ends, the flow goes on
    ("201", "wait:10s *3203#", {"no_answer": frozenset({"203"})}),  # 203 does not answer
    ("201", "wait:10s *3203# wait:3s hangup", {}),  # the caller leaves while 203 rings
    ("100", "wait:10s *1 wait:2s *3203# wait:20s hangup", {}),  # recorded, then three talking
])
def test_in_call_features_leave_no_leg_room_or_recording_behind(
    caller: str, keys: str, far_ends: dict[str, frozenset[str]]
) -> None:
    from ivr.config import load_config
    from ivr.dsl.schedule import parse_local
    from ivr.runtime.deployment import load_flow
    from ivr.runtime.simulate import Scenario, Simulation, parse_inputs

    flows = Path(__file__).resolve().parents[2] / "flows"
    config = load_config(flows / "ivr.toml")
    program = load_flow([flows / "acme.ivr"], prompt_folders=config.prompt_folders, config=config)
    scenario = Scenario(start=parse_local("2026-11-23 10:00", "Europe/Zurich"), caller=caller, phone=True,
                        called="202", inputs=tuple(parse_inputs(keys)), **far_ends)  # type: ignore[arg-type]
    sim = Simulation(program, scenario, config=config)
    result = sim.run()
    services = sim.services
    assert services is not None
    assert (services.legs, services.conferences.rooms, services.ringing) == ({}, {}, [])
    events = [r.get("event") for r in result.records]
    assert ("conference_adhoc" in events) == ("*3" in keys)
    assert ("call_recording" in events) == ("*1" in keys and caller == "100")
    assert ("call_recording_refused" in events) == ("*1" in keys and caller == "201")
    assert events.count("call_recording") == events.count("call_recording_stopped")
    assert not list(services.data.glob("voicemail/*/incoming/*.wav"))
    assert result.outcome is not None and result.outcome.result == "transferred"
    if "wait:100s" in keys:
        assert any(r.get("event") == "bridge_end" and r.get("reason") == "conference_over" for r in result.records)
