"""EventBridge schedule expressions, checked by EventBridge's rules before anything is saved.

`rate(value unit)`: a positive whole number and minute(s), hour(s) or day(s), singular for 1.
`cron(minutes hours day-of-month month day-of-week year)`, six fields:

    minutes       0-59                 , - * /
    hours         0-23                 , - * /
    day-of-month  1-31                 , - * ? / L W
    month         1-12 or JAN-DEC      , - * /
    day-of-week   1-7 or SUN-SAT       , - * ? L #
    year          1970-2199            , - * /

One of day-of-month and day-of-week is `?`, never both. LocalStack accepts much that AWS
refuses, and AWS accepts expressions that never fire (hour 25 aside, `cron(0 3 31 2 ? *)`,
a year gone by): both are refused here, naming the field, and an expression must fire at
least once before 2200 (EventBridge's last year) to be taken.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from pipeline.errors import ConfigError

LAST_YEAR = 2199
"""The last year EventBridge schedules."""

MONTHS = {m: i for i, m in enumerate(("JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG",
                                      "SEP", "OCT", "NOV", "DEC"), start=1)}
DAYS = {d: i for i, d in enumerate(("SUN", "MON", "TUE", "WED", "THU", "FRI", "SAT"), start=1)}

HINT = ("EventBridge takes `rate(N minutes|hours|days)` (singular for 1: `rate(1 hour)`) or "
        "`cron(minutes hours day-of-month month day-of-week year)` with `?` in one of the "
        "day fields, e.g. `cron(0 3 * * ? *)`; `shoplake schedule off` stops scheduled runs")


class ScheduleError(ConfigError):
    """A schedule expression EventBridge would refuse, or one that would never fire."""

    def __init__(self, expression: str, why: str) -> None:
        said = f"`{expression}` is not" if expression.strip() else "an empty expression is not"
        super().__init__(f"{said} a schedule EventBridge can run: {why}",
                         key="orchestration.schedule", hint=HINT)
        self.expression = expression


@dataclass(frozen=True)
class _Field:
    name: str
    low: int
    high: int
    names: dict[str, int] | None = None


FIELDS = (_Field("minutes", 0, 59), _Field("hours", 0, 23), _Field("day-of-month", 1, 31),
          _Field("month", 1, 12, MONTHS), _Field("day-of-week", 1, 7, DAYS),
          _Field("year", 1970, LAST_YEAR))

_RATE = re.compile(r"^rate\((.*)\)$")
_CRON = re.compile(r"^cron\((.*)\)$")
_UNITS = {"minute": 60, "hour": 3600, "day": 86400}


def check(expression: str, now: datetime | None = None) -> str:
    """The expression, whitespace normalised; ScheduleError if EventBridge would refuse it
    or it would never fire."""
    text = " ".join(expression.split())
    now = now or datetime.now(UTC).replace(tzinfo=None)
    if not text:
        raise ScheduleError(expression, "give one, or turn scheduled runs off with "
                                        "`shoplake schedule off`")
    if (m := _RATE.match(text)) is not None:
        _check_rate(text, m.group(1).strip(), now)
        return text
    if (m := _CRON.match(text)) is not None:
        first = next_fire(text, m.group(1), now)
        if first is None:
            raise ScheduleError(text, f"it never fires after {now:%Y-%m-%d %H:%M} UTC (up to "
                                      f"{LAST_YEAR}, EventBridge's last year)")
        return text
    raise ScheduleError(text, "it is neither `rate(...)` nor `cron(...)`")


def _check_rate(text: str, body: str, now: datetime) -> None:
    parts = body.split()
    if len(parts) != 2:
        raise ScheduleError(text, "a rate is a value and a unit, e.g. `rate(5 minutes)`")
    value, unit = parts
    if not value.isdigit() or int(value) < 1:
        raise ScheduleError(text, f"the value `{value}` is not a positive whole number")
    n = int(value)
    base = unit[:-1] if unit.endswith("s") else unit
    if base not in _UNITS:
        raise ScheduleError(text, f"the unit `{unit}` is not minute(s), hour(s) or day(s)")
    if n == 1 and unit != base:
        raise ScheduleError(text, f"a value of 1 takes the singular: `rate(1 {base})`")
    if n > 1 and unit == base:
        raise ScheduleError(text, f"a value above 1 takes the plural: `rate({n} {base}s)`")
    seconds = n * _UNITS[base]
    if seconds > (datetime(LAST_YEAR, 12, 31, 23, 59) - now).total_seconds():
        raise ScheduleError(text, f"its first run would come after {LAST_YEAR}, "
                                  "EventBridge's last year: it never fires")


# -- cron -----------------------------------------------------------------------------------
def _value(text: str, field: _Field, expression: str, whole: str | None = None) -> int:
    """One number (or name) of a field; `whole` is the item it came from, for messages."""
    word = text.upper()
    if field.names and word in field.names:
        return field.names[word]
    if not text.isdigit():
        names = f" or a name ({'/'.join(field.names)})" if field.names else ""
        if not text:
            raise ScheduleError(expression, f"{field.name} `{whole}` lacks a number{names}")
        where = f"{field.name} `{whole}`: `{text}`" if whole and whole != text \
            else f"{field.name} `{text}`"
        raise ScheduleError(expression, f"{where} is not a number{names}")
    n = int(text)
    if not field.low <= n <= field.high:
        raise ScheduleError(expression, f"{field.name} `{text}` is out of range "
                                        f"{field.low}-{field.high}")
    return n


def _values(text: str, field: _Field, expression: str) -> set[int]:
    """A plain field (no `?`, `L`, `W`, `#`): the values it matches."""
    out: set[int] = set()
    for item in text.split(","):
        if not item:
            raise ScheduleError(expression, f"{field.name} `{text}` has an empty list item")
        base, step = item, 1
        if "/" in item:
            base, _, inc = item.partition("/")
            if not inc.isdigit() or int(inc) < 1:
                raise ScheduleError(expression, f"{field.name} `{item}`: the increment after "
                                                "`/` must be a whole number of at least 1")
            step = int(inc)
        if base == "*":
            low, high = field.low, field.high
        elif "-" in base:
            a, _, b = base.partition("-")
            low, high = (_value(a, field, expression, base),
                         _value(b, field, expression, base))
            if low > high:
                raise ScheduleError(expression, f"{field.name} `{base}` runs backwards; write "
                                                "a range that wraps as two")
        else:
            low = _value(base, field, expression)
            high = field.high if "/" in item else low
        out.update(range(low, high + 1, step))
    return out


def _day_matcher(dom: str, dow: str, expression: str):  # noqa: ANN202 - (y, m) -> set[int]
    """The days of a month both day fields allow, as a function of (year, month)."""
    if (dom == "?") == (dow == "?"):
        raise ScheduleError(expression, "exactly one of day-of-month and day-of-week must be "
                                        f"`?` (they are `{dom}` and `{dow}`)")
    if dow == "?":
        return _dom_matcher(dom, expression)
    return _dow_matcher(dow, expression)


def _dom_matcher(dom: str, expression: str):  # noqa: ANN202
    field = FIELDS[2]
    if dom in ("L", "LW"):
        def last(y: int, m: int) -> set[int]:
            end = calendar.monthrange(y, m)[1]
            return {_weekday_near(y, m, end) if dom == "LW" else end}
        return last
    if dom.endswith("W"):
        day = _value(dom[:-1], field, expression, dom)
        return lambda y, m: ({_weekday_near(y, m, day)}
                             if day <= calendar.monthrange(y, m)[1] else set())
    days = _values(dom, field, expression)
    return lambda y, m: {d for d in days if d <= calendar.monthrange(y, m)[1]}


def _weekday_near(y: int, m: int, day: int) -> int:
    """The weekday nearest `day` within its month (cron's `W`)."""
    end = calendar.monthrange(y, m)[1]
    wd = calendar.weekday(y, m, day)  # Monday 0
    if wd == 5:
        return day - 1 if day > 1 else day + 2
    if wd == 6:
        return day + 1 if day < end else day - 2
    return day


def _aws_weekday(y: int, m: int, d: int) -> int:
    return (calendar.weekday(y, m, d) + 1) % 7 + 1  # SUN 1 ... SAT 7


def _dow_matcher(dow: str, expression: str):  # noqa: ANN202
    field = FIELDS[4]
    if "#" in dow:
        if "," in dow:
            raise ScheduleError(expression, f"day-of-week `{dow}`: with `#` the field holds "
                                            "one expression only")
        day_text, _, nth = dow.partition("#")
        day = _value(day_text, field, expression)
        if not nth.isdigit() or not 1 <= int(nth) <= 5:
            raise ScheduleError(expression, f"day-of-week `{dow}`: the week after `#` is 1-5")

        def nth_day(y: int, m: int) -> set[int]:
            hits = [d for d in range(1, calendar.monthrange(y, m)[1] + 1)
                    if _aws_weekday(y, m, d) == day]
            return {hits[int(nth) - 1]} if len(hits) >= int(nth) else set()
        return nth_day
    if dow.endswith("L"):
        day = 7 if dow == "L" else _value(dow[:-1], field, expression, dow)

        def last_day(y: int, m: int) -> set[int]:
            end = calendar.monthrange(y, m)[1]
            return {max(d for d in range(end - 6, end + 1) if _aws_weekday(y, m, d) == day)}
        return last_day
    days = _values(dow, field, expression)
    return lambda y, m: {d for d in range(1, calendar.monthrange(y, m)[1] + 1)
                         if _aws_weekday(y, m, d) in days}


def next_fire(expression: str, body: str, now: datetime) -> datetime | None:
    """When `cron(body)` fires first after `now` (UTC), or None if never (up to 2199)."""
    parts = body.split()
    if len(parts) != 6:
        names = ", ".join(f.name for f in FIELDS)
        raise ScheduleError(expression, f"a cron has six fields ({names}), this one has "
                                        f"{len(parts)}")
    minute, hour, dom, month, dow, year = parts
    for text, field in ((dom, FIELDS[2]), (dow, FIELDS[4])):
        for ch in ("L", "W", "#", "?"):
            if ch in text.upper() and ch not in {"day-of-month": "LW?",
                                                 "day-of-week": "L#?"}[field.name]:
                raise ScheduleError(expression, f"{field.name} `{text}`: `{ch}` belongs to "
                                                "the other day field")
    minutes, hours = _values(minute, FIELDS[0], expression), _values(hour, FIELDS[1], expression)
    months, years = _values(month, FIELDS[3], expression), _values(year, FIELDS[5], expression)
    days_of = _day_matcher(dom.upper(), dow.upper(), expression)
    after = now.replace(second=0, microsecond=0) + timedelta(minutes=1)
    for y in sorted(v for v in years if v >= after.year):
        for m in sorted(months):
            if (y, m) < (after.year, after.month):
                continue
            for d in sorted(days_of(y, m)):
                for h in sorted(hours):
                    for mi in sorted(minutes):
                        at = datetime(y, m, d, h, mi)
                        if at >= after:
                            return at
    return None
