"""query.py: every refusal happens before any request and names the parameter, the value and the fix."""

from __future__ import annotations

import datetime as dt

import pytest
from conftest import DAY, NOW

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import MAX_UNIX_SECONDS, UsageQuery, to_unix_seconds

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


def test_milliseconds_through_the_hook_send_no_request(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    with pytest.raises(OpenAIUsageValidationError, match=r"end_time=\d+ looks like epoch milliseconds"):
        list(hook.iter_rows("costs", T0, NOW * 1000))
    with pytest.raises(OpenAIUsageValidationError, match=r"start_time=\d+ looks like epoch milliseconds"):
        list(hook.iter_rows("costs", T0 * 1000, NOW * 1000))
    assert fake_api.requests == []


@pytest.mark.parametrize(
    ("kwargs", "fragment"),
    [
        ({"filters": ["project_ids"]}, r"filters=\['project_ids'\] must be a mapping of filter name to value"),
        ({"filters": {"project_ids": 5}}, r"filter project_ids=5 must be a non-empty list of non-empty strings"),
        ({"filters": {"bogus": None}}, r"filter 'bogus' is not accepted by endpoint 'costs'"),
        ({"bucket_width": "1h"}, r"bucket_width='1h' is not allowed for endpoint 'costs'; allowed: 1d"),
        ({"group_by": "model"}, r"group_by value 'model' is not allowed for endpoint 'costs'"),
        ({"group_by": {"project_id"}}, r"group_by=\{'project_id'\} must be a list of field names"),
    ],
)
def test_build_refuses_shapes_naming_the_parameter(kwargs, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        UsageQuery.build("costs", T0, NOW, **kwargs)


def test_a_filter_left_out_with_none_still_has_its_name_checked():
    assert UsageQuery.build("completions", T0, NOW, filters={"models": None}).filters == ()
    with pytest.raises(OpenAIUsageValidationError, match="filter 'modles' is not accepted"):
        UsageQuery.build("completions", T0, NOW, filters={"modles": None})
