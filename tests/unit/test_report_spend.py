"""report/spend.py: the report's numbers equal the partitions' sums, and gaps stay gaps."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pytest
from report_support import GAP, ORG, REPORT_DAY, land_with_gap, location, org_root, partition_sums

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.report.landed import MISSING
from airflow_provider_openai_usage.report.spend import load_spend, money

DAY = REPORT_DAY


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 days of costs and completions as the pull operator lands them, with one day never landed (GAP)."""
    return land_with_gap(tmp_path_factory)


def test_daily_totals_equal_partition_sums_and_gaps_stay_gaps(landed: Path) -> None:
    spend = load_spend(location(landed), DAY, 30, organization_id=ORG)
    oracle = partition_sums(org_root(landed, "costs"))
    assert spend.coverage[dt.date.fromisoformat(GAP)] == MISSING
    assert spend.day_total(dt.date.fromisoformat(GAP)) is None  # not landed: no number, not 0
    for day in spend.days:
        assert spend.day_total(day) == oracle.get(day.isoformat()), day
    window = spend.window(30)
    assert spend.window_total(30) == sum((oracle.get(d.isoformat(), Decimal(0)) for d in window), Decimal(0))
    november = [v for k, v in oracle.items() if k.startswith("2025-11") and k <= "2025-11-09"]
    assert spend.month_to_date(None) == sum(november, Decimal(0))
    for project in spend.projects:
        per_project = partition_sums(org_root(landed, "costs"), project)
        assert spend.month_to_date(project) == sum((v for k, v in per_project.items() if "2025-11-01" <= k <= "2025-11-09"), Decimal(0))
    # Reported-but-empty days are real zeros (the fake API has some): the listing tells them apart.
    assert any(spend.day_total(d) == 0 for d in spend.days)


def test_line_items_and_models_add_up(landed: Path) -> None:
    spend = load_spend(location(landed), DAY, 30, organization_id=ORG)
    assert sum((a for _, a in spend.line_items), Decimal(0)) == spend.window_total(30)
    model_items = sum((a for name, a in spend.line_items if ", " in name), Decimal(0))
    assert sum((m.cost for m in spend.models), Decimal(0)) == model_items
    assert [m.cost for m in spend.models] == sorted((m.cost for m in spend.models), reverse=True)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    usage = pq.read_table(org_root(landed, "completions"), partitioning="hive")
    usage = usage.filter(pc.greater_equal(usage.column("date"), "2025-10-11"))
    for m in spend.models:
        rows = usage.filter(pc.equal(usage.column("model"), m.model))
        assert m.input_tokens == pc.sum(rows.column("input_tokens")).as_py()


def test_movers_compare_the_two_last_days(landed: Path) -> None:
    spend = load_spend(location(landed), DAY, 30, organization_id=ORG)
    for project, before, after, change in spend.movers():
        assert before == spend.project_day(project, DAY - dt.timedelta(days=1))
        assert after == spend.project_day(project, DAY)
        assert change == after - before
    # No comparison against a day that never landed.
    assert load_spend(location(landed), dt.date(2025, 11, 4), 30, organization_id=ORG).movers() == []


def test_money_is_rounded_only_for_display() -> None:
    assert money(Decimal("1234.565"), "usd") == "1,234.57 USD"
    assert money(Decimal("0.004999999999"), "usd") == "0.00 USD"
    assert money(None, "usd") == "n/a"


def test_other_formats_are_refused_with_a_fix(tmp_path: Path) -> None:
    day_dir = org_root(tmp_path, "costs") / "date=2025-11-09"
    day_dir.mkdir(parents=True)
    (day_dir / "part-0000-2400.jsonl").write_text("")
    with pytest.raises(OpenAIUsageValidationError, match="file_format='parquet'"):
        load_spend(location(tmp_path), DAY, 2, organization_id=ORG)


def test_the_drill_down_by_api_key_and_owner_sums_to_the_window(tmp_path: Path) -> None:
    """Costs grouped by API key (after OpenAI's 2025-12-01 floor), keys named and owned from the
    directory snapshot: per key and per owner the exact sums add up to the window's total (#30)."""
    import pendulum
    from report_support import _env

    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
    from airflow_provider_openai_usage.report.html import render_html
    from airflow_provider_openai_usage.report.names import load_directory
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

    now = 1765324800  # 2025-12-10T00:00:00Z
    with (
        FakeOpenAIUsageAPI(seed=7, now=now) as api,
        _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()),
    ):
        OpenAIUsageOperator(
            task_id="pull_costs", endpoint="costs", group_by=["project_id", "line_item", "api_key_id"], output_path=tmp_path.as_uri(),
            start_time="2025-12-02T00:00:00Z", end_time="2025-12-10T00:00:00Z",
        ).execute({"data_interval_start": pendulum.datetime(2025, 12, 2), "data_interval_end": pendulum.datetime(2025, 12, 10)})
        OpenAIDirectoryOperator(task_id="snapshot", output_path=tmp_path.as_uri(), entities=["projects", "project_api_keys"]).execute(
            {"data_interval_end": pendulum.datetime(2025, 12, 10)}
        )
    day = dt.date(2025, 12, 9)
    directory = load_directory(location(tmp_path), day, organization_id=ORG)
    spend = load_spend(location(tmp_path), day, 7, directory, with_models=False, organization_id=ORG)
    window = spend.window_total(7)
    assert len([key for key, _ in spend.by_key if key]) > 1  # days after the floor carry the key
    assert sum((a for _, a in spend.by_key), Decimal(0)) == window
    assert sum((a for _, a in spend.by_owner()), Decimal(0)) == window
    owners = dict(spend.by_owner())
    for key, amount in spend.by_key:
        if key in spend.directory.keys:
            assert spend.directory.keys[key][1] in owners
        elif key:  # a key the snapshot does not list (revoked, or its owner left): its cost is kept, owner unknown
            assert owners["owner unknown (key not in the directory snapshot)"] >= amount
    charts = {"daily": "<svg></svg>", "month": "<svg></svg>", "models": "<svg></svg>"}
    html = render_html(spend, charts, window=7, source=tmp_path.as_uri())
    name, owner = spend.directory.keys[next(key for key, _ in spend.by_key if key in spend.directory.keys)]
    section = html.split('id="keys-table"', 1)[1].split("</table>", 1)[0]
    import html as html_lib

    assert html_lib.escape(owner) in section and html_lib.escape(name) in section
