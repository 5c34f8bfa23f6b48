"""Pull a whole date range per endpoint in one task each: months of history in a few requests.

Trigger it manually with params (UI form or ``airflow dags trigger openai_usage_backfill --conf
'{"start_date": "2025-01-01", "end_date": "2025-06-30"}'``). It writes exactly the partitions the
daily DAG writes (same layout, same bytes), so the two can be mixed freely. To add history to days
your own DAG grouped otherwise, give the ``group_by`` param (``{"costs": ["project_id", "line_item"]}``):
a day backfilled with another grouping is replaced by rows of that grouping. One organization per
run: the ``openai_usage_conn_id`` param (default ``openai_usage_default``); an organization added to
the daily DAG later is backfilled alone with its connection (``--conf '{"openai_usage_conn_id":
"openai_usage_org_2", ...}'``), the others' days are not touched.
"""

from __future__ import annotations

import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_openai_usage.endpoints import ENDPOINT_KEYS, finops_group_by
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

DEFAULT_OUTPUT = os.environ.get("OPENAI_USAGE_OUTPUT_PATH") or (Path(__file__).resolve().parents[1] / "demo-output").as_uri()
_today = pendulum.today("UTC")


def check_dates(start_date: str, end_date: str) -> None:
    """Refuse params that cannot give a complete range, naming the params and the dates as typed."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    if end_date < start_date:  # ISO dates (the form enforces format=date) order as text
        raise OpenAIUsageValidationError(
            f"params end_date={end_date} is before start_date={start_date}; end_date is the last UTC day included, "
            f"so swap them: start_date={end_date}, end_date={start_date}"
        )
    today = pendulum.today("UTC").to_date_string()
    if end_date >= today:
        raise OpenAIUsageValidationError(
            f"params end_date={end_date} is not over yet in UTC (today is {today}): OpenAI has not reported the whole "
            f"day, so it cannot be landed complete. Use end_date={pendulum.today('UTC').subtract(days=1).to_date_string()} "
            "or earlier; the daily DAG lands each day once it has settled"
        )


def check_group_by(group_by: object, endpoints: list[str]) -> dict[str, list[str]]:
    """The ``group_by`` param: endpoint → list of dimensions, for endpoints being pulled (the operator
    then checks each dimension against the endpoint before any request)."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    if not isinstance(group_by, dict):
        raise OpenAIUsageValidationError(
            f'params group_by={group_by!r} must map an endpoint to its dimensions, e.g. {{"costs": ["project_id", "line_item"]}}'
        )
    for key, dims in group_by.items():
        if key not in endpoints:
            raise OpenAIUsageValidationError(
                f"params group_by names endpoint {key!r}, which this run does not pull (endpoints={endpoints}); "
                f"add it to endpoints or drop it from group_by"
            )
        if not isinstance(dims, list) or not all(isinstance(d, str) for d in dims):
            raise OpenAIUsageValidationError(
                f"params group_by[{key!r}]={dims!r} must be a list of dimension names, e.g. [\"project_id\"]"
            )
    return dict(group_by)


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
        "group_by": Param(
            {}, type="object",
            description='Grouping per endpoint, e.g. {"costs": ["project_id", "line_item"]}; an endpoint not named '
            "gets the daily DAG's grouping. Match the grouping of days already landed: other groupings replace them.",
        ),
        "output_path": Param(DEFAULT_OUTPUT, type="string", description="s3://..., gs://... or file:///..."),
        "output_conn_id": Param(os.environ.get("OPENAI_USAGE_OUTPUT_CONN_ID", ""), type="string"),
        "openai_usage_conn_id": Param(
            "openai_usage_default", type="string", pattern=r"^[A-Za-z0-9_.-]+$",
            description="The organization to backfill: its openai_usage connection (an organization added later is "
            "backfilled alone; its days land under <dataset>/organization=<id>/ beside the others)",
        ),
    },
    render_template_as_native_obj=False,
):

    @task
    def endpoints_to_pull(params: dict | None = None) -> list[dict]:
        """One mapped pull per chosen endpoint, grouped like the daily DAG; the dates checked first,
        in the words of the form (the pulls see end_date + 1 day, the exclusive end_time)."""
        check_dates(params["start_date"], params["end_date"])
        chosen = check_group_by(params.get("group_by") or {}, params["endpoints"])
        return [
            {"endpoint": key, "group_by": chosen.get(key, finops_group_by(key))}
            for key in params["endpoints"]
        ]

    OpenAIUsageOperator.partial(
        task_id="pull",
        start_time="{{ params.start_date }}T00:00:00+00:00",
        end_time="{{ macros.ds_add(params.end_date, 1) }}T00:00:00+00:00",
        output_path="{{ params.output_path }}",
        output_conn_id="{{ params.output_conn_id }}",
        openai_usage_conn_id="{{ params.openai_usage_conn_id }}",
    ).expand_kwargs(endpoints_to_pull())
