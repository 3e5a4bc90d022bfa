"""``ivr mailbox`` set-pin / list / play / delete on a real deployment file and data folder."""

from __future__ import annotations

import io

import numpy as np
import pytest
import soundfile

from ivr.cli import main
from ivr.config import ConfigError, load_config
from ivr.voicemail.pins import verify_pin
from ivr.voicemail.store import VoicemailStore

TOML = """\
# Acme deployment
[server]
data = "data"

[[mailboxes]]
number = "200"
owner = "Alice Example"   # sales
emails = ["alice@example.com"]

[[mailboxes]]
number = 300
owner = "Bob"
pin_hash = "keep-me"
"""


@pytest.fixture
def deployment(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(TOML)
    return path


def test_set_pin_rewrites_only_that_hash(deployment, capsys):
    deployment.chmod(0o640)  # it holds PIN hashes: the rewrite keeps the file's mode
    assert main(["mailbox", "set-pin", "200", "--pin", "2580", "--config", str(deployment)]) == 0
    text = deployment.read_text()
    assert "# Acme deployment" in text and 'owner = "Alice Example"   # sales' in text
    assert 'pin_hash = "keep-me"' in text
    config = load_config(deployment)
    box = config.mailbox("200")
    assert box is not None and verify_pin("2580", box.pin_hash)
    assert "PIN of mailbox 200 set" in capsys.readouterr().out
    assert main(["mailbox", "set-pin", "300", "--pin", "7391", "--config", str(deployment)]) == 0
    assert 'pin_hash = "keep-me"' not in deployment.read_text()
    assert deployment.stat().st_mode & 0o777 == 0o640
    assert [p.name for p in deployment.parent.iterdir()] == ["ivr.toml"]  # no temporary file left


@pytest.mark.parametrize(
    ("pin", "error"), [("1234", "consecutive digits"), ("200", "4 to 12 digits"), ("", "empty")]
)
def test_set_pin_refuses_weak_pins_and_changes_nothing(deployment, capsys, pin, error):
    assert main(["mailbox", "set-pin", "200", "--pin", pin, "--config", str(deployment)]) == 1
    assert error in capsys.readouterr().err
    assert deployment.read_text() == TOML


def test_set_pin_unknown_box_or_file(deployment, tmp_path, capsys):
    assert main(["mailbox", "set-pin", "999", "--pin", "2580", "--config", str(deployment)]) == 1
    assert "no [[mailboxes]] entry with number 999" in capsys.readouterr().err
    assert (
        main(
            ["mailbox", "set-pin", "200", "--pin", "2580", "--config", str(tmp_path / "nope.toml")]
        )
        == 1
    )
    assert "no such deployment file" in capsys.readouterr().err


def test_list_play_delete(deployment, tmp_path, capsys):
    store = VoicemailStore(tmp_path / "data")
    for i, seconds in enumerate((1.0, 2.0)):
        src = tmp_path / f"{i}.wav"
        soundfile.write(src, np.full(int(8000 * seconds), 1000 * (i + 1), np.int16), 8000)
        store.add(
            "200",
            caller=f"+4179000000{i}",
            duration=seconds,
            source=src,
            received_at=1_700_000_000 + i,
        )
    cfg = ["--config", str(deployment)]
    assert main(["mailbox", "list", "200", *cfg]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == "mailbox 200: 2 new, 0 saved"
    assert out[1].split()[0:2] == ["1", "new"] and out[1].endswith("1.0 s  +41790000000")
    assert out[2].endswith("2.0 s  +41790000001")
    wav = tmp_path / "out.wav"
    assert main(["mailbox", "play", "200", "2", "-o", str(wav), *cfg]) == 0
    data, rate = soundfile.read(wav, dtype="int16")
    assert rate == 8000 and len(data) == 16000 and data[0] == 2000
    assert main(["mailbox", "delete", "200", "1", *cfg]) == 0
    assert [m.caller for m in store.list("200")] == ["+41790000001"]
    capsys.readouterr()
    assert main(["mailbox", "play", "200", "5", "-o", str(wav), *cfg]) == 1
    assert "mailbox 200 has 1 message(s); there is no message 5" in capsys.readouterr().err
    assert main(["mailbox", "list", "555", *cfg]) == 1
    assert "no mailbox 555 in" in capsys.readouterr().err


def test_mailbox_silence_and_min_length_in_the_deployment_file(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text('[[mailboxes]]\nnumber = "200"\nsilence = "3s"\nmin_length = "500ms"\n')
    box = load_config(path).mailbox("200")
    assert box is not None and (box.silence, box.min_length) == (3.0, 0.5)


def test_mailbox_greetings_in_the_deployment_file(tmp_path):
    path = tmp_path / "ivr.toml"
    path.write_text(
        '[[mailboxes]]\nnumber = "200"\ngreetings = { busy = "g/busy.wav", name = "g/name.wav" }\n'
    )
    box = load_config(path).mailbox("200")
    assert (
        box is not None
        and box.greeting("busy") == "g/busy.wav"
        and box.greeting("temporary") is None
    )
    path.write_text('[[mailboxes]]\nnumber = "200"\ngreetings = { away = "x.wav" }\n')
    with pytest.raises(
        ConfigError, match="unknown greeting.s. away; use unavailable, busy, temporary, name"
    ):
        load_config(path)


def test_set_pin_reads_one_line_from_a_pipe(deployment, monkeypatch):
    monkeypatch.setattr("sys.stdin", io.StringIO("4711\n"))
    assert main(["mailbox", "set-pin", "200", "--config", str(deployment)]) == 0
    box = load_config(deployment).mailbox("200")
    assert box is not None and verify_pin("4711", box.pin_hash)
