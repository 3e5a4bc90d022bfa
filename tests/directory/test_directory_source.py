"""Directory files: CSV and TOML loading, the errors bad files give, and `check_directory`."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.directory.source import DirectoryError, Person, check_directory, load_directory

DATA = Path(__file__).parent.parent / "data" / "directory"


def test_csv_loads_every_column() -> None:
    book = load_directory(DATA / "staff.csv", name="staff")
    assert book.name == "staff"
    assert len(book.people) == 9
    bob = book.people[1]
    assert bob == Person(
        display_name="Bob Miller",
        first_name="Bob",
        last_name="Miller",
        extension="202",
        aliases=("Robert Miller", "Bobby"),
        name_recording=None,
        hidden=False,
        mailbox="202",
        department="Support",
    )
    assert book.people[4].name_recording == "names/zurcher.wav"
    assert book.people[7].hidden and book.people[7] not in book.visible
    assert book.people[3].mailbox is None


def test_spoken_names_are_normalized_and_deduplicated() -> None:
    book = load_directory(DATA / "staff.csv")
    assert book.people[1].spoken_names == ("bob miller", "robert miller", "bobby")
    assert book.people[4].spoken_names == ("anna zurcher",)
    assert book.people[3].spoken_names == ("nguyen van minh", "minh nguyen")


def test_toml_loads_with_default_display_name_and_numbers() -> None:
    book = load_directory(DATA / "staff.toml")
    assert book.name == "staff"
    assert book.people[0].display_name == "Alice Johnson"
    assert book.people[0].aliases == ("Ali",)
    assert book.people[1].extension == "202"
    assert book.people[1].hidden


@pytest.mark.parametrize(
    ("text", "message", "line"),
    [
        ("first_name,last_name,extension\nAlice,Johnson,\n", "Alice Johnson: missing extension", 2),
        ("first_name,last_name,phone\nAlice,Johnson,201\n", "unknown column(s) phone", 1),
        ("first_name,last_name,extension\n,,201\n", "a person needs a first_name or last_name", 2),
        ("first_name,last_name,extension,hidden\nA,B,201,maybe\n", "hidden must be yes/no, got 'maybe'", 2),
        ("first_name,last_name,extension\nA,B,201,extra\n", "4 fields but the header has 3", 2),
        ("first_name,last_name,extension\nA,B,2 01\n", "A B: invalid extension '2 01'", 2),
        ("", "empty directory file (no header row)", 0),
    ],
)
def test_bad_csv_names_line_and_problem(tmp_path: Path, text: str, message: str, line: int) -> None:
    path = tmp_path / "d.csv"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(DirectoryError) as info:
        load_directory(path)
    assert info.value.message.startswith(message)
    assert info.value.line == line
    assert str(path) in str(info.value)


def test_bad_toml_names_line(tmp_path: Path) -> None:
    path = tmp_path / "d.toml"
    path.write_text('[[person]]\nfirst_name = "A"\nextension = "1"\n\n[[person]]\nfirst_name = "B"\nphone = "2"\n')
    with pytest.raises(DirectoryError) as info:
        load_directory(path)
    assert info.value.message == "unknown key(s) phone"
    assert info.value.line == 5


def test_unreadable_file_is_a_directory_error(tmp_path: Path) -> None:
    with pytest.raises(DirectoryError, match="cannot read directory file"):
        load_directory(tmp_path / "missing.csv")
    bad = tmp_path / "latin1.csv"
    bad.write_bytes("first_name,last_name,extension\nJos\xe9,X,1\n".encode("latin-1"))
    with pytest.raises(DirectoryError, match="cannot read directory file"):
        load_directory(bad)


def test_check_reports_duplicates_missing_extensions_and_recordings(tmp_path: Path) -> None:
    path = tmp_path / "d.csv"
    path.write_text(
        "first_name,last_name,extension,name_recording\n"
        "Alice,Johnson,201,\nAlice,Johnson,201,\nBob,Miller,299,bob.wav\nAnn,Lee,202,\nAnn,Lee,203,\n"
    )
    problems = check_directory(load_directory(path), extensions={"201", "202", "203"})
    assert problems == [
        f"{path}: Alice Johnson (201) is listed twice",
        f"{path}: Bob Miller: extension 299 is not defined",
        f"{path}: Bob Miller: cannot read name recording bob.wav",
        f"{path}: Ann Lee appears 2 times with the same department (202, 203): add a department to tell them apart",
    ]


def test_check_of_a_good_directory_is_empty() -> None:
    book = load_directory(DATA / "staff.toml")
    assert check_directory(book, extensions={"201", "202"}) == []
    assert check_directory(book, extensions=None) == []
