"""Opening hours on real dates: weekly ranges, holidays, closed/open dates, DST, switches."""

from __future__ import annotations

from collections.abc import Callable
from datetime import date

import pytest

from ivr.dsl.schedule import (
    ClosedDates,
    ClosedOnHolidays,
    ClosedWhen,
    Hours,
    OpenDate,
    ScheduleError,
    ScheduleProblem,
    TimeRange,
    WeeklyRule,
    build_hours,
    check_hours,
    format_local,
    parse_clock,
    parse_local,
    parse_range,
    parse_weekdays,
    wall_to_epoch,
)

ZRH = "Europe/Zurich"


def office() -> Hours:
    return build_hours(
        "office",
        ZRH,
        [
            WeeklyRule(
                parse_weekdays("mon-fri"), (parse_range("08:00-12:00"), parse_range("13:30-17:30"))
            ),
            WeeklyRule(parse_weekdays("sat"), (parse_range("09:00-12:00"),)),
            WeeklyRule(parse_weekdays("sun"), (parse_range("22:00-24:00"),)),
            ClosedOnHolidays("CH-ZH"),
            ClosedDates(date(2026, 12, 24), date(2027, 1, 2)),
            ClosedDates(date(2026, 11, 27), date(2026, 11, 27)),
            OpenDate(date(2026, 12, 27), (parse_range("10:00-14:00"),)),
            ClosedWhen("night"),
        ],
    )


def at(text: str, tz: str = ZRH) -> float:
    return parse_local(text, tz)


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        ("2026-11-23 07:59", False),  # Monday before opening
        ("2026-11-23 08:00", True),  # start is inclusive
        ("2026-11-23 11:59", True),
        ("2026-11-23 12:00", False),  # end is exclusive: lunch
        ("2026-11-23 13:30", True),
        ("2026-11-23 17:30", False),
        ("2026-11-28 09:30", True),  # Saturday morning
        ("2026-11-28 13:00", False),
        ("2026-11-29 21:59", False),  # Sunday 22:00-24:00
        ("2026-11-29 23:59", True),
        ("2026-11-30 00:00", False),  # 24:00 is Monday 00:00, not open on Monday
        ("2026-11-27 09:00", False),  # a single closed date (a Friday)
    ],
)
def test_weekly_ranges_and_single_closed_date(when: str, expected: bool) -> None:
    assert office().is_open(at(when)) is expected


def test_christmas_and_new_year_closed_across_the_year_end() -> None:
    hours = office()
    for day in ("2026-12-24", "2026-12-28", "2026-12-31", "2027-01-01", "2027-01-02"):
        assert not hours.is_open(at(f"{day} 09:00")), day
    assert hours.is_open(at("2027-01-04 09:00"))  # first Monday after


def test_extra_opening_wins_over_closed_dates() -> None:
    hours = office()
    assert hours.is_open(at("2026-12-27 10:00"))
    assert not hours.is_open(at("2026-12-27 14:00"))
    assert not hours.is_open(at("2026-12-27 09:59"))


def test_holidays_of_zurich() -> None:
    hours = build_hours(
        "h", ZRH, [WeeklyRule(tuple(range(7)), (TimeRange(0, 1440),)), ClosedOnHolidays("CH-ZH")]
    )
    assert not hours.is_open(at("2026-12-25 10:00"))  # Christmas
    assert not hours.is_open(at("2026-12-26 10:00"))  # St. Stephen's day, a Zurich holiday
    assert not hours.is_open(at("2026-04-06 10:00"))  # Easter Monday 2026
    assert not hours.is_open(at("2026-08-01 10:00"))  # National day
    assert hours.is_open(at("2026-08-03 10:00"))
    assert hours.holiday_name(at("2026-12-25 10:00")) == "Christmas Day"
    assert hours.holiday_name(at("2026-12-23 10:00")) is None
    # St. Stephen's day is not a holiday everywhere: Geneva works on 26 December.
    geneva = build_hours(
        "g", ZRH, [WeeklyRule(tuple(range(7)), (TimeRange(0, 1440),)), ClosedOnHolidays("CH-GE")]
    )
    assert geneva.is_open(at("2026-12-26 10:00"))


def test_us_california_holidays_in_its_own_zone() -> None:
    hours = build_hours(
        "us",
        "America/Los_Angeles",
        [WeeklyRule(tuple(range(5)), (TimeRange(540, 1020),)), ClosedOnHolidays("US-CA")],
    )
    assert not hours.is_open(at("2026-11-26 10:00", "America/Los_Angeles"))  # Thanksgiving
    assert hours.is_open(at("2026-11-25 10:00", "America/Los_Angeles"))
    # 18:00 in Zurich is 09:00 in Los Angeles: the same instant, evaluated in the flow's zone.
    assert hours.is_open(at("2026-11-25 18:00", ZRH))


def test_switch_closes_and_unrelated_switches_do_not() -> None:
    hours = office()
    now = at("2026-11-23 09:00")
    assert not hours.is_open(now, {"night": True})
    assert hours.is_open(now, {"night": False})
    assert hours.is_open(now, {"other": True})


# --------------------------------------------------------------------------- DST


def test_nonexistent_wall_time_is_the_next_valid_instant() -> None:
    # 2026-03-29: clocks jump from 02:00 CET to 03:00 CEST in Zurich.
    assert format_local(at("2026-03-29 02:30"), ZRH) == "2026-03-29 03:00:00 Sun CEST"
    assert at("2026-03-29 02:30") == at("2026-03-29 03:00")


def test_ambiguous_wall_time_is_its_first_occurrence() -> None:
    # 2026-10-25: 02:00-03:00 happens twice (CEST, then CET).
    first = at("2026-10-25 02:30")
    assert format_local(first, ZRH) == "2026-10-25 02:30:00 Sun CEST"
    second = wall_to_epoch(date(2026, 10, 25), 150, ZRH, fold=1)
    assert second - first == 3600
    assert format_local(second, ZRH) == "2026-10-25 02:30:00 Sun CET"


def test_range_across_spring_gap_is_shorter_and_autumn_fold_longer() -> None:
    hours = build_hours("night_shift", ZRH, [WeeklyRule((6,), (parse_range("01:00-04:00"),))])
    spring_open = at("2026-03-29 01:00")
    spring_close = hours.next_change(spring_open)
    assert spring_close is not None and spring_close - spring_open == 2 * 3600
    autumn_open = at("2026-10-25 01:00")
    autumn_close = hours.next_change(autumn_open)
    assert autumn_close is not None and autumn_close - autumn_open == 4 * 3600
    # Both occurrences of 02:30 are open: the wall clock decides.
    assert hours.is_open(at("2026-10-25 02:30"))
    assert hours.is_open(wall_to_epoch(date(2026, 10, 25), 150, ZRH, fold=1))


def test_range_starting_in_the_gap_opens_when_the_clocks_jump() -> None:
    hours = build_hours("h", ZRH, [WeeklyRule((6,), (parse_range("02:30-05:00"),))])
    change = hours.next_change(at("2026-03-29 00:00"))
    assert change is not None
    assert format_local(change, ZRH) == "2026-03-29 03:00:00 Sun CEST"
    assert hours.is_open(change) and not hours.is_open(change - 1)


def test_range_ending_in_the_fold_reopens_for_the_repeated_hour() -> None:
    hours = build_hours("h", ZRH, [WeeklyRule((6,), (parse_range("00:00-02:30"),))])
    closes = hours.next_change(at("2026-10-25 00:00"))
    assert closes is not None and format_local(closes, ZRH) == "2026-10-25 02:30:00 Sun CEST"
    reopens = hours.next_change(closes)
    assert reopens is not None and format_local(reopens, ZRH) == "2026-10-25 02:00:00 Sun CET"
    closes_again = hours.next_change(reopens)
    assert (
        closes_again is not None
        and format_local(closes_again, ZRH) == "2026-10-25 02:30:00 Sun CET"
    )


def test_next_change_skips_holidays_and_closed_dates() -> None:
    hours = office()
    change = hours.next_change(at("2026-12-23 17:00"))
    assert change is not None and format_local(change, ZRH) == "2026-12-23 17:30:00 Wed CET"
    reopen = hours.next_change(change)
    assert reopen is not None and format_local(reopen, ZRH) == "2026-12-27 10:00:00 Sun CET"


def test_next_change_none_when_always_open() -> None:
    always = build_hours("always", "UTC", [WeeklyRule(tuple(range(7)), (TimeRange(0, 1440),))])
    assert always.is_open(at("2026-06-01 03:00", "UTC"))
    assert always.next_change(at("2026-06-01 03:00", "UTC")) is None


# --------------------------------------------------------------------------- parsing helpers


def test_parse_helpers() -> None:
    assert parse_clock("08:00") == 480
    assert parse_clock("24:00") == 1440
    assert parse_range("13:30-17:30") == TimeRange(810, 1050)
    assert parse_weekdays("mon-fri") == (0, 1, 2, 3, 4)
    assert parse_weekdays("fri-mon") == (4, 5, 6, 0)
    assert parse_weekdays("mon,wed") == (0, 2)
    assert parse_weekdays("Saturday") == (5,)
    assert str(TimeRange(1320, 1440)) == "22:00-24:00"


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: parse_clock("24:30"),
            "bad time of day '24:30'; expected HH:MM between 00:00 and 24:00",
        ),
        (lambda: parse_clock("8h"), "bad time of day '8h'; expected HH:MM between 00:00 and 24:00"),
        (lambda: parse_range("08:00"), "bad time range '08:00'; expected HH:MM-HH:MM"),
        (lambda: parse_weekdays("mnday"), "unknown weekday 'mnday'; did you mean 'mon'?"),
        (lambda: parse_weekdays("weekdays"), "unknown weekday 'weekdays'; did you mean 'mon-fri'?"),
        (lambda: parse_weekdays("weekend"), "unknown weekday 'weekend'; did you mean 'sat-sun'?"),
        (lambda: parse_weekdays("daily"), "unknown weekday 'daily'; did you mean 'mon-sun'?"),
        (lambda: parse_weekdays("wensday"), "unknown weekday 'wensday'; did you mean 'wed'?"),
        (lambda: parse_local("2026-02-30 10:00", ZRH), "bad date '2026-02-30'"),
        (
            lambda: parse_local("tomorrow", ZRH),
            "bad date and time 'tomorrow'; expected YYYY-MM-DD HH:MM",
        ),
        (
            lambda: parse_local("2026-01-01 10:00", "Europe/Zurik"),
            "unknown time zone 'Europe/Zurik'; did you mean 'Europe/Zurich'?",
        ),
    ],
)
def test_bad_values_raise_with_the_exact_message(call: Callable[[], object], message: str) -> None:
    with pytest.raises(ScheduleError) as info:
        call()
    assert str(info.value) == message


# --------------------------------------------------------------------------- checks


def test_check_accepts_a_good_schedule() -> None:
    assert check_hours(office()) == []


def test_check_reports_every_problem_with_its_rule_index() -> None:
    hours = build_hours(
        "bad",
        "Europe/Zurik",
        [
            WeeklyRule((0, 1), (parse_range("12:00-08:00"),)),
            WeeklyRule((0,), (parse_range("08:00-12:00"), parse_range("11:00-13:00"))),
            ClosedDates(date(2027, 1, 2), date(2026, 12, 24)),
            ClosedOnHolidays("CH-ZX"),
            ClosedOnHolidays("CH-XX"),
            ClosedOnHolidays("ch-zh"),
            ClosedWhen("night"),
            ClosedWhen("storm"),
        ],
    )
    assert check_hours(hours) == [
        ScheduleProblem("unknown time zone 'Europe/Zurik'; did you mean 'Europe/Zurich'?", None),
        ScheduleProblem(
            "empty time range 12:00-08:00: it ends before it starts (use 24:00 for midnight)", 0
        ),
        ScheduleProblem("date range 2027-01-02 .. 2026-12-24 ends before it starts", 2),
        ScheduleProblem("unknown holiday region 'CH-ZX'; did you mean 'CH-ZH'?", 3),
        ScheduleProblem(
            "unknown holiday region 'CH-XX'; subdivisions of CH: AG, AI, AR, BE, BL, BS, FR, GE, GL, GR, "
            "JU, LU, NE, NW, OW, SG, SH, SO, SZ, TG, TI, UR, VD, VS, ZG, ZH",
            4,
        ),
        ScheduleProblem("unknown holiday region 'ch-zh'; did you mean 'CH-ZH'?", 5),
        ScheduleProblem("time range 11:00-13:00 overlaps 08:00-12:00 on mon", 1, "warning"),
        ScheduleProblem("hours 'bad' can follow only one switch; 'storm' is ignored", 7),
    ]


def test_check_of_hand_built_hours_has_no_rule_indices() -> None:
    hours = Hours("h", "UTC", weekly={2: (TimeRange(600, 540),)}, holiday_regions=("ZZ",))
    problems = check_hours(hours)
    assert [p.rule for p in problems] == [None, None, None]
    assert problems[2].message.startswith("hours 'h' are never open")
    assert problems[0].message.startswith("empty time range 10:00-09:00")
    assert problems[1].message.startswith("unknown holiday region 'ZZ'")


def test_check_warns_about_hours_that_never_open() -> None:
    hours = build_hours(
        "never", ZRH, [ClosedOnHolidays("CH-ZH"), WeeklyRule((0,), (TimeRange(600, 600),))]
    )
    assert check_hours(hours)[-1] == ScheduleProblem(
        "hours 'never' are never open: add times like mon-fri 08:00-17:00", None, "warning"
    )
    only_once = build_hours(
        "once", ZRH, [OpenDate(date(2026, 12, 27), (parse_range("10:00-14:00"),))]
    )
    assert check_hours(only_once) == []


def test_knabenschiessen_is_not_a_public_holiday_of_the_canton() -> None:
    # The holidays package has Knabenschiessen only for the city of Zurich as an optional /
    # half-day holiday, not for canton ZH: the Monday is a working day; close it with a date line.
    hours = office()
    assert hours.is_open(at("2026-09-14 09:00"))
    closed = build_hours(
        "h", ZRH, [*hours.rules, ClosedDates(date(2026, 9, 14), date(2026, 9, 14))]
    )
    assert not closed.is_open(at("2026-09-14 09:00"))


def test_overlap_is_reported_once_per_range_with_its_days() -> None:
    hours = build_hours(
        "h",
        ZRH,
        [
            WeeklyRule(parse_weekdays("mon-wed,fri"), (parse_range("08:00-12:00"),)),
            WeeklyRule(parse_weekdays("mon-sun"), (parse_range("11:30-14:00"),)),
            OpenDate(date(2026, 12, 27), (parse_range("10:00-12:00"), parse_range("11:00-13:00"))),
        ],
    )
    assert check_hours(hours) == [
        ScheduleProblem(
            "time range 11:30-14:00 overlaps 08:00-12:00 on mon-wed, fri", 1, "warning"
        ),
        ScheduleProblem("time range 11:00-13:00 overlaps 10:00-12:00 on 2026-12-27", 2, "warning"),
    ]
