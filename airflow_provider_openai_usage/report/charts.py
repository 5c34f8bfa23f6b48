"""The report's charts, drawn by matplotlib (object API, Agg canvas: no GUI, no global pyplot state).

Each chart is rendered twice from the same Figure when needed: SVG text to inline in the HTML page
(no file, no fetch) and PNG bytes for chat and e-mail. Glyphs are drawn as paths, so the SVG needs
no font on the reader's machine; dates and hash salts are fixed, so the same data gives the same
bytes. Amounts become floats only here, for plotting; every printed number comes from the exact
Decimals.
"""

from __future__ import annotations

import io
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.report.landed import MISSING, PARTIAL
from airflow_provider_openai_usage.report.spend import ZERO, Spend, money

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Figure sizes in inches at DPI; the browser test checks the page shows them at this size.
DPI = 100
DAILY_SIZE = (10.0, 4.2)
MONTH_SIZE = (10.0, 3.4)
MODELS_SIZE = (10.0, 3.8)
MAX_SERIES = 7
OTHER = "other projects"


def has_other_series(spend: Spend) -> bool:
    """Whether the daily chart sums some projects as ``other projects`` (it does for two or more)."""
    return len(spend.projects) - (MAX_SERIES - 1) > 1


def _rc() -> Any:
    # Names are data, never markup: without ``text.parse_math`` off, a project named "Cost $x$"
    # is typeset as maths (or crashes the report on "$\\frac{$").
    return {
        "text.parse_math": False,
        "svg.fonttype": "path",
        "font.size": 9,
        "axes.spines.top": False,
        "axes.spines.right": False,
        "axes.titlesize": 11,
        "axes.titleweight": "bold",
    }


def _figure(size: tuple[float, float]) -> Figure:
    from matplotlib.figure import Figure

    return Figure(figsize=size, dpi=DPI, layout="constrained")


def render(build: Any, spend: Spend, *, name: str, formats: tuple[str, ...] = ("svg",)) -> dict[str, Any]:
    """``{"svg": str, "png": bytes}`` of ``build(spend)``, drawn under fixed matplotlib settings."""
    import matplotlib

    out: dict[str, Any] = {}
    with matplotlib.rc_context({**_rc(), "svg.hashsalt": f"openai-usage-{name}"}):
        fig = build(spend)
        for fmt in formats:
            buf = io.BytesIO()
            metadata = {"Date": None} if fmt == "svg" else {"Software": None}
            fig.savefig(buf, format=fmt, metadata=metadata)
            data = buf.getvalue()
            out[fmt] = data[data.index(b"<svg"):].decode() if fmt == "svg" else data
    return out


def _series(spend: Spend, days: list[Any]) -> list[tuple[str, list[float]]]:
    """One series per top project (by name), the rest summed as ``other projects``."""
    projects = spend.projects
    shown, rest = projects[: MAX_SERIES - 1], projects[MAX_SERIES - 1 :]
    if not has_other_series(spend):
        shown, rest = projects, []
    series = []
    for project in shown:
        series.append((spend.directory.short(project), [float(spend.daily.get(d, {}).get(project, ZERO)) for d in days]))
    if rest:
        series.append((OTHER, [float(sum((spend.daily.get(d, {}).get(p, ZERO) for p in rest), ZERO)) for d in days]))
    return series


def daily_chart(spend: Spend, window: int, *, by: str = "project") -> Figure:
    """Daily spend for the last ``window`` days, stacked by project (or, for
    ``OrganizationsSpend.by_organization()``, by organization); gaps and partial days marked."""
    import numpy as np

    days = spend.window(window)
    fig = _figure(DAILY_SIZE)
    ax = fig.add_subplot()
    x = np.arange(len(days))
    bottom = np.zeros(len(days))
    landed = np.array([spend.coverage.get(d, MISSING) != MISSING for d in days])
    partial = [spend.coverage.get(d) == PARTIAL for d in days]
    colors = _colors()
    handles, labels = [], []
    for i, (label, values) in enumerate(_series(spend, days)):
        heights = np.where(landed, values, 0.0)
        bars = ax.bar(x, heights, bottom=bottom, width=0.8, label=label, color=colors[i % len(colors)])
        handles.append(bars)
        labels.append(label)
        for bar, is_partial in zip(bars, partial, strict=True):
            if is_partial:
                bar.set_hatch("///")
                bar.set_edgecolor("white")
        bottom += heights
    top = max(float(bottom.max()) if len(bottom) else 0.0, 1e-9)
    for i in range(len(days)):
        if not landed[i]:
            ax.axvspan(i - 0.4, i + 0.4, color="#d9d9d9", alpha=0.6, hatch="xx", linewidth=0)
            ax.text(i, top * 0.02, "no data", rotation=90, ha="center", va="bottom", fontsize=7, color="#555555")
    ax.set_xticks(x, [d.strftime("%m-%d") for d in days], rotation=90, fontsize=7)
    ax.set_xlim(-0.6, len(days) - 0.4)
    ax.set_ylabel(spend.currency.upper())
    ax.set_title(f"Daily spend by {by}, last {len(days)} days to {spend.report_day.isoformat()} (UTC)")
    # Handles and labels given, not collected: matplotlib leaves out labels starting with "_".
    ax.legend(handles, labels, loc="upper left", fontsize=7, ncols=min(4, MAX_SERIES), frameon=False)
    ax.grid(axis="y", alpha=0.3)
    ax.set_axisbelow(True)
    if any(partial):
        ax.annotate("hatched: day only partly landed", xy=(1, 1.01), xycoords="axes fraction", ha="right", fontsize=7)
    return fig


def month_chart(spend: Spend) -> Figure:
    """Month-to-date spend per project against its OpenAI spend limit (where the directory has one).

    The axis is scaled to what is spent, not to the limits: on day 1 of a month 0-18 USD against
    1,000-7,000 USD limits would be bars no reader can see. A limit beyond the axis is written at
    its right edge ("limit 7,000.00 USD →") instead of being drawn there; every bar carries its amount;
    the legend sits outside the plot, so no marker runs through it.
    """
    rows = spend.month_rows()[:12]
    fig = _figure(MONTH_SIZE)
    ax = fig.add_subplot()
    labels = [spend.directory.short(p) for p, _, _ in rows][::-1]
    values = [float(v) for _, v, _ in rows][::-1]
    exact = [v for _, v, _ in rows][::-1]
    limits = [float(lim) if lim is not None else None for _, _, lim in rows][::-1]
    exact_limits = [lim for _, _, lim in rows][::-1]
    colors = ["#d62728" if lim is not None and v >= lim else "#1f77b4" for v, lim in zip(values, limits, strict=True)]
    ax.barh(range(len(rows)), values, color=colors, height=0.6, label="month to date")
    spent = max(values, default=0.0)
    # Limits within reach of the spend (up to 1.5x the biggest bar) are drawn; the rest are named.
    right = max([spent * 1.35] + [lim * 1.05 for lim in limits if lim is not None and lim <= max(spent, 1e-9) * 1.5]) or 1.0
    labelled = False
    for i, (value, lim) in enumerate(zip(values, limits, strict=True)):
        ax.text(value + right * 0.01, i, money(exact[i], spend.currency), va="center", fontsize=7)
        if lim is None:
            continue
        if lim <= right:
            ax.plot([lim, lim], [i - 0.4, i + 0.4], color="black", linewidth=2, label=None if labelled else "spend limit")
            labelled = True
        else:
            beyond = f"limit {money(exact_limits[i], spend.currency)} \u2192"
            ax.text(right, i, beyond, ha="right", va="center", fontsize=7, color="#444444")
    ax.set_xlim(0, right)
    ax.set_yticks(range(len(rows)), labels)
    ax.set_xlabel(spend.currency.upper())
    ax.set_title(f"Month to date ({spend.report_day.strftime('%Y-%m')}) vs spend limit")
    ax.grid(axis="x", alpha=0.3)
    ax.set_axisbelow(True)
    if rows:
        ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=7, frameon=False)
    else:
        ax.text(0.5, 0.5, "no spend this month", transform=ax.transAxes, ha="center")
    return fig


def models_chart(spend: Spend) -> Figure:
    """Cost per model beside the tokens it used (input and output), top models by cost."""
    import numpy as np

    models = spend.models
    fig = _figure(MODELS_SIZE)
    cost_ax, token_ax = fig.subplots(1, 2, sharey=True)
    y = np.arange(len(models))[::-1]
    names = [m.model for m in models]
    cost_ax.barh(y, [float(m.cost) for m in models], color="#10a37f", height=0.6)
    cost_ax.set_yticks(y, names, fontsize=8)
    cost_ax.set_xlabel(spend.currency.upper())
    cost_ax.set_title("Cost per model")
    inputs = [m.input_tokens or 0 for m in models]
    outputs = [m.output_tokens or 0 for m in models]
    token_ax.barh(y, inputs, color="#6baed6", height=0.6, label="input tokens")
    token_ax.barh(y, outputs, left=inputs, color="#fd8d3c", height=0.6, label="output tokens")
    token_ax.set_title("Tokens per model")
    token_ax.set_xlabel("tokens")
    _finish_bars([cost_ax, token_ax], token_ax, "no model spend" if not models else None, note_ax=cost_ax)
    return fig


def _finish_bars(axes: list[Any], legend_ax: Any, empty_note: str | None, note_ax: Any = None) -> None:
    """Vertical grid lines behind the bars of ``axes``; a legend, or ``empty_note`` when there is nothing."""
    for ax in axes:
        ax.grid(axis="x", alpha=0.3)
        ax.set_axisbelow(True)
    if empty_note is None:
        legend_ax.legend(loc="lower right", fontsize=7, frameon=False)
    else:
        note_ax = legend_ax if note_ax is None else note_ax
        note_ax.text(0.5, 0.5, empty_note, transform=note_ax.transAxes, ha="center")


def _colors() -> list[str]:
    import matplotlib

    cmap: Any = matplotlib.colormaps["tab10"]
    return [matplotlib.colors.to_hex(c) for c in cmap.colors]
