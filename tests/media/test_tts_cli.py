"""``ivr tts`` and ``ivr prompts render`` as an admin runs them."""

from __future__ import annotations

import pytest
import soundfile

from ivr.cli import main


def test_ivr_tts_writes_an_8k_wav(tmp_path, capsys):
    out = tmp_path / "hello.wav"
    assert (
        main(
            [
                "tts",
                "Hello from Acme",
                "-o",
                str(out),
                "--data",
                str(tmp_path / "data"),
                "--rate",
                "150",
            ]
        )
        == 0
    )
    info = soundfile.info(str(out))
    assert (info.samplerate, info.channels, info.subtype) == (8000, 1, "PCM_16")
    assert 0.5 < info.duration < 3
    assert "8000 Hz mono PCM16" in capsys.readouterr().out


def test_ivr_tts_unknown_voice_fails_cleanly(tmp_path, capsys):
    rc = main(
        ["tts", "x", "-o", str(tmp_path / "x.wav"), "--data", str(tmp_path), "--voice", "nope"]
    )
    assert rc == 1
    assert "ivr tts: unknown TTS voice 'nope'" in capsys.readouterr().err
    assert not (tmp_path / "x.wav").exists()


def test_ivr_prompts_render_lists_what_it_made(tmp_path, capsys):
    pytest.importorskip("ivr.dsl.loader")
    flow = tmp_path / "small.ivr"
    flow.write_text('number default -> start\n\nstart:\n    say "Welcome to Acme."\n    hangup\n')
    (tmp_path / "prompts").mkdir()
    args = ["prompts", "render", str(flow), "--data", str(tmp_path / "data")]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "Welcome to Acme." in out and "1 newly rendered" in out
    assert main(args) == 0
    assert "0 newly rendered" in capsys.readouterr().out


def test_ivr_prompts_render_includes_voicemail_texts(tmp_path, capsys):
    pytest.importorskip("ivr.dsl.loader")
    flow = tmp_path / "small.ivr"
    flow.write_text("number default -> start\n\nstart:\n    voicemail 200\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "ivr.toml").write_text('[[mailboxes]]\nnumber = "200"\nowner = "Alice Example"\n')
    assert main(["prompts", "render", str(flow), "--config", str(tmp_path / "ivr.toml")]) == 0
    out = capsys.readouterr().out
    assert "Alice Example is not available. Please leave a message" in out
    assert "Please enter your PIN, then press hash." in out
