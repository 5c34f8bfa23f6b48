"""The demo's tables: costs and completions landed as Delta and Iceberg beside the files, and one
DuckDB query over them (through DuckDB's delta/iceberg extensions installed as Python packages).

Run by ``python -m airflow_provider_openai_usage.testing demo`` after the files are landed; needs
the ``[delta]``/``[iceberg]`` extras (``make setup`` installs them) and, for the query,
``duckdb-extension-delta``, ``duckdb-extension-iceberg`` and ``duckdb-extension-avro``.
"""

from __future__ import annotations

import glob
import os
from pathlib import Path
from typing import Any

#: The endpoint set the demo lands as tables.
TABLE_ENDPOINTS = ("costs", "completions")
GROUP_BY = {"costs": ["project_id", "line_item"], "completions": ["project_id", "model"]}


def write_tables(output: Path, first: Any, end: Any, openai_usage_conn_id: str = "openai_usage_default") -> list[str]:
    """Each of ``TABLE_ENDPOINTS`` of one organization into a Delta and an Iceberg table (every
    organization shares each table: a run replaces its own rows); lines saying what landed."""
    from airflow.sdk.bases.operator import ExecutorSafeguard

    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

    lines = []
    for table_format in ("delta", "iceberg"):
        for endpoint in TABLE_ENDPOINTS:
            operator = OpenAIUsageOperator(
                task_id=f"{endpoint}_{table_format}", endpoint=endpoint, output_path=output.as_uri(), start_time=first,
                end_time=end, group_by=GROUP_BY[endpoint], table_format=table_format, openai_usage_conn_id=openai_usage_conn_id,
            )
            token = ExecutorSafeguard.tracker.set(operator)  # the demo is the task runner here (see demo.write_focus)
            try:
                summary = operator.execute({})
                assert isinstance(summary, dict)  # with output_path: the summary, never rows
            finally:
                ExecutorSafeguard.tracker.reset(token)
            lines.append(
                f"  {table_format:8} {endpoint:12} {summary['organization_id']:30} {summary['rows']:>7} rows, "
                f"{len(summary['days'])} days: {summary['output']}"
            )
    return lines


def duckdb_query(output: Path) -> tuple[str, list[tuple[Any, ...]]]:
    """One query over the Delta table, the Iceberg table and the files of costs: the same total thrice."""
    import duckdb

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    for name in ("delta", "avro", "iceberg"):
        module = __import__(f"duckdb_extension_{name}")
        (path,) = glob.glob(os.path.join(os.path.dirname(module.__file__ or ""), "extensions", "*", f"{name}.duckdb_extension"))
        con.execute("LOAD ?".replace("?", "'" + path.replace("'", "''") + "'"))
    from pyiceberg.catalog.sql import SqlCatalog

    from airflow_provider_openai_usage.storage.iceberg import CATALOG_FILE, ICEBERG_DIR, NAMESPACE

    catalog = SqlCatalog(NAMESPACE, uri=f"sqlite:///{output / ICEBERG_DIR / CATALOG_FILE}", warehouse=(output / ICEBERG_DIR).as_uri())
    metadata = catalog.load_table(f"{NAMESPACE}.costs").metadata_location
    query = (
        "SELECT 'delta' AS sink, count(*) AS rows, sum(amount_value) AS usd FROM delta_scan($delta)\n"
        "UNION ALL SELECT 'iceberg', count(*), sum(amount_value) FROM iceberg_scan($iceberg)\n"
        "UNION ALL SELECT 'files', count(*), sum(amount_value) FROM read_parquet($files)"
    )
    files = output / "costs" / "organization=*" / "date=*" / "data.parquet"  # every organization's days
    params = {"delta": str(output / "delta" / "costs"), "iceberg": metadata, "files": str(files)}
    return query, con.execute(query, params).fetchall()
