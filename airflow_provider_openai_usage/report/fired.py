"""Which spend alerts fired for a day: read back from the markers the alert operator writes.

A marker ``<output_path>/alerts/<rule>/organization=<id>/<scope>/<period>.json`` exists once a
rule fired for that organization, scope and period (``alerts.MarkerStore``); its ``delivered`` list names the notifiers that got it.
A day's alerts are the markers of its daily period (``YYYY-MM-DD``) and of its month
(``YYYY-MM``, the month-to-date and limit rules). Read by the Spend view at request time (always
current) and by the report when it is written.
"""

from __future__ import annotations

import datetime as dt
import json
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.organizations import ORGANIZATION_LEVEL

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

ALERTS = "alerts"


def fired_alerts(location: ObjectStoragePath, day: dt.date) -> list[dict[str, Any]]:
    """The alerts recorded for ``day`` (and its month): rule, organization, project, period, amount,
    threshold, message, notifiers delivered to; sorted by rule, organization, then project.

    Markers written before the organization level (``alerts/<rule>/<scope>/``) are read too, with
    no organization, until ``move-to-organization`` moves them."""
    root = location / ALERTS
    periods = {f"{day.isoformat()}.json", f"{day.strftime('%Y-%m')}.json"}
    found = []
    try:
        rules = [r for r in root.iterdir() if r.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    for rule in rules:
        scopes: list[tuple[str | None, ObjectStoragePath]] = []
        for child in (c for c in rule.iterdir() if c.is_dir()):
            org = child.name.removeprefix(f"{ORGANIZATION_LEVEL}=") if child.name.startswith(f"{ORGANIZATION_LEVEL}=") else None
            if org is None:
                scopes.append((None, child))
            else:
                scopes += [(org, s) for s in child.iterdir() if s.is_dir()]
        for org, scope in scopes:
            for name in periods:
                path = scope / name
                try:
                    body = json.loads(path.read_bytes())
                except (FileNotFoundError, ValueError):
                    continue
                if isinstance(body, dict):
                    found.append(
                        {
                            "rule": (body.get("rule") or {}).get("name", rule.name),
                            "kind": (body.get("rule") or {}).get("kind"),
                            "organization_id": body.get("organization_id") or org,
                            "organization": body.get("organization") or body.get("organization_id") or org,
                            "project": body.get("project"),
                            "period": body.get("period"),
                            "amount": body.get("amount"),
                            "threshold": body.get("threshold"),
                            "message": body.get("message") or "",
                            "delivered": list(body.get("delivered") or []),
                        }
                    )
    return sorted(found, key=lambda a: (str(a["rule"]), str(a["organization_id"] or ""), str(a["project"] or ""), str(a["period"])))
