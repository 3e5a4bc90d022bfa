"""Every flow test of flows/*.ivrtest, in virtual time and on a live ``ivr serve``: the same actions.

The harness is tests/peers/differential.py (what is compared, how the live call is driven).
The whole live run (every case, one server per start time, a few servers at once) happens once
per session, on a thread of its own that tests/conftest.py starts with the session, so its
minutes of real-time calls pass while other tests run; these tests run last, and each case is
then its own test.  A case with speech input is compared up to its first
speech only (no live recogniser is driven); the test says so when it cuts.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis import strategies as st

from ivr.dsl.schedule import parse_local
from ivr.runtime import simulate as sim
from tests.peers import differential as diff
from tests.transfer.harness import peers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.peer,
    pytest.mark.skipif(peers.SIPP is None, reason="sipp (Debian sip-tester) is not installed"),
    pytest.mark.timeout(600),
]

# Case ids come from the files alone: the virtual runs happen in the fixture, not at collection.
CASE_IDS = diff.case_ids()
ONLY = os.environ.get("IVR_DIFFERENTIAL_ONLY", "")  # a substring of case ids, to run a few by hand


def _deployment() -> tuple[Any, Any]:
    from ivr.runtime.flowtest import parse_test_file

    return diff.deployment_and_program(
        parse_test_file(diff.EXAMPLES / "acme.ivrtest"), diff.EXAMPLES / "ivr.toml"
    )


def _need_faketime() -> None:
    # Where sipp is installed (CI, make system-deps) faketime is too: missing, it is a failure.
    assert diff.LIBFAKETIME is not None, (
        "libfaketime (Debian faketime) is not installed: make system-deps"
    )


@dataclass(frozen=True)
class Runs:
    """Every case's virtual run and live call, by case id."""

    cases: dict[str, diff.Case]
    live: dict[str, diff.LiveCall]


LIVE_RUN_TIMEOUT = 900.0  # s: the live run, alone, takes about three minutes on a quiet machine


def _load() -> tuple[list[diff.Case], Any]:
    _need_faketime()
    cfg, _ = _deployment()
    return [c for c in diff.load_cases() if ONLY in c.id], cfg.extensions


def start_live_run(tmp: Path, tts_cache: Path) -> diff.LiveRun:
    """Every case's virtual run and live call, started now (tests/conftest.py: with the session)."""
    return diff.LiveRun(_load, tmp, tts_cache)


@pytest.fixture(scope="module")
def runs(differential_live: diff.LiveRun | None) -> Runs:
    assert differential_live is not None, "tests/conftest.py starts the live run when these tests run"
    cases, live = differential_live.result(LIVE_RUN_TIMEOUT)
    return Runs({c.id: c for c in cases}, live)


def _compare(case: diff.Case, live: diff.LiveCall) -> None:
    cut = diff.caller_script(case.result).cut_at is not None
    if cut:
        print(f"{case.id}: speech input: compared up to the first speech only")
    virtual = diff.virtual_actions(case.result, cut=cut)
    actual = diff.live_actions(live.records, cut=cut)
    notes = "".join(f"\n  note: {n}" for n in live.notes)
    assert virtual == actual, (
        f"{case.id}: the live call differs\n{diff.side_by_side(virtual, actual)}{notes}"
    )


@pytest.mark.parametrize("case_id", [c for c in CASE_IDS if ONLY in c])
def test_live_call_does_what_the_flow_test_says(case_id: str, runs: Runs) -> None:
    case = runs.cases[case_id]
    assert not case.error, f"{case.id}: the virtual run failed: {case.error}"
    _compare(case, runs.live[case.id])


# --------------------------------------------------------------------------- random keys on acme's menu

MENU_KEYS = "0123456789*#"
CALLS_PER_EXAMPLE = 4  # placed at once on one server: four calls cost the time of one


@dataclass(frozen=True)
class AcmeServer:
    """A live server at Monday 09:00 (office open), its far end, and the loop they run on."""

    server: Any
    far: diff.Phone
    loop: asyncio.AbstractEventLoop
    start: float

    def __repr__(self) -> str:  # a failing example prints its arguments: not the server's whole log
        return f"AcmeServer({self.server.address})"

    def _repr_pretty_(self, printer: Any, cycle: bool) -> None:  # what hypothesis prints
        printer.text(repr(self))


@pytest.fixture(scope="module")
def acme_server(tmp_path_factory: pytest.TempPathFactory, tts_cache: Path) -> Iterator[AcmeServer]:
    _need_faketime()
    _, program = _deployment()
    start = parse_local("2026-11-23 09:00", program.settings.timezone)
    loop = asyncio.new_event_loop()
    far = diff.Phone()
    far_port = loop.run_until_complete(far.start())  # bound first: the trunk points at it
    try:
        server = diff.start_server(
            tmp_path_factory.mktemp("acme-random"),
            start,
            program.settings.timezone,
            far_port,
            switches={},
            tts_cache=tts_cache,
        )
        try:
            yield AcmeServer(server, far, loop, start)
        finally:
            server.stop()
    finally:
        far.close()
        loop.close()


# Keys at random times (seconds after the previous one; the greeting and menu take about 11 s,
# so early keys interrupt them), then a hang-up a few seconds after the last key.
KEY_TIMES = st.lists(
    st.tuples(st.floats(0.2, 7.0), st.sampled_from(MENU_KEYS)), min_size=1, max_size=3
)
CALLS = st.lists(
    st.tuples(KEY_TIMES, st.floats(0.5, 6.0)),
    min_size=CALLS_PER_EXAMPLE,
    max_size=CALLS_PER_EXAMPLE,
)


# No shrinking and no example database: each example is a few live calls of up to ~30 s.
@settings(
    max_examples=3,
    deadline=None,
    phases=[Phase.generate],
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture],
)
@given(calls=CALLS)
def test_random_keys_on_the_main_menu(
    acme_server: AcmeServer, calls: list[tuple[list[tuple[float, str]], float]]
) -> None:
    """Keys at random times on acme's main menu, then a hang-up: each live call does what its virtual twin did."""
    cfg, program = _deployment()
    cases = [
        _random_case(program, cfg, acme_server.start, presses, hang_up, n)
        for n, (presses, hang_up) in enumerate(calls, 1)
    ]
    lives = acme_server.loop.run_until_complete(
        diff.call_cases(acme_server.server, acme_server.far, cases, cfg.extensions)
    )
    failures = []
    for case in cases:
        try:
            _compare(case, lives[case.id])
        except AssertionError as exc:
            failures.append(str(exc))
    assert not failures, "\n\n".join(failures)


def _random_case(
    program: Any, cfg: Any, start: float, presses: list[tuple[float, str]], hang_up: float, n: int
) -> diff.Case:
    """Call ``n`` of an example; its number keeps the ids of calls with the same inputs apart (each
    live call is matched to its case by id)."""
    inputs = []
    for gap, key in presses:
        inputs += [sim.CallerInput("wait", seconds=round(gap, 2)), sim.CallerInput("key", key)]
    inputs += [sim.CallerInput("wait", seconds=round(hang_up, 2)), sim.CallerInput("hangup")]
    scenario = sim.Scenario(
        start=start, caller="+41791112233", called="+41435435570", inputs=tuple(inputs)
    )
    return diff.virtual_case(program, cfg, scenario, f"call {n}: " + " ".join(str(i) for i in inputs))


def test_faketime_is_installed_where_sipp_is() -> None:
    _need_faketime()
