"""Project names and spend limits from directory snapshots (layout and columns as directory.md pins them)."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
from conftest import FAKE_ORG, ORG_DIR

from airflow_provider_openai_usage.report.names import load_directory, pick_snapshot


def snapshot(root: Path, entity: str, date: str, table: pa.Table) -> None:
    folder = root / "directory" / entity / f"date={date}"
    folder.mkdir(parents=True)
    pq.write_table(table, folder / "data.parquet")


def projects(*rows: tuple[str, str]) -> pa.Table:
    return pa.table({"id": [r[0] for r in rows], "name": [r[1] for r in rows], "status": ["active"] * len(rows)})


def limits(*rows: tuple[str, int, str, str]) -> pa.Table:
    return pa.table({
        "project_id": [r[0] for r in rows], "id": [r[0] for r in rows],
        "threshold_amount": pa.array([r[1] for r in rows], pa.int64()),
        "currency": [r[2] for r in rows], "interval": [r[3] for r in rows],
        "enforcement_status": ["enforcing"] * len(rows),
    })


def location(root: Path):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root.as_uri())


def test_first_snapshot_after_the_day_else_the_latest() -> None:
    d = dt.date.fromisoformat
    dates = [d("2025-11-01"), d("2025-11-05"), d("2025-11-12")]
    assert pick_snapshot(dates, d("2025-11-04")) == d("2025-11-05")
    assert pick_snapshot(dates, d("2025-11-05")) == d("2025-11-12")
    assert pick_snapshot(dates, d("2025-11-20")) == d("2025-11-12")
    assert pick_snapshot([], d("2025-11-20")) is None


def test_names_and_monthly_limits_in_cents(tmp_path: Path) -> None:
    snapshot(tmp_path, "projects", "2025-11-01", projects(("proj_a", "Old name")))
    snapshot(tmp_path, "projects", "2025-11-10", projects(("proj_a", "Search"), ("proj_b", "Chat")))
    snapshot(tmp_path, "project_spend_limits", "2025-11-10",
             limits(("proj_a", 12345, "USD", "month"), ("proj_b", 500, "EUR", "month"), ("proj_c", 100, "USD", "day")))
    directory = load_directory(location(tmp_path), dt.date(2025, 11, 9))
    assert directory.names == {"proj_a": "Search", "proj_b": "Chat"}
    assert directory.limits == {"proj_a": Decimal("123.45")}  # cents → USD; other currency and interval left out
    assert directory.label("proj_a") == "Search (proj_a)"


def test_no_directory_means_ids_and_no_limits(tmp_path: Path) -> None:
    directory = load_directory(location(tmp_path), dt.date(2025, 11, 9))
    assert directory.names == {} and directory.limits == {}
    assert directory.label("proj_a") == "proj_a"


import pytest  # noqa: E402


@pytest.mark.parametrize("file_format", ["csv", "jsonl"])
def test_snapshots_in_every_documented_format_name_projects_for_the_report_alerts_and_focus(fake_api, conn_id, tmp_path: Path, file_format: str) -> None:
    """#26 item 16: a CSV or JSONL directory snapshot is read with its entity's schema, not refused."""
    import pendulum

    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
    from airflow_provider_openai_usage.operators.focus import _names_of
    from airflow_provider_openai_usage.storage import list_day_files

    OpenAIDirectoryOperator(task_id="d", output_path=tmp_path.as_uri(), entities=["projects", "project_spend_limits"],
                            file_format=file_format).execute({"data_interval_end": pendulum.parse("2025-11-10")})
    directory = load_directory(location(tmp_path), dt.date(2025, 11, 9), organization_id=FAKE_ORG)
    expected = {p["id"]: p["name"] for p in fake_api.api.admin.directory.objects("projects")}
    assert directory.names == expected and directory.limits
    (path,) = list_day_files(location(tmp_path) / "directory" / "projects" / ORG_DIR).values()
    assert _names_of(path) == expected
