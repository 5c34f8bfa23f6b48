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


def test_names_are_literal_text_maths_markup_and_a_leading_underscore_included(landed: Path) -> None:
    """A project named like matplotlib mathtext must not crash the report, and one starting with '_'
    (matplotlib's "leave out of the legend" marker) must still be in the legend (#26 item 11)."""
    from airflow_provider_openai_usage.report import charts

    probe = load_spend(location(landed), DAY, 30, Directory())
    top, second = probe.projects[:2]
    names = {top: "_top spender", second: r"Cost $\frac{$ center"}
    spend = load_spend(location(landed), DAY, 30, Directory(names, {second: Decimal(1)}))
    for build in (lambda s: charts.daily_chart(s, 14), charts.month_chart, charts.models_chart):
        charts.render(build, spend, name="hostile", formats=("svg", "png"))
    import matplotlib

    with matplotlib.rc_context(charts._rc()):
        fig = charts.daily_chart(spend, 14)
        fig.savefig(__import__("io").BytesIO(), format="svg")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "_top spender" in legend and r"Cost $\frac{$ center" in legend
    assert all(not t.get_parse_math() for t in fig.axes[0].get_legend().get_texts())
