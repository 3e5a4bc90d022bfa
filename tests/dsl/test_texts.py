"""texts_of: the constant say texts of a compiled flow, with their voice and rate."""

from __future__ import annotations

from dataclasses import dataclass, field

import pytest

from ivr.dsl.events import Say
from ivr.dsl.texts import texts_of


@dataclass(frozen=True)
class _Settings:
    voice: str = "en-gb"
    rate: int = 170


@dataclass(frozen=True)
class _State:
    name: str
    actions: tuple[object, ...] = ()
    transitions: dict[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class _Program:
    states: dict[str, _State]
    settings: _Settings = _Settings()


def test_texts_of_lists_constant_say_texts_once():
    program = _Program(
        states={
            "welcome": _State("welcome", (Say("Welcome to Acme.", 1), Say("Hello {caller}", 2))),
            "menu": _State(
                "menu",
                (Say("Press 1.", 3, voice="en-us"),),
                {"invalid": (Say("Sorry, that is not an option.", 4), Say("Welcome to Acme.", 5))},
            ),
        }
    )
    assert texts_of(program) == [
        ("Welcome to Acme.", "en-gb", 170),
        ("Press 1.", "en-us", 170),
        ("Sorry, that is not an option.", "en-gb", 170),
    ]


def test_texts_of_a_compiled_flow(tmp_path):
    loader = pytest.importorskip("ivr.dsl.loader")
    flow = tmp_path / "f.ivr"
    flow.write_text(
        "voice en-gb\n\nnumber default -> welcome\n\n"
        "menu welcome:\n"
        '    say "Welcome to Acme."\n'
        '    ask "For sales, press 1."\n'
        "    1 -> bye\n"
        '    invalid -> say "Sorry, {caller}."\n\n'
        "bye:\n"
        '    say "Goodbye."\n'
        "    hangup\n"
    )
    program = loader.load_flow([flow])
    found = texts_of(program)
    assert sorted(t for t, _, _ in found) == ["For sales, press 1.", "Goodbye.", "Welcome to Acme."]
    assert {v for _, v, _ in found} == {"en-gb"}


def test_languages_of_and_said_in_follow_set_language(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from ivr.dsl.loader import load_flow
    from ivr.dsl.texts import languages_of, said_in

    path = tmp_path / "flow.ivr"
    path.write_text(
        'language en\nnumber default -> m\nmenu m:\n    ask "One or two."\n    1 -> de\n    2 -> fr\n'
        'de:\n    set language = "de"\n    -> both\nfr:\n    set language = "fr"\n    say "Bonjour."\n    -> both\n'
        'both:\n    say "Acme."\n    set language = "{caller}"\n    say "Ciao."\n',
        encoding="utf-8",
    )
    program = load_flow([path])
    assert languages_of(program) == ["en", "de", "fr"]
    assert said_in(program) == {"One or two.": {"en"}, "Bonjour.": {"fr"}, "Acme.": {"de", "fr"}, "Ciao.": {"de", "fr"}}
