"""Finding the published spend reports (``report/latest.py``)."""

from __future__ import annotations

from pathlib import Path

import pytest
from report_support import location

from airflow_provider_openai_usage.report.latest import read_report, report_days


def test_days_with_a_report_newest_first_and_their_pages(tmp_path: Path) -> None:
    for day in ("2025-11-08", "2025-11-09"):
        (tmp_path / "reports" / f"date={day}").mkdir(parents=True)
        (tmp_path / "reports" / f"date={day}" / "spend.html").write_text(f"<p>{day}</p>")
    (tmp_path / "reports" / "date=2025-11-10").mkdir()  # a folder without a page
    (tmp_path / "reports" / "notes").mkdir()
    assert report_days(location(tmp_path)) == ["2025-11-09", "2025-11-08"]
    assert read_report(location(tmp_path), "2025-11-08") == b"<p>2025-11-08</p>"
    assert read_report(location(tmp_path), "2025-11-10") is None
    assert report_days(location(tmp_path / "nothing")) == []


def test_a_day_that_is_not_a_date_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="is not YYYY-MM-DD"):
        read_report(location(tmp_path), "../x")
