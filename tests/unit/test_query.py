"""query.py: every refusal happens before any request and names the parameter, the value and the fix."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from conftest import DAY, NOW

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery

T0 = NOW - 7 * DAY  # 2025-11-03T00:00:00Z


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


# -- cutting a range into page streams (OpenAIUsageHook.iter_query_buckets(streams=...)) ------------------
def test_a_year_of_days_in_two_parts_is_186_and_179_days():
    query = UsageQuery.build("completions", NOW - 365 * DAY, NOW)
    first, second = query.split(2)
    assert (first.start_time, first.end_time, second.end_time) == (query.start_time, NOW - 179 * DAY, NOW)
    assert first.bucket_count() == 186 and second.bucket_count() == 179
    assert first.params()[2:] == query.params()[2:], "the same query but for its range"


def test_never_more_parts_than_pages_and_one_page_is_never_cut():
    assert UsageQuery.build("completions", NOW - 31 * DAY, NOW).split(8) == [UsageQuery.build("completions", NOW - 31 * DAY, NOW)]
    assert len(UsageQuery.build("completions", NOW - 40 * DAY, NOW).split(8)) == 2
    assert len(UsageQuery.build("costs", NOW - 365 * DAY, NOW).split(8)) == 3  # 180 buckets a page


@given(
    key=st.sampled_from(["completions", "costs"]),
    width=st.sampled_from(["1d", "1h", "1m"]),
    start=st.integers(NOW - 400 * DAY, NOW - 1),
    length=st.integers(1, 400 * DAY),
    parts=st.integers(1, 8),
)
@settings(max_examples=300, deadline=None)
def test_parts_cover_the_range_on_bucket_boundaries_in_whole_pages(key, width, start, length, parts):
    width = "1d" if key == "costs" else width
    query = UsageQuery.build(key, start, start + length, bucket_width=width)
    subs = query.split(parts)
    pages = -(-query.bucket_count() // query.limit)
    assert 1 <= len(subs) <= min(parts, pages)
    assert subs[0].start_time == query.start_time and subs[-1].end_time == query.end_time
    assert all(a.end_time == b.start_time for a, b in zip(subs, subs[1:])), "consecutive, no hole, no overlap"
    assert all(s.start_time % query.width_seconds == 0 for s in subs[1:]), "only the first may start inside a bucket"
    assert all(s.bucket_count() == s.limit * (s.bucket_count() // s.limit) for s in subs[:-1]), "whole pages but the last"
    assert sum(-(-s.bucket_count() // s.limit) for s in subs) == pages, "not one request more"
    assert [b for s in subs for b in s.expected_buckets()] == query.expected_buckets()
    assert all(replace_range_only(s, query) for s in subs)


def replace_range_only(sub: UsageQuery, query: UsageQuery) -> bool:
    return (sub.endpoint, sub.bucket_width, sub.group_by, sub.filters) == (query.endpoint, query.bucket_width, query.group_by, query.filters)


@pytest.mark.parametrize("value", [0, 9, -1, "2", 2.0, True, None])
def test_streams_outside_1_to_8_are_refused_naming_the_parameter(value):
    from airflow_provider_openai_usage.query import check_streams

    with pytest.raises(OpenAIUsageValidationError, match=rf"parallel_requests={value!r} must be an int from 1 to 8 .*parallel_requests=2"):
        check_streams(value, "parallel_requests")


# -- groupings with a floor (costs by api_key_id from 2025-12-01, issue #25) -------------------------------
def test_a_range_crossing_the_api_key_floor_is_cut_there_and_the_days_before_leave_the_key_out():
    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR as FLOOR

    query = UsageQuery.build("costs", FLOOR - 10 * DAY, FLOOR + 5 * DAY, group_by=["project_id", "api_key_id"])
    (before, left_out), (after, kept) = query.floor_parts()
    assert (before.start_time, before.end_time, before.group_by, left_out) == (FLOOR - 10 * DAY, FLOOR, ("project_id",), ("api_key_id",))
    assert (after.start_time, after.end_time, after.group_by, kept) == (FLOOR, FLOOR + 5 * DAY, ("project_id", "api_key_id"), ())
    (whole, none), = UsageQuery.build("costs", FLOOR, FLOOR + DAY, group_by=["api_key_id"]).floor_parts()
    assert whole.group_by == ("api_key_id",) and none == ()
    (early, dropped), = UsageQuery.build("costs", FLOOR - 9 * DAY, FLOOR - DAY, group_by=["api_key_id"]).floor_parts()
    assert early.group_by == () and dropped == ("api_key_id",) and ("group_by[]", "api_key_id") not in early.params()
    # Usage endpoints answer api_key_id at any date: one part, unchanged.
    usage = UsageQuery.build("completions", FLOOR - 9 * DAY, FLOOR + DAY, group_by=["api_key_id"])
    assert usage.floor_parts() == [(usage, ())]


def test_end_time_none_means_up_to_now_and_sends_no_end_time():
    import time

    query = UsageQuery.build("completions", T0, None)
    assert query.open_end and "end_time" not in dict(query.params()) and query.describe().endswith(", now) 1d")
    assert query.end_time > time.time() and query.end_time % DAY == 0
    with pytest.raises(OpenAIUsageValidationError, match=r"end_time=None means up to now, and the range would be empty"):
        UsageQuery.build("costs", int(time.time()) + DAY, None)


def test_costs_buckets_may_cover_the_whole_days_an_unaligned_range_touches():
    costs = UsageQuery.build("costs", T0 + 3600, NOW - 7200)
    assert costs.bucket_bounds == (T0, NOW)
    assert not costs.is_exact(T0, T0 + DAY) and costs.is_exact(T0 + DAY, T0 + 2 * DAY)
    usage = UsageQuery.build("completions", T0 + 3600, NOW - 7200)
    assert usage.bucket_bounds == (T0 + 3600, NOW - 7200)
