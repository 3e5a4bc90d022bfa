"""The storage suite, run on both back ends: the embedded SQLite files and a real PostgreSQL.

Each test taking ``storage`` runs twice: on a data folder's SQLite files, and on a fresh
database of the session's PostgreSQL cluster (tests/postgres.py) with voicemail audio in a
separate "shared" folder, as several nodes would have it.  The journal, the voicemail index,
the bindings and the switches are exercised through the same interfaces the server uses.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.media.prompts import PromptStore
from ivr.runtime.journal import Journal
from ivr.sip.registrar import Binding, BindingStore
from ivr.storage import Storage, StorageError, open_storage
from ivr.storage.database import PostgresDatabase
from ivr.storage.migrations import check_current, migrations, upgrade
from ivr.storage.switches import SwitchError, SwitchWatcher, TableSwitches
from ivr.voicemail.store import MailboxFull, VoicemailStore
from tests.postgres import Postgres


def shared_storage(postgres: Postgres, tmp_path: Path, name: str = "node") -> Storage:
    """A node's view of a fresh shared database (schema applied) and a shared audio folder."""
    db = PostgresDatabase(postgres.new_database())
    upgrade(db)
    return Storage(tmp_path / name, tmp_path / "shared", db)


@pytest.fixture(params=["sqlite", "postgresql"])
def storage(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Storage]:
    if request.param == "sqlite":
        s = Storage(tmp_path / "data", tmp_path / "data")
    else:
        s = shared_storage(request.getfixturevalue("postgres"), tmp_path)
    yield s
    s.close()


def recording(path: Path, seconds: float = 1.5) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(8000 * seconds)) / 8000
    soundfile.write(path, np.sin(2 * np.pi * 300 * t) * 0.3, 8000, subtype="PCM_16")
    return path


# --------------------------------------------------------------------------- journal


def test_journal_rows_queries_and_order(storage: Storage) -> None:
    journal = Journal.open(storage)
    assert not journal.failed
    for i, caller in enumerate(("+41791112233", "+41220000000", "+41220000001")):
        journal.started(f"c{i}", caller, "+41435435570", at=100.0)  # same start: insertion order decides
    journal.answered("c0", at=101.0)
    journal.ended("c0", outcome="transferred", detail="202", cause="normal", at=112.5)
    journal.ended("c1", outcome="caller_hangup", detail="", cause="bye", at=103.0)
    assert [r.call_id for r in journal.query()] == ["c2", "c1", "c0"]
    assert [r.call_id for r in journal.query(caller="4122")] == ["c2", "c1"]
    assert [r.call_id for r in journal.query(outcome="transferred")] == ["c0"]
    assert journal.query(since=200.0) == [] and len(journal.query(limit=1)) == 1
    [c0] = journal.query(outcome="transferred")
    assert (c0.answered, c0.duration, c0.describe()) == (101.0, 12.5, "transferred to 202")
    journal.close()


def test_journal_call_id_seen_again_starts_a_fresh_row_and_odd_text_is_kept(storage: Storage) -> None:
    journal = Journal.open(storage)
    journal.started("c", "old", "x", at=1.0)
    journal.ended("c", outcome="hangup", detail="", cause="normal", at=2.0)
    journal.started("c", "caller\udcff\x00!", "x", at=5.0)  # not UTF-8, a NUL: neither may stop the writer
    [row] = journal.query()
    assert (row.started, row.ended, row.outcome, row.caller) == (5.0, None, None, "caller?!")
    journal.close()


# --------------------------------------------------------------------------- voicemail


def test_voicemail_add_list_save_delete_and_play(storage: Storage) -> None:
    store = VoicemailStore.on(storage)
    ids = []
    for i, when in enumerate((300.0, 100.0, 200.0)):
        src = recording(store.incoming_path("200", f"10{i}", when))
        ids.append(store.add("200", caller=f"10{i}", duration=1.5, source=src, received_at=when).id)
    assert [m.caller for m in store.list("200")] == ["101", "102", "100"]
    store.mark_saved(ids[1])
    assert [m.caller for m in store.list("200")] == ["102", "100", "101"] and store.counts("200") == (2, 1)
    message = store.get(ids[0])
    assert message is not None and message.path.parent == storage.shared_folder.resolve() / "voicemail" / "200"
    prompts = PromptStore([], storage.data, shared_data=(storage.shared_folder,))
    assert prompts.resolve(store.data_ref(message.path)) == message.path  # the data: path a call plays
    assert store.delete(ids[0]) and not message.path.exists() and store.get(ids[0]) is None
    with pytest.raises(MailboxFull, match="mailbox 200 is full"):
        store.add("200", caller="1", duration=1, source=recording(storage.data / "x.wav"), max_messages=2)


def test_voicemail_outbox_keeps_a_deleted_message_until_its_mail_is_sent(storage: Storage) -> None:
    store = VoicemailStore.on(storage)
    src = recording(storage.data / "r.wav")
    message = store.add("200", caller="1", duration=1.5, source=src, received_at=10.0, notify=["a@example.com"])
    [item] = store.due_mail(10.0)
    assert item.message.id == message.id and item.recipients == ("a@example.com",)
    store.mail_failed(item.id, "refused", 70.0)
    assert store.next_mail_due() == 70.0 and store.due_mail(60.0) == []
    assert store.delete(message.id) and message.path.exists()  # the queued mail still carries it
    store.mail_sent(item.id, 71.0)
    assert not message.path.exists() and store.mail_status(message.id) == []
    assert store.next_mail_due() is None


def test_voicemail_recovers_what_a_crash_left_in_incoming(storage: Storage) -> None:
    store = VoicemailStore.on(storage)
    recording(store.incoming_path("200", "+41791112233", 1_700_000_000))
    [found] = store.recover({"200": ["owner@example.com"]})
    assert found.caller == "+41791112233" and found.received_at == 1_700_000_000
    assert store.list("200") == [found] and len(store.due_mail(2e9)) == 1
    assert VoicemailStore.on(storage).recover() == []


# --------------------------------------------------------------------------- bindings


def _binding(uri: str, expires_at: float, cseq: int = 1) -> Binding:
    return Binding("201", uri, ("127.0.0.1", 5070), "udp", expires_at, "call-1", cseq, 0.5, ";+sip.instance=x", "ua")


def test_bindings_apply_order_refresh_and_purge(storage: Storage) -> None:
    store: BindingStore = storage.bindings()
    store.apply("201", [_binding("sip:201@10.0.0.1", 100.0), _binding("sip:201@10.0.0.2", 200.0)], [])
    store.apply("201", [_binding("sip:201@10.0.0.1", 300.0, cseq=2)], [])  # a refresh: now the newest
    assert [(b.uri, b.expires_at, b.cseq) for b in store.bindings("201")] == [
        ("sip:201@10.0.0.2", 200.0, 1), ("sip:201@10.0.0.1", 300.0, 2)]
    assert store.bindings("201")[0] == _binding("sip:201@10.0.0.2", 200.0)
    assert [b.uri for b in store.bindings("201", now=250.0)] == ["sip:201@10.0.0.1"]
    assert store.purge_expired(250.0) == 1
    store.apply("201", [], ["sip:201@10.0.0.1"])
    assert store.bindings("201") == [] and store.bindings("202") == []
    store.close()


# --------------------------------------------------------------------------- shared: two nodes, one database


def test_two_nodes_see_each_others_state_at_once(postgres: Postgres, tmp_path: Path) -> None:
    a = shared_storage(postgres, tmp_path, "a")
    assert a.db is not None
    b = Storage(tmp_path / "b", tmp_path / "shared", PostgresDatabase(a.db.url))
    changed = threading.Event()
    watcher = SwitchWatcher(TableSwitches(b.db), on_change=lambda positions: changed.set())  # type: ignore[arg-type]
    watcher.start()
    try:
        assert watcher.positions() == {}
        TableSwitches(a.db).set("night", True)
        assert changed.wait(10) and watcher.positions() == {"night": True}
        src = recording(VoicemailStore.on(a).incoming_path("200", "+41791112233", 5.0))
        left = VoicemailStore.on(a).add("200", caller="+41791112233", duration=1.5, source=src)
        [seen] = VoicemailStore.on(b).list("200")
        assert seen.id == left.id and seen.path == left.path and seen.path.is_file()
        a.bindings().apply("201", [_binding("sip:201@10.0.0.1", math.inf)], [])
        assert [x.uri for x in b.bindings().bindings("201")] == ["sip:201@10.0.0.1"]
    finally:
        watcher.stop()
        a.close()
        b.close()


def test_switch_names_are_checked(postgres: Postgres, tmp_path: Path) -> None:
    s = shared_storage(postgres, tmp_path)
    assert s.db is not None
    with pytest.raises(SwitchError, match="bad switch name 'Night!': use lower-case letters, digits and _"):
        TableSwitches(s.db).set("Night!", True)
    s.close()


# --------------------------------------------------------------------------- schema


def test_a_node_refuses_a_database_without_its_schema_and_upgrade_is_idempotent(postgres: Postgres) -> None:
    db = PostgresDatabase(postgres.new_database())
    want = migrations()[-1].version
    with pytest.raises(StorageError, match=rf"schema version 0, this ivr needs {want}: run `ivr db upgrade`"):
        check_current(db)
    assert [m.version for m in upgrade(db)] == [m.version for m in migrations()]
    assert upgrade(db) == []
    check_current(db)
    db.execute("INSERT INTO ivr_schema (version, name) VALUES (?, 'future')", (want + 1,))
    with pytest.raises(StorageError, match=rf"schema version {want + 1} is newer than this ivr \({want}\)"):
        check_current(db)
    db.close()


def test_an_unreachable_database_is_named_without_its_password(tmp_path: Path) -> None:
    from ivr.config import load_config

    toml = tmp_path / "ivr.toml"
    toml.write_text('[storage]\nurl = "postgresql://ivr:secret@127.0.0.1:1/ivr"\npool_size = 1\n')
    with pytest.raises(StorageError, match=r"postgresql://ivr:\*\*\*@127.0.0.1:1/ivr: cannot connect") as info:
        PostgresDatabase(load_config(toml).storage.url, timeout=1.0)
    assert "secret" not in str(info.value)


def test_embedded_is_the_default(tmp_path: Path) -> None:
    from ivr.config import load_config

    storage = open_storage(load_config(None, data=tmp_path / "data"))
    assert storage.kind == "embedded" and storage.db is None and storage.shared_folder == (tmp_path / "data").resolve()
    Journal.open(storage).close()
    VoicemailStore.on(storage)
    storage.bindings().close()
    assert sorted(p.name for p in (tmp_path / "data").rglob("*") if p.suffix in (".sqlite", ".sqlite3")) == [
        "index.sqlite3", "journal.sqlite3", "registrations.sqlite"]
    storage.close()
