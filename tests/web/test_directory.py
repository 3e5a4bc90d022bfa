"""The directory's people through the API of a real ``ivr serve``: add, rename, remove, checked as
``ivr check`` checks them, written only when clean, and reloaded."""

from __future__ import annotations

import pytest

from .conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]
PEOPLE = "/api/v1/directories/staff/people"


def staff(server: WebServer) -> list[dict[str, object]]:
    books = server.client("100").get("/api/v1/directories").json()["directories"]
    assert [b["name"] for b in books] == ["staff"]
    return books[0]["people"]  # type: ignore[no-any-return]


def test_the_directory_lists_each_person_with_the_line_of_the_file(directory_server: WebServer) -> None:
    people = staff(directory_server)
    alice = next(p for p in people if p["extension"] == "201")
    assert alice == {"line": 4, "display_name": "Alice Johnson", "first_name": "Alice", "last_name": "Johnson",
                     "extension": "201", "mailbox": "201", "department": "Sales", "aliases": ["Ali"],
                     "hidden": False}


def test_an_admin_adds_renames_and_removes_a_person_and_the_server_reloads(directory_server: WebServer) -> None:
    client = directory_server.client("100")
    csv = directory_server.flow.parent / "staff.csv"
    reply = client.request("POST", PEOPLE, json_body={"first_name": "Carla", "last_name": "Meier",
                                                      "extension": "202", "department": "Finance"})
    assert reply.status == 200, reply.text
    assert reply.json()["reload"]["event"] == "reloaded"
    assert csv.read_text().splitlines()[-1] == "Carla Meier,Carla,Meier,202,,,no,Finance"
    carla = next(p for p in staff(directory_server) if p["first_name"] == "Carla")
    reply = client.request("PUT", f"{PEOPLE}/{carla['line']}", json_body={
        "first_name": "Carla", "last_name": "Meier-Rossi", "display_name": "Carla Meier-Rossi", "extension": "202"})
    assert reply.status == 200, reply.text
    assert csv.read_text().splitlines()[-1] == "Carla Meier-Rossi,Carla,Meier-Rossi,202,,,no,Finance"
    assert csv.read_text().startswith("# The people of the console tests' directory")  # other lines untouched
    assert client.request("DELETE", f"{PEOPLE}/{carla['line']}").json()["reload"]["event"] == "reloaded"
    assert "Carla" not in csv.read_text()
    reloads = [r for r in directory_server.ivr.records if r.get("event") == "reloaded"]  # type: ignore[attr-defined]
    assert len(reloads) >= 3


@pytest.mark.parametrize("body, text", [
    ({"first_name": "Dan", "last_name": "Wolf", "extension": "999"},
     "staff.csv:6:1: error: Dan Wolf: extension 999 is not in ivr.toml (hint: add it under [[extensions]], "
     "or correct the directory file)"),
    ({"first_name": "Dan", "last_name": "Wolf", "extension": "201", "mailbox": "555"},
     "staff.csv:6:1: error: Dan Wolf: mailbox 555 is not in ivr.toml (hint: add it under [[mailboxes]], "
     "or correct the directory file)"),
    ({"extension": "201"}, "staff.csv:6:1: error: a person needs a first_name or last_name"),
    ({"first_name": "Dan", "extension": "2 01"}, "staff.csv:6:1: error: Dan: invalid extension '2 01'"),
])
def test_a_change_ivr_check_would_refuse_is_a_422_with_the_diagnostic_and_writes_nothing(
    directory_server: WebServer, body: dict[str, str], text: str
) -> None:
    csv = directory_server.flow.parent / "staff.csv"
    before = csv.read_text()
    reply = directory_server.client("100").request("POST", PEOPLE, json_body=body)
    assert reply.status == 422, reply.text
    assert reply.json()["error"] == "staff.csv: not changed"
    assert [d["text"] for d in reply.json()["diagnostics"] if d["severity"] == "error"] == [text]
    assert csv.read_text() == before
    assert not [p for p in csv.parent.iterdir() if p.name.startswith(".staff.csv.")]


@pytest.mark.parametrize("method, path, body, status, error", [
    ("PUT", f"{PEOPLE}/2", {"first_name": "X", "extension": "201"}, 404,
     "nobody is listed on line 2 of staff.csv"),
    ("DELETE", f"{PEOPLE}/99", None, 404, "nobody is listed on line 99 of staff.csv"),
    ("DELETE", f"{PEOPLE}/first", None, 400, "a person is named by the line of the file that lists them (a number)"),
    ("POST", "/api/v1/directories/..%2Fstaff/people", {"first_name": "X", "extension": "201"}, 404,
     "no directory '../staff' in the flows (directories: staff)"),
    ("POST", PEOPLE, {"first_name": "X\nY", "extension": "201"}, 400,
     "body.first_name: 'X\\nY' does not match [^\\r\\n]*"),
    ("POST", PEOPLE, {"first_name": "X", "extension": "201", "name_recording": "/etc/passwd"}, 400,
     "body: unknown field(s) name_recording"),
])
def test_bad_directory_requests_are_clear_and_change_nothing(
    directory_server: WebServer, method: str, path: str, body: object, status: int, error: str
) -> None:
    csv = directory_server.flow.parent / "staff.csv"
    before = csv.read_text()
    reply = directory_server.client("100").request(method, path, json_body=body)
    assert (reply.status, reply.json()) == (status, {"error": error})
    assert csv.read_text() == before


@pytest.mark.parametrize("method, path", [("GET", "/api/v1/directories"), ("POST", PEOPLE), ("PUT", f"{PEOPLE}/4"),
                                          ("DELETE", f"{PEOPLE}/4")])
def test_a_user_cannot_see_or_change_the_directory(directory_server: WebServer, method: str, path: str) -> None:
    csv = directory_server.flow.parent / "staff.csv"
    before = csv.read_text()
    reply = directory_server.client("201").request(method, path, json_body={"first_name": "X", "extension": "201"}
                                                   if method in ("POST", "PUT") else None)
    assert (reply.status, reply.json()) == (403, {"error": "this needs the admin role"})
    assert csv.read_text() == before
