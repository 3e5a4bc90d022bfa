"""The dial-by-name directories in the console: list their people, add, rename or remove one (admins).

A directory is found the way the server finds it: a ``directory NAME from "file"`` line of the
flows it runs (:meth:`ivr.web.state.Console.flow_files`), the file relative to that flow file.  A request
names the directory and a person by the line the file lists them on (what ``ivr check`` shows as
``file:line``), never a path.  Only CSV files are edited (a TOML directory is listed, and
refused for changes with 409): a change replaces, deletes or appends that one line, so comments
and every other line stay as they were.

Every change is checked before it is written, with the checks ``ivr check`` applies: the
changed text is written to a hidden file beside the original, read by
:func:`~ivr.directory.source.load_directory` (a person needs a name and a valid extension), and
checked against the deployment by :func:`~ivr.runtime.deployment.check_directories` (the
extension, or a ring group of the flow, and the mailbox must exist).  A change with errors is
answered 422 with the diagnostics (``staff.csv:4:1: error: ...``) and nothing is written;
otherwise the file is replaced atomically and the server reloads with the reloader a flow's
deploy uses, so the next call's directory has the change.  Duplicates and namesakes nobody can
tell apart (``ivr directory list``) come back as warnings.  Changes run in the console's one
worker thread, so two of them never interleave.
"""

from __future__ import annotations

import csv
import io
import os
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ivr.directory.source import DirectoryError, Person, check_directory, load_directory
from ivr.dsl import ast
from ivr.dsl.errors import Diagnostic, SourcePos
from ivr.dsl.loader import read_sources
from ivr.runtime.atomic import write_text_atomically
from ivr.runtime.deployment import check_directories
from ivr.web import flows
from ivr.web.api import console_of
from ivr.web.pages import _lang, _table, csrf_field, h, render
from ivr.web.routes import ApiError, Route, json_body
from ivr.web.state import Console

API = "/api/v1"
TEXT = {"type": "string", "maxLength": 100, "pattern": r"[^\r\n]*"}
PERSON_BODY: dict[str, Any] = {"type": "object", "required": ["extension"], "properties": {
    "first_name": TEXT, "last_name": TEXT, "display_name": TEXT, "extension": TEXT, "mailbox": TEXT,
    "department": TEXT, "hidden": {"type": "boolean"},
    "aliases": {"type": "array", "maxItems": 20, "items": {"type": "string", "maxLength": 100,
                                                          "pattern": r"[^\r\n;|]*"}}}}


@dataclass(frozen=True)
class Found:
    """A directory the flows declare: its name, its file and the flows' items (for the checks)."""

    name: str
    path: Path
    source: ast.DirectorySource
    items: list[ast.Item]

    @property
    def editable(self) -> bool:
        return self.path.suffix.lower() != ".toml"


def directories(files: list[Path]) -> dict[str, Found]:
    """The directories of the flows in ``files``, by name (a worker thread's job: it parses the flows)."""
    items = read_sources(files).items
    found: dict[str, Found] = {}
    for item in items:
        if isinstance(item, ast.DirectorySource) and item.name not in found:
            path = (Path(item.pos.file).parent / item.path).resolve()
            found[item.name] = Found(item.name, path, item, items)
    return found


def _find(files: list[Path], name: str) -> Found:
    found = directories(files)
    if name not in found:
        raise ApiError(404, f"no directory {name!r} in the flows (directories: {', '.join(found) or 'none'})")
    return found[name]


def person_dict(p: Person) -> dict[str, Any]:
    return {"line": p.line, "display_name": p.display_name, "first_name": p.first_name, "last_name": p.last_name,
            "extension": p.extension, "mailbox": p.mailbox, "department": p.department,
            "aliases": list(p.aliases), "hidden": p.hidden}


def describe(files: list[Path]) -> list[dict[str, Any]]:
    out = []
    for d in directories(files).values():
        try:
            people, error = [person_dict(p) for p in load_directory(d.path, name=d.name).people], None
        except DirectoryError as exc:
            people, error = [], str(exc)
        out.append({"name": d.name, "file": d.path.name, "editable": d.editable, "people": people, "error": error})
    return out


# ------------------------------------------------------------------ changing the file


def _header(lines: list[str], path: Path) -> list[str]:
    for text in lines:
        values = next(csv.reader([text]), [])
        if any(v.strip() for v in values) and not values[0].lstrip().startswith("#"):
            return [v.strip().lower().replace(" ", "_") for v in values]
    raise ApiError(422, f"{path.name} has no header row")


def _row(person: dict[str, Any], header: list[str], path: Path) -> str:
    aliases = person.get("aliases") or ()
    if "display_name" in header and not person.get("display_name"):  # the loader's default, written out
        person = {**person, "display_name": f'{person.get("first_name", "")} {person.get("last_name", "")}'.strip()}
    values = {**person, "aliases": aliases if isinstance(aliases, str) else ";".join(aliases),
              "hidden": _hidden(person.get("hidden"), header)}
    missing = [k for k, v in person.items() if v not in (None, "", [], False) and k not in header]
    if missing:
        raise ApiError(400, f"{path.name} has no {', '.join(missing)} column (its columns: {', '.join(header)})")
    out = io.StringIO()
    csv.writer(out, lineterminator="").writerow([values.get(col) or "" for col in header])
    return out.getvalue()


def _hidden(value: Any, header: list[str]) -> str:
    """The ``hidden`` column: a body's true/false as yes/no, a line's own text kept."""
    if isinstance(value, str) and value:
        return value
    return "yes" if value else ("no" if "hidden" in header else "")


def changed_text(found: Found, line: int | None, person: dict[str, Any] | None) -> str:
    """The file's text with the person on ``line`` replaced (or removed: ``person`` None), or one added."""
    if not found.editable:
        raise ApiError(409, f"{found.path.name} is a TOML directory: only CSV directory files can be edited here")
    text = found.path.read_text(encoding="utf-8-sig")
    lines = text.splitlines()
    if line is not None:
        lines_of_people = {p.line for p in load_directory(found.path, name=found.name).people}
        if line not in lines_of_people:
            raise ApiError(404, f"nobody is listed on line {line} of {found.path.name}")
    header = _header(lines, found.path)
    if person is None:
        assert line is not None
        del lines[line - 1]
    elif line is None:
        lines.append(_row(person, header, found.path))
    else:  # the fields given replace the line's; the others (aliases, name_recording ...) stay
        was = dict(zip(header, next(csv.reader([lines[line - 1]]), []), strict=False))
        lines[line - 1] = _row({k: v for k, v in was.items() if v} | person, header, found.path)
    return "\n".join(lines) + "\n"


def check_text(console: Console, found: Found, text: str) -> list[dict[str, Any]]:
    """The diagnostics of the directory with ``text`` in its file: ``ivr check``'s, and the list's warnings."""
    fd, tmp = tempfile.mkstemp(prefix=f".{found.path.name}.", suffix=found.path.suffix, dir=found.path.parent)
    shown = {tmp: found.path.name, str(Path(tmp).resolve()): found.path.name}
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
        try:
            book = load_directory(Path(tmp), name=found.name)
        except DirectoryError as exc:
            bad = Diagnostic("error", exc.message, SourcePos(tmp, max(exc.line, 1), 1))
            return [flows.diagnostic_dict(bad, shown)]
        source = replace(found.source, path=os.path.relpath(tmp, Path(found.source.pos.file).parent))
        items = [source if i is found.source else i for i in found.items]
        diagnostics = [flows.diagnostic_dict(d, shown) for d in check_directories(items, console.config)]
        warnings = [{"severity": "warning", "text": p.replace(tmp, found.path.name)}
                    for p in check_directory(book, extensions=None)]
        return diagnostics + warnings
    finally:
        Path(tmp).unlink(missing_ok=True)


def apply_change(console: Console, files: list[Path], name: str, line: int | None,
                 person: dict[str, Any] | None) -> dict[str, Any]:
    """Check and write one change (a worker thread's job); ApiError 422 with the diagnostics on errors."""
    found = _find(files, name)
    text = changed_text(found, line, person)
    diagnostics = check_text(console, found, text)
    if any(d["severity"] == "error" for d in diagnostics):
        raise ApiError(422, f"{found.path.name}: not changed", diagnostics=diagnostics)
    write_text_atomically(found.path, text)
    return {"directory": name, "file": found.path.name, "diagnostics": diagnostics}


async def change(console: Console, name: str, line: int | None, person: dict[str, Any] | None) -> dict[str, Any]:
    """Apply a change and reload, so the next call's directory has it; the answer carries the reload's record."""
    result = await console.blocking(apply_change, console, await console.flow_files(), name, line, person)
    result["reload"] = await flows.reload(console)
    return result


# ------------------------------------------------------------------ the endpoints


def _line(request: web.Request) -> int:
    try:
        return int(request.match_info["line"])
    except ValueError:
        raise ApiError(400, "a person is named by the line of the file that lists them (a number)") from None


async def list_directories(request: web.Request) -> web.Response:
    console = console_of(request)
    return web.json_response({"directories": await console.blocking(describe, await console.flow_files())})


def _answer(result: dict[str, Any]) -> web.Response:
    return web.json_response(result, status=200 if result["reload"].get("event") == "reloaded" else 500)


async def add_person(request: web.Request) -> web.Response:
    person = await json_body(request, PERSON_BODY)
    return _answer(await change(console_of(request), request.match_info["name"], None, person))


async def edit_person(request: web.Request) -> web.Response:
    line = _line(request)
    person = await json_body(request, PERSON_BODY)
    return _answer(await change(console_of(request), request.match_info["name"], line, person))


async def remove_person(request: web.Request) -> web.Response:
    return _answer(await change(console_of(request), request.match_info["name"], _line(request), None))


# ------------------------------------------------------------------ the page

FIELDS = ("first_name", "last_name", "display_name", "extension", "mailbox", "department")


async def directory_page(request: web.Request) -> web.Response:
    t = _lang(request)
    console = console_of(request)
    books = await console.blocking(describe, await console.flow_files())
    notice = f'<p class=ok id=saved>{h(t["saved"])}</p>' if request.query.get("saved") else ""
    notice += "".join(f'<p class="error diag" id=error>{h(e)}</p>' for e in request.query.getall("error", []))
    parts = [f'<p>{h(t["directory_help"])}</p>', notice]
    for book in books:
        parts.append(f'<h2>{h(book["name"])} <small>({h(book["file"])})</small></h2>')
        if book["error"]:
            parts.append(f'<p class=error>{h(book["error"])}</p>')
        if not book["editable"]:
            rows = [[h(p[k] or "") for k in FIELDS] for p in book["people"]]
            parts.append(_table([t[k] for k in FIELDS], rows, t["none"]))
            continue
        parts.append(f'<p>{" · ".join(h(t[k]) for k in FIELDS)}</p>')
        parts += [_person_form(request, book["name"], p["line"], p, t) for p in book["people"]]
        parts.append(f'<h3>{h(t["add_person"])}</h3>' + _person_form(request, book["name"], None, {}, t))
    return render(request, "directory", "".join(parts))


def _person_form(request: web.Request, name: str, line: int | None, p: dict[str, Any], t: dict[str, str]) -> str:
    ident = f"{name}-{line if line is not None else 'new'}"
    action = f"/console/directory/{name}" + (f"/{line}" if line is not None else "")
    inputs = "".join(f'<input name={k} id="{h(ident)}-{k}" value="{h(p.get(k) or "")}" placeholder="{h(t[k])}" '
                     f'size=12> ' for k in FIELDS)
    remove = (f'<button name=action value=remove id="{h(ident)}-remove">{h(t["delete"])}</button>'
              if line is not None else "")
    return (f'<form class=person method=post action="{h(action)}">{csrf_field(request)}{inputs}'
            f'<button name=action value=save id="{h(ident)}-save">{h(t["save"])}</button> {remove}</form>')


async def directory_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    line = _line(request) if "line" in request.match_info else None
    person = None if form.get("action") == "remove" else {k: str(form.get(k, "")).strip() for k in FIELDS}
    try:
        await change(console_of(request), request.match_info["name"], line, person)
    except ApiError as exc:
        errors = [d["text"] for d in exc.extra.get("diagnostics", []) if d["severity"] == "error"] or [str(exc)]
        raise web.HTTPSeeOther("/directory?" + urlencode([("error", e) for e in errors])) from None
    raise web.HTTPSeeOther("/directory?saved=1")


RESULT = {"type": "object", "properties": {"directory": {"type": "string"}, "file": {"type": "string"},
                                           "diagnostics": {"type": "array"}, "reload": {"type": "object"}}}
PEOPLE = f"{API}/directories/{{name}}/people"
ROUTES: tuple[Route, ...] = (
    Route("GET", f"{API}/directories", list_directories, "the flows' directories and their people (each with the "
          "line of the file that lists them)", "admin", "directory"),
    Route("POST", PEOPLE, add_person, "add a person to a CSV directory: checked as ivr check does (422 with the "
          "diagnostics, nothing written), written, reloaded", "admin", "directory", body=PERSON_BODY,
          response=RESULT),
    Route("PUT", f"{PEOPLE}/{{line}}", edit_person, "change (rename) the person on that line: checked, written, "
          "reloaded", "admin", "directory", body=PERSON_BODY, response=RESULT),
    Route("DELETE", f"{PEOPLE}/{{line}}", remove_person, "remove the person on that line, and reload", "admin",
          "directory", response=RESULT),
)
PAGES: tuple[Route, ...] = (
    Route("GET", "/directory", directory_page, "the directories", "admin", "pages"),
    Route("POST", "/console/directory/{name}", directory_submit, "add a person", "admin", "pages"),
    Route("POST", "/console/directory/{name}/{line}", directory_submit, "change or remove a person", "admin", "pages"),
)
