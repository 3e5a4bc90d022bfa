"""The .ivrtest format: parsing, exact error messages, and expectation matching with its diff."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.runtime.flowtest import (
    Expectation,
    FlowTestError,
    compare,
    find_test_files,
    parse_test_file,
)
from ivr.runtime.simulate import CallerInput, TraceLine


def write(tmp_path: Path, text: str, name: str = "t.ivrtest") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


SAMPLE = """\
# tests for the main line
flow "main.ivr"
config "deploy.toml"
caller +41791112233     # every test calls from this mobile
at 2026-11-23 09:00

test "Press 1, then hash":
    called +41435435570
    switch night on
    set lang = "de"
    press 1
    press 12#           # account and hash key
    press #
    press 0 during the prompt
    say "alice johnson"
    say "alice johnson" or "alicia jensen"
    mumble
    wait 10s
    wait for the timeout
    hang up
    answer 201, 202
    busy 300
    no answer +41791234567
    unavailable 204
    fail 205
    directory picks "Alice Johnson"
    caller leaves no message
    expect ring 201, 202
    expect no voicemail
    expect no answer
    expect say "Welcome."

test "Second test keeps the file defaults":
    at 2026-12-25 10:00
    answer none
    directory finds nobody
    expect voicemail 200
"""


def test_parse_a_full_file(tmp_path: Path) -> None:
    parsed = parse_test_file(write(tmp_path, SAMPLE))
    assert parsed.flows == (tmp_path / "main.ivr",)
    assert parsed.config == tmp_path / "deploy.toml"
    first, second = parsed.tests
    assert first.name == "Press 1, then hash" and first.line == 7
    s = first.setup
    assert (s.at, s.caller, s.called) == ("2026-11-23 09:00", "+41791112233", "+41435435570")
    assert s.switches == (("night", True),) and s.variables == (("lang", "de"),)
    assert s.answer == frozenset({"201", "202"}) and s.busy == frozenset({"300"})
    assert s.no_answer == frozenset({"+41791234567"})
    assert s.unavailable == frozenset({"204"}) and s.failed == frozenset({"205"})
    assert s.directory == ("Alice Johnson",) and s.voicemail_result == "empty"
    assert second.setup.directory == ("not found",) and second.setup.voicemail_result == "saved"
    assert first.inputs == (
        CallerInput("key", "1"),
        CallerInput("key", "12#"),
        CallerInput("key", "#"),
        CallerInput("key", "0", barge_in=True),
        CallerInput("speech", "alice johnson"),
        CallerInput("speech", "alice johnson", rival="alicia jensen"),
        CallerInput("speech", ""),
        CallerInput("wait", seconds=10.0),
        CallerInput("wait"),
        CallerInput("hangup"),
    )
    assert first.expectations == (
        Expectation("ring 201, 202", 28),
        Expectation("voicemail", 29, negate=True),
        Expectation("no answer", 30),
        Expectation("say Welcome.", 31),
    )
    assert second.setup.at == "2026-12-25 10:00" and second.setup.caller == "+41791112233"
    assert second.setup.answer == frozenset() and second.setup.directory == ("not found",)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            'test "x":\n    at 2026-01-01 10:00\n    expect hangup\n',
            ':1: no flow named; start the file with: flow "myflow.ivr"',
        ),
        ('flow "f.ivr"\n', ':1: no tests; add one with: test "name":'),
        ('flow "f.ivr"\ntest x:\n', ':2: expected: test "name":  (a quoted name and a colon)'),
        (
            'flow "f.ivr"\n    press 1\n',
            ':2: indented line outside a test; start a test with: test "name":',
        ),
        (
            'flow "f.ivr"\ntest "x":\n    expect hangup\n',
            ':2: test "x" has no time: add "at 2026-11-23 09:00"',
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-01-01 10:00\n',
            ':2: test "x" expects nothing: add an "expect ..." line',
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-01-01 10:00\n    press one\n    expect hangup\n',
            ":4: expected: press KEYS (e.g. press 1, press 123456#, press 1 during the prompt)",
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-01-01 10:00\n    say "a" or b\n    expect hangup\n',
            ':4: expected: say "words" (what the recogniser hears), or say "words" or "words"',
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-01-01 10:00\n    wait a bit\n    expect hangup\n',
            ":4: expected: wait 10s, wait 2m or wait for the timeout",
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-01-01 10:00\n    dial 5\n    expect hangup\n',
            ":4: cannot understand 'dial 5'; see docs/flow-language.md, Flow tests",
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-02-30 10:00\n    expect hangup\n',
            ":3: bad date '2026-02-30'",
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at 2026-02-03 25:00\n    expect hangup\n',
            ":3: bad time of day in '2026-02-03 25:00'",
        ),
        (
            'flow "f.ivr"\ntest "x":\n    at tomorrow\n    expect hangup\n',
            ":3: expected: at YYYY-MM-DD HH:MM (the flow's local time)",
        ),
        (
            'flow "f.ivr"\nat 2026-01-01 10:00\ntest "x":\n    expect hangup\ntest "x":\n    expect hangup\n',
            ':5: test "x" is defined twice',
        ),
    ],
)
def test_errors_name_file_and_line(tmp_path: Path, text: str, message: str) -> None:
    path = write(tmp_path, text)
    with pytest.raises(FlowTestError) as info:
        parse_test_file(path)
    assert str(info.value) == f"{path}{message}"


def test_unreadable_file(tmp_path: Path) -> None:
    with pytest.raises(FlowTestError, match="cannot read"):
        parse_test_file(tmp_path / "missing.ivrtest")


def test_find_test_files_in_folders_and_by_name(tmp_path: Path) -> None:
    (tmp_path / "sub").mkdir()
    a = write(tmp_path, SAMPLE, "a.ivrtest")
    b = write(tmp_path / "sub", SAMPLE, "b.ivrtest")
    write(tmp_path, "x", "notes.txt")
    assert find_test_files([tmp_path]) == [a, b]
    assert find_test_files([b, tmp_path]) == [b, a]


# --------------------------------------------------------------------------- matching


def trace(*texts: str) -> list[TraceLine]:
    return [TraceLine(0.0, t.split(":")[0] if ":" in t else "result", t) for t in texts]


CALL = trace(
    "step: start",
    "say: Welcome to Acme.",
    "listen: keys",
    "caller presses 1",
    "ring: 201, 202, 203 (25s), then 204 (15s)",
    "no answer",
    "voicemail: 200",
    "outcome: voicemail 200 (in sales)",
)


def test_expectations_match_in_order_by_prefix() -> None:
    assert (
        compare([Expectation("say Welcome", 1), Expectation("ring: 201, 202, 203", 2)], CALL) == []
    )
    assert compare([Expectation("outcome voicemail 200", 1)], CALL) == []
    assert (
        compare([Expectation("no answer", 1), Expectation("voicemail", 2, negate=True)], CALL) != []
    )
    # Word for word from the beginning (the documented rule): a list may be matched by its
    # first items, but 201 is not 2010 and "Welcome." is not "Welcome".
    assert compare([Expectation("ring 201, 202", 1)], CALL) == []
    assert compare([Expectation("ring 201", 1)], CALL) == []
    assert compare([Expectation("ring 2010", 1)], CALL) != []
    assert compare([Expectation("ring 202", 1)], CALL) != []
    assert compare([Expectation("say Welcome", 1)], CALL) == []
    assert compare([Expectation("say Welcome.", 1)], CALL) != []  # the line says "Welcome to Acme."


def test_missing_expectation_diff_shows_where_it_was_expected() -> None:
    diff = compare([Expectation("ring 201, 202, 203", 5), Expectation("transfer 300", 6)], CALL)
    assert diff == [
        "--- expected",
        "+++ actual",
        "@@ -2,7 +2,6 @@",
        " say: Welcome to Acme.",
        " caller presses 1",
        " ring: 201, 202, 203 (25s), then 204 (15s)",
        "-transfer 300   (expected, line 6)",
        " no answer",
        " voicemail: 200",
        " outcome: voicemail 200 (in sales)",
    ]


def test_out_of_order_expectation_fails() -> None:
    assert compare([Expectation("voicemail 200", 1), Expectation("say Welcome", 2)], CALL) != []


def test_unwanted_line_shows_as_added() -> None:
    diff = compare(
        [Expectation("ring 201, 202, 203", 1), Expectation("voicemail", 2, negate=True)], CALL
    )
    assert "+voicemail: 200" in diff
    assert not any(line.startswith("-") and not line.startswith("---") for line in diff)


def test_listen_lines_are_left_out_of_diffs() -> None:
    diff = compare([Expectation("hangup", 9)], CALL)
    assert diff and not any("listen" in line for line in diff)


def test_expect_no_answer_versus_forbidding_it(tmp_path: Path) -> None:
    text = 'flow "f.ivr"\nat 2026-01-01 10:00\ntest "t":\n    expect no answer\n    expect no "no answer"\n'
    (positive, negative) = parse_test_file(write(tmp_path, text)).tests[0].expectations
    assert positive == Expectation("no answer", 4)
    assert negative == Expectation("no answer", 5, negate=True)


def test_a_missing_expectation_names_the_nearest_line_of_the_call() -> None:
    diff = compare([Expectation("voicemail 201", 4)], CALL)
    assert "-voicemail 201   (expected, line 4; nearest: 'voicemail: 200')" in diff


def test_the_documented_ring_example_holds_on_acme() -> None:
    """docs/flow-language.md: `expect ring 201, 202` matches the sales group's ring line."""
    from ivr.config import load_config
    from ivr.dsl.schedule import parse_local
    from ivr.runtime.deployment import load_flow
    from ivr.runtime.simulate import Scenario, parse_inputs, simulate

    flows = Path(__file__).resolve().parents[2] / "flows"
    config = load_config(flows / "ivr.toml")
    program = load_flow([flows / "acme.ivr"], prompt_folders=config.prompt_folders, config=config)
    scenario = Scenario(start=parse_local("2026-11-23 09:00", "Europe/Zurich"), inputs=tuple(parse_inputs("1")))
    result = simulate(program, scenario, config=config)
    assert compare([Expectation("ring 201, 202", 1), Expectation("answered by 201", 2)], result.lines) == []
