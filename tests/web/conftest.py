"""A real ``ivr serve`` with the console on, for the web tests (the peer harness starts it).

The session-scoped :func:`web_server` (one server for the web tests) runs ``tests/web/flows/office.ivr`` (copied into the
test's folder: deploy tests rewrite it) with three extensions: 100 is an admin, 201 and 202 are
users, each with a mailbox and a web password set with the same code ``ivr web passwd`` runs.
"""

from __future__ import annotations

import copy
import shutil
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.web.users import set_password
from tests.transfer.harness import fixtures, peers

from .client import Client

globals().update(fixtures)  # sipp, ... from tests/peers/conftest.py (tts_cache is tests/conftest.py's)

HERE = Path(__file__).resolve().parent
PASSWORDS = {"100": "admin-pass-100", "201": "alice-pass-201", "202": "bob-pass-202"}
SECTIONS = """
[http]
listen = "127.0.0.1:0"
admins = ["100"]
session_lifetime = "{lifetime}"
upload_limit = 20000

[[extensions]]
number = "100"
name = "Reception"
username = "100"
password = "rcp-secret-100"
mailbox = "100"

[[extensions]]
number = "201"
name = "Alice"
username = "201"
password = "ali-secret-201"
mailbox = "201"
follow_me = ["+41797001201"]

[[extensions]]
number = "202"
name = "Bob"
username = "202"
password = "bob-secret-202"
mailbox = "202"

[[mailboxes]]
number = "100"
owner = "Reception"

[[mailboxes]]
number = "201"
owner = "Alice"

[[mailboxes]]
number = "202"
owner = "Bob"
"""


@dataclass
class WebServer:
    ivr: object  # tests/peers/conftest.py's IvrServer
    url: str
    flow: Path
    data: Path
    prompts: Path
    _logins: dict[str, Client] = field(default_factory=dict)

    def client(self, user: str | None = None, *, fresh: bool = False) -> Client:
        """A client logged in as ``user``: a copy of the module's login unless ``fresh``."""
        if user is None:
            return Client(self.url)
        if fresh or user not in self._logins:
            client = Client(self.url)
            reply = client.login(user, PASSWORDS[user])
            assert reply.status == 200, reply.text
            if fresh:
                return client
            self._logins[user] = client
        login = self._logins[user]
        client = Client(self.url)
        for cookie in login.jar:
            client.jar.set_cookie(copy.copy(cookie))
        client.csrf = login.csrf
        return client


def start_web(tmp: Path, tts_cache: Path, lifetime: str = "8h", *, more: tuple[str, ...] = ()) -> WebServer:
    """A server on office.ivr and the flows (and files) ``more`` names from tests/web/flows/."""
    flow = tmp / "office.ivr"
    for name in ("office.ivr", *more):
        shutil.copy(HERE / "flows" / name, tmp / name)
    (tmp / "data").mkdir(exist_ok=True)
    # The passwords go in before the start, with the server's own config reader and hasher.
    toml = tmp / "users.toml"
    toml.write_text(f'[server]\ndata = "{tmp / "data"}"\n' + SECTIONS.format(lifetime=lifetime))
    config = load_config(toml)
    for user, password in PASSWORDS.items():
        set_password(config, user, password)
    prompts = tmp / "prompts"  # the first prompt folder: prompt uploads land here
    prompts.mkdir(exist_ok=True)
    ivr = peers.start_ivr(tmp, [flow, *(tmp / m for m in more if m.endswith(".ivr"))], sections=SECTIONS.format(lifetime=lifetime), tts_cache=tts_cache,
                          prompt_folders=(prompts,))
    record = ivr.wait_for(lambda r: r.get("event") == "http_listening", what="http_listening")
    return WebServer(ivr, record["url"], flow, ivr.data, prompts)


@pytest.fixture(scope="session")
def web_server(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[WebServer]:
    server = start_web(tmp_path_factory.mktemp("web"), tts_cache)
    yield server
    server.ivr.stop()  # type: ignore[attr-defined]


@pytest.fixture(scope="session")
def directory_server(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[WebServer]:
    """A server that also runs people.ivr, whose keypad directory is staff.csv (the directory tests change it)."""
    server = start_web(tmp_path_factory.mktemp("web-directory"), tts_cache, more=("people.ivr", "staff.csv"))
    yield server
    server.ivr.stop()  # type: ignore[attr-defined]
