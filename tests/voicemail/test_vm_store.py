"""VoicemailStore: index and files, ordering, counts, delete with queued mail, crash recovery."""

from __future__ import annotations

import sqlite3

import numpy as np
import pytest
import soundfile

from ivr.media.recording import WavRecorder
from ivr.voicemail.store import MailboxFull, VoicemailStore, check_box


def _recording(path, seconds=1.5):
    path.parent.mkdir(parents=True, exist_ok=True)
    t = np.arange(int(8000 * seconds)) / 8000
    soundfile.write(path, (np.sin(2 * np.pi * 300 * t) * 0.3), 8000, subtype="PCM_16")
    return path


def test_add_moves_the_file_and_indexes_it(tmp_path):
    store = VoicemailStore(tmp_path)
    src = _recording(store.incoming_path("200", "+41791112233", 1_700_000_000))
    msg = store.add(
        "200", caller="+41791112233", duration=1.5, source=src, received_at=1_700_000_000
    )
    assert not src.exists() and msg.path.is_file()
    assert msg.path.parent == tmp_path.resolve() / "voicemail" / "200"
    assert store.get(msg.id) == msg
    assert store.data_ref(msg.path) == f"data:voicemail/200/{msg.path.name}"
    with sqlite3.connect(store.db_path) as db:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_listing_order_counts_save_and_delete(tmp_path):
    store = VoicemailStore(tmp_path)
    ids = []
    for i, when in enumerate((300.0, 100.0, 200.0)):
        src = _recording(tmp_path / f"r{i}.wav")
        ids.append(store.add("200", caller=f"10{i}", duration=1.5, source=src, received_at=when).id)
    store.add(
        "300", caller="x", duration=1.5, source=_recording(tmp_path / "o.wav"), received_at=50.0
    )
    assert [m.caller for m in store.list("200")] == ["101", "102", "100"]
    store.mark_saved(ids[1])
    assert [m.caller for m in store.list("200")] == ["102", "100", "101"]  # new first, then saved
    assert store.counts("200") == (2, 1)
    assert [m.caller for m in store.list("200", "saved")] == ["101"]
    first = store.get(ids[0])
    assert first is not None
    path = first.path
    assert store.delete(ids[0]) and not path.exists()
    assert store.get(ids[0]) is None and not store.delete(ids[0])
    assert store.counts("200") == (1, 1) and store.counts("300") == (1, 0)


def test_max_messages(tmp_path):
    store = VoicemailStore(tmp_path)
    store.add("200", caller="1", duration=1, source=_recording(tmp_path / "a.wav"), max_messages=1)
    with pytest.raises(MailboxFull, match="mailbox 200 is full"):
        store.add(
            "200", caller="2", duration=1, source=_recording(tmp_path / "b.wav"), max_messages=1
        )
    assert (tmp_path / "b.wav").exists()  # refused, not lost


def test_deleting_a_message_whose_mail_is_queued_keeps_the_audio_until_sent(tmp_path):
    store = VoicemailStore(tmp_path)
    msg = store.add(
        "200",
        caller="1",
        duration=1.5,
        source=_recording(tmp_path / "a.wav"),
        notify=["a@example.com"],
    )
    assert store.delete(msg.id)
    assert store.list("200") == [] and store.counts("200") == (0, 0)
    assert msg.path.exists()
    (item,) = store.due_mail(now=msg.received_at + 1)
    assert item.message.path == msg.path and item.recipients == ("a@example.com",)
    store.mail_sent(item.id, now=msg.received_at + 2)
    assert not msg.path.exists() and store.due_mail(now=1e12) == []


def test_bad_mailbox_numbers_cannot_make_paths(tmp_path):
    for bad in ("../x", "a/b", "", ".."):
        with pytest.raises(ValueError, match="mailbox number"):
            check_box(bad)
    with pytest.raises(ValueError):
        VoicemailStore(tmp_path).incoming_path("../../etc", "1", 0)


def test_recover_indexes_a_recording_cut_by_a_crash(tmp_path):
    store = VoicemailStore(tmp_path)
    path = store.incoming_path("200", "+41 79 111", 1_700_000_000)
    rec = WavRecorder(path, max_length=60, clock=lambda: 0.0)  # clock frozen: header never updated
    t = np.arange(160) / 8000
    for i in range(100):
        rec.write((np.sin(2 * np.pi * 300 * (t + i * 0.02)) * 9000).astype(np.int16))
    # no close(): as if killed here
    short = _recording(store.incoming_path("200", "555", 1_700_000_100), seconds=0.3)
    orphan = _recording(store.box_dir("300") / "20240101-000000-deadbeef.wav")
    found = VoicemailStore(tmp_path).recover({"200": ["owner@example.com"]})
    assert [(m.mailbox, m.caller) for m in found] == [("200", "+4179111"), ("300", "unknown")]
    assert found[0].duration == pytest.approx(2.0) and found[0].received_at == 1_700_000_000
    assert soundfile.info(str(found[0].path)).duration == pytest.approx(2.0)
    assert not short.exists() and orphan.exists()
    assert [i.message.id for i in store.due_mail(now=2e9)] == [found[0].id]
    assert VoicemailStore(tmp_path).recover() == []
