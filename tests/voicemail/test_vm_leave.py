"""LeaveMessage fed event by event, with real recordings on disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.config import Mailbox
from ivr.dsl.events import (
    ActionDone,
    Hangup,
    Key,
    Play,
    RecordingDone,
    StartRecording,
    StopPrompts,
    StopRecording,
    Tone,
    TransferResult,
)
from ivr.voicemail.dialogue import DialogueError
from ivr.voicemail.leave import LeaveMessage
from ivr.voicemail.store import VoicemailStore

from .helpers import Driver, record, texts

BOX = Mailbox(
    number="200",
    owner="Alice Example",
    emails=("alice@example.com",),
    max_messages=3,
    max_length=60,
)


def _leave(tmp_path: Path, **kw) -> tuple[Driver, VoicemailStore]:
    store = VoicemailStore(tmp_path)
    kw.setdefault("mailbox", BOX)
    machine = LeaveMessage(store=store, caller="+41791112233", data_dir=tmp_path, **kw)
    return Driver(machine), store


def _to_recording(d: Driver) -> StartRecording:
    actions = d.start()
    actions = d.play_out(actions)
    assert isinstance(actions[0], Tone) and actions[0].frequency == 1000
    (start,) = d.play_out(actions)
    assert isinstance(start, StartRecording)
    return start


def test_full_dialogue_without_review_stores_the_message(tmp_path):
    d, store = _leave(tmp_path)
    actions = d.start()
    assert texts(actions) == [
        "Alice Example is not available. Please leave a message after the tone, and press hash when you are done."
    ]
    actions = d.play_out(actions)
    assert texts(actions) == ["<tone>"]
    (start,) = d.play_out(actions)
    assert isinstance(start, StartRecording)
    assert Path(start.path).parent == tmp_path.resolve() / "voicemail" / "200" / "incoming"
    assert (start.max_length, start.end_key, start.min_length, start.silence) == (60, "#", 1.0, 5.0)
    duration = record(start, 2.5)
    actions = d.send(RecordingDone(start.path, duration, "key"), advance=2.5)
    assert texts(actions) == ["Your message has been saved. Goodbye."]
    assert d.play_out(actions) == []
    assert d.m.finished and d.m.result == ActionDone("voicemail", "saved")
    (msg,) = store.list("200")
    assert (msg.caller, msg.status, msg.duration) == ("+41791112233", "new", 2.5)
    assert soundfile.info(str(msg.path)).duration == pytest.approx(2.5)
    assert not Path(start.path).exists()
    assert [i.recipients for i in store.due_mail(now=2e9)] == [("alice@example.com",)]


def test_recorded_greetings_and_name(tmp_path):
    d, store = _leave(tmp_path, greeting="busy")
    for kind in ("busy", "name"):
        path = store.greeting_path("200", kind)
        path.parent.mkdir(parents=True, exist_ok=True)
        soundfile.write(path, np.zeros(800, np.int16), 8000)
    (play,) = d.start()
    assert isinstance(play, Play) and play.path == "data:voicemail/200/greetings/busy.wav"
    store.greeting_path("200", "busy").unlink()
    d2 = Driver(
        LeaveMessage(mailbox=BOX, store=store, caller="1", greeting="busy", data_dir=tmp_path)
    )
    actions = d2.start()
    assert (
        isinstance(actions[0], Play) and actions[0].path == "data:voicemail/200/greetings/name.wav"
    )
    assert texts(actions)[1].startswith("Is on another call. Please leave a message")
    # A temporary greeting, when recorded, wins over the others.
    soundfile.write(store.greeting_path("200", "temporary"), np.zeros(800, np.int16), 8000)
    d3 = Driver(LeaveMessage(mailbox=BOX, store=store, caller="1", data_dir=tmp_path))
    assert d3.start()[0] == Play("data:voicemail/200/greetings/temporary.wav", d3.m._next_prompt)


def test_owner_unknown_says_the_extension(tmp_path):
    d, _ = _leave(tmp_path, mailbox=Mailbox(number="205"))
    assert texts(d.start())[0].startswith("extension 2 0 5 is not available.")


def test_a_key_skips_the_greeting(tmp_path):
    d, _ = _leave(tmp_path)
    d.start()
    actions = d.send(Key("#"))
    assert isinstance(actions[0], StopPrompts) and isinstance(actions[1], Tone)
    assert d.send(Key("5")) == []  # the beep cannot be skipped


def test_review_listen_rerecord_keep(tmp_path):
    d, store = _leave(tmp_path, review=True)
    start = _to_recording(d)
    actions = d.send(RecordingDone(start.path, record(start, 1.5), "key"))
    assert texts(actions) == [
        "To keep your message, press 1. To listen to it, press 2. To record it again, press 3."
    ]
    actions = d.send(Key("2"))
    assert isinstance(actions[0], StopPrompts)
    assert isinstance(actions[1], Play) and actions[1].path.startswith(
        "data:voicemail/200/incoming/"
    )
    actions = d.play_out(actions)
    assert texts(actions)[0].startswith("To keep your message")
    actions = d.send(Key("3"))
    assert not Path(start.path).exists()
    assert isinstance(actions[-1], Tone)
    (second,) = d.play_out(actions)
    assert isinstance(second, StartRecording) and second.path != start.path
    d.send(RecordingDone(second.path, record(second, 3.0), "silence"))
    actions = d.send(Key("1"))
    assert texts(actions) == ["Your message has been saved. Goodbye."]
    d.play_out(actions)
    assert d.m.result == ActionDone("voicemail", "saved")
    assert [m.duration for m in store.list("200")] == [3.0]


def test_review_without_answer_keeps_the_message(tmp_path):
    d, store = _leave(tmp_path, review=True)
    start = _to_recording(d)
    actions = d.send(RecordingDone(start.path, record(start, 1.5), "key"))
    for _ in range(2):
        d.play_out(actions)
        actions = d.wait_timer()
        assert texts(actions)[0].startswith("To keep your message")
    d.play_out(actions)
    actions = d.wait_timer()
    assert texts(actions) == ["Your message has been saved. Goodbye."]
    assert len(store.list("200")) == 1


def test_nothing_recorded_twice_is_empty(tmp_path):
    d, store = _leave(tmp_path)
    start = _to_recording(d)
    actions = d.send(RecordingDone(start.path, 0.0, "silence"))
    assert texts(actions) == ["I did not hear a message. Please speak after the tone."]
    actions = d.play_out(actions)
    (again,) = d.play_out(actions)
    assert isinstance(again, StartRecording)
    actions = d.send(RecordingDone(again.path, 0.0, "silence"))
    assert texts(actions) == ["No message was recorded. Goodbye."]
    d.play_out(actions)
    assert d.m.result == ActionDone("voicemail", "empty") and store.list("200") == []


def test_hangup_mid_recording_keeps_the_message(tmp_path):
    d, store = _leave(tmp_path)
    start = _to_recording(d)
    duration = record(start, 4.0)
    assert d.send(Hangup()) == [StopRecording()]
    assert not d.m.finished
    d.send(RecordingDone(start.path, duration, "hangup"))
    assert d.m.result == ActionDone("voicemail", "saved")
    assert [m.duration for m in store.list("200")] == [4.0]


def test_hangup_mid_recording_without_a_recording_result_measures_the_file(tmp_path):
    d, store = _leave(tmp_path)
    start = _to_recording(d)
    record(start, 2.0)
    d.send(Hangup())
    assert d.m.next_timer is not None
    d.wait_timer()
    assert d.m.result == ActionDone("voicemail", "saved")
    assert [m.duration for m in store.list("200")] == [2.0]


def test_hangup_during_greeting_is_empty(tmp_path):
    d, _ = _leave(tmp_path)
    d.start()
    d.send(Hangup())
    assert d.m.result == ActionDone("voicemail", "empty")
    with pytest.raises(DialogueError, match="can't handle key in state 'finished'"):
        d.send(Key("1"))


def test_full_mailbox_refuses_politely(tmp_path):
    box = Mailbox(number="200", owner="Alice Example", max_messages=1)
    d, store = _leave(tmp_path, mailbox=box)
    src = tmp_path / "x.wav"
    soundfile.write(src, np.zeros(8000, np.int16), 8000)
    store.add("200", caller="1", duration=1, source=src)
    actions = d.start()
    assert texts(actions) == ["Sorry, the mailbox of Alice Example is full. Goodbye."]
    d.play_out(actions)
    assert d.m.result == ActionDone("voicemail", "full")


def test_events_the_runner_should_never_send(tmp_path):
    d, _ = _leave(tmp_path)
    d.start()
    with pytest.raises(DialogueError, match="can't handle recording_done in state 'greeting'"):
        d.send(RecordingDone("x.wav", 1.0))
    with pytest.raises(DialogueError, match="can't handle transfer_result in state 'greeting'"):
        d.send(TransferResult("busy"))


def test_silence_and_min_length_come_from_the_mailbox(tmp_path):
    box = Mailbox(number="200", owner="A", silence=0.0, min_length=2.5)
    d, _ = _leave(tmp_path, mailbox=box)
    start = _to_recording(d)
    assert (start.silence, start.min_length) == (0.0, 2.5)


def test_greetings_configured_in_the_deployment_file(tmp_path):
    box = Mailbox(
        number="200",
        owner="A",
        greetings=(("busy", "greetings/busy-200.wav"), ("name", "names/a.wav")),
    )
    d, store = _leave(tmp_path, mailbox=box, greeting="busy")
    assert d.start()[0] == Play("greetings/busy-200.wav", d.m._next_prompt)
    d2, _ = _leave(tmp_path, mailbox=box, greeting="unavailable")
    actions = d2.start()
    assert isinstance(actions[0], Play) and actions[0].path == "names/a.wav"
    assert texts(actions)[1].startswith("Is not available.")
    # One recorded by phone wins over the configured file.
    path = store.greeting_path("200", "busy")
    path.parent.mkdir(parents=True)
    soundfile.write(path, np.zeros(800, np.int16), 8000)
    d3, _ = _leave(tmp_path, mailbox=box, greeting="busy")
    assert d3.start()[0] == Play("data:voicemail/200/greetings/busy.wav", d3.m._next_prompt)


def test_recording_ended_by_hangup_is_saved_without_a_goodbye(tmp_path):
    """The runner stops the recorder first (reason hangup), then sends Hangup: stored, finished at once."""
    d, store = _leave(tmp_path, review=True)
    start = _to_recording(d)
    assert d.send(RecordingDone(start.path, record(start, 2.0), "hangup")) == []
    assert d.m.result == ActionDone("voicemail", "saved")
    assert [m.duration for m in store.list("200")] == [2.0]
