"""EventBridge's schedule rules, checked before anything is saved (no services)."""

from __future__ import annotations

from datetime import datetime

import pytest

from pipeline.orchestration.cron import ScheduleError, check, next_fire

pytestmark = pytest.mark.unit

NOW = datetime(2026, 12, 6, 20, 0)


@pytest.mark.parametrize(("expression", "first"), [
    ("cron(0 3 * * ? *)", datetime(2026, 12, 7, 3, 0)),
    ("cron(0/15 * * * ? *)", datetime(2026, 12, 6, 20, 15)),
    ("cron(0 9 ? * MON-FRI *)", datetime(2026, 12, 7, 9, 0)),  # 2026-12-07 is a Monday
    ("cron(30 12 L * ? *)", datetime(2026, 12, 31, 12, 30)),
    ("cron(0 12 5W * ? 2027)", datetime(2027, 1, 5, 12, 0)),
    ("cron(0 12 2W JAN ? 2027)", datetime(2027, 1, 1, 12, 0)),  # the 2nd is a Saturday
    ("cron(0 10 ? * 6L *)", datetime(2026, 12, 25, 10, 0)),  # the last Friday
    ("cron(0 10 ? * 3#2 *)", datetime(2026, 12, 8, 10, 0)),  # the 2nd Tuesday
    ("cron(0 3 29 2 ? *)", datetime(2028, 2, 29, 3, 0)),  # leap years only
    ("cron(0 0 1 1 ? 2199)", datetime(2199, 1, 1, 0, 0)),
])
def test_expressions_eventbridge_runs_and_when_they_first_fire(expression: str,
                                                               first: datetime) -> None:
    assert check(expression, NOW) == expression
    assert next_fire(expression, expression[5:-1], NOW) == first


@pytest.mark.parametrize("expression", ["rate(1 minute)", "rate(5 minutes)", "rate(2 hours)",
                                        "rate(1 day)", "rate( 30   minutes )"])
def test_rates_eventbridge_runs(expression: str) -> None:
    assert check(expression, NOW) == " ".join(expression.split())


@pytest.mark.parametrize(("expression", "said"), [
    ("cron(99 * * * ? *)", "minutes `99` is out of range 0-59"),
    ("cron(0 25 * * ? *)", "hours `25` is out of range 0-23"),
    ("cron(0 3 W * ? *)", "day-of-month `W` lacks a number"),
    ("cron(-1 3 * * ? *)", "minutes `-1` lacks a number"),
    ("cron(0 3 L-3 * ? *)", "day-of-month `L-3`: `L` is not a number"),
    ("cron(0/0 * * * ? *)", "minutes `0/0`: the increment after `/` must be a whole number "
                            "of at least 1"),
    ("cron(0 3 * * ? 1999)", "it never fires after 2026-12-06 20:00 UTC"),
    ("cron(0 3 31 2 ? *)", "it never fires"),
    ("cron(0 3 * * ? 2300)", "year `2300` is out of range 1970-2199"),
    ("cron(0 3 * * * *)", "exactly one of day-of-month and day-of-week must be `?`"),
    ("cron(0 3 ? * ? *)", "exactly one of day-of-month and day-of-week must be `?`"),
    ("cron(0 3 * *)", "a cron has six fields"),
    ("cron(0 3 ? * 3#6 *)", "the week after `#` is 1-5"),
    ("cron(0 3 ? * 1#1,2#2 *)", "with `#` the field holds one expression only"),
    ("cron(0 3 ? * 8 *)", "day-of-week `8` is out of range 1-7"),
    ("cron(0 3 * FOO ? *)", "month `FOO` is not a number or a name"),
    ("cron(0 22-2 * * ? *)", "hours `22-2` runs backwards"),
    ("cron(0 3 3#1 * ? *)", "day-of-month `3#1`: `#` belongs to the other day field"),
    ("rate(100000000 days)", "its first run would come after 2199"),
    ("rate(0 minutes)", "the value `0` is not a positive whole number"),
    ("rate(1 minutes)", "a value of 1 takes the singular: `rate(1 minute)`"),
    ("rate(5 minute)", "a value above 1 takes the plural: `rate(5 minutes)`"),
    ("rate(5 weeks)", "the unit `weeks` is not minute(s), hour(s) or day(s)"),
    ("rate(-5 minutes)", "the value `-5` is not a positive whole number"),
    ("every 5 minutes", "neither `rate(...)` nor `cron(...)`"),
])
def test_what_eventbridge_refuses_or_never_fires_is_refused_naming_the_field(
        expression: str, said: str) -> None:
    with pytest.raises(ScheduleError) as err:
        check(expression, NOW)
    assert said in str(err.value) and f"`{expression}`" in str(err.value)
    assert "rate(" in err.value.hint and "SHOPLAKE_" not in err.value.hint  # the real cause


def test_an_empty_expression_says_how_to_turn_the_schedule_off() -> None:
    with pytest.raises(ScheduleError) as err:
        check("   ", NOW)
    assert str(err.value).startswith("an empty expression is not a schedule")
    assert "`shoplake schedule off`" in str(err.value)
