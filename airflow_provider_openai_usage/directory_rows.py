"""Admin API objects → flat, typed directory rows; and the checks that keep keys and wrong data out.

A row holds the entity's registry columns in order: per-project entities start with
``project_id``, then ``id`` and, where the API has one, ``name``. Timestamps stay Unix seconds in
rows (as the API sends them) and become ``timestamp`` columns in Parquet.

Secrets: the only form of an API key a row may hold is a *redacted* value (``sk-abc...xyz``). A
full key anywhere in an answer (a ``redacted_value`` that is not redacted, a key pasted into a
name or an id, the connection's own admin key) is replaced by ``sk-...[redacted]`` before the row
exists, and one warning names the entity and the fields, never the key. The snapshot is not
refused: anyone in the organization can put a key-shaped string in a name, and refusing would let
them block every snapshot. A *name* shaped like a key (``sk-proj-`` and then words such as
``backend-prod-service-key``, no random run) is kept as it is (``looks_like_key``).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.directory import FROM_PROJECT, DirectoryColumn, Entity
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

#: A candidate for an unredacted OpenAI key: ``sk-`` then a long run of key characters with no
#: redaction mark. ``sk-admin...def`` or ``sk-proj-****abcd`` do not match (the run is cut short).
FULL_KEY_RE = re.compile(r"sk-[A-Za-z0-9_-]{20,}")
#: What a real key has and a name does not: a random run of letters and digits (OpenAI's keys are
#: base64url, so 16+ characters between two separators, a digit among them).
_RANDOM_RUN = re.compile(r"(?=[A-Za-z0-9]*[0-9])[A-Za-z0-9]{16,}")
#: What a full key is replaced by (not itself key-shaped: '.' and '[' cut the run).
REDACTED = "sk-...[redacted]"
_MISSING = object()
log = logging.getLogger(__name__)


def looks_like_key(text: str) -> bool:
    """A key-shaped candidate that holds a random run (a key), not only words (a name)."""
    return _RANDOM_RUN.search(text) is not None


def scrub_text(text: str, secrets: tuple[str, ...] = ()) -> str:
    """``text`` with every full key (and every one of ``secrets``) replaced by ``REDACTED``."""
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, REDACTED)
    if "sk-" not in text:
        return text
    return FULL_KEY_RE.sub(lambda m: REDACTED if looks_like_key(m.group()) else m.group(), text)


def scrub_full_keys(value: Any, secrets: tuple[str, ...] = (), path: str = "", found: list[str] | None = None) -> Any:
    """``value`` (an API object) with every full key in any string replaced; ``found`` gets each field's path."""
    if isinstance(value, str):
        clean = scrub_text(value, secrets)
        if clean != value and found is not None:
            found.append(path)
        return clean
    if isinstance(value, Mapping):
        return {k: scrub_full_keys(v, secrets, f"{path}.{k}" if path else str(k), found) for k, v in value.items()}
    if isinstance(value, list):
        return [scrub_full_keys(v, secrets, f"{path}[{i}]", found) for i, v in enumerate(value)]
    return value


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
    found: list[str] = []
    obj = scrub_full_keys(obj, secrets, found=found)
    if found:
        log.warning(
            "%s: field(s) %s of object %r held what looks like a full API key; stored as %r. Report it to OpenAI "
            "and rotate the key if it is real", entity.key, ", ".join(found), obj.get("id"), REDACTED,
        )
    if obj.get("object") != entity.object:
        raise OpenAIUsageResponseError(
            f"{entity.key}: item object {obj.get('object')!r} is not {entity.object!r}; the API answered for another "
            "path or changed shape, so nothing is written"
        )
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


def arrow_schema(entity: Entity, file_format: str = "parquet", *, organization: bool = False) -> pa.Schema:
    """Typed from the registry, identical for every snapshot of an entity, empty ones included.

    A CSV cell holds no list: there a list of strings is one JSON array text (``["a","b"]``).
    ``organization=True`` (what the directory operator writes, issue #29): a last column
    ``organization_id``, the organization the snapshot was read from.
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
    fields = [pa.field(c.name, types[c.type], nullable=c.name != "id") for c in entity.columns]
    if organization:
        from airflow_provider_openai_usage.organizations import ORGANIZATION_COLUMN

        fields.append(pa.field(ORGANIZATION_COLUMN, pa.string()))
    return pa.schema(fields)


def rows_table(
    entity: Entity, rows: list[dict[str, Any]], file_format: str = "parquet", *, organization_id: str | None = None
) -> pa.Table:
    """Rows (Unix-second timestamps) → an Arrow table of the entity's schema for ``file_format``;
    with ``organization_id``, every row carries it (the last column)."""
    import json

    import pyarrow as pa

    schema = arrow_schema(entity, file_format, organization=organization_id is not None)
    if organization_id is not None:
        rows = [{**row, "organization_id": organization_id} for row in rows]
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


def read_snapshot(path: ObjectStoragePath, entity: Entity) -> pa.Table:
    """A landed snapshot file of ``entity`` in any of its formats (text formats carry no types, so
    they are read with the entity's own schema for that format)."""
    from airflow_provider_openai_usage.storage import read_day_table

    file_format = path.name.rsplit(".", 1)[-1]
    return read_day_table(path, None if file_format == "parquet" else arrow_schema(entity, file_format))
