"""The simulator: caller tokens, ring plans, and whole calls through the real flow machine."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.config import load_config
from ivr.dsl.compiler import Program
from ivr.dsl.events import Transfer
from ivr.dsl.schedule import parse_local
from ivr.dsl.simulate import (
    CallerInput,
    Scenario,
    Simulation,
    SimulationError,
    SimulationResult,
    describe_transfer,
    find_by_keys,
    find_person,
    keypad_digits,
    load_people,
    parse_input,
    parse_inputs,
    ring_plan,
    simulate,
)
from ivr.runtime.deployment import load_flow

FLOWS = Path(__file__).resolve().parents[2] / "flows"
MONDAY_9 = "2026-11-23 09:00"

MENU_FLOW = """\
timezone Europe/Zurich
switch night
number +41435435570 -> start

hours office:
    mon-fri 08:00-17:00
    closed when night

start:
    when office is open -> welcome
    otherwise -> closed

menu welcome:
    say "Welcome to Acme."
    ask "Press 1 for sales."
    wait 5s, retry 2 times
    1 or "sales" -> sales
    invalid -> say "Sorry."
    exhausted -> hangup

sales:
    transfer to 201 for 20s
        busy -> voicemail 200
        else -> voicemail 201

closed:
    say "We are closed."
    voicemail 200
"""


def program_from(tmp_path: Path, text: str, *, prompt_folders: tuple[Path, ...] = ()) -> Program:
    path = tmp_path / "flow.ivr"
    path.write_text(text, encoding="utf-8")
    return load_flow([path], prompt_folders=prompt_folders)


def run(
    tmp_path: Path, inputs: str = "", *, at: str = MONDAY_9, text: str = MENU_FLOW, **kw: Any
) -> SimulationResult:
    program = program_from(tmp_path, text)
    scenario = Scenario(
        start=parse_local(at, "Europe/Zurich"),
        caller="+41791112233",
        inputs=tuple(parse_inputs(inputs)),
        **kw,
    )
    return simulate(program, scenario)


def lines(result: SimulationResult) -> list[str]:
    return [t for t in result.text if not t.startswith(("listen:", "call from", "hours "))]


# --------------------------------------------------------------------------- tokens


def test_parse_inputs() -> None:
    assert parse_inputs(
        '1 123# say:alice_johnson say:"bob smith" say: wait:10s wait:500ms wait hangup !2'
    ) == [
        CallerInput("key", "1"),
        CallerInput("key", "123#"),
        CallerInput("speech", "alice johnson"),
        CallerInput("speech", "bob smith"),
        CallerInput("speech", ""),
        CallerInput("wait", seconds=10.0),
        CallerInput("wait", seconds=0.5),
        CallerInput("wait"),
        CallerInput("hangup"),
        CallerInput("key", "2", barge_in=True),
    ]
    assert [str(i) for i in parse_inputs("1 !say:bob_smith wait:2m wait hangup")] == [
        "1",
        "!say:bob_smith",
        "wait:2m",
        "wait",
        "hangup",
    ]


@pytest.mark.parametrize("token", ["x", "wait:soon", "12a", "say"])
def test_unknown_token_message(token: str) -> None:
    with pytest.raises(SimulationError) as info:
        parse_input(token)
    assert str(info.value) == (
        f"unknown input {token!r}; expected keys (1, 123#, *), say:WORDS, wait:10s, wait or hangup"
    )


def test_unbalanced_quote_is_reported() -> None:
    with pytest.raises(SimulationError, match="bad input"):
        parse_inputs('say:"alice')


# --------------------------------------------------------------------------- ring plans

PLAN = Transfer(
    plan=(
        (("201", "202", "203"), 25.0),
        (("204",), 15.0),
        (("205",), 15.0),
        (("+41791234567",), 20.0),
    ),
    group="sales",
)


def test_ring_plan_outcomes_and_timing() -> None:
    start = Scenario(start=0.0)
    assert ring_plan(start, PLAN) == ("answered", "201", 5.0)  # default: the first phone answers
    only_204 = Scenario(start=0.0, answer=frozenset({"204"}))
    assert ring_plan(only_204, PLAN) == (
        "answered",
        "204",
        30.0,
    )  # 25 s of the first step, 5 s ringing
    nobody = Scenario(start=0.0, answer=frozenset())
    assert ring_plan(nobody, PLAN) == ("no_answer", "", 75.0)
    all_busy = Scenario(start=0.0, busy=frozenset({"*"}))
    assert ring_plan(all_busy, PLAN) == ("busy", "", 4.0)  # busy comes back at once
    mixed = Scenario(
        start=0.0,
        busy=frozenset({"201", "202", "203"}),
        unavailable=frozenset({"204", "205"}),
        no_answer=frozenset({"+41791234567"}),
    )
    assert ring_plan(mixed, PLAN) == ("no_answer", "", 23.0)
    second = Scenario(start=0.0, no_answer=frozenset({"201"}))
    assert ring_plan(second, PLAN) == ("answered", "202", 5.0)


def test_describe_transfer() -> None:
    assert describe_transfer(PLAN) == (
        "ring: 201, 202, 203 (25s), then 204 (15s), then 205 (15s), then +41791234567 (20s) (group sales)"
    )
    assert describe_transfer(Transfer(plan=((("300",), 30.0),))) == "transfer: 300 (30s)"
    assert (
        describe_transfer(Transfer(plan=((("300",), 60.0),), refer=True))
        == "transfer: 300 (1m) by refer"
    )
    assert describe_transfer(Transfer(plan=((("300",), 90.0),))) == "transfer: 300 (90s)"


# --------------------------------------------------------------------------- whole calls


def test_press_1_after_the_prompts(tmp_path: Path) -> None:
    result = run(tmp_path, "1")
    assert lines(result) == [
        "step: start",
        "step: welcome",
        "say: Welcome to Acme.",
        "say: Press 1 for sales.",
        "caller presses 1",
        "step: sales",
        "transfer: 201 (20s)",
        "answered by 201",
        "call ended by the other side",
        "hangup",
        "outcome: transferred 201 (in sales)",
    ]
    key = next(line for line in result.lines if line.text == "caller presses 1")
    # 16 + 18 characters of TTS at 14 characters a second play before the caller presses.
    assert key.at == pytest.approx(16 / 14 + 18 / 14, abs=0.02)


def test_timeouts_start_after_the_prompts(tmp_path: Path) -> None:
    result = run(tmp_path, "")
    timeouts = [line.at for line in result.lines if line.text == "timeout"]
    prompts = 16 / 14 + 18 / 14
    assert len(timeouts) == 2
    assert timeouts[0] == pytest.approx(prompts + 5, abs=0.05)
    # Only the `ask` prompt plays again before the second try.
    assert timeouts[1] == pytest.approx(prompts + 5 + 18 / 14 + 5, abs=0.05)
    assert result.outcome is not None and result.outcome.result == "hangup"


def test_barge_in_stops_the_prompt(tmp_path: Path) -> None:
    result = run(tmp_path, "!1")
    text = lines(result)
    assert text[3:6] == [
        "say: Press 1 for sales.",
        "caller presses 1",
        "prompts stopped (barge-in)",
    ]
    assert next(line.at for line in result.lines if line.kind == "caller") == 0.0


def test_wait_then_key_arrives_mid_reprompt(tmp_path: Path) -> None:
    result = run(tmp_path, "wait:8s 1")
    text = lines(result)
    assert text.index("timeout") < text.index("caller presses 1")
    assert "prompts stopped (barge-in)" in text  # 8 s is during the second "Press 1 for sales."
    assert result.outcome is not None and result.outcome.detail == "201"


def test_speech_and_invalid_key(tmp_path: Path) -> None:
    result = run(tmp_path, "7 say:sales")
    text = lines(result)
    assert (
        text.index("say: Sorry.")
        < text.index('caller says "sales"')
        < text.index("transfer: 201 (20s)")
    )


def test_caller_hangs_up(tmp_path: Path) -> None:
    result = run(tmp_path, "hangup")
    assert "caller hangs up" in result.text
    assert result.outcome is not None and result.outcome.result == "caller_hangup"


def test_hang_up_while_ringing(tmp_path: Path) -> None:
    result = run(tmp_path, "1 wait:3s hangup", answer=frozenset())
    text = lines(result)
    hangup = next(line for line in result.lines if line.text == "caller hangs up")
    assert hangup.at == pytest.approx(34 / 14 + 3.0, abs=0.01)  # three seconds into the ringing
    assert (
        "no answer" not in text
        and result.outcome is not None
        and result.outcome.result == "caller_hangup"
    )


def test_transfer_outcomes_follow_the_scenario(tmp_path: Path) -> None:
    busy = run(tmp_path, "1", busy=frozenset({"201"}))
    assert "busy" in busy.text and busy.outcome is not None and busy.outcome.detail == "200"
    nobody = run(tmp_path, "1", answer=frozenset())
    assert (
        "no answer" in nobody.text and nobody.outcome is not None and nobody.outcome.detail == "201"
    )


def test_hours_and_switch(tmp_path: Path) -> None:
    evening = run(tmp_path, at="2026-11-23 18:00")
    assert "say: We are closed." in evening.text
    night = run(tmp_path, at=MONDAY_9, switches={"night": True})
    assert "say: We are closed." in night.text
    day = run(tmp_path, at=MONDAY_9, switches={"night": False})
    assert "say: Welcome to Acme." in day.text


def test_voicemail_result_reaches_the_flow(tmp_path: Path) -> None:
    result = run(tmp_path, at="2026-11-23 18:00", voicemail_result="empty")
    assert "voicemail empty" in result.text
    assert result.outcome is not None and result.outcome.result == "voicemail"


def test_play_lasts_as_long_as_the_file(tmp_path: Path) -> None:
    prompts = tmp_path / "prompts"
    prompts.mkdir()
    soundfile.write(prompts / "three.wav", np.zeros(24000, dtype=np.int16), 8000, subtype="PCM_16")
    text = 'number 100 -> start\nstart:\n    play "three.wav"\n    say "Bye."\n    hangup\n'
    program = program_from(tmp_path, text, prompt_folders=(prompts,))
    result = simulate(program, Scenario(start=0.0), prompt_folders=(prompts,))
    hangup = next(line for line in result.lines if line.text == "hangup")
    assert hangup.at == pytest.approx(3.0 + 0.5, abs=0.01)  # 3 s file, then the shortest say


def test_directory_choice_and_names(tmp_path: Path) -> None:
    flow = f"""\
directory staff from "{FLOWS / "staff.csv"}"
number 100 -> start
start:
    directory staff
        not found -> nobody
        operator -> hangup
nobody:
    say "Nobody."
    hangup
"""
    chosen = run(tmp_path, text=flow, directory=("Lena Fischer=205",))
    assert "selected Lena Fischer (205)" in chosen.text and "transfer: 205 (30s)" in "\n".join(
        chosen.text
    )
    spoken = run(tmp_path, "say:peter_mueller", text=flow)
    assert "selected Peter Müller (208)" in spoken.text
    unknown = run(tmp_path, "say:john_doe", text=flow)
    assert "not found" in unknown.text and "say: Nobody." in unknown.text
    operator = run(tmp_path, text=flow, directory=("operator",))
    assert "operator" in operator.text
    spelled = run(tmp_path, "932#", text=flow)  # W-E-B on the keypad
    assert "caller presses 932#" in spelled.text and "selected Jonas Weber (210)" in spelled.text
    zero = run(tmp_path, "0", text=flow)
    assert "operator" in zero.text and zero.outcome is not None and zero.outcome.result == "hangup"


def test_keypad_spelling() -> None:
    people = load_people(FLOWS / "staff.csv")
    assert keypad_digits("O'Brien") == "627436"
    assert keypad_digits("Zürcher") == "9872437"
    assert [p.name for p in find_by_keys(people, "987")] == ["Thomas Zürcher"]
    assert [p.name for p in find_by_keys(people, "254", "first")] == ["Alice Johnson"]
    assert [p.name for p in find_by_keys(people, "254", "last")] == []
    assert [p.name for p in find_by_keys(people, "2", "either")][:2] == [
        "Alice Johnson",
        "Marco Bernasconi",
    ]
    assert find_by_keys(people, "278") == []  # Brunner (27...) is hidden from the directory
    assert [p.name for p in find_by_keys(people, "27")] == []


def test_staff_directory_people() -> None:
    people = load_people(FLOWS / "staff.csv")
    assert len([p for p in people if not p.hidden]) >= 12
    alice = find_person(people, "Alice Johnson")
    assert alice is not None and (alice.extension, alice.mailbox) == ("201", "201")
    assert find_person(people, "tom zurcher") is not None  # an alias
    robert = find_person(people, "Robert Brunner")
    assert robert is not None and robert.hidden


def test_a_flow_that_never_ends_is_stopped(tmp_path: Path) -> None:
    text = "number 100 -> start\nstart:\n    hold for 1s\n    -> start\n"
    result = run(tmp_path, text=text)
    assert result.outcome is None
    assert any(t.startswith("simulation stopped after") for t in result.text)
    assert result.text[-1] == "outcome: unfinished"


def test_the_call_starts_with_the_state_of_every_schedule(tmp_path: Path) -> None:
    assert run(tmp_path, "hangup").text[1] == "hours office: open until 17:00"
    assert (
        run(tmp_path, "hangup", at="2026-11-27 18:00").text[1]
        == "hours office: closed until Mon 08:00"
    )
    night = run(tmp_path, "hangup", switches={"night": True})
    assert night.text[1] == "hours office: closed while switch night is on"
    christmas = run(tmp_path, "hangup", at="2026-12-25 10:00", text=MENU_FLOW.replace(
        "    closed when night\n", "    closed when night\n    closed on holidays CH-ZH\n"
    ))  # fmt: skip
    assert christmas.text[1] == "hours office: closed (Christmas Day) until Mon 08:00"
    far = run(tmp_path, "hangup", at="2026-12-25 10:00", text=MENU_FLOW.replace(
        "    closed when night\n", "    closed when night\n    closed 2026-12-24 .. 2027-01-06\n"
    ))  # fmt: skip
    assert far.text[1] == "hours office: closed until Thu 2027-01-07 08:00"


def test_input_left_over_is_reported(tmp_path: Path) -> None:
    result = run(tmp_path, "hangup 1 say:sales")
    assert result.text[-2:] == [
        "caller input not used: 1 say:sales",
        "outcome: caller_hangup (in welcome)",
    ]


def test_keys_of_one_token_are_half_a_second_apart(tmp_path: Path) -> None:
    text = """\
number 1 -> start
collect account:
    ask "Number?"
    digits 3-6, end #
    wait 5s, between 2s, retry 1 times
    then -> done
    exhausted -> hangup
start:
    -> account
done:
    say "You entered {account}."
    hangup
"""
    result = run(tmp_path, "1234#", text=text)
    keys = [line.at for line in result.lines if line.text.startswith("caller presses")]
    assert [round(b - a, 3) for a, b in itertools.pairwise(keys)] == [0.5, 0.5, 0.5, 0.5]
    assert "say: You entered 1234." in result.text


def test_preset_variables_reach_the_flow(tmp_path: Path) -> None:
    # A variable the flow sets itself may be preset (as the runner does from call data).
    text = """\
number 1 -> start
start:
    when name != "" -> known
    set name = ""
    say "Hello."
    hangup
known:
    say "Hello, {name}."
    hangup
"""
    program = program_from(tmp_path, text)
    result = simulate(program, Scenario(start=0.0, variables={"name": "Ms Keller"}))
    assert "say: Hello, Ms Keller." in result.text
    plain = simulate(program, Scenario(start=0.0, variables={"name": ""}))
    assert "say: Hello." in plain.text


def test_dialogues_leave_a_real_message_in_a_throw_away_mailbox() -> None:
    config = load_config(FLOWS / "ivr.toml")
    program = load_flow([FLOWS / "acme.ivr"], prompt_folders=config.prompt_folders)
    start = parse_local("2026-12-25 10:00", "Europe/Zurich")
    sim = Simulation(program, Scenario(start=start, dialogues=True), config=config)
    result = sim.run()
    text = result.text
    beep = next(i for i, t in enumerate(text) if t.startswith("tone: "))
    recording = next(
        i for i, t in enumerate(text) if t.startswith("recording: data:voicemail/200/")
    )
    assert beep < recording < text.index("recorded 5s") < text.index("voicemail saved")
    assert result.outcome is not None and (result.outcome.result, result.outcome.detail) == (
        "voicemail",
        "200",
    )
    assert sim._data is not None and not Path(sim._data.name).exists()  # the mailbox is gone again

    empty = simulate(
        program, Scenario(start=start, dialogues=True, voicemail_result="empty"), config=config
    )
    assert "voicemail empty" in empty.text and "recorded 0s" in empty.text


def test_dialogues_without_a_deployment_resolve_voicemail_at_once(tmp_path: Path) -> None:
    result = run(tmp_path, at="2026-11-23 18:00", dialogues=True)
    assert "voicemail saved" in result.text and not any(t.startswith("tone:") for t in result.text)
