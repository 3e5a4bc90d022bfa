"""Directory sources: the CSV or TOML files that list the people callers can dial by name.

A directory file names each person once: display name, first and last name,
extension (or ring group), optional aliases, an optional recording of the
spoken name, a ``hidden`` flag (kept out of the directory dialogue but still
listed by the admin tools), a mailbox and a department used to tell apart
people with the same name.

CSV: a header row with the column names below (``display_name`` may be left
out: it defaults to "first last"); aliases are separated by ``;`` or ``|``.
TOML: an array of ``[[person]]`` tables with the same keys (aliases as a list).

``load_directory`` rejects what cannot be used (unreadable file, unknown
column, missing name or extension) with a :class:`DirectoryError` carrying
the line; ``check_directory`` reports what is suspicious but loadable
(duplicate entries, extensions the deployment does not define, recordings
that cannot be read).
"""

from __future__ import annotations

import csv
import io
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ivr.media.g2p import normalize_phrase

__all__ = ["DirectoryBook", "DirectoryError", "Person", "check_directory", "load_directory", "normalize_phrase"]

COLUMNS = (
    "display_name",
    "first_name",
    "last_name",
    "extension",
    "aliases",
    "name_recording",
    "hidden",
    "mailbox",
    "department",
)
_TRUE = {"1", "yes", "true", "y", "x", "hidden"}
_FALSE = {"", "0", "no", "false", "n"}
_EXTENSION = re.compile(r"[0-9A-Za-z_.+*#-]+")


class DirectoryError(Exception):
    """A directory file that cannot be used; ``line`` is 1-based (0: the file as a whole)."""

    def __init__(self, message: str, line: int = 0, path: Path | None = None) -> None:
        self.message = message
        self.line = line
        self.path = path
        where = f"{path}:{line}" if path and line else str(path) if path else f"line {line}"
        super().__init__(f"{where}: {message}")


@dataclass(frozen=True)
class Person:
    display_name: str
    first_name: str
    last_name: str
    extension: str
    aliases: tuple[str, ...] = ()
    name_recording: str | None = None
    hidden: bool = False
    mailbox: str | None = None
    department: str = ""
    line: int = field(default=0, compare=False)  # where the directory file lists this person (0: unknown)

    @property
    def spoken_names(self) -> tuple[str, ...]:
        """Every way a caller may say this person: display name, "first last", aliases."""
        names = [self.display_name, *self.aliases]
        squeezed = normalize_phrase(self.display_name).replace(" ", "")
        family_first = normalize_phrase(self.last_name + self.first_name).replace(" ", "")
        if squeezed != family_first:  # "김민준" is never said as "민준 김"
            names.insert(1, f"{self.first_name} {self.last_name}".strip())
        seen: dict[str, str] = {}
        for n in names:
            key = normalize_phrase(n)
            if key and key not in seen:
                seen[key] = n
        return tuple(seen)


@dataclass(frozen=True)
class DirectoryBook:
    name: str
    path: Path
    people: tuple[Person, ...]

    @property
    def visible(self) -> tuple[Person, ...]:
        return tuple(p for p in self.people if not p.hidden)


def load_directory(path: Path, *, name: str = "") -> DirectoryBook:
    """Read a CSV or TOML directory file; raises :class:`DirectoryError` naming file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise DirectoryError(f"cannot read directory file: {exc}", 0, path) from None
    if path.suffix.lower() == ".toml":
        rows = _toml_rows(text, path)
    else:
        rows = _csv_rows(text, path)
    people = tuple(_person(row, line, path) for line, row in rows)
    return DirectoryBook(name=name or path.stem, path=path, people=people)


def _csv_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    reader = csv.reader(io.StringIO(text))
    rows: list[tuple[int, dict[str, Any]]] = []
    header: list[str] | None = None
    for values in reader:
        line = reader.line_num
        if not any(v.strip() for v in values) or values[0].lstrip().startswith("#"):
            continue
        if header is None:
            header = [h.strip().lower().replace(" ", "_") for h in values]
            unknown = [h for h in header if h not in COLUMNS]
            if unknown:
                raise DirectoryError(
                    f"unknown column(s) {', '.join(unknown)}; known: {', '.join(COLUMNS)}", line, path
                )
            continue
        if len(values) > len(header):
            raise DirectoryError(f"{len(values)} fields but the header has {len(header)}", line, path)
        rows.append((line, dict(zip(header, (v.strip() for v in values), strict=False))))
    if header is None:
        raise DirectoryError("empty directory file (no header row)", 0, path)
    return rows


def _toml_rows(text: str, path: Path) -> list[tuple[int, dict[str, Any]]]:
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        line = int(m.group(1)) if (m := re.search(r"line (\d+)", str(exc))) else 0
        raise DirectoryError(f"invalid TOML: {exc}", line, path) from None
    people = raw.get("person", raw.get("people", []))
    if not isinstance(people, list) or not all(isinstance(p, dict) for p in people):
        raise DirectoryError("expected an array of [[person]] tables", 0, path)
    lines = [i + 1 for i, ln in enumerate(text.splitlines()) if re.match(r"\s*\[\[\s*(person|people)\s*\]\]", ln)]
    rows = []
    for i, p in enumerate(people):
        unknown = sorted(set(p) - set(COLUMNS))
        line = lines[i] if i < len(lines) else 0
        if unknown:
            raise DirectoryError(f"unknown key(s) {', '.join(unknown)}", line, path)
        rows.append((line, p))
    return rows


def _text(row: dict[str, Any], key: str, line: int, path: Path) -> str:
    value = row.get(key, "")
    if value is None:
        return ""
    if isinstance(value, bool) or not isinstance(value, str | int):
        raise DirectoryError(f"{key} must be text, got {value!r}", line, path)
    return str(value).strip()


def _aliases(value: Any, line: int, path: Path) -> tuple[str, ...]:
    if isinstance(value, str):
        items = re.split(r"[;|]", value)
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        items = value
    elif value is None:
        items = []
    else:
        raise DirectoryError(f"aliases must be text or a list of text, got {value!r}", line, path)
    return tuple(a.strip() for a in items if a.strip())


def _flag(value: Any, line: int, path: Path) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value if value is not None else "").strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise DirectoryError(f"hidden must be yes/no, got {value!r}", line, path)


def _person(row: dict[str, Any], line: int, path: Path) -> Person:
    first = _text(row, "first_name", line, path)
    last = _text(row, "last_name", line, path)
    display = _text(row, "display_name", line, path) or f"{first} {last}".strip()
    if not display or not (first or last):
        raise DirectoryError("a person needs a first_name or last_name", line, path)
    if not normalize_phrase(display):
        raise DirectoryError(f"display name {display!r} has no letters", line, path)
    extension = _text(row, "extension", line, path)
    if not extension:
        raise DirectoryError(f"{display}: missing extension", line, path)
    if not _EXTENSION.fullmatch(extension):
        raise DirectoryError(f"{display}: invalid extension {extension!r}", line, path)
    recording = _text(row, "name_recording", line, path) or None
    return Person(
        display_name=display,
        first_name=first,
        last_name=last,
        extension=extension,
        aliases=_aliases(row.get("aliases"), line, path),
        name_recording=recording,
        hidden=_flag(row.get("hidden"), line, path),
        mailbox=_text(row, "mailbox", line, path) or None,
        department=_text(row, "department", line, path),
        line=line,
    )


def check_directory(book: DirectoryBook, *, extensions: set[str] | None) -> list[str]:
    """Problems worth an admin's attention; empty when the directory is fine.

    ``extensions`` is the set the deployment and flow can reach (extensions and ring groups);
    ``None`` skips that check.  Recordings are resolved against the directory file's folder.
    """
    problems: list[str] = []
    where = str(book.path)
    seen: dict[tuple[str, str], Person] = {}
    for p in book.people:
        key = (normalize_phrase(p.display_name), p.extension)
        if key in seen:
            problems.append(f"{where}: {p.display_name} ({p.extension}) is listed twice")
        seen[key] = p
        if extensions is not None and p.extension not in extensions:
            problems.append(f"{where}: {p.display_name}: extension {p.extension} is not defined")
        if p.name_recording and not _readable(book.path.parent / p.name_recording):
            problems.append(f"{where}: {p.display_name}: cannot read name recording {p.name_recording}")
    problems.extend(_ambiguous(book, where))
    return problems


def _ambiguous(book: DirectoryBook, where: str) -> list[str]:
    """Same spoken name, same department: callers cannot be asked to choose between them."""
    groups: dict[tuple[str, str], list[Person]] = {}
    for p in book.visible:
        groups.setdefault((normalize_phrase(p.display_name), p.department.lower()), []).append(p)
    return [
        f"{where}: {ps[0].display_name} appears {len(ps)} times with the same department"
        f" ({', '.join(p.extension for p in ps)}): add a department to tell them apart"
        for ps in groups.values()
        if len({p.extension for p in ps}) > 1
    ]


def _readable(path: Path) -> bool:
    try:
        with path.open("rb") as f:
            return len(f.read(12)) == 12
    except OSError:
        return False
