"""The simulator: the server's call runtime in virtual time, with the caller and the far ends scripted.

Timings are asserted against the real renderings (the deployment's TTS), because a simulated
prompt lasts exactly as long as the clip the server would play.
"""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import soundfile

from ivr.config import Config, load_config
from ivr.dsl.compiler import Program
from ivr.dsl.schedule import parse_local
from ivr.media.tts import TtsEngine
from ivr.runtime.deployment import load_flow
from ivr.runtime.simulate import (
    CallerInput,
    Scenario,
    Simulation,
    SimulationError,
    SimulationResult,
    parse_input,
    parse_inputs,
    simulate,
)

FLOWS = Path(__file__).resolve().parents[2] / "flows"
MONDAY_9 = "2026-11-23 09:00"

DEPLOYMENT = """\
[server]
data = "{data}"

[prompts]
folders = ["prompts"]

[[extensions]]
number = "201"
name = "Alice Johnson"
password = "ajo-9Lm3-cQ7r"
mailbox = "201"

[[extensions]]
number = "204"
name = "Thomas Zurcher"
password = "tzu-8Bn5-hR2g"
follow_me = ["+41797001204"]

[[mailboxes]]
number = "200"
owner = "Sales team"

[[mailboxes]]
number = "201"
owner = "Alice Johnson"

[[trunks]]
name = "carrier"
host = "192.0.2.99"
allow = ["+41797001*"]
"""

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


def deployment(tmp_path: Path) -> Config:
    (tmp_path / "prompts").mkdir(exist_ok=True)
    shared = tmp_path.parent / "shared-data"  # one TTS cache for the session's tests
    (tmp_path / "ivr.toml").write_text(DEPLOYMENT.format(data=shared), encoding="utf-8")
    return load_config(tmp_path / "ivr.toml")


def program_from(tmp_path: Path, text: str) -> Program:
    path = tmp_path / "flow.ivr"
    path.write_text(text, encoding="utf-8")
    return load_flow([path], prompt_folders=[tmp_path / "prompts"])


def run(
    tmp_path: Path, inputs: str = "", *, at: str = MONDAY_9, text: str = MENU_FLOW, **kw: Any
) -> SimulationResult:
    config = deployment(tmp_path)
    program = program_from(tmp_path, text)
    scenario = Scenario(
        start=parse_local(at, "Europe/Zurich"),
        caller="+41791112233",
        inputs=tuple(parse_inputs(inputs)),
        **kw,
    )
    return simulate(program, scenario, config=config)


def seconds(tmp_path: Path, *texts: str) -> float:
    """How long the server's TTS takes to say ``texts`` one after the other."""
    config = deployment(tmp_path)
    tts = TtsEngine.in_data_folder(config.data, config.tts)
    return sum(tts.render(t).duration for t in texts)


def lines(result: SimulationResult) -> list[str]:
    return [t for t in result.text if not t.startswith(("listen:", "call from", "hours "))]


# --------------------------------------------------------------------------- tokens


def test_parse_inputs() -> None:
    assert parse_inputs(
        '1 123# say:alice_johnson say:alice_johnson|alicia_jensen say:"bob smith" say: wait:10s wait:500ms wait hangup !2'
    ) == [
        CallerInput("key", "1"),
        CallerInput("key", "123#"),
        CallerInput("speech", "alice johnson"),
        CallerInput("speech", "alice johnson", rival="alicia jensen"),
        CallerInput("speech", "bob smith"),
        CallerInput("speech", ""),
        CallerInput("wait", seconds=10.0),
        CallerInput("wait", seconds=0.5),
        CallerInput("wait"),
        CallerInput("hangup"),
        CallerInput("key", "2", barge_in=True),
    ]
    assert [str(i) for i in parse_inputs("1 !say:bob_smith say:a_b|c wait:2m wait hangup")] == [
        "1",
        "!say:bob_smith",
        "say:a_b|c",
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
    assert key.at == pytest.approx(seconds(tmp_path, "Welcome to Acme.", "Press 1 for sales."), abs=1e-6)
    answered = next(line for line in result.lines if line.text == "answered by 201")
    assert answered.at - key.at == pytest.approx(5.0)  # a desk phone rings five seconds


def test_the_trace_is_the_runtimes_own_log(tmp_path: Path) -> None:
    result = run(tmp_path, "1")
    actions = [r["action"] for r in result.records if "action" in r]
    assert actions[:2] == ["answer", "step"]  # the runner answered the INVITE, then ran the flow
    assert "transfer" in actions and actions[-1] == "bye"
    invite = next(r for r in result.records if r.get("event") == "leg_invite")
    assert invite["target"] == "201" and invite["uri"].startswith("sip:201@")
    assert result.records[-1]["event"] == "ended" and result.records[-1]["outcome"] == "transferred"


def test_the_same_scenario_gives_the_same_trace(tmp_path: Path) -> None:
    first, second = run(tmp_path, "7 wait:3s 1"), run(tmp_path, "7 wait:3s 1")
    assert [(round(line.at, 6), line.text) for line in first.lines] == [
        (round(line.at, 6), line.text) for line in second.lines
    ]


def test_timeouts_start_after_the_prompts(tmp_path: Path) -> None:
    result = run(tmp_path, "")
    timeouts = [line.at for line in result.lines if line.text == "timeout"]
    prompts = seconds(tmp_path, "Welcome to Acme.", "Press 1 for sales.")
    ask = seconds(tmp_path, "Press 1 for sales.")
    assert timeouts == pytest.approx([prompts + 5, prompts + 5 + ask + 5], abs=1e-6)
    assert result.outcome is not None and result.outcome.result == "hangup"


def test_barge_in_stops_the_prompt(tmp_path: Path) -> None:
    result = run(tmp_path, "!1")
    text = lines(result)
    assert text[3:6] == ["say: Press 1 for sales.", "caller presses 1", "prompts stopped (barge-in)"]
    assert next(line.at for line in result.lines if line.kind == "caller") == 0.0


def test_a_key_during_a_plain_say_plays_it_out_and_the_call_ends(tmp_path: Path) -> None:
    """Regression: on the server this call used to hang (media stopped the prompt and never said so)."""
    text = 'number 100 -> s\ns:\n    say "We are closed today. Please call again tomorrow."\n    hangup\n'
    result = run(tmp_path, "!5", text=text)
    assert lines(result)[-2:] == ["hangup", "outcome: hangup (in s)"]
    assert "prompts stopped (barge-in)" not in result.text
    end = next(line.at for line in result.lines if line.text == "hangup")
    assert end == pytest.approx(seconds(tmp_path, "We are closed today. Please call again tomorrow."), abs=1e-6)


def test_wait_then_key_arrives_mid_reprompt(tmp_path: Path) -> None:
    mid_reprompt = seconds(tmp_path, "Welcome to Acme.", "Press 1 for sales.") + 5 + 0.5
    result = run(tmp_path, f"wait:{mid_reprompt:.2f}s 1")
    text = lines(result)
    assert text.index("timeout") < text.index("caller presses 1")
    assert "prompts stopped (barge-in)" in text  # 8 s is during the second "Press 1 for sales."
    assert result.outcome is not None and result.outcome.detail == "201"


def test_speech_and_invalid_key(tmp_path: Path) -> None:
    result = run(tmp_path, "7 say:sales")
    text = lines(result)
    assert text.index("say: Sorry.") < text.index('caller says "sales"') < text.index("transfer: 201 (20s)")


def test_speech_the_grammar_does_not_have_is_no_match(tmp_path: Path) -> None:
    result = run(tmp_path, "say:support 1")
    text = lines(result)
    assert text.index('caller says "support"') < text.index("say: Sorry.") < text.index("caller presses 1")


def test_a_menu_with_only_speech_listens_for_speech(tmp_path: Path) -> None:
    """Regression: the old simulator listened for keys only; the server listens for speech."""
    text = """\
number 100 -> welcome
menu welcome:
    ask "Tell us what you need."
    wait 5s, retry 2 times
    speech -> thanks
    no input -> hangup
thanks:
    say "Thanks."
    hangup
"""
    result = run(tmp_path, "say:my_invoice_is_wrong", text=text)
    assert "listen: keys, speech (anything)" in result.text
    assert lines(result)[-3:] == ["say: Thanks.", "hangup", "outcome: hangup (in thanks)"]


def test_caller_hangs_up(tmp_path: Path) -> None:
    result = run(tmp_path, "hangup")
    assert "caller hangs up" in result.text
    assert result.outcome is not None and result.outcome.result == "caller_hangup"


def test_hang_up_while_ringing(tmp_path: Path) -> None:
    result = run(tmp_path, "1 wait:3s hangup", answer=frozenset())
    hangup = next(line for line in result.lines if line.text == "caller hangs up")
    key = next(line for line in result.lines if line.text == "caller presses 1")
    assert hangup.at == pytest.approx(key.at + 3.0, abs=1e-6)  # three seconds into the ringing
    assert "no answer" not in lines(result)
    assert result.outcome is not None and result.outcome.result == "caller_hangup"
    assert any(r.get("event") == "leg_cancel" for r in result.records)  # the phone stops ringing


def test_transfer_outcomes_follow_the_scenario(tmp_path: Path) -> None:
    busy = run(tmp_path, "1", busy=frozenset({"201"}))
    assert "busy" in busy.text and busy.outcome is not None and busy.outcome.detail == "200"
    nobody = run(tmp_path, "1", answer=frozenset(), no_answer=frozenset({"*"}))
    assert "no answer" in nobody.text and nobody.outcome is not None and nobody.outcome.detail == "201"
    gone = run(tmp_path, "1", unavailable=frozenset({"201"}))
    assert "unavailable" in gone.text


def test_a_target_that_is_no_extension_and_no_allowed_number_fails_as_on_the_server(tmp_path: Path) -> None:
    text = MENU_FLOW.replace("transfer to 201 for 20s", "transfer to 299 for 20s")
    result = run(tmp_path, "1", text=text)
    assert "failed" in result.text and "answered by 299" not in result.text
    unreachable = next(r for r in result.records if r.get("event") == "transfer_target_unreachable")
    assert unreachable["target"] == "299"


def test_follow_me_rings_the_mobile_too(tmp_path: Path) -> None:
    """Regression: follow_me numbers rang on a real call and never in the simulator."""
    text = "number 100 -> s\ns:\n    transfer to 204 for 20s else voicemail 200\n"
    result = run(tmp_path, text=text, no_answer=frozenset({"204"}))
    assert "answered by +41797001204" in result.text
    invites = [r["uri"] for r in result.records if r.get("event") == "leg_invite"]
    assert any(uri.startswith("sip:+41797001204@192.0.2.99") for uri in invites)  # through the trunk


def test_a_number_the_trunk_does_not_allow_is_never_dialled(tmp_path: Path) -> None:
    """Regression: trunk allow patterns refused a number on a real call that the simulator answered."""
    text = "number 100 -> s\ns:\n    transfer to +41449999999 for 20s else voicemail 200\n"
    result = run(tmp_path, text=text)
    assert "answered by +41449999999" not in result.text
    assert not any(r.get("event") == "leg_invite" for r in result.records)
    assert result.outcome is not None and result.outcome.detail == "200"


def test_voicemail_for_a_mailbox_the_deployment_lacks_fails_as_on_the_server(tmp_path: Path) -> None:
    """Regression: the old simulator said "saved"; the server ends such a call with an error."""
    result = run(tmp_path, text="number 100 -> s\ns:\n    voicemail 999\n")
    assert "voicemail failed" in result.text
    assert result.outcome is not None and result.outcome.result == "error"


def test_hours_and_switch(tmp_path: Path) -> None:
    evening = run(tmp_path, at="2026-11-23 18:00")
    assert "say: We are closed." in evening.text
    night = run(tmp_path, at=MONDAY_9, switches={"night": True})
    assert "say: We are closed." in night.text
    day = run(tmp_path, at=MONDAY_9, switches={"night": False})
    assert "say: Welcome to Acme." in day.text


def test_voicemail_records_the_callers_message_in_a_throw_away_mailbox(tmp_path: Path) -> None:
    result = run(tmp_path, at="2026-11-23 18:00")
    text = result.text
    beep = next(i for i, t in enumerate(text) if t.startswith("tone: "))
    recording = next(i for i, t in enumerate(text) if t.startswith("recording: data:voicemail/200/"))
    assert beep < recording < text.index("voicemail saved")
    assert result.outcome is not None and (result.outcome.result, result.outcome.detail) == ("voicemail", "200")
    assert not (tmp_path.parent / "shared-data" / "voicemail").exists()  # the deployment's data is untouched


def test_a_caller_who_says_nothing_leaves_no_message(tmp_path: Path) -> None:
    result = run(tmp_path, at="2026-11-23 18:00", voicemail_result="empty")
    assert "voicemail empty" in result.text
    assert result.outcome is not None and result.outcome.result == "voicemail"


def test_hash_ends_the_message(tmp_path: Path) -> None:
    result = run(tmp_path, "#", at="2026-11-23 18:00")
    recorded = next(t for t in result.text if t.startswith("recorded "))
    assert recorded in ("recorded 5s", "recorded 5.0s") and "voicemail saved" in result.text


def test_play_lasts_as_long_as_the_file(tmp_path: Path) -> None:
    deployment(tmp_path)
    soundfile.write(tmp_path / "prompts" / "three.wav", np.zeros(24000, dtype=np.int16), 8000, subtype="PCM_16")
    text = 'number 100 -> start\nstart:\n    play "three.wav"\n    say "Bye."\n    hangup\n'
    result = run(tmp_path, text=text)
    hangup = next(line for line in result.lines if line.text == "hangup")
    assert hangup.at == pytest.approx(3.0 + seconds(tmp_path, "Bye."), abs=1e-6)


def test_a_prompt_file_that_is_missing_is_skipped_as_on_the_server(tmp_path: Path) -> None:
    text = 'number 100 -> start\nstart:\n    play "missing.wav"\n    say "Bye."\n    hangup\n'
    result = run(tmp_path, text=text)
    assert any(r.get("event") == "prompt_error" for r in result.records)
    assert lines(result)[-2:] == ["hangup", "outcome: hangup (in start)"]


DIRECTORY_FLOW = f"""\
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


def test_directory_by_speech_with_confirmation(tmp_path: Path) -> None:
    spoken = run(tmp_path, "say:peter_mueller 1", text=DIRECTORY_FLOW)
    assert "selected Peter Müller (208)" in spoken.text
    picked = run(tmp_path, text=DIRECTORY_FLOW, directory=("Lena Fischer",))
    assert "selected Lena Fischer (205)" in picked.text
    assert any(t.startswith("transfer: 205") for t in picked.text)


def test_directory_outcomes(tmp_path: Path) -> None:
    operator = run(tmp_path, text=DIRECTORY_FLOW, directory=("operator",))
    assert "operator" in operator.text and operator.outcome is not None and operator.outcome.result == "hangup"
    spelled = run(tmp_path, "932# 1", text=DIRECTORY_FLOW)  # W-E-B on the keypad, then "1 for Jonas Weber"
    assert "selected Jonas Weber (210)" in spelled.text
    silent = run(tmp_path, text=DIRECTORY_FLOW)
    assert "not found" in silent.text and "say: Nobody." in silent.text


def test_a_flow_that_never_ends_is_stopped(tmp_path: Path) -> None:
    text = "number 100 -> start\nstart:\n    hold for 1s\n    -> start\n"
    result = run(tmp_path, text=text)
    assert any(t.startswith("simulation stopped after") for t in result.text)
    assert result.text[-1] == "outcome: caller_hangup (in start)"  # the stop is the caller hanging up


def test_the_call_starts_with_the_state_of_every_schedule(tmp_path: Path) -> None:
    assert run(tmp_path, "hangup").text[1] == "hours office: open until 17:00"
    assert run(tmp_path, "hangup", at="2026-11-27 18:00").text[1] == "hours office: closed until Mon 08:00"
    night = run(tmp_path, "hangup", switches={"night": True})
    assert night.text[1] == "hours office: closed while switch night is on"
    christmas = run(tmp_path, "hangup", at="2026-12-25 10:00", text=MENU_FLOW.replace(
        "    closed when night\n", "    closed when night\n    closed on holidays CH-ZH\n"
    ))  # fmt: skip
    assert christmas.text[1] == "hours office: closed (Christmas Day) until Mon 08:00"


def test_input_left_over_is_reported(tmp_path: Path) -> None:
    result = run(tmp_path, "hangup 1 say:sales")
    assert result.text[-2:] == ["caller input not used: 1 say:sales", "outcome: caller_hangup (in welcome)"]


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
    assert "say: Hello, Ms Keller." in run(tmp_path, text=text, variables={"name": "Ms Keller"}).text
    assert "say: Hello." in run(tmp_path, text=text, variables={"name": ""}).text


def test_interactive_input_is_asked_for_when_the_flow_waits(tmp_path: Path) -> None:
    config = deployment(tmp_path)
    program = program_from(tmp_path, MENU_FLOW)
    asked: list[float] = []
    answers = iter([[CallerInput("key", "1")], None])

    def more() -> list[CallerInput] | None:
        asked.append(len(asked))
        return next(answers)

    result = Simulation(program, Scenario(start=parse_local(MONDAY_9, "Europe/Zurich")), config=config,
                        more_input=more).run()
    assert asked == [0] and "caller presses 1" in result.text  # then the flow never waited again


def test_early_media_of_a_ringing_phone_reaches_the_caller(tmp_path: Path) -> None:
    plain = run(tmp_path, "1", no_answer=frozenset({"201"}))
    early = run(tmp_path, "1", no_answer=frozenset({"201"}), early_media=frozenset({"201"}))
    assert not any(r.get("event") == "transfer_early_media" for r in plain.records)
    heard = [r for r in early.records if r.get("event") == "transfer_early_media"]
    assert [r["target"] for r in heard] == ["201"]
    # the caller heard the phone instead of ringback, and the ring plan went on all the same
    assert [line.text for line in early.lines if line.kind == "result"][:1] == ["no answer"]
