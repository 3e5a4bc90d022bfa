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


def test_a_mailbox_passed_to_a_sub_flow_is_checked(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`call closed("999")` where the sub-flow leaves voicemail in its parameter, also through another sub-flow"""
    flow = tmp_path / "sub.ivr"
    flow.write_text(
        'number default -> s\ns:\n    call closed("999")\n    call closed(201)\n    call relay("998")\n    hangup\n'
        "sub closed(box):\n    voicemail {box}\nsub relay(n):\n    call closed(n)\n    return\n"
    )
    config = tmp_path / "ivr.toml"
    config.write_text('[prompts]\nfolders = ["."]\n[[extensions]]\nnumber = "201"\n[[mailboxes]]\nnumber = "201"\n')
    assert main(["check", str(flow), "--config", str(config)]) == 0
    assert capsys.readouterr().out == (
        f"{flow}:3:17: warning: mailbox 999 is not in ivr.toml\n"
        '        call closed("999")\n'
        "                    ^\n"
        "  hint: add it under [[mailboxes]]\n"
        f"{flow}:5:16: warning: mailbox 998 is not in ivr.toml\n"
        '        call relay("998")\n'
        "                   ^\n"
        "  hint: add it under [[mailboxes]]\n"
        f"{flow}: 0 errors, 2 warnings\n"
    )


DIRECTORY_FLOW = (
    'directory staff from "staff.csv"\nnumber default -> s\ns:\n    directory staff by keys\n'
    "        else -> hangup\ngroup sales:\n    ring 201 for 10s\n    else -> hangup\n"
)


def test_a_directory_is_checked_against_the_deployment(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """people whose extension (or ring group) or mailbox the deployment lacks: errors at the file's line"""
    flow = tmp_path / "dir.ivr"
    flow.write_text(DIRECTORY_FLOW)
    staff = tmp_path / "staff.csv"
    staff.write_text(
        "first_name,last_name,extension,mailbox\n"
        "Alice,Johnson,201,201\n"
        "Bob,Miller,299,\n"
        "# the sales team rings as a group\n"
        "Sales,Team,sales,\n"
        "Carol,White,201,298\n"
    )
    config = tmp_path / "ivr.toml"
    config.write_text('[prompts]\nfolders = ["."]\n[[extensions]]\nnumber = "201"\n[[mailboxes]]\nnumber = "201"\n')
    assert main(["check", str(flow), "--config", str(config)]) == 1
    out = capsys.readouterr()
    assert out.out == (
        f"{staff}:3:1: error: Bob Miller: extension 299 is not in ivr.toml\n"
        "    Bob,Miller,299,\n"
        "    ^\n"
        "  hint: add it under [[extensions]], or correct the directory file\n"
        f"{staff}:6:1: error: Carol White: mailbox 298 is not in ivr.toml\n"
        "    Carol,White,201,298\n"
        "    ^\n"
        "  hint: add it under [[mailboxes]], or correct the directory file\n"
    )
    assert out.err == f"{flow}: 2 errors, 0 warnings\n"
    # Once the deployment defines them, the same directory is fine.
    config.write_text(
        '[prompts]\nfolders = ["."]\n'
        + "".join(f'[[extensions]]\nnumber = "{n}"\n' for n in ("201", "299"))
        + "".join(f'[[mailboxes]]\nnumber = "{n}"\n' for n in ("201", "298"))
    )
    assert main(["check", str(flow), "--config", str(config)]) == 0
    assert "is not in" not in capsys.readouterr().out


def test_serve_loads_flows_through_the_deployment_checks(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """`ivr serve` refuses, before binding a port, the directory `ivr check` rejects"""
    flow = tmp_path / "dir.ivr"
    flow.write_text(DIRECTORY_FLOW)
    staff = tmp_path / "staff.csv"
    staff.write_text("first_name,last_name,extension\nBob,Miller,299\n")
    config = tmp_path / "ivr.toml"
    config.write_text('[server]\nlisten = "127.0.0.1:0"\n[prompts]\nfolders = ["."]\n[[extensions]]\nnumber = "201"\n')
    assert main(["serve", str(flow), "--config", str(config)]) == 1
    assert capsys.readouterr().err.startswith(
        f"{staff}:2:1: error: Bob Miller: extension 299 is not in ivr.toml\n"
        "    Bob,Miller,299\n"
        "    ^\n"
    )
