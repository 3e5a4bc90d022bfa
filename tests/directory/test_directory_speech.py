"""The speech directory sub-dialogue: phrases, confirmation, namesakes, keypad fallback."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.directory.source import load_directory
from ivr.directory.speech import DirectoryDialogue
from ivr.dsl.events import (
    Action,
    DirectoryResult,
    Hangup,
    Key,
    Listen,
    Play,
    PromptDone,
    Say,
    Speech,
    StopPrompts,
    TimerFired,
)
from ivr.language import catalogue

YES, NO = catalogue("en").phrases("speech.yes"), catalogue("en").phrases("speech.no")

BOOK = load_directory(Path(__file__).parent.parent / "data" / "directory" / "staff.csv")


def said(actions: list[Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, Say)]


def listen(actions: list[Action]) -> Listen:
    return [a for a in actions if isinstance(a, Listen)][-1]


def test_asks_for_a_name_with_the_directory_phrases() -> None:
    d = DirectoryDialogue(BOOK)
    out = d.start(0.0)
    assert said(out) == ["Please say the name of the person you are calling, or press 0 for the operator."]
    phrases = listen(out).phrases
    assert "alice johnson" in phrases and "robert miller" in phrases and "bobby" in phrases
    assert "carol white" not in phrases  # hidden


def test_spoken_name_is_confirmed_by_voice() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    out = d.handle(Speech("siobhan kelly"), 2.0)
    assert out[0] == StopPrompts()
    assert said(out) == ["Did you say Siobhan Kelly? Say yes or press 1. Say no or press 2."]
    assert listen(out).phrases == YES + NO
    out = d.handle(Speech("yes"), 4.0)
    assert d.finished and d.result == DirectoryResult("selected", "203", "Siobhan Kelly", "203")
    assert out[-1] == Listen()


def test_alias_and_confirmation_by_key() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    d.handle(Speech("Robert Miller"), 2.0)
    d.handle(Key("1"), 3.0)
    assert d.result == DirectoryResult("selected", "202", "Bob Miller", "202")


def test_confirmation_plays_the_recorded_name() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    out = d.handle(Speech("anna zurcher"), 2.0)
    prompts = [a.text if isinstance(a, Say) else a.path for a in out if isinstance(a, Say | Play)]
    assert prompts == ["Did you say", "names/zurcher.wav", "Say yes or press 1. Say no or press 2."]
    assert listen(out).phrases == YES + NO
    d.handle(Speech("that is right"), 4.0)
    assert d.result == DirectoryResult("selected", "205", "Anna Zürcher", "205")


def test_no_confirm_selects_at_once() -> None:
    d = DirectoryDialogue(BOOK, confirm=False)
    d.start(0.0)
    d.handle(Speech("nguyen van minh"), 2.0)
    assert d.finished and d.result == DirectoryResult("selected", "204", "Nguyen Van Minh", "")


WHICH = "Did you mean Alice Johnson or Jack Johnston? Say the name, or press 1 for Alice Johnson, 2 for Jack Johnston."


def test_two_people_heard_are_offered_and_a_key_picks_one() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    out = d.handle(Speech("alice johnson", 0.8, ("jack johnston",)), 2.0)
    assert out[0] == StopPrompts()
    assert said(out) == [WHICH]
    assert listen(out).phrases == ("alice johnson", "ali", "jack johnston") + NO
    d.handle(Key("2"), 4.0)
    assert d.finished and d.result == DirectoryResult("selected", "209", "Jack Johnston", "")


def test_two_people_heard_the_caller_says_which_even_without_confirmation() -> None:
    d = DirectoryDialogue(BOOK, confirm=False)
    d.start(0.0)
    assert said(d.handle(Speech("alice johnson", 0.8, ("jack johnston",)), 2.0)) == [WHICH]
    d.handle(Speech("ali"), 4.0)
    assert d.result == DirectoryResult("selected", "201", "Alice Johnson", "201")


def test_neither_of_the_two_is_a_miss_and_a_wrong_key_asks_again() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    d.handle(Speech("alice johnson", 0.8, ("jack johnston",)), 2.0)
    assert said(d.handle(Key("7"), 3.0)) == [WHICH]
    out = d.handle(Speech("no"), 4.0)
    assert said(out) == ["Sorry, I did not find that name. Please say it again, or spell it on the keypad."]
    assert listen(out).phrases == DirectoryDialogue(BOOK).index.phrases


def test_a_rival_phrase_naming_the_same_person_is_no_question() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    out = d.handle(Speech("bob miller", 0.8, ("robert miller",)), 2.0)
    assert said(out) == ["Did you say Bob Miller? Say yes or press 1. Say no or press 2."]


def test_a_confirmation_heard_both_as_yes_and_no_is_asked_again() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    d.handle(Speech("siobhan kelly"), 2.0)
    out = d.handle(Speech("yes", 0.7, ("no",)), 3.0)
    assert said(out) == ["Did you say Siobhan Kelly? Say yes or press 1. Say no or press 2."]
    assert not d.finished


def test_namesakes_are_told_apart_by_department_said_or_keyed() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    out = d.handle(Speech("john smith"), 2.0)
    assert said(out) == [
        "There are 2 people named John Smith.",
        "Press 1 for John Smith in Sales.",
        "Press 2 for John Smith in Support.",
    ]
    assert listen(out).phrases == ("sales", "support")
    out = d.handle(Speech("support"), 3.0)
    assert said(out) == ["Did you say John Smith? Say yes or press 1. Say no or press 2."]
    d.handle(Speech("yeah"), 4.0)
    assert d.result == DirectoryResult("selected", "207", "John Smith", "207")
    d = DirectoryDialogue(BOOK, confirm=False)
    d.start(0.0)
    d.handle(Speech("john smith"), 2.0)
    d.handle(Key("1"), 3.0)
    assert d.result == DirectoryResult("selected", "206", "John Smith", "206")


def test_two_misses_fall_back_to_the_keypad() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    out = d.handle(Speech(""), 2.0)
    assert said(out) == ["Sorry, I did not find that name. Please say it again, or spell it on the keypad."]
    out = d.handle(Speech("bob miller"), 4.0)
    out = d.handle(Speech("no"), 6.0)  # wrong person: the second miss
    assert out[0] == StopPrompts()
    assert Listen() in out  # speech recognition stops
    assert said(out)[0].startswith("Please enter the first three letters of the person's last name")
    assert d.state == "keypad"
    for k in "564":
        d.handle(Key(k), 7.0)
    d.handle(Key("1"), 8.0)
    assert d.result == DirectoryResult("selected", "201", "Alice Johnson", "201")


def test_a_letter_key_switches_to_the_keypad_with_that_letter() -> None:
    d = DirectoryDialogue(BOOK, match="first")
    d.start(0.0)
    d.handle(Key("5"), 1.0)
    assert d.keypad is not None and d.keypad.digits == "5"
    d.handle(Key("2"), 1.5)
    out = d.handle(Key("2"), 2.0)
    assert "Jack Johnston" in said(out)


def test_operator_and_hangup() -> None:
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    d.handle(Key("0"), 1.0)
    assert d.result == DirectoryResult("operator")
    d = DirectoryDialogue(BOOK)
    d.start(0.0)
    d.handle(Hangup(), 1.0)
    assert d.finished and d.result == DirectoryResult("not_found")


def test_speech_only_gives_up_after_the_tries() -> None:
    d = DirectoryDialogue(BOOK, by_keys=False, tries=3)
    d.start(0.0)
    out = d.handle(Speech(""), 1.0)
    assert said(out) == ["Sorry, I did not find that name. Please say it again."]
    d.handle(Key("5"), 1.5)  # no keypad directory here: ignored
    d.handle(Speech("somebody else"), 2.0)
    assert not d.finished
    out = d.handle(Speech(""), 3.0)
    assert said(out) == ["Sorry, I could not find that person."]
    assert d.result == DirectoryResult("not_found")


def test_keys_only_starts_on_the_keypad() -> None:
    d = DirectoryDialogue(BOOK, by_speech=False)
    out = d.start(0.0)
    assert said(out)[0].startswith("Please enter the first three letters")
    assert all(a.phrases == () for a in out if isinstance(a, Listen))


def test_no_answer_times_out_after_the_prompt_and_a_grace() -> None:
    d = DirectoryDialogue(BOOK, timeout=5.0)
    out = d.start(0.0)
    pid = [a.prompt_id for a in out if isinstance(a, Say)][-1]
    d.handle(PromptDone(pid), 3.0)
    assert d.next_timer == pytest.approx(18.0)
    out = d.handle(TimerFired(), 18.0)
    assert said(out)[0].startswith("Sorry, I did not find that name")


def test_needs_speech_or_keys() -> None:
    with pytest.raises(ValueError, match="needs speech, keys or both"):
        DirectoryDialogue(BOOK, by_speech=False, by_keys=False)
