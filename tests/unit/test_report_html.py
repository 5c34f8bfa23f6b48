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
