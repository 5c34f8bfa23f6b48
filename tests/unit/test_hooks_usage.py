"""OpenAIUsageHook against the fake API over real HTTP: paging, rows, retries, validation, secrets."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import re
from decimal import Decimal
from pathlib import Path

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st
from conftest import DAY, NOW, SENTINEL_KEY

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.testing import Fault, status

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
    # Past every grouping floor (costs by api_key_id only from 2025-12-01), so every grouping is answered.
    end = max([NOW, *(f + 20 * DAY for f in endpoint.group_by_floors.values())])
    fake_api.controls.now = end
    rows = list(hook.iter_rows(key, end - 10 * DAY, end, group_by=list(endpoint.group_by)))
    assert rows and all(tuple(r) == endpoint.column_names for r in rows)
    for column in endpoint.dimensions:
        assert any(r[column.name] is not None for r in rows), column.name
    for f in endpoint.filters:
        value = next(r[f.dimension] for r in rows if r[f.dimension] is not None)
        filtered = list(hook.iter_rows(key, end - 10 * DAY, end, group_by=[f.dimension], **{f.name: value if f.kind == "bool" else [value]}))
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
    utc = dt.timezone.utc
    as_dt = list(hook.iter_rows("costs", dt.datetime.fromtimestamp(START, utc), dt.datetime.fromtimestamp(NOW, utc)))
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


def test_5xx_drops_truncation_and_garbage_are_retried_to_identical_results(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_PATIENT", fake_api.connection_json(max_retries=8, backoff_base=0.01))
    hook = OpenAIUsageHook("patient")
    fake_api.controls.page_size_cap = 4
    clean = list(hook.iter_rows("completions", START, NOW, group_by=["model"]))
    fake_api.clear_requests()
    fake_api.schedule_faults(status(500), Fault("drop"), status(502), Fault("truncate"), status(503), Fault("garbage"), status(504))
    assert list(hook.iter_rows("completions", START, NOW, group_by=["model"])) == clean
    assert sum(r.status == 200 and r.fault is None for r in fake_api.requests) == 3


def test_after_the_last_attempt_the_error_names_endpoint_status_and_openais_message(fake_api, conn_id):
    fake_api.schedule_faults(*[status(503)] * 5)
    with pytest.raises(
        OpenAIUsageAPIError,
        match=r"completions: giving up after 5 attempts on /organization/usag"
        r"e/completions: HTTP 503\. OpenAI said: The server had an error",
    ) as info:
        list(OpenAIUsageHook(conn_id).iter_rows("completions", START, NOW))
    assert info.value.status == 503 and len(fake_api.requests) == 5


def test_401_fails_fast_with_the_admin_key_hint_and_the_connection_id(fake_api, monkeypatch):
    project = {"conn_type": "openai_usage", "host": fake_api.base_url, "password": "sk-proj-fake-project-key"}
    monkeypatch.setenv("AIRFLOW_CONN_PROJECT", json.dumps(project))
    with pytest.raises(
        OpenAIUsageAuthError,
        match=r"key of connection 'project' with HTTP 401: You have i"
        r"nsufficient permissions.*api\.usage\.read.*admin\* key",
    ) as info:
        list(OpenAIUsageHook("project").iter_rows("costs", START, NOW))
    assert len(fake_api.requests) == 1 and info.value.status == 401
    assert "necessary scopes. The Usage and Costs API needs" in str(info.value), "one period between OpenAI's words and ours"
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


# -- secrets in anything built from an answer -------------------------------------------------------
def assert_no_secret(*texts: str) -> None:
    for text in texts:
        assert SENTINEL_KEY not in text and "Bearer sk-" not in text and SENTINEL_KEY[-16:] not in text, text


@pytest.mark.parametrize(
    ("fault", "error", "shown"),
    [
        (
            Fault("echo", status=500), OpenAIUsageAPIError,
            r"giving up after 5 attempts.*HTTP 500\. Op"
            r"enAI said: .*Authorization: Bearer \*\*\*",
        ),
        (Fault("echo", status=400), OpenAIUsageAPIError, r"HTTP 400 .*Authorization: Bearer \*\*\*"),
        (Fault("echo", status=401), OpenAIUsageAuthError, r"HTTP 401: .*Authorization: Bearer \*\*\*"),
        (
            Fault("echo_html", status=404), OpenAIUsageAPIError,
            r"HTTP 404: 404 Not Found 404 nginx could n"
            r"ot route .*Bearer \*\*\* X-Api-Key: \*\*\*",
        ),
    ],
)
def test_a_server_echoing_the_key_never_gets_it_into_errors_logs_or_the_ui(fake_api, conn_id, capsys, fault, error, shown):
    fake_api.schedule_faults(*[fault] * (5 if fault.status == 500 else 1))
    hook = OpenAIUsageHook(conn_id)
    with pytest.raises(error, match=shown) as info:
        list(hook.iter_rows("costs", START, NOW))
    fake_api.schedule_faults(*[fault] * (2 if fault.status == 500 else 1))  # test_connection retries once
    ok, message = hook.test_connection()
    assert not ok
    captured = capsys.readouterr()
    assert_no_secret(str(info.value), repr(info.value), str(info.value.api_message), message, captured.out, captured.err)
    assert fake_api.faults.pending == 0, "the fault must have been served, or the test proves nothing"


def test_retry_logs_of_an_echoing_server_are_scrubbed(fake_api, conn_id, capsys):
    fake_api.schedule_faults(Fault("echo", status=503), Fault("echo", status=502))
    assert len(list(OpenAIUsageHook(conn_id).iter_buckets("costs", START, NOW))) == 10
    captured = capsys.readouterr()
    assert "retrying the same request" in captured.out + captured.err
    assert_no_secret(captured.out, captured.err)


def test_the_scrubber_catches_tokens_and_key_like_strings_in_any_spelling():
    from airflow_provider_openai_usage.hooks.usage import scrub

    text = f"a {SENTINEL_KEY} b bearer%20tok123 c Bearer\tabc.def-ghi d sk-proj-AbCdEf0123456789 e 'Bearer xyz' f"
    assert scrub(text, SENTINEL_KEY) == "a *** b bearer%20*** c Bearer\t*** d sk-*** e 'Bearer ***' f"
    assert scrub("sk-ad****cdef and Incorrect API key provided") == "sk-ad****cdef and Incorrect API key provided"


# -- deadlines and budgets (those that wait on the real clock: tests/integration/test_hooks_usage_waits.py) --
@pytest.mark.parametrize(
    ("extra", "retry_after", "said"),
    [
        (
            {"max_retry_wait": 5}, 30,
            "the server asked to wait 30s (Retry-After), more than this r"
            "equest's retry budget allows (5.0s left of max_retry_wait=5s)",
        ),
        (
            {"max_retry_wait": 5, "max_retry_after": 10}, 30,
            "the server asked to wait 30s (Retry-After, capped at max_re"
            "try_after=10s), more than this request's retry budget allows",
        ),
        (
            {"max_retry_wait": 300, "max_total_retry_wait": 20}, 30,
            "more than this pull's retry budget allows"
            " (20.0s left of max_total_retry_wait=20s)",
        ),
    ],
)
def test_a_retry_after_beyond_the_budget_fails_at_once_and_says_why(fake_api, monkeypatch, extra, retry_after, said):
    monkeypatch.setenv("AIRFLOW_CONN_IMPATIENT", fake_api.connection_json(max_retries=5, **extra))
    fake_api.schedule_faults(status(429, retry_after=retry_after))
    with pytest.raises(OpenAIUsageAPIError) as info:
        list(OpenAIUsageHook("impatient").iter_rows("costs", START, NOW))
    assert said in str(info.value) and "waited 0.0s" not in str(info.value)
    assert "giving up after 1 attempt on /organization/costs: HTTP 429. OpenAI said: Rate limit reached" in str(info.value)
    assert len(fake_api.requests) == 1


def progress_lines(capsys) -> list[str]:
    captured = capsys.readouterr()
    return [line for line in (captured.out + captured.err).splitlines() if " buckets (" in line]


def test_progress_is_logged_against_the_total_with_an_eta(fake_api, conn_id, capsys):
    hook = OpenAIUsageHook(conn_id)
    hook.progress_interval = 0  # every page
    assert len(list(hook.iter_buckets("completions", NOW - 365 * DAY, NOW))) == 365
    lines = progress_lines(capsys)
    assert len(lines) == 12
    assert "31 of 365 buckets (8%) after page 1" in lines[0] and "ETA" in lines[0]
    assert all("ETA " in line for line in lines[:-1])
    assert "365 of 365 buckets (100%) after page 12" in lines[-1] and lines[-1].rstrip().split("elapsed, ")[1].startswith("done")


def test_progress_is_logged_at_most_every_few_seconds(fake_api, conn_id, capsys):
    import time

    assert OpenAIUsageHook.progress_interval >= 3
    started = time.monotonic()
    assert len(list(OpenAIUsageHook(conn_id).iter_buckets("completions", NOW - 365 * DAY, NOW))) == 365
    elapsed = time.monotonic() - started
    lines = progress_lines(capsys)
    # Twelve pages: the first and the last line, plus at most one per interval in between.
    assert 2 <= len(lines) <= 2 + int(elapsed // OpenAIUsageHook.progress_interval) < 12, (elapsed, lines)
    assert "after page 1," in lines[0] and "365 of 365" in lines[-1]


# -- strict buckets through the hook alone ----------------------------------------------------------
def test_a_page_without_has_more_is_an_error_not_the_end(fake_api, conn_id):
    fake_api.controls.page_size_cap = 3
    fake_api.schedule_faults(Fault("no_has_more"))
    with pytest.raises(OpenAIUsageResponseError, match=r"page 1 has has_more=None instead of true/false"):
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW))


def test_a_missing_middle_bucket_is_an_error_not_skipped(fake_api, conn_id):
    fake_api.schedule_faults(Fault("gap"))
    with pytest.raises(OpenAIUsageResponseError, match=r"no bucket from 2025-11-05T00:00:00Z to 2025-11-06T00:00:00Z"):
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW))


def test_buckets_that_stop_early_are_an_error_unless_asked_for_what_is_reported(fake_api, conn_id):
    fake_api.controls.available_until = NOW - 3 * DAY
    hook = OpenAIUsageHook(conn_id)
    got = []
    with pytest.raises(
        OpenAIUsageResponseError,
        match=r"reported buckets only up to 2025-11-07T00:00:00Z, "
        r"not to 2025-11-10T00:00:00Z.*require_complete=False",
    ):
        for bucket in hook.iter_buckets("costs", START, NOW):
            got.append(bucket)
    assert len(got) == 7, "the buckets before the end still come, in order"
    assert len(list(hook.iter_buckets("costs", START, NOW, require_complete=False))) == 7
    with pytest.raises(OpenAIUsageResponseError, match="reported buckets only up to"):
        list(hook.iter_rows("costs", START, NOW))
    assert {r["start_time"] for r in hook.iter_rows("costs", START, NOW, require_complete=False)} <= {START + i * DAY for i in range(7)}


# -- one type per field: exact amounts in buckets too -----------------------------------------------
@pytest.mark.parametrize("amount_format", ["number", "string", "mixed"])
def test_iter_buckets_yields_exact_decimal_amounts_like_iter_rows(fake_api, conn_id, amount_format):
    hook = OpenAIUsageHook(conn_id)
    reference = [r["amount_value"] for r in hook.iter_rows("costs", START, NOW, group_by=["line_item"])]
    fake_api.controls.amount_format = amount_format
    buckets = list(hook.iter_buckets("costs", START, NOW, group_by=["line_item"]))
    amounts = [r["amount"]["value"] for b in buckets for r in b["results"]]
    quantities = [r["quantity"] for b in buckets for r in b["results"] if r.get("quantity") is not None]
    assert amounts and all(type(a) is Decimal for a in amounts)
    assert all(type(q) is Decimal for q in quantities)
    assert amounts == reference
    assert [r["amount_value"] for r in hook.iter_rows("costs", START, NOW, group_by=["line_item"])] == amounts


# -- a 400 for something the registry allows --------------------------------------------------------
def test_a_400_refusing_an_allowed_grouping_names_it_and_is_not_retried(fake_api, conn_id):
    said = "Invalid value for 'group_by': 'api_key_id' is not supported for this endpoint."
    fake_api.schedule_faults(Fault("status", status=400, message=said, param="group_by"))
    with pytest.raises(OpenAIUsageAPIError) as info:
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, group_by=["api_key_id"]))
    message = str(info.value)
    assert f"costs: OpenAI answered HTTP 400 for costs [2025-10-31T00:00:00Z, 2025-11-10T00:00:00Z) 1d: {said[:-1]} (param 'group_by'). Hint:" in message
    assert "OpenAI rejected group_by=['api_key_id']" in message and "remove it from group_by" in message
    assert info.value.status == 400 and info.value.param == "group_by" and info.value.api_message == said
    assert len(fake_api.requests) == 1


def test_a_400_without_param_finds_the_filter_its_message_mentions(fake_api, conn_id):
    fake_api.schedule_faults(Fault("status", status=400, message="Filtering by project_ids is not available for your organization."))
    with pytest.raises(OpenAIUsageAPIError, match=r"Hint: OpenAI rejected project_ids=\['proj_alpha'\]"):
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, project_ids=["proj_alpha"]))
    assert len(fake_api.requests) == 1


def test_a_400_blaming_a_parameter_the_provider_computes_asks_for_a_report(fake_api, conn_id):
    fake_api.schedule_faults(Fault("status", status=400, message="Invalid 'limit': 31.", param="limit"))
    with pytest.raises(
        OpenAIUsageAPIError,
        match=r"Invalid 'limit': 31 \(param 'limit'\)\. Hint: OpenAI blamed '"
        r"limit', which this provider computes itself",
    ):
        list(OpenAIUsageHook(conn_id).iter_rows("completions", START, NOW, group_by=["model"]))


def test_old_spellings_are_read_like_todays(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    for key in ("code_interpreter_sessions", "embeddings"):
        today = list(hook.iter_rows(key, NOW - 5 * DAY, NOW))
        fake_api.schedule_faults(Fault("legacy"))
        assert list(hook.iter_rows(key, NOW - 5 * DAY, NOW)) == today and today


def test_tls_verification_is_never_disabled():
    package = Path(__file__).resolve().parents[2] / "airflow_provider_openai_usage"
    sources = "\n".join(p.read_text() for p in package.rglob("*.py"))
    assert "verify=False" not in sources and "verify = False" not in sources


# -- prefetching the next page (what the usage operator uses) ----------------------------------------
def _prefetch_threads() -> list:
    """Every thread a pull started (prefetch and parallel streams alike)."""
    import threading

    return [t for t in threading.enumerate() if t.name.startswith("openai-usage-")]


def test_prefetching_gives_the_same_buckets_in_the_same_requests(fake_api, conn_id):
    fake_api.controls.page_size_cap = 2
    query = UsageQuery.build("costs", START, NOW)
    plain = list(OpenAIUsageHook(conn_id).iter_query_buckets(query))
    requests_plain = len(fake_api.requests)
    ahead = list(OpenAIUsageHook(conn_id).iter_query_buckets(query, prefetch=True))
    assert ahead == plain and len(plain) == 10
    assert len(fake_api.requests) == 2 * requests_plain == 10
    assert not _prefetch_threads()


def test_a_fault_mid_range_while_prefetching_is_raised_in_order_and_no_thread_outlives_it(fake_api, monkeypatch):
    """Page 3 fails on every attempt: pages 1-2 arrive, then the hook's own error (retries, scrubbing)."""
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01))
    fake_api.controls.page_size_cap = 2
    fake_api.schedule_faults(Fault("pass"), Fault("pass"), status(500), status(500))
    got = []
    with pytest.raises(OpenAIUsageAPIError, match="giving up after 2 attempts.*HTTP 500") as info:
        for bucket in OpenAIUsageHook().iter_query_buckets(UsageQuery.build("costs", START, NOW), prefetch=True):
            got.append(bucket["start_time"])
    assert got == [START + i * DAY for i in range(4)], "every bucket before the failed page, in order"
    assert SENTINEL_KEY not in str(info.value) and len(fake_api.requests) == 4
    assert not _prefetch_threads()


def test_dropping_a_prefetching_iterator_ends_its_thread(fake_api, conn_id):
    fake_api.controls.page_size_cap = 1
    buckets = OpenAIUsageHook(conn_id).iter_query_buckets(UsageQuery.build("costs", START, NOW), prefetch=True)
    next(buckets)
    buckets.close()  # waits for the request in flight, then the thread ends
    assert not _prefetch_threads()
    assert len(fake_api.requests) <= 2, "at most one page ahead"


# -- decoding --------------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "body",
    [
        b'{"a": 1.5e3, "b": 0.1000, "c": 123456789012345678901234567890, "d": -0.0, "e": 1E-7, "s": "\\u00e9"}',
        b'{"v": NaN, "w": Infinity, "x": -Infinity}',  # msgspec refuses these literals; json reads them (then rows refuse them)
        b'{"data": [], "has_more": false}',
    ],
)
def test_decode_json_reads_exactly_what_json_with_decimals_reads(body):
    from airflow_provider_openai_usage.hooks.usage import decode_json

    assert repr(decode_json(body)) == repr(json.loads(body, parse_float=Decimal))


@pytest.mark.parametrize("body", [b'{"data": [', b"<html>proxy</html>", b""])
def test_decode_json_refuses_what_json_refuses(body):
    from airflow_provider_openai_usage.hooks.usage import decode_json

    with pytest.raises(ValueError):
        decode_json(body)


def test_decode_page_gives_the_hooks_buckets(fake_api, conn_id):
    import requests

    from airflow_provider_openai_usage.hooks.usage import decode_page

    query = UsageQuery.build("costs", START, NOW, group_by=["project_id"])
    body = requests.get(f"{fake_api.base_url}/organization/costs", params=query.params(),
                        headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, timeout=30).content
    assert decode_page(query, body)["data"] == list(OpenAIUsageHook(conn_id).iter_query_buckets(query))


def test_page_results_bounds_results_per_page_with_the_same_buckets(fake_api, conn_id):
    """A dense grouping at 1m: ten minutes of buckets first, then pages of about page_results results,
    each limit change sent as a new query from where the last page ended (no cursor reused)."""
    fake_api.controls.dense_groups = 20
    query = UsageQuery.build("completions", NOW - DAY, NOW, bucket_width="1m", group_by=["project_id", "model"])
    plain = list(OpenAIUsageHook(conn_id).iter_query_buckets(query))
    assert len(fake_api.requests) == 1 and sum(len(b["results"]) for b in plain) == 1440 * 20
    bounded = list(OpenAIUsageHook(conn_id).iter_query_buckets(query, prefetch=True, page_results=1000))
    assert bounded == plain
    sent = [r.params() for r in fake_api.requests[1:]]
    assert [p["limit"][0] for p in sent][:2] == ["10", "50"] and {p["limit"][0] for p in sent[1:]} == {"50"}
    assert len(sent) == 1 + math.ceil((1440 - 10) / 50)
    assert "page" not in sent[1] and sent[1]["start_time"] == [str(NOW - DAY + 600)], "a new query from where page 1 ended"
    assert all(p["end_time"] == [str(NOW)] for p in sent)


def test_page_results_keeps_the_fewest_requests_when_pages_are_sparse(fake_api, conn_id):
    query = UsageQuery.build("embeddings", NOW - 7 * DAY, NOW, bucket_width="1m")
    list(OpenAIUsageHook(conn_id).iter_query_buckets(query, prefetch=True, page_results=5000))
    assert len(fake_api.requests) == 7 and {r.params()["limit"][0] for r in fake_api.requests} == {"1440"}


# -- parallel range streams (the usage operator's parallel_requests) ---------------------------------------
YEAR = NOW - 365 * DAY


def _aimed(kind: str, sub: UsageQuery, **kwargs) -> Fault:
    """A fault for the requests of one sub-range only (they all resend its start_time)."""
    return Fault(kind, params=(("start_time", str(sub.start_time)),), **kwargs)


@pytest.mark.parametrize(
    ("key", "start", "end", "width", "group_by", "cap"),
    [
        ("completions", YEAR, NOW, "1d", ["project_id", "model"], None),
        ("costs", YEAR + 5 * 3600, NOW - 7200, "1d", ["line_item"], None),  # partial first and last buckets
        ("embeddings", NOW - 4 * DAY - 90, NOW, "1h", ["model"], 7),  # pages cut short by the server too
        ("images", NOW - 3 * DAY + 61, NOW - 59, "1m", None, None),
        ("vector_stores", NOW - 40 * DAY, NOW, "1d", None, 4),
    ],
)
def test_streams_give_the_same_buckets_in_the_same_number_of_requests(fake_api, conn_id, key, start, end, width, group_by, cap):
    fake_api.controls.page_size_cap = cap
    query = UsageQuery.build(key, start, end, bucket_width=width, group_by=group_by)
    hook = OpenAIUsageHook(conn_id)
    one = list(hook.iter_query_buckets(query, require_complete=True))
    requests_one = len(fake_api.requests)
    # Costs buckets are whole UTC days (issue #25): they cover the partial first and last days.
    low, high = query.bucket_bounds
    assert one and one[0]["start_time"] == low and one[-1]["end_time"] == high
    assert (low, high) == ((start - start % DAY, -(-end // DAY) * DAY) if key == "costs" else (start, end))
    for streams in (2, 3, 4):
        fake_api.clear_requests()
        assert list(hook.iter_query_buckets(query, require_complete=True, streams=streams)) == one, streams
        sent = fake_api.requests
        if cap is None:
            assert len(sent) == requests_one, "cuts at whole pages: no request more than one stream makes"
        assert len({r.params()["start_time"][0] for r in sent if "page" not in r.params()}) == len(query.split(streams))
    assert not _prefetch_threads()


def test_a_year_in_two_streams_is_186_and_179_days_in_6_and_6_requests(fake_api, conn_id):
    query = UsageQuery.build("completions", YEAR, NOW, group_by=["project_id", "model"])
    buckets = list(OpenAIUsageHook(conn_id).iter_query_buckets(query, streams=2, page_results=5000))
    assert len(buckets) == 365
    by_start: dict[str, int] = {}
    for r in fake_api.requests:
        by_start[r.params()["start_time"][0]] = by_start.get(r.params()["start_time"][0], 0) + 1
        assert r.params()["limit"] == ["31"] and r.params()["end_time"][0] in (str(YEAR + 186 * DAY), str(NOW))
    assert by_start == {str(YEAR): 6, str(YEAR + 186 * DAY): 6}


def test_a_range_that_fits_one_page_is_never_split(fake_api, conn_id):
    list(OpenAIUsageHook(conn_id).iter_query_buckets(UsageQuery.build("completions", NOW - 31 * DAY, NOW), streams=8))
    assert len(fake_api.requests) == 1


def test_a_gap_in_a_middle_stream_is_the_usual_error_after_every_bucket_before_it(fake_api, conn_id):
    query = UsageQuery.build("completions", NOW - 93 * DAY, NOW)
    first, middle, _ = query.split(3)
    fake_api.schedule_faults(_aimed("gap", middle))
    got = []
    with pytest.raises(OpenAIUsageResponseError, match=r"refusing to skip a gap") as info:
        for bucket in OpenAIUsageHook(conn_id).iter_query_buckets(query, streams=3):
            got.append(bucket["end_time"])
    assert got == [first.start_time + (i + 1) * DAY for i in range(31)], "the first part whole, nothing of the broken page"
    assert "no bucket from" in str(info.value) and fake_api.faults.pending == 0
    assert not _prefetch_threads()


def test_a_middle_stream_answering_nothing_while_a_later_one_has_buckets_is_a_gap(fake_api, conn_id):
    query = UsageQuery.build("completions", NOW - 93 * DAY, NOW)
    _, middle, last = query.split(3)
    fake_api.schedule_faults(_aimed("empty", middle))
    from airflow_provider_openai_usage.times import iso

    with pytest.raises(OpenAIUsageResponseError, match=re.escape(f"no bucket from {iso(middle.start_time)} to {iso(last.start_time)}")):
        list(OpenAIUsageHook(conn_id).iter_query_buckets(query, streams=3))
    assert not _prefetch_threads()


def test_an_unreported_tail_leaves_only_the_end_short_as_with_one_stream(fake_api, conn_id):
    fake_api.controls.available_until = NOW - 300 * DAY  # inside the first of two parts
    query = UsageQuery.build("completions", YEAR, NOW)
    hook = OpenAIUsageHook(conn_id)
    one = list(hook.iter_query_buckets(query))
    assert len(one) == 65
    fake_api.clear_requests()
    assert list(hook.iter_query_buckets(query, streams=2)) == one
    later = [r for r in fake_api.requests if r.params()["start_time"] == [str(YEAR + 186 * DAY)]]
    assert len(later) == 1, "the later part answers no bucket, in one request"
    with pytest.raises(OpenAIUsageResponseError, match=r"reported buckets only up to 2025-01-14T00:00:00Z"):
        list(hook.iter_query_buckets(query, streams=2, require_complete=True))
    assert not _prefetch_threads()


def test_an_error_of_a_later_stream_comes_after_every_earlier_bucket_scrubbed_and_no_thread_outlives_it(fake_api, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01))
    query = UsageQuery.build("completions", YEAR, NOW)
    first, second = query.split(2)
    # The second part's second page fails on both attempts, with a server echoing the key.
    fake_api.schedule_faults(_aimed("pass", second), *[_aimed("echo", second, status=500)] * 2)
    got = []
    with pytest.raises(OpenAIUsageAPIError, match=r"giving up after 2 attempts.*HTTP 500.*Bearer \*\*\*") as info:
        for bucket in OpenAIUsageHook().iter_query_buckets(query, streams=2, prefetch=True):
            got.append(bucket["start_time"])
    assert got == [YEAR + i * DAY for i in range(186 + 31)], "all of part 1 and the first page of part 2, in order"
    captured = capsys.readouterr()
    assert_no_secret(str(info.value), repr(info.value), str(info.value.api_message), captured.out, captured.err)
    assert fake_api.faults.pending == 0
    assert not _prefetch_threads()


def test_closing_a_streamed_pull_early_ends_its_threads_with_few_requests(fake_api, conn_id):
    query = UsageQuery.build("completions", YEAR, NOW)
    buckets = OpenAIUsageHook(conn_id).iter_query_buckets(query, streams=3)
    assert next(buckets)["start_time"] == YEAR
    assert _prefetch_threads()
    buckets.close()
    assert not _prefetch_threads()
    # Part 1: the page read and one ahead; parts 2 and 3: at most two pages each (no page_results).
    assert len(fake_api.requests) <= 2 + 2 + 2


def test_closing_a_streamed_pull_ends_a_long_retry_wait_at_once(fake_api, monkeypatch):
    import threading
    import time

    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=3, max_retry_wait=120))
    query = UsageQuery.build("completions", YEAR, NOW)
    _, second = query.split(2)
    asked_to_wait = threading.Event()
    fake_api.after_request = lambda _n, request: asked_to_wait.set() if request.status == 429 else None
    fake_api.schedule_faults(Fault("status", status=429, retry_after=60, params=(("start_time", str(second.start_time)),)))
    buckets = OpenAIUsageHook().iter_query_buckets(query, streams=2)
    next(buckets)
    assert asked_to_wait.wait(30), "the second part's first request was answered 429"
    started = time.monotonic()
    buckets.close()
    assert time.monotonic() - started < 30, "the 60 s Retry-After wait ended with the pull"
    assert not _prefetch_threads()


@pytest.mark.parametrize("streams", [0, 9, -1, "2", 2.0, True, None])
def test_bad_streams_are_refused_before_any_request(fake_api, conn_id, streams):
    query = UsageQuery.build("completions", YEAR, NOW)
    with pytest.raises(OpenAIUsageValidationError, match=r"streams=.* must be an int from 1 to 8"):
        OpenAIUsageHook(conn_id).iter_query_buckets(query, streams=streams)
    with pytest.raises(OpenAIUsageValidationError, match=r"streams=.* must be an int from 1 to 8"):
        OpenAIUsageHook(conn_id).iter_pages(query, streams=streams)
    assert fake_api.requests == []


def test_the_pull_budget_is_taken_atomically_by_concurrent_streams():
    import threading

    from airflow_provider_openai_usage.hooks.usage import RetryBudget

    budget = RetryBudget(5.0)
    taken = []
    barrier = threading.Barrier(8)

    def take() -> None:
        barrier.wait(timeout=30)
        taken.extend(budget.take(0.25) for _ in range(10))

    threads = [threading.Thread(target=take) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert taken.count(True) == 20 and budget.remaining == 0


FAULT_KINDS = ["pass", "drop", "truncate", "garbage", "status", "gap", "shift", "empty", "no_has_more", "loop", "wrong_object"]


@given(
    streams=st.integers(1, 4),
    days=st.integers(32, 200),
    faults=st.lists(st.tuples(st.integers(0, 3), st.sampled_from(FAULT_KINDS)), max_size=4),
)
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
def test_any_faults_in_any_part_give_every_bucket_or_an_error_after_an_exact_prefix(fake_api, conn_id, streams, days, faults):
    """Whatever goes wrong in whichever part: the buckets handed over are the start of the true ones,
    in order, each once; the pull either reaches the end or raises; no thread outlives it."""
    fake_api.reset()
    query = UsageQuery.build("completions", NOW - days * DAY, NOW, group_by=["model"])
    hook = OpenAIUsageHook(conn_id)
    reference = list(hook.iter_query_buckets(query, require_complete=True))
    subs = query.split(streams)
    fake_api.schedule_faults(*[_aimed(kind, subs[part % len(subs)]) for part, kind in faults])
    got: list = []
    try:
        for bucket in hook.iter_query_buckets(query, require_complete=True, streams=streams, page_results=5000):
            got.append(bucket)
    except (OpenAIUsageResponseError, OpenAIUsageAPIError) as exc:
        event(f"error after a prefix: {type(exc).__name__}")
        # A prefix, possibly all of them: a page whose buckets are right but whose cursor is bad
        # (a loop on the last page) hands its buckets over and then stops with the error.
        assert got == reference[: len(got)]
    else:
        event("every bucket")
        assert got == reference
    assert not _prefetch_threads()


# -- how the real API answers (issue #25; recorded answers: tests/unit/test_recorded_answers.py) ---------
def test_an_unaligned_30_day_costs_window_ending_now_is_31_whole_days_with_exact_amounts(fake_api, conn_id):
    now = NOW + 11 * 3600 + 17 * 60  # 2025-11-10T11:17Z: the fake's clock mid-day
    fake_api.controls.now = now
    start = now - 30 * DAY
    hook = OpenAIUsageHook(conn_id)
    buckets = list(hook.iter_buckets("costs", start))
    assert len(buckets) == 31 and buckets[0]["start_time"] == start - start % DAY and buckets[-1]["end_time"] == NOW + DAY
    assert [b["exact"] for b in buckets] == [False] + [True] * 29 + [False]
    assert all(b["end_time"] - b["start_time"] == DAY for b in buckets)
    assert all(type(r["amount"]["value"]) is Decimal for b in buckets for r in b["results"])
    assert "end_time" not in fake_api.requests[0].params()
    rows = list(hook.iter_rows("costs", start))
    assert rows and {r["organization_id"] for r in rows} == {fake_api.organization.organization_id} and {r["extra"] for r in rows} == {None}
    assert sum(r["amount_value"] for r in rows) == sum(r["amount"]["value"] for b in buckets for r in b["results"])


def test_a_costs_day_still_open_is_not_handed_over_for_a_range_with_an_end(fake_api, conn_id):
    fake_api.controls.now = NOW + 6 * 3600
    buckets = list(OpenAIUsageHook(conn_id).iter_buckets("costs", NOW - 2 * DAY, NOW + DAY, require_complete=False))
    assert [b["start_time"] for b in buckets] == [NOW - 2 * DAY, NOW - DAY] and all(b["exact"] for b in buckets)
    with pytest.raises(OpenAIUsageResponseError, match=r"only up to 2025-11-10T00:00:00Z"):
        list(OpenAIUsageHook(conn_id).iter_buckets("costs", NOW - 2 * DAY, NOW + DAY))


def test_usage_without_end_time_ends_at_the_moment_of_the_call(fake_api, conn_id):
    fake_api.controls.now = NOW + 5 * 3600
    buckets = list(OpenAIUsageHook(conn_id).iter_buckets("completions", NOW - 2 * DAY + 600))
    assert buckets[0]["start_time"] == NOW - 2 * DAY + 600 and buckets[-1]["end_time"] == NOW + 5 * 3600
    assert [b["exact"] for b in buckets] == [True, True, False]


def test_a_400_for_the_api_key_floor_names_the_param_and_the_floor(fake_api, conn_id):
    with pytest.raises(OpenAIUsageAPIError) as info:
        list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, group_by=["project_id", "api_key_id"]))
    assert info.value.status == 400 and info.value.param == "start_time"
    assert "(param 'start_time')" in str(info.value) and "api_key_id from 2025-12-01T00:00:00Z" in str(info.value)
    assert len(fake_api.requests) == 1


# -- answers refused, not guessed (#26 items 3 and 4) ------------------------------------------------------
@pytest.mark.parametrize("endpoint", ["completions", "costs"])
def test_a_key_sent_twice_in_one_object_is_refused_not_last_one_wins(endpoint):
    from airflow_provider_openai_usage.endpoints import ENDPOINTS
    from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError
    from airflow_provider_openai_usage.hooks.usage import decode_page

    obj = ENDPOINTS[endpoint].result_object
    result = (f'{{"object": "{obj}", "input_tokens": 5, "input_tokens": 7}}' if endpoint == "completions"
              else f'{{"object": "{obj}", "amount": {{"value": 5, "value": 7, "currency": "usd"}}}}')
    body = f'{{"object": "page", "data": [{{"object": "bucket", "start_time": {START}, "end_time": {START + 86400}, "results": [{result}]}}], "has_more": false}}'
    query = UsageQuery.build(endpoint, START, START + 86400)
    with pytest.raises(OpenAIUsageResponseError, match=r"sends the key '(input_tokens|value)' twice"):
        decode_page(query, body.encode())


@pytest.mark.parametrize("depth", [380, 5000])
def test_json_nested_too_deep_is_a_clear_error_that_is_not_retried(depth):
    from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError
    from airflow_provider_openai_usage.hooks.usage import decode_json

    body = b'{"data": ' + b"[" * depth + b"]" * depth + b"}"
    with pytest.raises(OpenAIUsageResponseError, match=r"nested deeper than") as info:
        decode_json(body)
    assert not isinstance(info.value, ValueError), "a ValueError is retried as an incomplete answer"
