"""UTC time, owned here: Unix seconds, UTC days, ranges, and the text every message uses for them.

OpenAI's buckets are UTC multiples of their width and a partition is one UTC day, so every rule about
time lives in this one module and the rest import it: what a day is (``DAY``), how a second is written
(``iso``) and which day it files under (``day_label``), which inputs are times (``to_unix_seconds``),
that a range ends after it starts (``check_range``), and how a DAG run's data interval (or explicit
times) becomes a UTC-aligned range (``resolve_range``). It imports no Airflow: the fake API and the
pytest plugin load it before Airflow is configured.

Airflow 3 traps that ``resolve_range`` turns into clear messages:
- ``schedule="@daily"`` gives a *zero-length* interval (start == end == logical date);
- manual runs have no data interval at all (the context keys are missing);
- a DAG in a non-UTC timezone has intervals that start at local midnight, not at OpenAI's UTC buckets.
"""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.endpoints import WIDTH_SECONDS

if TYPE_CHECKING:
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

__all__ = [
    "DAILY_SCHEDULE_HINT",
    "DAY",
    "MAX_UNIX_SECONDS",
    "check_range",
    "check_restate_days",
    "day_label",
    "day_start",
    "utc_date",
    "iso",
    "resolve_range",
    "to_unix_seconds",
]

#: Seconds in a UTC day: the registry's daily bucket, and one partition.
DAY = WIDTH_SECONDS["1d"]
#: 9999-12-31T23:59:59Z, the last second a datetime holds; anything later is not Unix seconds.
MAX_UNIX_SECONDS = 253_402_300_799
#: Units people pass by mistake, finest last: the first whose quotient fits is the likely one.
_FINER_UNITS = (("milliseconds", 10**3), ("microseconds", 10**6), ("nanoseconds", 10**9))

DAILY_SCHEDULE_HINT = (
    'schedule=CronDataIntervalTimetable("@daily", timezone="UTC") (from airflow.sdk), or '
    'CronTriggerTimetable("@daily", timezone="UTC", interval=timedelta(days=1))'
)


def _invalid(message: str) -> OpenAIUsageValidationError:
    """The refusal to raise; imported here so this module loads without Airflow (the fake API uses it)."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    return OpenAIUsageValidationError(message)


def iso(seconds: int) -> str:
    """Unix seconds as the UTC ISO-8601 text every message of this provider uses."""
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def day_label(seconds: int) -> str:
    """``YYYY-MM-DD`` of the UTC day holding ``seconds``: the ``date=`` a partition files it under."""
    return iso(seconds)[:10]


def utc_date(moment: dt.datetime) -> dt.date:
    """The UTC date of an aware datetime (a run's interval bounds may carry any zone)."""
    return moment.astimezone(dt.timezone.utc).date()


def day_start(day: dt.date) -> int:
    """Unix seconds of UTC midnight starting ``day``."""
    return int(dt.datetime(day.year, day.month, day.day, tzinfo=dt.timezone.utc).timestamp())


def _checked_seconds(value: int, name: str) -> int:
    if value < 0:
        raise _invalid(f"{name}={value!r} is negative (before 1970-01-01); pass Unix seconds >= 0")
    if value > MAX_UNIX_SECONDS:
        for unit, factor in _FINER_UNITS:
            if value // factor <= MAX_UNIX_SECONDS:
                seconds = value // factor
                raise _invalid(
                    f"{name}={value} looks like epoch {unit} (divided by {factor:,} it is {iso(seconds)}); "
                    f"pass Unix seconds, e.g. {name}={seconds}"
                )
        raise _invalid(f"{name}={value} is after the year 9999; pass Unix seconds")
    return value


def to_unix_seconds(value: Any, name: str) -> int:
    """Accept int seconds, aware datetimes and ISO-8601 strings with an offset; refuse naive times.

    Naive datetimes are refused because OpenAI's buckets are UTC and guessing a zone shifts days.
    Strings come from rendered templates (``{{ data_interval_start }}``). Epoch milliseconds (what
    JavaScript and many loggers give) are refused with the seconds they probably meant, before
    any request, rather than sent and answered with an opaque error.
    """
    if isinstance(value, bool):
        raise _invalid(f"{name}={value!r} is not a time; pass int Unix seconds or an aware datetime")
    if isinstance(value, int):
        return _checked_seconds(value, name)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return to_unix_seconds(int(text), name)
        try:
            value = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise _invalid(
                f"{name}={value!r} is not a time; pass int Unix seconds, an aware datetime or an ISO-8601 string "
                "with an offset such as '2026-11-03T00:00:00+00:00'"
            ) from None
    if isinstance(value, dt.datetime):
        if value.tzinfo is None or value.tzinfo.utcoffset(value) is None:
            raise _invalid(
                f"{name}={value!r} is a naive datetime; OpenAI buckets are UTC, so pass an aware datetime "
                "(e.g. datetime(..., tzinfo=timezone.utc) or pendulum.datetime(..., tz='UTC'))"
            )
        seconds = value.timestamp()
        if seconds != int(seconds):
            raise _invalid(f"{name}={value.isoformat()} has sub-second precision; buckets start on whole seconds")
        return _checked_seconds(int(seconds), name)
    raise _invalid(
        f"{name}={value!r} ({type(value).__name__}) is not a time; pass int Unix seconds or an aware datetime"
    )


def check_range(start: int, end: int, source: str = "start_time/end_time", names: tuple[str, str] = ("start_time", "end_time")) -> None:
    """Refuse an empty or inverted [start, end): the one "end after start" rule, for every caller."""
    if end <= start:
        first, last = names
        raise _invalid(
            f"{source} is empty or inverted ({iso(start)} → {iso(end)}): {last} ({end}) must be after {first} ({start}); "
            f"the range is [{first}, {last}) and an empty or inverted range has no buckets"
        )


def _restate_too_far(restate_days: int, start: int) -> OpenAIUsageValidationError:
    return _invalid(
        f"restate_days={restate_days} reaches back before 1970-01-01 (from {iso(start)}); it counts the days "
        "before each run's range to re-pull because OpenAI revises recent buckets: use a few days, e.g. restate_days=3"
    )


def check_restate_days(restate_days: Any, *, now: float | None = None) -> int:
    """Refuse a restate_days no run can use, naming it (checked at DAG parse time and again per run)."""
    if not isinstance(restate_days, int) or isinstance(restate_days, bool) or restate_days < 0:
        raise _invalid(f"restate_days={restate_days!r} must be an int >= 0 (days to re-pull before the range)")
    now = time.time() if now is None else now
    if restate_days * DAY > now:
        # Even a run starting now would reach before 1970: no run of this DAG can work.
        raise _restate_too_far(restate_days, int(now) // DAY * DAY)
    return restate_days


def _dag_timezone(context: Mapping[str, Any]) -> str | None:
    dag = context.get("dag")
    tz = getattr(dag, "timezone", None)
    name = getattr(tz, "name", None) or (str(tz) if tz is not None else None)
    return name


def resolve_range(
    context: Mapping[str, Any],
    start_time: Any,
    end_time: Any,
    bucket_width: str,
    *,
    restate_days: int = 0,
) -> tuple[int, int]:
    """The [start, end) to pull, in Unix seconds, aligned to ``bucket_width`` in UTC."""
    if (start_time is None) != (end_time is None):
        raise _invalid(
            f"start_time={start_time!r} and end_time={end_time!r}: give both or neither (neither uses the "
            "run's data interval)"
        )
    if start_time is None:
        if context.get("data_interval_start") is None or context.get("data_interval_end") is None:
            raise _invalid(
                "this run has no data interval (a manual trigger without a logical date), so there is no range "
                "to pull. Pass start_time and end_time (e.g. from params: start_time='{{ params.start }}'), or "
                "trigger the run with a logical date on a DAG with an interval timetable"
            )
        start = to_unix_seconds(context["data_interval_start"], "data_interval_start")
        end = to_unix_seconds(context["data_interval_end"], "data_interval_end")
        source, names = "the run's data interval", ("data_interval_start", "data_interval_end")
        if start == end:
            raise _invalid(
                f"the run's data interval is empty ({iso(start)} → {iso(end)}): in Airflow 3 a cron schedule such "
                f'as "@daily" gives start == end. For daily pulls use {DAILY_SCHEDULE_HINT}; or pass '
                "start_time/end_time explicitly"
            )
    else:
        start = to_unix_seconds(start_time, "start_time")
        end = to_unix_seconds(end_time, "end_time")
        source, names = "start_time/end_time", ("start_time", "end_time")
    check_range(start, end, source, names)
    width = WIDTH_SECONDS.get(bucket_width)
    if width is None:
        return start, end  # UsageQuery reports the bad width with the allowed values
    for name, value in (("start", start), ("end", end)):
        if value % width:
            tz = _dag_timezone(context)
            unit = {"1d": "UTC midnight", "1h": "a whole UTC hour", "1m": "a whole UTC minute"}[bucket_width]
            tz_hint = (
                f" The DAG's timezone is {tz}: OpenAI's buckets are UTC, so a local-midnight schedule cannot map "
                f"onto them. Use {DAILY_SCHEDULE_HINT}."
                if tz and tz not in ("UTC", "Etc/UTC", "+00:00")
                else f" For daily pulls use {DAILY_SCHEDULE_HINT}."
            )
            raise _invalid(
                f"{source} {name} {iso(value)} is not on {unit}, so it cannot map onto OpenAI's bucket_width="
                f"{bucket_width} buckets.{tz_hint}"
            )
    check_restate_days(restate_days)
    if start - restate_days * DAY < 0:
        raise _restate_too_far(restate_days, start)
    return start - restate_days * DAY, end
