"""Is a range's usage reported and settled? One decision, shared by the sensor and the trigger.

OpenAI reports usage late and revises recent buckets after they close (Elastic's integration waits
15 minutes for minute buckets). A range counts as settled when:
1. it ended at least ``settle_period`` ago;
2. the API returns every bucket of the range;
3. with ``require_results``: it has at least one result (for costs, a non-zero amount);
4. with ``stable_polls`` = N > 1: the same results came back on N consecutive polls.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.rows import add_totals, bucket_columns, json_safe, metric_totals, rows_of

if TYPE_CHECKING:
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.times import iso


@dataclass(frozen=True)
class SettleRules:
    settle_period_seconds: float = 3600.0
    require_results: bool = False
    stable_polls: int = 1


@dataclass(frozen=True)
class StabilityState:
    """What the previous polls saw: a fingerprint of the results and how many polls in a row saw it."""

    fingerprint: str | None = None
    streak: int = 0


@dataclass(frozen=True)
class SettleResult:
    settled: bool
    reason: str
    state: StabilityState
    summary: dict[str, Any] = field(default_factory=dict)


def check_settled(hook: OpenAIUsageHook, query: UsageQuery, rules: SettleRules, *, now: float, state: StabilityState) -> SettleResult:
    """One poll. Makes no request while the settle period is still running."""
    ready_at = query.end_time + rules.settle_period_seconds
    if now < ready_at:
        return SettleResult(
            False,
            f"{query.describe()} ends at {iso(query.end_time)}; waiting for the settle period until {iso(int(ready_at))}",
            state,
        )
    expected = query.expected_buckets()
    digest = hashlib.sha256()
    seen: list[tuple[int, int]] = []
    rows = 0
    totals: dict[str, Any] = {c.name: 0 for c in query.endpoint.metric_columns}
    # Days before a grouping's floor (costs by api_key_id before 2025-12-01) are checked without it,
    # as the operator pulls them (query.floor_parts, docs/hook.md "The API-key floor").
    buckets = (bucket for part, _ in query.floor_parts() for bucket in hook.iter_query_buckets(part))
    for bucket in buckets:
        seen.append((bucket["start_time"], bucket["end_time"]))
        n, columns = bucket_columns(query.endpoint, bucket)
        for row in rows_of(columns):
            digest.update(json.dumps({k: json_safe(v) for k, v in row.items()}, sort_keys=True).encode())
        rows += n
        add_totals(totals, metric_totals(query.endpoint, columns))
    summary = {
        "endpoint": query.endpoint.key,
        "start_time": query.start_time,
        "end_time": query.end_time,
        "bucket_width": query.bucket_width,
        "buckets": len(seen),
        "rows": rows,
        "totals": {k: json_safe(v) for k, v in totals.items()},
    }
    fingerprint = digest.hexdigest()
    streak = state.streak + 1 if fingerprint == state.fingerprint else 1
    new_state = StabilityState(fingerprint, streak)
    if seen != expected:
        complete = len(set(expected) & set(seen))
        return SettleResult(
            False,
            f"{query.describe()}: OpenAI returned {complete} of {len(expected)} buckets complete; waiting for the rest",
            new_state,
            summary,
        )
    if rules.require_results:
        reported_by = query.endpoint.reported_by
        if not (totals[reported_by] != 0 if reported_by else rows > 0):
            what = f"non-zero {reported_by}" if reported_by else "result"
            return SettleResult(False, f"{query.describe()}: no {what} reported yet (require_results=True)", new_state, summary)
    if streak < rules.stable_polls:
        return SettleResult(
            False, f"{query.describe()}: results unchanged on {streak} of {rules.stable_polls} consecutive polls", new_state, summary
        )
    return SettleResult(True, f"{query.describe()}: settled ({len(seen)} buckets, {rows} rows)", new_state, summary)
