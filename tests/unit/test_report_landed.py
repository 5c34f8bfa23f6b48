"""report/landed.py: which UTC days landed whole, in part, or not at all."""

from __future__ import annotations

import pytest

from airflow_provider_openai_usage.report.landed import COMPLETE, MISSING, PARTIAL, coverage_of


@pytest.mark.parametrize(
    ("names", "expected"),
    [
        ([], MISSING),
        (["part-0000-2400.parquet"], COMPLETE),
        (["part-0000-0100.parquet", "part-0100-2400.parquet"], COMPLETE),
        (["part-0000-1200.parquet"], PARTIAL),
        (["part-0000-0100.parquet", "part-0200-2400.parquet"], PARTIAL),
        (["x/date=2025-11-01/part-0100-2400.parquet"], PARTIAL),
        (["data.parquet"], COMPLETE),
    ],
)
def test_coverage_from_part_windows(names: list[str], expected: str) -> None:
    assert coverage_of(names) == expected


def test_coverage_from_manifest_windows() -> None:
    assert coverage_of(["data.parquet"], [(0, 3600), (3600, 86400)]) == COMPLETE
    assert coverage_of(["data.parquet"], [(0, 43200)]) == PARTIAL
    assert coverage_of([], [(0, 86400)]) == MISSING
