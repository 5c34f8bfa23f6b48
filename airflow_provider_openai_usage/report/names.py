"""Project names and OpenAI spend limits for the report, from the landed organization directory.

The directory operator snapshots the admin API of each organization under
``<output_path>/directory/<entity>/organization=<id>/date=D/``; each organization's names and
limits come from its own snapshots (two organizations may both have a ``proj_abc``).
The admin API has no history, so a snapshot describes the organization as it was on the day it was
taken: for a report about day D the best snapshot is the first one taken after D, else the latest
one before it. Without any snapshot the report shows project ids and no limits (and says so).
"""

from __future__ import annotations

import datetime as dt
import logging
import re
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.report.spend import Directory

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)
DIRECTORY = "directory"
SNAPSHOT_RE = re.compile(r"date=(\d{4}-\d{2}-\d{2})/(?:data|part-\d{4}-\d{4})\.(parquet|jsonl|csv)$")
CENTS = Decimal(100)


def snapshots(root: ObjectStoragePath) -> dict[dt.date, str]:
    """Snapshot date -> data file path (as the filesystem names it) of one directory entity."""
    found: dict[dt.date, str] = {}
    for path in root.fs.glob(f"{root.path.rstrip('/')}/date=*/*"):
        match = SNAPSHOT_RE.search(path)
        if match:
            found[dt.date.fromisoformat(match.group(1))] = path
    return found


def pick_snapshot(dates: list[dt.date], day: dt.date) -> dt.date | None:
    """The first snapshot after ``day``, else the latest one (the nearest picture of that day)."""
    after = [d for d in dates if d > day]
    if after:
        return min(after)
    return max(dates) if dates else None


def _read(root: ObjectStoragePath, path: str, columns: list[str]) -> Any:
    """A snapshot file as an Arrow table (any of the three formats the pulls write)."""
    if path.endswith(".parquet"):
        import pyarrow.parquet as pq

        with root.fs.open(path, "rb") as fh:
            return pq.read_table(fh, columns=columns)
    from airflow_provider_openai_usage.directory import ENTITIES
    from airflow_provider_openai_usage.directory_rows import read_snapshot

    entity = root.parent.name if root.name.startswith("organization=") else root.name
    return read_snapshot(root / path.rsplit("/", 2)[-2] / path.rsplit("/", 1)[-1], ENTITIES[entity]).select(columns)


def load_directory(location: ObjectStoragePath, day: dt.date, currency: str = "usd", organization_id: str | None = None) -> Directory:
    """Names (``projects``) and monthly spend limits (``project_spend_limits``) of one organization for ``day``."""
    from airflow_provider_openai_usage.report.landed import dataset_root

    names: dict[str, str] = {}
    limits: dict[str, Decimal] = {}
    projects_root = dataset_root(location, f"{DIRECTORY}/projects", organization_id)
    found = snapshots(projects_root)
    chosen = pick_snapshot(sorted(found), day)
    if chosen is not None:
        table = _read(projects_root, found[chosen], ["id", "name"])
        names = {r["id"]: r["name"] for r in table.to_pylist() if r["id"] and r["name"]}
    limits_root = dataset_root(location, f"{DIRECTORY}/project_spend_limits", organization_id)
    found_limits = snapshots(limits_root)
    chosen_limits = pick_snapshot(sorted(found_limits), day)
    if chosen_limits is not None:
        table = _read(limits_root, found_limits[chosen_limits], ["project_id", "threshold_amount", "currency", "interval"])
        for r in table.to_pylist():
            if r["threshold_amount"] is None or (r["interval"] or "month") != "month":
                continue
            if (r["currency"] or currency).lower() != currency.lower():
                log.warning("spend limit of %s is in %s, the report in %s: left out", r["project_id"], r["currency"], currency)
                continue
            limits[r["project_id"]] = Decimal(r["threshold_amount"]) / CENTS  # the API's unit is cents
    keys: dict[str, tuple[str, str]] = {}
    keys_root = dataset_root(location, f"{DIRECTORY}/project_api_keys", organization_id)
    found_keys = snapshots(keys_root)
    chosen_keys = pick_snapshot(sorted(found_keys), day)
    if chosen_keys is not None:
        table = _read(keys_root, found_keys[chosen_keys], ["id", "name", "owner_name", "owner_email"])
        for r in table.to_pylist():
            if r["id"]:
                owner = " ".join(x for x in (r["owner_name"], f"<{r['owner_email']}>" if r["owner_email"] else None) if x)
                keys[r["id"]] = (r["name"] or r["id"], owner or "unknown owner")
    log.info(
        "Directory of %s for %s: names from snapshot %s (%d projects), spend limits from snapshot %s (%d), API keys from %s (%d)",
        organization_id or "the lake", day, chosen or "none", len(names),
        chosen_limits or "none", len(limits), chosen_keys or "none", len(keys),
    )
    return Directory(names, limits, keys)
