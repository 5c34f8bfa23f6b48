"""Helpers shared by the storage tests (``test_storage_days/formats/usage.py``): a task context, day labels,
what landed under a folder, reading a day file back without our code, one operator run, a PartitionWriter."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from pathlib import Path

import pendulum
from conftest import DAY, NOW

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

START = NOW - 4 * DAY
#: 2025-11-08, the day the issue's scenarios use (seed 7).
D8 = NOW - 2 * DAY
H = 3600


def ctx(start: int, end: int) -> dict:
    return {
        "data_interval_start": pendulum.from_timestamp(start, tz="UTC"),
        "data_interval_end": pendulum.from_timestamp(end, tz="UTC"),
    }


def day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def files(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under root (control files included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def data_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("date=*/*"))


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".") or p.name.startswith("pending.")]


def read_back(path: Path, file_format: str) -> list[dict]:
    if file_format == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [
            {k: (int(v.timestamp()) if isinstance(v, dt.datetime) else v) for k, v in row.items()} for row in table.to_pylist()
        ]
    if file_format == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def write(tmp_path: Path, start: int, end: int, endpoint: str = "completions", **kwargs) -> dict:
    op = OpenAIUsageOperator(task_id="t", endpoint=endpoint, output_path=str(tmp_path), start_time=start, end_time=end, **kwargs)
    return op.execute({})


def partition_writer(tmp_path: Path, endpoint: str = "completions", file_format: str = "parquet"):
    from airflow_provider_openai_usage.storage import PartitionWriter

    return PartitionWriter(object_path(tmp_path / endpoint), ENDPOINTS[endpoint], file_format)


def object_path(p: Path):
    """``p`` as an ObjectStoragePath. Not ``p.as_uri()``: it percent-encodes the ``=`` of ``organization=``."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath("file://" + str(p))


def usage_bucket(start: int, end: int, results: list) -> dict:
    return {"object": "bucket", "start_time": start, "end_time": end, "results": results}
