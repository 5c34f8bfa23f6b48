"""The Spend view's FastAPI app: pages and JSON over ``status.py`` and ``report/latest.py``.

Security, in the order a request meets it:

- **Airflow's auth on every route.** FastAPI plugin endpoints are not protected by default; the
  app's router depends on the core API's own ``requires_access_asset("GET")`` (the session cookie
  of the UI or a Bearer token; 401 without one, 403 for a user who may not read assets).
- **No path from the request.** A lake is chosen by its index among the configured output paths
  (``OPENAI_USAGE_OUTPUT_PATH``, the daily DAG's knob, then ``[openai_usage] ui_output_paths``),
  and a day must be ``YYYY-MM-DD``: a user cannot make the api-server read any other file.
- **Names are data.** Every dataset, day, DAG, run and task id is HTML-escaped (and URL-quoted in
  links); the report page is the operator's own escaped HTML, served as published.
- **No secret.** Nothing here reads a connection's password: only output paths (a URL with
  credentials in it is shown without them) and landed files.
"""

from __future__ import annotations

import datetime as dt
import html
import os
import re
from typing import Any
from urllib.parse import quote, urlsplit, urlunsplit

from fastapi import Depends, FastAPI, HTTPException, Query
from fastapi.responses import HTMLResponse

DAY = re.compile(r"^\d{4}-\d{2}-\d{2}$")
#: The report page comes from our own operator; everything else this app serves has no script.
PAGE_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-src 'self'; form-action 'self'"
REPORT_CSP = "default-src 'none'; style-src 'unsafe-inline'; img-src data:; frame-ancestors 'self'"


def output_paths() -> list[str]:
    """The lakes the view may show: the daily DAG's output path, then ``[openai_usage] ui_output_paths``."""
    from airflow.configuration import conf

    paths = [os.environ.get("OPENAI_USAGE_OUTPUT_PATH", "").strip()]
    paths += [p.strip() for p in conf.get("openai_usage", "ui_output_paths", fallback="").split(",")]
    seen: list[str] = []
    for path in paths:
        if path and path not in seen:
            seen.append(path)
    return seen


def shown_path(path: str) -> str:
    """An output path as the page shows it: without any user:password@ it might carry."""
    parts = urlsplit(path)
    if parts.username is None and parts.password is None:
        return path
    return urlunsplit(parts._replace(netloc=parts.hostname or ""))


def _lake(index: int) -> str:
    paths = output_paths()
    if not paths:
        raise HTTPException(
            404, "no output path is configured: set OPENAI_USAGE_OUTPUT_PATH (as for the daily DAG) or "
            "[openai_usage] ui_output_paths on the api-server",
        )
    if not 0 <= index < len(paths):
        raise HTTPException(400, f"lake={index} is not one of the {len(paths)} configured output paths (0 to {len(paths) - 1})")
    return paths[index]


def _location(path: str) -> Any:
    from airflow_provider_openai_usage.storage import output_location

    return output_location(path, os.environ.get("OPENAI_USAGE_OUTPUT_CONN_ID") or None)


def _check_day(day: str | None, name: str = "date") -> str | None:
    if day is not None and not DAY.match(day):
        raise HTTPException(400, f"{name}={day!r} is not a UTC day; give it as YYYY-MM-DD")
    return day


def lake_statuses(path: str) -> list[Any]:
    from airflow_provider_openai_usage.operators.usage import asset_base
    from airflow_provider_openai_usage.status import find_datasets, lake_status, landing_events

    location = _location(path)
    datasets = find_datasets(location)
    base = asset_base(path)
    events = landing_events(base, datasets) if base else None
    return lake_status(location, datasets=datasets, events=events)


def _e(value: Any) -> str:
    return html.escape(str(value), quote=True)


def _days(days: list[str] | None) -> str:
    if days is None:
        return "<span class=muted>unknown</span>"
    if not days:
        return "-"
    shown = ", ".join(_e(d) for d in days[:5])
    return f"<b>{len(days)}</b>: {shown}" + (f" (+{len(days) - 5})" if len(days) > 5 else "")


def _run_link(status: Any) -> str:
    run = status.last_run
    if run is None:
        return "-" if status.restated is not None else "<span class=muted>unknown</span>"
    href = "/dags/{}/runs/{}/tasks/{}".format(*(quote(str(v), safe="") for v in (run.dag_id, run.run_id, run.task_id)))
    if run.map_index is not None and run.map_index >= 0:
        href += f"/mapped/{int(run.map_index)}"
    label = f"{run.dag_id} / {run.run_id} / {run.task_id}"
    return f'<a href="{_e(href)}" target="_top">{_e(label)}</a> <span class=muted>{_e(f"{run.timestamp:%Y-%m-%d %H:%M} UTC")}</span>'


def status_table(statuses: list[Any]) -> str:
    head = "".join(
        f"<th>{h}</th>"
        for h in ("dataset", "organization", "landed", "partial", "missing", "restated", "last landed day", "last landed run")
    )
    rows = []
    for s in statuses:
        cls = ' class="missing"' if s.missing else ""
        rows.append(
            f"<tr{cls}><td>{_e(s.dataset)}</td><td>{_e(s.organization_id or '(not moved)')}</td>"
            f"<td>{len(s.landed)}</td><td>{_days(s.partial)}</td><td>{_days(s.missing)}</td>"
            f"<td>{_days(s.restated)}</td><td>{_e(s.last_landed_day or '-')}</td><td>{_run_link(s)}</td></tr>"
        )
    if not rows:
        rows.append('<tr><td colspan="8">nothing landed here yet</td></tr>')
    return f'<table id="landing-status"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


STYLE = """
body { font: 14px/1.4 system-ui, sans-serif; margin: 16px; color: #1f2328; }
h1 { font-size: 20px; margin: 0 0 12px; } h2 { font-size: 16px; margin: 20px 0 8px; }
form { display: flex; gap: 12px; align-items: end; flex-wrap: wrap; } label { display: grid; gap: 2px; }
table { border-collapse: collapse; } th, td { border-bottom: 1px solid #d0d7de; padding: 4px 8px; text-align: left; }
tr.missing td { background: #fff1f0; } .muted { color: #656d76; }
iframe { width: 100%; height: 1400px; border: 1px solid #d0d7de; }
"""


def _amount(value: Any) -> str:
    """An exact amount from a marker, rounded to cents for display (the marker keeps it exact)."""
    from decimal import Decimal, InvalidOperation

    try:
        return f"{Decimal(str(value)):,.2f}"
    except (InvalidOperation, ValueError):
        return str(value)


def _cell(alert: dict[str, Any], key: str) -> str:
    value = alert.get(key)
    if value is None:
        return "-"
    return _amount(value) if key in ("amount", "threshold") else str(value)


def alerts_table(alerts: list[dict[str, Any]]) -> str:
    """The alerts recorded for the chosen day (``report/fired.py``), every field escaped."""
    if not alerts:
        return "<p id=no-alerts class=muted>No spend alert fired for this day.</p>"
    fields = ("rule", "organization", "project", "period", "amount", "threshold", "message")
    head = "".join(f"<th>{h}</th>" for h in (*fields, "sent to"))
    rows = "".join(
        "<tr>" + "".join(f"<td>{_e(_cell(a, k))}</td>" for k in fields)
        + f"<td>{len(a['delivered'])} notifier(s)</td></tr>"
        for a in alerts
    )
    return f'<table id="fired-alerts"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def spend_page(index: int, day: str | None) -> str:
    from airflow_provider_openai_usage.report.latest import report_days

    paths = output_paths()
    path = _lake(index)
    days = report_days(_location(path))
    chosen = day or (days[0] if days else None)
    lakes = "".join(
        f'<option value="{i}"{" selected" if i == index else ""}>{_e(shown_path(p))}</option>' for i, p in enumerate(paths)
    )
    dates = "".join(f'<option value="{_e(d)}"{" selected" if d == chosen else ""}>{_e(d)}</option>' for d in days)
    if chosen is None:
        report = "<p id=no-report>No spend report here yet: the daily DAG's <code>spend_report</code> task writes one.</p>"
    elif chosen not in days:
        report = f"<p id=no-report>No spend report for {_e(chosen)}; the latest is {_e(days[0]) if days else 'none'}.</p>"
    else:
        src = f"report?lake={index}&date={quote(chosen)}"
        report = f'<iframe id="spend-report" title="Spend report {_e(chosen)}" src="{_e(src)}"></iframe>'
    from airflow_provider_openai_usage.report.fired import fired_alerts

    alerts = alerts_table(fired_alerts(_location(path), dt.date.fromisoformat(chosen))) if chosen else ""
    statuses = lake_statuses(path)
    checked = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    return (
        "<!doctype html><html lang=en><head><meta charset=utf-8><title>Spend</title>"
        f"<style>{STYLE}</style></head><body>"
        "<h1>OpenAI spend</h1>"
        f'<form method="get" action="./"><label>Output path<select name="lake">{lakes}</select></label>'
        f'<label>Report day<select name="date">{dates}</select></label><button type="submit">Show</button></form>'
        f"<h2>Landing status</h2><p class=muted>Checked {checked}; days up to yesterday (UTC). "
        "<code>airflow openai-usage status</code> prints the same table.</p>"
        f"{status_table(statuses)}"
        f"<h2>Spend alerts fired {_e(chosen or '')}</h2>{alerts}"
        f"<h2>Spend report {_e(chosen or '')}</h2>{report}"
        "</body></html>"
    )


def build_app() -> FastAPI:
    """The app Airflow mounts under ``/openai-usage`` (built on the api-server's first request to it)."""
    from airflow.api_fastapi.core_api.security import requires_access_asset

    app = FastAPI(
        title="OpenAI usage: spend", dependencies=[Depends(requires_access_asset("GET"))], docs_url=None, redoc_url=None,
        openapi_url=None,
    )

    @app.get("/", response_class=HTMLResponse)
    def spend(lake: int = Query(0, description="index of the configured output path"), date: str | None = None) -> HTMLResponse:
        page = spend_page(lake, _check_day(date))
        return HTMLResponse(page, headers={"Content-Security-Policy": PAGE_CSP, "Cache-Control": "no-store"})

    @app.get("/report", response_class=HTMLResponse)
    def report(lake: int = 0, date: str = Query(..., description="YYYY-MM-DD")) -> HTMLResponse:
        from airflow_provider_openai_usage.report.latest import read_report

        day = _check_day(date)
        assert day is not None
        data = read_report(_location(_lake(lake)), day)
        if data is None:
            raise HTTPException(404, f"no spend report for {day} under this output path")
        return HTMLResponse(data, headers={"Content-Security-Policy": REPORT_CSP, "Cache-Control": "no-store"})

    @app.get("/api/status")
    def status(lake: int = 0) -> dict[str, Any]:
        path = _lake(lake)
        return {"output_path": shown_path(path), "datasets": [s.as_dict() for s in lake_statuses(path)]}

    return app
