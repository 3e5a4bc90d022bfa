"""The message catalogues: every language complete and consistent, numbers, plurals, genders,
dates and times spoken per language, and a clear error for each way a catalogue can be broken."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

import pytest

from ivr.language import (
    all_catalogues,
    base_language,
    catalogue,
    known,
    language_of_voice,
    languages,
)
from ivr.language.catalogue import MESSAGES, CatalogueError, check_against, entry_placeholders, load

SHIPPED = ("de", "en", "fr", "it")
EVE = datetime(2026, 12, 24, 14, 30)


def test_the_four_languages_are_shipped() -> None:
    assert languages() == SHIPPED


@pytest.mark.parametrize("language", SHIPPED)
def test_every_id_is_in_every_language_with_the_same_placeholders(language: str) -> None:
    english, other = catalogue("en"), catalogue(language)
    assert other.ids() == english.ids()
    for message in english.ids():
        if not message.startswith("format."):
            assert entry_placeholders(other.entries[message]) == entry_placeholders(english.entries[message]), message


@pytest.mark.parametrize("language", SHIPPED)
def test_every_sentence_can_be_said(language: str) -> None:
    """Each message filled with sample arguments: no placeholder the code does not give."""
    cat = catalogue(language)
    samples = {
        "owner": "Anna", "number": "+41 201", "name": "Ann Lee", "department": "Sales", "extension": "201",
        "n": 3, "count": 2, "new": "x", "saved": "y", "index": 1, "total": 2, "received": EVE, "caller": "2 0 1", "key": "9", "first": "Ann Lee", "second": "Al Li",
    }
    for message in cat.ids():
        if message.startswith("format.") or message.startswith("speech."):
            continue
        assert cat.say(message, **samples).strip(), message


def test_swiss_german_has_no_eszett_and_says_sie() -> None:
    cat = catalogue("de")
    texts = [cat.say(m, count=31, n=1, owner="A", number="1", name="B", department="C", extension="2",
                     new="", saved="", index=31, total=31, received=EVE, caller="", key="9", first="A", second="B")
             for m in cat.ids() if not m.startswith(("speech.", "format."))]
    assert not [t for t in texts if "ß" in t]
    assert cat.say("voicemail.access.new_messages", count=30) == "dreissig neue Nachrichten"  # num2words: dreißig
    assert any(" Sie " in t for t in texts)
    assert not [t for t in texts if " du " in f" {t.lower()} " or " dein" in t.lower()]


@pytest.mark.parametrize(("language", "counts", "expected"), [
    ("en", (1, 21), "You have 1 new message and 21 saved messages."),
    ("en", (0, 2), "You have 0 new messages and 2 saved messages."),
    ("de", (1, 2), "Sie haben eine neue Nachricht und zwei gespeicherte Nachrichten."),
    ("de", (0, 21), "Sie haben keine neuen Nachrichten und einundzwanzig gespeicherte Nachrichten."),
    ("fr", (1, 21), "Dans votre messagerie : un nouveau message et vingt et un messages conservés."),
    ("fr", (0, 1), "Dans votre messagerie : aucun nouveau message et un message conservé."),
    ("it", (1, 21), "Nella sua casella vocale: un nuovo messaggio e ventuno messaggi salvati."),
    ("it", (0, 1), "Nella sua casella vocale: nessun nuovo messaggio e un messaggio salvato."),
])
def test_counts_take_the_plural_and_gender_of_the_language(language: str, counts: tuple[int, int], expected: str) -> None:
    cat = catalogue(language)
    new = cat.say("voicemail.access.new_messages", count=counts[0])
    saved = cat.say("voicemail.access.saved_messages", count=counts[1])
    assert cat.say("voicemail.access.summary", new=new, saved=saved) == expected


@pytest.mark.parametrize(("language", "one", "twenty_one"), [
    ("en", "There is 1 person named Ann Lee.", "There are 21 people named Ann Lee."),
    ("de", "Es gibt eine Person mit dem Namen Ann Lee.", "Es gibt einundzwanzig Personen mit dem Namen Ann Lee."),
    ("fr", "Il y a une personne nommée Ann Lee.", "Il y a vingt et une personnes nommées Ann Lee."),
    ("it", "C'è una persona di nome Ann Lee.", "Ci sono ventuno persone di nome Ann Lee."),
])
def test_feminine_counts(language: str, one: str, twenty_one: str) -> None:
    cat = catalogue(language)
    assert cat.say("directory.namesakes", count=1, name="Ann Lee") == one
    assert cat.say("directory.namesakes", count=21, name="Ann Lee") == twenty_one


@pytest.mark.parametrize(("language", "expected"), [
    ("en", "New message 1 of 2. Received Thursday, December 24, at 2:30 PM, from plus 4 1."),
    ("de", "Neue Nachricht eins von zwei. Empfangen am Donnerstag, dem vierundzwanzigsten Dezember "
           "um vierzehn Uhr dreissig, von plus 4 1."),
    ("fr", "Nouveau message un sur deux. Reçu le jeudi vingt-quatre décembre à quatorze heures trente. "
           "Appelant : plus 4 1."),
    ("it", "Nuovo messaggio uno di due. Ricevuto giovedì ventiquattro dicembre alle quattordici e trenta, "
           "da più 4 1."),
])
def test_dates_and_times_are_spoken_in_words(language: str, expected: str) -> None:
    cat = catalogue(language)
    spoken_caller = f"{cat.say('phone.plus')} 4 1"
    assert cat.say("voicemail.access.header.new", index=1, total=2, received=EVE, caller=spoken_caller) == expected


@pytest.mark.parametrize(("language", "when", "expected"), [
    ("de", datetime(2026, 12, 1, 1, 0), "Dienstag, dem ersten Dezember um ein Uhr"),
    ("fr", datetime(2026, 12, 1, 1, 0), "mardi premier décembre à une heure"),
    ("fr", datetime(2026, 12, 1, 0, 5), "mardi premier décembre à zéro heure cinq"),
    ("it", datetime(2026, 12, 1, 21, 0), "martedì primo dicembre alle ventuno"),
    ("en", datetime(2026, 12, 1, 0, 0), "Tuesday, December 1, at 12:00 AM"),
])
def test_first_of_the_month_and_the_hour(language: str, when: datetime, expected: str) -> None:
    cat = catalogue(language)
    said = cat.say("voicemail.access.header.saved", index=1, total=1, received=when, caller="x")
    assert expected in said


def test_phone_numbers_are_spoken_digit_by_digit() -> None:
    assert catalogue("de").say("voicemail.leave.extension", number="+41 201") == "Nebenstelle plus 4 1 2 0 1"
    assert catalogue("it").say("directory.label.extension", name="Ann", extension="201") == "Ann all'interno 2 0 1"


def test_phrase_lists() -> None:
    assert "ja" in catalogue("de").phrases("speech.yes")
    assert "oui" in catalogue("fr").phrases("speech.yes")
    assert "sì" in catalogue("it").phrases("speech.yes")
    assert "no" in catalogue("it").phrases("speech.no")


def test_language_names() -> None:
    assert base_language("de_CH") == base_language("de-ch") == "de"
    assert known("fr-CH") and known("en-us") and not known("ru") and not known("")
    assert catalogue("ru").language == "en" and catalogue("").language == "en"
    assert catalogue("it-CH").language == "it"
    assert language_of_voice("de") == "de" and language_of_voice("en-gb") == "en"
    assert language_of_voice("mb-de1") == ""


def test_constant_texts_leave_out_sentences_with_placeholders() -> None:
    texts = catalogue("de").constant_texts()
    assert "Ihre Nachricht wurde gespeichert. Auf Wiederhören." in texts
    assert not [t for t in texts if "{" in t]


def test_unknown_message_and_wrong_kind() -> None:
    cat = catalogue("en")
    with pytest.raises(CatalogueError, match=r"^en.toml: no message 'voicemail.nope'$"):
        cat.say("voicemail.nope")
    with pytest.raises(CatalogueError, match=r"^speech.yes is a list of phrases, not a sentence$"):
        cat.say("speech.yes")
    with pytest.raises(CatalogueError, match=r"^common.not_an_option is a sentence, not a list of phrases$"):
        cat.phrases("common.not_an_option")


# --------------------------------------------------------------------------- broken catalogues


def _broken(tmp_path: Path, name: str, replace: tuple[str, str] | None = None, append: str = "") -> Path:
    text = (MESSAGES / "de.toml").read_text(encoding="utf-8")
    if replace is not None:
        assert replace[0] in text
        text = text.replace(replace[0], replace[1], 1)
    path = tmp_path / name
    path.write_text(text + append, encoding="utf-8")
    return path


def _check(path: Path) -> None:
    check_against(load(path), all_catalogues()["en"])


def test_a_missing_message_is_named(tmp_path: Path) -> None:
    path = _broken(tmp_path, "de.toml", ('goodbye = "Auf Wiederhören."\n', ""))
    with pytest.raises(CatalogueError) as err:
        _check(path)
    assert str(err.value) == "de.toml: missing message(s) voicemail.access.goodbye (see en.toml)"


def test_an_extra_message_is_named(tmp_path: Path) -> None:
    path = _broken(tmp_path, "de.toml", append='\n[extra]\nhello = "Hallo"\n')
    with pytest.raises(CatalogueError) as err:
        _check(path)
    assert str(err.value) == "de.toml: message(s) extra.hello are not in en.toml"


def test_a_wrong_placeholder_is_named(tmp_path: Path) -> None:
    path = _broken(tmp_path, "de.toml", ("Die Mailbox von {owner}", "Die Mailbox von {besitzer}"))
    with pytest.raises(CatalogueError) as err:
        _check(path)
    assert str(err.value) == "de.toml: voicemail.leave.full uses placeholders {besitzer}, en.toml uses {owner}"


def test_a_format_sentence_may_only_use_its_arguments(tmp_path: Path) -> None:
    path = _broken(tmp_path, "de.toml", ('"{hour:words-m} Uhr {minute:words}"', '"{stunde} Uhr"'))
    with pytest.raises(CatalogueError) as err:
        _check(path)
    assert str(err.value) == (
        "de.toml: format.time uses placeholders {stunde}; it can use {ampm, hour, hour12, minute, minute2}"
    )


@pytest.mark.parametrize(("old", "new", "message"), [
    ("Die Mailbox von {owner}", "Die Mailbox von {owner:fett}",
     "de.toml: voicemail.leave.full: placeholder {owner:fett}: unknown form 'fett'; "
     "use one of words, words-GENDER, ordinal, digits, date, time"),
    ("{count:words-f} neue Nachricht", "{count:words-n} neue Nachricht",
     "de.toml: voicemail.access.new_messages: placeholder {count:words-n}: no [numbers.n] rules in this catalogue"),
    ("Die Mailbox von {owner}", "Die Mailbox von {owner.name}",
     "de.toml: voicemail.leave.full: bad placeholder {owner.name} in 'Die Mailbox von {owner.name} ist leider "
     "voll. Auf Wiederhören.': use a plain name like {owner}"),
    ("Die Mailbox von {owner}", "Die Mailbox von {owner",
     "de.toml: voicemail.leave.full: expected '}' before end of string in 'Die Mailbox von {owner ist leider "
     "voll. Auf Wiederhören.' (write {{ and }} for a brace)"),
    ('"=0" = "keine neuen', '"few" = "keine neuen',
     "de.toml: voicemail.access.new_messages: plural form 'few' is none of one, other or =N"),
    ('locale = "de_CH"', 'locale = "xx_YY"', "de.toml: [meta] locale 'xx_YY' is not a locale Babel knows"),
    ('goodbye = "Auf Wiederhören."', "goodbye = 3",
     "de.toml: voicemail.access.goodbye must be a sentence, a plural table with 'other' or a list of phrases"),
])
def test_a_broken_entry_is_rejected_at_load(tmp_path: Path, old: str, new: str, message: str) -> None:
    path = _broken(tmp_path, "de.toml", (old, new))
    with pytest.raises(CatalogueError) as err:
        load(path)
    assert str(err.value) == message


def test_a_toml_syntax_error_names_the_file(tmp_path: Path) -> None:
    path = _broken(tmp_path, "de.toml", ("[common]", "[common"))
    with pytest.raises(CatalogueError, match=r"^de.toml: "):
        load(path)
