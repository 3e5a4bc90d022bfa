"""The console's pages: server-rendered HTML, htmx (vendored under ``static/``) for the live parts.

Pages: login, the dashboard (calls up now per step, registrations, capacity, last reload; the
calls table refreshes itself every second), the journal with filters and CSV, voicemail with
an in-browser player, flows with their picture and a check-before-deploy editor, switches, and
a user's own page (follow-me numbers).  Admins see every page; a user sees their own page and
voicemail.  A form or htmx request that changes something carries the session's CSRF token
(a hidden ``csrf`` field, or the ``X-CSRF-Token`` header htmx sends from ``hx-headers``), and
goes through the same functions as the JSON API.  Every value shown is HTML-escaped.  UI
strings come from :mod:`ivr.web.texts` (English, German).
"""

from __future__ import annotations

import html
import json
import time
from pathlib import Path
from string import Template
from typing import Any
from urllib.parse import urlencode

from aiohttp import web

from ivr.web import api, flows
from ivr.web.auth import set_session_cookie, try_login
from ivr.web.routes import ApiError, Route
from ivr.web.sessions import COOKIE, Session
from ivr.web.state import CONSOLE, Console
from ivr.web.texts import language, texts
from ivr.web.users import WebUser

STATIC = Path(__file__).resolve().parent / "static"
h = html.escape

LAYOUT = Template("""<!doctype html>
<html lang="$lang"><head><meta charset="utf-8"><title>$title · $app</title>
<meta name="viewport" content="width=device-width, initial-scale=1">
<script src="/static/htmx.min.js"></script>
<style>
body{font-family:system-ui,sans-serif;margin:0;color:#222}
header{background:#234;color:#fff;padding:.6em 1em;display:flex;gap:1em;align-items:center;flex-wrap:wrap}
header a{color:#fff;text-decoration:none} header a.here{font-weight:bold;text-decoration:underline}
main{padding:1em 1.5em;max-width:70em} table{border-collapse:collapse;margin:.5em 0}
td,th{border-bottom:1px solid #ddd;padding:.3em .7em;text-align:left}
.error{color:#a00;white-space:pre-wrap} .ok{color:#070} textarea{width:100%;font-family:monospace}
form.inline{display:inline} .diag{font-family:monospace}
</style></head>
<body hx-headers='$hx_headers'>
<header><strong>$app</strong>$nav</header>
<main><h1>$title</h1>
$body
</main></body></html>
""")

ADMIN_PAGES = (("/", "dashboard"), ("/journal", "journal"), ("/voicemail", "voicemail"), ("/flows", "flows"),
               ("/switches", "switches"), ("/directory", "directory"), ("/prompts", "prompts"), ("/me", "me"),
               ("/greetings", "greetings"))
USER_PAGES = (("/me", "me"), ("/voicemail", "voicemail"), ("/greetings", "greetings"))


def _lang(request: web.Request) -> dict[str, str]:
    console: Console = request.app[CONSOLE]
    chosen = request.query.get("lang") or request.cookies.get("lang")  # a language link, then its cookie
    return texts(language(chosen, request.headers.get("Accept-Language", ""),
                          console.config.http.language))


def render(request: web.Request, title_key: str, body: str, status: int = 200) -> web.Response:
    t = _lang(request)
    user: WebUser | None = request.get("user")
    session: Session | None = request.get("session")
    nav = ""
    if user is not None:
        pages = ADMIN_PAGES if user.admin else USER_PAGES
        nav = "".join(f'<a href="{href}"{" class=here" if href == request.path else ""}>{h(t[key])}</a>'
                      for href, key in pages)
        nav += (f'<span>{h(user.name)}</span><form class=inline method=post action="/logout">'
                f'{csrf_field(request)}<button>{h(t["logout"])}</button></form>')
    nav += f'<a href="?lang={t["other_lang"]}">{h(t["language"])}</a>'
    token = session.csrf if session is not None else ""
    page = LAYOUT.substitute(lang=t["code"], title=h(t[title_key]), app=h(t["app"]),
                             nav=nav, body=body, hx_headers=h(f'{{"X-CSRF-Token": "{token}"}}', quote=True))
    response = web.Response(text=page, content_type="text/html", status=status)
    if request.query.get("lang") in ("en", "de"):
        response.set_cookie("lang", request.query["lang"], samesite="Strict", httponly=True, path="/")
    return response


def redirect(location: str) -> web.Response:
    return web.Response(status=303, headers={"Location": location})


def csrf_field(request: web.Request) -> str:
    session: Session | None = request.get("session")
    return f'<input type=hidden name=csrf value="{h(session.csrf)}">' if session is not None else ""


def _table(headers: list[str], rows: list[list[str]], empty: str) -> str:
    if not rows:
        return f"<p>{h(empty)}</p>"
    head = "".join(f"<th>{h(x)}</th>" for x in headers)
    body = "".join("<tr>" + "".join(f"<td>{cell}</td>" for cell in row) + "</tr>" for row in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _when(t: float | None) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(t)) if t else "-"


# ------------------------------------------------------------------ login


def _login_form(request: web.Request, error: str = "") -> str:
    t = _lang(request)
    message = f'<p class=error id=login-error>{h(error)}</p>' if error else ""
    return (f'{message}<form method=post action="/login">{csrf_field(request)}'
            f'<p><label>{h(t["username"])}<br><input name=username id=username autocomplete=username></label></p>'
            f'<p><label>{h(t["password"])}<br><input name=password id=password type=password '
            f'autocomplete=current-password></label></p><p><button id=login>{h(t["login"])}</button></p></form>')


async def login_page(request: web.Request) -> web.Response:
    return render(request, "login", _login_form(request))


async def login_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    t = _lang(request)
    try:
        user = await try_login(request, str(form.get("username", "")), str(form.get("password", "")))
    except ApiError as exc:
        message = t["login_throttled"] if exc.status == 429 else t["login_failed"]
        return render(request, "login", _login_form(request, message), status=exc.status)
    console: Console = request.app[CONSOLE]
    sid, _ = console.sessions.create(user, time.time())
    response = redirect("/" if user.admin else "/me")
    set_session_cookie(console, response, sid)
    return response


async def logout_submit(request: web.Request) -> web.StreamResponse:
    sid = request.cookies.get(COOKIE)
    if sid:
        request.app[CONSOLE].sessions.end(sid)
    response = redirect("/login")
    response.del_cookie(COOKIE, path="/")
    return response


# ------------------------------------------------------------------ dashboard


async def dashboard(request: web.Request) -> web.Response:
    user: WebUser = request["user"]
    if not user.admin:
        raise web.HTTPSeeOther("/me")
    t = _lang(request)
    console: Console = request.app[CONSOLE]
    extensions = await api.extension_dicts(console, list(console.config.extensions))
    regs = [[h(e["number"]), h(e["name"]), h(", ".join(r["uri"] for r in e["registrations"]) or "-")]
            for e in extensions]
    last = (await console.ask("flows"))["reload"]
    reload_text = f'{h(last.get("event", ""))}: {h(last.get("message", ""))}' if last else h(t["never"])
    body = (f'<h2>{h(t["calls_up"])}</h2><div id=calls hx-get="/console/calls" hx-trigger="load, every 1s">'
            f'{await calls_fragment(request)}</div>'
            f'<h2>{h(t["reload"])}</h2><p id=reload>{reload_text}</p>'
            f'<h2>{h(t["registrations"])}</h2>'
            + _table([t["extension"], t["name"], t["contacts"]], regs, ""))
    return render(request, "dashboard", body)


async def calls_fragment(request: web.Request) -> str:
    t = _lang(request)
    console: Console = request.app[CONSOLE]
    now = await console.ask("calls")
    calls = now["calls"]
    per_step: dict[str, int] = {}
    for call in calls:
        per_step[call["step"]] = per_step.get(call["step"], 0) + 1
    rows = [[f'<span class=call-id>{h(c["call_id"])}</span>', h(c["caller"]), h(c["called"]),
             f'<span class=step>{h(c["step"])}</span>', "✓" if c["answered"] else "",
             _transfer_form(request, c["call_id"], t)] for c in calls]
    capacity = f'<p>{h(t["capacity"])}: <span id=calls-up>{len(calls)}</span> / {now["max_calls"]}</p>'
    steps = ", ".join(f"{h(step)}: {n}" for step, n in sorted(per_step.items()))
    return (capacity + _table(["Call-ID", t["caller"], t["called"], t["step"], t["answered"], t["transfer"]],
                              rows, t["no_calls"]) + (f'<p>{h(t["per_step"])}: {steps}</p>' if steps else ""))


def _transfer_form(request: web.Request, call_id: str, t: dict[str, str]) -> str:
    """A call's transfer field and button; the field keeps what is typed across the table's refreshes."""
    key = "".join(ch if ch.isalnum() else "-" for ch in call_id)
    return (f'<form class="inline transfer" method=post action="/console/calls/{h(call_id)}/transfer">'
            f'{csrf_field(request)}<input id="to-{h(key)}" name=to size=6 hx-preserve '
            f'placeholder="{h(t["transfer_to"])}"> <button>{h(t["transfer"])}</button></form>')


async def calls_part(request: web.Request) -> web.Response:
    return web.Response(text=await calls_fragment(request), content_type="text/html")


async def transfer_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    user: WebUser = request["user"]
    await api.transfer_to(request.app[CONSOLE], user, request.match_info["call_id"], str(form.get("to", "")))
    raise web.HTTPSeeOther("/")


# ------------------------------------------------------------------ journal


async def journal_page(request: web.Request) -> web.Response:
    t = _lang(request)
    q = {k: request.query.get(k, "") for k in ("since", "caller", "outcome")}
    try:
        rows = await api._journal_rows(request)
        error = ""
    except ApiError as exc:
        rows, error = [], str(exc)
    form = ('<form method=get action="/journal">'
            + "".join(f'<label>{h(label)} <input name={k} value="{h(q[k])}"></label> '
                      for k, label in (("since", t["since"]), ("caller", t["caller"]), ("outcome", t["outcome"])))
            + f'<button>{h(t["filter"])}</button></form>'
            f'<p><a href="/api/v1/journal.csv?{h(urlencode({k: v for k, v in q.items() if v}))}">{h(t["csv"])}</a></p>')
    table = _table([t["started"], t["caller"], t["called"], t["duration"], t["outcome"], t["path"]],
                   [[h(_when(r.started)), h(r.caller), h(r.called),
                     h(f"{r.duration:.1f}s" if r.duration is not None else "-"), h(r.describe()),
                     f'<span class=path>{h(" → ".join(r.path))}</span>'] for r in rows], "-")
    return render(request, "journal", form + (f'<p class=error>{h(error)}</p>' if error else "") + table)


# ------------------------------------------------------------------ voicemail


async def voicemail_page(request: web.Request) -> web.Response:
    t = _lang(request)
    console: Console = request.app[CONSOLE]
    user: WebUser = request["user"]
    store = console.voicemail_store
    parts = []
    for box in [m for m in console.config.mailboxes if user.owns_mailbox(m.number)]:
        messages = await console.blocking(store.list, box.number)
        rows = [[h(m.caller), h(_when(m.received_at)), h(f"{m.duration:.1f}s"), h(m.status),
                 f'<audio controls preload=none src="/api/v1/mailboxes/{h(box.number)}/messages/{m.id}/audio"></audio>',
                 _message_buttons(request, box.number, m.id, t)] for m in messages]
        parts.append(f'<h2>{h(t["mailbox"])} {h(box.number)} {h(box.owner)}</h2>'
                     + _table([t["from"], t["received"], t["duration"], t["status"], "", ""], rows, t["no_messages"]))
    return render(request, "voicemail", "".join(parts))


def _message_buttons(request: web.Request, box: str, message_id: int, t: dict[str, str]) -> str:
    return "".join(f'<form class=inline method=post action="/console/voicemail/{h(box)}/{message_id}/{action}">'
                   f'{csrf_field(request)}<button>{h(t[label])}</button></form>'
                   for action, label in (("save", "mark_saved"), ("delete", "delete")))


async def voicemail_action(request: web.Request) -> web.StreamResponse:
    message = await api._message(request)
    action = request.match_info["action"]
    if action not in ("save", "delete"):
        raise ApiError(404, f"no voicemail action {action!r}")
    await api.change_message(request.app[CONSOLE], message, action)
    raise web.HTTPSeeOther("/voicemail")


# ------------------------------------------------------------------ flows


async def flows_page(request: web.Request) -> web.Response:
    t = _lang(request)
    console: Console = request.app[CONSOLE]
    files = await console.flow_files()
    items = "".join(f'<li><a href="/flows/{h(p.name)}">{h(p.name)}</a></li>' for p in files)
    body = (f"<ul>{items}</ul><h2>{h(t['picture'])}</h2>"
            f'<img id=graph src="/api/v1/flows/graph.svg" alt="{h(t["picture"])}" style="max-width:100%">')
    return render(request, "flows", body)


async def flow_editor(request: web.Request) -> web.Response:
    t = _lang(request)
    console: Console = request.app[CONSOLE]
    name = request.match_info["name"]
    path, _ = await flows.flow_path(console, name)
    text = await console.blocking(path.read_text, "utf-8")
    body = (f'<h2>{h(name)}</h2><form id=editor>'
            f'<textarea id=source name=text rows=30 spellcheck=false>{h(text)}</textarea>'
            f'<p><button id=check hx-post="/console/flows/{h(name)}/check" hx-target="#result">{h(t["check"])}</button> '
            f'<button id=deploy hx-post="/console/flows/{h(name)}/deploy" hx-target="#result">{h(t["deploy"])}</button>'
            f'</p></form><div id=result></div>')
    return render(request, "flows", body)


def _diagnostics_html(diagnostics: list[dict[str, Any]]) -> str:
    return "".join(f'<p class="diag {"error" if d["severity"] == "error" else ""}">{h(d["text"])}</p>'
                   for d in diagnostics)


async def flow_check_part(request: web.Request) -> web.Response:
    t = _lang(request)
    form = await request.post()
    diagnostics = await flows.check_flow_text(request.app[CONSOLE], request.match_info["name"], str(form.get("text", "")))
    ok = f'<p class=ok id=ok>{h(t["flow_ok"])}</p>' if not diagnostics else ""
    return web.Response(text=ok + _diagnostics_html(diagnostics), content_type="text/html")


async def flow_deploy_part(request: web.Request) -> web.Response:
    t = _lang(request)
    form = await request.post()
    try:
        result = await flows.deploy_flow_text(request.app[CONSOLE], request.match_info["name"], str(form.get("text", "")))
    except ApiError as exc:
        if exc.status != 422:
            raise
        return web.Response(text=f'<p class=error id=not-deployed>{h(t["not_deployed"])}</p>'
                            + _diagnostics_html(exc.extra["diagnostics"]), content_type="text/html")
    reload = result["reload"]
    done = reload.get("event") == "reloaded"
    return web.Response(text=f'<p class={"ok" if done else "error"} id=deployed>'
                        f'{h(t["deployed"]) if done else h(str(reload.get("message", "")))}</p>'
                        + _diagnostics_html(result["diagnostics"]), content_type="text/html")


# ------------------------------------------------------------------ switches


async def switches_page(request: web.Request) -> web.Response:
    t = _lang(request)
    reply = await api.list_switches(request)
    positions: dict[str, bool] = json.loads(reply.text or "{}")["switches"]
    rows = [[h(name), f'<span id="switch-{h(name)}">{h(t["on"] if on else t["off"])}</span>',
             f'<form class=inline method=post action="/console/switches/{h(name)}">{csrf_field(request)}'
             f'<input type=hidden name=on value="{"off" if on else "on"}">'
             f'<button id="flip-{h(name)}">{h(t["turn_off"] if on else t["turn_on"])}</button></form>']
            for name, on in sorted(positions.items())]
    return render(request, "switches", _table([t["name"], t["status"], ""], rows, "-"))


async def switch_submit(request: web.Request) -> web.StreamResponse:
    form = await request.post()
    await api.flip_switch(request.app[CONSOLE], request.match_info["name"], form.get("on") == "on")
    raise web.HTTPSeeOther("/switches")


# ------------------------------------------------------------------ a user's own page


async def me_page(request: web.Request) -> web.Response:
    t = _lang(request)
    console: Console = request.app[CONSOLE]
    user: WebUser = request["user"]
    extension = console.config.extension(user.extension)
    assert extension is not None
    forwarding = api._forwarding(console, extension)
    saved = f'<p class=ok id=saved>{h(t["saved"])}</p>' if request.query.get("saved") else ""
    error = f'<p class=error id=error>{h(request.query["error"])}</p>' if request.query.get("error") else ""
    body = (f'<p>{h(t["extension"])} {h(extension.number)} {h(extension.name)}</p>'
            f'<h2>{h(t["follow_me"])}</h2><p>{h(t["follow_me_help"])}</p>{saved}{error}'
            f'<form method=post action="/console/me/follow-me">{csrf_field(request)}'
            f'<textarea id=follow-me name=numbers rows=4>{h(chr(10).join(forwarding["follow_me"]))}</textarea>'
            f'<p><button id=save name=action value=save>{h(t["save"])}</button> '
            f'<button id=reset name=action value=reset>{h(t["reset"])}</button></p></form>')
    pikett = await console.blocking(api.pikett_of, console, extension)
    body += (f'<h2>{h(t["pikett"])}</h2><p>{h(t["pikett_help"])}</p>'
             f'<form method=post action="/console/me/pikett">{csrf_field(request)}'
             f'<input id=pikett name=number value="{h(pikett["pikett"])}" size=20> '
             f'<button id=save-pikett name=action value=save>{h(t["save"])}</button> '
             f'<button id=reset-pikett name=action value=reset>{h(t["reset"])}</button></form>')
    return render(request, "me", body)


async def pikett_submit(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    user: WebUser = request["user"]
    form = await request.post()
    number = None if form.get("action") == "reset" else str(form.get("number", "")).strip()
    try:
        await api.save_pikett(console, console.config.extension(user.extension), number)
    except ApiError as exc:
        raise web.HTTPSeeOther("/me?" + urlencode({"error": str(exc)})) from None
    raise web.HTTPSeeOther("/me?saved=1")


async def follow_me_submit(request: web.Request) -> web.StreamResponse:
    console: Console = request.app[CONSOLE]
    user: WebUser = request["user"]
    form = await request.post()
    extension = console.config.extension(user.extension)
    numbers = None if form.get("action") == "reset" else \
        [n.strip() for n in str(form.get("numbers", "")).splitlines() if n.strip()]
    try:
        await api.save_follow_me(console, extension, numbers)
    except ApiError as exc:
        raise web.HTTPSeeOther("/me?" + urlencode({"error": str(exc)})) from None
    raise web.HTTPSeeOther("/me?saved=1")


ROUTES: tuple[Route, ...] = (
    Route("GET", "/login", login_page, "the login page", "public", "pages"),
    Route("POST", "/login", login_submit, "log in", "public", "pages"),
    Route("POST", "/logout", logout_submit, "log out", "user", "pages"),
    Route("GET", "/", dashboard, "the dashboard", "user", "pages"),
    Route("GET", "/console/calls", calls_part, "the calls table", "admin", "pages"),
    Route("POST", "/console/calls/{call_id}/transfer", transfer_submit, "transfer a call", "admin", "pages"),
    Route("GET", "/journal", journal_page, "the journal", "admin", "pages"),
    Route("GET", "/voicemail", voicemail_page, "voicemail", "user", "pages"),
    Route("POST", "/console/voicemail/{box}/{id}/{action}", voicemail_action, "mark or delete", "user", "pages"),
    Route("GET", "/flows", flows_page, "flows", "admin", "pages"),
    Route("GET", "/flows/{name}", flow_editor, "a flow's editor", "admin", "pages"),
    Route("POST", "/console/flows/{name}/check", flow_check_part, "check", "admin", "pages"),
    Route("POST", "/console/flows/{name}/deploy", flow_deploy_part, "deploy", "admin", "pages"),
    Route("GET", "/switches", switches_page, "switches", "admin", "pages"),
    Route("POST", "/console/switches/{name}", switch_submit, "flip a switch", "admin", "pages"),
    Route("GET", "/me", me_page, "a user's own page", "user", "pages"),
    Route("POST", "/console/me/follow-me", follow_me_submit, "set follow-me", "user", "pages"),
    Route("POST", "/console/me/pikett", pikett_submit, "set the on-call number", "user", "pages"),
)


def add_static(app: web.Application) -> None:
    app.router.add_static("/static/", STATIC, follow_symlinks=False)
