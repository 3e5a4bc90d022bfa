"""A user's on-call (Pikett) number through the API of a real ``ivr serve``: set, off call, reset,
checked, and never another user's.  What it does to calls: tests/runtime/test_forwarding.py and
flows/support.ivrtest (``transfer to pikett GROUP``)."""

from __future__ import annotations

import json

import pytest

from .conftest import WebServer

pytestmark = [pytest.mark.slow, pytest.mark.peer]


def test_a_user_goes_on_call_off_call_and_back_to_the_deployments_number(web_server: WebServer) -> None:
    client = web_server.client("201")
    path = "/api/v1/extensions/201/pikett"
    assert client.get(path).json() == {"extension": "201", "pikett": "", "from_console": False,
                                       "deployment_pikett": ""}
    reply = client.request("PUT", path, json_body={"pikett": "+41 79 700 12 01"})
    assert reply.json() == {"extension": "201", "pikett": "+41797001201", "from_console": True,
                            "deployment_pikett": ""}
    stored = json.loads((web_server.data / "forwarding.json").read_text())
    assert stored["201"]["pikett"] == "+41797001201"
    assert client.request("PUT", path, json_body={"pikett": ""}).json()["pikett"] == ""
    assert client.request("PUT", path, json_body={"pikett": None}).json()["from_console"] is False
    assert "pikett" not in json.loads((web_server.data / "forwarding.json").read_text()).get("201", {})


@pytest.mark.parametrize("body, error", [
    ({"pikett": "sip:evil@example.com"},
     "not a phone number: 'sip:evil@example.com' (digits, optionally starting with +)"),
    ({"pikett": 41797001201}, "body.pikett: expected string or null"),
    ({}, "body: missing pikett"),
])
def test_a_bad_pikett_number_is_a_400_and_changes_nothing(web_server: WebServer, body: object, error: str) -> None:
    client = web_server.client("202")
    before = client.get("/api/v1/extensions/202/pikett").json()
    reply = client.request("PUT", "/api/v1/extensions/202/pikett", json_body=body)
    assert (reply.status, reply.json()) == (400, {"error": error})
    assert client.get("/api/v1/extensions/202/pikett").json() == before


@pytest.mark.parametrize("method", ["GET", "PUT"])
def test_a_user_cannot_see_or_change_another_users_pikett_number(web_server: WebServer, method: str) -> None:
    admin = web_server.client("100")
    admin.request("PUT", "/api/v1/extensions/202/pikett", json_body={"pikett": "+41797001202"})
    reply = web_server.client("201").request(method, "/api/v1/extensions/202/pikett",
                                             json_body={"pikett": "+41797009999"} if method == "PUT" else None)
    assert (reply.status, reply.json()) == (403, {"error": "extension 202 is not yours"})
    assert admin.get("/api/v1/extensions/202/pikett").json()["pikett"] == "+41797001202"
    admin.request("PUT", "/api/v1/extensions/202/pikett", json_body={"pikett": None})
