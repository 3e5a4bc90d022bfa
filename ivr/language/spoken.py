"""How a value in a catalogue sentence is spoken: numbers, phone numbers, dates and times.

A placeholder's spec (``{count:words}``) picks the form:

=================  ==========================================================================
(none)             the value as written (``2``, a name)
``words``          the number in words, by num2words (``einundzwanzig``, ``ventuno``)
``words-f``        ... its gendered form before a noun (``une``, ``eine``): num2words has no
``words-m``        genders, so the catalogue's ``[numbers.f]`` / ``[numbers.m]`` rules (regular
                   expression -> replacement, applied in order) turn its output into them
``ordinal``        the ordinal in words (``vierundzwanzigste``)
``digits``         a phone number digit by digit, ``+`` as the catalogue's ``phone.plus``
``date``           a datetime as the catalogue's ``format.date`` sentence, which gets ``weekday``
                   and ``month`` (names from Babel's CLDR data) and ``day``:
                   ``{weekday} {day:words} {month}`` -> ``jeudi vingt-quatre décembre``
``time``           a datetime as the catalogue's ``format.time`` sentence (``format.time_on_the_hour``
                   at minute 0), which gets ``hour``, ``hour12``, ``minute``, ``minute2`` (two
                   digits) and ``ampm``: ``{hour:words} Uhr {minute:words}``
=================  ==========================================================================

num2words is used because it spells cardinals and ordinals in all four languages with their
irregular forms ("vingt et un", "ventuno"), which a hand-written table would get wrong.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from datetime import datetime
from typing import Any, Protocol

from babel import Locale
from num2words import num2words

SPECS = ("", "words", "ordinal", "digits", "date", "time")
# The sentences this module fills and the arguments it gives them: a language uses any of them.
ARGUMENTS = {
    "format.date": frozenset({"weekday", "month", "day"}),
    "format.time": frozenset({"hour", "hour12", "minute", "minute2", "ampm"}),
    "format.time_on_the_hour": frozenset({"hour", "hour12", "minute", "minute2", "ampm"}),
}


class Language(Protocol):
    """What a spoken form needs of its catalogue (:class:`ivr.language.catalogue.Catalogue`)."""

    @property
    def language(self) -> str: ...

    @property
    def locale(self) -> str: ...

    @property
    def genders(self) -> Mapping[str, Mapping[str, str]]: ...

    def say(self, message: str, /, **args: Any) -> str: ...


def check_spec(spec: str, genders: Mapping[str, Mapping[str, str]]) -> str:
    """Why ``spec`` cannot be used in a catalogue with these gender rules ("" when it can)."""
    if spec in SPECS:
        return ""
    if spec.startswith("words-"):
        gender = spec.removeprefix("words-")
        return "" if gender in genders else f"no [numbers.{gender}] rules in this catalogue"
    return f"unknown form {spec!r}; use one of words, words-GENDER, ordinal, digits, date, time"


def render(value: Any, spec: str, lang: Language) -> str:
    if spec == "":
        return str(value)
    if spec == "digits":
        return digits(str(value), lang)
    if spec == "date":
        return date(_datetime(value), lang)
    if spec == "time":
        return time(_datetime(value), lang)
    if spec == "ordinal":
        return str(num2words(int(value), lang=lang.language, to="ordinal"))
    return words(int(value), lang, spec.removeprefix("words").removeprefix("-"))


def words(n: int, lang: Language, gender: str = "") -> str:
    """``n`` as a cardinal in words, in ``gender`` (a key of the catalogue's ``[numbers]``) if given."""
    text = str(num2words(n, lang=lang.language))
    for pattern, replacement in lang.genders.get(gender, {}).items():
        text = re.sub(pattern, replacement, text)
    return text


def digits(number: str, lang: Language) -> str:
    """``+41 79`` -> "plus 4 1 7 9" in the language's word for plus."""
    out = [lang.say("phone.plus")] if number.startswith("+") else []
    return " ".join(out + [c for c in number if c.isdigit()])


def date(t: datetime, lang: Language) -> str:
    names = Locale.parse(lang.locale)
    weekday = names.days["format"]["wide"][t.weekday()]
    month = names.months["format"]["wide"][t.month]
    return lang.say("format.date", weekday=weekday, month=month, day=t.day)


def time(t: datetime, lang: Language) -> str:
    message = "format.time_on_the_hour" if t.minute == 0 else "format.time"
    ampm = Locale.parse(lang.locale).day_periods["format"]["abbreviated"]["am" if t.hour < 12 else "pm"]
    return lang.say(
        message, hour=t.hour, hour12=(t.hour % 12) or 12, minute=t.minute, minute2=f"{t.minute:02d}", ampm=ampm
    )


def _datetime(value: Any) -> datetime:
    if not isinstance(value, datetime):
        raise TypeError(f"a date or time placeholder needs a datetime, got {value!r}")
    return value
