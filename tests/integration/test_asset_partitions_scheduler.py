"""Asset partitions with a real scheduler: a costs pull emits one event per UTC day whose content
changed, and the example monthly rollup DAG (dags/openai_usage_monthly_rollup.py) runs once per
changed month: after a restatement in which OpenAI revised one November day, only November again.
The status command then reads the restated day and the last landed run from Airflow's record."""

from __future__ import annotations

import datetime as dt
import json
import shutil
import subprocess
import sys
from pathlib import Path

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

from airflow_provider_openai_usage.times import day_start

REPO = Path(__file__).resolve().parents[2]
PRODUCER = '''
from airflow.sdk import DAG
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator
import os

with DAG("costs_producer", schedule=None, catchup=False):
    OpenAICostsOperator(
        task_id="pull_costs", output_path=os.environ["OPENAI_USAGE_OUTPUT_PATH"], group_by=["project_id", "line_item"],
        start_time="{{ dag_run.conf['start'] }}", end_time="{{ dag_run.conf['end'] }}",
    )
'''
RANGE = json.dumps({"start": "2025-10-30T00:00:00Z", "end": "2025-11-03T00:00:00Z"})
ROLLUP = "openai_usage_monthly_rollup"


def test_the_rollup_reruns_only_the_month_a_restatement_changed(fake_api, tmp_path: Path) -> None:
    home, out, dags = tmp_path / "home", tmp_path / "out", tmp_path / "dags"
    home.mkdir()
    dags.mkdir()
    (dags / "costs_producer.py").write_text(PRODUCER)
    shutil.copy(REPO / "dags" / f"{ROLLUP}.py", dags)
    with ServiceSet(tmp_path, airflow_home=home) as services:
        port = free_port()
        env = airflow_env(home, sql_alchemy_conn=start_postgres(services), executor="LocalExecutor", api_port=port, extra={
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT": fake_api.connection_json(),
            "OPENAI_USAGE_OUTPUT_PATH": out.as_uri(),
        })
        airflow_cli("db", "migrate", env=env)
        airflow_cli("dags", "reserialize", env=env)
        for dag_id in ("costs_producer", ROLLUP):
            airflow_cli("dags", "unpause", dag_id, env=env)
        api = start_api_server(services, env)
        scheduler = start_airflow(services, "scheduler", env)
        rest = AirflowAPI(port)

        def rollup_runs(n: int):
            runs = rest.every(f"/dags/{ROLLUP}/dagRuns", "dag_runs")
            done = len(runs) == n and all(r["state"] in ("success", "failed") for r in runs)
            return sorted(runs, key=lambda r: r["queued_at"] or "") if done else None

        def producer_done(n: int):
            runs = rest.runs("costs_producer")
            return runs if len(runs) == n and all(s in ("success", "failed") for s in runs.values()) else None

        airflow_cli("dags", "trigger", "costs_producer", "--conf", RANGE, env=env)
        pulled = wait_until(lambda: producer_done(1), timeout=600, what="the first pull", every=1, watch=[api, scheduler])
        assert set(pulled.values()) == {"success"}
        first = wait_until(lambda: rollup_runs(2), timeout=600, what="one rollup per month", every=1, watch=[api, scheduler])
        # One pull's two months are queued together, in no particular order.
        assert sorted((r["partition_key"], r["state"]) for r in first) == [("2025-10", "success"), ("2025-11", "success")], first

        # OpenAI revises 2025-11-01; the same pull again (a restatement) changes that day only.
        fake_api.controls.revisions[day_start(dt.date(2025, 11, 1))] = 1
        airflow_cli("dags", "trigger", "costs_producer", "--conf", RANGE, env=env)
        restated = wait_until(lambda: producer_done(2), timeout=600, what="the restatement", every=1, watch=[api, scheduler])
        assert set(restated.values()) == {"success"}
        events = rest.every("/assets/events", "asset_events")
        keys_by_run: dict[str, list[str]] = {}
        for event in events:
            keys_by_run.setdefault(event["source_run_id"], []).append(event["partition_key"])
        assert sorted(sorted(str(key) for key in k) for k in keys_by_run.values()) == [
            ["2025-10-30", "2025-10-31", "2025-11-01", "2025-11-02"], ["2025-11-01"],
        ], keys_by_run
        third = wait_until(lambda: rollup_runs(3), timeout=600, what="the November rollup again", every=1, watch=[api, scheduler])
        assert sorted(r["partition_key"] for r in third) == ["2025-10", "2025-11", "2025-11"] and {r["state"] for r in third} == {"success"}
        assert (third[-1]["partition_key"], third[-1]["state"]) == ("2025-11", "success")  # the newest run: November only

        rollup = json.loads((out / "rollups" / "costs_monthly" / "month=2025-11.json").read_text())
        assert rollup["days_landed"] == ["2025-11-01", "2025-11-02"] and len(rollup["days_missing"]) == 28

        status = subprocess.run(
            [sys.executable, "-m", "airflow", "openai-usage", "status", "--output-path", out.as_uri(), "--through", "2025-11-02",
             "--dataset", "costs", "-o", "json"], capture_output=True, text=True, env=env, timeout=120,
        )
        assert status.returncode == 0, status.stdout + status.stderr
        (costs,) = json.loads(status.stdout[status.stdout.index("[") :])
        assert costs["restated"] == ["2025-11-01"] and costs["last_run"]["dag_id"] == "costs_producer"
        assert costs["last_run"]["day"] == "2025-11-01" and costs["last_run"]["task_id"] == "pull_costs"
