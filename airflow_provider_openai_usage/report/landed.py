"""Find and read what the pulls landed for a range of UTC days, with Arrow datasets.

The listing says more than the rows: a day with a partition but no rows had no spend (a real
zero); a day without a partition was never pulled (a gap, shown as a gap); a day whose parts cover
less than 24 hours (hourly runs still going) is partial. Rows are read by ``pyarrow.dataset`` over
the same filesystem Airflow's ObjectStoragePath uses (local, S3, GCS...), reading only the columns
asked for; the aggregation happens in Arrow, never row by row in Python.
"""

from __future__ import annotations

import datetime as dt
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.report.publish import is_local
from airflow_provider_openai_usage.times import DAY, day_start

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

COMPLETE, PARTIAL, MISSING = "complete", "partial", "missing"
#: A day's data files: ``data.<ext>`` (one file per day) or ``part-HHMM-HHMM.<ext>`` (a window of it).
DATA_RE = re.compile(r"^(?:data|part-(\d{4})-(\d{4}))\.(parquet|jsonl|csv)$")
#: Where the pulls keep what each day's file covers (sidecar manifests, skipped by dataset readers).
MANIFESTS = "_openai_usage/manifests"


def _window_of(name: str) -> tuple[int, int] | None:
    """Seconds of the UTC day a file covers: the whole day for ``data.*``, else its ``HHMM-HHMM``."""
    match = DATA_RE.match(name)
    if not match:
        return None
    if match.group(1) is None:
        return 0, DAY
    a, b = match.group(1), match.group(2)
    return int(a[:2]) * 3600 + int(a[2:]) * 60, int(b[:2]) * 3600 + int(b[2:]) * 60


@dataclass(frozen=True)
class Landed:
    """Rows of the listed days (with a ``date`` string column) and each day's coverage."""

    table: pa.Table
    coverage: dict[dt.date, str]

    @property
    def reported_days(self) -> list[dt.date]:
        return [d for d, status in self.coverage.items() if status != MISSING]


def day_range(first: dt.date, last: dt.date) -> list[dt.date]:
    return [first + dt.timedelta(days=i) for i in range((last - first).days + 1)]


def _months(days: Sequence[dt.date]) -> list[str]:
    return sorted({d.strftime("%Y-%m") for d in days})


def list_parts(root: ObjectStoragePath, days: Sequence[dt.date]) -> dict[dt.date, list[str]]:
    """Part files per day, with one glob per month (a handful of LIST calls on object stores)."""
    wanted = set(days)
    found: dict[dt.date, list[str]] = {d: [] for d in days}
    fs, base = root.fs, root.path.rstrip("/")
    for month in _months(days):
        for path in fs.glob(f"{base}/date={month}-*/*"):
            folder, name = path.rsplit("/", 2)[-2:]
            if not DATA_RE.match(name):
                continue
            day = dt.date.fromisoformat(folder.removeprefix("date="))
            if day in wanted:
                found[day].append(path)
    return found


def coverage_of(names: Sequence[str], covered: Sequence[tuple[int, int]] | None = None) -> str:
    """``complete`` when the files (or the manifest's ``covered`` windows, seconds of the day) span
    00:00-24:00, ``partial`` when they span less, ``missing`` when there is no file."""
    if not names:
        return MISSING
    from_names = (w for w in (_window_of(n.rsplit("/", 1)[-1]) for n in names) if w is not None)
    windows = sorted(covered if covered is not None else from_names)
    if not windows:
        return MISSING
    reached = 0
    for start, end in windows:
        if start > reached:
            return PARTIAL
        reached = max(reached, end)
    return COMPLETE if reached >= DAY else PARTIAL


def dataset_root(location: ObjectStoragePath, dataset: str, organization_id: str | None) -> ObjectStoragePath:
    """``<location>/<dataset>/organization=<id>`` (or ``<location>/<dataset>`` when no organization is given)."""
    from airflow_provider_openai_usage.organizations import organization_root

    root = location / dataset
    return root if organization_id is None else organization_root(root, organization_id)


def read_landed(
    location: ObjectStoragePath, endpoint: str, days: Sequence[dt.date], columns: Sequence[str], organization_id: str | None = None
) -> Landed:
    """The named columns of ``<location>/<endpoint>/organization=<id>`` for ``days``, plus a ``date`` column.

    One organization at a time, by its folder: a reader never trusts the rows' own
    ``organization_id`` to tell organizations apart (older files of some datasets lack it).
    """
    import pyarrow as pa
    import pyarrow.dataset as ds
    import pyarrow.fs as pafs

    from airflow_provider_openai_usage.endpoints import get_endpoint
    from airflow_provider_openai_usage.storage import arrow_schema

    root = dataset_root(location, endpoint, organization_id)
    parts = list_parts(root, days)
    coverage = {d: coverage_of(parts[d], _manifest_covered(root, d) if parts[d] else None) for d in days}
    schema = arrow_schema(get_endpoint(endpoint))
    missing = [c for c in columns if c not in schema.names]
    if missing:
        raise OpenAIUsageValidationError(f"{endpoint} has no column(s) {missing}; it has {schema.names}")
    out_schema = pa.schema([schema.field(c) for c in columns] + [pa.field("date", pa.string())])
    files = sorted(p for d in days for p in parts[d])
    if not files:
        return Landed(out_schema.empty_table(), coverage)
    formats = {f.rsplit(".", 1)[-1] for f in files}
    if formats - {"parquet"}:
        raise OpenAIUsageValidationError(
            f"{root.as_uri()} holds {sorted(formats)} files; the spend report reads Parquet "
            "(the operators' default file_format='parquet')"
        )
    filesystem = pafs.LocalFileSystem() if is_local(root) else pafs.PyFileSystem(pafs.FSSpecHandler(root.fs))
    dataset = ds.dataset(
        files,
        schema=schema.append(pa.field("date", pa.string())),
        format="parquet",
        filesystem=filesystem,
        partitioning=ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive"),
        partition_base_dir=root.path.rstrip("/"),
    )
    return Landed(dataset.to_table(columns=[*columns, "date"]), coverage)


def _manifest_covered(root: ObjectStoragePath, day: dt.date) -> list[tuple[int, int]] | None:
    """The UTC windows a day's manifest says were written (seconds of the day), if it has one."""
    path = root / MANIFESTS / f"date={day.isoformat()}.json"
    try:
        with path.open("rb") as fh:
            manifest = json.load(fh)
    except FileNotFoundError:
        return None
    covered = manifest.get("covered")
    if not covered:
        return None
    start = day_start(day)
    windows = []
    for a, b in covered:
        windows.append((max(0, _seconds(a) - start), min(DAY, _seconds(b) - start)))
    return windows


def _seconds(value: int | str) -> int:
    """Unix seconds, given as such or as an ISO time (``2025-11-09T00:00:00Z``)."""
    if isinstance(value, str):
        return int(dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp())
    return int(value)
