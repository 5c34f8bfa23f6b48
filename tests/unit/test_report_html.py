"""report/html.py: one self-contained page; gaps read as not landed; names from the directory are escaped."""

from __future__ import annotations

import datetime as dt
import re
from decimal import Decimal

from airflow_provider_openai_usage.report.html import render_html
from airflow_provider_openai_usage.report.landed import COMPLETE, MISSING, day_range
from airflow_provider_openai_usage.report.spend import Directory, Spend

DAY = dt.date(2025, 11, 9)
GAP = dt.date(2025, 11, 7)
CHARTS = {"daily": "<svg id='d'></svg>", "month": "<svg id='m'></svg>", "models": "<svg id='x'></svg>"}


def spend(directory: Directory) -> Spend:
    days = day_range(dt.date(2025, 11, 1), DAY)
    coverage = {d: MISSING if d == GAP else COMPLETE for d in days}
    daily = {d: {"proj_a": Decimal("1.005"), "proj_b": Decimal("2")} for d in days if d != GAP}
    return Spend(DAY, days, coverage, "usd", daily, [("gpt-4o, input", Decimal("16.04"))], [], directory)


def test_the_page_fetches_nothing_and_shows_a_gap_as_not_landed():
    html = render_html(spend(Directory()), CHARTS, window=9, source="file:///out")
    assert "default-src 'none'" in html and "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html), "a reference the browser would fetch"
    assert re.search(rf'<tr class="missing"><td>{GAP.isoformat()}</td><td>missing</td>(<td class="num">n/a</td>)+</tr>', html)
    assert "Not landed (shown as gaps, not zeros): 2025-11-07" in html
    # 8 landed days of 3.005: the exact sum is kept beside the rounded text.
    assert 'data-exact="24.040">24.04 USD</td>' in html


def test_names_from_the_directory_are_escaped():
    html = render_html(spend(Directory({"proj_a": "<img src=x onerror=alert(1)>"})), CHARTS, window=9, source="file:///out")
    assert "<img src=x" not in html and "&lt;img src=x onerror=alert(1)&gt;" in html


def test_the_month_end_forecast_and_the_change_against_the_day_before():
    """8 of the month's 9 days landed at 3.005 a day: 24.04 month to date → 24.04 / 8 x 30 = 90.15."""
    html = render_html(spend(Directory()), CHARTS, window=9, source="file:///out")
    assert re.search(r'id="forecast">90.15 USD<', html), html[:3000]
    assert '<div class="label" id="day-change">+0.0 % vs 2025-11-08</div>' in html
    s = spend(Directory())
    s.daily[DAY] = {"proj_a": Decimal("4.5"), "proj_b": Decimal("1.51")}  # 6.01 after 3.005: +100 %
    assert "+100.0 % vs 2025-11-08" in render_html(s, CHARTS, window=9, source="file:///out")
    s.coverage[DAY - dt.timedelta(days=1)] = MISSING
    assert 'id="day-change"' not in render_html(s, CHARTS, window=9, source="file:///out")  # no day to compare with


def test_no_forecast_before_a_day_of_the_month_landed():
    s = spend(Directory())
    for d in s.days:
        s.coverage[d] = MISSING
    assert "n/a (no day of the month landed)" in render_html(s, CHARTS, window=9, source="file:///out")


def test_the_footnote_names_other_projects_only_when_the_chart_has_that_series():
    def with_projects(n: int) -> str:
        s = spend(Directory())
        for d in s.daily:
            s.daily[d] = {f"proj_{i}": Decimal(100 - i) for i in range(n)}
        return render_html(s, CHARTS, window=9, source="file:///out")

    assert '1 more project(s) are in the totals and in the chart.' in with_projects(7)  # 7 series, no "other"
    assert '2 more project(s) are in the totals and in the chart\'s "other projects".' in with_projects(8)
