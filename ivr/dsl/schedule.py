"""Opening hours: when a flow's ``hours`` block is open.

This module owns the *meaning* of an ``hours`` block (the grammar that reads it
belongs to the parser): weekly time ranges, closed and extra-open dates, public
holidays of a country or subdivision (the ``holidays`` package, cached per
year), a manual switch that forces the hours closed, and the time zone the
ranges are written in.  It is pure: ``is_open(when)`` takes the instant as UNIX
epoch seconds, the same clock that drives the flow machine's timers, and the
only I/O is the ``holidays`` package's lookups.

Precedence (docs/flow-language.md, "Schedules"): a switch that is on closes;
then an ``open`` range on the date opens; then a ``closed`` date closes; then a
holiday closes; then the weekly ranges decide.

Daylight saving: ranges are wall-clock times in the zone.  An instant is turned
into its wall-clock time and compared, so a range that contains a DST gap is
simply an hour shorter that day, and a range across the repeated hour is an
hour longer.  A wall time that does not exist (02:30 on the spring-forward
day) stands for the next valid instant (03:00); one that exists twice (02:30
on the fall-back day) is open or closed by its wall-clock value, both times.
"""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from functools import lru_cache
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError, available_timezones

import holidays

MINUTES_PER_DAY = 24 * 60
WEEKDAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_NO_SWITCHES: Mapping[str, bool] = {}
# How far next_change() looks ahead: a year and a bit covers every yearly rule.
_HORIZON_DAYS = 400


class ScheduleError(ValueError):
    """A schedule value that cannot be used (bad time, weekday, zone or region); the message says which."""


# --------------------------------------------------------------------------- values


@dataclass(frozen=True, order=True)
class TimeRange:
    """A half-open wall-clock range ``[start, end)`` in minutes after midnight; ``end`` may be 1440 (24:00)."""

    start: int
    end: int

    def contains(self, minute: float) -> bool:
        return self.start <= minute < self.end

    def overlaps(self, other: TimeRange) -> bool:
        return self.start < other.end and other.start < self.end

    def __str__(self) -> str:
        return f"{format_clock(self.start)}-{format_clock(self.end)}"


# The rules of an hours block, one per source line, in source order.  The
# compiler builds these from its AST and calls build_hours(); check_hours()
# reports problems by the rule's index so the compiler can point at the line.


@dataclass(frozen=True)
class WeeklyRule:
    """``mon-fri 08:00-12:00, 13:30-17:30``: ``days`` are weekday numbers, 0 = Monday."""

    days: tuple[int, ...]
    ranges: tuple[TimeRange, ...]


@dataclass(frozen=True)
class ClosedDates:
    """``closed 2026-12-24 .. 2027-01-02`` (inclusive) or ``closed 2026-12-31`` (first == last)."""

    first: date
    last: date


@dataclass(frozen=True)
class OpenDate:
    """``open 2026-12-27 10:00-14:00``: extra opening on one date, winning over closed dates and holidays."""

    day: date
    ranges: tuple[TimeRange, ...]


@dataclass(frozen=True)
class ClosedOnHolidays:
    """``closed on holidays CH-ZH``: country code, optionally ``-subdivision``."""

    region: str


@dataclass(frozen=True)
class ClosedWhen:
    """``closed when night``: closed while the named manual switch is on."""

    switch: str


Rule = WeeklyRule | ClosedDates | OpenDate | ClosedOnHolidays | ClosedWhen


@dataclass(frozen=True)
class ScheduleProblem:
    """Something wrong with an hours block; ``rule`` is the index of the offending rule, if known.

    ``part`` is the offending range (or date) within the rule, so a diagnostic can point at it.
    """

    message: str
    rule: int | None = None
    severity: Literal["error", "warning"] = "error"
    part: int | None = field(default=None, compare=False)


@dataclass(frozen=True)
class Hours:
    """A named opening-hours schedule, evaluated in wall-clock time of ``timezone``."""

    name: str
    timezone: str = "UTC"
    weekly: Mapping[int, tuple[TimeRange, ...]] = field(default_factory=dict)
    closed_dates: tuple[tuple[date, date], ...] = ()
    open_dates: tuple[tuple[date, TimeRange], ...] = ()
    holiday_regions: tuple[str, ...] = ()
    switch: str | None = None
    rules: tuple[Rule, ...] = ()  # source rules when built by build_hours(); for check_hours()

    def is_open(self, when: float, switches: Mapping[str, bool] = _NO_SWITCHES) -> bool:
        """Whether the schedule is open at epoch second ``when`` with the given switch positions."""
        if self.switch is not None and switches.get(self.switch, False):
            return False
        local = datetime.fromtimestamp(when, zone(self.timezone))
        return self._open_at_wall(local.date(), _minute_of_day(local))

    def _open_at_wall(self, day: date, minute: float) -> bool:
        if any(d == day and r.contains(minute) for d, r in self.open_dates):
            return True
        if any(first <= day <= last for first, last in self.closed_dates):
            return False
        if any(is_holiday(region, day) for region in self.holiday_regions):
            return False
        return any(r.contains(minute) for r in self.weekly.get(day.weekday(), ()))

    def holiday_name(self, when: float) -> str | None:
        """The name of the public holiday at ``when`` in one of the regions, for simulator output."""
        day = datetime.fromtimestamp(when, zone(self.timezone)).date()
        for region in self.holiday_regions:
            name = _holidays_for(region, day.year).get(day)
            if name:
                return str(name)
        return None

    def next_change(self, when: float) -> float | None:
        """The first instant after ``when`` at which ``is_open`` changes (switches ignored), or None.

        Looks about a year ahead; a schedule that never changes (always closed, 24/7) gives None.
        """
        current = self.is_open(when)
        tz = zone(self.timezone)
        start_day = datetime.fromtimestamp(when, tz).date()
        for offset in range(_HORIZON_DAYS):
            day = start_day + timedelta(days=offset)
            for candidate in self._candidates(day, tz):
                if candidate > when and self.is_open(candidate) != current:
                    return candidate
        return None

    def _candidates(self, day: date, tz: ZoneInfo) -> list[float]:
        """Instants on ``day`` at which the state may change: range edges (both folds) and DST shifts."""
        minutes = {0}
        for r in self.weekly.get(day.weekday(), ()):
            minutes.update((r.start, r.end))
        for d, r in self.open_dates:
            if d == day:
                minutes.update((r.start, r.end))
        instants: set[float] = set(_offset_changes(day, tz))
        for minute in minutes:
            if minute >= MINUTES_PER_DAY:
                instants.add(wall_to_epoch(day + timedelta(days=1), 0, tz))
                continue
            instants.add(wall_to_epoch(day, minute, tz))
            instants.add(wall_to_epoch(day, minute, tz, fold=1))
        return sorted(instants)


# --------------------------------------------------------------------------- building


def build_hours(name: str, timezone: str, rules: Sequence[Rule]) -> Hours:
    """An :class:`Hours` from the rules of an ``hours`` block in source order.

    Does not validate: call :func:`check_hours` on the result (the compiler reports its problems
    at the rules' source lines).
    """
    weekly: dict[int, list[TimeRange]] = {}
    closed: list[tuple[date, date]] = []
    opened: list[tuple[date, TimeRange]] = []
    regions: list[str] = []
    switch: str | None = None
    for rule in rules:
        if isinstance(rule, WeeklyRule):
            for day in rule.days:
                weekly.setdefault(day, []).extend(rule.ranges)
        elif isinstance(rule, ClosedDates):
            closed.append((rule.first, rule.last))
        elif isinstance(rule, OpenDate):
            opened.extend((rule.day, r) for r in rule.ranges)
        elif isinstance(rule, ClosedOnHolidays):
            regions.append(rule.region)
        elif switch is None:
            switch = rule.switch
    return Hours(
        name=name,
        timezone=timezone,
        weekly={day: tuple(sorted(ranges)) for day, ranges in sorted(weekly.items())},
        closed_dates=tuple(closed),
        open_dates=tuple(opened),
        holiday_regions=tuple(regions),
        switch=switch,
        rules=tuple(rules),
    )


def parse_clock(text: str) -> int:
    """Minutes after midnight from ``HH:MM`` (``24:00`` allowed as the end of the day)."""
    m = re.fullmatch(r"(\d{1,2}):(\d{2})", text.strip())
    if (
        not m
        or int(m.group(2)) > 59
        or int(m.group(1)) > 24
        or (int(m.group(1)) == 24 and m.group(2) != "00")
    ):
        raise ScheduleError(f"bad time of day {text!r}; expected HH:MM between 00:00 and 24:00")
    return int(m.group(1)) * 60 + int(m.group(2))


def format_clock(minute: int) -> str:
    return f"{minute // 60:02d}:{minute % 60:02d}"


def parse_range(text: str) -> TimeRange:
    """``08:00-12:00`` -> TimeRange(480, 720); start >= end is left to check_hours()."""
    start, sep, end = text.partition("-")
    if not sep:
        raise ScheduleError(f"bad time range {text!r}; expected HH:MM-HH:MM")
    return TimeRange(parse_clock(start), parse_clock(end))


def parse_weekdays(text: str) -> tuple[int, ...]:
    """``mon-fri`` -> (0, 1, 2, 3, 4); ``sat`` -> (5,); ``fri-mon`` wraps; ``mon,wed`` lists."""
    days: list[int] = []
    for part in text.replace(" ", "").lower().split(","):
        first, sep, last = part.partition("-")
        a = _weekday(first)
        b = _weekday(last) if sep else a
        span = (b - a) % 7
        days.extend((a + i) % 7 for i in range(span + 1))
    return tuple(dict.fromkeys(days))


def _weekday(name: str) -> int:
    if name in WEEKDAYS:
        return WEEKDAYS.index(name)
    if name in _FULL_WEEKDAYS:
        return _FULL_WEEKDAYS.index(name)
    raise ScheduleError(f"unknown weekday '{name}'{_weekday_hint(name)}")


def _weekday_hint(name: str) -> str:
    """The did-you-mean for a word that is not a day: a span for a word naming several days
    (``weekdays`` -> ``mon-fri``, which difflib alone would turn into ``wed``), else the closest day."""
    group = _DAY_GROUPS.get(name)
    if group is not None:
        return f"; did you mean '{group}'?"
    hint = difflib.get_close_matches(name, WEEKDAYS + _FULL_WEEKDAYS, n=1)
    if hint:
        return f"; did you mean '{hint[0][:3]}'?"
    return "; expected mon, tue, wed, thu, fri, sat or sun"


_FULL_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Words admins write for several days at once (in English and German), with the span that says it.
_DAY_GROUPS = {
    **dict.fromkeys(("weekday", "weekdays", "workday", "workdays", "werktags", "wochentags"), "mon-fri"),
    **dict.fromkeys(("weekend", "weekends", "wochenende"), "sat-sun"),
    **dict.fromkeys(("daily", "everyday", "taeglich"), "mon-sun"),
}


# --------------------------------------------------------------------------- time zones and holidays


@lru_cache(maxsize=64)
def zone(name: str) -> ZoneInfo:
    """The IANA zone; ScheduleError (with a did-you-mean) if unknown."""
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise ScheduleError(_unknown_timezone(name)) from None


def _unknown_timezone(name: str) -> str:
    names = sorted(available_timezones())
    hint = difflib.get_close_matches(name, names, n=1, cutoff=0.6)
    if not hint:
        lowered = {n.lower(): n for n in names}
        hint = [lowered[name.lower()]] if name.lower() in lowered else []
    return f"unknown time zone '{name}'" + (f"; did you mean '{hint[0]}'?" if hint else "")


def _split_region(region: str) -> tuple[str, str | None]:
    country, sep, subdiv = region.partition("-")
    return country, (subdiv if sep else None)


@lru_cache(maxsize=256)
def _holidays_for(region: str, year: int) -> Mapping[date, str]:
    """Public holidays of ``region`` in ``year`` (date -> name), cached per region and year."""
    country, subdiv = _split_region(region)
    try:
        table = holidays.country_holidays(country, subdiv=subdiv, years=year)
    except NotImplementedError:
        raise ScheduleError(
            region_problem(region) or f"unknown holiday region '{region}'"
        ) from None
    return {d: str(n) for d, n in table.items()}


def is_holiday(region: str, day: date) -> bool:
    return day in _holidays_for(region, day.year)


def region_problem(region: str) -> str | None:
    """Why ``region`` is not a holiday region the package knows, with a did-you-mean; None if fine."""
    supported = holidays.list_supported_countries(include_aliases=True)
    country, subdiv = _split_region(region)
    if country not in supported:
        hint = _closest(country, list(supported))
        if hint is None:
            return f"unknown holiday region '{region}'; expected an ISO country code like CH, DE or US-CA"
        suggestion = (
            hint if subdiv is None else f"{hint}-{_closest(subdiv, supported[hint]) or subdiv}"
        )
        return f"unknown holiday region '{region}'; did you mean '{suggestion}'?"
    if subdiv is None or subdiv in supported[country]:
        return None
    hint = _closest(subdiv, supported[country])
    if hint is not None:
        return f"unknown holiday region '{region}'; did you mean '{country}-{hint}'?"
    known = ", ".join(s for s in supported[country] if s.isupper()) or "none"
    return f"unknown holiday region '{region}'; subdivisions of {country}: {known}"


def _closest(word: str, choices: Sequence[str]) -> str | None:
    """Case-insensitive exact match first, then difflib's nearest."""
    upper = {c.upper(): c for c in choices}
    if word.upper() in upper:
        return upper[word.upper()]
    hint = difflib.get_close_matches(word.upper(), list(upper), n=1, cutoff=0.5)
    return upper[hint[0]] if hint else None


# --------------------------------------------------------------------------- wall clock <-> epoch


def _minute_of_day(local: datetime) -> float:
    return local.hour * 60 + local.minute + (local.second + local.microsecond / 1e6) / 60


def wall_to_epoch(day: date, minute: int, tz: ZoneInfo | str, *, fold: int = 0) -> float:
    """Epoch seconds of wall time ``minute`` on ``day`` in ``tz``.

    A wall time that exists twice gives its first occurrence (``fold=0``) or its second
    (``fold=1``); one that does not exist (in a DST gap) gives the next valid instant: the
    moment the clocks jump.
    """
    tzinfo = zone(tz) if isinstance(tz, str) else tz
    wall = datetime.combine(day, time(minute // 60, minute % 60))
    local = wall.replace(tzinfo=tzinfo, fold=fold)
    stamp = local.timestamp()
    if datetime.fromtimestamp(stamp, tzinfo).replace(tzinfo=None) == wall:
        return stamp
    return _first_instant_at_or_after(wall, tzinfo)


def _first_instant_at_or_after(wall: datetime, tz: ZoneInfo) -> float:
    """The first epoch second whose wall time in ``tz`` is >= ``wall`` (used inside DST gaps)."""
    lo = (
        int(wall.replace(tzinfo=UTC).timestamp()) - 2 * 86400
    )  # wall time as UTC, +-2 days covers any offset
    hi = lo + 4 * 86400
    while lo < hi:
        mid = (lo + hi) // 2
        if datetime.fromtimestamp(mid, tz).replace(tzinfo=None) >= wall:
            hi = mid
        else:
            lo = mid + 1
    return float(lo)


def _offset_changes(day: date, tz: ZoneInfo) -> Iterable[float]:
    """Instants on ``day`` (local) at which the UTC offset changes: DST shifts."""
    start = wall_to_epoch(day, 0, tz)
    end = wall_to_epoch(day + timedelta(days=1), 0, tz)
    if _offset(start, tz) == _offset(end, tz):
        return ()
    lo, hi = int(start), int(end)
    first = _offset(lo, tz)
    while lo < hi:
        mid = (lo + hi) // 2
        if _offset(mid, tz) == first:
            lo = mid + 1
        else:
            hi = mid
    return (float(lo),)


def _offset(stamp: float, tz: ZoneInfo) -> timedelta | None:
    return datetime.fromtimestamp(stamp, tz).utcoffset()


def parse_local(text: str, tz: ZoneInfo | str) -> float:
    """Epoch seconds from ``YYYY-MM-DD HH:MM`` (or ``...THH:MM[:SS]``) in ``tz``, DST rules as above."""
    m = re.fullmatch(r"\s*(\d{4}-\d{2}-\d{2})[ T](\d{1,2}):(\d{2})(?::(\d{2}))?\s*", text)
    if not m:
        raise ScheduleError(f"bad date and time {text!r}; expected YYYY-MM-DD HH:MM")
    try:
        day = date.fromisoformat(m.group(1))
    except ValueError:
        raise ScheduleError(f"bad date {m.group(1)!r}") from None
    hour, minute, second = int(m.group(2)), int(m.group(3)), int(m.group(4) or 0)
    if hour > 23 or minute > 59 or second > 59:
        raise ScheduleError(f"bad time of day in {text!r}")
    return wall_to_epoch(day, hour * 60 + minute, tz) + second


def format_local(when: float, tz: ZoneInfo | str) -> str:
    """``2026-11-23 09:00:05 Mon CET``: how the simulator shows an instant."""
    tzinfo = zone(tz) if isinstance(tz, str) else tz
    local = datetime.fromtimestamp(when, tzinfo)
    return local.strftime("%Y-%m-%d %H:%M:%S %a %Z")


# --------------------------------------------------------------------------- checks


def check_hours(hours: Hours) -> list[ScheduleProblem]:
    """Problems of an hours block: unknown zone or region, empty or overlapping ranges, reversed dates."""
    problems: list[ScheduleProblem] = []
    try:
        zone(hours.timezone)
    except ScheduleError as exc:
        problems.append(ScheduleProblem(str(exc), None))
    rules = hours.rules or _rules_of(hours)
    indexed: list[tuple[int | None, Rule]] = [
        (i if hours.rules else None, r) for i, r in enumerate(rules)
    ]
    for index, rule in indexed:
        problems.extend(_check_rule(rule, index))
    problems.extend(_check_overlaps(indexed))
    if not any(r.start < r.end for ranges in hours.weekly.values() for r in ranges) and not any(
        r.start < r.end for _, r in hours.open_dates
    ):
        problems.append(
            ScheduleProblem(
                f"hours '{hours.name}' are never open: add times like mon-fri 08:00-17:00",
                None,
                "warning",
            )
        )
    switches = [r.switch for _, r in indexed if isinstance(r, ClosedWhen)]
    for index, rule in indexed:
        if isinstance(rule, ClosedWhen) and rule.switch != switches[0]:
            problems.append(
                ScheduleProblem(
                    f"hours '{hours.name}' can follow only one switch; '{rule.switch}' is ignored",
                    index,
                )
            )
    return problems


def _rules_of(hours: Hours) -> list[Rule]:
    """Rules equivalent to an Hours built by hand (no source rules): problems then carry rule=None."""
    rules: list[Rule] = [WeeklyRule((day,), ranges) for day, ranges in sorted(hours.weekly.items())]
    rules += [ClosedDates(a, b) for a, b in hours.closed_dates]
    rules += [OpenDate(d, (r,)) for d, r in hours.open_dates]
    rules += [ClosedOnHolidays(r) for r in hours.holiday_regions]
    return rules


def _check_rule(rule: Rule, index: int | None) -> list[ScheduleProblem]:
    problems: list[ScheduleProblem] = []
    if isinstance(rule, WeeklyRule | OpenDate):
        for part, r in enumerate(rule.ranges):
            if not 0 <= r.start < MINUTES_PER_DAY or not 0 < r.end <= MINUTES_PER_DAY:
                problems.append(ScheduleProblem(f"time range {r} is outside 00:00-24:00", index, part=part))
            elif r.start >= r.end:
                problems.append(
                    ScheduleProblem(
                        f"empty time range {r}: it ends before it starts (use 24:00 for midnight)",
                        index,
                        part=part,
                    )
                )
    if isinstance(rule, ClosedDates) and rule.last < rule.first:
        problems.append(
            ScheduleProblem(f"date range {rule.first} .. {rule.last} ends before it starts", index)
        )
    if isinstance(rule, ClosedOnHolidays):
        message = region_problem(rule.region)
        if message:
            problems.append(ScheduleProblem(message, index))
    return problems


def _check_overlaps(indexed: list[tuple[int | None, Rule]]) -> list[ScheduleProblem]:
    """Ranges that overlap on one weekday (or one open date): harmless, but usually a typo.

    One warning per range and clash, naming every day it happens on (``mon-fri``).
    """
    problems: list[ScheduleProblem] = []
    seen: dict[object, list[TimeRange]] = {}
    for index, rule in indexed:
        if isinstance(rule, WeeklyRule):
            keys: list[object] = list(rule.days)
        elif isinstance(rule, OpenDate):
            keys = [rule.day]
        else:
            continue
        clashes: dict[tuple[TimeRange, TimeRange], list[object]] = {}
        for key in keys:
            earlier = seen.setdefault(key, [])
            for r in rule.ranges:
                clash = (
                    next((e for e in earlier if e.overlaps(r)), None) if r.start < r.end else None
                )
                if clash is not None:
                    clashes.setdefault((r, clash), []).append(key)
                earlier.append(r)
        for (r, clash), where in clashes.items():
            message = f"time range {r} overlaps {clash} on {_format_days(where)}"
            part = rule.ranges.index(r)
            problems.append(ScheduleProblem(message, index, "warning", part=part))
    return problems


def _format_days(keys: Sequence[object]) -> str:
    """``[0, 1, 2, 4]`` -> ``mon-wed, fri``; a date stays a date."""
    if not all(isinstance(k, int) for k in keys):
        return ", ".join(str(k) for k in keys)
    days = sorted(k for k in keys if isinstance(k, int))
    runs: list[list[int]] = []
    for day in days:
        if runs and day == runs[-1][-1] + 1:
            runs[-1].append(day)
        else:
            runs.append([day])
    return ", ".join(
        WEEKDAYS[r[0]] if len(r) == 1 else f"{WEEKDAYS[r[0]]}-{WEEKDAYS[r[-1]]}" for r in runs
    )
