"""The directory operator in real Airflow (DagBag + dag.test, XCom, templates) into a real S3 server (moto)."""

from __future__ import annotations

import json

from conftest import ORG_DIR

from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

DAG_SOURCE = """
import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator

with DAG(
    "directory_to_s3",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=pendulum.datetime(2025, 11, 1, tz="UTC"),
    params={"entities": ["projects", "project_api_keys", "project_spend_limits"]},
):
    OpenAIDirectoryOperator(
        task_id="snapshot",
        entities="{{ params.entities }}",
        output_path="s3://BUCKET/openai",
        output_conn_id="moto_s3",
    )
"""


def test_a_daily_run_snapshots_the_directory_into_s3_under_the_interval_end(fake_api, conn_id, s3_bucket, run_dag):
    import pendulum
    import pyarrow.parquet as pq
    from airflow.sdk import ObjectStoragePath

    dr, states = run_dag(DAG_SOURCE.replace("BUCKET", s3_bucket), "directory_to_s3", logical_date=pendulum.datetime(2025, 11, 10, tz="UTC"))
    assert states == {"snapshot": "success"}
    summary = dr.get_task_instance("snapshot").xcom_pull(task_ids="snapshot")
    assert summary["snapshot_date"] == "2025-11-10" and set(summary["entities"]) == {"projects", "project_api_keys", "project_spend_limits"}
    json.dumps(summary)  # XCom holds plain JSON
    assert summary["output"] == f"s3://{s3_bucket}/openai/directory", "the conn id stays out of XCom"
    root = ObjectStoragePath(f"s3://{s3_bucket}/openai/directory", conn_id="moto_s3")
    hook = OpenAIUsageHook(conn_id)
    for entity in summary["entities"]:
        files = sorted(p.path for p in (root / entity).rglob("data.parquet"))
        assert files == [f"{s3_bucket}/openai/directory/{entity}/{ORG_DIR}/date=2025-11-10/data.parquet"], files
        with (root / entity / ORG_DIR / "date=2025-11-10" / "data.parquet").open("rb") as fh:
            table = pq.read_table(fh)
        assert table.num_rows == sum(1 for _ in hook.iter_directory(entity)) == summary["entities"][entity]["rows"]
