"""The sans-IO flow machine: barge-in, timers, retries, collect, sub-flows, conditions, transfers."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dsl import events as ev
from ivr.dsl.compiler import Compiler, Settings
from ivr.dsl.loader import load_flow
from ivr.dsl.machine import STEP_LIMIT, Machine, MachineError
from ivr.dsl.parser import parse_text
from ivr.dsl.schedule import parse_local

T0 = parse_local("2026-11-23 09:00", "Europe/Zurich")  # a Monday morning


def program(tmp_path: Path, text: str):  # type: ignore[no-untyped-def]
    path = tmp_path / "flow.ivr"
    path.write_text(text, encoding="utf-8")
    return load_flow([path])


def start(tmp_path: Path, text: str, *, caller: str = "+41441234567", called: str = "100",
          now: float = T0, **kwargs: object) -> tuple[Machine, list[ev.Action]]:
    machine = Machine(program(tmp_path, text), caller=caller, called=called, **kwargs)  # type: ignore[arg-type]
    return machine, machine.start(now)


def kinds(actions: list[ev.Action]) -> list[str]:
    return [a.kind for a in actions]


def texts(actions: list[ev.Action]) -> list[str]:
    return [a.text for a in actions if isinstance(a, ev.Say)]


MENU = """\
number default -> welcome
menu welcome:
    say "Welcome."
    ask "Press 1 for sales."
    wait 6s, retry 3 times
    1 -> sales
    2 -> say "Two is not much."
    invalid -> say "Sorry."
    no input -> say "Still there?"
    too many invalid -> transfer to 100 else hangup
    too many no input -> voicemail 200
sales:
    say "Sales."
    hangup
"""


# --------------------------------------------------------------------------- menus


def test_menu_timer_starts_when_the_prompts_end(tmp_path: Path) -> None:
    m, actions = start(tmp_path, MENU)
    assert actions == [
        ev.EnterStep("welcome"),
        ev.Say("Welcome.", 1),
        ev.Say("Press 1 for sales.", 2),
    ]
    assert m.next_timer is None
    assert m.handle(ev.PromptDone(1), T0 + 1) == []
    assert m.next_timer is None
    assert m.handle(ev.PromptDone(2), T0 + 3) == []
    assert m.next_timer == T0 + 3 + 6


def test_barge_in_stops_prompts_and_uses_the_key(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    actions = m.handle(ev.Key("1"), T0 + 0.5)
    assert actions == [ev.StopPrompts(), ev.EnterStep("sales"), ev.Say("Sales.", 3)]
    assert m.state.startswith("sales.drain")
    # the prompts stopped by barge-in never report; a late PromptDone for them is harmless
    assert m.handle(ev.PromptDone(1), T0 + 0.6) == []
    assert m.handle(ev.PromptDone(3), T0 + 2) == [ev.HangupCall()]
    assert m.outcome is not None and (m.outcome.result, m.outcome.step) == ("hangup", "sales")


def test_no_barge_in_prompt_ignores_keys(tmp_path: Path) -> None:
    m, actions = start(tmp_path, 'number default -> m\nmenu m:\n    say "Listen." no barge-in\n    1 -> hangup\n')
    assert actions[1] == ev.Say("Listen.", 1, barge_in=False)
    assert m.handle(ev.Key("1"), T0 + 0.5) == []
    assert m.handle(ev.PromptDone(1), T0 + 1) == []
    assert m.handle(ev.Key("1"), T0 + 2) == [ev.HangupCall()]


def test_invalid_replays_only_the_ask_prompt(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    m.handle(ev.PromptDone(1), T0 + 1)
    m.handle(ev.PromptDone(2), T0 + 2)
    actions = m.handle(ev.Key("7"), T0 + 3)
    assert texts(actions) == ["Sorry.", "Press 1 for sales."]
    assert m.next_timer is None  # re-armed only when the re-prompt has played
    inline = m.handle(ev.Key("2"), T0 + 4)
    assert texts(inline) == ["Two is not much.", "Press 1 for sales."] and inline[0] == ev.StopPrompts()


def test_no_input_and_no_match_are_counted_separately(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    now = T0
    pid = 2
    m.handle(ev.PromptDone(1), now)

    def finish_prompts() -> None:
        nonlocal now
        for p in range(pid - 1, pid + 1):
            m.handle(ev.PromptDone(p), now)

    m.handle(ev.PromptDone(2), now)
    for _ in range(2):  # two timeouts ...
        now = m.next_timer or now
        assert texts(m.handle(ev.TimerFired(), now)) == ["Still there?", "Press 1 for sales."]
        pid += 2
        finish_prompts()
    for _ in range(2):  # ... and two wrong keys leave one try of each
        assert texts(m.handle(ev.Key("9"), now)) == ["Sorry.", "Press 1 for sales."]
        pid += 2
        finish_prompts()
    now = m.next_timer or now
    assert m.handle(ev.TimerFired(), now) == [ev.Voicemail("200")]


def test_too_many_invalid(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    m.handle(ev.Key("9"), T0)
    m.handle(ev.Key("9"), T0 + 1)
    actions = m.handle(ev.Key("9"), T0 + 2)
    assert actions[-1] == ev.Transfer(((("100",), 30.0),))


def test_exhausted_default_hangs_up(tmp_path: Path) -> None:
    m, _ = start(tmp_path, "number default -> m\nmenu m:\n    ask \"Choose.\"\n    retry 1 times\n    1 -> hangup\n")
    m.handle(ev.PromptDone(1), T0)
    assert m.handle(ev.TimerFired(), T0 + 5) == [ev.HangupCall()]
    assert m.outcome is not None and m.outcome.result == "hangup"


def test_speech_options(tmp_path: Path) -> None:
    text = (
        "number default -> m\nmenu m:\n    ask \"Say sales or a name.\"\n"
        '    1 or "sales" -> sales\n    speech -> say "You said {speech}."\n    invalid -> hangup\n'
        "sales:\n    hangup\n"
    )
    m, actions = start(tmp_path, text)
    assert actions[-1] == ev.Listen(("sales",), 5.0, any_speech=True)
    assert texts(m.handle(ev.Speech("Alice Johnson"), T0 + 1)) == ["You said Alice Johnson.", "Say sales or a name."]
    actions = m.handle(ev.Speech("SALES"), T0 + 2)
    assert actions[:3] == [ev.StopPrompts(), ev.Listen(), ev.EnterStep("sales")]
    m2, _ = start(tmp_path, text)
    assert texts(m2.handle(ev.Speech(""), T0 + 1)) == ["You said .", "Say sales or a name."]  # unmatched -> speech
    m3, _ = start(tmp_path, text.replace('    speech -> say "You said {speech}."\n', ""))
    assert m3.handle(ev.Speech(""), T0 + 1)[-1] == ev.HangupCall()  # no `speech ->`: no match is invalid


def test_speech_when_not_listening_is_impossible(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    with pytest.raises(MachineError, match=r"can't handle Speech in state 'welcome\.wait@2' \(waiting for a key or speech\)"):
        m.handle(ev.Speech("sales"), T0)


# --------------------------------------------------------------------------- collect

COLLECT = """\
number default -> account
collect account:
    ask "Enter your account number."
    digits 4-6, end #
    wait 8s, between 3s, retry 2 times
    then -> lookup
    invalid -> say "Too short."
    exhausted -> hangup
lookup:
    when account >= 5000 -> big
    say "Account {account}."
    hangup
big:
    say "Big account {account}."
    hangup
"""


def test_collect_with_terminator(tmp_path: Path) -> None:
    m, _ = start(tmp_path, COLLECT)
    m.handle(ev.PromptDone(1), T0)
    assert m.next_timer == T0 + 8
    for i, d in enumerate("1234"):
        assert m.handle(ev.Key(d), T0 + 1 + i) == []
        assert m.next_timer == T0 + 1 + i + 3  # inter-digit timeout
    actions = m.handle(ev.Key("#"), T0 + 5)
    assert texts(actions) == ["Account 1234."] and m.variables["account"] == "1234"


def test_collect_ends_at_max_digits_and_on_inter_digit_timeout(tmp_path: Path) -> None:
    m, _ = start(tmp_path, COLLECT)
    for d in "987654":
        actions = m.handle(ev.Key(d), T0)
    assert texts(actions) == ["Big account 987654."]
    m2, _ = start(tmp_path, COLLECT)
    for d in "12345":
        m2.handle(ev.Key(d), T0)
    assert texts(m2.handle(ev.TimerFired(), T0 + 3)) == ["Big account 12345."]


def test_collect_too_short_then_exhausted(tmp_path: Path) -> None:
    m, _ = start(tmp_path, COLLECT)
    m.handle(ev.Key("1"), T0)
    assert texts(m.handle(ev.Key("#"), T0 + 1)) == ["Too short.", "Enter your account number."]
    assert "account" not in m.variables
    m.handle(ev.Key("1"), T0 + 2)
    assert m.handle(ev.TimerFired(), T0 + 5) == [ev.HangupCall()]  # second invalid: 2 tries
    assert m.outcome is not None and m.outcome.result == "hangup"


def test_collect_first_digit_timeout_counts_no_input(tmp_path: Path) -> None:
    m, _ = start(tmp_path, COLLECT)
    m.handle(ev.PromptDone(1), T0)
    assert texts(m.handle(ev.TimerFired(), T0 + 8)) == ["Enter your account number."]


# --------------------------------------------------------------------------- conditions and variables

HOURS = """\
switch night
timezone Europe/Zurich
number default -> start
hours office:
    mon-fri 08:00-12:00, 13:30-17:30
    closed on holidays CH-ZH
    closed when night
start:
    when caller starts with "+4179" and not caller in ("+41791111111") -> mobile
    when office is open -> open
    otherwise -> closed
mobile:
    say "Mobile {caller} on {weekday} at {time}."
    hangup
open:
    say "Open."
    hangup
closed:
    say "Closed."
    hangup
"""


@pytest.mark.parametrize(
    ("when", "caller", "switches", "expected"),
    [
        ("2026-11-23 09:00", "+41441234567", {}, "Open."),
        ("2026-11-23 12:30", "+41441234567", {}, "Closed."),  # lunch
        ("2026-11-23 09:00", "+41441234567", {"night": True}, "Closed."),  # night switch
        ("2026-12-25 10:00", "+41441234567", {}, "Closed."),  # Christmas (CH-ZH)
        ("2026-11-23 09:00", "+41795550000", {}, "Mobile +41795550000 on mon at 09:00."),
        ("2026-11-23 09:00", "+41791111111", {}, "Open."),
    ],
)
def test_conditions(tmp_path: Path, when: str, caller: str, switches: dict[str, bool], expected: str) -> None:
    _, actions = start(tmp_path, HOURS, caller=caller, now=parse_local(when, "Europe/Zurich"), switches=switches)
    assert texts(actions) == [expected]


def test_set_compare_and_initial_variables(tmp_path: Path) -> None:
    text = (
        "number default -> s\ns:\n    set n = 10\n    when n > 9 -> big\n    set lang = \"en\"\n    say \"small\"\n    hangup\n"
        "big:\n    when lang == \"de\" -> de\n    say \"big {lang}\"\n    hangup\nde:\n    say \"gross\"\n    hangup\n"
    )
    _, actions = start(tmp_path, text, variables={"lang": "fr"})
    assert texts(actions) == ["big fr"]  # a runner's variable, never set on this path
    _, actions = start(tmp_path, text, variables={"lang": "de"})
    assert texts(actions) == ["gross"]


# --------------------------------------------------------------------------- sub-flows

SUB = """\
number default -> s
sub greet(name, box):
    say "Hello {name}."
    when name == "boss" -> vip
    return
s:
    set name = "global"
    call greet("Ann", "1")
    say "Back, name is {name}."
    call greet("boss", "2")
    say "not reached"
vip:
    say "VIP."
    hangup
"""


def test_sub_flow_parameters_return_and_leaving_by_jump(tmp_path: Path) -> None:
    m, actions = start(tmp_path, SUB)
    assert texts(actions) == ["Hello Ann.", "Back, name is global.", "Hello boss.", "VIP."]
    assert [a.step for a in actions if isinstance(a, ev.EnterStep)] == ["s", "greet", "greet", "vip"]


# --------------------------------------------------------------------------- transfers, groups, directory

TRANSFER = """\
number default -> s
s:
    set ext = "300"
    say "Connecting."
    transfer to {ext} for 20s music "moh/"
        busy -> voicemail {ext}
        no answer -> sales
        answered -> say "Thanks."
        else -> hangup
    say "after"
    hangup
group sales:
    ring 201, 202 together for 25s
    then ring 203, 204 in turn for 10s each
    else -> voicemail 200
"""


def test_transfer_waits_for_prompts_then_rings(tmp_path: Path) -> None:
    m, actions = start(tmp_path, TRANSFER)
    assert texts(actions) == ["Connecting."] and m.state.startswith("s.drain")
    assert m.handle(ev.PromptDone(1), T0 + 1) == [ev.Transfer(((("300",), 20.0),), music="moh/")]
    assert m.handle(ev.TransferResult("answered", "300"), T0 + 5) == []
    assert texts(m.handle(ev.BridgeEnded(), T0 + 100)) == ["Thanks.", "after"]


def test_transfer_busy_uses_the_busy_greeting(tmp_path: Path) -> None:
    m, _ = start(tmp_path, TRANSFER)
    m.handle(ev.PromptDone(1), T0 + 1)
    assert m.handle(ev.TransferResult("busy"), T0 + 2) == [ev.Voicemail("300", "busy")]
    m.handle(ev.ActionDone("voicemail", "saved"), T0 + 60)
    assert m.outcome is not None and (m.outcome.result, m.outcome.detail) == ("voicemail", "300")


def test_group_plan_together_then_in_turn(tmp_path: Path) -> None:
    m, _ = start(tmp_path, TRANSFER)
    m.handle(ev.PromptDone(1), T0 + 1)
    actions = m.handle(ev.TransferResult("no_answer"), T0 + 21)
    assert actions == [
        ev.EnterStep("sales"),
        ev.Transfer(((("201", "202"), 25.0), (("203",), 10.0), (("204",), 10.0)), group="sales"),
    ]
    assert m.handle(ev.TransferResult("unavailable"), T0 + 60) == [ev.Voicemail("200")]


def test_answered_bridge_and_hangups(tmp_path: Path) -> None:
    text = "number default -> s\ns:\n    transfer to 300 else hangup\n"
    m, actions = start(tmp_path, text)
    assert actions[-1] == ev.Transfer(((("300",), 30.0),))
    m.handle(ev.TransferResult("answered", "300"), T0 + 3)
    assert m.handle(ev.BridgeEnded(), T0 + 60) == [ev.HangupCall()]
    assert m.outcome is not None and (m.outcome.result, m.outcome.detail) == ("transferred", "300")
    m2, _ = start(tmp_path, text)
    m2.handle(ev.TransferResult("answered", "300"), T0 + 3)
    assert m2.handle(ev.Hangup(), T0 + 30) == []
    assert m2.outcome is not None and (m2.outcome.result, m2.outcome.detail) == ("transferred", "300")


def test_blind_transfer_by_refer_ends_on_answer(tmp_path: Path) -> None:
    m, actions = start(tmp_path, "number default -> s\ns:\n    transfer to 300 by refer else hangup\n")
    assert actions[-1] == ev.Transfer(((("300",), 30.0),), refer=True)
    assert m.handle(ev.TransferResult("answered"), T0 + 1) == [ev.HangupCall("transferred")]
    assert m.outcome is not None and m.outcome.result == "transferred"


def test_a_recorded_transfer_asks_the_runtime_to_record(tmp_path: Path) -> None:
    _, actions = start(tmp_path, 'number default -> s\ns:\n    transfer to 300 for 20s music "moh/" record else hangup\n')
    assert actions[-1] == ev.Transfer(((("300",), 20.0),), music="moh/", record=True)
    _, actions = start(tmp_path, "number default -> s\ns:\n    transfer to sales record\ngroup sales:\n    ring 201 for 5s\n    else -> hangup\n")
    assert actions[-1] == ev.Transfer(((("201",), 5.0),), group="sales", record=True)


def test_directory_selected_connects_the_person_then_their_mailbox(tmp_path: Path) -> None:
    text = 'directory staff from "staff.csv"\nnumber default -> s\ns:\n    directory staff by keys\n        else -> hangup\n'
    m, actions = start(tmp_path, text)
    assert actions[-1] == ev.Directory("staff", by_speech=False, by_keys=True)
    actions = m.handle(ev.DirectoryResult("selected", "201", "Alice", "201"), T0 + 10)
    assert actions == [ev.Transfer(((("201",), 30.0),))]
    assert m.handle(ev.TransferResult("no_answer"), T0 + 40) == [ev.Voicemail("201")]


HANDOVER = """\
directory staff from "staff.csv"
number 1 -> m
menu m:
    ask "Say sales or a name."
    "sales" -> hangup
    1 -> account
    speech -> by_name
collect account:
    digits 4
    then -> by_name
by_name:
    say "One moment."
    directory staff press 9 for keypad
        else -> hangup
"""


def test_a_menu_whose_speech_option_leads_to_a_directory_listens_for_its_names(tmp_path: Path) -> None:
    m, actions = start(tmp_path, HANDOVER, called="1")
    assert actions[-1] == ev.Listen(("sales",), 5.0, any_speech=True, directory="staff")
    elsewhere = HANDOVER.replace("    speech -> by_name\n", "    speech -> account\n")
    _, actions = start(tmp_path, elsewhere, called="1")
    assert actions[-1] == ev.Listen(("sales",), 5.0, any_speech=True)  # a collect comes first: no names


def test_a_name_said_at_the_menu_is_handed_to_the_directory(tmp_path: Path) -> None:
    m, _ = start(tmp_path, HANDOVER, called="1")
    assert texts(m.handle(ev.Speech("alice johnson"), T0 + 1)) == ["One moment."]  # the drain keeps it
    directory = ev.Directory("staff", keypad_key="9", heard="alice johnson")
    assert m.handle(ev.PromptDone(2), T0 + 2) == [directory]


def test_a_name_is_not_handed_on_once_the_caller_was_asked_something_else(tmp_path: Path) -> None:
    m, _ = start(tmp_path, HANDOVER.replace("speech -> by_name", "speech -> account"), called="1")
    m.handle(ev.Speech("alice johnson"), T0 + 1)  # into the collect, which waits for digits
    for n, digit in enumerate("1234"):
        actions = m.handle(ev.Key(digit), T0 + 2 + n)
    assert texts(actions) == ["One moment."]
    assert m.handle(ev.PromptDone(2), T0 + 9) == [ev.Directory("staff", keypad_key="9")]


def test_voicemail_greeting_by_context_and_no_temporary(tmp_path: Path) -> None:
    text = ("number default -> s\ns:\n    transfer to 300\n        busy -> voicemail 300 no temporary\n"
            "        else -> voicemail 300\n")
    m, _ = start(tmp_path, text)
    assert m.handle(ev.TransferResult("busy"), T0 + 5) == [ev.Voicemail("300", "busy", temporary=False)]
    m, _ = start(tmp_path, text)
    assert m.handle(ev.TransferResult("no_answer"), T0 + 5) == [ev.Voicemail("300", "unavailable")]


def test_record_hold_and_voicemail_access(tmp_path: Path) -> None:
    text = (
        "number default -> s\ns:\n    record into note max 30s\n    hold for 5s\n"
        '    say "Saved {note}."\n    voicemail access 200\n'
    )
    m, actions = start(tmp_path, text)
    assert actions[-1] == ev.Record("note", 30.0)
    assert m.handle(ev.RecordingDone("data/rec.wav", 4.0), T0 + 5) == [ev.Hold("", 5.0)]
    assert texts(m.handle(ev.ActionDone("hold"), T0 + 10)) == ["Saved data/rec.wav."]
    assert m.handle(ev.PromptDone(1), T0 + 12) == [ev.VoicemailAccess("200")]
    assert m.handle(ev.ActionDone("voicemail_access", "done"), T0 + 100) == [ev.HangupCall()]
    assert m.outcome is not None and m.outcome.result == "voicemail_access"


# --------------------------------------------------------------------------- impossible events and limits


def test_impossible_events_name_state_and_event(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    with pytest.raises(MachineError) as info:
        m.handle(ev.TransferResult("busy"), T0)
    assert str(info.value) == "can't handle TransferResult in state 'welcome.wait@2' (waiting for a key or speech)"
    with pytest.raises(MachineError, match="no timer pending"):
        m.handle(ev.TimerFired(), T0)
    with pytest.raises(MachineError, match="no prompt 9 was started"):
        m.handle(ev.PromptDone(9), T0)
    with pytest.raises(MachineError, match=r"can't handle ActionDone in state 'welcome.wait@2'"):
        m.handle(ev.ActionDone("record"), T0)
    m.handle(ev.Hangup(), T0 + 1)
    assert m.outcome is not None and m.outcome.result == "caller_hangup"
    with pytest.raises(MachineError, match=r"can't handle Key in state 'welcome.wait@2' \(call finished\)"):
        m.handle(ev.Key("1"), T0 + 2)


def test_early_timer_is_ignored(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    m.handle(ev.PromptDone(1), T0)
    m.handle(ev.PromptDone(2), T0)
    assert m.handle(ev.TimerFired(), T0 + 1) == []
    assert m.next_timer == T0 + 6


def test_runtime_loop_hits_the_step_limit() -> None:
    # checks reject this flow; compile it directly to prove the machine guards itself too
    flow = parse_text('number default -> a\na:\n    set x = "1"\n    -> b\nb:\n    -> a\n', "loop.ivr")
    prog = Compiler(flow.items).compile(Settings(), {}, {"default": "a"})
    m = Machine(prog, caller="1", called="2")
    with pytest.raises(MachineError, match=f"flow loops without waiting for the caller: {STEP_LIMIT} transitions"):
        m.start(T0)


def test_entry_for_normalizes_numbers(tmp_path: Path) -> None:
    prog = program(tmp_path, "number +41435435570 -> a\nnumber 100 -> b\na:\n    hangup\nb:\n    hangup\n")
    assert prog.entry_for("+41435435570") == "a"
    assert prog.entry_for("0041435435570") == "a"
    assert prog.entry_for("41435435570") == "a"
    assert prog.entry_for("sip:+41435435570@example.com") == "a"
    assert prog.entry_for("100") == "b"
    with pytest.raises(LookupError, match="no entry point for called number '999'"):
        prog.entry_for("999")


def test_type_ahead_during_a_prompt_reaches_the_next_menu(tmp_path: Path) -> None:
    text = 'number default -> s\ns:\n    say "Hello."\n    hold for 2s\n    -> m\nmenu m:\n    ask "Choose."\n    1 -> hangup\n'
    m, _ = start(tmp_path, text)
    assert m.handle(ev.Key("1"), T0 + 0.1) == []
    assert m.handle(ev.PromptDone(1), T0 + 1) == [ev.Hold("", 2.0)]
    actions = m.handle(ev.ActionDone("hold"), T0 + 3)
    assert kinds(actions) == ["step", "say", "stop_prompts", "hangup"]


def test_type_ahead_into_a_speech_menu_stops_listening_and_the_timer(tmp_path: Path) -> None:
    text = (
        'number default -> s\ns:\n    say "Hello."\n    hold for 2s\n    -> m\n'
        'menu m:\n    ask "Choose."\n    1 or "one" -> t\n    invalid -> hangup\nt:\n    hold for 9s\n'
    )
    m, _ = start(tmp_path, text)
    m.handle(ev.Key("1"), T0 + 0.1)
    m.handle(ev.PromptDone(1), T0 + 1)
    actions = m.handle(ev.ActionDone("hold"), T0 + 3)
    assert kinds(actions) == ["step", "say", "listen", "stop_prompts", "listen", "step", "hold"]
    assert actions[4] == ev.Listen() and m.next_timer is None


def test_runaway_sub_flow_recursion_is_stopped() -> None:
    # checks reject recursion; compiled directly, the machine still refuses to stack calls forever
    flow = parse_text('number default -> s\ns:\n    call a()\nsub a():\n    say "x"\n    call a()\n', "rec.ivr")
    prog = Compiler(flow.items).compile(Settings(), {}, {"default": "s"})
    m = Machine(prog, caller="1", called="2")
    with pytest.raises(MachineError, match=r"sub-flow calls nest deeper than 50 at state 'a\.call@6' \(call a\)"):
        m.start(T0)


def test_step_and_waits_properties(tmp_path: Path) -> None:
    m, _ = start(tmp_path, MENU)
    assert (m.step, m.waits) == ("welcome", ("key", "speech", "prompt_done", "timer"))
    m.handle(ev.Key("1"), T0)
    assert (m.step, m.waits) == ("sales", ("prompt_done",))
    m.handle(ev.Hangup(), T0 + 1)
    assert m.waits == ()


def test_per_call_language_and_voice(tmp_path: Path) -> None:
    text = (
        'voice en-us\nlanguage en\nnumber default -> s\ns:\n    say "Hello."\n'
        '    set language = "de"\n    set voice = "de"\n    say "Hallo."\n    hangup\n'
    )
    _, actions = start(tmp_path, text)
    says = [a for a in actions if isinstance(a, ev.Say)]
    assert [(a.voice, a.language) for a in says] == [("en-us", "en"), ("de", "de")]


def test_the_call_language_follows_a_menu_option(tmp_path: Path) -> None:
    """What the runtime reads to choose ivr's own sentences: the last `set language` the call ran."""
    text = (
        'language en\nnumber default -> m\nmenu m:\n    ask "1 Deutsch, 2 français."\n    1 -> de\n    2 -> fr\n'
        'de:\n    set language = "de"\n    voicemail 200\nfr:\n    set language = "fr"\n    voicemail 200\n'
    )
    machine, _ = start(tmp_path, text)
    assert (machine.language, machine.voice) == ("en", "")
    machine.handle(ev.Key("2"), T0 + 1)
    assert machine.state.startswith("fr") and machine.language == "fr"


def test_hangup_outcomes_depend_on_where_the_caller_is(tmp_path: Path) -> None:
    text = "number default -> s\ns:\n    voicemail 200\n"
    m, actions = start(tmp_path, text)
    assert actions[-1] == ev.Voicemail("200")
    with pytest.raises(MachineError, match=r"can't handle ActionDone in state 's\.voicemail@3' \(waiting for voicemail"):
        m.handle(ev.ActionDone("record"), T0 + 1)
    assert m.handle(ev.Hangup(), T0 + 30) == []  # hung up after the message: the runner saves it
    assert m.outcome is not None and (m.outcome.result, m.outcome.detail, m.outcome.step) == ("voicemail", "200", "s")


def test_directory_person_without_mailbox_ends_in_error(tmp_path: Path) -> None:
    text = 'directory staff from "staff.csv"\nnumber default -> s\ns:\n    directory staff\n        else -> hangup\n'
    m, _ = start(tmp_path, text)
    m.handle(ev.DirectoryResult("selected", "209", "Temp", ""), T0 + 5)
    assert m.handle(ev.TransferResult("busy"), T0 + 10) == [ev.HangupCall("error")]
    assert m.outcome is not None and (m.outcome.result, m.outcome.detail) == ("error", "no mailbox to leave a message in")


def test_empty_recording_and_holds_without_duration(tmp_path: Path) -> None:
    text = 'number default -> s\ns:\n    record into note\n    hold music "moh/"\n    say "[{note}]"\n    hangup\n'
    m, actions = start(tmp_path, text)
    actions = m.handle(ev.RecordingDone("data/x.wav", 0.0, "silence"), T0 + 5)
    assert actions == [ev.Hold("moh/", 0.0), ev.Say("[]", 1)]  # too short: no file; hold goes on at once
    with pytest.raises(MachineError, match="can't handle ActionDone"):
        m.handle(ev.ActionDone("hold"), T0 + 6)


def test_failed_voicemail_ends_in_error(tmp_path: Path) -> None:
    m, _ = start(tmp_path, "number default -> s\ns:\n    voicemail 999\n")
    assert m.handle(ev.ActionDone("voicemail", "failed"), T0 + 1) == [ev.HangupCall("error")]
    assert m.outcome is not None and (m.outcome.result, m.outcome.detail) == ("error", "voicemail 999 failed")


def test_speech_only_menu_listens_and_stops(tmp_path: Path) -> None:
    text = 'number default -> m\nmenu m:\n    ask "Say a name."\n    speech -> say "Looking up {speech}."\n    1 -> hangup\n'
    m, actions = start(tmp_path, text)
    assert actions[-1] == ev.Listen((), 5.0, any_speech=True)
    actions = m.handle(ev.Key("1"), T0 + 1)
    assert actions[:2] == [ev.StopPrompts(), ev.Listen()]
