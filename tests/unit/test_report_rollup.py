"""The monthly costs rollup (``report/rollup.py``) over costs the real operator landed: exact sums
per project equal an oracle reading the files in plain Python; gaps are named, not summed."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from report_support import land, location, org_root, partition_sums

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.report.rollup import month_days, month_rollup, write_month_rollup


def test_a_month_is_summed_exactly_per_project_with_its_gaps(tmp_path: Path) -> None:
    land(tmp_path.as_uri(), "2025-10-30", "2025-11-04", endpoints=("costs",))
    rollup = month_rollup(location(tmp_path), "2025-11")
    november = {d: v for d, v in partition_sums(org_root(tmp_path, "costs")).items() if d.startswith("2025-11")}
    assert Decimal(rollup["total"]) == sum(november.values(), Decimal(0))
    for project, total in rollup["by_project"].items():
        oracle = partition_sums(org_root(tmp_path, "costs"), project)
        assert Decimal(total) == sum((v for d, v in oracle.items() if d.startswith("2025-11")), Decimal(0))
    assert rollup["days_landed"] == ["2025-11-01", "2025-11-02", "2025-11-03"] and len(rollup["days_missing"]) == 27
    dest = write_month_rollup(location(tmp_path), "2025-11")
    assert json.loads(Path(dest.path).read_text()) == rollup


def test_a_key_that_is_not_a_month_is_refused() -> None:
    with pytest.raises(OpenAIUsageValidationError, match=r"month='2025-13' is not YYYY-MM"):
        month_days("2025-13")
    assert len(month_days("2024-02")) == 29


def test_a_lake_in_the_single_organization_layout_rolls_up_the_same_total(tmp_path: Path) -> None:
    import shutil

    land((tmp_path / "new").as_uri(), "2025-11-01", "2025-11-04", endpoints=("costs",))
    shutil.copytree(org_root(tmp_path / "new", "costs"), tmp_path / "old" / "costs")  # as a release before the level wrote it
    new, old = month_rollup(location(tmp_path / "new"), "2025-11"), month_rollup(location(tmp_path / "old"), "2025-11")
    assert Decimal(new["total"]) > 0 and old["total"] == new["total"] and old["by_project"] == new["by_project"]
    assert old["days_landed"] == new["days_landed"] and old["by_organization"] == {} and list(new["by_organization"]) != []
