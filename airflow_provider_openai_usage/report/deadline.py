""""Not landed by" alerts: Airflow's ``DeadlineAlert`` on the daily DAG, sent through the same
notifier classes as the spend alerts (Slack incoming webhook, SMTP).

Why a deadline and not a sensor timeout: the deadline is kept by the scheduler whatever the run is
doing (queued, waiting for OpenAI to settle, retrying, or not created at all because the scheduler
was down), and it is cleared when the run finishes. The reference is the run's logical date, which
for the daily DAG's interval timetable is the start of the UTC day it lands, so "by 06:00 UTC the
next day" is ``hours_after_day_end=6``: ``interval = 1 day + 6 h``.

The callback is Airflow's idiomatic one: an ``AsyncCallback`` of the notifier class, run by the
triggerer, which builds the notifier with the deadline's context (``dag_run`` as the API returns
it, ``deadline``) and renders its templates with it.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

#: What the notifiers send; the triggerer renders it with the deadline's context.
TEXT = (
    "OpenAI usage: {{ dag_run.dag_id }} has not landed the UTC day {{ dag_run.data_interval_start[:10] }} "
    "by {{ deadline.deadline_time }} (run {{ dag_run.dag_run_id }}, state {{ dag_run.state }})"
)
SUBJECT = "OpenAI usage not landed: {{ dag_run.dag_id }} {{ dag_run.data_interval_start[:10] }}"
MAX_HOURS = 48


def check_hours(value: Any, name: str = "OPENAI_USAGE_LANDED_BY_HOURS") -> float:
    """Hours after the UTC day ends, 0 < h <= 48, with an error naming the setting and the fix."""
    try:
        hours = float(value)
    except (TypeError, ValueError):
        hours = -1.0
    if not 0 < hours <= MAX_HOURS:
        raise OpenAIUsageValidationError(
            f"{name}={value!r} must be hours after the UTC day ends, more than 0 and at most {MAX_HOURS} "
            "(e.g. 6: alert when a day has not landed by 06:00 UTC the next day)"
        )
    return hours


def not_landed_alerts(
    hours_after_day_end: Any,
    *,
    slack_webhook_conn_id: str | None = None,
    email: str | None = None,
    smtp_conn_id: str | None = None,
) -> list[Any]:
    """One ``DeadlineAlert`` per configured notifier (none configured: none, nothing to send to)."""
    # Where airflow.sdk re-exports them from (its type stub does not list them yet).
    from airflow.sdk.definitions.callback import AsyncCallback
    from airflow.sdk.definitions.deadline import DeadlineAlert, DeadlineReference

    interval = dt.timedelta(days=1, hours=check_hours(hours_after_day_end))
    callbacks = []
    if slack_webhook_conn_id:
        from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier

        callbacks.append(AsyncCallback(SlackWebhookNotifier, kwargs={"slack_webhook_conn_id": slack_webhook_conn_id, "text": TEXT}))
    if email:
        from airflow.providers.smtp.notifications.smtp import SmtpNotifier

        callbacks.append(
            AsyncCallback(
                SmtpNotifier,
                kwargs={"to": email, "smtp_conn_id": smtp_conn_id or "smtp_default", "subject": SUBJECT, "html_content": f"<p>{TEXT}</p>"},
            )
        )
    return [
        DeadlineAlert(reference=DeadlineReference.DAGRUN_LOGICAL_DATE, interval=interval, callback=callback, name=f"not-landed-{i}")
        for i, callback in enumerate(callbacks)
    ]
