"""API buckets → the registry's columns, and the checks that keep wrong data out.

A bucket's results become columns (one list per column: ``start_time``/``end_time`` of the bucket,
then every column of the endpoint in registry order); rows are the same values transposed. Working
column by column keeps the per-value cost to a list comprehension, which is what lets a year of
minute buckets reach Parquet at hundreds of thousands of rows per second.

What the spec's history spelled differently (``result``, ``sessions``) is read too. Fields the
registry does not type are **kept**: each row's ``extra`` column holds them as canonical JSON
(sorted keys, compact, exact numbers; null when there are none), and one warning per run names
them. Values that cannot be usage are refused: amounts that are not finite numbers (``NaN``,
``Infinity``), integers outside int64, and a result repeated identically inside one bucket (it
would be summed twice; see docs/design.md).
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from contextvars import ContextVar
from decimal import Decimal, InvalidOperation
from itertools import repeat
from operator import attrgetter
from typing import Any

from airflow_provider_openai_usage.endpoints import Column, Endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError
from airflow_provider_openai_usage.page_decoding import is_typed

log = logging.getLogger(__name__)

_NONE = type(None)
INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
#: A JSON number, the only text an amount may be sent as (no NaN, Infinity, underscores, blanks).
_NUMBER_TEXT = re.compile(r"-?(?:0|[1-9][0-9]*)(?:\.[0-9]+)?(?:[eE][+-]?[0-9]+)?")


def json_safe(value: Any) -> Any:
    """JSON (XCom, summaries, fingerprints) holds exact decimals as strings."""
    return format(value, "f") if isinstance(value, Decimal) else value


def canonical_json(value: Any) -> str:
    """Sorted keys, no blanks, numbers exactly as sent: the same text for the same data.

    Decimals (how the hook parses JSON numbers) are written as their literal; a non-finite number
    (JSON has none) as its name in a string, so it is kept rather than failing the row.
    """
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, int):
        return str(int(value))
    if isinstance(value, (Decimal, float)):
        if not (value.is_finite() if isinstance(value, Decimal) else math.isfinite(value)):
            return json.dumps(str(value))
        return format(value, "f") if isinstance(value, Decimal) else repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, Mapping):
        items = sorted((str(k), v) for k, v in value.items())
        return "{" + ",".join(json.dumps(k, ensure_ascii=False) + ":" + canonical_json(v) for k, v in items) + "}"
    if isinstance(value, (list, tuple)):
        return "[" + ",".join(canonical_json(v) for v in value) + "]"
    return json.dumps(str(value), ensure_ascii=False)


# -- fields this release does not type ----------------------------------------------------------------
#: Inside ``unknown_fields_warning()``: endpoint key → unknown field names seen in this run.
_run_unknown: ContextVar[dict[str, set[str]] | None] = ContextVar("openai_usage_unknown_fields", default=None)
#: Outside a run (the hook used directly, sensors, triggers): each field is warned once per process.
_warned_unknown: set[tuple[str, str]] = set()


def _unknown_message(endpoint_key: str, names: set[str]) -> str:
    listed = ", ".join(repr(n) for n in sorted(names))
    return (
        f"{endpoint_key}: OpenAI sent result fields this provider release does not type: {listed}. They are kept, "
        "not dropped, as canonical JSON in the 'extra' column; a newer airflow-provider-openai-usage release types them as columns"
    )


def _note_unknown(endpoint_key: str, names: set[str]) -> None:
    run = _run_unknown.get()
    if run is not None:
        run.setdefault(endpoint_key, set()).update(names)
        return
    new = {n for n in names if (endpoint_key, n) not in _warned_unknown}
    if new:
        _warned_unknown.update((endpoint_key, n) for n in new)
        log.warning("%s", _unknown_message(endpoint_key, new))


@contextmanager
def unknown_fields_warning() -> Iterator[None]:
    """Collect the unknown result fields of one run, then log one warning naming them all."""
    seen: dict[str, set[str]] = {}
    token = _run_unknown.set(seen)
    try:
        yield
    finally:
        _run_unknown.reset(token)
        for endpoint_key in sorted(seen):
            log.warning("%s", _unknown_message(endpoint_key, seen[endpoint_key]))


# -- results -------------------------------------------------------------------------------------------
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


_SHAPES: dict[str, tuple[frozenset[str], dict[str, frozenset[str]]]] = {}


def _shape(endpoint: Endpoint) -> tuple[frozenset[str], dict[str, frozenset[str]]]:
    """(top-level keys the registry reads, nested object → its keys) for an endpoint's results."""
    shape = _SHAPES.get(endpoint.key)
    if shape is None:
        nested: dict[str, set[str]] = {}
        for column in endpoint.dimensions + endpoint.values:
            if len(column.path) > 1:
                nested.setdefault(column.path[0], set()).add(column.path[1])
        shape = _SHAPES[endpoint.key] = (
            frozenset({"object"} | endpoint.result_fields),
            {parent: frozenset(keys) for parent, keys in nested.items()},
        )
    return shape


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


def _nested_known(results: list[dict[str, Any]], parent: str, keys: frozenset[str]) -> bool:
    nodes = list(map(dict.get, results, repeat(parent)))
    if not set(map(type, nodes)) <= {dict, _NONE}:
        return False
    return set().union(*filter(None, nodes)) <= keys


def _normalized(endpoint: Endpoint, results: list[Any]) -> tuple[list[Any], list[str | None] | None]:
    """Check every result's type, rename legacy fields, and set aside the fields we do not know.

    Returns the results (plain dicts) and each one's ``extra`` JSON, or None when no result has
    any. The common case (plain dicts of the right object with known keys) is checked with set
    operations over the whole bucket instead of a Python loop per result.
    """
    known, nested = _shape(endpoint)
    if set(map(type, results)) <= {dict}:
        objects = set(map(dict.get, results, repeat("object")))
        all_keys = set().union(*results) if results else set()
        if (
            objects <= {endpoint.result_object}
            and all_keys <= known
            and all(_nested_known(results, parent, keys) for parent, keys in nested.items())
        ):
            return results, None
    out = list(results)
    extras: list[str | None] = [None] * len(results)
    unknown_names: set[str] = set()
    for i, result in enumerate(results):
        check_result_object(endpoint, result)
        out[i] = result = dict(result)  # plain dicts from here on: columns are read with dict.get
        for old, new in endpoint.legacy_fields.items():
            if old in result and result.get(new) is None:
                result[new] = result.pop(old)
        extra = {key: result[key] for key in result.keys() - known}
        for parent, keys in nested.items():
            node = result.get(parent)
            if node is None:
                continue
            if not isinstance(node, Mapping):
                raise OpenAIUsageResponseError(
                    f"{endpoint.key}: result field {parent!r} is {type(node).__name__} ({node!r}), expected an object"
                )
            inner = {key: node[key] for key in node.keys() - keys}
            if inner:
                extra[parent] = inner
                unknown_names.update(f"{parent}.{key}" for key in inner)
        if extra:
            unknown_names.update(key for key in extra if key not in nested)
            _check_depth(endpoint, extra)
            extras[i] = canonical_json(extra)
    if unknown_names:
        _note_unknown(endpoint.key, unknown_names)
    return out, (extras if unknown_names else None)


#: Deepest nesting an answer may have (a usage page is 4 levels; canonical JSON recurses per level).
MAX_JSON_DEPTH = 64


def too_deep(value: Any, limit: int = MAX_JSON_DEPTH) -> bool:
    """Whether decoded JSON nests deeper than ``limit`` (checked iteratively: no recursion to exhaust)."""
    stack = [(value, 1)]
    while stack:
        node, depth = stack.pop()
        children = node.values() if isinstance(node, Mapping) else node if isinstance(node, list) else None
        if children is None:
            continue
        if depth > limit:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (Mapping, list)))
    return False


def _check_depth(endpoint: Endpoint, value: Any) -> None:
    if too_deep(value):
        raise OpenAIUsageResponseError(
            f"{endpoint.key}: a result carries a field nested deeper than {MAX_JSON_DEPTH} levels; no usage "
            "field has that shape, so nothing of this answer is written"
        )


def _check_present(endpoint: Endpoint, results: list[Any], path: tuple[str, ...]) -> None:
    """A nested metric (costs' ``amount.value``) is what a result is for: one without it is not null, it is wrong."""
    for result in results:
        node: Any = result
        for part in path:
            if not isinstance(node, Mapping) or part not in node:
                raise OpenAIUsageResponseError(
                    f"{endpoint.key}: a result has no {'.'.join(path)} ({canonical_json(result)[:200]}); a result without "
                    "its amount cannot be told from a free one, so nothing of this answer is written"
                )
            node = node[part]


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
    if isinstance(value, str) and not _NUMBER_TEXT.fullmatch(value):
        if value.strip().lstrip("+-").lower() in ("nan", "snan", "inf", "infinity"):
            raise _not_finite(column, value)
        raise OpenAIUsageResponseError(f"{column}={value!r} is not a number")
    try:
        # Strings and Decimals convert exactly; a float (only NaN/Infinity from JSON parsing) via its repr.
        return Decimal(value) if isinstance(value, (str, int)) else Decimal(str(value))
    except InvalidOperation:
        raise OpenAIUsageResponseError(f"{column}={value!r} is not a number") from None



def _not_finite(column: str, value: Any) -> OpenAIUsageResponseError:
    return OpenAIUsageResponseError(
        f"{column}={value!r} is not a finite number; OpenAI's answer cannot be usage, so nothing of it is written"
    )


def _typed(values: list[Any], column: Column) -> list[Any]:
    kind = column.type
    types = set(map(type, values))
    if kind == "decimal":
        if not types <= {Decimal, _NONE}:
            values = [v if v is None or type(v) is Decimal else _to_decimal(v, column.name) for v in values]
        for v in values:
            if v is not None and not v.is_finite():
                raise _not_finite(column.name, v)
        return values
    if kind == "int64":
        if not types <= {int, _NONE}:
            for v in values:
                if v is None:
                    continue
                if isinstance(v, bool) or not isinstance(v, (int, Decimal)):
                    raise OpenAIUsageResponseError(f"{column.name}={v!r} is not an integer")
                if isinstance(v, Decimal) and not v.is_finite():
                    raise _not_finite(column.name, v)
                if int(v) != v:
                    raise OpenAIUsageResponseError(f"{column.name}={v!r} is not an integer")
            values = [None if v is None else int(v) for v in values]
        _check_int64(values, column)
        return values
    if kind == "bool":
        if not types <= {bool, _NONE}:
            bad = next(v for v in values if v is not None and type(v) is not bool)
            raise OpenAIUsageResponseError(f"{column.name}={bad!r} is not a boolean")
        return values
    if types <= {str, _NONE}:
        return values
    bad = next(v for v in values if v is not None and type(v) is not str)
    shown = canonical_json(bad) if isinstance(bad, (dict, list, bool, int, Decimal)) else repr(bad)
    raise OpenAIUsageResponseError(
        f"{column.name}={shown} is not a string ({type(bad).__name__}); OpenAI's answer changed shape, so nothing of it is written"
    )


def _check_int64(values: list[Any], column: Column) -> None:
    present = [v for v in values if v is not None] if None in values else values
    if present and (min(present) < INT64_MIN or max(present) > INT64_MAX):
        bad = next(v for v in present if not INT64_MIN <= v <= INT64_MAX)
        raise OpenAIUsageResponseError(f"{column.name}={bad} does not fit a 64-bit integer column; nothing of it is written")


def bucket_columns(endpoint: Endpoint, bucket: Mapping[str, Any], *, arrow_checks_int64: bool = False) -> tuple[int, dict[str, list[Any]]]:
    """(number of rows, column name → values) for one bucket, in registry column order.

    ``arrow_checks_int64``: the caller turns the columns into typed Arrow arrays, which refuse an int
    outside int64 naming the column and value (``storage.formats.table_from_columns``), so typed
    results skip the same check in Python.
    """
    results = bucket_results(bucket)
    if is_typed(endpoint, results):
        n, columns = _typed_columns(endpoint, bucket, results, check_int64=not arrow_checks_int64)
    else:
        n, columns = _dict_columns(endpoint, bucket, results)
    if n > 1 and _repeats(endpoint, n, columns):
        raise _duplicate(endpoint, bucket, n, columns)
    return n, columns


def _typed_columns(
    endpoint: Endpoint, bucket: Mapping[str, Any], results: list[Any], *, check_int64: bool
) -> tuple[int, dict[str, list[Any]]]:
    """Results msgspec already typed (``page_decoding``): read by attribute; only the int64 range is left to check."""
    n = len(results)
    columns: dict[str, list[Any]] = {"start_time": [bucket["start_time"]] * n, "end_time": [bucket["end_time"]] * n}
    for column in endpoint.columns:
        if column.role == "extra":
            columns[column.name] = [None] * n  # a field the registry does not type sends the page the dict way
            continue
        values = list(map(attrgetter(column.path[0]), results))
        if check_int64 and column.type == "int64":
            _check_int64(values, column)
        columns[column.name] = values
    return n, columns


def _dict_columns(endpoint: Endpoint, bucket: Mapping[str, Any], raw: list[Any]) -> tuple[int, dict[str, list[Any]]]:
    results, extras = _normalized(endpoint, raw)
    n = len(results)
    columns: dict[str, list[Any]] = {"start_time": [bucket["start_time"]] * n, "end_time": [bucket["end_time"]] * n}
    for column in endpoint.columns:
        if column.role == "extra":
            columns[column.name] = extras if extras is not None else [None] * n
            continue
        path = column.path
        if len(path) == 1:
            values = list(map(dict.get, results, repeat(path[0])))
        else:
            values = [_dig(r, path) for r in results]
            if column.role == "metric":
                _check_present(endpoint, results, path)
        columns[column.name] = _typed(values, column)
    return n, columns


def _repeats(endpoint: Endpoint, n: int, columns: dict[str, list[Any]]) -> bool:
    """Does a result repeat exactly? Groups are usually distinct, so the dimensions alone settle it."""
    if len(set(zip(*(columns[d.name] for d in endpoint.dimensions), strict=True))) == n:
        return False
    return len(set(zip(*columns.values(), strict=True))) < n


def _duplicate(endpoint: Endpoint, bucket: Mapping[str, Any], n: int, columns: dict[str, list[Any]]) -> OpenAIUsageResponseError:
    seen: set[tuple[Any, ...]] = set()
    for row in zip(*columns.values(), strict=True):
        if row in seen:
            shown = {k: json_safe(v) for k, v in zip(columns, row, strict=True) if v is not None and k not in ("start_time", "end_time")}
            break
        seen.add(row)
    return OpenAIUsageResponseError(
        f"{endpoint.key}: bucket {bucket.get('start_time')}–{bucket.get('end_time')} holds the same result twice ({shown}); "
        "summing it would count that usage double, so nothing of this answer is written. Re-run later; if OpenAI keeps "
        "sending it, report the duplicate to OpenAI"
    )


def sort_columns(endpoint: Endpoint, n: int, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """Order a bucket's rows by its dimensions, whatever order the API sent (byte-identical files)."""
    active = [columns[d.name] for d in endpoint.dimensions if columns[d.name].count(None) != n]
    if n < 2 or not active:
        return columns
    if any(None in col for col in active):
        order = sorted(range(n), key=lambda i: tuple((col[i] is None, str(col[i])) for col in active))
    else:
        keys = list(zip(*active, strict=True))  # no nulls: plain tuple comparison, in C
        order = sorted(range(n), key=keys.__getitem__)
    if order == list(range(n)):
        return columns
    return {name: [values[i] for i in order] for name, values in columns.items()}


def rows_of(columns: dict[str, list[Any]]) -> list[dict[str, Any]]:
    names = list(columns)
    return [dict(zip(names, values, strict=True)) for values in zip(*columns.values(), strict=True)]


def bucket_rows(endpoint: Endpoint, bucket: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
    """One flat dict per result: bucket times, then the endpoint's columns; ``object`` dropped."""
    _, columns = bucket_columns(endpoint, bucket)
    yield from rows_of(columns)


def metric_totals(endpoint: Endpoint, columns: Mapping[str, Sequence[Any]]) -> dict[str, Any]:
    """Sum of each metric column (nulls skipped; ints stay ints, amounts stay Decimals): the one summing rule."""
    return {c.name: column_total(columns[c.name]) for c in endpoint.metric_columns}


def column_total(values: Iterable[Any]) -> Any:
    """One metric column's sum: nulls skipped, ints stay ints, amounts stay exact Decimals (0 when empty)."""
    return sum(v for v in values if v is not None)


def add_totals(into: dict[str, Any], more: Mapping[str, Any]) -> dict[str, Any]:
    """Add one set of totals to another, in place (per day totals → range totals)."""
    for name, value in more.items():
        into[name] = into.get(name, 0) + value
    return into
