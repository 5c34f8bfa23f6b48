"""report/charts.py: the charts are the same bytes for the same data and need no font."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from report_support import REPORT_DAY, land_with_gap, location

from airflow_provider_openai_usage.report.spend import Directory, load_spend

DAY = REPORT_DAY


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 days of costs and completions as the pull operator lands them, with one day never landed (GAP)."""
    return land_with_gap(tmp_path_factory)


def test_report_bytes_do_not_depend_on_the_run(landed: Path, tmp_path: Path) -> None:
    from airflow_provider_openai_usage.report import charts

    spend = load_spend(location(landed), DAY, 30, Directory({"proj_alpha": "Alpha"}, {"proj_alpha": Decimal(40)}))
    first = charts.render(charts.month_chart, spend, name="month", formats=("svg", "png"))
    second = charts.render(charts.month_chart, spend, name="month", formats=("svg", "png"))
    assert first == second
    assert "<text" not in first["svg"], "glyphs are paths: the SVG needs no font on the reader's machine"
