"""Admin API objects → flat, typed directory rows; and the checks that keep keys and wrong data out.

A row holds the entity's registry columns in order: per-project entities start with
``project_id``, then ``id`` and, where the API has one, ``name``. Timestamps stay Unix seconds in
rows (as the API sends them) and become ``timestamp`` columns in Parquet.

Secrets: the only form of an API key a row may hold is a *redacted* value (``sk-abc...xyz``). An
answer that carries a full key anywhere (a ``redacted_value`` that is not redacted, a key pasted
into a name, the connection's own admin key) is refused whole, and the error never repeats it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.directory import FROM_PROJECT, DirectoryColumn, Entity
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError

if TYPE_CHECKING:
    import pyarrow as pa

#: What an unredacted OpenAI key looks like: ``sk-`` then a long run of key characters with no
#: redaction mark. ``sk-admin...def`` or ``sk-proj-****abcd`` do not match (the run is cut short).
FULL_KEY_RE = re.compile(r"sk-[A-Za-z0-9_-]{20,}")
_MISSING = object()


def _walk_strings(value: Any, path: str = "") -> Iterator[tuple[str, str]]:
    if isinstance(value, str):
        yield path, value
    elif isinstance(value, Mapping):
        for k, v in value.items():
            yield from _walk_strings(v, f"{path}.{k}" if path else str(k))
    elif isinstance(value, list):
        for i, v in enumerate(value):
            yield from _walk_strings(v, f"{path}[{i}]")


def refuse_full_keys(entity: Entity, obj: Any, secrets: tuple[str, ...] = ()) -> None:
    """Refuse an object carrying a full API key (or one of ``secrets``) in any field, named by field only."""
    for path, text in _walk_strings(obj):
        if FULL_KEY_RE.search(text) or any(s and s in text for s in secrets):
            ident = obj.get("id") if isinstance(obj, Mapping) else None
            raise OpenAIUsageResponseError(
                f"{entity.key}: field {path!r} of object {ident!r} holds what looks like a full API key; a directory "
                "stores only redacted values, so nothing from this answer is written. Report it to OpenAI and "
                "rotate the key if it is real"
            )


def _value(obj: Mapping[str, Any], column: DirectoryColumn, project_id: str | None) -> Any:
    for path in column.paths:
        if path == (FROM_PROJECT,):
            return project_id
        node: Any = obj
        for part in path:
            node = node.get(part, _MISSING) if isinstance(node, Mapping) else _MISSING
            if node is _MISSING:
                break
        if node is not _MISSING:
            return node
    return None


def _type_ok(column: DirectoryColumn, value: Any) -> bool:
    if value is None:
        return True
    if column.type == "string":
        return isinstance(value, str)
    if column.type in ("int64", "timestamp"):
        return isinstance(value, int) and not isinstance(value, bool) and -(2**63) <= value < 2**63
    if column.type == "bool":
        return isinstance(value, bool)
    return isinstance(value, list) and all(isinstance(v, str) for v in value)  # strings


def object_row(entity: Entity, obj: Any, project_id: str | None = None, *, secrets: tuple[str, ...] = ()) -> dict[str, Any]:
    """One API object → one flat row in registry column order, every value checked against its type."""
    if not isinstance(obj, Mapping):
        raise OpenAIUsageResponseError(f"{entity.key}: an item is {type(obj).__name__}, expected an object")
    if obj.get("object") != entity.object:
        raise OpenAIUsageResponseError(
            f"{entity.key}: item object {obj.get('object')!r} is not {entity.object!r}; the API answered for another "
            "path or changed shape, so nothing is written"
        )
    refuse_full_keys(entity, obj, secrets)
    row: dict[str, Any] = {}
    for column in entity.columns:
        value = _value(obj, column, project_id)
        if not _type_ok(column, value):
            raise OpenAIUsageResponseError(
                f"{entity.key}: {column.name}={value!r} of object {obj.get('id')!r} is not a {column.type}; nothing is written"
            )
        row[column.name] = value
    if not isinstance(row.get("id"), str) or not row["id"]:
        raise OpenAIUsageResponseError(f"{entity.key}: an item has no id; refusing a row that names nothing")
    return row


def arrow_schema(entity: Entity, file_format: str = "parquet") -> pa.Schema:
    """Typed from the registry, identical for every snapshot of an entity, empty ones included.

    A CSV cell holds no list: there a list of strings is one JSON array text (``["a","b"]``).
    """
    import pyarrow as pa

    types = {
        "string": pa.string(),
        "int64": pa.int64(),
        "bool": pa.bool_(),
        # Milliseconds like the usage partitions: Parquet has no seconds unit.
        "timestamp": pa.timestamp("ms", tz="UTC"),
        "strings": pa.string() if file_format == "csv" else pa.list_(pa.string()),
    }
    return pa.schema([pa.field(c.name, types[c.type], nullable=c.name != "id") for c in entity.columns])


def rows_table(entity: Entity, rows: list[dict[str, Any]], file_format: str = "parquet") -> pa.Table:
    """Rows (Unix-second timestamps) → an Arrow table of the entity's schema for ``file_format``."""
    import json

    import pyarrow as pa

    schema = arrow_schema(entity, file_format)
    lists = {c.name for c in entity.columns if c.type == "strings"}
    columns: dict[str, Any] = {}
    for field in schema:
        values = [row[field.name] for row in rows]
        if field.name in lists and pa.types.is_string(field.type):
            columns[field.name] = pa.array([None if v is None else json.dumps(v) for v in values], type=field.type)
        elif pa.types.is_timestamp(field.type):
            columns[field.name] = pa.array(values, type=pa.timestamp("s", tz="UTC")).cast(field.type)
        else:
            columns[field.name] = pa.array(values, type=field.type)
    return pa.Table.from_pydict(columns, schema=schema)
