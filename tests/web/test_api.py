"""The JSON API against a real ``ivr serve``: every endpoint, its permissions and its bad input."""

from __future__ import annotations

import csv
import io
import json

import pytest

from ivr.web.app import API_ROUTES

from .client import Client
from .conftest import PASSWORDS, WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]


# ------------------------------------------------------------------ logging in


def test_login_answers_the_user_and_a_csrf_token_and_sets_a_strict_httponly_cookie(web_server: WebServer) -> None:
    client = Client(web_server.url)
    reply = client.login("201", PASSWORDS["201"])
    assert reply.status == 200
    body = reply.json()
    assert body["name"] == "201" and body["role"] == "user" and body["mailbox"] == "201" and body["csrf"]
    cookie = reply.headers["Set-Cookie"]
    assert "ivr_session=" in cookie and "HttpOnly" in cookie and "SameSite=Strict" in cookie
    assert "Secure" not in cookie  # plain HTTP on loopback: a Secure cookie would never come back
    assert client.get("/api/v1/me").json()["name"] == "201"


def test_a_wrong_password_is_refused_and_nothing_without_a_login(web_server: WebServer) -> None:
    client = Client(web_server.url)
    reply = client.login("201", "not-the-password")
    assert (reply.status, reply.json()) == (401, {"error": "wrong user name or password"})
    assert client.login("999", "whatever-it-is").status == 401
    reply = client.get("/api/v1/me")
    assert (reply.status, reply.json()) == (401, {"error": "log in first (or send an API token)"})


def test_logout_ends_the_session(web_server: WebServer) -> None:
    client = web_server.client("202", fresh=True)
    assert client.request("POST", "/api/v1/logout").status == 200
    assert client.get("/api/v1/me").status == 401


def test_a_state_change_without_the_right_csrf_token_is_refused_and_changes_nothing(web_server: WebServer) -> None:
    client = web_server.client("201")
    for token in ("", "wrong-token"):
        reply = client.request("PUT", "/api/v1/extensions/201/forwarding", json_body={"follow_me": ["+41791112233"]},
                               headers={"X-CSRF-Token": token})
        assert (reply.status, reply.json()) == (403, {"error": "missing or wrong CSRF token"})
    client.csrf = None
    reply = client.request("PUT", "/api/v1/extensions/201/forwarding", json_body={"follow_me": ["+41791112233"]})
    assert reply.status == 403
    assert not (web_server.data / "forwarding.json").exists()


def test_an_api_token_works_without_a_csrf_token_and_a_wrong_one_is_refused(web_server: WebServer) -> None:
    from ivr.config import load_config
    from ivr.web.users import new_token

    config = load_config(web_server.data.parent / "users.toml")
    client = Client(web_server.url)
    client.token = new_token(config, "100", "crm")
    assert client.get("/api/v1/me").json()["role"] == "admin"
    assert client.request("PUT", "/api/v1/switches/night", json_body={"on": False}).status == 200
    client.token = "ivr_not-a-token"
    assert (client.get("/api/v1/me").status, client.get("/api/v1/me").json()) == (401, {"error": "unknown API token"})


def test_ten_wrong_logins_from_one_address_are_throttled(web_server: WebServer) -> None:
    client = Client(web_server.url, source="127.0.0.2")  # the other tests log in from 127.0.0.1
    statuses = [client.login("202", f"wrong-{i}").status for i in range(10)]
    assert statuses == [401] * 10
    reply = client.login("202", PASSWORDS["202"])  # the right one, too late
    assert (reply.status, reply.json()) == (429, {"error": "too many wrong logins from this address: try again later"})
    assert web_server.client("202", fresh=True).get("/api/v1/me").status == 200  # another address is not blocked


def test_a_session_cookie_the_server_did_not_make_is_refused(web_server: WebServer) -> None:
    client = web_server.client("201")
    for cookie in client.jar:
        cookie.value = cookie.value[:-2] + "xx"
    assert client.get("/api/v1/me").status == 401


# ------------------------------------------------------------------ roles


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/v1/calls", None),
    ("GET", "/api/v1/journal", None),
    ("GET", "/api/v1/journal.csv", None),
    ("GET", "/api/v1/switches", None),
    ("PUT", "/api/v1/switches/night", {"on": True}),
    ("GET", "/api/v1/flows", None),
    ("GET", "/api/v1/flows/office.ivr", None),
    ("GET", "/api/v1/flows/graph.svg", None),
    ("DELETE", "/api/v1/calls/some-call", None),
])
def test_a_user_gets_403_on_the_admin_endpoints(web_server: WebServer, method: str, path: str, body: object) -> None:
    reply = web_server.client("201").request(method, path, json_body=body)
    assert (reply.status, reply.json()) == (403, {"error": "this needs the admin role"})


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/v1/mailboxes/202/messages", None),
    ("GET", "/api/v1/mailboxes/202/messages/1/audio", None),
    ("PATCH", "/api/v1/mailboxes/202/messages/1", {"status": "saved"}),
    ("DELETE", "/api/v1/mailboxes/202/messages/1", None),
])
def test_a_user_cannot_reach_another_users_mailbox(web_server: WebServer, method: str, path: str, body: object) -> None:
    reply = web_server.client("201").request(method, path, json_body=body)
    assert (reply.status, reply.json()) == (403, {"error": "mailbox 202 is not yours"})


@pytest.mark.parametrize("method, path, body", [
    ("GET", "/api/v1/extensions/202", None),
    ("GET", "/api/v1/extensions/202/forwarding", None),
    ("PUT", "/api/v1/extensions/202/forwarding", {"follow_me": ["+41791112233"]}),
])
def test_a_user_cannot_see_or_change_another_users_forwarding(
    web_server: WebServer, method: str, path: str, body: object
) -> None:
    reply = web_server.client("201").request(method, path, json_body=body)
    assert (reply.status, reply.json()) == (403, {"error": "extension 202 is not yours"})
    assert "202" not in json.loads((web_server.data / "forwarding.json").read_text()) \
        if (web_server.data / "forwarding.json").exists() else True


def test_a_user_lists_only_their_own_mailbox_and_extension(web_server: WebServer) -> None:
    client = web_server.client("201")
    assert [m["number"] for m in client.get("/api/v1/mailboxes").json()["mailboxes"]] == ["201"]
    assert [e["number"] for e in client.get("/api/v1/extensions").json()["extensions"]] == ["201"]
    admin = web_server.client("100")
    assert [m["number"] for m in admin.get("/api/v1/mailboxes").json()["mailboxes"]] == ["100", "201", "202"]


# ------------------------------------------------------------------ forwarding


def test_a_user_sets_and_clears_their_follow_me_numbers(web_server: WebServer) -> None:
    client = web_server.client("201")
    assert client.get("/api/v1/extensions/201/forwarding").json() == {
        "extension": "201", "follow_me": ["+41797001201"], "from_console": False,
        "deployment_follow_me": ["+41797001201"]}
    reply = client.request("PUT", "/api/v1/extensions/201/forwarding", json_body={"follow_me": ["+41 79 555 12 34"]})
    assert reply.status == 200 and reply.json()["follow_me"] == ["+41795551234"]
    stored = json.loads((web_server.data / "forwarding.json").read_text())
    assert stored["201"] == {"follow_me": ["+41795551234"]}
    reply = client.request("PUT", "/api/v1/extensions/201/forwarding", json_body={"follow_me": None})
    assert reply.json()["follow_me"] == ["+41797001201"] and reply.json()["from_console"] is False


@pytest.mark.parametrize("body, error", [
    ({"follow_me": ["call me maybe"]}, "not a phone number: 'call me maybe' (digits, optionally starting with +)"),
    ({"follow_me": "+41791112233"}, "body.follow_me: expected array or null"),
    ({"numbers": []}, "body: missing follow_me"),
    ({"follow_me": [], "extra": 1}, "body: unknown field(s) extra"),
])
def test_bad_forwarding_is_a_400_and_changes_nothing(web_server: WebServer, body: object, error: str) -> None:
    before = (web_server.data / "forwarding.json").read_text() if (web_server.data / "forwarding.json").exists() else None
    reply = web_server.client("201").request("PUT", "/api/v1/extensions/201/forwarding", json_body=body)
    assert (reply.status, reply.json()) == (400, {"error": error})
    after = (web_server.data / "forwarding.json").read_text() if (web_server.data / "forwarding.json").exists() else None
    assert after == before


# ------------------------------------------------------------------ malformed and oversized requests


def test_malformed_json_is_a_clear_400(web_server: WebServer) -> None:
    client = web_server.client("100")
    reply = client.request("PUT", "/api/v1/switches/night", data=b'{"on": tru', content_type="application/json")
    assert reply.status == 400 and reply.json()["error"].startswith("malformed JSON: ")
    reply = client.request("PUT", "/api/v1/switches/night", data=b"on=1", content_type="application/x-www-form-urlencoded")
    assert reply.status == 415
    assert reply.json() == {"error": "expected a JSON body (Content-Type: application/json), got "
                                     "'application/x-www-form-urlencoded'"}


def test_an_oversized_body_is_a_413_and_changes_nothing(web_server: WebServer) -> None:
    client = web_server.client("100")
    before = web_server.flow.read_text()
    reply = client.request("PUT", "/api/v1/flows/office.ivr", data=b"#" * 30000, content_type="text/plain")
    assert (reply.status, reply.json()) == (413, {"error": "the request body is larger than the upload limit of 20000 bytes"})
    assert web_server.flow.read_text() == before


def test_an_unknown_api_path_is_a_json_404(web_server: WebServer) -> None:
    reply = web_server.client("100").get("/api/v1/nothing-here")
    assert reply.status == 404 and reply.json() == {"error": "Not Found"}


@pytest.mark.parametrize("path", [
    "/api/v1/flows/..%2F..%2Fetc%2Fpasswd",
    "/api/v1/flows/%2Fetc%2Fpasswd",
    "/api/v1/flows/..%2Fusers.toml",
    "/static/..%2F..%2F..%2Fconfig.py",
    "/static/../app.py",
])
def test_a_path_in_a_request_never_reaches_outside(web_server: WebServer, path: str) -> None:
    reply = web_server.client("100").get(path)
    assert reply.status in (403, 404)
    assert b"root:" not in reply.body and b"[server]" not in reply.body and b"import" not in reply.body


# ------------------------------------------------------------------ switches


def test_an_admin_flips_the_night_switch_with_the_module_ivr_switch_uses(web_server: WebServer) -> None:
    client = web_server.client("100")
    assert client.get("/api/v1/switches").json() == {"switches": {"night": False}}
    assert client.request("PUT", "/api/v1/switches/night", json_body={"on": True}).json() == {"switches": {"night": True}}
    assert json.loads((web_server.data / "switches.json").read_text()) == {"night": True}
    reply = client.request("PUT", "/api/v1/switches/nigth", json_body={"on": True})
    assert (reply.status, reply.json()) == (404, {"error": "no flow declares switch 'nigth' (declared: night)"})
    client.request("PUT", "/api/v1/switches/night", json_body={"on": False})


# ------------------------------------------------------------------ flows


def test_flows_list_source_and_graph(web_server: WebServer) -> None:
    client = web_server.client("100")
    flows = client.get("/api/v1/flows").json()
    assert [f["name"] for f in flows["flows"]] == ["office.ivr"] and flows["entries"] == ["default"]
    source = client.get("/api/v1/flows/office.ivr")
    assert source.status == 200 and source.text == web_server.flow.read_text()
    svg = client.get("/api/v1/flows/graph.svg")
    assert svg.status == 200 and svg.headers["Content-Type"].startswith("image/svg+xml") and b"<svg" in svg.body
    reply = client.get("/api/v1/flows/other.ivr")
    assert (reply.status, reply.json()) == (404, {"error": "no deployed flow named 'other.ivr' (flows: office.ivr)"})


BROKEN = "number default -> start\nstart:\n    say \"Hello.\"\n    -> nowhere\n"


def test_check_returns_diagnostics_with_file_line_and_column_and_writes_nothing(web_server: WebServer) -> None:
    client = web_server.client("100")
    before = web_server.flow.read_text()
    reply = client.request("POST", "/api/v1/flows/office.ivr/check", data=BROKEN.encode(), content_type="text/plain")
    assert reply.status == 200
    body = reply.json()
    assert body["ok"] is False
    first = body["diagnostics"][0]
    assert (first["file"], first["line"], first["column"], first["severity"]) == ("office.ivr", 4, 8, "error")
    assert first["text"].startswith("office.ivr:4:8: error: ")
    assert web_server.flow.read_text() == before
    assert not [p for p in web_server.flow.parent.iterdir() if p.name.startswith(".office.ivr.")]
    ok = client.request("POST", "/api/v1/flows/office.ivr/check", data=before.encode(), content_type="text/plain")
    assert ok.json() == {"ok": True, "diagnostics": []}


def test_deploying_a_flow_with_errors_leaves_the_deployed_flow_untouched(web_server: WebServer) -> None:
    client = web_server.client("100")
    before = web_server.flow.read_text()
    reply = client.request("PUT", "/api/v1/flows/office.ivr", data=BROKEN.encode(), content_type="text/plain")
    assert reply.status == 422
    assert reply.json()["error"] == "office.ivr has errors: not deployed"
    assert reply.json()["diagnostics"][0]["text"].startswith("office.ivr:4:8: error:")
    assert web_server.flow.read_text() == before
    assert not any(r.get("event") == "reloading" for r in web_server.ivr.records)  # type: ignore[attr-defined]


def test_deploying_a_good_flow_writes_it_and_reloads(web_server: WebServer) -> None:
    client = web_server.client("100")
    text = web_server.flow.read_text().replace("Welcome to the console test line.", "Welcome again.")
    reply = client.request("PUT", "/api/v1/flows/office.ivr", data=text.encode(), content_type="text/plain")
    assert reply.status == 200, reply.text
    body = reply.json()
    assert body["deployed"] == "office.ivr" and body["reload"]["event"] == "reloaded"
    assert web_server.flow.read_text() == text
    assert client.get("/api/v1/flows").json()["reload"]["event"] == "reloaded"


# ------------------------------------------------------------------ calls, journal, extensions, voicemail


def test_calls_now_is_empty_and_an_unknown_call_is_404(web_server: WebServer) -> None:
    client = web_server.client("100")
    assert client.get("/api/v1/calls").json()["calls"] == []
    reply = client.get("/api/v1/calls/nope")
    assert (reply.status, reply.json()) == (404, {"error": "no call 'nope' is up"})
    assert client.request("DELETE", "/api/v1/calls/nope").status == 404


def test_journal_filters_and_csv(web_server: WebServer) -> None:
    client = web_server.client("100")
    assert client.get("/api/v1/journal?since=2h&outcome=voicemail").json() == {"calls": []}
    reply = client.get("/api/v1/journal?since=yesterday")
    assert reply.status == 400
    assert reply.json()["error"] == "--since 'yesterday': expected an age like 2h, 30m, 7d or a date like 2026-11-22T08:00"
    assert client.get("/api/v1/journal?limit=5000").json() == {"error": "limit must be 0 to 1000"}
    rows = list(csv.reader(io.StringIO(client.get("/api/v1/journal.csv").text)))
    assert rows[0][:3] == ["call_id", "started", "answered"]


def test_extensions_with_their_registrations(web_server: WebServer) -> None:
    client = web_server.client("100")
    numbers = [e["number"] for e in client.get("/api/v1/extensions").json()["extensions"]]
    assert numbers == ["100", "201", "202"]
    one = client.get("/api/v1/extensions/201").json()
    assert one == {"number": "201", "name": "Alice", "mailbox": "201", "registrations": []}
    assert client.get("/api/v1/extensions/999").status == 404


def test_own_mailbox_is_empty_and_an_unknown_message_is_404(web_server: WebServer) -> None:
    client = web_server.client("201")
    assert client.get("/api/v1/mailboxes/201/messages").json() == {"mailbox": "201", "messages": []}
    reply = client.get("/api/v1/mailboxes/201/messages/12345/audio")
    assert (reply.status, reply.json()) == (404, {"error": "no message 12345 in mailbox 201"})
    assert client.get("/api/v1/mailboxes/201/messages/abc/audio").json() == {"error": "a message id is a number"}


# ------------------------------------------------------------------ the document


def test_every_route_is_in_the_openapi_document_and_the_docs_page(web_server: WebServer) -> None:
    client = Client(web_server.url)
    doc = client.get("/api/v1/openapi.json").json()
    assert doc["openapi"] == "3.1.0"
    documented = {(m.upper(), p) for p, ops in doc["paths"].items() for m in ops}
    assert documented == {(r.method, r.path) for r in API_ROUTES}
    page = client.get("/api/docs")
    assert page.status == 200 and "text/html" in page.headers["Content-Type"]
    for route in API_ROUTES:
        assert f"{route.method} {route.path}" in page.text


# ------------------------------------------------------------------ click-to-call


def test_click_to_call_is_refused_for_another_users_phone_and_outside_the_dial_plan(web_server: WebServer) -> None:
    client = web_server.client("201")
    reply = client.request("POST", "/api/v1/calls", json_body={"from": "202", "to": "100"})
    assert (reply.status, reply.json()) == (403, {"error": "extension 202 is not yours"})
    reply = client.request("POST", "/api/v1/calls", json_body={"from": "201", "to": "+41791234567"})
    assert (reply.status, reply.json()) == (403, {"error": "extension 201 may not call out (may_call_out = false)"})
    reply = client.request("POST", "/api/v1/calls", json_body={"from": "201", "to": "reception"})
    assert (reply.status, reply.json()) == (404, {"error": "'reception' is neither an extension nor a telephone number"})
    reply = client.request("POST", "/api/v1/calls", json_body={"from": "201", "to": "202"})
    assert (reply.status, reply.json()) == (409, {"error": "extension 201 has no phone to ring (none registered)"})
