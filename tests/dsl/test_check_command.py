"""``ivr check``: output format, exit codes, --strict, prompt folders from --prompts and the deployment file."""

from __future__ import annotations

import io
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile

from ivr.cli import main


def _wav() -> bytes:
    """A real 0.1 s WAV: prompts are checked for being playable, not only for existing."""
    out = io.BytesIO()
    soundfile.write(out, np.zeros(800, dtype=np.int16), 8000, format="WAV", subtype="PCM_16")
    return out.getvalue()


WAV = _wav()
GOOD = 'number default -> s\ns:\n    play "hello.wav"\n    hangup\n'


def test_valid_flow_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "good.ivr"
    flow.write_text(GOOD)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hello.wav").write_bytes(WAV)
    assert main(["check", str(flow), "--prompts", str(tmp_path / "prompts"), "--strict"]) == 0
    assert capsys.readouterr().out == f"{flow}: ok\n"


def test_errors_exit_1_with_file_line_col(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "bad.ivr"
    flow.write_text("number default -> start\nstart:\n    -> suport\nsupport:\n    hangup\n")
    assert main(["check", str(flow)]) == 1
    out = capsys.readouterr()
    assert out.out == (
        f"{flow}:3:8: error: unknown step 'suport'; did you mean 'support'?\n"
        "        -> suport\n"
        "           ^\n"
    )
    assert out.err == f"{flow}: 1 error, 0 warnings\n"


def test_warnings_fail_only_with_strict(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "warn.ivr"
    flow.write_text(GOOD + "lost:\n    hangup\n")
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hello.wav").write_bytes(WAV)
    assert main(["check", str(flow), "--prompts", str(tmp_path / "prompts")]) == 0
    assert "warning: step 'lost' is never reached" in capsys.readouterr().out
    assert main(["check", str(flow), "--prompts", str(tmp_path / "prompts"), "--strict"]) == 1


def test_prompt_folders_come_from_the_deployment_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "good.ivr"
    flow.write_text(GOOD)
    config = tmp_path / "ivr.toml"
    config.write_text('[prompts]\nfolders = ["sounds"]\n')
    assert main(["check", str(flow), "--config", str(config), "--strict"]) == 1
    assert f"hint: looked in {tmp_path / 'sounds'}" in capsys.readouterr().out
    (tmp_path / "sounds").mkdir()
    (tmp_path / "sounds" / "hello.wav").write_bytes(WAV)
    assert main(["check", str(flow), "--config", str(config), "--strict"]) == 0


def test_bad_deployment_file(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "good.ivr"
    flow.write_text(GOOD)
    assert main(["check", str(flow), "--config", str(tmp_path / "missing.toml")]) == 1
    assert "no such deployment file" in capsys.readouterr().err


def test_check_as_a_process(tmp_path: Path) -> None:
    flow = tmp_path / "bad.ivr"
    flow.write_text("s:\n    sya \"x\"\n")
    proc = subprocess.run([sys.executable, "-m", "ivr", "check", str(flow)], capture_output=True, text=True,
                          timeout=60, cwd=tmp_path)
    assert proc.returncode == 1
    assert f"{flow}:2:5: error: unknown keyword 'sya'; did you mean 'say'?" in proc.stdout


def test_deployment_file_knows_the_numbers_a_flow_dials(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "dial.ivr"
    flow.write_text(
        "number default -> s\ns:\n"
        "    transfer to 201 else transfer to 301 else voicemail 301\n"
        "    transfer to +41791234567 else transfer to +41441112233 else hangup\n"
    )
    config = tmp_path / "ivr.toml"
    config.write_text(
        '[prompts]\nfolders = ["."]\n'
        '[[extensions]]\nnumber = "201"\n'
        '[[mailboxes]]\nnumber = "201"\n'
        '[[trunks]]\nname = "carrier"\nhost = "sip.example"\nallow = ["+4179*"]\n'
    )
    assert main(["check", str(flow), "--config", str(config)]) == 0
    assert capsys.readouterr().out == (
        f"{flow}:3:38: warning: extension 301 is not in ivr.toml\n"
        "        transfer to 201 else transfer to 301 else voicemail 301\n"
        "                                         ^\n"
        "  hint: add it under [[extensions]]\n"
        f"{flow}:3:57: warning: mailbox 301 is not in ivr.toml\n"
        "        transfer to 201 else transfer to 301 else voicemail 301\n"
        "                                                            ^\n"
        "  hint: add it under [[mailboxes]]\n"
        f"{flow}:4:47: warning: no trunk in ivr.toml allows calls to +41441112233\n"
        "        transfer to +41791234567 else transfer to +41441112233 else hangup\n"
        "                                                  ^\n"
        '  hint: add the number or a pattern like "+4179*" to a trunk\'s allow list\n'
        f"{flow}: 0 errors, 3 warnings\n"
    )
    assert main(["check", str(flow), "--config", str(config), "--strict"]) == 1


def test_a_prompt_that_is_not_audio_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "good.ivr"
    flow.write_text(GOOD)
    (tmp_path / "prompts").mkdir()
    (tmp_path / "prompts" / "hello.wav").write_bytes(b"RIFF")
    assert main(["check", str(flow), "--prompts", str(tmp_path / "prompts")]) == 1
    out = capsys.readouterr().out
    assert out.startswith(f"{flow}:3:10: error: prompt file is not playable: hello.wav\n")
    assert "is not a readable audio file" in out


def test_a_hold_music_folder_without_audio_is_an_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    flow = tmp_path / "moh.ivr"
    flow.write_text('number default -> s\ns:\n    hold music "tunes/" for 10s\n    hangup\n')
    (tmp_path / "prompts" / "tunes").mkdir(parents=True)
    assert main(["check", str(flow), "--prompts", str(tmp_path / "prompts")]) == 1
    assert f"{flow}:3:16: error: no audio files in prompt folder: tunes/\n" in capsys.readouterr().out
    (tmp_path / "prompts" / "tunes" / "track.wav").write_bytes(WAV)
    assert main(["check", str(flow), "--prompts", str(tmp_path / "prompts"), "--strict"]) == 0
