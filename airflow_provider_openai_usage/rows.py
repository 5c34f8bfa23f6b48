"""API buckets → flat rows with the registry's columns, and the checks that keep wrong data out.

A bucket's results become one dict each: ``start_time``/``end_time`` of the bucket, then every
dimension and metric column of the endpoint, in registry order. What the spec's history spelled
differently (``result``, ``sessions``) is read too; what we do not know is left out, logged once.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from decimal import Decimal, InvalidOperation
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


def _decimal(value: Any, column: str) -> Decimal | None:
    """Exact amounts whether OpenAI sent a JSON number (parsed as Decimal) or a string."""
    if value is None:
        return None
    if isinstance(value, bool):
        raise OpenAIUsageResponseError(f"{column}={value!r} is not a number")
    try:
        return Decimal(value) if isinstance(value, (str, int, Decimal)) else Decimal(str(value))
    except InvalidOperation:
        raise OpenAIUsageResponseError(f"{column}={value!r} is not a number") from None


def _value(result: Mapping[str, Any], column: Column) -> Any:
    node: Any = result
    for part in column.path:
        if not isinstance(node, Mapping) or part not in node:
            return None
        node = node[part]
    if node is None:
        return None
    if column.type == "decimal":
        return _decimal(node, column.name)
    if column.type == "int64":
        if isinstance(node, bool) or not isinstance(node, (int, Decimal)) or int(node) != node:
            raise OpenAIUsageResponseError(f"{column.name}={node!r} is not an integer")
        return int(node)
    if column.type == "bool":
        if not isinstance(node, bool):
            raise OpenAIUsageResponseError(f"{column.name}={node!r} is not a boolean")
        return node
    return str(node)


def _known_keys(endpoint: Endpoint) -> set[str]:
    return {"object"} | {c.path[0] for c in endpoint.columns} | set(endpoint.legacy_fields)


def result_row(endpoint: Endpoint, bucket: Mapping[str, Any], result: Any) -> dict[str, Any]:
    if not isinstance(result, Mapping):
        raise OpenAIUsageResponseError(f"{endpoint.key}: a result is {type(result).__name__}, expected an object")
    obj = result.get("object")
    # The earliest spec example misspelled "organization"; accept exactly that historical typo.
    if obj != endpoint.result_object and obj != endpoint.result_object.replace("organization", "orgainzation", 1):
        raise OpenAIUsageResponseError(
            f"{endpoint.key}: result object {obj!r} is not {endpoint.result_object!r}; the API answered for "
            "another endpoint or changed shape, so nothing is written"
        )
    if endpoint.legacy_fields and any(old in result for old in endpoint.legacy_fields):
        result = dict(result)
        for old, new in endpoint.legacy_fields.items():
            if old in result and result.get(new) is None:
                result[new] = result.pop(old)
    unknown = set(result) - _known_keys(endpoint)
    for key in sorted(unknown):
        if (endpoint.key, key) not in _warned_unknown:
            _warned_unknown.add((endpoint.key, key))
            log.warning("%s: ignoring field %r that this provider version does not know", endpoint.key, key)
    row: dict[str, Any] = {"start_time": bucket["start_time"], "end_time": bucket["end_time"]}
    for column in endpoint.columns:
        row[column.name] = _value(result, column)
    return row


def bucket_rows(endpoint: Endpoint, bucket: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    for result in bucket_results(bucket):
        yield result_row(endpoint, bucket, result)
