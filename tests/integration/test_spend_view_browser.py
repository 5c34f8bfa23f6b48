"""The Spend view in a real Airflow 3.3 api-server: anonymous requests refused, a logged-in user
sees the demo-like lake's report and landing status in headless Chromium (a screenshot is kept
under test-artifacts/), and nothing on the page carries the admin key."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pendulum
import pytest
import requests
from report_support import ORG, land, org_root, snapshot_directory
from services import ServiceSet, airflow_cli, airflow_env, free_port, start_api_server, wait_until
from test_report_browser import browser  # noqa: F401 - the shared headless Chromium

from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator, OpenAISpendReportOperator

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
USER, PASSWORD = "viewer", "viewer-pass-4f1c"
FAKE_KEY = "sk-admin-SPEND-VIEW-never-shown-0123456789"
CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10)}


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("spend-lake")
    land(out.as_uri(), "2025-10-20", "2025-11-10")
    shutil.rmtree(org_root(out, "costs") / "date=2025-11-03")  # a day that never landed: the status shows it missing
    snapshot_directory(out.as_uri(), "2025-11-10")
    OpenAISpendReportOperator(task_id="report", output_path=out.as_uri(), days=14).execute(CTX)
    from airflow.sdk import BaseNotifier

    class Quiet(BaseNotifier):
        def notify(self, context: object) -> None:
            pass

    rules = [{"name": "org-daily", "kind": "daily", "threshold": "0.01"}]  # fires for the report day
    OpenAISpendAlertOperator(task_id="alerts", output_path=out.as_uri(), rules=rules, notifiers=[Quiet()]).execute({**CTX, "run_id": "r"})
    return out


def test_the_spend_view_behind_airflows_login(browser, lake: Path, tmp_path: Path) -> None:  # noqa: F811
    from selenium.webdriver.common.by import By

    home = tmp_path / "home"
    home.mkdir()
    (home / "passwords.json").write_text(json.dumps({USER: PASSWORD}))
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    with ServiceSet(tmp_path, airflow_home=home) as services:
        env = airflow_env(home, sql_alchemy_conn=f"sqlite:///{home}/airflow.db", executor="LocalExecutor", api_port=port, extra={
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:viewer",
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            # Airflow loads providers' plugins only when it discovers providers at start (docs/ui.md).
            "AIRFLOW__CORE__LAZY_DISCOVER_PROVIDERS": "False",
            "OPENAI_USAGE_OUTPUT_PATH": lake.as_uri(),
            "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT": json.dumps({"conn_type": "openai_usage", "password": FAKE_KEY}),
        })
        airflow_cli("db", "migrate", env=env)
        start_api_server(services, env)

        for path in ("/openai-usage/", "/openai-usage/report?date=2025-11-09", "/openai-usage/api/status"):
            anonymous = requests.get(base + path, timeout=60)
            assert anonymous.status_code in (401, 403), (path, anonymous.status_code, anonymous.text[:300])
            forged = requests.get(base + path, headers={"Authorization": "Bearer not-a-token"}, timeout=60)
            assert forged.status_code in (401, 403), (path, forged.status_code)

        token = requests.post(base + "/auth/token", json={"username": USER, "password": PASSWORD}, timeout=60).json()["access_token"]
        auth = {"Authorization": f"Bearer {token}"}
        status = requests.get(base + "/openai-usage/api/status", headers=auth, timeout=60)
        assert status.status_code == 200, status.text
        costs = next(d for d in status.json()["datasets"] if d["dataset"] == "costs")
        assert costs["organization_id"] == ORG
        assert "2025-11-03" in costs["missing"] and costs["landed"][0] == "2025-10-20"
        bad = requests.get(base + "/openai-usage/report", params={"date": "../../etc/passwd"}, headers=auth, timeout=60)
        assert bad.status_code == 400 and "YYYY-MM-DD" in bad.text
        assert requests.get(base + "/openai-usage/", params={"lake": 7}, headers=auth, timeout=60).status_code == 400

        # Log in as a browser does (the UI's session cookie), then open the Spend entry of the UI.
        browser.get(base + "/api/v2/version")
        browser.add_cookie({"name": "_token", "value": token, "path": "/"})
        browser.get(base + "/plugin/openai-usage-spend")
        frame = wait_until(lambda: browser.find_elements(By.CSS_SELECTOR, "iframe[src*='/openai-usage/']"), timeout=120,
                           what="the UI to embed the Spend view")[0]
        browser.switch_to.frame(frame)
        table = wait_until(lambda: browser.find_elements(By.ID, "landing-status"), timeout=60, what="the landing status")[0]
        row = next(r for r in table.find_elements(By.TAG_NAME, "tr") if r.text.startswith("costs "))
        assert "2025-11-03" in row.text and ORG in row.text, row.text
        page = browser.page_source
        alerts = browser.find_element(By.ID, "fired-alerts")
        assert "org-daily" in alerts.text and "1 notifier(s)" in alerts.text and ORG in alerts.text
        report_frame = browser.find_element(By.ID, "spend-report")
        browser.switch_to.frame(report_frame)
        wait_until(lambda: "2025-11-09" in browser.find_element(By.TAG_NAME, "body").text, timeout=60, what="the report")
        report_text = browser.find_element(By.TAG_NAME, "body").text
        browser.switch_to.default_content()
        ARTIFACTS.mkdir(exist_ok=True)
        assert browser.save_screenshot(str(ARTIFACTS / "spend-view.png"))
        assert FAKE_KEY not in page and FAKE_KEY not in report_text and FAKE_KEY[:20] not in browser.page_source
        assert "Spend" in browser.find_element(By.TAG_NAME, "body").text
