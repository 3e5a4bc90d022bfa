"""The endpoints of the JSON API (``/api/v1/``) and their route table, :data:`ROUTES`.

Admins reach everything; a user reaches their own extension, mailbox and forwarding (and the
calls to their extension), and a request for anyone else's gets 403.  Changes go through the
runtime's own functions: switches through :mod:`ivr.runtime.switches` (as ``ivr switch``),
forwarding through :mod:`ivr.runtime.forwarding`, voicemail through a
:class:`~ivr.voicemail.store.VoicemailStore` on the deployment's storage, all in this process;
what changes a live call (hang up, transfer, click-to-call) is asked of ``ivr serve`` over the
control socket (:mod:`ivr.runtime.control`), which applies the phone's own dial plan.
"""

from __future__ import annotations

import csv
import io
from typing import Any

from aiohttp import web

from ivr.runtime.forwarding import (
    ForwardingError,
    check_follow_me,
    check_number,
    read_pikett,
    write_follow_me,
    write_pikett,
)
from ivr.runtime.journal import JournalRow, parse_since
from ivr.runtime.switches import SwitchError, declared_switches, switch_positions
from ivr.web import flows
from ivr.web.routes import ApiError, Param, Route, json_body
from ivr.web.state import CONSOLE, Console
from ivr.web.users import WebUser

API = "/api/v1"
JOURNAL_LIMIT = 1000


def user_of(request: web.Request) -> WebUser:
    user = request.get("user")
    assert isinstance(user, WebUser), "the guard lets no anonymous request reach a protected handler"
    return user


def console_of(request: web.Request) -> Console:
    return request.app[CONSOLE]


# ------------------------------------------------------------------ who am I


async def me(request: web.Request) -> web.Response:
    return web.json_response(user_of(request).as_dict())


# ------------------------------------------------------------------ calls now


async def list_calls(request: web.Request) -> web.Response:
    return web.json_response(await console_of(request).ask("calls"))


CLICK_BODY = {"type": "object", "required": ["from", "to"], "properties": {
    "from": {"type": "string", "maxLength": 40}, "to": {"type": "string", "maxLength": 40}}}


async def click_to_call(request: web.Request) -> web.Response:
    """Ring the user's phone; when it answers, dial ``to`` (an extension, or a number out through a
    trunk when the extension may call out: the server applies the phone's dial plan)."""
    console, user = console_of(request), user_of(request)
    body = await json_body(request, CLICK_BODY)
    if console.config.extension(body["from"]) is None:
        raise ApiError(404, f"no extension {body['from']!r}")
    if not user.owns_extension(body["from"]):
        raise ApiError(403, f"extension {body['from']} is not yours")
    return web.json_response(await console.ask("click_to_call", **{"from": body["from"], "to": body["to"]}))


async def get_call(request: web.Request) -> web.Response:
    return web.json_response(await console_of(request).ask("call", call_id=request.match_info["call_id"]))


async def hang_up(request: web.Request) -> web.Response:
    return web.json_response(await console_of(request).ask("hangup", call_id=request.match_info["call_id"]))


TRANSFER_BODY = {"type": "object", "required": ["to"], "properties": {"to": {"type": "string", "maxLength": 40}}}


async def transfer_to(console: Console, user: WebUser, call_id: str, target: str) -> dict[str, Any]:
    """Transfer a live call to an extension: an admin any call, a user the calls to their extension."""
    if not user.admin:
        call = await console.ask("call", call_id=call_id)
        if call["called"] != user.extension:
            raise ApiError(403, f"call {call_id} is not to your extension")
    return dict(await console.ask("transfer", call_id=call_id, to=target))


async def transfer(request: web.Request) -> web.Response:
    body = await json_body(request, TRANSFER_BODY)
    result = await transfer_to(console_of(request), user_of(request), request.match_info["call_id"], body["to"])
    return web.json_response(result)


# ------------------------------------------------------------------ the journal

JOURNAL_QUERY = (
    Param("since", "an age (2h, 30m, 7d) or an ISO date/time (UTC), as ivr calls --since"),
    Param("caller", "only calls whose caller contains this"),
    Param("outcome", "only calls with this outcome (transferred, voicemail, hangup ...)"),
    Param("limit", f"at most this many calls (default 50, at most {JOURNAL_LIMIT})", "integer"),
)


async def _journal_rows(request: web.Request) -> list[JournalRow]:
    q = request.query
    try:
        since = parse_since(q["since"]) if q.get("since") else None
        limit = int(q.get("limit", "50"))
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None
    if not 0 <= limit <= JOURNAL_LIMIT:
        raise ApiError(400, f"limit must be 0 to {JOURNAL_LIMIT}")
    console = console_of(request)
    return await console.blocking(
        lambda: console.journal.query(since=since, caller=q.get("caller"), outcome=q.get("outcome"), limit=limit)
    )


async def journal(request: web.Request) -> web.Response:
    rows = await _journal_rows(request)
    return web.json_response({"calls": [dict(r.as_dict(), summary=r.describe()) for r in rows]})


CSV_FIELDS = ("call_id", "started", "answered", "ended", "caller", "called", "outcome", "detail", "step",
              "duration", "hangup_cause", "path")


async def journal_csv(request: web.Request) -> web.Response:
    rows = await _journal_rows(request)
    out = io.StringIO()
    writer = csv.DictWriter(out, CSV_FIELDS, extrasaction="ignore")
    writer.writeheader()
    for row in rows:
        record = row.as_dict()
        record["path"] = " ".join(record.get("path") or ())
        writer.writerow(record)
    return web.Response(text=out.getvalue(), content_type="text/csv",
                        headers={"Content-Disposition": 'attachment; filename="calls.csv"'})


# ------------------------------------------------------------------ switches


async def list_switches(request: web.Request) -> web.Response:
    console = console_of(request)
    files = await console.flow_files()
    declared = await console.blocking(declared_switches, files)
    try:
        read = switch_positions(console.data, console.storage)[0]
        positions = dict.fromkeys(declared or (), False) | await console.blocking(read)
    except SwitchError as exc:
        raise ApiError(500, str(exc)) from None
    return web.json_response({"switches": positions})


SWITCH_BODY = {"type": "object", "properties": {"on": {"type": "boolean"}}, "required": ["on"]}


async def flip_switch(console: Console, name: str, on: bool) -> dict[str, bool]:
    """Set a declared switch with the module ``ivr switch`` uses; all positions."""
    files = await console.flow_files()
    declared = await console.blocking(declared_switches, files)
    if declared is not None and name not in declared:
        raise ApiError(404, f"no flow declares switch {name!r} (declared: {', '.join(declared) or 'none'})")
    try:
        write = switch_positions(console.data, console.storage)[1]
        return await console.blocking(write, name, on)
    except SwitchError as exc:
        raise ApiError(400, str(exc)) from None


async def set_switch(request: web.Request) -> web.Response:
    body = await json_body(request, SWITCH_BODY)
    positions = await flip_switch(console_of(request), request.match_info["name"], body["on"])
    return web.json_response({"switches": positions})


# ------------------------------------------------------------------ mailboxes


def _box(request: web.Request) -> str:
    box = request.match_info["box"]
    if console_of(request).config.mailbox(box) is None:
        raise ApiError(404, f"no mailbox {box!r}")
    if not user_of(request).owns_mailbox(box):
        raise ApiError(403, f"mailbox {box} is not yours")
    return box


async def list_mailboxes(request: web.Request) -> web.Response:
    console, user = console_of(request), user_of(request)
    store = console.voicemail_store
    boxes = [m for m in console.config.mailboxes if user.owns_mailbox(m.number)]
    counts = await console.blocking(lambda: [store.counts(m.number) for m in boxes])
    return web.json_response({"mailboxes": [
        {"number": m.number, "owner": m.owner, "new": c.new, "saved": c.saved} for m, c in zip(boxes, counts, strict=True)
    ]})


def _message_dict(message: Any) -> dict[str, Any]:
    return {"id": message.id, "caller": message.caller, "received_at": message.received_at,
            "duration": round(message.duration, 1), "status": message.status}


async def list_messages(request: web.Request) -> web.Response:
    box = _box(request)
    store = console_of(request).voicemail_store
    messages = await console_of(request).blocking(store.list, box)
    return web.json_response({"mailbox": box, "messages": [_message_dict(m) for m in messages]})


async def _message(request: web.Request) -> Any:
    box = _box(request)
    try:
        message_id = int(request.match_info["id"])
    except ValueError:
        raise ApiError(400, "a message id is a number") from None
    store = console_of(request).voicemail_store
    message = await console_of(request).blocking(store.get, message_id)
    if message is None or message.mailbox != box:
        raise ApiError(404, f"no message {message_id} in mailbox {box}")
    return message


async def message_audio(request: web.Request) -> web.StreamResponse:
    message = await _message(request)
    store = console_of(request).voicemail_store
    path = message.path.resolve()
    if not path.is_relative_to(store.root) or not path.is_file():
        raise ApiError(404, "the message's audio is gone")
    return web.FileResponse(path, headers={"Content-Type": "audio/wav"})


async def change_message(console: Console, message: Any, action: str) -> None:
    """Mark a message as heard (``save``) or delete it, and tell the server (its lamps)."""
    store = console.voicemail_store
    await console.blocking(store.mark_saved if action == "save" else store.delete, message.id)
    await console.ask("mailbox_changed", mailbox=message.mailbox)


MARK_BODY = {"type": "object", "properties": {"status": {"type": "string", "enum": ["saved"]}},
             "required": ["status"]}


async def mark_message(request: web.Request) -> web.Response:
    message = await _message(request)
    await json_body(request, MARK_BODY)
    await change_message(console_of(request), message, "save")
    return web.json_response({"id": message.id, "status": "saved"})


async def delete_message(request: web.Request) -> web.Response:
    message = await _message(request)
    await change_message(console_of(request), message, "delete")
    return web.json_response({"id": message.id, "deleted": True})


# ------------------------------------------------------------------ extensions and forwarding


def _extension(request: web.Request) -> Any:
    number = request.match_info["number"]
    extension = console_of(request).config.extension(number)
    if extension is None:
        raise ApiError(404, f"no extension {number!r}")
    if not user_of(request).owns_extension(number):
        raise ApiError(403, f"extension {number} is not yours")
    return extension


async def extension_dicts(console: Console, extensions: list[Any]) -> list[dict[str, Any]]:
    """The extensions with their registrations (which only the server's registrar knows)."""
    registrations = await console.ask("registrations", numbers=[e.number for e in extensions])
    return [{"number": e.number, "name": e.name, "mailbox": e.mailbox, "registrations": registrations[e.number]}
            for e in extensions]


async def list_extensions(request: web.Request) -> web.Response:
    console, user = console_of(request), user_of(request)
    mine = [e for e in console.config.extensions if user.owns_extension(e.number)]
    return web.json_response({"extensions": await extension_dicts(console, mine)})


async def get_extension(request: web.Request) -> web.Response:
    extension = _extension(request)
    return web.json_response((await extension_dicts(console_of(request), [extension]))[0])


def _forwarding(console: Console, extension: Any) -> dict[str, Any]:
    chosen = console.forwarding().get(extension.number)
    return {"extension": extension.number, "follow_me": list(chosen if chosen is not None else extension.follow_me),
            "from_console": chosen is not None, "deployment_follow_me": list(extension.follow_me)}


async def get_forwarding(request: web.Request) -> web.Response:
    return web.json_response(_forwarding(console_of(request), _extension(request)))


FORWARDING_BODY = {
    "type": "object",
    "properties": {"follow_me": {"type": ["array", "null"], "maxItems": 5,
                                 "items": {"type": "string", "maxLength": 30}}},
    "required": ["follow_me"],
}


async def save_follow_me(console: Console, extension: Any, numbers: list[str] | None) -> dict[str, Any]:
    """Check and store an extension's follow-me numbers (None: the deployment file's)."""
    try:
        checked = check_follow_me(numbers) if numbers is not None else None
    except ForwardingError as exc:
        raise ApiError(400, str(exc)) from None
    await console.blocking(write_follow_me, console.data, extension.number, checked)
    return _forwarding(console, extension)


async def set_forwarding(request: web.Request) -> web.Response:
    extension = _extension(request)
    body = await json_body(request, FORWARDING_BODY)
    return web.json_response(await save_follow_me(console_of(request), extension, body["follow_me"]))


def pikett_of(console: Console, extension: Any) -> dict[str, Any]:
    """An extension's on-call number: the owner's choice in the console, else the deployment file's."""
    chosen = read_pikett(console.data).get(extension.number)
    return {"extension": extension.number, "pikett": chosen if chosen is not None else extension.pikett,
            "from_console": chosen is not None, "deployment_pikett": extension.pikett}


async def get_pikett(request: web.Request) -> web.Response:
    extension = _extension(request)
    console = console_of(request)
    try:
        return web.json_response(await console.blocking(pikett_of, console, extension))
    except ForwardingError as exc:
        raise ApiError(500, str(exc)) from None


PIKETT_BODY = {"type": "object", "properties": {"pikett": {"type": ["string", "null"], "maxLength": 30}},
               "required": ["pikett"]}


async def save_pikett(console: Console, extension: Any, number: str | None) -> dict[str, Any]:
    """Check and store an extension's on-call number ("": off call; None: the deployment file's)."""
    try:
        checked = check_number(number) if number else number
    except ForwardingError as exc:
        raise ApiError(400, str(exc)) from None
    await console.blocking(write_pikett, console.data, extension.number, checked)
    return await console.blocking(pikett_of, console, extension)


async def set_pikett(request: web.Request) -> web.Response:
    extension = _extension(request)
    body = await json_body(request, PIKETT_BODY)
    return web.json_response(await save_pikett(console_of(request), extension, body["pikett"]))


# ------------------------------------------------------------------ the table

CALL = {"type": "object", "properties": {
    "call_id": {"type": "string"}, "caller": {"type": "string"}, "called": {"type": "string"},
    "step": {"type": "string"}, "answered": {"type": "boolean"}, "transfer": {"type": "boolean"}}}
USER = {"type": "object", "properties": {"name": {"type": "string"}, "role": {"type": "string"},
                                         "extension": {"type": "string"}, "mailbox": {"type": ["string", "null"]}}}
MESSAGE = {"type": "object", "properties": {"id": {"type": "integer"}, "caller": {"type": "string"},
                                            "received_at": {"type": "number"}, "duration": {"type": "number"},
                                            "status": {"type": "string"}}}
FORWARDING = {"type": "object", "properties": {"extension": {"type": "string"},
                                               "follow_me": {"type": "array", "items": {"type": "string"}},
                                               "from_console": {"type": "boolean"}}}

PIKETT = {"type": "object", "properties": {"extension": {"type": "string"}, "pikett": {"type": "string"},
                                           "from_console": {"type": "boolean"},
                                           "deployment_pikett": {"type": "string"}}}


def _list_of(key: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"type": "object", "properties": {key: {"type": "array", "items": item}}}


ROUTES: tuple[Route, ...] = (
    Route("GET", f"{API}/me", me, "the logged-in user", "user", "session", response=USER),
    Route("GET", f"{API}/calls", list_calls, "calls up now", "admin", "calls", response=_list_of("calls", CALL)),
    Route("GET", f"{API}/calls/{{call_id}}", get_call, "one call's live state", "admin", "calls", response=CALL),
    Route("DELETE", f"{API}/calls/{{call_id}}", hang_up, "hang a call (or a click-to-call) up", "admin", "calls"),
    Route("POST", f"{API}/calls", click_to_call, "click-to-call: ring your phone, then dial the number when "
          "you answer (an extension, or a number outside when your extension may call out)", "user", "calls",
          body=CLICK_BODY),
    Route("POST", f"{API}/calls/{{call_id}}/transfer", transfer, "transfer a live call to an extension (a user: "
          "calls to their own extension)", "user", "calls", body=TRANSFER_BODY),
    Route("GET", f"{API}/journal", journal, "the call journal, newest first", "admin", "journal",
          query=JOURNAL_QUERY),
    Route("GET", f"{API}/journal.csv", journal_csv, "the call journal as CSV", "admin", "journal",
          query=JOURNAL_QUERY, produces="text/csv"),
    Route("GET", f"{API}/switches", list_switches, "the manual switches and their positions", "admin", "switches"),
    Route("PUT", f"{API}/switches/{{name}}", set_switch, "flip a switch", "admin", "switches", body=SWITCH_BODY),
    *flows.ROUTES,
    Route("GET", f"{API}/mailboxes", list_mailboxes, "mailboxes (a user: their own)", "user", "voicemail"),
    Route("GET", f"{API}/mailboxes/{{box}}/messages", list_messages, "a mailbox's messages", "user", "voicemail",
          response=_list_of("messages", MESSAGE)),
    Route("GET", f"{API}/mailboxes/{{box}}/messages/{{id}}/audio", message_audio, "a message's audio",
          "user", "voicemail", produces="audio/wav"),
    Route("PATCH", f"{API}/mailboxes/{{box}}/messages/{{id}}", mark_message, "mark a message as heard (saved)",
          "user", "voicemail", body=MARK_BODY),
    Route("DELETE", f"{API}/mailboxes/{{box}}/messages/{{id}}", delete_message, "delete a message",
          "user", "voicemail"),
    Route("GET", f"{API}/extensions", list_extensions, "extensions and their registrations (a user: their own)",
          "user", "extensions"),
    Route("GET", f"{API}/extensions/{{number}}", get_extension, "one extension and its registrations",
          "user", "extensions"),
    Route("GET", f"{API}/extensions/{{number}}/forwarding", get_forwarding, "an extension's follow-me numbers",
          "user", "forwarding", response=FORWARDING),
    Route("PUT", f"{API}/extensions/{{number}}/forwarding", set_forwarding,
          "set an extension's follow-me numbers (null: the deployment file's)", "user", "forwarding",
          body=FORWARDING_BODY, response=FORWARDING),
    Route("GET", f"{API}/extensions/{{number}}/pikett", get_pikett, "an extension's on-call (Pikett) number, "
          "rung by `transfer to pikett GROUP` for the groups it is in (\"\": off call)", "user", "forwarding",
          response=PIKETT),
    Route("PUT", f"{API}/extensions/{{number}}/pikett", set_pikett, "set the on-call number (\"\": off call; "
          "null: the deployment file's)", "user", "forwarding", body=PIKETT_BODY, response=PIKETT),
)
