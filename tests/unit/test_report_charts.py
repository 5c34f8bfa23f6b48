"""report/charts.py: the charts are the same bytes for the same data and need no font."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest
from report_support import ORG, REPORT_DAY, land_with_gap, location

from airflow_provider_openai_usage.report.spend import Directory, load_spend

DAY = REPORT_DAY


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 days of costs and completions as the pull operator lands them, with one day never landed (GAP)."""
    return land_with_gap(tmp_path_factory)


def test_report_bytes_do_not_depend_on_the_run(landed: Path, tmp_path: Path) -> None:
    from airflow_provider_openai_usage.report import charts

    spend = load_spend(location(landed), DAY, 30, Directory({"proj_alpha": "Alpha"}, {"proj_alpha": Decimal(40)}), organization_id=ORG)
    first = charts.render(charts.month_chart, spend, name="month", formats=("svg", "png"))
    second = charts.render(charts.month_chart, spend, name="month", formats=("svg", "png"))
    assert first == second
    assert "<text" not in first["svg"], "glyphs are paths: the SVG needs no font on the reader's machine"


def test_names_are_literal_text_maths_markup_and_a_leading_underscore_included(landed: Path) -> None:
    """A project named like matplotlib mathtext must not crash the report, and one starting with '_'
    (matplotlib's "leave out of the legend" marker) must still be in the legend (#26 item 11)."""
    from airflow_provider_openai_usage.report import charts

    probe = load_spend(location(landed), DAY, 30, Directory(), organization_id=ORG)
    top, second = probe.projects[:2]
    names = {top: "_top spender", second: r"Cost $\frac{$ center"}
    spend = load_spend(location(landed), DAY, 30, Directory(names, {second: Decimal(1)}), organization_id=ORG)
    for build in (lambda s: charts.daily_chart(s, 14), charts.month_chart, charts.models_chart):
        charts.render(build, spend, name="hostile", formats=("svg", "png"))
    import matplotlib

    with matplotlib.rc_context(charts._rc()):
        fig = charts.daily_chart(spend, 14)
        fig.savefig(__import__("io").BytesIO(), format="svg")
    legend = [t.get_text() for t in fig.axes[0].get_legend().get_texts()]
    assert "_top spender" in legend and r"Cost $\frac{$ center" in legend
    assert all(not t.get_parse_math() for t in fig.axes[0].get_legend().get_texts())


def test_on_day_one_the_bars_are_visible_and_far_limits_are_named_not_drawn(landed: Path) -> None:
    """Day 1 of a month: a few USD against limits of thousands (#30). The axis follows the spend,
    a limit beyond it is written at the edge, the legend sits outside the plot."""
    import warnings

    import matplotlib

    from airflow_provider_openai_usage.report import charts

    day_one = DAY.replace(day=1)
    probe = load_spend(location(landed), day_one, 30, Directory(), organization_id=ORG)
    big, small = probe.projects[0], probe.projects[1]
    spend = load_spend(location(landed), day_one, 30, Directory({}, {big: Decimal(7000), small: Decimal(1000)}), organization_id=ORG)
    with matplotlib.rc_context(charts._rc()), warnings.catch_warnings():
        warnings.simplefilter("error")  # a glyph the font lacks would warn
        fig = charts.month_chart(spend)
        fig.savefig(__import__("io").BytesIO(), format="svg")
    ax = fig.axes[0]
    spent = max(float(v) for _, v, _ in spend.month_rows())
    assert 0 < spent and ax.get_xlim()[1] <= spent * 1.5, (spent, ax.get_xlim())
    texts = [t.get_text() for t in ax.texts]
    assert "limit 7,000.00 USD \u2192" in texts and "limit 1,000.00 USD \u2192" in texts
    assert all(line.get_xdata()[0] <= ax.get_xlim()[1] for line in ax.lines)  # no marker drawn off the axis
    legend = ax.get_legend()
    fig.canvas.draw()
    assert legend.get_window_extent().x0 >= ax.get_window_extent().x1 - 1  # outside, right of the plot
