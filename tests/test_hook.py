"""OpenAIUsageHook against the fake API over real HTTP: paging, rows, retries, validation, secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
from decimal import Decimal

import pytest

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.testing import Fault, status
from conftest import DAY, NOW, SENTINEL_KEY

START = NOW - 10 * DAY


def test_a_year_of_daily_buckets_takes_the_minimum_number_of_requests(fake_api, conn_id):
    buckets = list(OpenAIUsageHook(conn_id).iter_buckets("completions", NOW - 365 * DAY, NOW, group_by=["project_id", "model"]))
    assert len(buckets) == 365
    assert len(fake_api.requests) == math.ceil(365 / 31) == 12
    assert {r.params()["limit"][0] for r in fake_api.requests} == {"31"}


@pytest.mark.parametrize(("width", "maximum"), [("1h", 168), ("1m", 1440)])
def test_finer_widths_use_their_maximum_limit(fake_api, conn_id, width, maximum):
    start = NOW - 7 * DAY
    buckets = list(OpenAIUsageHook(conn_id).iter_buckets("embeddings", start, NOW, bucket_width=width))
    assert len(buckets) == 7 * DAY // {"1h": 3600, "1m": 60}[width]
    assert len(fake_api.requests) == math.ceil(len(buckets) / maximum)


def test_many_small_pages_give_the_same_buckets_and_resend_the_whole_query(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    args = ("completions", START, NOW)
    kwargs = {"group_by": ["project_id", "batch"], "project_ids": ["proj_alpha", "proj_beta"], "batch": False}
    whole = list(hook.iter_buckets(*args, **kwargs))
    fake_api.clear_requests()
    fake_api.controls.page_size_cap = 2
    paged = list(hook.iter_buckets(*args, **kwargs))
    assert paged == whole
    log = fake_api.requests
    assert len(log) == 5
    first = [kv for kv in log[0].query]
    for later in log[1:]:
        assert [kv for kv in later.query if kv[0] != "page"] == first
        assert "page" in later.params()
    assert first.count(("group_by[]", "project_id")) == 1 and ("project_ids[]", "proj_beta") in first and ("batch", "false") in first


def test_buckets_are_yielded_lazily_page_by_page(fake_api, conn_id):
    fake_api.controls.page_size_cap = 1
    buckets = OpenAIUsageHook(conn_id).iter_buckets("costs", START, NOW)
    next(buckets)
    assert len(fake_api.requests) == 1


@pytest.mark.parametrize("key", list(ENDPOINTS))
def test_every_group_by_and_filter_of_every_endpoint(fake_api, conn_id, key):
    endpoint = ENDPOINTS[key]
    hook = OpenAIUsageHook(conn_id)
    rows = list(hook.iter_rows(key, START, NOW, group_by=list(endpoint.group_by)))
    assert rows and all(tuple(r) == endpoint.column_names for r in rows)
    for column in endpoint.dimensions:
        assert any(r[column.name] is not None for r in rows), column.name
    for f in endpoint.filters:
        value = next(r[f.dimension] for r in rows if r[f.dimension] is not None)
        filtered = list(hook.iter_rows(key, START, NOW, group_by=[f.dimension], **{f.name: value if f.kind == "bool" else [value]}))
        assert filtered and {r[f.dimension] for r in filtered} == {value}, f.name


def test_rows_are_flat_with_bucket_times_and_none_for_ungrouped_dimensions(fake_api, conn_id):
    rows = list(OpenAIUsageHook(conn_id).iter_rows("images", START, NOW, group_by=["size"]))
    assert rows and all(r["project_id"] is None and r["size"] for r in rows)
    assert all((r["end_time"] - r["start_time"]) == DAY and r["start_time"] % DAY == 0 for r in rows)
    assert "object" not in rows[0]


def test_partial_first_and_last_buckets_keep_their_api_times(fake_api, conn_id):
    start, end = START + 3600, NOW - 7200
    buckets = list(OpenAIUsageHook(conn_id).iter_buckets("vector_stores", start, end))
    assert buckets[0]["start_time"] == start and buckets[-1]["end_time"] == end
    assert len(buckets) == 10


def test_costs_amounts_are_exact_decimals_from_numbers_and_strings(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    numbers = list(hook.iter_rows("costs", START, NOW, group_by=["project_id", "line_item"]))
    fake_api.controls.amount_format = "string"
    strings = list(hook.iter_rows("costs", START, NOW, group_by=["project_id", "line_item"]))
    assert numbers == strings
    assert all(isinstance(r["amount_value"], Decimal) and r["amount_currency"] == "usd" for r in numbers)
    assert sum(r["amount_value"] for r in numbers) == sum(Decimal(str(r["amount_value"])) for r in numbers)


def test_datetimes_and_iso_strings_are_accepted(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    as_int = list(hook.iter_rows("costs", START, NOW))
    as_dt = list(hook.iter_rows("costs", dt.datetime.fromtimestamp(START, dt.timezone.utc), dt.datetime.fromtimestamp(NOW, dt.timezone.utc)))
    as_iso = list(hook.iter_rows("costs", "2025-10-31T00:00:00Z", "2025-11-10T00:00:00+00:00"))
    assert as_int == as_dt == as_iso and as_int


@pytest.mark.parametrize(
    ("call", "fragment"),
    [
        (lambda h: h.iter_rows("chat", START, NOW), r"endpoint='chat'.*allowed: completions"),
        (lambda h: h.iter_rows("costs", START, NOW, bucket_width="1h"), r"bucket_width='1h'.*'costs'.*allowed: 1d"),
        (lambda h: h.iter_rows("completions", START, NOW, bucket_width="5m"), r"bucket_width='5m'.*allowed: 1d, 1h, 1m"),
        (lambda h: h.iter_rows("embeddings", START, NOW, group_by=["batch"]), r"group_by value 'batch'.*'embeddings'.*allowed: project_id"),
        (lambda h: h.iter_rows("vector_stores", START, NOW, models=["gpt-4o"]), r"filter 'models'.*'vector_stores'.*allowed: project_ids"),
        (lambda h: h.iter_rows("images", START, NOW, sizes=["100x100"]), r"sizes value '100x100'.*allowed: 256x256"),
        (lambda h: h.iter_rows("web_search_calls", START, NOW, context_levels=["huge"]), r"context_levels value 'huge'.*low, medium, high"),
        (lambda h: h.iter_rows("completions", START, NOW, batch="yes"), r"batch='yes' must be a bool"),
        (lambda h: h.iter_rows("completions", NOW, NOW), r"end_time .* must be after start_time"),
        (lambda h: h.iter_rows("completions", NOW, START), r"end_time .* must be after start_time"),
        (lambda h: h.iter_rows("completions", dt.datetime(2025, 11, 1), NOW), r"start_time=.*naive datetime"),
        (lambda h: h.iter_buckets("completions", START, "yesterday"), r"end_time='yesterday' is not a time"),
        (lambda h: h.iter_rows("completions", START, NOW, project_ids=[]), r"project_ids=\[\] must be a non-empty list"),
    ],
)
def test_bad_input_is_refused_before_any_request(fake_api, conn_id, call, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        call(OpenAIUsageHook(conn_id))
    assert fake_api.requests == []


def test_429_honours_retry_after_and_retries_only_the_failed_page(fake_api, conn_id):
    fake_api.controls.page_size_cap = 3
    fake_api.schedule_faults(Fault("status", status=429, retry_after=1, path="/organization/costs"))
    hook = OpenAIUsageHook(conn_id)
    buckets = list(hook.iter_buckets("costs", START, NOW))
    log = fake_api.requests
    assert [r.status for r in log] == [429, 200, 200, 200, 200]
    assert log[1].at - log[0].at >= 1.0, "Retry-After: 1 must be waited out"
    assert log[0].query == log[1].query
    assert len(buckets) == 10


def test_5xx_drops_truncation_and_garbage_are_retried_to_identical_results(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PATIENT", fake_api.connection_json(max_retries=8, backoff_base=0.01))
    hook = OpenAIUsageHook("patient")
    fake_api.controls.page_size_cap = 4
    clean = list(hook.iter_rows("completions", START, NOW, group_by=["model"]))
    fake_api.clear_requests()
    fake_api.schedule_faults(status(500), Fault("drop"), status(502), Fault("truncate"), status(503), Fault("garbage"), status(504))
    assert list(hook.iter_rows("completions", START, NOW, group_by=["model"])) == clean
    assert sum(r.status == 200 and r.fault is None for r in fake_api.requests) == 3


def test_read_timeouts_are_retried(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLOW", fake_api.connection_json(timeout=1, max_retries=2, backoff_base=0.01))
    fake_api.schedule_faults(Fault("slow", delay=1.6))
    assert len(list(OpenAIUsageHook("slow").iter_buckets("costs", START, NOW))) == 10
    assert len(fake_api.requests) == 2


def test_after_the_last_attempt_the_error_names_endpoint_status_and_openais_message(fake_api, conn_id):
    fake_api.schedule_faults(*[status(503)] * 5)
    with pytest.raises(OpenAIUsageAPIError, match=r"completions: giving up after 5 attempts on /organization/usage/completions: HTTP 503\. OpenAI said: The server had an error") as info:
        list(OpenAIUsageHook(conn_id).iter_rows("completions", START, NOW))
    assert info.value.status == 503 and len(fake_api.requests) == 5


def test_retry_wait_budget_bounds_the_total_wait(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BUDGET", fake_api.connection_json(max_retries=10, max_retry_wait=1.5))
    fake_api.schedule_faults(*[status(429, retry_after=1)] * 10)
    with pytest.raises(OpenAIUsageAPIError, match="HTTP 429"):
        list(OpenAIUsageHook("budget").iter_rows("costs", START, NOW))
    log = fake_api.requests
    assert len(log) == 2 and log[-1].at - log[0].at < 1.5


def test_401_fails_fast_with_the_admin_key_hint(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PROJECT", json.dumps({"conn_type": "openai_usage", "host": fake_api.base_url, "password": "sk-proj-fake-project-key"}))
    with pytest.raises(OpenAIUsageAuthError, match=r"HTTP 401: You have insufficient permissions.*api\.usage\.read.*admin\* key") as info:
        list(OpenAIUsageHook("project").iter_rows("costs", START, NOW))
    assert len(fake_api.requests) == 1 and info.value.status == 401
    ok, message = OpenAIUsageHook("project").test_connection()
    assert not ok and "admin* key" in message and "sk-proj-fake-project-key" not in message


def test_other_4xx_fail_at_once_with_openais_message(fake_api, conn_id):
    fake_api.schedule_faults(Fault("status", status=404))
    with pytest.raises(OpenAIUsageAPIError, match="HTTP 404"):
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW))
    assert len(fake_api.requests) == 1


def test_a_cursor_seen_twice_is_an_error_not_a_loop(fake_api, conn_id):
    fake_api.controls.page_size_cap = 2
    hook = OpenAIUsageHook(conn_id)
    buckets = hook.iter_buckets("costs", START, NOW)
    next(buckets)  # page 1 ok, its cursor is remembered
    fake_api.schedule_faults(Fault("loop"))
    with pytest.raises(OpenAIUsageResponseError, match="repeated an earlier cursor"):
        list(buckets)
    assert len(fake_api.requests) == 2


def test_a_bucket_outside_the_range_is_refused(fake_api, conn_id):
    fake_api.schedule_faults(Fault("shift"))
    with pytest.raises(OpenAIUsageResponseError, match="outside the requested range"):
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW))


def test_test_connection_makes_one_cheap_call(fake_api, conn_id):
    ok, message = OpenAIUsageHook(conn_id).test_connection()
    assert ok and "can read organization usage" in message
    (request,) = fake_api.requests
    assert request.path.endswith("/organization/costs") and request.params()["limit"] == ["1"]


def test_plain_http_is_refused_for_non_loopback_hosts(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_REMOTE", json.dumps({"conn_type": "openai_usage", "host": "http://api.openai.com/v1", "password": SENTINEL_KEY}))
    with pytest.raises(OpenAIUsageValidationError, match="plain http to a non-loopback host") as info:
        list(OpenAIUsageHook("remote").iter_rows("costs", START, NOW))
    assert SENTINEL_KEY not in str(info.value)


def test_empty_host_means_openai_and_uri_form_works(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_DEFAULTS", json.dumps({"conn_type": "openai_usage", "password": SENTINEL_KEY}))
    assert OpenAIUsageHook("defaults").settings.base_url == "https://api.openai.com/v1"
    monkeypatch.setenv("AIRFLOW_CONN_URI", f"openai-usage://:{SENTINEL_KEY}@127.0.0.1:{fake_api.port}/v1?max_retries=1")
    hook = OpenAIUsageHook("uri")
    assert hook.settings.base_url == f"http://127.0.0.1:{fake_api.port}/v1" and hook.settings.max_retries == 1
    assert len(list(hook.iter_buckets("costs", START, NOW))) == 10


def test_missing_key_is_explained(monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_NOKEY", json.dumps({"conn_type": "openai_usage"}))
    with pytest.raises(OpenAIUsageValidationError, match="has no password; put the admin API key there"):
        list(OpenAIUsageHook("nokey").iter_rows("costs", START, NOW))


def test_the_key_never_appears_in_reprs_logs_or_errors(fake_api, conn_id, caplog, capsys):
    caplog.set_level(logging.DEBUG)
    hook = OpenAIUsageHook(conn_id)
    fake_api.schedule_faults(status(429, retry_after=0), status(500))
    list(hook.iter_rows("costs", START, NOW))
    fake_api.schedule_faults(*[status(503)] * 5)
    with pytest.raises(OpenAIUsageAPIError) as info:
        list(hook.iter_rows("costs", START, NOW))
    captured = capsys.readouterr()
    texts = [repr(hook), repr(hook.settings), str(info.value), repr(info.value), caplog.text, captured.out, captured.err]
    assert "page 1" in caplog.text + captured.out + captured.err, "the check must see the hook's logs"
    assert all(SENTINEL_KEY not in t for t in texts)
