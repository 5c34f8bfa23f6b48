"""A DAG run's data interval (or explicit times) → a UTC-aligned range, with errors that teach.

Airflow 3 traps that this module turns into clear messages:
- ``schedule="@daily"`` gives a *zero-length* interval (start == end == logical date);
- manual runs have no data interval at all (the context keys are missing);
- a DAG in a non-UTC timezone has intervals that start at local midnight, not at OpenAI's UTC buckets.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from airflow_provider_openai_usage.endpoints import WIDTH_SECONDS
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.query import iso, to_unix_seconds

__all__ = ["DAILY_SCHEDULE_HINT", "check_restate_days", "iso", "resolve_range"]

DAILY_SCHEDULE_HINT = (
    'schedule=CronDataIntervalTimetable("@daily", timezone="UTC") (from airflow.sdk), or '
    'CronTriggerTimetable("@daily", timezone="UTC", interval=timedelta(days=1))'
)


DAY = WIDTH_SECONDS["1d"]


def _restate_too_far(restate_days: int, start: int) -> OpenAIUsageValidationError:
    return OpenAIUsageValidationError(
        f"restate_days={restate_days} reaches back before 1970-01-01 (from {iso(start)}); it counts the days "
        "before each run's range to re-pull because OpenAI revises recent buckets: use a few days, e.g. restate_days=3"
    )


def check_restate_days(restate_days: Any, *, now: float | None = None) -> int:
    """Refuse a restate_days no run can use, naming it (checked at DAG parse time and again per run)."""
    if not isinstance(restate_days, int) or isinstance(restate_days, bool) or restate_days < 0:
        raise OpenAIUsageValidationError(f"restate_days={restate_days!r} must be an int >= 0 (days to re-pull before the range)")
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
        raise OpenAIUsageValidationError(
            f"start_time={start_time!r} and end_time={end_time!r}: give both or neither (neither uses the "
            "run's data interval)"
        )
    if start_time is None:
        if context.get("data_interval_start") is None or context.get("data_interval_end") is None:
            raise OpenAIUsageValidationError(
                "this run has no data interval (a manual trigger without a logical date), so there is no range "
                "to pull. Pass start_time and end_time (e.g. from params: start_time='{{ params.start }}'), or "
                "trigger the run with a logical date on a DAG with an interval timetable"
            )
        start = to_unix_seconds(context["data_interval_start"], "data_interval_start")
        end = to_unix_seconds(context["data_interval_end"], "data_interval_end")
        source = "the run's data interval"
        if start == end:
            raise OpenAIUsageValidationError(
                f"the run's data interval is empty ({iso(start)} → {iso(end)}): in Airflow 3 a cron schedule such "
                f'as "@daily" gives start == end. For daily pulls use {DAILY_SCHEDULE_HINT}; or pass '
                "start_time/end_time explicitly"
            )
    else:
        start = to_unix_seconds(start_time, "start_time")
        end = to_unix_seconds(end_time, "end_time")
        source = "start_time/end_time"
    if end <= start:
        raise OpenAIUsageValidationError(f"{source} is empty or inverted ({iso(start)} → {iso(end)}); end must be after start")
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
            raise OpenAIUsageValidationError(
                f"{source} {name} {iso(value)} is not on {unit}, so it cannot map onto OpenAI's bucket_width="
                f"{bucket_width} buckets.{tz_hint}"
            )
    check_restate_days(restate_days)
    if start - restate_days * DAY < 0:
        raise _restate_too_far(restate_days, start)
    return start - restate_days * DAY, end
