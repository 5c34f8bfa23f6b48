"""Find and read the spend reports the report operator published, for the Spend view in Airflow.

Reports live at ``<output_path>/reports/date=YYYY-MM-DD/spend.html`` (``operators/report.py``);
one listing of ``reports/`` tells which days have one.
"""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from airflow_provider_openai_usage.report.publish import read_bytes_if_exists

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

REPORTS, REPORT_NAME = "reports", "spend.html"
DAY_FOLDER = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")


def report_days(location: ObjectStoragePath) -> list[str]:
    """Days with a published report, newest first."""
    root = location / REPORTS
    try:
        folders = [p for p in root.iterdir() if p.is_dir()]
    except (FileNotFoundError, NotADirectoryError):
        return []
    days = [m.group(1) for m in (DAY_FOLDER.match(p.name) for p in folders) if m]
    return sorted((d for d in days if (root / f"date={d}" / REPORT_NAME).exists()), reverse=True)


def read_report(location: ObjectStoragePath, day: str) -> bytes | None:
    """The report page of ``day`` (``YYYY-MM-DD``, checked), or None when that day has none."""
    if not DAY_FOLDER.match(f"date={day}"):
        raise ValueError(f"date={day!r} is not YYYY-MM-DD")
    return read_bytes_if_exists(location / REPORTS / f"date={day}" / REPORT_NAME)
