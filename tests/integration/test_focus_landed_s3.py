"""FOCUS from the landed costs on moto's S3: the same objects as a pull of its own, and no costs request."""

from __future__ import annotations

import pendulum

from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator

NOW = 1762732800  # 2025-11-10T00:00:00Z, as tests/conftest.py
DAY = 86400
ACCOUNT = {"billing_account_name": "Test Org"}
CTX = {"data_interval_start": pendulum.from_timestamp(NOW - 5 * DAY, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}


def objects(s3, bucket: str, prefix: str) -> dict[str, bytes]:
    listed = s3.list_objects_v2(Bucket=bucket, Prefix=prefix).get("Contents", [])
    return {o["Key"].removeprefix(prefix): s3.get_object(Bucket=bucket, Key=o["Key"])["Body"].read() for o in listed}


def test_landed_focus_on_s3_equals_the_api_focus(fake_api, conn_id, s3_bucket, moto_server):
    import boto3

    landed, pulled = f"s3://{s3_bucket}/landed", f"s3://{s3_bucket}/pulled"
    OpenAICostsOperator(
        task_id="pull_costs", group_by=["project_id", "api_key_id", "line_item"], output_path=landed, output_conn_id="moto_s3"
    ).execute(CTX)
    OpenAIFocusOperator(task_id="f", output_path=pulled, output_conn_id="moto_s3", **ACCOUNT).execute(CTX)
    fake_api.clear_requests()
    summary = OpenAIFocusOperator(task_id="f", output_path=landed, output_conn_id="moto_s3", source="landed", **ACCOUNT).execute(CTX)
    assert fake_api.requests == [] and len(summary["days"]) == 5
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    data = {k: v for k, v in objects(s3, s3_bucket, "landed/focus/").items() if k.endswith("data.parquet")}
    assert len(data) == 5 and data == {k: v for k, v in objects(s3, s3_bucket, "pulled/focus/").items() if k.endswith("data.parquet")}
