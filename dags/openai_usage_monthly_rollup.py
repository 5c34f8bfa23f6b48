"""Example downstream DAG: a monthly costs rollup that re-runs only for months whose days changed.

Scheduled on the costs asset the daily DAG's ``pull_costs`` emits (``<output_path>/costs``) with a
``PartitionedAssetTimetable``: the pull emits one asset event per UTC day whose content changed,
its date as partition key; ``StartOfMonthMapper`` maps ``2025-11-07`` to ``2025-11``, so one run
per changed month (a ``restate_days`` re-pull that OpenAI did not revise starts nothing). The run
writes ``<output_path>/rollups/costs_monthly/month=YYYY-MM.json`` (docs/ui.md).

Configuration: the daily DAG's ``OPENAI_USAGE_OUTPUT_PATH`` and ``OPENAI_USAGE_OUTPUT_CONN_ID``.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from airflow.sdk import DAG, Asset, PartitionedAssetTimetable, StartOfMonthMapper, task

from airflow_provider_openai_usage.operators.usage import asset_base

OUTPUT_PATH = os.environ.get("OPENAI_USAGE_OUTPUT_PATH") or (Path(__file__).resolve().parents[1] / "demo-output").as_uri()
OUTPUT_CONN_ID = os.environ.get("OPENAI_USAGE_OUTPUT_CONN_ID") or None
COSTS = Asset(uri=f"{asset_base(OUTPUT_PATH)}/costs", extra={"endpoint": "costs"})

with DAG(
    dag_id="openai_usage_monthly_rollup",
    schedule=PartitionedAssetTimetable(assets=COSTS, default_partition_mapper=StartOfMonthMapper(input_format="%Y-%m-%d")),
    catchup=False,
    max_active_runs=1,
    tags=["openai", "finops", "example"],
    doc_md=__doc__,
):

    @task
    def rollup_month(dag_run: Any = None) -> dict[str, Any]:
        from airflow_provider_openai_usage.report.rollup import month_rollup, write_month_rollup
        from airflow_provider_openai_usage.storage import output_location

        month = dag_run.partition_key
        location = output_location(OUTPUT_PATH, OUTPUT_CONN_ID)
        dest = write_month_rollup(location, month)
        summary = month_rollup(location, month)
        return {"month": month, "file": dest.as_uri(), "total": summary["total"], "days_missing": summary["days_missing"]}

    rollup_month()
