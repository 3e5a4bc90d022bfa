"""The console's pages over HTTP (the browser tests drive them in Chromium): roles, CSRF, languages."""

from __future__ import annotations

import urllib.parse

import pytest

from ivr.web.texts import TEXTS

from .client import Client
from .conftest import PASSWORDS, WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]


def form(client: Client, path: str, fields: dict[str, str]) -> object:
    return client.request("POST", path, data=urllib.parse.urlencode(fields).encode(),
                          content_type="application/x-www-form-urlencoded")


def test_both_languages_have_every_ui_string() -> None:
    assert set(TEXTS["en"]) == set(TEXTS["de"])


def test_the_login_form_logs_in_and_redirects_by_role(web_server: WebServer) -> None:
    admin, user = Client(web_server.url), Client(web_server.url)
    assert "<form method=post action=\"/login\">" in admin.get("/login").text
    reply = form(admin, "/login", {"username": "100", "password": PASSWORDS["100"]})
    assert (reply.status, reply.headers["Location"]) == (303, "/")  # type: ignore[attr-defined]
    reply = form(user, "/login", {"username": "201", "password": PASSWORDS["201"]})
    assert (reply.status, reply.headers["Location"]) == (303, "/me")  # type: ignore[attr-defined]
    wrong = form(Client(web_server.url), "/login", {"username": "201", "password": "nope"})
    assert wrong.status == 401 and "Wrong user name or password." in wrong.text  # type: ignore[attr-defined]


def test_pages_need_a_login_and_the_admin_pages_the_admin_role(web_server: WebServer) -> None:
    anonymous = Client(web_server.url)
    reply = anonymous.get("/journal")
    assert (reply.status, reply.headers["Location"]) == (303, "/login")
    user = web_server.client("201")
    for path in ("/journal", "/flows", "/flows/office.ivr", "/switches", "/console/calls"):
        assert user.get(path).status == 403, path
    assert user.get("/me").status == 200 and user.get("/voicemail").status == 200
    admin = web_server.client("100")
    for path in ("/", "/journal?since=2h", "/voicemail", "/flows", "/flows/office.ivr", "/switches", "/me"):
        reply = admin.get(path)
        assert reply.status == 200 and "<!doctype html>" in reply.text, path


def test_a_form_without_the_csrf_token_is_refused(web_server: WebServer) -> None:
    user = web_server.client("201")
    user.csrf = None
    reply = form(user, "/console/me/follow-me", {"numbers": "+41791112233", "action": "save"})
    assert reply.status == 403 and "missing or wrong CSRF token" in reply.text  # type: ignore[attr-defined]


def test_the_console_speaks_german_when_asked(web_server: WebServer) -> None:
    admin = web_server.client("100")
    page = admin.get("/switches?lang=de")
    assert "Schalter" in page.text and 'lang="de"' in page.text
    assert "Schalter" in admin.get("/switches").text  # the choice is kept in a cookie
    assert "Switches" in admin.get("/switches?lang=en").text
    fresh = web_server.client("100")
    assert "Übersicht" in fresh.get("/", headers={"Accept-Language": "de-CH,de;q=0.9,en;q=0.5"}).text


def test_values_are_escaped(web_server: WebServer) -> None:
    reply = web_server.client("100").get("/journal?caller=%3Cscript%3Ealert(1)%3C/script%3E")
    assert "<script>alert(1)" not in reply.text and "&lt;script&gt;alert(1)" in reply.text
