"""testing/data.py: the fake's synthetic usage is deterministic, inside its day, and grouping never changes totals."""

from __future__ import annotations

from conftest import DAY, NOW

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.testing.data import FakeOrganization, aggregate, day_events, matches

ORG = FakeOrganization(seed=7)


def test_a_day_is_the_same_every_time_and_a_revision_changes_it():
    days = [NOW - i * DAY for i in range(1, 15)]
    first = [day_events(ORG, "completions", d) for d in days]
    assert first == [day_events(FakeOrganization(seed=7), "completions", d) for d in days]
    assert any(first), "two weeks hold some usage"
    busy = next(d for d, e in zip(days, first, strict=True) if e)
    assert day_events(ORG, "completions", busy, revision=1) != day_events(ORG, "completions", busy)


def test_events_fall_inside_their_day_in_time_order_with_known_dimensions():
    day = NOW - 3 * DAY
    for key in ("completions", "costs", "images"):
        events = day_events(ORG, key, day)
        minutes = [e.minute for e in events]
        assert minutes == sorted(minutes) and all(day <= m < day + DAY and m % 60 == 0 for m in minutes)
        names = {d.name for d in ENDPOINTS[key].dimensions} - set(ENDPOINTS[key].reported_fields)
        assert all({name for name, _ in e.dims} == names for e in events)


def test_grouping_and_filtering_never_change_what_is_counted():
    endpoint = ENDPOINTS["completions"]
    events = [e for i in range(1, 8) for e in day_events(ORG, "completions", NOW - i * DAY)]
    assert events

    def total(results: list[dict], name: str = "input_tokens") -> int:
        return sum(r[name] or 0 for r in results)

    whole = total(aggregate(endpoint, events, []))
    assert whole == sum(dict(e.metrics)["input_tokens"] for e in events)
    assert total(aggregate(endpoint, events, ["model", "project_id"])) == whole
    alpha = [e for e in events if matches(e, {"project_id": {"proj_alpha"}})]
    rest = [e for e in events if not matches(e, {"project_id": {"proj_alpha"}})]
    assert total(aggregate(endpoint, alpha, [])) + total(aggregate(endpoint, rest, [])) == whole
