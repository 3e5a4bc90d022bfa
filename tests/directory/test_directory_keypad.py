"""The keypad directory sub-dialogue, driven event by event with a fake clock."""

from __future__ import annotations

from pathlib import Path

from ivr.directory.keypad import KeypadDialogue
from ivr.directory.matching import keypad_digits, keypad_matches
from ivr.directory.source import load_directory
from ivr.dsl.events import (
    Action,
    DirectoryResult,
    Hangup,
    Key,
    Listen,
    Play,
    PromptDone,
    Say,
    StopPrompts,
    TimerFired,
)

BOOK = load_directory(Path(__file__).parent.parent / "data" / "directory" / "staff.csv")


def said(actions: list[Action]) -> list[str]:
    return [a.text if isinstance(a, Say) else f"<{a.path}>" for a in actions if isinstance(a, Say | Play)]


def last_prompt(actions: list[Action]) -> int:
    return [a.prompt_id for a in actions if isinstance(a, Say | Play)][-1]


def keys(d: KeypadDialogue, digits: str, now: float = 1.0) -> list[Action]:
    out: list[Action] = []
    for k in digits:
        out += d.handle(Key(k), now)
    return out


def test_keypad_digits_fold_accents_and_punctuation() -> None:
    assert keypad_digits("Zürcher") == "9872437"
    assert keypad_digits("O'Brien") == "627436"
    assert keypad_digits("김민준") == ""


def test_matches_by_last_first_and_either() -> None:
    names = lambda ps: [p.display_name for p in ps]  # noqa: E731
    assert names(keypad_matches(BOOK.people, "564", "last")) == ["Alice Johnson", "Jack Johnston"]
    assert names(keypad_matches(BOOK.people, "522", "first")) == ["Jack Johnston"]
    assert names(keypad_matches(BOOK.people, "522", "either")) == ["Jack Johnston"]
    assert names(keypad_matches(BOOK.people, "948", "last")) == []  # Carol White is hidden


def test_three_letters_read_matches_and_a_key_selects() -> None:
    d = KeypadDialogue(BOOK)
    first = d.start(0.0)
    assert said(first)[0].startswith("Please enter the first three letters of the person's last name")
    assert isinstance(first[-1], Listen) and first[-1].phrases == ()
    out = keys(d, "564")
    assert out[0] == StopPrompts()  # barge-in on the first key
    assert said(out) == ["Press 1 for", "Alice Johnson", "Press 2 for", "Jack Johnston", "Press star to start over."]
    out = d.handle(Key("2"), 2.0)
    assert d.finished and d.result == DirectoryResult("selected", "209", "Jack Johnston", "")
    assert out[-1] == Listen()


def test_recorded_name_is_played_and_namesakes_are_told_apart() -> None:
    d = KeypadDialogue(BOOK)
    d.start(0.0)
    assert said(keys(d, "987")) == ["Press 1 for", "<names/zurcher.wav>", "Press star to start over."]
    d = KeypadDialogue(BOOK)
    d.start(0.0)
    assert said(keys(d, "764")) == [
        "Press 1 for",
        "John Smith in Sales",
        "Press 2 for",
        "John Smith in Support",
        "Press star to start over.",
    ]
    keys(d, "2")
    assert d.result == DirectoryResult("selected", "207", "John Smith", "207")


def test_hash_looks_up_fewer_letters_and_zero_asks_for_the_operator() -> None:
    d = KeypadDialogue(BOOK)
    d.start(0.0)
    assert said(keys(d, "5#"))[1] == "Alice Johnson"
    d = KeypadDialogue(BOOK)
    d.start(0.0)
    keys(d, "56")
    keys(d, "0")
    assert d.finished and d.result == DirectoryResult("operator")


def test_no_match_reprompts_then_gives_up() -> None:
    d = KeypadDialogue(BOOK, tries=2)
    d.start(0.0)
    out = keys(d, "222")
    assert said(out)[0] == "There is nobody whose name starts with those letters."
    assert said(out)[1].startswith("Please enter the first three letters")
    assert not d.finished
    out = keys(d, "222")
    assert said(out) == ["There is nobody whose name starts with those letters.", "Sorry, I could not find that person."]
    assert d.finished and d.result == DirectoryResult("not_found")


def test_timeout_starts_after_the_last_prompt_and_reprompts() -> None:
    d = KeypadDialogue(BOOK, timeout=5.0, tries=2)
    out = d.start(0.0)
    assert d.next_timer is None  # still prompting: no timer yet
    d.handle(PromptDone(last_prompt(out)), 3.0)
    assert d.next_timer == 8.0
    assert d.handle(TimerFired(), 7.0) == []  # early wake-ups change nothing
    out = d.handle(TimerFired(), 8.0)
    assert said(out)[0].startswith("Please enter the first three letters")
    d.handle(PromptDone(last_prompt(out)), 10.0)
    out = d.handle(TimerFired(), 15.0)
    assert d.finished and d.result == DirectoryResult("not_found")


def test_inter_digit_timeout_uses_the_letters_typed() -> None:
    d = KeypadDialogue(BOOK, timeout=4.0)
    d.start(0.0)
    keys(d, "76", now=1.0)
    assert d.next_timer == 5.0
    out = d.handle(TimerFired(), 5.0)
    assert said(out)[1] == "John Smith in Sales"


def test_pages_of_eight_with_nine_for_more(tmp_path: Path) -> None:
    rows = "\n".join(f"P{i},Jones,{300 + i}" for i in range(10))
    path = tmp_path / "many.csv"
    path.write_text("first_name,last_name,extension\n" + rows + "\n")
    d = KeypadDialogue(load_directory(path))
    d.start(0.0)
    out = said(keys(d, "566"))
    assert out.count("Press 8 for") == 1 and "Press 9 for more names." in out
    out = said(keys(d, "9"))
    assert out[:4] == ["Press 1 for", "P8 Jones", "Press 2 for", "P9 Jones"]
    keys(d, "2")
    assert d.result == DirectoryResult("selected", "309", "P9 Jones", "")


def test_star_starts_over_and_hangup_finishes() -> None:
    d = KeypadDialogue(BOOK)
    d.start(0.0)
    keys(d, "564")
    out = keys(d, "*")
    assert said(out)[0].startswith("Please enter the first three letters")
    assert d.state == "letters" and d.digits == ""
    d.handle(Hangup(), 3.0)
    assert d.finished and d.result == DirectoryResult("not_found")
