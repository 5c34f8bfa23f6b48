""""Not landed by" alerts (``report/deadline.py``): a real scheduler finds a daily run's deadline
missed while the run is still going, and the triggerer sends the notifier's message to a local
Slack webhook. The shipped daily DAG carries the same alerts when ``OPENAI_USAGE_LANDED_BY_HOURS``
is set."""

from __future__ import annotations

import datetime as dt
import os
from pathlib import Path

import pytest
from services import (
    AirflowAPI,
    ServiceSet,
    airflow_cli,
    airflow_env,
    free_port,
    start_airflow,
    start_api_server,
    start_postgres,
    wait_until,
)

from airflow_provider_openai_usage.testing.receivers import WebhookReceiver

REPO = Path(__file__).resolve().parents[2]
#: A daily run of a long-past day whose only task waits for a file the test writes once the alert
#: arrived: the run is still going when the scheduler checks its deadline (no race with its end).
SLOW_DAILY = '''
import os
from pathlib import Path
import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable, task
from airflow_provider_openai_usage.report.deadline import not_landed_alerts

with DAG("slow_daily", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"), start_date=pendulum.datetime(2025, 11, 9, tz="UTC"),
         end_date=pendulum.datetime(2025, 11, 9, tz="UTC"), catchup=True,
         deadline=not_landed_alerts(6, slack_webhook_conn_id="not_landed_slack")):
    @task
    def pull():
        # A named pipe: opening it blocks until the test opens it to write, once the alert arrived.
        Path(os.environ["GO_FILE"]).read_text()
    pull()
'''


def release(fifo: Path) -> bool:
    """Let the task reading ``fifo`` go on; False while nothing reads it yet (a non-blocking open)."""
    try:
        fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    except OSError:  # ENXIO: no reader yet
        return False
    os.write(fd, b"go")
    os.close(fd)
    return True


def test_a_missed_deadline_notifies_through_the_slack_notifier(tmp_path: Path) -> None:
    home, dags = tmp_path / "home", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    (dags / "slow_daily.py").write_text(SLOW_DAILY)
    go = tmp_path / "go"
    os.mkfifo(go)
    with WebhookReceiver() as slack, ServiceSet(tmp_path, airflow_home=home) as services:
        port = free_port()
        env = airflow_env(home, sql_alchemy_conn=start_postgres(services), executor="LocalExecutor", api_port=port, extra={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags), "AIRFLOW_CONN_NOT_LANDED_SLACK": slack.connection_json(), "GO_FILE": str(go),
        })
        airflow_cli("db", "migrate", env=env)
        airflow_cli("dags", "reserialize", env=env)
        airflow_cli("dags", "unpause", "slow_daily", env=env)
        api = start_api_server(services, env)
        scheduler = start_airflow(services, "scheduler", env)
        triggerer = start_airflow(services, "triggerer", env)
        try:
            wait_until(lambda: slack.messages, timeout=600, what="the not-landed alert", every=0.5, watch=[api, scheduler, triggerer])
        finally:
            # The task may still be queued when the alert arrives: release it once it waits on the pipe.
            wait_until(lambda: release(go), timeout=300, what="the task to wait on the go pipe", every=0.5, watch=[scheduler])
        (message,) = slack.messages
        assert message["text"].startswith("OpenAI usage: slow_daily has not landed the UTC day 2025-11-09 by 2025-11-10"), message
        assert "06:00:00" in message["text"]
        rest = AirflowAPI(port)
        wait_until(lambda: set(rest.runs("slow_daily").values()) == {"success"}, timeout=300, what="the run to finish", watch=[scheduler])
    assert len(slack.messages) == 1


def test_the_daily_dag_carries_one_alert_per_notifier(monkeypatch: pytest.MonkeyPatch) -> None:
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("OPENAI_USAGE_LANDED_BY_HOURS", "6")
    monkeypatch.setenv("OPENAI_USAGE_ALERT_SLACK_CONN_ID", "slack_alerts")
    monkeypatch.setenv("OPENAI_USAGE_ALERT_EMAIL", "finops@example.com")
    bag = DagBag(dag_folder=str(REPO / "dags" / "openai_usage_daily.py"))
    assert bag.import_errors == {}
    deadlines = bag.dags["openai_usage_daily"].deadline
    assert [d.interval for d in deadlines] == [dt.timedelta(hours=30)] * 2
    monkeypatch.setenv("OPENAI_USAGE_LANDED_BY_HOURS", "noon")
    bad = DagBag(dag_folder=str(REPO / "dags" / "openai_usage_daily.py"))
    assert "OPENAI_USAGE_LANDED_BY_HOURS='noon' must be hours after the UTC day ends" in " ".join(bad.import_errors.values())
