"""The call journal: rows from the runner's log records, queries, and the ``ivr calls`` command."""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from ivr.commands.calls import SinceError, parse_since
from ivr.runtime.journal import Journal


def feed(journal: Journal, call_id: str, records: Sequence[Mapping[str, object]], caller: str = "+41791112233") -> None:
    for fields in records:
        journal.record(call_id, caller, "+41435435570", fields)


TRANSFERRED = [
    {"event": "incoming", "source": "127.0.0.1:5062"},
    {"action": "answer", "codec": "PCMU"},
    {"action": "step", "step": "welcome"},
    {"event": "key", "digit": "1", "via": "rtp"},
    {"event": "key", "digit": "1"},
    {"action": "step", "step": "sales"},
    {"event": "transfer_result", "outcome": "no_answer", "target": "201"},
    {"event": "transfer_result", "outcome": "answered", "target": "202"},
    {"event": "bridge_end", "reason": "callee_bye"},
    {"event": "bridge_ended"},
    {"event": "ended", "reason": "normal", "outcome": "transferred", "detail": "202"},
]


def test_a_transferred_call_is_one_row_with_its_path(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    feed(journal, "c1", TRANSFERRED)
    [row] = journal.query()
    assert row.call_id == "c1" and row.caller == "+41791112233" and row.called == "+41435435570"
    assert row.path == ("welcome", "key:1", "sales", "transfer:no_answer(201)", "transfer:answered(202)",
                        "bridge_ended")
    assert row.outcome == "transferred" and row.describe() == "transferred to 202"
    assert row.hangup_cause == "callee_bye" and row.answered is not None
    assert row.duration is not None and row.duration >= 0
    assert journal.db is not None and journal.db.execute("PRAGMA journal_mode")[0]["journal_mode"] == "wal"
    journal.close()


def test_times_given_are_kept_even_the_epoch(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    journal.started("c0", "+41791112233", "+41435435570", at=0.0)
    journal.answered("c0", at=1.5)
    journal.ended("c0", outcome="hangup", detail="", cause="normal", at=42.25)
    [row] = journal.query()
    assert (row.started, row.answered, row.duration) == (0.0, 1.5, 42.25)
    journal.close()


def test_queries_filter_and_in_progress_calls_show(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    feed(journal, "c1", TRANSFERRED)
    feed(journal, "c2", [{"event": "incoming"}, {"action": "answer"}, {"action": "step", "step": "welcome"},
                         {"event": "bye", "reason": "bye"},
                         {"event": "ended", "reason": "bye", "outcome": "caller_hangup", "detail": ""}],
         caller="+41220000000")
    feed(journal, "c3", [{"event": "incoming"}])
    assert [r.call_id for r in journal.query()] == ["c3", "c2", "c1"]
    assert [r.call_id for r in journal.query(outcome="caller_hangup")] == ["c2"]
    assert [r.call_id for r in journal.query(caller="4122")] == ["c2"]
    assert journal.query(outcome="caller_hangup")[0].describe() == "caller_hangup in welcome"
    assert journal.query(limit=1)[0].describe() == "in progress"
    assert journal.query(since=10**10) == []


def test_rejected_call(tmp_path: Path) -> None:
    journal = Journal.open(tmp_path)
    feed(journal, "r", [{"event": "incoming"}, {"action": "reject", "status": 404},
                        {"event": "ended", "reason": "rejected", "outcome": None, "detail": None}])
    [row] = journal.query()
    assert row.outcome == "rejected" and row.path == ("rejected:404",) and row.answered is None


def test_ivr_calls_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from ivr.cli import main

    journal = Journal.open(tmp_path)
    feed(journal, "c1", TRANSFERRED)
    journal.close()
    assert main(["calls", "--data", str(tmp_path), "--json", "--outcome", "transferred"]) == 0
    [line] = capsys.readouterr().out.splitlines()
    record = json.loads(line)
    assert record["call_id"] == "c1" and record["summary"] == "transferred to 202" and record["path"][0] == "welcome"
    assert main(["calls", "--data", str(tmp_path), "--since", "1h"]) == 0
    assert "transferred to 202" in capsys.readouterr().out
    assert main(["calls", "--data", str(tmp_path / "nothing")]) == 1
    assert "no call journal in" in capsys.readouterr().err
    assert main(["calls", "--data", str(tmp_path), "--since", "yesterday"]) == 1
    assert "expected an age like 2h" in capsys.readouterr().err


def test_parse_since() -> None:
    assert parse_since("2h", now=10_000.0) == 10_000.0 - 7200
    assert parse_since("2026-11-22T08:00") == parse_since("2026-11-22T08:00:00Z")
    with pytest.raises(SinceError):
        parse_since("soon")


def test_a_journal_that_cannot_be_opened_never_stops_a_call(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the data folder should be")
    journal = Journal.open(blocker)
    feed(journal, "c1", TRANSFERRED)  # nothing raised
    assert journal.failed and journal.query() == []
    assert "cannot be opened, calls are not journalled" in caplog.text


def test_a_full_disk_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    journal = Journal.open(tmp_path)
    journal.db.close()  # type: ignore[union-attr]  # every later write fails like a broken disk would
    feed(journal, "c1", TRANSFERRED)
    journal.flush()
    assert journal.failed and caplog.text.count("cannot be written") == 1


def test_writes_run_on_the_journal_thread_and_close_keeps_every_queued_row(tmp_path: Path) -> None:
    """The event loop's thread never executes SQL; rows queued before close() are all on disk."""
    journal = Journal.open(tmp_path)
    assert journal.db is not None
    threads: set[str] = set()
    journal.db.connection.set_trace_callback(  # type: ignore[attr-defined]
        lambda _sql: threads.add(threading.current_thread().name))
    for i in range(200):
        journal.started(f"c{i}", "+41791112233", "+41435435570", at=float(i))
        journal.ended(f"c{i}", outcome="hangup", detail="", cause="normal", at=float(i) + 1)
    journal.close()
    assert threads == {"ivr-journal"}
    reader = Journal.reader(tmp_path)
    rows = reader.query(limit=1000)
    reader.close()
    assert len(rows) == 200 and all(r.ended is not None and r.outcome == "hangup" for r in rows)


def test_rows_queued_together_are_one_commit_and_a_refused_row_costs_only_itself(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    journal = Journal.open(tmp_path)
    db = journal.db
    assert db is not None
    commits: list[str] = []
    db.connection.set_trace_callback(lambda sql: commits.append(sql) if sql == "COMMIT" else None)  # type: ignore[attr-defined]
    with db._lock:  # type: ignore[attr-defined]  # the writer waits at its first write: the others queue meanwhile
        for i in range(20):
            journal.started(f"c{i}", "+41791112233", "+41435435570", at=float(i))
    journal.flush()
    assert 1 <= len(commits) <= 2  # one per batch the writer took, not one per row
    with db._lock:  # type: ignore[attr-defined]
        journal.ended("c1", outcome="hangup", detail="", cause="normal", at=30.0)
        journal.ended("c2", outcome="hangup", detail="", cause="normal", at={"not": "a time"})  # type: ignore[arg-type]
        journal.ended("c3", outcome="hangup", detail="", cause="normal", at=33.0)
    journal.close()
    reader = Journal.reader(tmp_path)
    ended = {r.call_id: r.ended for r in reader.query(limit=100)}
    reader.close()
    assert len(ended) == 20 and ended["c1"] == 30.0 and ended["c3"] == 33.0 and ended["c2"] is None
    assert journal.failed and caplog.text.count("cannot be written") == 1
