"""Who is asking, and may they: the guard in front of every request, login and logout.

A request is made by a user when it carries a live session cookie or an API token
(``Authorization: Bearer ...``).  The guard (:func:`guard`) looks up the route's access in the
route table: an anonymous request to anything but a public route gets 401 (a console page
redirects to the login page instead), a user on an admin route 403.  A state-changing request
(POST, PUT, PATCH, DELETE) made with the session cookie must carry the session's CSRF token; a
bearer token is not sent by browsers on their own, so it needs none.  Every error of the API is
answered as JSON (``{"error": ...}``), a too large body included (413).
"""

from __future__ import annotations

import html
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from ivr.web.routes import ApiError, Route, json_body
from ivr.web.sessions import COOKIE, CSRF_HEADER, Session, csrf_ok
from ivr.web.state import CONSOLE, Console
from ivr.web.users import WebUser, check_password, token_user

API = "/api/v1"
SAFE = ("GET", "HEAD", "OPTIONS")
ROUTE_TABLE: web.AppKey[dict[tuple[str, str], Route]] = web.AppKey("route_table", dict)


def session_of(request: web.Request) -> tuple[str, Session] | None:
    sid = request.cookies.get(COOKIE)
    if not sid:
        return None
    session = request.app[CONSOLE].sessions.get(sid, time.time())
    return (sid, session) if session is not None else None


async def identify(request: web.Request) -> tuple[WebUser | None, Session | None]:
    """The user behind the request and their session (None for a bearer token)."""
    header = request.headers.get("Authorization", "")
    if header.startswith("Bearer "):
        console = request.app[CONSOLE]
        user = await console.blocking(token_user, console.config, header.removeprefix("Bearer ").strip())
        if user is None:
            raise ApiError(401, "unknown API token")
        return user, None
    found = session_of(request)
    return (found[1].user, found[1]) if found else (None, None)


def _route(request: web.Request) -> Route | None:
    resource = request.match_info.route.resource
    canonical = resource.canonical if resource is not None else ""
    return request.app[ROUTE_TABLE].get((request.method, canonical))


@web.middleware
async def guard(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]) -> web.StreamResponse:
    api = request.path.startswith("/api/")
    try:
        user, session = await identify(request)
        route = _route(request)
        access = route.access if route is not None else "public"
        if access != "public":
            if user is None:
                raise ApiError(401, "log in first (or send an API token)")
            if access == "admin" and not user.admin:
                raise ApiError(403, "this needs the admin role")
        if session is not None and request.method not in SAFE and not await _csrf_ok(request, session):
            raise ApiError(403, "missing or wrong CSRF token")
        request["user"] = user
        request["session"] = session
        return await handler(request)
    except ApiError as exc:
        if api or request.path == "/metrics":
            return exc.response()
        if exc.status == 401:  # a console page: to the login page
            return web.Response(status=303, headers={"Location": "/login"})
        return web.Response(text=f"<!doctype html><title>{exc.status}</title><p>{html.escape(str(exc))}</p>"
                            '<p><a href="/">ivr console</a></p>', status=exc.status, content_type="text/html")
    except web.HTTPRequestEntityTooLarge:
        limit = request.app[CONSOLE].config.http.upload_limit
        return ApiError(413, f"the request body is larger than the upload limit of {limit} bytes").response()
    except web.HTTPException as exc:
        if api and exc.status >= 400:
            return ApiError(exc.status, exc.reason).response()
        raise


async def _csrf_ok(request: web.Request, session: Session) -> bool:
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.content_type in ("application/x-www-form-urlencoded", "multipart/form-data"):
        given = str((await request.post()).get("csrf", "")) or None
    return csrf_ok(session, given)


# ------------------------------------------------------------------ login


async def try_login(request: web.Request, name: str, password: str) -> WebUser:
    """The user, or ApiError 401 (wrong) / 429 (throttled); counts wrong logins per address."""
    console: Console = request.app[CONSOLE]
    ip = request.remote or "?"
    throttle = console.sessions.throttle
    if throttle.blocked(ip, time.time()):
        raise ApiError(429, "too many wrong logins from this address: try again later")
    user = await console.blocking(check_password, console.config, name, password)
    if user is None:
        throttle.record_failure(ip, time.time())
        raise ApiError(401, "wrong user name or password")
    throttle.record_success(ip)
    return user


def set_session_cookie(console: Console, response: web.StreamResponse, sid: str) -> None:
    response.set_cookie(COOKIE, sid, httponly=True, samesite="Strict", secure=console.config.http.tls,
                        max_age=int(console.config.http.session_lifetime), path="/")


LOGIN_BODY = {"type": "object", "required": ["username", "password"], "properties": {
    "username": {"type": "string", "maxLength": 100}, "password": {"type": "string", "maxLength": 1000}}}


async def login(request: web.Request) -> web.Response:
    body = await json_body(request, LOGIN_BODY)
    user = await try_login(request, body["username"], body["password"])
    console: Console = request.app[CONSOLE]
    sid, session = console.sessions.create(user, time.time())
    response = web.json_response({**user.as_dict(), "csrf": session.csrf})
    set_session_cookie(console, response, sid)
    return response


async def logout(request: web.Request) -> web.Response:
    found = session_of(request)
    if found:
        request.app[CONSOLE].sessions.end(found[0])
    response = web.json_response({"logged_out": True})
    response.del_cookie(COOKIE, path="/")
    return response


SESSION: dict[str, Any] = {"type": "object", "properties": {"name": {"type": "string"}, "role": {"type": "string"},
                                                           "csrf": {"type": "string"}}}
ROUTES = (
    Route("POST", f"{API}/login", login, "log in: sets the session cookie, answers the CSRF token", "public",
          "session", body=LOGIN_BODY, response=SESSION),
    Route("POST", f"{API}/logout", logout, "log out", "user", "session"),
)
