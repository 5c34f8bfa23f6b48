"""storage/delta.py: where the Delta table lives, what its versions record, the object store's
settings from the output connection, and the extra named when deltalake is missing."""

from __future__ import annotations

import json
import sys

import pytest
from conftest import DAY, NOW
from storage_support import object_path, write

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.storage.delta import storage_options, table_uri


def test_the_table_is_a_folder_under_output_path_whose_first_version_records_the_identity(fake_api, conn_id, tmp_path):
    from deltalake import DeltaTable

    write(tmp_path, NOW - 2 * DAY, NOW, endpoint="costs", table_format="delta")
    assert table_uri(object_path(tmp_path), "costs") == str(tmp_path / "delta" / "costs")
    first = DeltaTable(str(tmp_path / "delta" / "costs"), version=0)
    identity = json.loads(first.metadata().configuration["openai_usage.identity"])
    assert identity["dataset"] == "costs" and identity["format"] == "delta" and identity["bucket_width"] == "1d"
    assert first.metadata().partition_columns == ["date"]
    last = DeltaTable(str(tmp_path / "delta" / "costs")).history(1)[0]
    assert last["openai_usage.days"] == "2025-11-08,2025-11-09" and last["operationParameters"]["mode"] == "Overwrite"


def test_s3_settings_come_from_the_output_connection(monkeypatch):
    from airflow.sdk import ObjectStoragePath

    monkeypatch.setenv("AIRFLOW_CONN_LAKE", json.dumps({
        "conn_type": "aws", "login": "AKIA-TEST", "password": "s3cret/+=",
        "extra": {"endpoint_url": "http://127.0.0.1:9", "region_name": "eu-west-1"}}))
    location = ObjectStoragePath("s3://bucket/openai", conn_id="lake")
    assert table_uri(location, "costs") == "s3://bucket/openai/delta/costs"
    assert storage_options(location) == {
        "AWS_ACCESS_KEY_ID": "AKIA-TEST", "AWS_SECRET_ACCESS_KEY": "s3cret/+=", "AWS_ENDPOINT_URL": "http://127.0.0.1:9",
        "AWS_ALLOW_HTTP": "true", "AWS_REGION": "eu-west-1",
    }
    assert storage_options(object_path(__import__("pathlib").Path("/tmp"))) == {}


def test_without_deltalake_the_error_names_the_extra(monkeypatch, tmp_path):
    from airflow_provider_openai_usage.endpoints import ENDPOINTS
    from airflow_provider_openai_usage.storage.delta import DeltaSink
    from airflow_provider_openai_usage.storage.usage import arrow_schema

    monkeypatch.setitem(sys.modules, "deltalake", None)
    sink = DeltaSink(object_path(tmp_path), "costs", arrow_schema(ENDPOINTS["costs"]))
    with pytest.raises(OpenAIUsageValidationError, match=r"table_format='delta' needs the deltalake package: .*\[delta\]"):
        sink.prepare({"dataset": "costs"})
