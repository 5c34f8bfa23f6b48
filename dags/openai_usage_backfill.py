"""Pull a whole date range per endpoint in one task each: months of history in a few requests.

Trigger it manually with params (UI form or ``airflow dags trigger openai_usage_backfill --conf
'{"start_date": "2025-01-01", "end_date": "2025-06-30"}'``). It writes exactly the partitions the
daily DAG writes (same layout, same bytes), so the two can be mixed freely.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_openai_usage.endpoints import ENDPOINT_KEYS, ENDPOINTS
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

FINOPS_DIMENSIONS = ("project_id", "user_id", "api_key_id", "model", "line_item")
DEFAULT_OUTPUT = os.environ.get("OPENAI_USAGE_OUTPUT_PATH") or (Path(__file__).resolve().parents[1] / "demo-output").as_uri()
_today = pendulum.today("UTC")

with DAG(
    dag_id="openai_usage_backfill",
    schedule=None,
    start_date=pendulum.datetime(2025, 1, 1, tz="UTC"),
    catchup=False,
    tags=["openai", "finops", "backfill"],
    doc_md=__doc__,
    params={
        "start_date": Param(_today.subtract(days=30).to_date_string(), type="string", format="date", description="First UTC day"),
        "end_date": Param(_today.subtract(days=1).to_date_string(), type="string", format="date", description="Last UTC day (inclusive)"),
        "endpoints": Param(list(ENDPOINT_KEYS), type="array", items={"type": "string", "enum": list(ENDPOINT_KEYS)}),
        "output_path": Param(DEFAULT_OUTPUT, type="string", description="s3://..., gs://... or file:///..."),
        "output_conn_id": Param(os.environ.get("OPENAI_USAGE_OUTPUT_CONN_ID", ""), type="string"),
    },
    render_template_as_native_obj=False,
):

    @task
    def endpoints_to_pull(params: dict | None = None) -> list[dict]:
        """One mapped pull per chosen endpoint, grouped like the daily DAG."""
        return [
            {"endpoint": key, "group_by": [d for d in FINOPS_DIMENSIONS if d in ENDPOINTS[key].group_by]}
            for key in params["endpoints"]
        ]

    OpenAIUsageOperator.partial(
        task_id="pull",
        start_time="{{ params.start_date }}T00:00:00+00:00",
        end_time="{{ macros.ds_add(params.end_date, 1) }}T00:00:00+00:00",
        output_path="{{ params.output_path }}",
        output_conn_id="{{ params.output_conn_id }}",
    ).expand_kwargs(endpoints_to_pull())
