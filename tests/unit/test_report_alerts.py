"""report/alerts.py: rule parameters refused with a fix, and the rules' semantics on known numbers.

Delivery through the alert operator (real notifiers, once per period): tests/unit/test_operators_report.py.
"""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from typing import Any

import pytest

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.report.alerts import Evaluator, parse_rules
from airflow_provider_openai_usage.report.landed import COMPLETE, MISSING, day_range
from airflow_provider_openai_usage.report.spend import Directory, Spend

DAY = dt.date(2025, 11, 9)
D = Decimal


def spend(daily: dict[str, dict[str, str]], *, missing: tuple[str, ...] = (), directory: Directory | None = None) -> Spend:
    """A Spend over 2025-10-20..2025-11-09: days not in ``daily`` are landed and empty."""
    days = day_range(dt.date(2025, 10, 20), DAY)
    coverage = {d: (MISSING if d.isoformat() in missing else COMPLETE) for d in days}
    per_day = {d: {p: D(v) for p, v in daily.get(d.isoformat(), {}).items()} for d in days if coverage[d] != MISSING}
    return Spend(DAY, days, coverage, "usd", per_day, [], [], directory or Directory())


def evaluate(rules: list[dict], s: Spend) -> dict[tuple[str, str | None], Any]:
    return {(e.rule.name, e.project): e for e in Evaluator(s, "https://reports.example/spend.html").run(parse_rules(rules))}


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ([], "non-empty list"),
        ({"name": "a", "kind": "daily"}, "non-empty list"),
        ("[{", "not JSON"),
        ([{"kind": "daily", "threshold": 1}], r"rules\[0\].name=None"),
        ([{"name": "a/b", "kind": "daily", "threshold": 1}], "letters, digits"),
        ([{"name": "a", "kind": "weekly", "threshold": 1}], "kind='weekly' is not one of"),
        ([{"name": "a", "kind": "daily"}], "needs threshold"),
        ([{"name": "a", "kind": "daily", "threshold": "ten"}], "threshold='ten' is not a number"),
        ([{"name": "a", "kind": "daily", "threshold": -1}], "finite number >= 0"),
        ([{"name": "a", "kind": "daily", "threshold": "NaN"}], "finite number"),
        ([{"name": "a", "kind": "daily", "threshold": 1, "percent": 80}], r"\['percent'\] do not apply"),
        ([{"name": "a", "kind": "limit_percent", "percent": 80}], "spend limits are per project"),
        ([{"name": "a", "kind": "limit_percent", "project": "*", "percent": 0}], "percent=0 must be above 0"),
        ([{"name": "a", "kind": "anomaly", "factor": 1}], "factor=1 must be above 1"),
        ([{"name": "a", "kind": "anomaly", "trailing_days": 2}], "trailing_days=2 must be an integer from 3"),
        ([{"name": "a", "kind": "anomaly", "project": ""}], "project='' must be"),
        ([{"name": "a", "kind": "daily", "threshold": 1}, {"name": "a", "kind": "daily", "threshold": 2}], "repeated: \\['a'\\]"),
    ],
)
def test_bad_rules_are_refused_with_the_parameter_and_a_fix(rules: Any, match: str) -> None:
    with pytest.raises(OpenAIUsageValidationError, match=match):
        parse_rules(rules)


def test_daily_threshold_fires_when_reached_and_not_below() -> None:
    s = spend({"2025-11-09": {"proj_a": "60", "proj_b": "40"}})
    out = evaluate(
        [{"name": "org", "kind": "daily", "threshold": "100"}, {"name": "org-hi", "kind": "daily", "threshold": "100.01"},
         {"name": "each", "kind": "daily", "project": "*", "threshold": "50"}], s,
    )
    assert out["org", None].fired and out["org", None].amount == D(100)
    assert not out["org-hi", None].fired
    assert out["each", "proj_a"].fired and not out["each", "proj_b"].fired
    message = out["org", None].message
    assert "[org]" in message and "100.00 USD" in message and "https://reports.example/spend.html" in message


def test_a_day_that_has_not_landed_is_not_evaluated_as_zero() -> None:
    s = spend({}, missing=("2025-11-09",))
    ev = evaluate([{"name": "org", "kind": "daily", "threshold": "0"}], s)["org", None]
    assert not ev.fired and ev.amount is None and "has not landed" in ev.detail


def test_month_to_date_sums_the_month_only_and_names_missing_days() -> None:
    s = spend({"2025-10-31": {"p": "500"}, "2025-11-01": {"p": "30"}, "2025-11-09": {"p": "20"}}, missing=("2025-11-05",))
    ev = evaluate([{"name": "mtd", "kind": "month_to_date", "project": "p", "threshold": "50"}], s)["mtd", "p"]
    assert ev.fired and ev.amount == D(50) and ev.period == "2025-11"
    assert "1 day(s) of the month not landed" in ev.detail


def test_limit_percent_uses_the_directory_and_project_names() -> None:
    directory = Directory({"proj_a": "Search", "proj_b": "Chat"}, {"proj_a": D(100), "proj_b": D(1000)})
    s = spend({"2025-11-02": {"proj_a": "79.99", "proj_b": "800"}}, directory=directory)
    out = evaluate(
        [{"name": "l80", "kind": "limit_percent", "project": "*", "percent": 80},
         {"name": "chat", "kind": "limit_percent", "project": "Chat", "percent": "80"},
         {"name": "nolimit", "kind": "limit_percent", "project": "proj_zzz", "percent": 50}], s,
    )
    assert not out["l80", "proj_a"].fired and out["l80", "proj_b"].fired
    assert out["l80", "proj_b"].threshold == D(800)
    assert out["chat", "proj_b"].fired and "Chat (proj_b)" in out["chat", "proj_b"].message
    assert not out["nolimit", "proj_zzz"].fired and "no spend limit" in out["nolimit", "proj_zzz"].detail
    typo = evaluate([{"name": "typo", "kind": "daily", "project": "Serch", "threshold": "1"}], s)["typo", "Serch"]
    assert not typo.fired and typo.error and "names no project" in typo.detail


def test_anomaly_against_trailing_median_with_a_minimum_amount() -> None:
    history = {f"2025-11-0{i}": {"big": "10", "tiny": "0.01"} for i in range(1, 9)}
    s = spend({**history, "2025-11-09": {"big": "31", "tiny": "0.50"}})
    out = evaluate([{"name": "spike", "kind": "anomaly", "project": "*", "factor": 3, "trailing_days": 7, "min_amount": "5"}], s)
    assert out["spike", "big"].fired and out["spike", "big"].threshold == D(30)
    assert not out["spike", "tiny"].fired  # 50x its median, but under min_amount: nobody is paged
    calm = evaluate([{"name": "spike", "kind": "anomaly", "project": "big", "factor": "3.2", "trailing_days": 7}], s)
    assert not calm["spike", "big"].fired


def test_anomaly_needs_enough_landed_history() -> None:
    missing = tuple(f"2025-11-0{i}" for i in range(1, 8))
    s = spend({"2025-11-08": {"p": "1"}, "2025-11-09": {"p": "100"}}, missing=missing)
    ev = evaluate([{"name": "spike", "kind": "anomaly", "project": "p", "trailing_days": 7}], s)["spike", "p"]
    assert not ev.fired and "only 1 of the 7 days" in ev.detail


# -- a project named by name resolves once (#26 item 15) ---------------------------------------------
def test_a_project_name_that_matches_nothing_or_two_projects_is_an_error_not_ok() -> None:
    s = spend({"2025-11-09": {"proj_a": "50", "proj_b": "60"}}, directory=Directory({"proj_a": "Search", "proj_b": "Search"}))
    twice = evaluate([{"name": "r", "kind": "daily", "project": "Search", "threshold": "1"}], s)
    ((_, ev),) = twice.items()
    assert ev.error and not ev.fired and "names 2 projects (proj_a, proj_b)" in ev.detail
    gone = evaluate([{"name": "r", "kind": "daily", "project": "Serch", "threshold": "1"}], s)
    ((_, ev),) = gone.items()
    assert ev.error and not ev.fired and "names no project" in ev.detail


def test_a_project_name_is_pinned_to_the_id_it_first_named() -> None:
    """Renamed, and another project took the name: the rule must not follow the name to it."""
    s = spend({"2025-11-09": {"proj_a": "50", "proj_b": "0"}}, directory=Directory({"proj_a": "Search v2", "proj_b": "Search"}))
    rules = parse_rules([{"name": "r", "kind": "daily", "project": "Search", "threshold": "1"}])
    evaluator = Evaluator(s, None, pinned={"r": "proj_a"})
    (ev,) = evaluator.run(rules)
    assert ev.error and "named proj_a when the rule was first evaluated, and now names proj_b" in ev.detail
    fresh = Evaluator(s, None)
    (ok,) = fresh.run(rules)
    assert not ok.error and ok.project == "proj_b" and fresh.pins == {"r": "proj_b"}
    by_id = Evaluator(s, None).run(parse_rules([{"name": "i", "kind": "daily", "project": "proj_a", "threshold": "1"}]))
    assert by_id[0].fired and not by_id[0].error
