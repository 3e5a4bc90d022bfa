"""The commands: `ivr simulate`, `ivr test` and `ivr switch`, run in-process."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from ivr.cli import main
from ivr.commands.switch import SwitchError, read_switches, write_switch
from ivr.config import load_config
from ivr.media.tts import TtsEngine

FLOWS = Path(__file__).resolve().parents[2] / "flows"
ACME = str(FLOWS / "acme.ivr")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# --------------------------------------------------------------------------- ivr simulate


def test_simulate_prints_plain_words(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "simulate", ACME, "--at", "2026-11-23 09:00", "--caller", "+41791112233",
        "--input", "1", "--answer", "none",
    )  # fmt: skip
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == "call from +41791112233 to +41435435570 at 2026-11-23 09:00:00 Mon CET"
    assert "say: Welcome to Acme." in lines
    assert (
        "ring: 201, 202, 203 (25s), then 204 (15s), then 205 (15s), then +41791234567 (20s) (group sales)"
        in lines
    )
    assert "voicemail: 200" in lines
    assert lines[-1] == "outcome: voicemail 200 (in take_message)"


def test_simulate_json_lines(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "simulate", ACME, "--at", "2026-11-23 09:00", "--input", "9 say:alice_johnson 1",
        "--json", "--busy", "201",
    )  # fmt: skip
    assert code == 0
    objects = [json.loads(line) for line in out.splitlines()]
    actions = [o["action"] for o in objects if "action" in o]
    assert actions[:4] == ["step", "step", "say", "say"]
    assert {"listen", "directory", "transfer", "voicemail", "hangup"} <= set(actions)
    say = next(o for o in objects if o.get("action") == "say")
    assert say["text"] == "Welcome to Acme." and say["t"] == 0.0
    transfer = next(o for o in objects if o.get("action") == "transfer")
    assert transfer["plan"] == [[["201"], 30.0]]
    events = [o["event"] for o in objects if "event" in o]
    assert events[:2] == ["key", "speech"] and "directory_result" in events
    assert objects[-1] == {"outcome": "voicemail", "detail": "201", "step": "by_name"}


def test_simulate_with_times(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(
        capsys, "simulate", ACME, "--at", "2026-11-23 09:00", "--input", "0", "--times"
    )
    assert code == 0
    lines = out.splitlines()
    assert lines[0].startswith("    0.00s  call from")
    says = [line.split("say: ", 1)[1] for line in lines if "  say: " in line]
    config = load_config(FLOWS / "ivr.toml")
    tts = TtsEngine.in_data_folder(config.data, config.tts)
    heard = sum(tts.render(text).duration for text in says)  # the greeting and the menu prompt
    assert f"{heard:8.2f}s  caller presses 0" in lines


@pytest.mark.parametrize(
    ("at", "warning"),
    [
        (
            "2026-03-29 02:30",
            "ivr simulate: 2026-03-29 02:30 does not exist in Europe/Zurich (clocks jump); "
            "simulating 2026-03-29 03:00:00 Sun CEST\n",
        ),
        (
            "2026-10-25 02:30",
            "ivr simulate: 2026-10-25 02:30 happens twice in Europe/Zurich; "
            "simulating the first, 2026-10-25 02:30:00 Sun CEST\n",
        ),
        ("2026-10-25 03:30", ""),
        ("2026-11-23 9:05", ""),
    ],
)
def test_simulate_warns_about_dst(
    capsys: pytest.CaptureFixture[str], at: str, warning: str
) -> None:
    code, _, err = run(capsys, "simulate", ACME, "--at", at, "--input", "hangup")
    assert code == 0 and err == warning


def test_simulate_switch_and_holiday(capsys: pytest.CaptureFixture[str]) -> None:
    _, night, _ = run(
        capsys, "simulate", ACME, "--at", "2026-11-23 09:00", "--input", "", "--switch", "night=on"
    )
    assert "say: Acme is closed today." in night
    _, christmas, _ = run(capsys, "simulate", ACME, "--at", "2026-12-25 09:00", "--input", "")
    assert christmas.splitlines()[-1] == "outcome: voicemail 200 (in take_message)"


def test_simulate_reads_the_caller_from_stdin(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr("sys.stdin", io.StringIO("\n0\n"))  # one timeout, then 0
    code, out, _ = run(capsys, "simulate", ACME, "--at", "2026-11-23 09:00")
    assert code == 0
    lines = out.splitlines()
    assert (
        lines.index("timeout")
        < lines.index("caller presses 0")
        < lines.index("transfer: 100 (20s)")
    )


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["--at", "tomorrow"],
            "ivr simulate: bad date and time 'tomorrow'; expected YYYY-MM-DD HH:MM\n",
        ),
        (
            ["--input", "1 x"],
            "ivr simulate: unknown input 'x'; expected keys (1, 123#, *), say:WORDS, wait:10s, wait or hangup\n",
        ),
        (
            ["--switch", "night=maybe"],
            "ivr simulate: --switch 'night=maybe': expected NAME=on or NAME=off\n",
        ),
        (
            ["--called", "+41000000000"],
            "ivr simulate: no entry point for called number '+41000000000' and no `number default`\n",
        ),
    ],
)
def test_simulate_bad_arguments(
    capsys: pytest.CaptureFixture[str], argv: list[str], message: str
) -> None:
    code, _, err = run(capsys, "simulate", ACME, "--input", "", *argv)
    assert code == 2
    assert err == message


def test_simulate_broken_flow(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    flow = tmp_path / "bad.ivr"
    flow.write_text("number 1 -> start\nstart:\n    goto nowhere\n", encoding="utf-8")
    code, _, err = run(capsys, "simulate", str(flow), "--input", "")
    assert code == 1
    assert "unknown step 'nowhere'" in err


# --------------------------------------------------------------------------- ivr test


def test_ivr_test_reports_a_failure_with_a_diff(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    test = tmp_path / "acme.ivrtest"
    test.write_text(
        f'flow "{ACME}"\nat 2026-11-23 09:00\n\n'
        'test "sales":\n    press 1\n    expect ring 201, 202, 203\n\n'
        'test "wrong":\n    press 2\n    expect transfer: 100\n',
        encoding="utf-8",
    )
    code, out, _ = run(capsys, "test", str(tmp_path))
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "PASS acme.ivrtest: sales"
    assert lines[1] == "FAIL acme.ivrtest: wrong"
    assert "    -transfer: 100   (expected, line 10; nearest: 'transfer: 300 (30s)')" in lines
    assert "    +++ actual" in lines
    assert lines[-1] == "1 passed, 1 failed"


def test_ivr_test_bad_file_and_no_files(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "test", str(tmp_path))
    assert code == 1 and "no .ivrtest files found" in err
    bad = tmp_path / "bad.ivrtest"
    bad.write_text('flow "x.ivr"\nbogus\n', encoding="utf-8")
    code, out, err = run(capsys, "test", str(bad))
    assert code == 1
    assert (
        err == f"ERROR {bad}:2: cannot understand 'bogus'; see docs/flow-language.md, Flow tests\n"
    )
    assert out == "0 passed, 0 failed, 1 file(s) with errors\n"


def test_ivr_test_flow_that_does_not_load_fails_its_tests(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "f.ivr").write_text(
        "number 1 -> start\nstart:\n    goto nowhere\n", encoding="utf-8"
    )
    (tmp_path / "f.ivrtest").write_text(
        'flow "f.ivr"\nat 2026-01-05 10:00\ntest "t":\n    expect hangup\n', encoding="utf-8"
    )
    code, out, _ = run(capsys, "test", str(tmp_path / "f.ivrtest"))
    assert code == 1
    assert out.startswith("FAIL f.ivrtest: t\n") and "unknown step 'nowhere'" in out


# --------------------------------------------------------------------------- ivr switch


def test_switch_round_trip(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert run(capsys, "switch", "night", "--data", str(tmp_path)) == (0, "night: off\n", "")
    assert run(capsys, "switch", "night", "on", "--data", str(tmp_path)) == (0, "night: on\n", "")
    assert run(capsys, "switch", "storm", "off", "--data", str(tmp_path)) == (0, "storm: off\n", "")
    assert run(capsys, "switch", "night", "status", "--data", str(tmp_path)) == (
        0,
        "night: on\n",
        "",
    )
    assert run(capsys, "switch", "--data", str(tmp_path)) == (0, "night: on\nstorm: off\n", "")
    assert json.loads((tmp_path / "switches.json").read_text()) == {"night": True, "storm": False}
    assert read_switches(tmp_path) == {"night": True, "storm": False}
    assert not list(tmp_path.glob("*.tmp"))  # the temporary file was renamed, not left behind


def test_switch_refuses_to_overwrite_a_corrupt_file(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    path = tmp_path / "switches.json"
    path.write_text('{"night": tru', encoding="utf-8")
    code, _, err = run(capsys, "switch", "night", "off", "--data", str(tmp_path))
    assert code == 1 and err.startswith(f"ivr switch: {path}: cannot read switch positions")
    assert path.read_text(encoding="utf-8") == '{"night": tru'  # nothing lost
    path.write_text('{"night": "yes"}', encoding="utf-8")
    with pytest.raises(SwitchError, match="expected an object of true/false values"):
        read_switches(tmp_path)


def test_switch_name_is_checked(tmp_path: Path) -> None:
    with pytest.raises(SwitchError) as info:
        write_switch(tmp_path, "Night Mode", True)
    assert str(info.value) == "bad switch name 'Night Mode': use lower-case letters, digits and _"
    assert read_switches(tmp_path / "missing") == {}


def test_switch_knows_the_switches_of_the_deployment(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    config = str(FLOWS / "ivr.toml")
    data = str(tmp_path)
    assert run(capsys, "switch", "--config", config, "--data", data) == (0, "night: off\n", "")
    assert run(capsys, "switch", "nigth", "on", "--config", config, "--data", data) == (
        1,
        "",
        "ivr switch: no flow declares switch 'nigth'; did you mean 'night'? (declared: night)\n",
    )
    assert not (tmp_path / "switches.json").exists()  # nothing written for a switch no flow reads
    assert run(capsys, "switch", "storm", "status", "--config", config, "--data", data) == (
        1,
        "",
        "ivr switch: no flow declares switch 'storm' (declared: night)\n",
    )
    assert run(capsys, "switch", "night", "on", "--config", config, "--data", data) == (0, "night: on\n", "")
    assert read_switches(tmp_path) == {"night": True}


def test_switch_refuses_every_name_when_the_flows_declare_none(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "f.ivr").write_text("number default -> s\ns:\n    hangup\n", encoding="utf-8")
    (tmp_path / "ivr.toml").write_text('[server]\nflows = ["f.ivr"]\n', encoding="utf-8")
    assert run(capsys, "switch", "night", "on", "--config", str(tmp_path / "ivr.toml")) == (
        1,
        "",
        "ivr switch: no flow declares switch 'night': the flows declare no switches (add `switch night` to one)\n",
    )


def test_switch_takes_any_name_when_the_flows_cannot_be_read(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    (tmp_path / "f.ivr").write_text("switch night\nnumber default -> s\ns:\n    sya \"x\"\n", encoding="utf-8")
    (tmp_path / "ivr.toml").write_text('[server]\nflows = ["f.ivr"]\n', encoding="utf-8")
    assert run(capsys, "switch", "storm", "on", "--config", str(tmp_path / "ivr.toml")) == (0, "storm: on\n", "")
    assert read_switches(tmp_path / "data") == {"storm": True}


def test_the_switch_file_belongs_to_the_runtime() -> None:
    from ivr.runtime import switches

    assert read_switches is switches.read_switches and SwitchError is switches.SwitchError


def test_switch_with_data_works_despite_a_broken_config(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    broken = tmp_path / "ivr.toml"
    broken.write_text("[server\n", encoding="utf-8")
    assert run(
        capsys, "switch", "night", "on", "--config", str(broken), "--data", str(tmp_path)
    ) == (0, "night: on\n", "")
    code, _, err = run(capsys, "switch", "night", "--config", str(broken))
    assert code == 1 and err.startswith(f"ivr switch: {broken}:")


def test_simulate_with_the_directory_dialogue(capsys: pytest.CaptureFixture[str]) -> None:
    argv = ["simulate", ACME, "--at", "2026-11-23 09:00", "--input"]
    code, out, _ = run(capsys, *argv, "9 932 1")
    assert code == 0
    lines = out.splitlines()
    start = lines.index("directory: staff")
    spelled = lines.index("caller presses 9", start)
    assert any(line.startswith("say: ") for line in lines[start:spelled])  # the dialogue asks first
    chosen = lines.index("caller presses 1", spelled)
    assert lines.index("selected Jonas Weber (210)") > chosen
    assert lines[-1] == "outcome: transferred 210 (in by_name)"
    _, operator, _ = run(capsys, *argv, "9 0")
    assert "operator" in operator.splitlines() and "transfer: 100 (20s)" in operator.splitlines()
    _, gone, _ = run(capsys, *argv, "9 wait:2s hangup")
    # The flow goes no further than the dialogue the caller hung up in.
    assert gone.splitlines()[-1] == "outcome: caller_hangup (in by_name)"
