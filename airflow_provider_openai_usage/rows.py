"""API buckets → the registry's columns, and the checks that keep wrong data out.

A bucket's results become columns (one list per column: ``start_time``/``end_time`` of the bucket,
then every dimension and metric of the endpoint in registry order); rows are the same values
transposed. Working column by column keeps the per-value cost to a list comprehension, which is
what lets a year of minute buckets reach Parquet at hundreds of thousands of rows per second.

What the spec's history spelled differently (``result``, ``sessions``) is read too; fields we do
not know are left out and logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
from itertools import repeat
from typing import Any

from airflow_provider_openai_usage.endpoints import Column, Endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError

log = logging.getLogger(__name__)
_warned_unknown: set[tuple[str, str]] = set()


def bucket_results(bucket: Mapping[str, Any]) -> list[Any]:
    """The bucket's results; the first spec versions named the array ``result``."""
    if "results" in bucket:
        results = bucket["results"]
    elif "result" in bucket:
        results = bucket["result"]
    else:
        raise OpenAIUsageResponseError(
            f"bucket {bucket.get('start_time')}–{bucket.get('end_time')} has no 'results' array; refusing to guess"
        )
    if not isinstance(results, list):
        raise OpenAIUsageResponseError(f"bucket 'results' is {type(results).__name__}, expected a list")
    return results


_KNOWN_KEYS: dict[str, frozenset[str]] = {}


def _known_keys(endpoint: Endpoint) -> frozenset[str]:
    known = _KNOWN_KEYS.get(endpoint.key)
    if known is None:
        known = _KNOWN_KEYS[endpoint.key] = frozenset({"object"} | {c.path[0] for c in endpoint.columns} | set(endpoint.legacy_fields))
    return known


def check_result_object(endpoint: Endpoint, result: Any) -> None:
    """A result of another type means the answer is not what we asked for: refuse it."""
    if not isinstance(result, Mapping):
        raise OpenAIUsageResponseError(f"{endpoint.key}: a result is {type(result).__name__}, expected an object")
    obj = result.get("object")
    # The earliest spec example misspelled "organization"; accept exactly that historical typo.
    if obj != endpoint.result_object and obj != endpoint.result_object.replace("organization", "orgainzation", 1):
        raise OpenAIUsageResponseError(
            f"{endpoint.key}: result object {obj!r} is not {endpoint.result_object!r}; the API answered for "
            "another endpoint or changed shape, so nothing is written"
        )


def _normalized(endpoint: Endpoint, results: list[Any]) -> list[Any]:
    """Check every result's type, rename legacy fields, note unknown ones.

    The common case (plain dicts of the right object with known keys) is checked with set
    operations over the whole bucket instead of a Python loop per result.
    """
    known = _known_keys(endpoint)
    if set(map(type, results)) <= {dict}:
        objects = set(map(dict.get, results, repeat("object")))
        all_keys = set().union(*results) if results else set()
        if objects <= {endpoint.result_object} and all_keys <= known and not (all_keys & endpoint.legacy_fields.keys()):
            return results
    out = list(results)
    for i, result in enumerate(results):
        check_result_object(endpoint, result)
        out[i] = result = dict(result)  # plain dicts from here on: columns are read with dict.get
        for key in sorted(result.keys() - known):
            if (endpoint.key, key) not in _warned_unknown:
                _warned_unknown.add((endpoint.key, key))
                log.warning("%s: ignoring field %r that this provider version does not know", endpoint.key, key)
        if endpoint.legacy_fields and result.keys() & endpoint.legacy_fields.keys():
            for old, new in endpoint.legacy_fields.items():
                if old in result and result.get(new) is None:
                    result[new] = result.pop(old)
    return out


def _dig(result: Mapping[str, Any], path: tuple[str, ...]) -> Any:
    node: Any = result
    for part in path:
        if not isinstance(node, Mapping):
            return None
        node = node.get(part)
    return node


def _to_decimal(value: Any, column: str) -> Decimal:
    if isinstance(value, bool):
        raise OpenAIUsageResponseError(f"{column}={value!r} is not a number")
    try:
        # Strings and Decimals convert exactly; a float (never produced by our JSON parsing) via its repr.
        return Decimal(value) if isinstance(value, (str, int)) else Decimal(str(value))
    except InvalidOperation:
        raise OpenAIUsageResponseError(f"{column}={value!r} is not a number") from None


_NONE = type(None)


def _typed(values: list[Any], column: Column) -> list[Any]:
    kind = column.type
    types = set(map(type, values))
    if kind == "decimal":
        if types <= {Decimal, _NONE}:
            return values
        return [v if v is None or type(v) is Decimal else _to_decimal(v, column.name) for v in values]
    if kind == "int64":
        if types <= {int, _NONE}:
            return values
        for v in values:
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, Decimal)) or int(v) != v):
                raise OpenAIUsageResponseError(f"{column.name}={v!r} is not an integer")
        return [None if v is None else int(v) for v in values]
    if kind == "bool":
        if not types <= {bool, _NONE}:
            bad = next(v for v in values if v is not None and type(v) is not bool)
            raise OpenAIUsageResponseError(f"{column.name}={bad!r} is not a boolean")
        return values
    if types <= {str, _NONE}:
        return values
    return [v if v is None or type(v) is str else str(v) for v in values]


def bucket_columns(endpoint: Endpoint, bucket: Mapping[str, Any]) -> tuple[int, dict[str, list[Any]]]:
    """(number of rows, column name → values) for one bucket, in registry column order."""
    results = _normalized(endpoint, bucket_results(bucket))
    n = len(results)
    columns: dict[str, list[Any]] = {"start_time": [bucket["start_time"]] * n, "end_time": [bucket["end_time"]] * n}
    for column in endpoint.columns:
        path = column.path
        if len(path) == 1:
            values = list(map(dict.get, results, repeat(path[0])))
        else:
            values = [_dig(r, path) for r in results]
        columns[column.name] = _typed(values, column)
    return n, columns


def sort_columns(endpoint: Endpoint, n: int, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Order a bucket's rows by its dimensions, whatever order the API sent (byte-identical files)."""
    active = [columns[d.name] for d in endpoint.dimensions if columns[d.name].count(None) != n]
    if n < 2 or not active:
        return columns
    if any(None in col for col in active):
        order = sorted(range(n), key=lambda i: tuple((col[i] is None, str(col[i])) for col in active))
    else:
        keys = list(zip(*active))  # no nulls: plain tuple comparison, in C
        order = sorted(range(n), key=keys.__getitem__)
    if order == list(range(n)):
        return columns
    return {name: [values[i] for i in order] for name, values in columns.items()}


def rows_of(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, values)) for values in zip(*columns.values())]


def bucket_rows(endpoint: Endpoint, bucket: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One flat dict per result: bucket times, then the endpoint's columns; ``object`` dropped."""
    _, columns = bucket_columns(endpoint, bucket)
    yield from rows_of(columns)
