"""The speech directory's two hand-overs: the flow's keypad key, and a name said at the menu before."""

from __future__ import annotations

from pathlib import Path

from ivr.directory.source import load_directory
from ivr.directory.speech import DirectoryDialogue
from ivr.dsl.events import Action, DirectoryResult, Key, Listen, Say, Speech
from ivr.language import catalogue

YES, NO = catalogue("en").phrases("speech.yes"), catalogue("en").phrases("speech.no")

BOOK = load_directory(Path(__file__).parent.parent / "data" / "directory" / "staff.csv")
ASK_WITH_KEY = (
    "Please say the name of the person you are calling. To spell it on the keypad, press 9. "
    "For the operator, press 0."
)


def said(actions: list[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def test_the_first_question_names_the_keypad_key() -> None:
    assert said(DirectoryDialogue(BOOK, keypad_key="9").start(0.0)) == [ASK_WITH_KEY]
    assert said(DirectoryDialogue(BOOK, keypad_key="#").start(0.0))[0].endswith(
        "To spell it on the keypad, press pound. For the operator, press 0.")
    # Without the keypad, the key means nothing and is not offered.
    plain = DirectoryDialogue(BOOK, by_keys=False, keypad_key="9").start(0.0)
    assert said(plain) == ["Please say the name of the person you are calling, or press 0 for the operator."]


def test_the_keypad_key_switches_to_the_keypad_without_spelling() -> None:
    d = DirectoryDialogue(BOOK, keypad_key="9")
    d.start(0.0)
    out = d.handle(Key("9"), 1.0)
    assert Listen() in out  # speech recognition stops
    assert said(out)[0].startswith("Please enter the first three letters of the person's last name")
    assert d.keypad is not None and d.keypad.digits == ""
    for k in "564":
        d.handle(Key(k), 2.0)
    d.handle(Key("1"), 3.0)
    assert d.result == DirectoryResult("selected", "201", "Alice Johnson", "201")


def test_other_letters_still_start_spelling() -> None:
    d = DirectoryDialogue(BOOK, keypad_key="9")
    d.start(0.0)
    d.handle(Key("5"), 1.0)
    assert d.keypad is not None and d.keypad.digits == "5"


def test_the_keypad_key_counts_only_while_a_name_is_asked_for() -> None:
    d = DirectoryDialogue(BOOK, keypad_key="1")
    d.start(0.0)
    d.handle(Speech("alice johnson"), 1.0)
    d.handle(Key("1"), 2.0)  # at "Did you say Alice Johnson?", 1 is yes
    assert d.result == DirectoryResult("selected", "201", "Alice Johnson", "201")


def test_a_name_heard_at_the_menu_is_confirmed_at_once() -> None:
    d = DirectoryDialogue(BOOK, heard="Alice Johnson")
    out = d.start(0.0)
    assert said(out) == ["Did you say Alice Johnson? Say yes or press 1. Say no or press 2."]
    assert [a for a in out if isinstance(a, Listen)][-1].phrases == YES + NO
    d.handle(Speech("yes"), 2.0)
    assert d.result == DirectoryResult("selected", "201", "Alice Johnson", "201")


def test_a_name_heard_at_the_menu_that_names_nobody_is_asked_for() -> None:
    d = DirectoryDialogue(BOOK, heard="john doe", keypad_key="9")
    assert said(d.start(0.0)) == [ASK_WITH_KEY]
    assert d.misses == 0  # not the caller's fault: the menu's words were not a name
    assert said(DirectoryDialogue(BOOK, heard="alice johnson", by_speech=False).start(0.0))[0].startswith(
        "Please enter the first three letters")  # a keypad-only directory does not take speech
