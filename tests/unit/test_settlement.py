"""settlement.check_settled: each settle condition alone (settle period, every bucket, results, stable polls)."""

from __future__ import annotations

from conftest import DAY, NOW

from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.settlement import SettleRules, StabilityState, check_settled

DAY_START = NOW - DAY


def query(key: str = "embeddings", start: int = DAY_START, end: int = NOW) -> UsageQuery:
    return UsageQuery.build(key, start, end)


def test_settle_period_waits_without_a_request(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    rules = SettleRules(settle_period_seconds=3600)
    early = check_settled(hook, query(), rules, now=NOW + 1800, state=StabilityState())
    assert not early.settled and "settle period until 2025-11-10T01:00:00Z" in early.reason
    assert fake_api.requests == []
    assert check_settled(hook, query(), rules, now=NOW + 3600, state=StabilityState()).settled


def test_every_bucket_must_be_reported(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    fake_api.controls.available_until = NOW - 6 * 3600
    missing = check_settled(hook, query(start=NOW - 3 * DAY), SettleRules(0), now=NOW, state=StabilityState())
    assert not missing.settled and "returned 2 of 3 buckets complete" in missing.reason
    fake_api.controls.available_until = None
    assert check_settled(hook, query(start=NOW - 3 * DAY), SettleRules(0), now=NOW, state=StabilityState()).settled


def _empty_day(hook: OpenAIUsageHook, key: str) -> int:
    for bucket in hook.iter_buckets(key, NOW - 60 * DAY, NOW):
        if not bucket["results"]:
            return bucket["start_time"]
    raise AssertionError("the fake has empty days")


def test_require_results_waits_for_usage_and_for_a_non_zero_cost(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    for key in ("embeddings", "costs"):
        empty = _empty_day(hook, key)
        q = query(key, empty, empty + DAY)
        assert check_settled(hook, q, SettleRules(0, require_results=False), now=NOW, state=StabilityState()).settled
        waiting = check_settled(hook, q, SettleRules(0, require_results=True), now=NOW, state=StabilityState())
        assert not waiting.settled and "require_results=True" in waiting.reason
        fake_api.controls.revisions[empty] = 5  # late usage arrives (revision 5 of that day has events)
        assert check_settled(hook, q, SettleRules(0, require_results=True), now=NOW, state=StabilityState()).settled, key


def test_stable_polls_need_identical_results_in_a_row(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    rules = SettleRules(0, stable_polls=2)
    first = check_settled(hook, query(), rules, now=NOW, state=StabilityState())
    assert not first.settled and "unchanged on 1 of 2" in first.reason
    fake_api.controls.revisions[DAY_START] = 1
    changed = check_settled(hook, query(), rules, now=NOW, state=first.state)
    assert not changed.settled and changed.state.streak == 1
    same = check_settled(hook, query(), rules, now=NOW, state=changed.state)
    assert same.settled and same.summary["rows"] > 0 and same.summary["buckets"] == 1


def test_costs_by_api_key_settle_across_the_floor_checked_as_the_operator_pulls_them(fake_api, conn_id):
    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR as FLOOR

    fake_api.controls.now = FLOOR + 10 * DAY
    q = UsageQuery.build("costs", FLOOR - 2 * DAY, FLOOR + 2 * DAY, group_by=["project_id", "api_key_id"])
    result = check_settled(OpenAIUsageHook(conn_id), q, SettleRules(0), now=FLOOR + 10 * DAY, state=StabilityState())
    assert result.settled and result.summary["buckets"] == 4
    assert [r.status for r in fake_api.requests] == [200, 200]
