"""One self-contained HTML page: inline CSS, inline SVG charts, no script, no external reference.

One page covers every organization of the lake: the all-organization figures first (cards and a
"Spend by organization" table with each organization's totals and their exact sum), then one
section per organization with its projects, named from its own directory. With one organization
the page reads as it did before the organization level (the same element ids); with several, each
section's ids end in ``-<organization id>`` (ids are checked ``org-...`` strings: safe in an id).

A Content-Security-Policy of ``default-src 'none'`` makes the promise enforceable: even a stray
reference could not make the browser fetch anything. Every money cell carries its exact value in
``data-exact`` (the displayed text is rounded to cents), so tests and scrapers can check totals
without re-parsing formatted numbers.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from airflow_provider_openai_usage.report.landed import MISSING
from airflow_provider_openai_usage.report.spend import UNKNOWN_OWNER, ZERO, OrganizationsSpend, Spend, money

TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="default-src 'none'; style-src 'unsafe-inline'; img-src data:">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>OpenAI spend {{ day }}</title>
<style>
body { font-family: -apple-system, "Segoe UI", Roboto, "DejaVu Sans", sans-serif; margin: 24px auto; max-width: 1060px; color: #1a1a1a; }
h1 { font-size: 22px; margin-bottom: 4px; } h2 { font-size: 17px; margin-top: 32px; border-bottom: 1px solid #ddd; padding-bottom: 4px; }
.meta { color: #555; font-size: 13px; }
.cards { display: flex; gap: 16px; margin: 16px 0; flex-wrap: wrap; }
.card { border: 1px solid #ddd; border-radius: 6px; padding: 10px 16px; min-width: 180px; }
.card .label { color: #555; font-size: 12px; } .card .value { font-size: 20px; font-weight: 600; }
figure { margin: 8px 0; } figure svg { max-width: 100%; height: auto; }
table { border-collapse: collapse; font-size: 13px; margin: 8px 0; }
th, td { padding: 3px 10px; border-bottom: 1px solid #eee; text-align: left; }
td.num, th.num { text-align: right; font-variant-numeric: tabular-nums; }
tr.total td { font-weight: 600; border-top: 2px solid #999; }
.missing { color: #a33; } .partial { color: #a60; }
.note { color: #555; font-size: 12px; }
.up { color: #b00; } .down { color: #070; }
</style>
</head>
<body>
<h1>OpenAI spend report &middot; {{ day }}</h1>
<p class="meta">UTC days. Read from <code>{{ source }}</code>. Amounts are exact sums, rounded to cents only for display.</p>
{% if missing %}<p class="missing">Not landed (shown as gaps, not zeros): {{ missing | join(", ") }}</p>{% endif %}
{% if partial %}<p class="partial">Only partly landed: {{ partial | join(", ") }}</p>{% endif %}
{% if other_currencies %}<p class="note">Left out (other currencies): {{ other_currencies | join(", ") }}</p>{% endif %}

<div class="cards">
  <div class="card"><div class="label">{{ day }}</div><div class="value" id="day-total">{{ day_total }}</div>{% if day_change %}<div class="label" id="day-change">{{ day_change }} vs {{ before }}</div>{% endif %}</div>
  <div class="card"><div class="label">Month to date ({{ month }})</div><div class="value" id="mtd-total">{{ mtd_total }}</div></div>
  <div class="card"><div class="label">Month-end forecast (run rate)</div><div class="value" id="forecast">{{ forecast }}</div></div>
  <div class="card"><div class="label">Last {{ window_days }} days</div><div class="value" id="window-total">{{ window_total }}</div></div>
</div>
{% if several %}<p class="note">All {{ org_rows | length }} organizations together; each has its own section below.</p>{% endif %}

<h2>Spend by organization</h2>
<table id="org-table">
<thead><tr><th>organization</th><th class="num">{{ day }}</th><th class="num">month to date</th><th class="num">month-end forecast</th><th class="num">last {{ window_days }} days</th><th>not landed</th></tr></thead>
<tbody>
{% for o in org_rows %}<tr data-organization="{{ o.id }}"><td>{{ o.label }}</td><td class="num"{% if o.day.exact is not none %} data-exact="{{ o.day.exact }}"{% endif %}>{{ o.day.text }}</td><td class="num" data-exact="{{ o.mtd.exact }}">{{ o.mtd.text }}</td><td class="num">{{ o.forecast }}</td><td class="num" data-exact="{{ o.window.exact }}">{{ o.window.text }}</td><td>{{ o.missing }}</td></tr>
{% endfor %}<tr class="total"><td>all organizations</td><td class="num"{% if day_exact is not none %} data-exact="{{ day_exact }}"{% endif %}>{{ day_total }}</td><td class="num" data-exact="{{ mtd_exact }}">{{ mtd_total }}</td><td class="num">{{ forecast }}</td><td class="num" data-exact="{{ window_exact }}">{{ window_total }}</td><td></td></tr>
</tbody>
</table>
{% if several %}
<h2>Daily spend by organization</h2>
<figure id="chart-daily">{{ org_chart | safe }}</figure>
{% endif %}
{% for o in orgs %}
<section class="organization" id="organization-{{ o.id }}" data-organization="{{ o.id }}">
{% if several %}<h2 class="organization-heading">Organization {{ o.label }}</h2>
{% if o.missing %}<p class="missing">Not landed for this organization: {{ o.missing | join(", ") }}</p>{% endif %}{% endif %}
<h2>Daily spend by project{% if several %} &middot; {{ o.short }}{% endif %}</h2>
<figure id="chart-daily{{ o.suffix }}">{{ o.charts.daily | safe }}</figure>
<table id="daily-table{{ o.suffix }}">
<thead><tr><th>day</th><th>landed</th>{% for p in o.top_projects %}<th class="num">{{ p.label }}</th>{% endfor %}<th class="num">total</th></tr></thead>
<tbody>
{% for row in o.daily_rows %}<tr class="{{ row.status }}"><td>{{ row.day }}</td><td>{{ row.status }}</td>{% for cell in row.cells %}<td class="num"{% if cell.exact is not none %} data-exact="{{ cell.exact }}"{% endif %}>{{ cell.text }}</td>{% endfor %}<td class="num"{% if row.total.exact is not none %} data-exact="{{ row.total.exact }}"{% endif %}>{{ row.total.text }}</td></tr>
{% endfor %}<tr class="total"><td>total</td><td>{{ o.landed_count }}/{{ window_days }} days</td>{% for p in o.top_projects %}<td class="num" data-exact="{{ p.exact }}">{{ p.text }}</td>{% endfor %}<td class="num" data-exact="{{ o.window_exact }}">{{ o.window_total }}</td></tr>
</tbody>
</table>
{% if o.more_projects %}<p class="note">{{ o.more_projects }} more project(s) are in the totals{% if o.chart_other %} and in the chart's "other projects"{% else %} and in the chart{% endif %}.</p>{% endif %}

<h2>Month to date vs spend limit{% if several %} &middot; {{ o.short }}{% endif %}</h2>
<figure id="chart-month{{ o.suffix }}">{{ o.charts.month | safe }}</figure>
<table id="month-table{{ o.suffix }}">
<thead><tr><th>project</th><th class="num">month to date</th><th class="num">spend limit</th><th class="num">used</th></tr></thead>
<tbody>
{% for row in o.month_rows %}<tr><td>{{ row.label }}</td><td class="num" data-exact="{{ row.exact }}">{{ row.mtd }}</td><td class="num">{{ row.limit }}</td><td class="num">{{ row.used }}</td></tr>
{% endfor %}<tr class="total"><td>total</td><td class="num" data-exact="{{ o.mtd_exact }}">{{ o.mtd_total }}</td><td></td><td></td></tr>
</tbody>
</table>
{% if not o.has_limits %}<p class="note">No spend limits known: the organization directory has not been landed under this output location.</p>{% endif %}

<h2>Biggest movers, {{ before }} &rarr; {{ day }}</h2>
{% if o.movers %}<table id="movers-table{{ o.suffix }}">
<thead><tr><th>project</th><th class="num">{{ before }}</th><th class="num">{{ day }}</th><th class="num">change</th></tr></thead>
<tbody>
{% for m in o.movers %}<tr><td>{{ m.label }}</td><td class="num">{{ m.before }}</td><td class="num">{{ m.after }}</td><td class="num {{ m.direction }}">{{ m.change }}</td></tr>
{% endfor %}</tbody></table>
{% else %}<p class="note">No comparison: one of the two days is not landed, or nothing changed.</p>{% endif %}

<h2>Top line items, last {{ window_days }} days</h2>
<table id="items-table{{ o.suffix }}">
<thead><tr><th>line item</th><th class="num">cost</th></tr></thead>
<tbody>
{% for item in o.line_items %}<tr><td>{{ item.name }}</td><td class="num" data-exact="{{ item.exact }}">{{ item.text }}</td></tr>
{% endfor %}<tr class="total"><td>total</td><td class="num" data-exact="{{ o.window_exact }}">{{ o.window_total }}</td></tr>
</tbody>
</table>

<h2>Drill-down: API keys and their owners, last {{ window_days }} days</h2>
<table id="keys-table{{ o.suffix }}">
<thead><tr><th>API key</th><th>owner</th><th class="num">cost</th></tr></thead>
<tbody>
{% for k in o.api_keys %}<tr><td>{{ k.name }}</td><td>{{ k.owner }}</td><td class="num" data-exact="{{ k.exact }}">{{ k.text }}</td></tr>
{% endfor %}</tbody>
</table>
<table id="owners-table{{ o.suffix }}">
<thead><tr><th>owner (user or service account)</th><th class="num">cost</th></tr></thead>
<tbody>
{% for w in o.owners %}<tr><td>{{ w.name }}</td><td class="num" data-exact="{{ w.exact }}">{{ w.text }}</td></tr>
{% endfor %}</tbody>
</table>
<p class="note">By the costs' <code>api_key_id</code>, named and owned as in the directory snapshot; "no key recorded": days pulled without the key (before OpenAI's API-key floor, 2025-12-01).</p>

<h2>Top models: cost and tokens, last {{ window_days }} days</h2>
<figure id="chart-models{{ o.suffix }}">{{ o.charts.models | safe }}</figure>
<table id="models-table{{ o.suffix }}">
<thead><tr><th>model</th><th class="num">cost</th><th class="num">input tokens</th><th class="num">output tokens</th><th class="num">requests</th><th class="num">cost per 1M tokens</th></tr></thead>
<tbody>
{% for m in o.models %}<tr><td>{{ m.model }}</td><td class="num" data-exact="{{ m.exact }}">{{ m.cost }}</td><td class="num">{{ m.input }}</td><td class="num">{{ m.output }}</td><td class="num">{{ m.requests }}</td><td class="num">{{ m.per_million }}</td></tr>
{% endfor %}</tbody>
</table>
<p class="note">Model cost comes from the costs line items named "&lt;model&gt;, input|output"; tokens from the completions usage.</p>
</section>
{% endfor %}
</body>
</html>
"""  # noqa: E501 - an HTML/Jinja template: wrapping its lines would change the page's text

TOP_LINE_ITEMS = 12


def _cell(value: Any, currency: str) -> dict[str, Any]:
    return {"text": money(value, currency), "exact": None if value is None else format(value, "f")}


def _int(value: int | None) -> str:
    return "n/a" if value is None else f"{value:,}"


def _organization_context(spend: Spend, window: int, charts: Mapping[str, str]) -> dict[str, Any]:
    """What one organization's section shows: its projects' tables, from its own Spend and directory."""
    cur = spend.currency
    days = spend.window(window)
    directory = spend.directory
    projects = spend.projects
    top = projects[:6]
    daily_rows = []
    for day in reversed(days):
        status = spend.coverage.get(day, MISSING)
        cells = [_cell(spend.project_day(p, day), cur) for p in top]
        daily_rows.append({"day": day.isoformat(), "status": status, "cells": cells, "total": _cell(spend.day_total(day), cur)})
    top_projects = []
    for p in top:
        total = sum((spend.project_day(p, d) or ZERO for d in days), ZERO)
        top_projects.append({"label": directory.short(p), **_cell(total, cur)})
    month_rows = []
    for project, mtd, limit in spend.month_rows():
        used = f"{(mtd / limit * 100):.1f} %" if limit else "n/a"
        month_rows.append(
            {"label": directory.label(project), "mtd": money(mtd, cur), "exact": format(mtd, "f"),
             "limit": money(limit, cur) if limit is not None else "none known", "used": used}
        )
    movers = [
        {"label": directory.label(p), "before": money(a, cur), "after": money(b, cur),
         "change": ("+" if d > 0 else "") + money(d, cur), "direction": "up" if d > 0 else "down"}
        for p, a, b, d in spend.movers()
    ]
    items = [{"name": name, **_cell(amount, cur)} for name, amount in spend.line_items[:TOP_LINE_ITEMS]]
    rest = spend.line_items[TOP_LINE_ITEMS:]
    if rest:
        items.append({"name": f"{len(rest)} other line items", **_cell(sum((a for _, a in rest), ZERO), cur)})
    models = []
    for m in spend.models:
        tokens = (m.input_tokens or 0) + (m.output_tokens or 0)
        models.append(
            {"model": m.model, "cost": money(m.cost, cur), "exact": format(m.cost, "f"), "input": _int(m.input_tokens),
             "output": _int(m.output_tokens), "requests": _int(m.requests),
             "per_million": money(m.cost * 1_000_000 / tokens, cur) if tokens else "n/a"}
        )
    from airflow_provider_openai_usage.report.charts import has_other_series

    keys = []
    for key, amount in spend.by_key[:TOP_LINE_ITEMS]:
        name, owner = directory.keys.get(key, (key, UNKNOWN_OWNER)) if key else ("no key recorded", "-")
        keys.append({"name": name if name == key or not key else f"{name} ({key})", "owner": owner, **_cell(amount, cur)})
    owners = [{"name": owner, **_cell(amount, cur)} for owner, amount in spend.by_owner()[:TOP_LINE_ITEMS]]
    window_total = spend.window_total(window)
    mtd_total = spend.month_to_date(None)
    return {
        "charts": charts,
        "missing": [d.isoformat() for d in spend.missing_days(days)],
        "top_projects": top_projects,
        "more_projects": max(0, len(projects) - len(top)),
        "chart_other": has_other_series(spend),
        "daily_rows": daily_rows,
        "landed_count": len(days) - len(spend.missing_days(days)),
        "window_total": money(window_total, cur),
        "window_exact": format(window_total, "f"),
        "month_rows": month_rows,
        "mtd_total": money(mtd_total, cur),
        "mtd_exact": format(mtd_total, "f"),
        "has_limits": bool(directory.limits),
        "movers": movers,
        "line_items": items,
        "api_keys": keys,
        "owners": owners,
        "models": models,
    }


def as_organizations(spend: Spend | OrganizationsSpend) -> OrganizationsSpend:
    """A lone Spend as a lake of one organization (what tests and single-organization callers pass)."""
    if isinstance(spend, OrganizationsSpend):
        return spend
    return OrganizationsSpend(spend.report_day, spend.currency, {spend.organization_id or "": spend})


def render_html(spend: Spend | OrganizationsSpend, charts: Mapping[str, Any], *, window: int, source: str) -> str:
    """The page for every organization of ``spend``.

    ``charts`` maps ``daily``/``month``/``models`` to inline SVG text (one organization), or, for
    several, ``daily`` to the chart stacked by organization and each organization id to its own
    ``daily``/``month``/``models`` mapping.
    """
    import jinja2

    lake = as_organizations(spend)
    cur = lake.currency
    days = lake.window(window)
    several = len(lake.spends) > 1
    orgs, org_rows = [], []
    for org, one in lake.spends.items():
        own = charts.get(org) if several else charts
        context = _organization_context(one, window, own if isinstance(own, Mapping) else {})
        forecast = one.month_end_forecast()
        missing = context["missing"]
        orgs.append({**context, "id": org, "label": lake.label(org), "short": lake.short(org), "suffix": f"-{org}" if several else ""})
        org_rows.append(
            {"id": org, "label": lake.label(org) or "(single-organization layout)", "day": _cell(one.day_total(lake.report_day), cur),
             "mtd": _cell(one.month_to_date(None), cur), "window": _cell(one.window_total(window), cur),
             "forecast": "n/a" if forecast is None else money(forecast, cur),
             "missing": ", ".join(missing) if missing else "-"}
        )
    window_total = lake.window_total(window)
    change = lake.day_change()
    forecast = lake.month_end_forecast()
    mtd_total = lake.month_to_date()
    day_total = lake.day_total(lake.report_day)
    coverage = lake.coverage
    env = jinja2.Environment(autoescape=True, undefined=jinja2.StrictUndefined)
    return env.from_string(TEMPLATE).render(
        day=lake.report_day.isoformat(),
        before=(lake.report_day - dt.timedelta(days=1)).isoformat(),
        month=lake.report_day.strftime("%Y-%m"),
        source=source,
        several=several,
        missing=[d.isoformat() for d in lake.missing_days(days)],
        partial=[d.isoformat() for d in days if coverage.get(d) == "partial"],
        other_currencies=[money(v, c) for c, v in sorted(lake.other_currencies.items())],
        day_total=money(day_total, cur),
        day_exact=None if day_total is None else format(day_total, "f"),
        mtd_total=money(mtd_total, cur),
        mtd_exact=format(mtd_total, "f"),
        window_days=len(days),
        window_total=money(window_total, cur),
        window_exact=format(window_total, "f"),
        day_change=None if change is None else f"{change:+.1f} %",
        forecast="n/a (no day of the month landed)" if forecast is None else money(forecast, cur),
        org_rows=org_rows,
        org_chart=charts.get("daily", "") if several else "",
        orgs=orgs,
    )
