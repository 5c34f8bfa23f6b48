"""A month's landed costs summed per organization and project: what the example monthly rollup DAG writes.

Written to ``<output_path>/rollups/costs_monthly/month=YYYY-MM.json`` in one step
(``publish_bytes``), exact decimals as strings, the days it summed and the days that have not
landed (a gap is named, never summed as zero). ``total`` is every organization's; each
organization has its own total, projects and days under ``by_organization`` (read from its own
``costs/organization=<id>/`` folder). ``by_project`` sums a project id over the organizations
that have it and is kept for single-organization readers; a project of two organizations is only
told apart under ``by_organization``. Re-running a month replaces its file; the same
landed days give the same bytes.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

ROLLUPS = "rollups/costs_monthly"
MONTH = re.compile(r"^(\d{4})-(\d{2})$")


def month_days(month: str) -> list[dt.date]:
    match = MONTH.match(month or "")
    if not match or not 1 <= int(match.group(2)) <= 12:
        raise OpenAIUsageValidationError(f"month={month!r} is not YYYY-MM (a partition key of StartOfMonthMapper, e.g. 2025-11)")
    year, number = int(match.group(1)), int(match.group(2))
    return [dt.date(year, number, d) for d in range(1, calendar.monthrange(year, number)[1] + 1)]


def _organization_rollup(location: ObjectStoragePath, days: list[dt.date], organization_id: str | None) -> dict[str, Any]:
    """One organization's month: exact total, per project, the days landed and not."""
    import pyarrow.compute as pc

    from airflow_provider_openai_usage.report.landed import MISSING, read_landed

    landed = read_landed(location, "costs", days, ["project_id", "amount_value"], organization_id)
    table = landed.table
    by_project: dict[str, Decimal] = {}
    if table.num_rows:
        sums = table.group_by("project_id").aggregate([("amount_value", "sum")])
        for project, total in zip(sums.column("project_id").to_pylist(), sums.column("amount_value_sum").to_pylist(), strict=True):
            by_project[project or ""] = total
    total = pc.sum(table.column("amount_value")).as_py() if table.num_rows else Decimal(0)
    return {
        "total": total,
        "by_project": dict(sorted(by_project.items())),
        "days_landed": sorted(d.isoformat() for d, s in landed.coverage.items() if s != MISSING),
        "days_missing": sorted(d.isoformat() for d, s in landed.coverage.items() if s == MISSING),
    }


def month_rollup(location: ObjectStoragePath, month: str) -> dict[str, Any]:
    """Costs of ``month`` per organization and project (exact), with the days landed and not landed.

    Lake-wide ``days_landed``: days some organization landed; ``days_missing``: days none did."""
    from airflow_provider_openai_usage.report.spend import landed_organizations_of

    days = month_days(month)
    # "" is a lake still in the single-organization layout: summed, but under no organization id.
    orgs = [o for o in landed_organizations_of(location) if not o or (location / "costs" / f"organization={o}").exists()]
    per_org = {org: _organization_rollup(location, days, org or None) for org in orgs}
    if not per_org:
        empty = _organization_rollup(location, days, None)
        landed_days, missing_days = empty["days_landed"], empty["days_missing"]
    else:
        landed_days = sorted({d for r in per_org.values() for d in r["days_landed"]})
        missing_days = sorted(d.isoformat() for d in days if d.isoformat() not in landed_days)
    by_project: dict[str, Decimal] = {}
    for r in per_org.values():
        for project, amount in r["by_project"].items():
            by_project[project] = by_project.get(project, Decimal(0)) + amount
    total = sum((r["total"] for r in per_org.values()), Decimal(0))
    return {
        "month": month,
        "total": str(total),
        "by_project": {p: str(v) for p, v in sorted(by_project.items())},
        "by_organization": {
            org: {**r, "total": str(r["total"]), "by_project": {p: str(v) for p, v in r["by_project"].items()}}
            for org, r in per_org.items() if org
        },
        "days_landed": landed_days,
        "days_missing": missing_days,
    }


def write_month_rollup(location: ObjectStoragePath, month: str) -> ObjectStoragePath:
    from airflow_provider_openai_usage.report.publish import publish_bytes

    data = month_rollup(location, month)
    dest = location / ROLLUPS / f"month={month}.json"
    publish_bytes(dest, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return dest
