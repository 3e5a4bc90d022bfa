"""Property tests: schedule parsers never fail with anything but ScheduleError, and next_change()
is exactly where is_open() changes, across DST switches, holidays and closed dates."""

from __future__ import annotations

from datetime import date
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st

from ivr.dsl.schedule import (
    ClosedDates,
    ClosedOnHolidays,
    Hours,
    OpenDate,
    Rule,
    ScheduleError,
    TimeRange,
    WeeklyRule,
    build_hours,
    parse_clock,
    parse_local,
    parse_range,
    parse_weekdays,
)
from ivr.runtime.flowtest import FlowTestError, _Parser
from ivr.runtime.simulate import SimulationError, parse_inputs

ZRH = "Europe/Zurich"
YEAR_2026 = (parse_local("2026-01-01 00:00", ZRH), parse_local("2026-12-31 00:00", ZRH))


@settings(deadline=None)  # shared CI cores: no per-example time limit
@given(st.text(max_size=30))
def test_parsers_raise_only_schedule_error(text: str) -> None:
    for parse in (parse_clock, parse_range, parse_weekdays):
        try:
            parse(text)
        except ScheduleError:
            pass
    try:
        parse_local(text, ZRH)
    except ScheduleError:
        pass


@settings(deadline=None)
@given(st.text(max_size=60))
def test_input_tokens_raise_only_simulation_error(text: str) -> None:
    try:
        parse_inputs(text)
    except SimulationError:
        pass


@settings(deadline=None)
@given(st.lists(st.text(max_size=40), max_size=8))
def test_test_files_raise_only_flow_test_error(lines: list[str]) -> None:
    text = 'flow "f.ivr"\ntest "t":\n    at 2026-01-01 10:00\n' + "\n".join(
        "    " + x for x in lines
    )
    try:
        _Parser(Path("p.ivrtest"), text).parse()
    except FlowTestError:
        pass


ranges = st.tuples(st.integers(0, 1439), st.integers(1, 1440)).filter(lambda r: r[0] < r[1])


@st.composite
def schedules(draw: st.DrawFn) -> Hours:
    rules: list[Rule] = []
    for _ in range(draw(st.integers(1, 4))):
        days = tuple(sorted(draw(st.sets(st.integers(0, 6), min_size=1, max_size=7))))
        rules.append(
            WeeklyRule(
                days,
                tuple(TimeRange(a, b) for a, b in draw(st.lists(ranges, min_size=1, max_size=3))),
            )
        )
    if draw(st.booleans()):
        rules.append(ClosedOnHolidays("CH-ZH"))
    if draw(st.booleans()):
        first = date(2026, draw(st.integers(1, 12)), draw(st.integers(1, 28)))
        rules.append(
            ClosedDates(first, date.fromordinal(first.toordinal() + draw(st.integers(0, 20))))
        )
    if draw(st.booleans()):
        a, b = draw(ranges)
        rules.append(
            OpenDate(
                date(2026, draw(st.integers(1, 12)), draw(st.integers(1, 28))), (TimeRange(a, b),)
            )
        )
    return build_hours("h", ZRH, rules)


@settings(max_examples=60, deadline=None)
@given(schedules(), st.floats(*YEAR_2026))
def test_next_change_is_where_is_open_changes(hours: Hours, when: float) -> None:
    state = hours.is_open(when)
    change = hours.next_change(when)
    if change is None:
        return
    assert change > when
    assert hours.is_open(change) != state
    # Nothing changes in between: sample the interval at a minute's resolution (bounded).
    step = max(60.0, (change - when) / 200)
    t = when
    while t < change - 1:
        assert hours.is_open(t) == state, (t, when, change)
        t += step
    if change - 1 >= when:
        assert hours.is_open(change - 1) == state
