"""The shipped DAGs end to end: `airflow dags test` against the fake API, into file:// and moto S3; and `make demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from conftest import DAY, NOW

REPO = Path(__file__).resolve().parents[1]
DAGS = REPO / "dags"
FINOPS = ("project_id", "user_id", "api_key_id", "model", "line_item")


def grouping(key: str) -> list[str]:
    return [d for d in FINOPS if d in ENDPOINTS[key].group_by and (key, d) != ("costs", "user_id")]


def airflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture
def dag_env(airflow_db, conn_id) -> dict:
    return {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "OPENAI_USAGE_SETTLE_MINUTES": "60"}


def expected_rows(conn_id: str, key: str, start: int, end: int) -> int:
    return sum(1 for _ in OpenAIUsageHook(conn_id).iter_rows(key, start, end, group_by=grouping(key)))


def parquet_rows(path) -> int:
    import pyarrow.parquet as pq

    with path.open("rb") as fh:
        return pq.read_metadata(fh).num_rows


def test_dags_import_fast_without_errors_or_requests(fake_api, conn_id):
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"openai_usage_daily", "openai_usage_backfill"}
    assert fake_api.requests == [], "parsing must not touch the network"
    daily = bag.dags["openai_usage_daily"]
    assert {t.task_id for t in daily.tasks} == {f"{p}_{k}" for k in ENDPOINTS for p in ("wait", "pull")}
    assert all(t.deferrable for t in daily.tasks if t.task_id.startswith("wait_"))
    assert all(t.outlets for t in daily.tasks if t.task_id.startswith("pull_")), "pulls emit Assets"
    assert time.monotonic() - started < 10


@pytest.mark.parametrize("target", ["file", "s3"])
def test_daily_dag_lands_every_endpoint_for_one_day(fake_api, conn_id, dag_env, tmp_path, target, request):
    from airflow.sdk import ObjectStoragePath

    if target == "s3":
        bucket = request.getfixturevalue("s3_bucket")
        base, out_conn = f"s3://{bucket}/openai", "moto_s3"
        dag_env = {**dag_env, **{k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}}
    else:
        base, out_conn = tmp_path.as_uri(), ""
    env = {**dag_env, "OPENAI_USAGE_OUTPUT_PATH": base, "OPENAI_USAGE_OUTPUT_CONN_ID": out_conn}
    airflow("dags", "test", "openai_usage_daily", "2025-11-10", env=env)
    assert sum(r.path.endswith("/organization/costs") for r in fake_api.requests) == 2, "one settle poll, one pull"
    root = ObjectStoragePath(base, conn_id=out_conn or None)
    for key in ENDPOINTS:
        part = root / key / "date=2025-11-09" / "part-0000-2400.parquet"
        assert part.exists(), key
        assert parquet_rows(part) == expected_rows(conn_id, key, NOW - DAY, NOW), key


def test_backfill_dag_pulls_a_range_in_one_request_per_endpoint_with_daily_bytes(fake_api, conn_id, dag_env, tmp_path):
    backfill, daily = tmp_path / "backfill", tmp_path / "daily"
    conf = {"start_date": "2025-11-07", "end_date": "2025-11-09", "output_path": backfill.as_uri()}
    airflow("dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf), env=dag_env)
    assert len(fake_api.requests) == len(ENDPOINTS)
    for key in ENDPOINTS:
        days = sorted(p.parent.name for p in (backfill / key).glob("date=*/*.parquet"))
        assert days == ["date=2025-11-07", "date=2025-11-08", "date=2025-11-09"], key
        total = sum(parquet_rows(p) for p in (backfill / key).glob("date=*/*.parquet"))
        assert total == expected_rows(conn_id, key, NOW - 3 * DAY, NOW), key
    airflow("dags", "test", "openai_usage_daily", "2025-11-10", env={**dag_env, "OPENAI_USAGE_OUTPUT_PATH": daily.as_uri()})
    for key in ENDPOINTS:
        same_day = f"{key}/date=2025-11-09/part-0000-2400.parquet"
        assert (backfill / same_day).read_bytes() == (daily / same_day).read_bytes(), key


def test_backfill_dag_writes_to_s3_through_params(fake_api, conn_id, dag_env, s3_bucket):
    from airflow.sdk import ObjectStoragePath

    env = {**dag_env, **{k: v for k, v in os.environ.items() if k.startswith("AIRFLOW_CONN_")}}
    conf = {"start_date": "2025-11-08", "end_date": "2025-11-09", "endpoints": ["costs", "images"],
            "output_path": f"s3://{s3_bucket}/hist", "output_conn_id": "moto_s3"}
    airflow("dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf), env=env)
    root = ObjectStoragePath(f"s3://{s3_bucket}/hist", conn_id="moto_s3")
    found = sorted(p.path for p in root.rglob("*.parquet"))
    assert found == [
        f"{s3_bucket}/hist/{key}/date={d}/part-0000-2400.parquet" for key in ("costs", "images") for d in ("2025-11-08", "2025-11-09")
    ]


def test_airflow_backfill_create_over_daily_runs_with_a_real_scheduler(fake_api, tmp_path):
    """`airflow backfill create` needs a scheduler and the execution API: run both for real."""
    import socket

    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")},
        "AIRFLOW_HOME": str(home), "AIRFLOW__CORE__LOAD_EXAMPLES": "False", "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS),
        "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db", "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
        "AIRFLOW__CORE__PARALLELISM": "4", "AIRFLOW__API__HOST": "127.0.0.1", "AIRFLOW__API__PORT": str(port),
        "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"http://127.0.0.1:{port}/execution/",
        "AIRFLOW__SCHEDULER__SCHEDULER_HEARTBEAT_SEC": "1",
        "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT": fake_api.connection_json(),
        "OPENAI_USAGE_OUTPUT_PATH": out.as_uri(), "OPENAI_USAGE_SETTLE_MINUTES": "60",
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    airflow("db", "migrate", env=env)
    airflow("dags", "reserialize", env=env)
    # Everything that writes to sqlite from the CLI happens before the scheduler starts writing too
    # (concurrent writers get "database is locked"); the backfill's runs wait queued until then.
    airflow("dags", "unpause", "openai_usage_daily", env=env)
    airflow("backfill", "create", "--dag-id", "openai_usage_daily", "--from-date", "2025-11-01", "--to-date", "2025-11-02", env=env)
    servers = []
    try:
        api = subprocess.Popen([sys.executable, "-m", "airflow", "api-server"], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        servers.append(api)
        for line in api.stdout:  # readiness from its own log line, not a sleep
            if "Application startup complete" in line:
                break
        threading.Thread(target=api.stdout.read, daemon=True).start()
        servers.append(subprocess.Popen([sys.executable, "-m", "airflow", "scheduler"], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))
        deadline = time.monotonic() + 300
        while True:  # each CLI call takes seconds by itself: this loop paces on the scheduler's progress
            assert time.monotonic() < deadline, "backfill runs did not finish within 300 s"
            listing = subprocess.run([sys.executable, "-m", "airflow", "dags", "list-runs", "openai_usage_daily", "--output", "json"],
                                     capture_output=True, text=True, env=env, timeout=120)
            if listing.returncode != 0:  # a read can meet the scheduler's write lock; look again
                continue
            runs = json.loads(next(line for line in listing.stdout.splitlines() if line.startswith("[")))
            backfills = {r["run_id"]: r["state"] for r in runs if r["run_id"].startswith("backfill__")}
            if len(backfills) == 2 and all(s in ("success", "failed") for s in backfills.values()):
                break
        assert set(backfills.values()) == {"success"}, backfills
    finally:
        for proc in servers:
            proc.terminate()
        for proc in servers:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=20)
    for key in ENDPOINTS:
        days = sorted(p.parent.name for p in (out / key).glob("date=*/*.parquet"))
        assert days == ["date=2025-11-01", "date=2025-11-02"], key


def test_daily_dag_catchup_and_start_date_come_from_the_environment(monkeypatch):
    import importlib.util as util

    monkeypatch.setenv("OPENAI_USAGE_CATCHUP", "true")
    monkeypatch.setenv("OPENAI_USAGE_START_DATE", "2025-06-01")
    spec = util.spec_from_file_location("daily_env", DAGS / "openai_usage_daily.py")
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    from airflow.sdk import DAG

    dag = next(v for v in vars(module).values() if isinstance(v, DAG))
    assert dag.catchup is True and dag.start_date.isoformat().startswith("2025-06-01")
