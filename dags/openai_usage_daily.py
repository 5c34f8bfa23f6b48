"""Every UTC day of OpenAI usage and costs, for all 12 endpoints: wait until settled, then land it;
and a daily snapshot of the organization directory (names for the ids) beside them.

Several OpenAI organizations land side by side (issue #29): the organization tasks form one task
group, ``organization``, mapped over the connection ids with ``.expand`` (one map index per
organization); each organization's data lands under ``<dataset>/organization=<id>/`` and a failing
organization fails only its own map index. The spend report and alerts cover every organization.

Configuration (read at parse time from the environment, so parsing stays free of network and DB):
- ``OPENAI_USAGE_CONN_IDS``: comma-separated ``openai_usage`` connection ids, one per organization
  (default ``openai_usage_default``); the same id twice is refused at parse time, two connections
  naming the same organization (extra ``organization_id``) by ``check_organizations`` before any request;
- ``OPENAI_USAGE_POOLS``: JSON object, connection id → Airflow pool, so one organization's rate limits
  never hold the slots of another's tasks (e.g. ``{"openai_usage_default": "openai_org_a", "openai_usage_org_2":
  "openai_org_b"}``). Airflow gives every map index of a task the same pool, so connections of
  different pools get task groups of their own: ``organization_<pool>``, each mapped over its
  connections. Create the pools first (``airflow pools set openai_org_a 4 "OpenAI org A"``): Airflow
  does not schedule a task whose pool does not exist. Default: every connection in ``OPENAI_USAGE_POOL``;
- ``OPENAI_USAGE_OUTPUT_PATH``: where partitions land, e.g. ``s3://my-bucket/openai``
  (default: ``demo-output/`` next to this repository's ``dags/`` folder);
- ``OPENAI_USAGE_OUTPUT_CONN_ID``: object-store connection (e.g. ``aws_default``), optional;
- ``OPENAI_USAGE_SETTLE_MINUTES``: how long after a day ends to wait for OpenAI's late revisions (60);
- ``OPENAI_USAGE_START_DATE`` (default 2025-01-01) and ``OPENAI_USAGE_CATCHUP=true``: let the scheduler
  create every missed day since the start date when the DAG is unpaused;
- ``OPENAI_USAGE_END_DATE``: last day to schedule (default: none, keep going);
- ``OPENAI_USAGE_ENDPOINTS``: comma-separated endpoint keys to land (default: all);
- ``OPENAI_USAGE_MAX_ACTIVE_RUNS`` (4): days processed at once;
- ``OPENAI_USAGE_POKE_SECONDS`` (300): how often a waiting sensor's trigger asks OpenAI again;
- ``OPENAI_USAGE_POOL``: Airflow pool of every task without an ``OPENAI_USAGE_POOLS`` entry, to cap
  concurrent requests (default: ``default_pool``; see docs/production.md);
- ``OPENAI_USAGE_RETRIES`` (2) and ``OPENAI_USAGE_RETRY_DELAY_SECONDS`` (300): Airflow retries of every
  task (a lost worker fails the attempts it was running; the retry lands the day).
- ``OPENAI_USAGE_DIRECTORY`` (true): snapshot the organization directory (names for ids, spend
  limits) once per run as ``snapshot_directory``; ``false`` leaves it out;
- ``OPENAI_USAGE_FOCUS`` (false): add ``focus_export``, the day's costs as FOCUS 1.2 under
  ``<output>/focus/`` (docs/focus.md), built from what ``pull_costs`` landed (no second costs
  request); needs the connection extras ``organization_id`` and
  ``organization_name`` (FOCUS's BillingAccountId/Name, which the Costs API does not report);
- ``OPENAI_USAGE_SPEND_REPORT`` (true): add the spend report and spend alert tasks (below); ``false``
  leaves only the pulls;
- ``OPENAI_USAGE_ALERT_RULES``: spend alert rules as JSON (default: an anomaly rule per project and
  80 % of each project's spend limit; docs/report.md lists the parameters);
- ``OPENAI_USAGE_ALERT_SLACK_CONN_ID`` (a Slack incoming-webhook connection) and/or
  ``OPENAI_USAGE_ALERT_EMAIL`` (+ ``OPENAI_USAGE_ALERT_SMTP_CONN_ID``): where alerts go; with neither,
  alerts are only written to the task log.
- ``OPENAI_USAGE_LANDED_BY_HOURS``: "not landed by" alerts: when a run has not finished this many
  hours after its UTC day ends (e.g. ``6``: by 06:00 UTC the next day), Airflow's ``DeadlineAlert``
  notifies through the same Slack/email settings as the spend alerts (default: none).

After the costs and completions pulls, ``spend_report`` writes
``<output>/reports/date=YYYY-MM-DD/spend.html``; after the costs pull, ``spend_alerts`` evaluates the
rules for the same day (beside the report, not after it: a broken chart never silences an alert).
Both also wait for ``snapshot_directory``: the report names projects and the alerts read spend limits
from the snapshot of the same date.

The schedule is an *interval* timetable: a plain ``"@daily"`` gives Airflow 3 runs an empty data
interval. ``airflow dags test openai_usage_daily 2025-10-05`` pulls 2025-10-04 (the day that ends at
the given date). History: ``airflow backfill create --dag-id openai_usage_daily --from-date ... --to-date ...``
or, much faster, the ``openai_usage_backfill`` DAG.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from pathlib import Path

import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, task, task_group

from airflow_provider_openai_usage.endpoints import ENDPOINTS, finops_group_by
from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator
from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator, OpenAISpendReportOperator
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.organizations import check_connection_ids
from airflow_provider_openai_usage.sensors.usage import OpenAIUsageSensor

OUTPUT_PATH = os.environ.get("OPENAI_USAGE_OUTPUT_PATH") or (Path(__file__).resolve().parents[1] / "demo-output").as_uri()
OUTPUT_CONN_ID = os.environ.get("OPENAI_USAGE_OUTPUT_CONN_ID") or None
#: Where every task that writes (pulls, directory, FOCUS, report, alerts) lands or reads its files.
LANDING = {"output_path": OUTPUT_PATH, "output_conn_id": OUTPUT_CONN_ID}
SETTLE = dt.timedelta(minutes=float(os.environ.get("OPENAI_USAGE_SETTLE_MINUTES", "60")))
START_DATE = pendulum.parse(os.environ.get("OPENAI_USAGE_START_DATE", "2025-01-01"), tz="UTC")
CATCHUP = os.environ.get("OPENAI_USAGE_CATCHUP", "false").strip().lower() in ("1", "true", "yes")
END_DATE = pendulum.parse(os.environ["OPENAI_USAGE_END_DATE"], tz="UTC") if os.environ.get("OPENAI_USAGE_END_DATE") else None
SELECTED = [k.strip() for k in os.environ.get("OPENAI_USAGE_ENDPOINTS", "").split(",") if k.strip()] or list(ENDPOINTS)
if unknown := sorted(set(SELECTED) - set(ENDPOINTS)):
    raise ValueError(f"OPENAI_USAGE_ENDPOINTS names unknown endpoints {unknown}; choose from {sorted(ENDPOINTS)}")
CONN_IDS = check_connection_ids(
    [c.strip() for c in os.environ.get("OPENAI_USAGE_CONN_IDS", "openai_usage_default").split(",") if c.strip()]
)
POOLS: dict[str, str] = json.loads(os.environ["OPENAI_USAGE_POOLS"]) if os.environ.get("OPENAI_USAGE_POOLS") else {}
if not isinstance(POOLS, dict) or not all(isinstance(k, str) and isinstance(v, str) and v for k, v in POOLS.items()):
    raise ValueError('OPENAI_USAGE_POOLS must be a JSON object of connection id → pool name, e.g. {"openai_usage_default": "openai_org_a"}')
if unknown_pools := sorted(set(POOLS) - set(CONN_IDS)):
    raise ValueError(f"OPENAI_USAGE_POOLS names connections {unknown_pools} that are not in OPENAI_USAGE_CONN_IDS {CONN_IDS}")
MAX_ACTIVE_RUNS = int(os.environ.get("OPENAI_USAGE_MAX_ACTIVE_RUNS", "4"))
POKE_SECONDS = float(os.environ.get("OPENAI_USAGE_POKE_SECONDS", "300"))
POOL = os.environ.get("OPENAI_USAGE_POOL") or None
RETRIES = int(os.environ.get("OPENAI_USAGE_RETRIES", "2"))
RETRY_DELAY = dt.timedelta(seconds=float(os.environ.get("OPENAI_USAGE_RETRY_DELAY_SECONDS", "300")))
DEFAULT_ALERT_RULES = [
    {"name": "daily-spike", "kind": "anomaly", "project": "*", "factor": 3, "trailing_days": 14, "min_amount": "10"},
    {"name": "limit-80", "kind": "limit_percent", "project": "*", "percent": 80},
]
DIRECTORY = os.environ.get("OPENAI_USAGE_DIRECTORY", "true").strip().lower() in ("1", "true", "yes")
FOCUS = os.environ.get("OPENAI_USAGE_FOCUS", "false").strip().lower() in ("1", "true", "yes")
if FOCUS and "costs" not in SELECTED:
    raise ValueError("OPENAI_USAGE_FOCUS=true exports costs as FOCUS: add costs to OPENAI_USAGE_ENDPOINTS (or leave it empty for all)")
SPEND_REPORT = os.environ.get("OPENAI_USAGE_SPEND_REPORT", "true").strip().lower() in ("1", "true", "yes")
ALERT_RULES = json.loads(os.environ["OPENAI_USAGE_ALERT_RULES"]) if os.environ.get("OPENAI_USAGE_ALERT_RULES") else DEFAULT_ALERT_RULES


def alert_notifiers() -> list:
    """Notifiers from the environment; each provider is imported only when it is used."""
    notifiers: list = []
    if os.environ.get("OPENAI_USAGE_ALERT_SLACK_CONN_ID"):
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        notifiers.append(
            SlackWebhookNotifier(slack_webhook_conn_id=os.environ["OPENAI_USAGE_ALERT_SLACK_CONN_ID"], text="{{ spend_alert.slack.message }}")
        )
    if os.environ.get("OPENAI_USAGE_ALERT_EMAIL"):
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        notifiers.append(
            SmtpNotifier(
                to=os.environ["OPENAI_USAGE_ALERT_EMAIL"],
                smtp_conn_id=os.environ.get("OPENAI_USAGE_ALERT_SMTP_CONN_ID") or None,
                subject="OpenAI spend alert: {{ spend_alert.header.rule }} for {{ spend_alert.header.project }}",
                html_content="<p>{{ spend_alert.html.message }}</p>",
            )
        )
    return notifiers


def not_landed_deadlines() -> list:
    """``DeadlineAlert``s for OPENAI_USAGE_LANDED_BY_HOURS, through the spend alerts' notifiers (docs/ui.md)."""
    if not os.environ.get("OPENAI_USAGE_LANDED_BY_HOURS"):
        return []
    from airflow_provider_openai_usage.report.deadline import not_landed_alerts

    return not_landed_alerts(
        os.environ["OPENAI_USAGE_LANDED_BY_HOURS"],
        slack_webhook_conn_id=os.environ.get("OPENAI_USAGE_ALERT_SLACK_CONN_ID") or None,
        email=os.environ.get("OPENAI_USAGE_ALERT_EMAIL") or None,
        smtp_conn_id=os.environ.get("OPENAI_USAGE_ALERT_SMTP_CONN_ID") or None,
    )


with DAG(
    dag_id="openai_usage_daily",
    schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
    start_date=START_DATE,
    end_date=END_DATE,
    catchup=CATCHUP,
    max_active_runs=MAX_ACTIVE_RUNS,
    tags=["openai", "finops"],
    doc_md=__doc__,
    deadline=not_landed_deadlines() or None,
    # Every task: Airflow's retries (a lost worker fails the attempts it ran) and the OpenAI pool.
    default_args={"retries": RETRIES, "retry_delay": RETRY_DELAY, "pool": POOL},
) as dag:
    @task(task_id="check_organizations")
    def check_organizations() -> None:
        """Before any request: two connections naming the same organization would land it twice."""
        from airflow_provider_openai_usage.organizations import check_distinct_organizations

        check_distinct_organizations(CONN_IDS)

    def organization_tasks(openai_usage_conn_id):  # one organization's tasks: a map index of the group
        @task(task_id="check_organization")
        def check_organization(conn_id: str) -> str:
            """The organization this key reads, asked of the Costs API and checked against the extra."""
            from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

            hook = OpenAIUsageHook(conn_id)
            try:
                return hook.organization_id(verify=True)
            finally:
                hook.close()

        checked = check_organization(openai_usage_conn_id)
        pulls = {}
        for key in SELECTED:
            group_by = finops_group_by(key)  # every FinOps dimension the endpoint allows
            wait = OpenAIUsageSensor(
                task_id=f"wait_{key}",
                endpoint=key,
                openai_usage_conn_id=openai_usage_conn_id,
                group_by=group_by,
                settle_period=SETTLE,
                deferrable=True,
                poke_interval=POKE_SECONDS,
                timeout=12 * 3600,
            )
            pull = OpenAIUsageOperator(
                task_id=f"pull_{key}",
                endpoint=key,
                openai_usage_conn_id=openai_usage_conn_id,
                group_by=group_by,
                **LANDING,
            )
            checked >> wait >> pull
            pulls[key] = pull

        directory = None
        if DIRECTORY:
            # Names for the ids (projects, users, keys, spend limits): one snapshot per day, as of the run.
            directory = OpenAIDirectoryOperator(task_id="snapshot_directory", openai_usage_conn_id=openai_usage_conn_id, **LANDING)
            checked >> directory

        if FOCUS:
            # Reads the costs pull_costs landed and sums them over the API key (no second costs request);
            # names projects from the snapshot.
            focus = OpenAIFocusOperator(
                task_id="focus_export", source="landed", openai_usage_conn_id=openai_usage_conn_id, **LANDING
            )
            pulls["costs"] >> focus
            if directory is not None:
                directory >> focus

    # Airflow gives every map index of a task its task's pool: one mapped group per pool.
    by_pool: dict[str | None, list[str]] = {}
    for conn_id in CONN_IDS:
        by_pool.setdefault(POOLS.get(conn_id, POOL), []).append(conn_id)
    checks = check_organizations()
    groups = []
    for pool, conn_ids in by_pool.items():
        group_id = "organization" if len(by_pool) == 1 else f"organization_{pool or 'default_pool'}"
        group = task_group(group_id=group_id, default_args={"pool": pool} if pool else {})(organization_tasks)
        mapped = group.expand(openai_usage_conn_id=conn_ids)
        checks >> mapped
        groups.append(mapped)

    # Every organization's tasks succeeded: a leaf, so a failed organization fails the run even though
    # the report and the alerts below run for the others (trigger_rule="all_done").
    from airflow.providers.standard.operators.empty import EmptyOperator

    landed = EmptyOperator(task_id="all_organizations_landed")
    groups >> landed

    if SPEND_REPORT and "costs" in SELECTED:  # the report and the alerts read the landed costs of every organization
        report = OpenAISpendReportOperator(task_id="spend_report", trigger_rule="all_done", **LANDING)
        alerts = OpenAISpendAlertOperator(
            task_id="spend_alerts", trigger_rule="all_done", **LANDING, rules=ALERT_RULES, notifiers=alert_notifiers()
        )
        # Side by side, both after every organization's tasks (pulls, directory: names and spend limits):
        # a broken chart never silences an alert, and one organization's failure never stops the others'.
        groups >> report
        groups >> alerts
