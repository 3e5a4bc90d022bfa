"""MailboxAccess fed event by event: login (and lock-out), listening, save/delete, greetings."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.config import Mailbox
from ivr.dsl.events import (
    ActionDone,
    Hangup,
    HangupCall,
    Key,
    Play,
    RecordingDone,
    StartRecording,
    StopPrompts,
    StopRecording,
)
from ivr.language import catalogue
from ivr.voicemail.access import MailboxAccess
from ivr.voicemail.pins import hash_pin
from ivr.voicemail.store import VoicemailStore

from .helpers import Driver, record, texts

MAIN_MENU, MESSAGE_MENU, OPTIONS_MENU = (
    catalogue("en").say(f"voicemail.access.{m}") for m in ("main_menu", "message_menu", "options_menu")
)

PIN_HASH = hash_pin("2580", "200")
BOXES = [
    Mailbox(number="200", owner="Alice Example", pin_hash=PIN_HASH),
    Mailbox(number="300", owner="No Pin"),
]
MONDAY_0905_ZURICH = 1_763_971_500.0  # 2025-11-24 09:05 CET


def _store_with_messages(tmp_path: Path) -> VoicemailStore:
    store = VoicemailStore(tmp_path)
    for i, caller in enumerate(("+41791112233", "201")):
        src = tmp_path / f"m{i}.wav"
        soundfile.write(src, np.zeros(8000, np.int16), 8000)
        store.add(
            "200", caller=caller, duration=1.0, source=src, received_at=MONDAY_0905_ZURICH + 60 * i
        )
    return store


def _access(
    tmp_path: Path, mailbox: str | None = None, store: VoicemailStore | None = None
) -> Driver:
    machine = MailboxAccess(
        mailboxes=BOXES,
        store=store or _store_with_messages(tmp_path),
        mailbox=mailbox,
        caller="+41445556677",
        timezone="Europe/Zurich",
    )
    return Driver(machine)


def _type(d: Driver, digits: str):
    actions = []
    for digit in digits:
        actions = d.send(Key(digit), advance=0.3)
    return actions


def _login(d: Driver, box: str = "200", pin: str = "2580"):
    d.play_out(d.start())
    _type(d, box + "#")
    return _type(d, pin + "#")


def test_wrong_pin_three_times_ends_the_call_and_is_logged(tmp_path, caplog):
    d = _access(tmp_path)
    caplog.set_level(logging.WARNING, logger="ivr.voicemail")
    actions = d.start()
    assert texts(actions) == ["Please enter your mailbox number, then press hash."]
    d.play_out(actions)
    for _attempt in range(2):
        _type(d, "200#")
        actions = _type(d, "1111#")
        assert texts(actions) == [
            "That mailbox number or PIN is not correct.",
            "Please enter your mailbox number, then press hash.",
        ]
        d.play_out(actions)
    _type(d, "200#")
    actions = _type(d, "9999#")
    assert texts(actions) == ["Too many failed attempts. Goodbye."]
    assert d.send(Key("1")) == []  # not interruptible
    assert d.play_out(actions) == [HangupCall("voicemail_locked")]
    assert d.m.result == ActionDone("voicemail_access", "locked")
    failed = [r.getMessage() for r in caplog.records if "failed login to" in r.getMessage()]
    assert failed == [
        f"voicemail: failed login to mailbox 200 from +41445556677 ({i} of 3)" for i in (1, 2, 3)
    ]
    assert any("locked out" in r.getMessage() for r in caplog.records)


def test_unknown_mailbox_and_mailbox_without_pin_cannot_log_in(tmp_path):
    d = _access(tmp_path)
    d.play_out(d.start())
    for box in ("999", "300"):
        _type(d, box + "#")
        actions = _type(d, "2580#")
        assert texts(actions)[0] == "That mailbox number or PIN is not correct."
        d.play_out(actions)
    assert d.m.failures == 2 and d.m.box is None


def test_a_pin_written_in_clear_is_refused_and_the_log_says_why(tmp_path, caplog):
    caplog.set_level(logging.WARNING, logger="ivr.voicemail")
    machine = MailboxAccess(
        mailboxes=[Mailbox(number="400", pin_hash="2580")],
        store=VoicemailStore(tmp_path),
        mailbox="400",
        caller="1",
    )
    d = Driver(machine)
    d.play_out(d.start())
    actions = _type(d, "2580#")
    assert texts(actions)[0] == "That mailbox number or PIN is not correct."
    assert "its pin_hash is not a hash made by `ivr mailbox set-pin`" in caplog.text


def test_fixed_mailbox_asks_only_the_pin_and_logs_in(tmp_path):
    d = _access(tmp_path, mailbox="200")
    actions = d.start()
    assert texts(actions) == ["Please enter your PIN, then press hash."]
    d.play_out(actions)
    actions = _type(d, "2580#")
    assert texts(actions) == ["You have 2 new messages and 0 saved messages.", MAIN_MENU]
    assert d.m.box is not None and d.m.box.number == "200"


def test_pin_entered_without_hash_is_taken_after_a_pause(tmp_path):
    d = _access(tmp_path, mailbox="200")
    d.play_out(d.start())
    _type(d, "2580")
    actions = d.wait_timer()
    assert texts(actions)[0] == "You have 2 new messages and 0 saved messages."


def test_listen_repeat_save_delete_next(tmp_path):
    store = _store_with_messages(tmp_path)
    d = _access(tmp_path, store=store)
    _login(d)
    actions = d.send(Key("1"))
    assert isinstance(actions[0], StopPrompts)  # barge-in on the menu
    first, second = store.list("200")
    assert texts(actions) == [
        "New message 1 of 2. Received Monday, November 24, at 9:05 AM, from plus 4 1 7 9 1 1 1 2 2 3 3.",
        "<play>",
        MESSAGE_MENU,
    ]
    play = actions[2]
    assert isinstance(play, Play) and play.path == store.data_ref(first.path)
    assert texts(d.send(Key("1")))[0].startswith("New message 1 of 2.")  # repeat
    actions = d.send(Key("2"))  # save, then the next one plays
    assert texts(actions)[:2] == [
        "Message saved.",
        "New message 2 of 2. Received Monday, November 24, at 9:06 AM, from 2 0 1.",
    ]
    actions = d.send(Key("3"))  # delete the second
    assert texts(actions) == ["Message deleted.", "No more messages.", MAIN_MENU]
    assert store.counts("200") == (0, 1)
    assert not second.path.exists()
    actions = d.send(Key("1"))
    assert texts(actions)[0].startswith("Saved message 1 of 1.")
    actions = d.send(Key("6"))
    assert texts(actions) == ["No more messages.", MAIN_MENU]
    actions = d.send(Key("*"))
    assert texts(actions) == ["Goodbye."]
    d.play_out(actions)
    assert d.m.result == ActionDone("voicemail_access", "done")


def test_empty_mailbox_and_menu_timeouts(tmp_path):
    d = _access(tmp_path, store=VoicemailStore(tmp_path))
    actions = _login(d)
    assert texts(actions)[0] == "You have 0 new messages and 0 saved messages."
    assert texts(d.send(Key("1"))) == ["You have no messages.", MAIN_MENU]
    assert texts(d.send(Key("7"))) == ["Sorry, that is not an option.", MAIN_MENU]
    for _ in range(2):
        d.play_out(d.log)
        assert texts(d.wait_timer()) == [MAIN_MENU]
    d.play_out(d.log)
    assert texts(d.wait_timer()) == ["Goodbye."]


def test_record_a_greeting_with_review_and_remove_temporary(tmp_path):
    store = _store_with_messages(tmp_path)
    d = _access(tmp_path, store=store)
    _login(d)
    assert texts(d.send(Key("0"))) == [OPTIONS_MENU]
    actions = d.send(Key("3"))
    assert texts(actions) == [
        "Record your temporary greeting after the tone. Press hash when you are done."
    ]
    actions = d.play_out(actions)
    assert texts(actions) == ["<tone>"]
    (start,) = d.play_out(actions)
    assert isinstance(start, StartRecording)
    actions = d.send(RecordingDone(start.path, record(start, 2.0), "key"))
    assert texts(actions)[0].startswith("To keep it, press 1.")
    actions = d.send(Key("2"))
    assert (
        isinstance(actions[-1], Play)
        and actions[-1].path == "data:voicemail/200/greetings/.temporary-new.wav"
    )
    actions = d.send(Key("1"))
    assert texts(actions) == ["Your greeting has been saved.", OPTIONS_MENU]
    final = store.greeting_path("200", "temporary")
    assert soundfile.info(str(final)).duration == pytest.approx(2.0)
    assert texts(d.send(Key("5"))) == ["Your temporary greeting has been removed.", OPTIONS_MENU]
    assert not final.exists()
    assert texts(d.send(Key("5")))[0] == "You have no temporary greeting."
    assert texts(d.send(Key("*"))) == [MAIN_MENU]


def test_hangup_while_recording_a_greeting_keeps_the_old_one(tmp_path):
    store = _store_with_messages(tmp_path)
    old = store.greeting_path("200", "unavailable")
    old.parent.mkdir(parents=True)
    soundfile.write(old, np.zeros(800, np.int16), 8000)
    d = _access(tmp_path, store=store)
    _login(d)
    d.send(Key("0"))
    d.play_out(d.send(Key("1")))
    (start,) = d.play_out(d.log[-1:])
    assert isinstance(start, StartRecording)
    record(start, 1.0)
    assert d.send(Hangup()) == [StopRecording()]
    assert d.m.result == ActionDone("voicemail_access", "done")
    assert soundfile.info(str(old)).frames == 800 and not Path(start.path).exists()
