"""times.py: Unix seconds, UTC days, and a run's data interval (or explicit times) → a UTC-aligned range.

Range refusals are checked through the operator's ``execute`` so each case also proves no request was sent.
"""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from conftest import DAY, NOW

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.usage import OpenAICompletionsUsageOperator, OpenAICostsOperator
from airflow_provider_openai_usage.times import (
    MAX_UNIX_SECONDS,
    check_range,
    check_restate_days,
    day_label,
    day_start,
    resolve_range,
    to_unix_seconds,
    utc_date,
)


def ctx(start: int, end: int) -> dict:
    return {
        "data_interval_start": pendulum.from_timestamp(start, tz="UTC"),
        "data_interval_end": pendulum.from_timestamp(end, tz="UTC"),
    }


@pytest.mark.parametrize(
    ("context", "rendered", "fragment"),
    [
        (ctx(NOW, NOW), {}, r"data interval is empty .*CronDataIntervalTimetable\(\"@daily\", timezone=\"UTC\"\)"),
        ({}, {}, r"no data interval \(a manual trigger without a logical date\).*Pass start_time and end_time"),
        (ctx(NOW - DAY - 3600, NOW - 3600), {}, r"start 2025-11-08T23:00:00Z is not on UTC midnight"),
        (ctx(NOW - DAY, NOW), {"bucket_width": "1h", "start_time": NOW - 1800, "end_time": NOW}, r"start .* is not on a whole UTC hour"),
        (ctx(NOW - DAY, NOW), {"start_time": NOW, "end_time": NOW - DAY}, r"start_time/end_time is empty or inverted"),
    ],
)
def test_bad_intervals_are_refused_before_any_request(fake_api, conn_id, context, rendered, fragment):
    op = OpenAICompletionsUsageOperator(task_id="t")
    for name, value in rendered.items():  # what templates could render to, past the parse-time checks
        setattr(op, name, value)
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        op.execute(context)
    assert fake_api.requests == []


def test_a_non_utc_dag_gets_told_about_its_timezone(fake_api, conn_id):
    class Dag:
        timezone = pendulum.timezone("Europe/Berlin")

    context = {**ctx(NOW - DAY - 3600, NOW - 3600), "dag": Dag()}
    with pytest.raises(OpenAIUsageValidationError, match="timezone is Europe/Berlin: OpenAI's buckets are UTC"):
        OpenAICostsOperator(task_id="t").execute(context)
    assert fake_api.requests == []


def test_restate_days_reaching_before_1970_names_restate_days_not_start_time(fake_api, conn_id):
    # 2025-11-09 minus 20,402 days is 1970-01-01: the last value that works for that interval.
    assert resolve_range(ctx(NOW - DAY, NOW), None, None, "1d", restate_days=(NOW - DAY) // DAY) == (0, NOW)
    with pytest.raises(OpenAIUsageValidationError) as info:
        resolve_range(ctx(NOW - DAY, NOW), None, None, "1d", restate_days=(NOW - DAY) // DAY + 1)
    assert "restate_days=20402 reaches back before 1970-01-01 (from 2025-11-09T00:00:00Z)" in str(info.value)
    assert "start_time" not in str(info.value) and "negative" not in str(info.value)


@pytest.mark.parametrize("value", [100_000, 10**9])
def test_a_restate_days_no_run_can_use_is_refused_when_the_dag_is_parsed(value):
    with pytest.raises(OpenAIUsageValidationError, match=f"restate_days={value} reaches back before 1970-01-01"):
        OpenAICostsOperator(task_id="t", restate_days=value)


@pytest.mark.parametrize("value", [-1, "3", 1.5, True, None])
def test_restate_days_must_be_a_non_negative_int(value):
    with pytest.raises(OpenAIUsageValidationError, match=r"restate_days=.* must be an int >= 0"):
        check_restate_days(value)
    with pytest.raises(OpenAIUsageValidationError, match=r"restate_days=.* must be an int >= 0"):
        OpenAICostsOperator(task_id="t", restate_days=value)


T0 = NOW - 7 * DAY  # 2025-11-03T00:00:00Z


@pytest.mark.parametrize(
    ("value", "unit", "seconds"),
    [
        (T0 * 1000, "milliseconds", T0),
        (T0 * 1000 + 999, "milliseconds", T0),
        (str(T0 * 1000), "milliseconds", T0),
        (T0 * 10**6, "microseconds", T0),
        (T0 * 10**9, "nanoseconds", T0),
    ],
)
def test_epoch_milliseconds_and_finer_units_are_named_with_the_seconds_meant(value, unit, seconds):
    with pytest.raises(OpenAIUsageValidationError) as info:
        to_unix_seconds(value, "start_time")
    message = str(info.value)
    assert f"start_time={int(value)} looks like epoch {unit}" in message
    assert "2025-11-03T00:00:00Z" in message and f"start_time={seconds}" in message


def test_the_last_representable_second_is_accepted_and_the_next_one_is_not_seconds():
    assert to_unix_seconds(MAX_UNIX_SECONDS, "end_time") == MAX_UNIX_SECONDS
    with pytest.raises(OpenAIUsageValidationError, match="looks like epoch milliseconds"):
        to_unix_seconds(MAX_UNIX_SECONDS + 1, "end_time")
    with pytest.raises(OpenAIUsageValidationError, match=r"end_time=\d+ is after the year 9999"):
        to_unix_seconds(MAX_UNIX_SECONDS * 10**9 + 10**9, "end_time")


def test_times_before_1970_are_refused_whatever_their_type():
    for value in (-1, "-86400", dt.datetime(1969, 12, 31, tzinfo=dt.timezone.utc), "1960-01-01T00:00:00+00:00"):
        with pytest.raises(OpenAIUsageValidationError, match=r"start_time=.* is negative \(before 1970-01-01\)"):
            to_unix_seconds(value, "start_time")


def test_a_day_s_label_and_start_are_utc():
    plus_two = dt.timezone(dt.timedelta(hours=2))
    assert utc_date(dt.datetime(2025, 11, 10, 1, 0, tzinfo=plus_two)) == dt.date(2025, 11, 9), "UTC, not local"
    assert day_label(NOW) == day_label(NOW + DAY - 1) == "2025-11-10" and day_label(NOW - 1) == "2025-11-09"
    assert day_start(dt.date(2025, 11, 10)) == NOW
    assert day_label(day_start(dt.date(1970, 1, 1))) == "1970-01-01"


def test_an_empty_or_inverted_range_is_refused_naming_both_ends():
    check_range(NOW - 1, NOW)
    for end in (NOW, NOW - DAY):
        with pytest.raises(OpenAIUsageValidationError, match=r"end_time \(\d+\) must be after start_time \(1762732800\)"):
            check_range(NOW, end)
