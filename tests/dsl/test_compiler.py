"""The compiled table: explicit states, every transition labelled, nothing dangling."""

from __future__ import annotations

from pathlib import Path

from ivr.dsl import ast
from ivr.dsl.compiler import (
    BranchOp,
    DrainOp,
    EnterOp,
    FinishOp,
    MenuStartOp,
    MenuWaitOp,
    Program,
    PromptOp,
    TransferOp,
)
from ivr.dsl.loader import load_flow

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"


def load(tmp_path: Path, text: str) -> Program:
    path = tmp_path / "c.ivr"
    path.write_text(text, encoding="utf-8")
    return load_flow([path])


def table(program: Program, step: str) -> list[tuple[str, str, dict[str, str]]]:
    return [(s.name, type(s.op).__name__, dict(s.transitions)) for s in program.states.values() if s.step == step]


def test_menu_compiles_to_explicit_states(tmp_path: Path) -> None:
    program = load(tmp_path, (
        "number default -> m\n"
        "menu m:\n"
        '    say "Hi."\n'
        '    ask "Press 1."\n'
        "    1 -> t\n"
        '    invalid -> say "No."\n'
        "t:\n    hangup\n"
    ))
    assert sorted(table(program, "m")) == sorted([
        ("m", "EnterOp", {"next": "m.start@2"}),
        ("m.start@2", "MenuStartOp", {"next": "m.say@3"}),
        ("m.say@3", "PromptOp", {"next": "m.say@4"}),
        ("m.say@4", "PromptOp", {"next": "m.wait@2"}),
        ("m.say@6", "PromptOp", {"next": "m.say@4"}),
        ("m.wait@2", "MenuWaitOp", {
            "invalid": "m.say@6", "no_input": "m.say@4",
            "too_many_invalid": "m.drain@2", "too_many_no_input": "m.drain@2", "key:1": "t",
        }),
        ("m.drain@2", "DrainOp", {"next": "m.end@2"}),
        ("m.end@2", "FinishOp", {}),
    ])
    wait = program.states["m.wait@2"]
    assert isinstance(wait.op, MenuWaitOp) and wait.waits == ("key", "speech", "prompt_done", "timer")
    assert (wait.op.keys, wait.op.timeout, wait.op.tries) == (("1",), 5.0, 3)
    assert isinstance(program.states["m"].op, EnterOp) and program.states["m"].waits == ()
    assert isinstance(program.states["m.start@2"].op, MenuStartOp)
    assert isinstance(program.states["m.say@3"].op, PromptOp)
    assert isinstance(program.states["m.end@2"].op, FinishOp) and program.states["m.end@2"].op.result == "hangup"


def test_when_and_transfer_tables(tmp_path: Path) -> None:
    program = load(tmp_path, (
        "number default -> s\n"
        "s:\n"
        '    when caller == "1" -> t\n'
        "    transfer to 300 for 20s\n"
        "        busy -> t\n"
        "        else -> hangup\n"
        "t:\n    hangup\n"
    ))
    when = program.states["s.when@3"]
    assert isinstance(when.op, BranchOp) and dict(when.transitions) == {"true": "t", "false": "s.drain@4"}
    assert isinstance(program.states["s.drain@4"].op, DrainOp)
    transfer = program.states["s.transfer@4"]
    assert isinstance(transfer.op, TransferOp) and transfer.waits == ("transfer_result",)
    assert set(transfer.transitions) == {"answered", "busy", "no_answer", "unavailable", "failed"}
    assert transfer.transitions["busy"] == "t"
    others = {transfer.transitions[o] for o in ("no_answer", "unavailable", "failed")}
    assert len(others) == 1  # one `else` branch, compiled once


def test_several_targets_compile_to_the_plan_a_group_would_have(tmp_path: Path) -> None:
    """`transfer to 10, 11 in turn for 20s` and a group's `ring 10, 11 in turn for 20s` give one plan."""
    program = load(tmp_path, (
        "number 1 -> a\nnumber 2 -> b\nnumber 3 -> g\n"
        "a:\n    transfer to 10, 11 together for 20s else hangup\n"
        "b:\n    transfer to 10, 11 in turn for 20s else hangup\n"
        "group g:\n    ring 10, 11 in turn for 20s\n    else -> hangup\n"
    ))
    ops = {s.step: s.op for s in program.states.values() if isinstance(s.op, TransferOp)}

    def plan(step: str) -> list[tuple[list[str], float]]:
        return [([v.text for v in targets if isinstance(v, ast.Num)], t) for targets, t in ops[step].plan]

    assert plan("a") == [(["10", "11"], 20.0)]
    assert plan("b") == plan("g") == [(["10"], 20.0), (["11"], 20.0)]
    assert ops["b"].describe() == "transfer to 10, 11" and ops["g"].describe() == "ring group g"


def test_every_table_is_complete_and_closed() -> None:
    """Every transition leads to a state; every state has a transition for each edge its op can take."""
    for path in [*sorted((ROOT / "flows").glob("*.ivr")), DATA / "full.ivr"]:
        program = load_flow([path])
        for state in program.states.values():
            for event, target in state.transitions.items():
                assert target in program.states, (path, state.name, event, target)
            missing = set(state.op.edges) - set(state.transitions)
            assert not missing, (path, state.name, missing)
            if isinstance(state.op, MenuWaitOp):
                keys = {e.removeprefix("key:") for e in state.transitions if e.startswith("key:")}
                assert keys == set(state.op.keys)
        assert set(program.entries.values()) <= set(program.states)
