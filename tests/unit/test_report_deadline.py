""""Not landed by" alerts (``report/deadline.py``): one DeadlineAlert per notifier, the deadline a
set number of hours after the UTC day ends, bad settings refused with the fix. The scheduler and
triggerer firing it are in tests/integration/test_not_landed_deadline.py."""

from __future__ import annotations

import datetime as dt
import os

import pytest

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.report.deadline import TEXT, not_landed_alerts


def test_one_alert_per_notifier_a_day_and_the_hours_after_it() -> None:
    slack, email = not_landed_alerts("6", slack_webhook_conn_id="slack_alerts", email="finops@example.com")
    assert slack.interval == email.interval == dt.timedelta(hours=30)
    assert slack.callback.kwargs == {"slack_webhook_conn_id": "slack_alerts", "text": TEXT}
    assert email.callback.kwargs["to"] == "finops@example.com" and email.callback.kwargs["smtp_conn_id"] == "smtp_default"


def test_no_notifier_no_alert_and_bad_hours_are_refused() -> None:
    assert not_landed_alerts(6) == []
    for bad in (0, 49, "x", None):
        with pytest.raises(OpenAIUsageValidationError, match="must be hours after the UTC day ends"):
            not_landed_alerts(bad, slack_webhook_conn_id="s")
    assert os.environ.get("OPENAI_USAGE_LANDED_BY_HOURS") is None
