"""Report and alerts on object storage: read from and write to moto's S3 through an Airflow connection."""

from __future__ import annotations

import json
from decimal import Decimal

import pendulum
from report_support import ORG, land

from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator, OpenAISpendReportOperator
from airflow_provider_openai_usage.report.spend import money
from airflow_provider_openai_usage.testing.receivers import WebhookReceiver

CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10), "run_id": "r"}


def test_report_and_alerts_on_s3(s3_bucket: str, moto_server: str, monkeypatch) -> None:
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    base = f"s3://{s3_bucket}/openai"
    land(base, "2025-10-20", "2025-11-10", output_conn_id="moto_s3")
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    for obj in s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"openai/costs/organization={ORG}/date=2025-11-03/")["Contents"]:
        s3.delete_object(Bucket=s3_bucket, Key=obj["Key"])  # a day never landed

    result = OpenAISpendReportOperator(task_id="report", output_path=base, output_conn_id="moto_s3", days=14).execute(CTX)
    assert result["report"] == f"{base}/reports/date=2025-11-09/spend.html", "the conn id stays out of XCom"
    assert result["missing_days"] == ["2025-11-03"]
    html = s3.get_object(Bucket=s3_bucket, Key="openai/reports/date=2025-11-09/spend.html")["Body"].read().decode()
    png = s3.get_object(Bucket=s3_bucket, Key="openai/reports/date=2025-11-09/spend.png")["Body"].read()
    assert png.startswith(b"\x89PNG")

    # Oracle: the month's objects summed in plain Python.
    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket, Prefix=f"openai/costs/organization={ORG}/date=2025-11-")["Contents"]]
    mtd = Decimal(0)
    for key in keys:
        if key.split("date=")[1][:10] <= "2025-11-09":
            table = pq.read_table(pa.BufferReader(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()))
            mtd += sum(table.column("amount_value").to_pylist(), Decimal(0))
    assert result["month_to_date"] == format(mtd.normalize(), "f")
    assert f'id="mtd-total">{money(mtd, "usd")}<' in html

    with WebhookReceiver() as hook:
        monkeypatch.setenv("AIRFLOW_CONN_HOOK", hook.connection_json())
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        rules = [{"name": "mtd", "kind": "month_to_date", "threshold": "1"}]
        for _ in range(2):
            OpenAISpendAlertOperator(
                task_id="alerts", output_path=base, output_conn_id="moto_s3", rules=rules,
                notifiers=[SlackWebhookNotifier(slack_webhook_conn_id="hook", text="{{ spend_alert.message }}")],
            ).execute(CTX)
        assert len(hook.messages) == 1
        assert f"Report: {base}/reports/date=2025-11-09/spend.html" in hook.messages[0]["text"]
    marker = json.loads(s3.get_object(Bucket=s3_bucket, Key=f"openai/alerts/mtd/organization={ORG}/_organization/2025-11.json")["Body"].read())
    assert marker["delivered"] == ['airflow.providers.slack.notifications.slack_webhook.SlackWebhookNotifier(slack_webhook_conn_id="hook")'] and marker["amount"] == format(mtd.normalize(), "f")


def test_move_to_organization_on_s3_copies_then_deletes_and_a_rerun_finishes_a_half_done_move(s3_bucket: str, moto_server: str) -> None:
    """On an object store the move is copy then delete: cut short after copying a day, the next run
    finds that day in both places byte for byte, deletes the old copy and moves the rest."""
    import argparse
    import io

    import boto3

    from airflow_provider_openai_usage.cli import EXIT_OK, run_move, run_verify
    from airflow_provider_openai_usage.organization_move import move_to_organization
    from airflow_provider_openai_usage.storage import output_location

    base = f"s3://{s3_bucket}/moving"
    land(base, "2025-11-05", "2025-11-08", endpoints=("costs",), output_conn_id="moto_s3")
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def objects(prefix: str) -> dict[str, bytes]:
        listed = s3.list_objects_v2(Bucket=s3_bucket, Prefix=prefix).get("Contents", [])
        return {o["Key"][len(prefix):]: s3.get_object(Bucket=s3_bucket, Key=o["Key"])["Body"].read() for o in listed}

    # Put the lake back in the single-organization layout, as an older release wrote it.
    landed = objects(f"moving/costs/organization={ORG}/")
    for rel, body in landed.items():
        s3.put_object(Bucket=s3_bucket, Key=f"moving/costs/{rel}", Body=body)
        s3.delete_object(Bucket=s3_bucket, Key=f"moving/costs/organization={ORG}/{rel}")
    # A move cut short: one day already copied to the organization's folder, not yet deleted.
    half = [rel for rel in landed if rel.startswith("date=2025-11-06/")]
    for rel in half:
        s3.put_object(Bucket=s3_bucket, Key=f"moving/costs/organization={ORG}/{rel}", Body=landed[rel])
    plan = move_to_organization(output_location(base, "moto_s3"), ORG, dry_run=True)
    assert plan.datasets[0].finished == ["2025-11-06"] and objects("moving/costs/date=2025-11-06/"), "a dry run moves nothing"

    args = argparse.Namespace(output_path=base, output_conn_id="moto_s3", organization_id=ORG, dry_run=False, output="table",
                              dataset=None)
    out = io.StringIO()
    assert run_move(args, out) == EXIT_OK
    assert "moved costs: 3 day(s) and _openai_usage" in out.getvalue() and "1 already copied" in out.getvalue()
    assert objects(f"moving/costs/organization={ORG}/") == landed, "every object, byte for byte, in its new place"
    assert [k for k in objects("moving/costs/") if not k.startswith("organization=")] == []
    verify = io.StringIO()
    assert run_verify(argparse.Namespace(**{**vars(args), "organization_id": [ORG]}), verify) == EXIT_OK, verify.getvalue()
    assert "3 day files checked, 0 problem(s)" in verify.getvalue()
