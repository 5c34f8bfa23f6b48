"""Costs rows of whole UTC days as the pulls landed them, regrouped for a coarser grouping.

Why: the FOCUS export needs costs grouped by project and line item; the daily pull has already
landed them grouped by project, API key and line item (every FinOps dimension). Reading those
partitions and summing over the dimensions FOCUS does not keep gives the same rows as asking the
API again, so a day costs the API one costs request set (issue #28).

Nothing is guessed: a day is used only when its file matches its manifest, the manifest says it
holds costs in 1d buckets grouped by at least the wanted dimensions with the same filters, and the
windows it covers span the whole UTC day. Anything else is refused with the day, the reason and the
fix. Sums are exact: amounts are ``Decimal`` and added in a context wide enough for decimal(38, 18).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal, localcontext
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.endpoints import Endpoint

#: Reported fields that belong to a dimension: dropped with it (``user_email`` names a ``user_id``).
FOLLOWS = {"user_email": "user_id"}
#: Digits enough to add any number of decimal(38, 18) amounts without rounding.
SUM_PRECISION = 120


def _refusal(where: str, day: str, reason: str) -> OpenAIUsageValidationError:
    return OpenAIUsageValidationError(
        f"{where}: date={day} {reason}. The FOCUS export with source='landed' reads the costs the pull landed; "
        "run the costs pull for that day first (in the daily DAG pull_costs runs before focus_export), or use "
        "source='api' to ask the API"
    )


def whole_day_covered(covered: Sequence[Sequence[int]], start: int, end: int) -> bool:
    """The manifest's ``covered`` windows (merged, sorted Unix seconds) span ``[start, end)``."""
    reached = start
    for a, b in sorted((int(a), int(b)) for a, b in covered):
        if a > reached:
            return False
        reached = max(reached, b)
    return reached >= end


def landed_day_rows(
    root: ObjectStoragePath,
    day: str,
    *,
    group_by: Sequence[str],
    filters: Mapping[str, Any],
    described_as: str,
    formats: Mapping[str, str],
) -> tuple[list[dict[str, Any]], list[str]]:
    """(rows of the landed costs day ``day`` as the hook yields them, the grouping the day was pulled with).

    ``group_by``: what the caller needs; the day must be grouped by every one of them. ``formats``:
    ``DayStore.existing_formats()`` of ``root`` (one listing for all days).
    """
    from airflow_provider_openai_usage.endpoints import get_endpoint
    from airflow_provider_openai_usage.storage import DayStore, arrow_schema
    from airflow_provider_openai_usage.storage.formats import read_table
    from airflow_provider_openai_usage.times import day_start

    fmt = formats.get(day)
    if fmt is None:
        raise _refusal(described_as, day, "has no landed costs file")
    try:
        current = DayStore(root, fmt, described_as=described_as).current_day(day)
    except (OSError, ValueError) as exc:  # pyarrow's ArrowInvalid is a ValueError: a file changed by hand
        raise _refusal(described_as, day, f"has a costs file that cannot be read ({exc})") from exc
    if current is None or current.data is None:
        raise _refusal(described_as, day, "has no landed costs file")
    identity = current.identity
    if not identity:
        raise _refusal(described_as, day, "has a costs file that does not match its manifest (changed by hand?)")
    if identity.get("dataset") != "costs" or identity.get("bucket_width") != "1d":
        raise _refusal(
            described_as, day,
            f"holds {identity.get('dataset')!r} in {identity.get('bucket_width')!r} buckets, not costs in 1d buckets",
        )
    held = list(identity.get("group_by") or [])
    lacking = [g for g in group_by if g not in held]
    if lacking:
        raise _refusal(described_as, day, f"was pulled with group_by={held}, without {lacking}; it cannot be regrouped by them")
    wanted_filters = {k: (list(v) if isinstance(v, (list, tuple)) else v) for k, v in filters.items()}
    if (identity.get("filters") or {}) != wanted_filters:
        raise _refusal(described_as, day, f"was pulled with filters={identity.get('filters')!r}, not {wanted_filters!r}")
    start = day_start(dt.date.fromisoformat(day))
    if not whole_day_covered(current.covered, start, start + 86400):
        raise _refusal(described_as, day, f"covers only {current.covered} of the UTC day (a part-day pull is still landing)")
    endpoint = get_endpoint("costs")
    table = read_table(current.data, fmt, arrow_schema(endpoint))
    return [_hook_row(row) for row in table.to_pylist()], held


def _hook_row(row: dict[str, Any]) -> dict[str, Any]:
    """A landed row shaped as the hook yields it: bucket times as Unix seconds, amounts as the API wrote them.

    A decimal(38, 18) column gives every amount 18 places (``1.5`` comes back ``1.500000000000000000``);
    the API's JSON numbers carry no trailing zeros, so they are stripped: the same value, and the same
    text wherever an amount is written out (CSV cells, manifest totals).
    """
    for name, value in row.items():
        if isinstance(value, Decimal):
            row[name] = plain_decimal(value)
        elif isinstance(value, dt.datetime) and name in ("start_time", "end_time"):
            row[name] = int(value.timestamp())
    return row


def plain_decimal(value: Decimal) -> Decimal:
    """``value`` without trailing zeros and without an exponent (``1.500`` → ``1.5``, ``2.000`` → ``2``)."""
    reduced = value.normalize()
    return reduced.quantize(Decimal(1)) if reduced.as_tuple().exponent > 0 else reduced  # type: ignore[operator]


def regroup(endpoint: Endpoint, rows: Iterable[Mapping[str, Any]], drop: Iterable[str]) -> list[dict[str, Any]]:
    """Rows summed over the dimensions in ``drop`` (they become null), in first-seen order.

    Rows agreeing on every other column are one row; its metrics are exact sums (null only if a
    summed value was null: a FOCUS check then refuses it, as it refuses the API's row).
    """
    dropped = set(drop)
    dropped |= {field for field, owner in FOLLOWS.items() if owner in dropped}
    metrics = [c.name for c in endpoint.metric_columns]
    out: dict[tuple[Any, ...], dict[str, Any]] = {}
    with localcontext() as ctx:
        ctx.prec = SUM_PRECISION
        for row in rows:
            kept = {k: (None if k in dropped else v) for k, v in row.items()}
            key = tuple((k, v) for k, v in kept.items() if k not in metrics)
            seen = out.get(key)
            if seen is None:
                out[key] = kept
                continue
            for m in metrics:
                a, b = seen.get(m), kept.get(m)
                seen[m] = None if a is None or b is None else a + b
        merged = list(out.values())
        for row in merged:
            for m in metrics:
                if isinstance(row.get(m), Decimal):
                    row[m] = plain_decimal(row[m])
    return merged


def amounts_total(rows: Iterable[Mapping[str, Any]]) -> Decimal:
    """The exact sum of ``amount_value`` (nulls skipped): what regrouping must keep."""
    with localcontext() as ctx:
        ctx.prec = SUM_PRECISION
        return sum((r["amount_value"] for r in rows if r.get("amount_value") is not None), Decimal(0))
