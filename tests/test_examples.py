"""The example flows in flows/: each passes `ivr check --strict`, simulates, and its flow tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from ivr.config import load_config
from ivr.dsl.schedule import parse_local
from ivr.runtime.deployment import check_flow, load_flow
from ivr.runtime.flowtest import find_test_files, parse_test_file, run_test_file
from ivr.runtime.simulate import Scenario, parse_inputs, simulate

ROOT = Path(__file__).resolve().parents[1]
FLOWS = ROOT / "flows"
CONFIG = load_config(FLOWS / "ivr.toml")
EXAMPLES = sorted(FLOWS.glob("*.ivr"))


def test_the_examples_are_there() -> None:
    assert {p.name for p in EXAMPLES} >= {"acme.ivr", "support.ivr", "small-office.ivr"}
    assert CONFIG.prompt_folders == ((ROOT / "prompts").resolve(),)
    numbers = {e.number for e in CONFIG.extensions}
    assert {"100", "200", "201", "202", "203", "204", "205", "300"} <= numbers
    assert all(e.password for e in CONFIG.extensions)
    assert any("+41797654321" in t.allow for t in CONFIG.trunks)  # the support on-call mobile


@pytest.mark.parametrize("flow", EXAMPLES, ids=lambda p: p.name)
def test_check_strict_finds_nothing(flow: Path) -> None:
    assert check_flow([flow], prompt_folders=CONFIG.prompt_folders, config=CONFIG) == []
    load_flow([flow], prompt_folders=CONFIG.prompt_folders, strict=True, config=CONFIG)


def test_the_deployment_serves_all_examples_together() -> None:
    # `ivr serve` loads server.flows as one program: names and numbers must not clash.
    assert sorted(CONFIG.server.flows) == EXAMPLES
    program = load_flow(CONFIG.server.flows, prompt_folders=CONFIG.prompt_folders, strict=True, config=CONFIG)
    assert program.entry_for("+41435435570") == "start"
    assert program.entry_for("+41435435580") == "hotline"
    assert program.entry_for("0041445550100") == "miller_and_partners"


@pytest.mark.parametrize("flow", EXAMPLES, ids=lambda p: p.name)
def test_every_example_has_passing_flow_tests(flow: Path) -> None:
    test_file = flow.with_suffix(".ivrtest")
    assert test_file.is_file(), f"{flow.name} has no {test_file.name}"
    assert parse_test_file(test_file).flows == (flow,)
    results = run_test_file(test_file)
    assert len(results) >= 3
    failures = [r.report() for r in results if not r.passed]
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("flow", EXAMPLES, ids=lambda p: p.name)
def test_every_example_simulates_to_an_end(flow: Path) -> None:
    program = load_flow([flow], prompt_folders=CONFIG.prompt_folders)
    for when in ("2026-11-23 09:00", "2026-11-23 22:00", "2026-12-25 10:00"):
        start = parse_local(when, program.settings.timezone)
        for inputs in ("", "1", "2 123456#", "9 say:alice_johnson", "hangup"):
            result = simulate(
                program,
                Scenario(start=start, caller="+41791112233", inputs=tuple(parse_inputs(inputs))),
                config=CONFIG,
            )
            assert result.outcome is not None, f"{flow.name} {when} {inputs!r}: {result.text}"


def test_directory_of_the_main_line() -> None:
    lines = (FLOWS / "staff.csv").read_text(encoding="utf-8").splitlines()
    assert lines[0].split(",")[:7] == [
        "display_name", "first_name", "last_name", "extension", "aliases", "mailbox", "hidden",
    ]  # fmt: skip
    assert len(lines) - 1 >= 12
    extensions = {e.number for e in CONFIG.extensions}
    for row in lines[1:]:
        assert row.split(",")[3] in extensions, row


def ivr(*args: str) -> subprocess.CompletedProcess[str]:
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run(
        [sys.executable, "-m", "ivr", *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


def test_ivr_test_command_on_the_examples() -> None:
    done = ivr("test", "flows/")
    assert done.returncode == 0, done.stdout + done.stderr
    count = sum(len(parse_test_file(f).tests) for f in find_test_files([FLOWS]))
    assert done.stdout.splitlines()[-1] == f"{count} passed, 0 failed"
    assert all(line.startswith("PASS ") for line in done.stdout.splitlines()[:-1])


def test_ivr_check_strict_command_on_the_examples() -> None:
    done = ivr(
        "check",
        "--strict",
        "--config",
        "flows/ivr.toml",
        *(str(p.relative_to(ROOT)) for p in EXAMPLES),
    )
    assert done.returncode == 0, done.stdout + done.stderr
