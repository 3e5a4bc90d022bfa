"""``ivr db upgrade`` and ``ivr db migrate-from-sqlite DATA`` against a real PostgreSQL."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.runtime.journal import Journal
from ivr.sip.registrar import Binding, RegistrationStore
from ivr.storage import Storage
from ivr.storage.database import PostgresDatabase
from ivr.voicemail.store import VoicemailStore
from tests.postgres import Postgres
from tests.storage.test_storage import recording


def deployment(tmp_path: Path, url: str) -> Path:
    toml = tmp_path / "ivr.toml"
    toml.write_text(f'[storage]\nurl = "{url}"\nshared = "shared"\npool_size = 2\n\n[[mailboxes]]\nnumber = "200"\n')
    return toml


def test_upgrade_then_nothing_to_do(postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    url = postgres.new_database()
    toml = deployment(tmp_path, url)
    assert main(["db", "upgrade", "--config", str(toml)]) == 0
    assert capsys.readouterr().out == f"{url}: applied 0001_initial\n"
    assert main(["db", "upgrade", "--config", str(toml)]) == 0
    assert capsys.readouterr().out == f"{url}: schema up to date\n"


def test_without_a_url_there_is_nothing_to_upgrade(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    toml = tmp_path / "ivr.toml"
    toml.write_text("")
    assert main(["db", "upgrade", "--config", str(toml)]) == 1
    assert capsys.readouterr().err == (
        f"ivr db: {toml} has no [storage] url: the embedded SQLite files need no upgrade\n")


def test_a_node_will_not_use_a_database_before_its_upgrade(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    url = postgres.new_database()
    assert main(["switch", "night", "on", "--config", str(deployment(tmp_path, url))]) == 1
    assert capsys.readouterr().err == (
        f"ivr switch: {url}: schema version 0, this ivr needs 1: run `ivr db upgrade`\n")


def embedded_installation(data: Path) -> dict[str, object]:
    """A data folder as `ivr serve` leaves it: calls, two messages (one with mail queued), a binding, switches."""
    journal = Journal.open(data)
    journal.started("c1", "+41791112233", "+41435435570", at=100.0)
    journal.ended("c1", outcome="voicemail", detail="200", cause="normal", at=130.0)
    journal.started("c2", "+41220000000", "+41435435570", at=200.0)
    journal.close()
    store = VoicemailStore(data)
    first = store.add("200", caller="+41791112233", duration=1.5, source=recording(data / "a.wav"), received_at=110.0,
                      notify=["owner@example.com"])
    second = store.add("200", caller="+41220000000", duration=1.5, source=recording(data / "b.wav"), received_at=210.0)
    store.mark_saved(second.id)
    recording(store.greeting_path("200", "unavailable"))
    recording(store.incoming_path("200", "+41000000000", 300.0))  # cut by a crash: stays behind
    bindings = RegistrationStore(data / "registrations.sqlite")
    bindings.apply("201", [Binding("201", "sip:201@10.0.0.5:5062", ("10.0.0.5", 5062), "udp", 4e9, "reg-1", 3)], [])
    bindings.close()
    (data / "switches.json").write_text(json.dumps({"night": True, "storm": False}))
    return {"messages": [first.id, second.id]}


def test_migrate_from_sqlite_moves_everything_over(
    postgres: Postgres, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "old-data"
    made = embedded_installation(data)
    url = postgres.new_database()
    toml = deployment(tmp_path, url)
    assert main(["db", "upgrade", "--config", str(toml)]) == 0
    capsys.readouterr()
    assert main(["db", "migrate-from-sqlite", str(data), "--config", str(toml)]) == 0
    assert capsys.readouterr().out == (
        "moved 2 call(s), 2 message(s) with 3 audio file(s), 1 queued e-mail(s), 1 registration(s), 2 switch(es);"
        " 1 recording(s) left in incoming/ (serve the old folder once to recover them)\n")

    storage = Storage(tmp_path / "node", tmp_path / "shared", PostgresDatabase(url))
    try:
        rows = Journal.reader(storage).query()
        assert [(r.call_id, r.outcome, r.duration) for r in rows] == [("c2", None, None), ("c1", "voicemail", 30.0)]
        store = VoicemailStore.on(storage)
        messages = store.list("200")
        assert [(m.id, m.status, m.caller) for m in messages] == [
            (made["messages"][0], "new", "+41791112233"), (made["messages"][1], "saved", "+41220000000")]  # type: ignore[index]
        assert all(m.path.is_file() and m.path.is_relative_to(tmp_path / "shared") for m in messages)
        assert store.has_greeting("200", "unavailable")
        [mail] = store.due_mail(1e9)
        assert mail.message.id == made["messages"][0]  # type: ignore[index]
        later = store.add("200", caller="x", duration=1, source=recording(tmp_path / "c.wav"))
        assert later.id > max(made["messages"])  # type: ignore[call-overload]  # numbering goes on after the old ones
        assert [b.uri for b in storage.bindings().bindings("201")] == ["sip:201@10.0.0.5:5062"]
        assert main(["switch", "--config", str(toml)]) == 0
        assert capsys.readouterr().out == "night: on\nstorm: off\n"
        assert main(["calls", "--config", str(toml), "--json"]) == 0  # the admin's commands read the database
        assert [json.loads(line)["call_id"] for line in capsys.readouterr().out.splitlines()] == ["c2", "c1"]
        assert main(["mailbox", "list", "200", "--config", str(toml)]) == 0
        assert capsys.readouterr().out.splitlines()[0] == "mailbox 200: 2 new, 1 saved"
    finally:
        storage.close()
    assert (data / "voicemail" / "index.sqlite3").is_file()  # the old installation is left as it was

    assert main(["db", "migrate-from-sqlite", str(data), "--config", str(toml)]) == 1
    assert capsys.readouterr().err == (
        f"ivr db: {url}: the voicemail tables already hold messages; migrate into an empty one\n")


def test_serve_refuses_a_database_without_its_schema_before_binding(postgres: Postgres, tmp_path: Path) -> None:
    import subprocess
    import sys

    url = postgres.new_database()
    flow = tmp_path / "hangup.ivr"
    flow.write_text("number default -> start\n\nstart:\n    hangup\n")
    result = subprocess.run(
        [sys.executable, "-m", "ivr", "serve", str(flow), "--config", str(deployment(tmp_path, url)),
         "--listen", "127.0.0.1:0", "--log-format", "json"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )
    assert result.returncode == 1
    errors = [json.loads(line) for line in result.stderr.splitlines() if line.startswith("{")]
    [error] = [e for e in errors if e.get("event") == "error"]
    assert error["message"] == f"storage: {url}: schema version 0, this ivr needs 1: run `ivr db upgrade`"
    assert not any(e.get("event") == "listening" for e in errors)


@pytest.mark.parametrize(("section", "message"), [
    ('url = "mysql://x"', "url must start with postgresql:// (empty: SQLite in the data folder)"),
    ("pool_size = 0", "pool_size must be 1 or more"),
    ("colour = 1", "unknown key(s) colour"),
])
def test_storage_settings_are_checked(tmp_path: Path, section: str, message: str) -> None:
    from ivr.config import ConfigError, load_config

    toml = tmp_path / "ivr.toml"
    toml.write_text(f"[storage]\n{section}\n")
    with pytest.raises(ConfigError) as info:
        load_config(toml)
    assert str(info.value) == f"{toml}: [storage]: {message}"
