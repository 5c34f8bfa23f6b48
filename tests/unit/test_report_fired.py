"""Which spend alerts fired for a day (``report/fired.py``), read back from the markers the real
alert operator wrote (the Spend view shows them: test_plugins_spend_app.py)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import BaseNotifier
from report_support import land, location

from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator
from airflow_provider_openai_usage.report.fired import fired_alerts

CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10), "run_id": "r"}
RULES = [
    {"name": "org-daily", "kind": "daily", "threshold": "0.01"},
    {"name": "org-mtd", "kind": "month_to_date", "threshold": "0.01"},
    {"name": "never", "kind": "daily", "threshold": "1000000"},
]


class Inbox(BaseNotifier):
    def __init__(self, inbox: list[str]) -> None:
        super().__init__()
        self.inbox = inbox

    def notify(self, context: Any) -> None:
        self.inbox.append("sent")


@pytest.fixture(scope="module")
def alerted(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("alerted")
    land(out.as_uri(), "2025-11-01", "2025-11-10", endpoints=("costs",))
    OpenAISpendAlertOperator(task_id="alerts", output_path=out.as_uri(), rules=RULES, notifiers=[Inbox([])]).execute(CTX)
    return out


def test_the_days_and_the_months_firings_are_listed_with_their_notifiers(alerted: Path) -> None:
    fired = fired_alerts(location(alerted), dt.date(2025, 11, 9))
    assert [(a["rule"], a["period"]) for a in fired] == [("org-daily", "2025-11-09"), ("org-mtd", "2025-11")]
    assert all(a["delivered"] and a["message"] and a["amount"] for a in fired)
    assert fired_alerts(location(alerted), dt.date(2025, 11, 8)) == [fired[1]]  # the month's alert, not the day's
    assert fired_alerts(location(alerted / "nothing"), dt.date(2025, 11, 9)) == []
