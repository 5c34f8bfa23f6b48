"""Spend alerts through the providers' own notifiers to real receivers on 127.0.0.1, in real Airflow runs.

An aiosmtpd server receives the mail of apache-airflow-providers-smtp's ``SmtpNotifier``; a local
HTTP server stands in for a Slack incoming webhook and receives apache-airflow-providers-slack's
``SlackWebhookNotifier`` message. The DAG runs twice for the same day (``dag.test`` replaces the run,
as a re-run does): each receiver gets each alert once.
"""

from __future__ import annotations

import email
import email.policy
import json
import socket
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pendulum
import pytest
from report_support import NOW, ORG, land

from airflow_provider_openai_usage.testing.receivers import WebhookReceiver

DAG = '''
import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow.providers.smtp.notifications.smtp import SmtpNotifier
from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator, OpenAISpendReportOperator

with DAG("spend_alerts", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=pendulum.datetime(2025, 10, 1, tz="UTC"), catchup=False):
    report = OpenAISpendReportOperator(task_id="report", output_path="{output}", days=14)
    alerts = OpenAISpendAlertOperator(
        task_id="alerts",
        output_path="{output}",
        rules=[
            {{"name": "org-daily", "kind": "daily", "threshold": "5"}},
            {{"name": "spike", "kind": "anomaly", "project": "*", "factor": 3, "trailing_days": 7, "min_amount": "1"}},
            {{"name": "calm", "kind": "month_to_date", "threshold": "1000000"}},
        ],
        report_url="https://finops.example/openai/{{{{ data_interval_start | ds }}}}/spend.html",
        notifiers=[
            SmtpNotifier(smtp_conn_id="spend_smtp", from_email="airflow@example.com", to="finops@example.com",
                         subject="{{{{ spend_alert.rule }}}}: {{{{ spend_alert.project }}}} {{{{ spend_alert.amount }}}}",
                         html_content="<p>{{{{ spend_alert.message }}}}</p>"),
            SlackWebhookNotifier(slack_webhook_conn_id="spend_slack", text="{{{{ spend_alert.message }}}}"),
        ],
    )
    report >> alerts
'''


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def smtp_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[Any]]:
    from aiosmtpd.controller import Controller

    inbox: list[Any] = []

    class Handler:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802 - aiosmtpd's hook name
            inbox.append(envelope)
            return "250 Message accepted for delivery"

    controller = Controller(Handler(), hostname="127.0.0.1", port=_free_port())
    controller.start()  # returns once the server answers: readiness, not a sleep
    monkeypatch.setenv(
        "AIRFLOW_CONN_SPEND_SMTP",
        json.dumps({"conn_type": "smtp", "host": "127.0.0.1", "port": controller.port,
                    "extra": {"disable_ssl": True, "disable_tls": True, "retry_limit": 0, "timeout": 10}}),
    )
    try:
        yield inbox
    finally:
        controller.stop()


@pytest.fixture
def webhook_inbox(monkeypatch: pytest.MonkeyPatch) -> Iterator[WebhookReceiver]:
    """An HTTP server that answers like a Slack incoming webhook (``200 ok``) and keeps each POST."""
    with WebhookReceiver() as receiver:
        monkeypatch.setenv("AIRFLOW_CONN_SPEND_SLACK", receiver.connection_json())
        yield receiver


def test_each_alert_reaches_smtp_and_slack_once_across_a_rerun(run_dag, smtp_inbox, webhook_inbox, tmp_path: Path) -> None:
    land(tmp_path.as_uri(), "2025-10-25", "2025-11-10")
    source = DAG.format(output=tmp_path.as_uri())
    day = pendulum.from_timestamp(NOW, tz="UTC")  # runs [2025-11-09, 2025-11-10)
    for _ in range(2):
        dr, states = run_dag(source, "spend_alerts", logical_date=day)
        assert states == {"report": "success", "alerts": "success"}
    summary = dr.get_task_instance("alerts").xcom_pull(task_ids="alerts")
    fired = sorted((e["rule"], e["project"]) for e in summary["evaluations"] if e["state"] == "fired")
    assert ("org-daily", None) in fired and any(rule == "spike" for rule, _ in fired)
    assert ("calm", None) not in fired

    # Exactly one mail and one webhook post per firing, across both runs.
    assert len(smtp_inbox) == len(fired) and len(webhook_inbox.messages) == len(fired)
    mails = [email.message_from_bytes(e.original_content, policy=email.policy.default) for e in smtp_inbox]
    assert all(e.rcpt_tos == ["finops@example.com"] and e.mail_from == "airflow@example.com" for e in smtp_inbox)
    org_mail = next(m for m in mails if m["Subject"].startswith("org-daily: organization "))
    body = org_mail.get_body(("html",)).get_content()
    assert "reaching the daily threshold of 5.00 USD" in body
    assert "https://finops.example/openai/2025-11-09/spend.html" in body
    texts = sorted(m["text"] for m in webhook_inbox.messages)
    assert all(r["path"] == "/services/T000/B000/XXXX" and r["content_type"].startswith("application/json") for r in webhook_inbox.requests)
    spike = next(t for t in texts if t.startswith("OpenAI spend alert [spike]: project "))
    assert "trailing median" in spike and " USD" in spike
    assert (tmp_path / "reports" / "date=2025-11-09" / "spend.html").exists()
    markers = sorted(str(p.relative_to(tmp_path / "alerts")) for p in (tmp_path / "alerts").rglob("*.json"))
    assert len(markers) == len(fired) and f"org-daily/organization={ORG}/_organization/2025-11-09.json" in markers


# -- names are data, never markup (#26 items 8 and 9) -----------------------------------------------------
EVIL = "<!channel> <http://evil.example|click here> & @here\r\nBcc: victim@example.com <script>alert(1)</script><img src=x onerror=alert(1)>"


def snapshot_renamed_directory(output_path: str, date: str, name: str) -> None:
    """The directory as landed for ``date``, every project renamed to ``name`` (plus its index)."""
    from report_support import _env

    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

    with (
        FakeOpenAIUsageAPI(seed=7, now=NOW) as api,
        _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()),
    ):
        for i, project in enumerate(api.api.admin.directory.objects("projects")):
            api.api.admin.edits[project["id"]] = {"name": f"{name} {i}"}
        op = OpenAIDirectoryOperator(task_id="snapshot_directory", output_path=output_path, entities=["projects", "project_spend_limits"])
        op.execute({"data_interval_end": pendulum.parse(date)})


def test_hostile_project_names_reach_slack_and_mail_as_literal_text(run_dag, smtp_inbox, webhook_inbox, tmp_path: Path) -> None:
    land(tmp_path.as_uri(), "2025-10-25", "2025-11-10")
    snapshot_renamed_directory(tmp_path.as_uri(), "2025-11-10", EVIL)
    source = DAG.format(output=tmp_path.as_uri()).replace(
        'subject="{{ spend_alert.rule }}: {{ spend_alert.project }} {{ spend_alert.amount }}"',
        'subject="{{ spend_alert.header.rule }}: {{ spend_alert.header.project }} {{ spend_alert.header.amount }}"',
    ).replace('html_content="<p>{{ spend_alert.message }}</p>"', 'html_content="<p>{{ spend_alert.html.message }}</p>"')
    assert "spend_alert.html.message" in source
    dr, states = run_dag(source, "spend_alerts", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"report": "success", "alerts": "success"}
    summary = dr.get_task_instance("alerts").xcom_pull(task_ids="alerts")
    fired = [e for e in summary["evaluations"] if e["state"] == "fired"]
    spikes = [e for e in fired if e["rule"] == "spike"]
    assert spikes, "a project alert quotes a hostile name"
    assert len(smtp_inbox) == len(fired) and len(webhook_inbox.messages) == len(fired)
    texts = [m["text"] for m in webhook_inbox.messages]
    project_texts = [t for t in texts if t.startswith("OpenAI spend alert [spike]")]
    assert project_texts and all("&lt;!channel&gt; &lt;http://evil.example|click here&gt; &amp; @\u200bhere" in t for t in project_texts)
    assert not any("<" in t or ">" in t or "@here" in t for t in texts), texts
    mails = [email.message_from_bytes(e.original_content, policy=email.policy.default) for e in smtp_inbox]
    for mail in mails:
        assert "\n" not in mail["Subject"] and "\r" not in mail["Subject"]
        assert mail["Bcc"] is None
        body = mail.get_body(("html",)).get_content()
        assert "<script>" not in body and "<img" not in body and "<p>" in body
    assert any("&lt;script&gt;alert(1)&lt;/script&gt;" in m.get_body(("html",)).get_content() for m in mails)


# -- markers keyed by the receiver, not by list position (#26 item 14) ------------------------------------
SMTP_TO = '''SmtpNotifier(smtp_conn_id="spend_smtp", from_email="airflow@example.com", to="{to}",
                         subject="{{{{ spend_alert.header.rule }}}}", html_content="<p>{{{{ spend_alert.html.message }}}}</p>")'''
SLACK = 'SlackWebhookNotifier(slack_webhook_conn_id="spend_slack", text="{{{{ spend_alert.slack.message }}}}")'


def _with_notifiers(output: str, notifiers: list[str]) -> str:
    start = DAG.index("        notifiers=[")
    end = DAG.index("        ],\n    )", start) + len("        ],\n")
    block = "        notifiers=[\n" + "".join(f"            {n},\n" for n in notifiers) + "        ],\n"
    return (DAG[:start] + block + DAG[end:]).format(output=output)


def test_editing_the_notifier_list_sends_to_the_new_receiver_and_not_again_to_the_old_ones(run_dag, smtp_inbox, webhook_inbox, tmp_path: Path) -> None:
    land(tmp_path.as_uri(), "2025-10-25", "2025-11-10")
    day = pendulum.from_timestamp(NOW, tz="UTC")
    dr, states = run_dag(_with_notifiers(tmp_path.as_uri(), [SMTP_TO.format(to="finops@example.com"), SLACK]), "spend_alerts", logical_date=day)
    assert states == {"report": "success", "alerts": "success"}
    fired = [e for e in dr.get_task_instance("alerts").xcom_pull(task_ids="alerts")["evaluations"] if e["state"] == "fired"]
    assert fired and len(smtp_inbox) == len(fired) and len(webhook_inbox.messages) == len(fired)
    # A new receiver first, the old ones moved: the new one gets every alert, the old ones none again.
    edited = [SMTP_TO.format(to="cfo@example.com"), SLACK, SMTP_TO.format(to="finops@example.com")]
    _, states = run_dag(_with_notifiers(tmp_path.as_uri(), edited), "spend_alerts", logical_date=day)
    assert states == {"report": "success", "alerts": "success"}
    to = sorted(tuple(e.rcpt_tos) for e in smtp_inbox)
    assert to == sorted([("finops@example.com",)] * len(fired) + [("cfo@example.com",)] * len(fired))
    assert len(webhook_inbox.messages) == len(fired)


# -- two alert tasks for the same day at once (#26 item 13) ------------------------------------------------
ALERT_TASK = '''
import sys, pendulum
from airflow.providers.slack.notifications.slack_webhook import SlackWebhookNotifier
from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator
op = OpenAISpendAlertOperator(task_id="alerts", output_path=sys.argv[1], output_conn_id=sys.argv[2] or None,
                              rules=[{"name": "org-daily", "kind": "daily", "threshold": "5"}],
                              notifiers=[SlackWebhookNotifier(slack_webhook_conn_id="spend_slack", text="{{ spend_alert.slack.message }}")])
print(op.execute({"data_interval_start": pendulum.datetime(2025, 11, 9, tz="UTC"), "run_id": sys.argv[3]}))
'''


@pytest.mark.parametrize("store", ["s3", "local"])
def test_two_alert_tasks_for_one_day_at_once_notify_once(webhook_inbox, s3_bucket, tmp_path: Path, store: str) -> None:
    """Both tasks read the marker before either sends (a pause point holds each there until both
    arrived): without a lock or a conditional claim on the marker, both would send."""
    import os
    import subprocess
    import sys

    from services import wait_until

    from airflow_provider_openai_usage.storage.days import PAUSE_ENV

    output, conn = (f"s3://{s3_bucket}/alerts-race", "moto_s3") if store == "s3" else (tmp_path.as_uri(), "")
    land(output, "2025-10-25", "2025-11-10", output_conn_id=conn or None)
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, PAUSE_ENV: f"alert-marker-read={gate}"}
    procs = [subprocess.Popen([sys.executable, "-c", ALERT_TASK, output, conn, f"run_{i}"], env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE) for i in range(2)]
    try:
        if store == "s3":  # both claims race; the loser waits for the winner's marker
            wait_until(lambda: len(list(gate.glob("*.reached"))) == 2 or any(p.poll() is not None for p in procs),
                       timeout=120, what="both alert tasks read the marker")
            assert len(list(gate.glob("*.reached"))) == 2, [p.communicate()[1].decode()[-2000:] for p in procs if p.poll() is not None]
        else:  # the flock lets one task through; the other waits for the lock, then finds the marker
            wait_until(lambda: len(list(gate.glob("*.reached"))) == 1 or any(p.poll() is not None for p in procs),
                       timeout=120, what="one alert task read the marker")
        (gate / "go").touch()
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert len(webhook_inbox.messages) == 1, [m["text"] for m in webhook_inbox.messages]
    assert webhook_inbox.messages[0]["text"].startswith("OpenAI spend alert [org-daily]")
