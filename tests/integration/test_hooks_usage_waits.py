"""OpenAIUsageHook against the real clock: Retry-After, timeouts and retry budgets, waited out for real.

Each test waits whole seconds (a Retry-After of 1 s, a 1 s timeout, a trickling body), so they live
here rather than in tests/unit/test_hooks_usage.py, which keeps the hook's other tests fast. Real HTTP
to the fake API, no mocks.
"""

from __future__ import annotations

import pytest
from conftest import DAY, NOW

from airflow_provider_openai_usage.exceptions import OpenAIUsageAPIError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.testing import Fault, status

START = NOW - 10 * DAY


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


def test_read_timeouts_are_retried(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_SLOW", fake_api.connection_json(timeout=1, max_retries=2, backoff_base=0.01))
    fake_api.schedule_faults(Fault("slow", delay=1.6))
    assert len(list(OpenAIUsageHook("slow").iter_buckets("costs", START, NOW))) == 10
    assert len(fake_api.requests) == 2


def test_retry_wait_budget_bounds_the_total_wait(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BUDGET", fake_api.connection_json(max_retries=10, max_retry_wait=1.5))
    fake_api.schedule_faults(*[status(429, retry_after=1)] * 10)
    with pytest.raises(OpenAIUsageAPIError, match="HTTP 429"):
        list(OpenAIUsageHook("budget").iter_rows("costs", START, NOW))
    log = fake_api.requests
    assert len(log) == 2 and log[-1].at - log[0].at < 1.5


def test_a_trickling_server_cannot_hold_a_request_past_its_timeout(fake_api, monkeypatch):
    import time

    monkeypatch.setenv("AIRFLOW_CONN_TRICKLE", fake_api.connection_json(timeout=1, max_retries=0))
    fake_api.schedule_faults(Fault("trickle", delay=0.4))
    hook = OpenAIUsageHook("trickle")
    assert hook.settings.timeout == 1  # the connection is read before the clock starts
    started = time.monotonic()
    with pytest.raises(OpenAIUsageAPIError, match=r"did not arrive within timeout=1s \(the server sent \d+ bytes of the body by then\)"):
        list(hook.iter_buckets("costs", START, NOW))
    elapsed = time.monotonic() - started
    # The body is thousands of bytes at one per 0.4 s; the per-read timeout alone would wait for all of it.
    assert elapsed < 1 + 0.4 + 1.0, elapsed


def test_a_trickled_page_is_retried_and_the_pull_completes(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_TRICKLE", fake_api.connection_json(timeout=1, max_retries=2, backoff_base=0.01))
    fake_api.schedule_faults(Fault("trickle", delay=0.4))
    assert len(list(OpenAIUsageHook("trickle").iter_buckets("costs", START, NOW))) == 10
    assert [r.fault for r in fake_api.requests] == ["trickle 0.4s", None]


def test_the_pull_wide_retry_budget_bounds_retries_across_pages(fake_api, monkeypatch):
    import time

    # Each page alone stays within max_retry_wait (2 waits of 1 s), but 6 pages of them would wait 12 s.
    monkeypatch.setenv("AIRFLOW_CONN_OUTAGE", fake_api.connection_json(max_retries=4, max_retry_wait=3, max_total_retry_wait=2.5))
    fake_api.controls.page_size_cap = 2
    one_page = [status(503, retry_after=1), status(503, retry_after=1), Fault("pass")]
    fake_api.schedule_faults(*one_page * 6)
    hook = OpenAIUsageHook("outage")
    assert hook.settings.max_total_retry_wait == 2.5
    started = time.monotonic()
    with pytest.raises(OpenAIUsageAPIError) as info:
        list(hook.iter_buckets("costs", START, NOW))
    elapsed = time.monotonic() - started
    message = str(info.value)
    assert "giving up after 1 attempt on /organization/costs: HTTP 503" in message
    assert (
        "the server asked to wait 1s (Retry-After), more than this pull"
        "'s retry budget allows (0.5s left of max_total_retry_wait=2.5s)"
    ) in message
    assert [r.status for r in fake_api.requests] == [503, 503, 200, 503]
    assert elapsed < 2.5 + 3.5, elapsed  # without the pull's budget: 6 pages x 2 s of waits
    # The budget belongs to one pull, not to the hook: a trigger polling with one hook starts afresh.
    fake_api.faults.clear()
    fake_api.controls.page_size_cap = None
    fake_api.schedule_faults(status(503, retry_after=1), status(503, retry_after=1))
    assert len(list(hook.iter_buckets("costs", START, NOW))) == 10
