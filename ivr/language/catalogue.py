"""The message catalogue of one language: every sentence ivr says that the admin did not write.

A catalogue is a TOML file per language in ``ivr/language/messages/`` (``en.toml``, ``de.toml``,
...).  Its tables nest message ids (``[voicemail] saved_goodbye = "..."`` is the message
``voicemail.saved_goodbye``); a value is one of

* a **template**: a string with ``{placeholders}`` (``"Sorry, the mailbox of {owner} is full."``),
  an optional spec after a colon saying how a value is spoken (:mod:`ivr.language.spoken`);
* a **plural** message: a table with an ``other`` key and any of the language's CLDR plural
  categories (``one``, ``few``, ``many``...) or exact numbers (``"=0"``), chosen by Babel's plural
  rule on the argument named by ``by`` (default ``count``);
* a **phrase list**: a list of strings (the words a caller may say for "yes").

Two tables are not messages: ``[meta]`` (``name``, the Babel ``locale`` of dates, ``replace``:
spelling fixed after formatting, e.g. no "ß" in Swiss German) and ``[numbers]`` (suffix rules
for the gendered forms of num2words' output).

Every catalogue is checked when it loads, against English, which defines the ids: a missing or
extra id, a placeholder that is not English's, an unknown spec or plural category is a
:class:`CatalogueError` naming the file, the id and what to fix.  Nothing is checked during a
call.
"""

from __future__ import annotations

import re
import string
import tomllib
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from babel import Locale

from ivr.language import spoken

MESSAGES = Path(__file__).resolve().parent / "messages"
REFERENCE = "en"  # the catalogue that defines the ids and their placeholders
NOT_MESSAGES = ("meta", "numbers")
CATEGORIES = ("zero", "one", "two", "few", "many", "other")
_EXACT = re.compile(r"=\d+")
_FORMATTER = string.Formatter()


class CatalogueError(Exception):
    """A catalogue file that cannot be used; the message names the file and the message id."""

    def __init__(self, message: str, path: Path | None = None) -> None:
        super().__init__(message)
        self.path = path  # the catalogue file, when one is to blame


@dataclass(frozen=True)
class Plural:
    """A message with one form per plural category or exact number, chosen on argument ``by``."""

    forms: Mapping[str, str]
    by: str = "count"


Entry = str | Plural | tuple[str, ...]


@dataclass(frozen=True)
class Catalogue:
    """The messages of one language, checked, ready to format."""

    language: str
    path: Path
    entries: Mapping[str, Entry]
    name: str = ""
    locale: str = "en"
    replace: Mapping[str, str] = field(default_factory=dict)
    genders: Mapping[str, Mapping[str, str]] = field(default_factory=dict)

    def ids(self) -> list[str]:
        return sorted(self.entries)

    def say(self, message: str, /, **args: Any) -> str:
        """The sentence ``message`` with ``args`` filled in, spoken the way this language says them."""
        entry = self._entry(message)
        if isinstance(entry, tuple):
            raise CatalogueError(f"{message} is a list of phrases, not a sentence")
        template = entry if isinstance(entry, str) else self._form(entry, args)
        return self.finish(self.fill(template, args))

    def phrases(self, message: str) -> tuple[str, ...]:
        """The phrase list ``message`` (e.g. ``speech.yes``)."""
        entry = self._entry(message)
        if not isinstance(entry, tuple):
            raise CatalogueError(f"{message} is a sentence, not a list of phrases")
        return entry

    def constant(self, message: str) -> bool:
        """Whether ``message`` is a sentence without placeholders (the same text on every call)."""
        entry = self.entries.get(message)
        return isinstance(entry, str) and not placeholders(entry)

    def constant_texts(self) -> list[str]:
        """Every sentence without placeholders, for rendering ahead of calls."""
        return [self.say(m) for m in self.ids() if self.constant(m)]

    # ------------------------------------------------------------------ formatting

    def fill(self, template: str, args: Mapping[str, Any]) -> str:
        out = []
        for literal, name, spec, _conv in _FORMATTER.parse(template):
            out.append(literal)
            if name is not None:
                out.append(spoken.render(args[name], spec or "", self))
        return "".join(out)

    def finish(self, text: str) -> str:
        for old, new in self.replace.items():
            text = text.replace(old, new)
        return text

    def _entry(self, message: str) -> Entry:
        try:
            return self.entries[message]
        except KeyError:
            raise CatalogueError(f"{self.path.name}: no message {message!r}") from None

    def _form(self, plural: Plural, args: Mapping[str, Any]) -> str:
        n = int(args[plural.by])
        exact = plural.forms.get(f"={n}")
        if exact is not None:
            return exact
        return plural.forms.get(Locale.parse(self.locale).plural_form(n), plural.forms["other"])


# --------------------------------------------------------------------------- loading


def placeholders(template: str) -> set[str]:
    return {name for _lit, name, _spec, _conv in _FORMATTER.parse(template) if name is not None}


def entry_placeholders(entry: Entry) -> set[str]:
    if isinstance(entry, str):
        return placeholders(entry)
    if isinstance(entry, Plural):
        return {entry.by}.union(*(placeholders(f) for f in entry.forms.values()))
    return set()


def load(path: Path) -> Catalogue:
    """Read and check one catalogue file on its own (the cross-language check is :func:`check_against`)."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError) as exc:
        raise CatalogueError(f"{path.name}: {exc}") from None
    meta = _table(raw.get("meta", {}), path, "meta")
    numbers = _table(raw.get("numbers", {}), path, "numbers")
    catalogue = Catalogue(
        language=path.stem,
        path=path,
        entries=dict(_entries(raw, path)),
        name=str(meta.get("name", path.stem)),
        locale=str(meta.get("locale", path.stem)),
        replace={str(k): str(v) for k, v in _table(meta.get("replace", {}), path, "meta.replace").items()},
        genders={g: {str(k): str(v) for k, v in _table(rules, path, f"numbers.{g}").items()} for g, rules in numbers.items()},
    )
    _check_locale(catalogue)
    for message, entry in catalogue.entries.items():
        _check_entry(catalogue, message, entry)
    return catalogue


def check_against(catalogue: Catalogue, reference: Catalogue) -> None:
    """Every id of ``reference`` present in ``catalogue``, none extra, with the same placeholders
    (the ``format.*`` sentences: any of the arguments :mod:`ivr.language.spoken` gives them)."""
    where = catalogue.path.name
    missing = sorted(set(reference.entries) - set(catalogue.entries))
    if missing:
        raise CatalogueError(f"{where}: missing message(s) {', '.join(missing)} (see {reference.path.name})")
    extra = sorted(set(catalogue.entries) - set(reference.entries))
    if extra:
        raise CatalogueError(f"{where}: message(s) {', '.join(extra)} are not in {reference.path.name}")
    for message, entry in catalogue.entries.items():
        want, got = entry_placeholders(reference.entries[message]), entry_placeholders(entry)
        if message in spoken.ARGUMENTS:
            _check_arguments(catalogue, message, got)
        elif want != got:
            raise CatalogueError(
                f"{where}: {message} uses placeholders {_names(got)}, {reference.path.name} uses {_names(want)}"
            )
        if isinstance(entry, tuple) != isinstance(reference.entries[message], tuple):
            raise CatalogueError(f"{where}: {message} must be a list of phrases as in {reference.path.name}")


def _check_arguments(catalogue: Catalogue, message: str, got: set[str]) -> None:
    """A sentence ivr.language.spoken fills: any of the arguments it gives, no other."""
    allowed = spoken.ARGUMENTS[message]
    if not got <= allowed:
        raise CatalogueError(
            f"{catalogue.path.name}: {message} uses placeholders {_names(got - allowed)}; "
            f"it can use {_names(set(allowed))}"
        )


def _names(names: set[str]) -> str:
    return "{" + ", ".join(sorted(names)) + "}" if names else "none"


def _table(value: Any, path: Path, name: str) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise CatalogueError(f"{path.name}: [{name}] must be a table")
    return value


def _entries(raw: Mapping[str, Any], path: Path, prefix: str = "") -> Iterator[tuple[str, Entry]]:
    for key, value in raw.items():
        message = f"{prefix}{key}"
        if not prefix and key in NOT_MESSAGES:
            continue
        if isinstance(value, str):
            yield message, value
        elif isinstance(value, list) and value and all(isinstance(v, str) and v.strip() for v in value):
            yield message, tuple(value)
        elif isinstance(value, dict) and "other" in value:
            yield message, _plural(value, path, message)
        elif isinstance(value, dict):
            yield from _entries(value, path, f"{message}.")
        else:
            raise CatalogueError(
                f"{path.name}: {message} must be a sentence, a plural table with 'other' or a list of phrases"
            )


def _plural(value: Mapping[str, Any], path: Path, message: str) -> Plural:
    forms = {k: v for k, v in value.items() if k != "by"}
    by = value.get("by", "count")
    if not all(isinstance(v, str) for v in forms.values()) or not isinstance(by, str):
        raise CatalogueError(f"{path.name}: {message}: every plural form must be a sentence")
    return Plural(forms, by)


def _check_locale(catalogue: Catalogue) -> None:
    try:
        Locale.parse(catalogue.locale)
    except Exception:  # noqa: BLE001 -- babel raises several kinds for a bad name
        raise CatalogueError(f"{catalogue.path.name}: [meta] locale {catalogue.locale!r} is not a locale Babel knows") from None


def _check_entry(catalogue: Catalogue, message: str, entry: Entry) -> None:
    where = f"{catalogue.path.name}: {message}"
    templates = [entry] if isinstance(entry, str) else list(entry.forms.values()) if isinstance(entry, Plural) else []
    for template in templates:
        _check_template(catalogue, where, template)
    if isinstance(entry, Plural):
        tags = Locale.parse(catalogue.locale).plural_form.tags | {"other"}
        for form in entry.forms:
            if form not in tags and not _EXACT.fullmatch(form):
                known = ", ".join(t for t in CATEGORIES if t in tags)
                raise CatalogueError(f"{where}: plural form {form!r} is none of {known} or =N")


def _check_template(catalogue: Catalogue, where: str, template: str) -> None:
    try:
        fields = list(_FORMATTER.parse(template))
    except ValueError as exc:
        raise CatalogueError(f"{where}: {exc} in {template!r} (write {{{{ and }}}} for a brace)") from None
    for _lit, name, spec, conv in fields:
        if name is None:
            continue
        if not name.isidentifier() or conv:
            raise CatalogueError(f"{where}: bad placeholder {{{name}}} in {template!r}: use a plain name like {{owner}}")
        problem = spoken.check_spec(spec or "", catalogue.genders)
        if problem:
            raise CatalogueError(f"{where}: placeholder {{{name}:{spec}}}: {problem}")
