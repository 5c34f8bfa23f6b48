"""WebhookReceiver: a real HTTP server on 127.0.0.1 that keeps what a Slack webhook client POSTs.

Real clients only: ``requests`` and the Slack provider's own ``SlackWebhookHook`` reading the
receiver's connection. Alerts through the notifiers in Airflow runs: tests/integration/test_alert_receivers.py.
"""

from __future__ import annotations

import json
import threading
from urllib.parse import urlsplit

import pytest
import requests

from airflow_provider_openai_usage.testing.receivers import WEBHOOK_PATH, WebhookReceiver


def test_a_post_is_kept_as_json_with_its_path_and_answered_like_slack():
    with WebhookReceiver() as hook:
        response = requests.post(hook.url, json={"text": "proj_beta spent 40x"}, timeout=10)
        assert (response.status_code, response.text) == (200, "ok")
        assert hook.messages == [{"text": "proj_beta spent 40x"}]
        assert hook.requests == [{"path": WEBHOOK_PATH, "content_type": "application/json"}]


def test_the_url_is_loopback_on_a_port_of_its_own():
    with WebhookReceiver() as one, WebhookReceiver() as two:
        a, b = urlsplit(one.url), urlsplit(two.url)
        assert (a.scheme, a.hostname, a.path) == ("http", "127.0.0.1", WEBHOOK_PATH)
        assert a.port != b.port
        requests.post(two.url, json={"n": 2}, timeout=10)
        assert (one.messages, two.messages) == ([], [{"n": 2}])


def test_an_empty_body_is_kept_as_an_empty_message():
    with WebhookReceiver() as hook:
        assert requests.post(hook.url, timeout=10).status_code == 200
        assert hook.messages == [{}]


def test_concurrent_posts_are_all_kept():
    with WebhookReceiver() as hook:
        def send(i: int) -> None:
            requests.post(hook.url, json={"n": i}, timeout=10).raise_for_status()

        threads = [threading.Thread(target=send, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sorted(m["n"] for m in hook.messages) == list(range(8))


def test_after_exit_the_port_refuses_connections():
    with WebhookReceiver() as hook:
        url = hook.url
    with pytest.raises(requests.ConnectionError):
        requests.post(url, json={}, timeout=5)


def test_its_connection_is_one_the_slack_provider_posts_to(monkeypatch):
    from airflow.providers.slack.hooks.slack_webhook import SlackWebhookHook

    with WebhookReceiver() as hook:
        conn = json.loads(hook.connection_json())
        assert conn == {"conn_type": "slackwebhook", "password": hook.url}
        monkeypatch.setenv("AIRFLOW_CONN_DEMO_ALERTS", hook.connection_json())
        response = SlackWebhookHook(slack_webhook_conn_id="demo_alerts").send_text("over budget")
        assert response.status_code == 200
        assert hook.messages == [{"text": "over budget"}]
        assert hook.requests[0]["path"] == WEBHOOK_PATH
