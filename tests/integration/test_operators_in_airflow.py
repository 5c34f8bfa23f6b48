"""Operators inside real Airflow runs (sqlite, task runner, XCom) into file:// and moto's S3."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pendulum
import pytest
from conftest import NOW, ORG_DIR

DAG_TEMPLATE = '''
import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAICompletionsUsageOperator

with DAG(
    "{dag_id}",
    schedule={schedule},
    start_date=pendulum.datetime(2025, 10, 1, tz="{tz}"),
    catchup=False,
):
    OpenAICostsOperator(task_id="costs", output_path="{output}", output_conn_id={conn}, group_by=["project_id", "line_item"])
    OpenAICompletionsUsageOperator(task_id="completions", output_path="{output}", output_conn_id={conn}, group_by=["project_id", "model"])
'''


def dag_source(dag_id: str, output: str, schedule: str = 'CronDataIntervalTimetable("@daily", timezone="UTC")', tz: str = "UTC", conn: str | None = None) -> str:
    return DAG_TEMPLATE.format(dag_id=dag_id, output=output, schedule=schedule, tz=tz, conn=repr(conn))


def test_a_daily_run_writes_the_interval_that_ends_at_the_logical_date(fake_api, conn_id, run_dag, tmp_path):
    dr, states = run_dag(dag_source("daily_file", f"file://{tmp_path}"), "daily_file", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"costs": "success", "completions": "success"}
    # `dags test D` on an interval timetable runs [D - 1 day, D).
    assert (tmp_path / "costs" / ORG_DIR / "date=2025-11-09" / "data.parquet").exists()
    assert (tmp_path / "completions" / ORG_DIR / "date=2025-11-09" / "data.parquet").exists()
    summary = dr.get_task_instance("costs").xcom_pull(task_ids="costs")
    assert list(summary["days"]) == ["2025-11-09"]


def test_a_plain_daily_cron_schedule_fails_with_the_timetable_hint(fake_api, conn_id, run_dag, tmp_path, capsys):
    dr, states = run_dag(dag_source("zero_len", f"file://{tmp_path}", schedule='"@daily"'), "zero_len", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states["costs"] == "failed"
    assert "CronDataIntervalTimetable" in capsys.readouterr().out
    assert fake_api.requests == [] and not list(tmp_path.rglob("*.parquet"))


def test_s3_output_through_an_airflow_aws_connection(fake_api, conn_id, run_dag, s3_bucket, moto_server):
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    dr, states = run_dag(dag_source("daily_s3", f"s3://{s3_bucket}/openai", conn="moto_s3"), "daily_s3", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"costs": "success", "completions": "success"}
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    all_keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    keys = [k for k in all_keys if "/date=" in k and "/_openai_usage/" not in k]
    assert keys == [f"openai/completions/{ORG_DIR}/date=2025-11-09/data.parquet", f"openai/costs/{ORG_DIR}/date=2025-11-09/data.parquet"]
    # Beside the data: one manifest per day, no temporary object left.
    assert sorted(set(all_keys) - set(keys)) == [f"openai/{e}/{ORG_DIR}/_openai_usage/manifests/date=2025-11-09.json" for e in ("completions", "costs")]
    body = s3.get_object(Bucket=s3_bucket, Key=keys[1])["Body"].read()
    table = pq.read_table(pa.BufferReader(body))
    summary = dr.get_task_instance("costs").xcom_pull(task_ids="costs")
    assert table.num_rows == summary["days"]["2025-11-09"]["rows"] > 0
    assert summary["output"] == f"s3://{s3_bucket}/openai/costs/{ORG_DIR}", "the conn id stays out of XCom"


def test_s3_rerun_replaces_objects_with_identical_bytes(fake_api, conn_id, s3_bucket, moto_server):
    import boto3

    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

    op = OpenAIUsageOperator(task_id="t", endpoint="images", output_path=f"s3://{s3_bucket}/u", output_conn_id="moto_s3", group_by=["size"])
    context = {"data_interval_start": pendulum.from_timestamp(NOW - 3 * 86400, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def snapshot() -> dict:
        return {o["Key"]: o["ETag"] for o in s3.list_objects_v2(Bucket=s3_bucket).get("Contents", [])}

    op.execute(context)
    first = snapshot()
    op.execute(context)
    assert snapshot() == first and len([k for k in first if k.endswith("/data.parquet")]) == 3


@pytest.fixture
def metastore_fake_api():
    """Its own key: a key stored in the metastore stays in sqlite's free pages after deletion, and the
    secrets test greps the whole database for the sentinel key."""
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

    with FakeOpenAIUsageAPI(key="sk-admin-metastore-only-key", seed=7, now=NOW) as api:
        yield api


def test_connections_from_the_metastore_and_a_secrets_backend_work(metastore_fake_api, run_dag, tmp_path, monkeypatch):
    """The UI stores connections in the metastore; a run resolves them through the execution API."""
    from airflow.models import Connection
    from airflow.utils.session import create_session

    fake_api = metastore_fake_api

    with create_session() as session:
        session.query(Connection).filter(Connection.conn_id == "openai_usage_default").delete()
        session.add(Connection(conn_id="openai_usage_default", conn_type="openai_usage", host=fake_api.base_url, password=fake_api.key,
                               extra=json.dumps({"organization_id": fake_api.organization.organization_id})))
    monkeypatch.delenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", raising=False)
    try:
        dr, states = run_dag(dag_source("from_db", f"file://{tmp_path}"), "from_db", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    finally:
        with create_session() as session:
            session.query(Connection).filter(Connection.conn_id == "openai_usage_default").delete()
    assert states == {"costs": "success", "completions": "success"}
    assert len(fake_api.requests) == 2

    secrets = tmp_path / "connections.json"
    secrets.write_text(json.dumps({"from_file": {"conn_type": "openai_usage", "host": fake_api.base_url, "password": fake_api.key}}))
    code = (
        "from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook; "
        "ok, msg = OpenAIUsageHook('from_file').test_connection(); print(ok)"
    )
    env = {**os.environ, "AIRFLOW__SECRETS__BACKEND": "airflow.secrets.local_filesystem.LocalFilesystemBackend",
           "AIRFLOW__SECRETS__BACKEND_KWARGS": json.dumps({"connections_file_path": str(secrets)})}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "True", out.stderr[-2000:]
