"""storage/iceberg.py: the table's identifier, the SQL catalog from a connection (credentials quoted,
other connection types refused), the files the sink writes and how the table maps their columns."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import DAY, NOW
from storage_support import object_path, write
from table_support import iceberg_table

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.storage.iceberg import NAME_MAPPING, _catalog_uri, table_identifier


def test_a_dataset_s_table_identifier():
    assert table_identifier("costs") == "openai_usage.costs"
    assert table_identifier("directory/project_users") == "openai_usage.directory_project_users"


def test_the_catalog_comes_from_a_postgres_or_sqlite_connection_with_its_credentials_quoted(monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_CAT", json.dumps(
        {"conn_type": "postgres", "host": "db.internal", "port": 5433, "login": "ice", "password": "p@ss:w/rd#1", "schema": "lake"}))
    assert _catalog_uri(object_path(tmp_path), "cat", "x") == "postgresql+psycopg2://ice:p%40ss%3Aw%2Frd%231@db.internal:5433/lake"
    monkeypatch.setenv("AIRFLOW_CONN_LITE", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "c.db")}))
    assert _catalog_uri(object_path(tmp_path), "lite", "x") == f"sqlite:///{tmp_path / 'c.db'}"
    assert _catalog_uri(object_path(tmp_path), None, "x") == f"sqlite:///{tmp_path / 'iceberg' / 'catalog.db'}"


def test_days_land_as_files_under_the_table_s_data_folder_mapped_by_name(fake_api, conn_id, tmp_path):
    write(tmp_path, NOW - 3 * DAY, NOW, endpoint="costs", table_format="iceberg")
    table = iceberg_table(tmp_path, "costs")
    mapping = json.loads(table.properties[NAME_MAPPING])
    assert {m["names"][0] for m in mapping} >= {"start_time", "amount_value", "date"}
    assert [f.name for f in table.spec().fields] == ["date"]
    files = sorted(p.relative_to(tmp_path / "iceberg") for p in (tmp_path / "iceberg").rglob("*.parquet"))
    assert files and all(str(p).startswith("openai_usage/costs/data/date=2025-11-") for p in files), files
    scanned = table.scan(row_filter="date == '2025-11-09'").to_arrow()
    assert scanned.num_rows > 0 and scanned.column("amount_value").null_count == 0


def test_without_pyiceberg_the_error_names_the_extra(monkeypatch, tmp_path):
    from airflow_provider_openai_usage.endpoints import ENDPOINTS
    from airflow_provider_openai_usage.storage.iceberg import IcebergSink
    from airflow_provider_openai_usage.storage.usage import arrow_schema

    monkeypatch.setitem(sys.modules, "pyiceberg.catalog.sql", None)
    with pytest.raises(OpenAIUsageValidationError, match=r"table_format='iceberg' needs the pyiceberg package: .*\[iceberg\]"):
        IcebergSink(object_path(tmp_path), "costs", arrow_schema(ENDPOINTS["costs"]))


def test_a_writer_that_loses_the_race_to_create_the_namespace_and_table_goes_on(tmp_path, monkeypatch):
    """Two first writers at once (seen in CI: two organizations' first commits): the SQL catalog's
    unique keys refuse the second creator with sqlalchemy's IntegrityError, not pyiceberg's own
    'already exists'; the loser must read the winner's table, not fail. Any other error still raises."""
    import pyarrow as pa
    from pyiceberg.catalog.sql import SqlCatalog
    from sqlalchemy.exc import IntegrityError

    from airflow_provider_openai_usage.storage.sinks import open_table_sink

    schema = pa.schema([pa.field("x", pa.int64())])
    winner = open_table_sink("iceberg", object_path(tmp_path), "costs", schema)
    winner.prepare({"dataset": "costs"})
    loser = open_table_sink("iceberg", object_path(tmp_path), "costs", schema)

    def lost(*args, **kwargs):
        raise IntegrityError("INSERT", {}, Exception("UNIQUE constraint failed: iceberg_namespace_properties"))

    monkeypatch.setattr(SqlCatalog, "create_namespace_if_not_exists", lost)
    monkeypatch.setattr(SqlCatalog, "create_table_transaction", lost)
    loser._create({"dataset": "costs"})  # the race lost twice: both tolerated, the table is there
    fresh = open_table_sink("iceberg", object_path(tmp_path / "empty"), "costs", schema)
    with pytest.raises(IntegrityError):
        fresh._create({"dataset": "costs"})  # nothing exists: the same error is a real one
