"""The languages ivr speaks: one message catalogue per language, numbers, dates and times.

Every sentence a caller hears from ivr itself (voicemail, the directory, spoken numbers and
dates) comes from the catalogue of the call's language (docs/languages.md).  The package sits
beside ``ivr.media``: it knows no flows, wire, runtime or deployment file; the runtime,
voicemail and the directory ask it for sentences.

* :func:`catalogue` is the catalogue of a language name (``de``, ``de-ch``, ``fr_CH``); a
  language without one gets English;
* :func:`languages` lists the shipped languages, :func:`known` says whether a name has one;
* :func:`language_of_voice` is the language of a TTS voice name (``de``, ``en-us``).

Every catalogue is loaded and checked against English on first use (:mod:`.catalogue`).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from pathlib import Path
from typing import Any, TypeVar

from ivr.language.catalogue import (
    MESSAGES,
    REFERENCE,
    Catalogue,
    CatalogueError,
    check_against,
    load,
)

T = TypeVar("T")

__all__ = [
    "Catalogue",
    "CatalogueError",
    "all_catalogues",
    "base_language",
    "catalogue",
    "known",
    "language_of_voice",
    "languages",
]


@cache
def all_catalogues() -> dict[str, Catalogue]:
    """Every shipped catalogue by language, each checked against English; CatalogueError if one is broken."""
    found: dict[str, Catalogue] = {}
    for path in sorted(MESSAGES.glob("*.toml")):
        found[path.stem] = _blaming(path, load, path)
    reference = found[REFERENCE]
    for cat in found.values():
        _blaming(cat.path, check_against, cat, reference)
    return found


def _blaming(path: Path, step: Callable[..., T], *args: Any) -> T:
    """``step(*args)``, its CatalogueError naming ``path`` as the file to fix."""
    try:
        return step(*args)
    except CatalogueError as exc:
        raise CatalogueError(str(exc), path) from None


def languages() -> tuple[str, ...]:
    return tuple(all_catalogues())


def base_language(name: str) -> str:
    """``de-CH``, ``de_ch`` -> ``de``; the primary language subtag, lower case."""
    return name.strip().lower().replace("_", "-").split("-")[0]


def known(name: str) -> bool:
    """Whether ivr has a catalogue for the language ``name``."""
    return bool(name) and base_language(name) in all_catalogues()


def catalogue(name: str) -> Catalogue:
    """The catalogue of language ``name``; English when ``name`` is empty or has none."""
    found = all_catalogues()
    return found.get(base_language(name or REFERENCE), found[REFERENCE])


def language_of_voice(voice: str) -> str:
    """The language a TTS voice name speaks when it names one ivr knows (``de`` -> ``de``), else ""."""
    return base_language(voice) if known(voice) else ""
