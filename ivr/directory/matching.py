"""Finding people: keypad letters to names, spoken phrases to people, telling namesakes apart.

Keypad matching follows the phone keypad of ITU-T E.161 (2=ABC ... 7=PQRS,
8=TUV, 9=WXYZ) on the accent-folded name.  Speech matching works on whole
phrases: :class:`PhraseIndex` maps each normalized phrase of the grammar
(display name, "first last", aliases) back to the people it names, and a
recognizer result that is not one of those phrases matches nobody.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Literal

from ivr.directory.source import DirectoryBook, Person, normalize_phrase
from ivr.language import Catalogue, catalogue

MatchBy = Literal["last", "first", "either"]

KEYPAD: dict[str, str] = {
    **dict.fromkeys("abc", "2"),
    **dict.fromkeys("def", "3"),
    **dict.fromkeys("ghi", "4"),
    **dict.fromkeys("jkl", "5"),
    **dict.fromkeys("mno", "6"),
    **dict.fromkeys("pqrs", "7"),
    **dict.fromkeys("tuv", "8"),
    **dict.fromkeys("wxyz", "9"),
}


def keypad_digits(name: str) -> str:
    """The keys that spell ``name`` (letters only; "O'Brien" -> 627436); "" for non-Latin names."""
    return "".join(KEYPAD[c] for c in normalize_phrase(name) if c in KEYPAD)


def _keyed_names(person: Person, match: MatchBy) -> list[str]:
    last = person.last_name or person.display_name.split()[-1]
    first = person.first_name or person.display_name.split()[0]
    return {"last": [last], "first": [first], "either": [last, first]}[match]


def keypad_matches(people: Iterable[Person], digits: str, match: MatchBy) -> list[Person]:
    """People whose last (first, either) name starts with the letters typed as ``digits``.

    Sorted by last name, first name, then extension so the read-out order is stable.
    """
    found = [
        p
        for p in people
        if not p.hidden and any(keypad_digits(n).startswith(digits) for n in _keyed_names(p, match))
    ]
    return sorted(found, key=lambda p: (p.last_name.lower(), p.first_name.lower(), p.extension))


def distinguishing_label(person: Person, namesakes: Sequence[Person], lang: Catalogue | None = None) -> str:
    """How to read ``person`` out among ``namesakes`` in ``lang`` (default English): "Ann Lee in
    Sales" or "Ann Lee at extension 2 0 1"."""
    same = [p for p in namesakes if normalize_phrase(p.display_name) == normalize_phrase(person.display_name)]
    if len(same) < 2:
        return person.display_name
    lang = lang or catalogue("en")
    departments = {p.department.lower() for p in same}
    if person.department and len(departments) == len(same):
        return lang.say("directory.label.department", name=person.display_name, department=person.department)
    return lang.say("directory.label.extension", name=person.display_name, extension=person.extension)


@dataclass(frozen=True)
class PhraseIndex:
    """Whole spoken phrases of a directory -> the people they name (hidden people excluded)."""

    people_by_phrase: dict[str, tuple[Person, ...]] = field(default_factory=dict)

    @classmethod
    def build(cls, book: DirectoryBook) -> PhraseIndex:
        index: dict[str, list[Person]] = {}
        for person in book.visible:
            for phrase in person.spoken_names:
                index.setdefault(phrase, []).append(person)
        return cls({k: tuple(v) for k, v in index.items()})

    @property
    def phrases(self) -> tuple[str, ...]:
        return tuple(self.people_by_phrase)

    def lookup(self, text: str) -> tuple[Person, ...]:
        """The people a recognizer result names; ``()`` unless it is exactly one whole phrase."""
        return self.people_by_phrase.get(normalize_phrase(text), ())
