"""Spend report: numbers equal the partitions' sums, gaps stay gaps, the page is self-contained."""

from __future__ import annotations

import datetime as dt
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest
from report_support import land, partition_sums

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.report import OpenAISpendReportOperator, report_day
from airflow_provider_openai_usage.report.landed import COMPLETE, MISSING, PARTIAL, coverage_of
from airflow_provider_openai_usage.report.spend import Directory, load_spend, money

DAY = dt.date(2025, 11, 9)
GAP = "2025-11-03"
CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10)}


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 days of costs and completions as the pull operator lands them, with one day never landed."""
    root = tmp_path_factory.mktemp("landed")
    land(root.as_uri(), "2025-10-05", "2025-11-10")
    shutil.rmtree(root / "costs" / f"date={GAP}")
    return root


def location(root: Path):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root.as_uri())


def test_daily_totals_equal_partition_sums_and_gaps_stay_gaps(landed: Path) -> None:
    spend = load_spend(location(landed), DAY, 30)
    oracle = partition_sums(landed / "costs")
    assert spend.coverage[dt.date.fromisoformat(GAP)] == MISSING
    assert spend.day_total(dt.date.fromisoformat(GAP)) is None  # not landed: no number, not 0
    for day in spend.days:
        assert spend.day_total(day) == oracle.get(day.isoformat()), day
    window = spend.window(30)
    assert spend.window_total(30) == sum((oracle.get(d.isoformat(), Decimal(0)) for d in window), Decimal(0))
    november = [v for k, v in oracle.items() if k.startswith("2025-11") and k <= "2025-11-09"]
    assert spend.month_to_date(None) == sum(november, Decimal(0))
    for project in spend.projects:
        per_project = partition_sums(landed / "costs", project)
        assert spend.month_to_date(project) == sum((v for k, v in per_project.items() if "2025-11-01" <= k <= "2025-11-09"), Decimal(0))
    # Reported-but-empty days are real zeros (the fake API has some): the listing tells them apart.
    assert any(spend.day_total(d) == 0 for d in spend.days)


def test_line_items_and_models_add_up(landed: Path) -> None:
    spend = load_spend(location(landed), DAY, 30)
    assert sum((a for _, a in spend.line_items), Decimal(0)) == spend.window_total(30)
    model_items = sum((a for name, a in spend.line_items if ", " in name), Decimal(0))
    assert sum((m.cost for m in spend.models), Decimal(0)) == model_items
    assert [m.cost for m in spend.models] == sorted((m.cost for m in spend.models), reverse=True)
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    usage = pq.read_table(landed / "completions", partitioning="hive")
    usage = usage.filter(pc.greater_equal(usage.column("date"), "2025-10-11"))
    for m in spend.models:
        rows = usage.filter(pc.equal(usage.column("model"), m.model))
        assert m.input_tokens == pc.sum(rows.column("input_tokens")).as_py()


def test_movers_compare_the_two_last_days(landed: Path) -> None:
    spend = load_spend(location(landed), DAY, 30)
    for project, before, after, change in spend.movers():
        assert before == spend.project_day(project, DAY - dt.timedelta(days=1))
        assert after == spend.project_day(project, DAY)
        assert change == after - before
    # No comparison against a day that never landed.
    assert load_spend(location(landed), dt.date(2025, 11, 4), 30).movers() == []


def test_report_operator_writes_a_self_contained_page_and_png(landed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(landed, out)
    result = OpenAISpendReportOperator(task_id="report", output_path=out.as_uri(), days=14).execute(CTX)
    page = out / "reports" / "date=2025-11-09" / "spend.html"
    assert result["report"] == f"file://{page}"
    assert result["missing_days"] == [GAP]
    html = page.read_text()
    png = (out / "reports" / "date=2025-11-09" / "spend.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "default-src 'none'" in html and "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html), "a reference the browser would fetch"
    assert html.count("<svg") == 3
    # The gap reads as not landed, never as 0.00.
    assert re.search(rf'<tr class="missing"><td>{GAP}</td><td>missing</td>(<td class="num">n/a</td>)+</tr>', html)
    oracle = partition_sums(out / "costs")
    window = [(DAY - dt.timedelta(days=i)).isoformat() for i in range(14)]
    total = sum((oracle.get(d, Decimal(0)) for d in window), Decimal(0))
    assert f'data-exact="{format(total, "f")}">{money(total, "usd")}</td>' in html
    assert not list(out.rglob(".*.tmp")), "temporary files left behind"


def test_report_bytes_do_not_depend_on_the_run(landed: Path, tmp_path: Path) -> None:
    from airflow_provider_openai_usage.report import charts

    spend = load_spend(location(landed), DAY, 30, Directory({"proj_alpha": "Alpha"}, {"proj_alpha": Decimal(40)}))
    first = charts.render(charts.month_chart, spend, name="month", formats=("svg", "png"))
    second = charts.render(charts.month_chart, spend, name="month", formats=("svg", "png"))
    assert first == second
    assert "<text" not in first["svg"], "glyphs are paths: the SVG needs no font on the reader's machine"


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], MISSING),
        (["part-0000-2400.parquet"], COMPLETE),
        (["part-0000-0100.parquet", "part-0100-2400.parquet"], COMPLETE),
        (["part-0000-1200.parquet"], PARTIAL),
        (["part-0000-0100.parquet", "part-0200-2400.parquet"], PARTIAL),
        (["x/date=2025-11-01/part-0100-2400.parquet"], PARTIAL),
        (["data.parquet"], COMPLETE),
    ],
)
def test_coverage_from_part_windows(names: list[str], expected: str) -> None:
    assert coverage_of(names) == expected


def test_coverage_from_manifest_windows() -> None:
    assert coverage_of(["data.parquet"], [(0, 3600), (3600, 86400)]) == COMPLETE
    assert coverage_of(["data.parquet"], [(0, 43200)]) == PARTIAL
    assert coverage_of([], [(0, 86400)]) == MISSING


def test_partial_day_is_marked(landed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(landed, out)
    day_dir = out / "costs" / "date=2025-11-08"
    manifest = out / "costs" / "_openai_usage" / "manifests" / "date=2025-11-08.json"
    if manifest.exists():  # one file per day: its manifest says which hours it covers
        start = int(dt.datetime(2025, 11, 8, tzinfo=dt.timezone.utc).timestamp())
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "covered": [[start, start + 43200]]}))
    else:
        (day_dir / "part-0000-2400.parquet").rename(day_dir / "part-0000-1200.parquet")
    spend = load_spend(location(out), DAY, 30)
    assert spend.coverage[dt.date(2025, 11, 8)] == PARTIAL
    OpenAISpendReportOperator(task_id="report", output_path=out.as_uri()).execute(CTX)
    html = (out / "reports" / "date=2025-11-09" / "spend.html").read_text()
    assert "Only partly landed: 2025-11-08" in html


def test_money_is_rounded_only_for_display() -> None:
    assert money(Decimal("1234.565"), "usd") == "1,234.57 USD"
    assert money(Decimal("0.004999999999"), "usd") == "0.00 USD"
    assert money(None, "usd") == "n/a"


def test_bad_parameters_fail_at_parse_time() -> None:
    with pytest.raises(OpenAIUsageValidationError, match="days=0"):
        OpenAISpendReportOperator(task_id="r", output_path="file:///tmp/x", days=0)
    with pytest.raises(OpenAIUsageValidationError, match="report_date='yesterday'"):
        report_day({}, "yesterday")
    with pytest.raises(OpenAIUsageValidationError, match="set report_date"):
        report_day({}, None)
    with pytest.raises(OpenAIUsageValidationError, match="relative"):
        OpenAISpendReportOperator(task_id="r", output_path="out/x").execute(CTX)


def test_other_formats_are_refused_with_a_fix(tmp_path: Path) -> None:
    day_dir = tmp_path / "costs" / "date=2025-11-09"
    day_dir.mkdir(parents=True)
    (day_dir / "part-0000-2400.jsonl").write_text("")
    with pytest.raises(OpenAIUsageValidationError, match="file_format='parquet'"):
        load_spend(location(tmp_path), DAY, 2)
