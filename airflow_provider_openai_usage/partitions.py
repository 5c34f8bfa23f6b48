"""Landed UTC days as Airflow asset partitions: one asset event per day whose content changed.

Why changed days only: a downstream DAG scheduled on the asset with a ``PartitionedAssetTimetable``
gets one run per partition key, so a run that rewrote a day with the same bytes (a retry, a
``restate_days`` re-pull OpenAI did not revise) must not start it again. A day counts as changed
when the sha256 its manifest records after the run differs from before it (or it had no file):
the manifests already hold the hash, so this costs one small read per day that existed before.

Airflow 3.2+ (``OutletEventAccessor.add_partitions``): each key becomes its own asset event with
``partition_key``. Such events trigger only partition-aware DAGs; a DAG on a plain
``schedule=[Asset(...)]`` is not started by them, so the operators take ``asset_partitions=False``
to emit the plain event of older Airflow schedules instead.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def check_asset_partitions(value: Any) -> bool:
    if not isinstance(value, bool):
        from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

        raise OpenAIUsageValidationError(
            f"asset_partitions={value!r} must be True (one asset event per changed UTC day, its date as partition key) "
            "or False (one plain asset event per run, for DAGs on schedule=[Asset(...)])"
        )
    return value


def day_digests(
    root: ObjectStoragePath, first: str | None = None, last: str | None = None, *, only: Iterable[str] | None = None
) -> dict[str, str | None]:
    """date → the sha256 its manifest records, for each day file of the dataset in ``[first, last]``
    (and in ``only``, when given: after a run only the days that existed before need reading)."""
    from airflow_provider_openai_usage.storage import DayStore, list_day_files

    store = DayStore(root)
    wanted = None if only is None else set(only)
    out: dict[str, str | None] = {}
    for day in list_day_files(root) if wanted is None or wanted else []:
        if (first is not None and day < first) or (last is not None and day > last):
            continue
        if wanted is not None and day not in wanted:
            continue
        try:
            manifest = json.loads(store.manifest_path(day).read_bytes())
        except (FileNotFoundError, ValueError):
            manifest = {}
        out[day] = manifest.get("sha256") if isinstance(manifest, dict) else None
    return out


def has_outlet_events(context: Any) -> bool:
    """Whether ``context`` is a task run's (it has ``outlet_events``), so partition events can be added."""
    return context is not None and hasattr(context, "get") and context.get("outlet_events") is not None


def changed_days(before: dict[str, str | None], after: dict[str, str | None], written: Iterable[str]) -> list[str]:
    """The written days whose recorded content is new or differs from before the run, sorted."""
    return sorted(d for d in set(written) if d not in before or before[d] != after.get(d) or after.get(d) is None)


def emit_day_partitions(context: Any, outlets: Sequence[Any], uri: str, days: Sequence[str], log: Any) -> list[str]:
    """Add ``days`` as partition keys to the outlet event of the asset ``uri``; the keys added.

    Nothing happens when the task declares no such outlet (a templated ``output_path``), or when
    the context has no outlet events (``execute`` called outside a task run).
    """
    from airflow.sdk import Asset

    events = context.get("outlet_events") if hasattr(context, "get") else None
    wanted = Asset(uri=uri).uri  # as Airflow normalizes it
    asset = next((a for a in outlets if isinstance(a, Asset) and a.uri == wanted), None)
    if events is None or asset is None or not days:
        return []
    events[asset].add_partitions(list(days))
    log.info("asset %s: partition events for %d changed day(s): %s", uri, len(days), ", ".join(days))
    return list(days)
