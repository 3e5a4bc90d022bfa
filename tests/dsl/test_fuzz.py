"""Property tests: any text, and any mutation of the example flows, loads or raises FlowError.

And any sequence of events fed to a machine yields actions or raises MachineError, never
anything else.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from ivr.dsl import events as ev
from ivr.dsl.compiler import Program
from ivr.dsl.errors import FlowError
from ivr.dsl.loader import load_flow
from ivr.dsl.machine import Machine, MachineError
from ivr.dsl.schedule import parse_local

ROOT = Path(__file__).resolve().parents[2]
DATA = Path(__file__).parent / "data"
EXAMPLES = sorted((ROOT / "flows").glob("*.ivr")) + [DATA / "full.ivr"]
TEXTS = {p: p.read_text(encoding="utf-8") for p in EXAMPLES}
WORDS = [
    "say", "play", "menu", "collect", "group", "sub", "hours", "number", "->", ":", "\n", "    ", "\t", '"', "#",
    "transfer to", "else", "busy", "no answer", "when", "otherwise", "is open", "and", "or", "not", "(", ")",
    "wait 6s", "retry 3 times", "digits 4-6", "end #", "1", "*", "{x}", "call f(", "return", "hangup", "voicemail",
    "include", "timezone Mars/Base", "closed on holidays", "mon-fri 08:00-12:00", "2026-12-24", "..", "ring",
]
_DIR = Path(tempfile.mkdtemp(prefix="ivr-fuzz-"))


def load_text(text: str, name: str = "fuzz.ivr") -> Program:
    path = _DIR / name
    path.write_text(text, encoding="utf-8")
    return load_flow([path])


def loads_or_flow_error(text: str) -> Program | None:
    try:
        return load_text(text)
    except FlowError as exc:
        assert exc.diagnostics, "a FlowError always carries diagnostics"
        assert all(d.pos.line >= 1 and d.pos.column >= 1 for d in exc.diagnostics)
        str(exc)  # formatting never fails either
        return None


# IVR_FUZZ_EXAMPLES=5000 for a longer hunt; CI runs the default.
EXAMPLES_PER_TEST = int(os.environ.get("IVR_FUZZ_EXAMPLES", "150"))
FUZZ = settings(max_examples=EXAMPLES_PER_TEST, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@FUZZ
@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=300))
def test_random_text(text: str) -> None:
    loads_or_flow_error(text)


@FUZZ
@given(st.lists(st.sampled_from(WORDS + ["a", "b", " ", "s:\n"]), max_size=60))
def test_random_keyword_soup(words: list[str]) -> None:
    loads_or_flow_error(" ".join(words))


@st.composite
def mutated_example(draw: st.DrawFn) -> str:
    text = TEXTS[draw(st.sampled_from(EXAMPLES))]
    for _ in range(draw(st.integers(1, 4))):
        lines = text.split("\n")
        op = draw(st.sampled_from(["delete", "insert", "dup_line", "drop_line", "swap", "indent"]))
        if op in ("delete", "insert") and text:
            at = draw(st.integers(0, len(text) - 1))
            if op == "delete":
                text = text[:at] + text[at + draw(st.integers(1, 8)):]
            else:
                text = text[:at] + draw(st.sampled_from(WORDS)) + text[at:]
        elif op in ("dup_line", "drop_line", "swap", "indent") and len(lines) > 1:
            i = draw(st.integers(0, len(lines) - 1))
            j = draw(st.integers(0, len(lines) - 1))
            if op == "dup_line":
                lines.insert(i, lines[i])
            elif op == "drop_line":
                del lines[i]
            elif op == "swap":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = draw(st.sampled_from(["", "  ", "    ", "        "])) + lines[i].lstrip()
            text = "\n".join(lines)
    return text


@FUZZ
@given(mutated_example())
def test_mutated_examples(text: str) -> None:
    loads_or_flow_error(text)


def test_examples_load_unmutated() -> None:
    for path in EXAMPLES:
        assert isinstance(load_flow([path]), Program)


EVENTS = st.one_of(
    st.builds(ev.Key, st.sampled_from(list("0123456789*#"))),
    st.builds(ev.Speech, st.sampled_from(["", "sales", "support", "operator", "Alice Johnson", "reception"])),
    st.builds(ev.PromptDone, st.integers(0, 12)),
    st.just(ev.TimerFired()),
    st.builds(ev.TransferResult, st.sampled_from(list(ev.TRANSFER_OUTCOMES)), st.sampled_from(["", "201"])),
    st.just(ev.BridgeEnded()),
    st.builds(ev.DirectoryResult, st.sampled_from(["selected", "not_found", "operator"]), st.just("201"),
              st.just("Alice"), st.sampled_from(["", "201"])),
    st.builds(ev.ActionDone, st.sampled_from(["voicemail", "voicemail_access", "record", "hold", ""]),
              st.sampled_from(["saved", "done", "data/x.wav"])),
    st.builds(ev.RecordingDone, st.just("data/r.wav"), st.floats(0, 10)),
    st.just(ev.Hangup()),
)


_PROGRAMS: dict[Path, Program] = {}


@settings(max_examples=EXAMPLES_PER_TEST, deadline=None)
@given(
    st.sampled_from(EXAMPLES),
    st.sampled_from(["+41435435570", "+41435435599", "100", "0041435435570", "999"]),
    st.sampled_from(["2026-11-23 09:00", "2026-11-23 12:30", "2026-12-25 10:00", "2026-11-22 03:00"]),
    st.lists(st.tuples(EVENTS, st.floats(0, 30)), max_size=25),
)
def test_machine_takes_any_event_sequence(path: Path, called: str, when: str, script: list[tuple[ev.Event, float]]) -> None:
    program = _PROGRAMS.get(path) or _PROGRAMS.setdefault(path, load_flow([path]))
    now = parse_local(when, program.settings.timezone)
    try:
        machine = Machine(program, caller="+41791112233", called=called)
    except LookupError:
        return
    drive(machine, now, script)


def drive(machine: Machine, now: float, script: list[tuple[ev.Event, float]]) -> None:
    """Feed ``script``; what a caller and a media stack can always send must never be refused."""
    issued = _prompt_ids(machine.start(now))
    for event, delay in script:
        if machine.finished:
            assert machine.outcome is not None and machine.next_timer is None
            return
        now += delay
        if isinstance(event, ev.TimerFired) and machine.next_timer is not None:
            now = max(now, machine.next_timer)
        else:
            # The runner fires a timer when it falls due, before anything that arrives later.
            while not machine.finished and machine.next_timer is not None and machine.next_timer <= now:
                issued = max(issued, _prompt_ids(machine.handle(ev.TimerFired(), machine.next_timer)))
            if machine.finished:
                assert machine.outcome is not None and machine.next_timer is None
                return
        always_legal = isinstance(event, ev.Key | ev.Hangup) or (
            isinstance(event, ev.PromptDone) and 1 <= event.prompt_id <= issued
        ) or (isinstance(event, ev.TimerFired) and machine.next_timer is not None)
        try:
            actions = machine.handle(event, now)
        except MachineError as exc:
            assert not always_legal, f"{event} refused: {exc}"
            continue
        issued = max(issued, _prompt_ids(actions))
        assert all(isinstance(a, ev.Action) for a in actions)
        if machine.finished:
            assert machine.outcome is not None and machine.next_timer is None
            return
        assert machine.next_timer is None or machine.next_timer >= now


def _prompt_ids(actions: list[ev.Action]) -> int:
    return max((a.prompt_id for a in actions if isinstance(a, ev.Say | ev.Play)), default=0)


# --------------------------------------------------------------------------- generated well-formed flows

NAMES = ["a", "b", "c", "m", "k", "g"]


@st.composite
def target(draw: st.DrawFn, inline: bool = True) -> str:
    choices = [f"{n}" for n in ["a", "b", "c", "m", "k", "g"]]
    if inline:
        choices += ['say "hi {caller}"', "hangup", "voicemail 200", "transfer to 300 else hangup",
                    "transfer to g else voicemail 201", "directory staff else hangup", 'set v = "1"', "call s(\"x\")"]
    return draw(st.sampled_from(choices))


@st.composite
def statement(draw: st.DrawFn) -> str:
    return draw(st.sampled_from([
        f'when caller starts with "+41" -> {draw(target())}',
        f"when office is open and not night is on -> {draw(target())}",
        f'when v == "1" or k > 5 -> {draw(target())}',
        f"-> {draw(target(inline=False))}",
        'say "Hello {v}."',
        'play "x.wav" no barge-in',
        'set v = "2"',
        "hold for 2s",
        "record into note max 10s",
        'call s("y")',
        f"transfer to {{v}}\n        busy -> {draw(target())}\n        else -> hangup",
    ]))


@st.composite
def generated_flow(draw: st.DrawFn) -> str:
    def body(n: int) -> str:
        return "".join(f"    {draw(statement())}\n" for _ in range(n))

    parts = [
        'switch night\ndirectory staff from "staff.csv"\nnumber default -> a\n',
        "hours office:\n    mon-fri 08:00-17:00\n    closed when night\n",
        "a:\n" + body(draw(st.integers(1, 4))),
        "b:\n" + body(draw(st.integers(1, 3))),
        "c:\n" + body(draw(st.integers(1, 3))),
        "sub s(p):\n" + body(draw(st.integers(0, 2))).replace("call s", "say \"no recursion\" #") + "    return\n",
        "menu m:\n    ask \"Choose.\"\n    wait 3s, retry 2 times\n"
        f"    1 -> {draw(target())}\n    2 or \"two\" -> {draw(target())}\n    speech -> {draw(target())}\n"
        f"    invalid -> {draw(target())}\n    exhausted -> {draw(target())}\n",
        "collect k:\n    ask \"Digits.\"\n    digits 1-3\n"
        f"    then -> {draw(target(inline=False))}\n    no input -> {draw(target())}\n",
        f"group g:\n    ring 201, 202 together for 5s\n    then ring 203 for 5s\n    else -> {draw(target())}\n",
    ]
    return "".join(parts)


@settings(max_examples=EXAMPLES_PER_TEST, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(generated_flow(), st.lists(st.tuples(EVENTS, st.floats(0, 10)), max_size=20))
@example(  # a key barges into the collect prompt, the stale end of that prompt comes after the digit timeout
    text='number default -> a\na:\n    -> k\ncollect k:\n    ask "Digits."\n    digits 1-3\n'
    '    then -> a\n    no input -> a\n',
    script=[(ev.Key("0"), 0.0), (ev.PromptDone(1), 4.0)],
)
def test_generated_flows_compile_and_run(text: str, script: list[tuple[ev.Event, float]]) -> None:
    program = loads_or_flow_error(text)
    if program is not None:  # a flow that loads never fails during a call
        drive(Machine(program, caller="+41791112233", called="100"), T_FUZZ, script)


T_FUZZ = parse_local("2026-11-23 09:00", "UTC")
