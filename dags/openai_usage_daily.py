"""Every UTC day of OpenAI usage and costs, for all 12 endpoints: wait until settled, then land it.

Configuration (read at parse time from the environment, so parsing stays free of network and DB):
- ``OPENAI_USAGE_OUTPUT_PATH``: where partitions land, e.g. ``s3://my-bucket/openai``
  (default: ``demo-output/`` next to this repository's ``dags/`` folder);
- ``OPENAI_USAGE_OUTPUT_CONN_ID``: object-store connection (e.g. ``aws_default``), optional;
- ``OPENAI_USAGE_SETTLE_MINUTES``: how long after a day ends to wait for OpenAI's late revisions (60);
- ``OPENAI_USAGE_START_DATE`` (default 2025-01-01) and ``OPENAI_USAGE_CATCHUP=true``: let the scheduler
  create every missed day since the start date when the DAG is unpaused.

The schedule is an *interval* timetable: a plain ``"@daily"`` gives Airflow 3 runs an empty data
interval. ``airflow dags test openai_usage_daily 2025-10-05`` pulls 2025-10-04 (the day that ends at
the given date). History: ``airflow backfill create --dag-id openai_usage_daily --from-date ... --to-date ...``
or, much faster, the ``openai_usage_backfill`` DAG.
"""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.sensors.usage import OpenAIUsageSensor

#: What a FinOps team slices spend by; each endpoint groups by the ones it allows.
FINOPS_DIMENSIONS = ("project_id", "user_id", "api_key_id", "model", "line_item")
OUTPUT_PATH = os.environ.get("OPENAI_USAGE_OUTPUT_PATH") or (Path(__file__).resolve().parents[1] / "demo-output").as_uri()
OUTPUT_CONN_ID = os.environ.get("OPENAI_USAGE_OUTPUT_CONN_ID") or None
SETTLE = dt.timedelta(minutes=float(os.environ.get("OPENAI_USAGE_SETTLE_MINUTES", "60")))
START_DATE = pendulum.parse(os.environ.get("OPENAI_USAGE_START_DATE", "2025-01-01"), tz="UTC")
CATCHUP = os.environ.get("OPENAI_USAGE_CATCHUP", "false").strip().lower() in ("1", "true", "yes")

with DAG(
    dag_id="openai_usage_daily",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    catchup=CATCHUP,
    max_active_runs=4,
    tags=["openai", "finops"],
    doc_md=__doc__,
) as dag:
    for key, endpoint in ENDPOINTS.items():
        # Costs by user_id together with project_id is answered 400 on some organizations (SDK docs).
        group_by = [d for d in FINOPS_DIMENSIONS if d in endpoint.group_by and (key, d) != ("costs", "user_id")]
        wait = OpenAIUsageSensor(
            task_id=f"wait_{key}",
            endpoint=key,
            group_by=group_by,
            settle_period=SETTLE,
            deferrable=True,
            poke_interval=300,
            timeout=12 * 3600,
        )
        pull = OpenAIUsageOperator(
            task_id=f"pull_{key}",
            endpoint=key,
            group_by=group_by,
            output_path=OUTPUT_PATH,
            output_conn_id=OUTPUT_CONN_ID,
            retries=2,
            retry_delay=dt.timedelta(minutes=5),
        )
        wait >> pull
