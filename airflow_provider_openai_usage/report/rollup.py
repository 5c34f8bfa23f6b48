"""A month's landed costs summed per project: what the example monthly rollup DAG writes.

Written to ``<output_path>/rollups/costs_monthly/month=YYYY-MM.json`` in one step
(``publish_bytes``), exact decimals as strings, the days it summed and the days that have not
landed (a gap is named, never summed as zero). Re-running a month replaces its file; the same
landed days give the same bytes.
"""

from __future__ import annotations

import calendar
import datetime as dt
import json
import re
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


def month_rollup(location: ObjectStoragePath, month: str) -> dict[str, Any]:
    """Costs of ``month`` per project (exact), with the days landed and the days not landed."""
    import pyarrow.compute as pc

    from airflow_provider_openai_usage.report.landed import MISSING, read_landed

    days = month_days(month)
    landed = read_landed(location, "costs", days, ["project_id", "amount_value"])
    table = landed.table
    by_project: dict[str, str] = {}
    if table.num_rows:
        sums = table.group_by("project_id").aggregate([("amount_value", "sum")])
        for project, total in zip(sums.column("project_id").to_pylist(), sums.column("amount_value_sum").to_pylist(), strict=True):
            by_project[project or ""] = str(total)
    total = pc.sum(table.column("amount_value")).as_py() if table.num_rows else 0
    return {
        "month": month,
        "total": str(total),
        "by_project": dict(sorted(by_project.items())),
        "days_landed": sorted(d.isoformat() for d, s in landed.coverage.items() if s != MISSING),
        "days_missing": sorted(d.isoformat() for d, s in landed.coverage.items() if s == MISSING),
    }


def write_month_rollup(location: ObjectStoragePath, month: str) -> ObjectStoragePath:
    from airflow_provider_openai_usage.report.publish import publish_bytes

    data = month_rollup(location, month)
    dest = location / ROLLUPS / f"month={month}.json"
    publish_bytes(dest, (json.dumps(data, indent=2, sort_keys=True) + "\n").encode())
    return dest
