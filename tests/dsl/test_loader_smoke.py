"""The full fixture flow loads, and one call runs through it to voicemail."""

from __future__ import annotations

from pathlib import Path

from ivr.dsl import events as ev
from ivr.dsl.machine import Machine
from ivr.dsl.schedule import parse_local
from ivr.runtime.deployment import load_flow

DATA = Path(__file__).parent / "data"


def test_full_fixture_loads_and_busy_transfer_reaches_voicemail() -> None:
    program = load_flow([DATA / "full.ivr"], prompt_folders=[DATA / "prompts"])
    now = parse_local("2026-11-23 09:00", "Europe/Zurich")
    machine = Machine(program, caller="+41441234567", called="+41435435570")
    actions = machine.start(now)
    assert [a.kind for a in actions] == ["step", "step", "say", "say", "listen"]
    actions = machine.handle(ev.Key("2"), now + 1)
    assert actions[0] == ev.StopPrompts()
    assert actions[-1] == ev.Transfer(((("300",), 30.0),))
    assert machine.handle(ev.TransferResult("busy"), now + 5) == [ev.Voicemail("300", "busy")]
    assert machine.handle(ev.ActionDone("voicemail", "saved"), now + 60) == [ev.HangupCall()]
    assert machine.finished
    assert machine.outcome is not None
    assert (machine.outcome.result, machine.outcome.detail) == ("voicemail", "300")


def test_full_fixture_is_clean_under_strict() -> None:
    program = load_flow([DATA / "full.ivr"], prompt_folders=[DATA / "prompts"], strict=True)
    assert program.warnings == ()
    assert program.settings.voice == "en-us" and program.settings.rate == 170
    assert program.settings.directories["staff"] == str((DATA / "staff.csv").resolve())
    assert program.settings.switches == ("night",)
    assert set(program.schedules) == {"office"}
    assert program.entries == {"+41435435570": "start", "100": "support", "101": "support", "default": "start"}
