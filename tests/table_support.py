"""Helpers shared by the table-sink tests: read a landed Delta/Iceberg table with the engine's own
library, read the file partitions of the same dataset, and put both in one comparable shape."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

from conftest import ORG_DIR

TABLE_FORMATS = ("delta", "iceberg")


def read_table(root: Path, table_format: str, dataset: str):
    """The table's current rows as Arrow, read by deltalake / pyiceberg (not by our sink code)."""
    if table_format == "delta":
        return delta_rows(str(root / "delta" / dataset))
    return iceberg_table(root, dataset).scan().to_arrow()


def delta_rows(uri: str, storage_options: dict | None = None):
    """Through delta-rs's own engine, not ``to_pyarrow_table`` (whose scanner threads can abort the
    process at exit, delta-rs#2184); string views cast back to strings."""
    import pyarrow as pa
    from deltalake import DeltaTable, QueryBuilder

    table = pa.table(QueryBuilder().register("t", DeltaTable(uri, storage_options=storage_options)).execute("SELECT * FROM t").read_all())
    fields = [pa.field(f.name, pa.string()) if pa.types.is_string_view(f.type) else f for f in table.schema]
    return table.cast(pa.schema(fields))


def iceberg_table(root: Path, dataset: str):
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("openai_usage", uri=f"sqlite:///{root}/iceberg/catalog.db", warehouse=f"file://{root}/iceberg")
    return catalog.load_table("openai_usage." + dataset.replace("/", "_"))


def table_version(root: Path, table_format: str, dataset: str) -> Any:
    if table_format == "delta":
        from deltalake import DeltaTable

        return DeltaTable(str(root / "delta" / dataset)).version()
    return iceberg_table(root, dataset).metadata.current_snapshot_id


def _plain(value: Any) -> Any:
    if isinstance(value, dt.datetime):
        return int(value.timestamp())
    if isinstance(value, dt.date):
        return value.isoformat()
    return value


def canonical_rows(table, *, drop=("date",)) -> list[tuple]:
    """Rows as sorted tuples of plain values (timestamps → Unix seconds), columns in name order."""
    names = sorted(n for n in table.column_names if n not in drop)
    rows = [tuple(_plain(r[n]) for n in names) for r in table.select(names).to_pylist()]
    return sorted(rows, key=repr)


def rows_by_day(table) -> dict[str, list[tuple]]:
    out: dict[str, list[tuple]] = {}
    for date in sorted(set(table.column("date").to_pylist())):
        import pyarrow.compute as pc

        out[date.isoformat()] = canonical_rows(table.filter(pc.equal(table.column("date"), date)))
    return out


def file_rows_by_day(root: Path, endpoint: str, org_dir: str = ORG_DIR) -> dict[str, list[tuple]]:
    """The file partitions of ``endpoint`` under ``root`` (one organization), read with pyarrow (days
    without rows left out, as in tables)."""
    import pyarrow.parquet as pq

    out = {}
    for folder in sorted((root / endpoint / org_dir).glob("date=*")):
        rows = canonical_rows(pq.read_table(folder / "data.parquet"), drop=())
        if rows:
            out[folder.name.split("=", 1)[1]] = rows
    return out
