"""The shipped DAGs end to end: `airflow dags test` against the fake API, into file:// and moto S3; and `make demo`."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest
from conftest import DAY, NOW, ORG_DIR

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
def grouping(key: str) -> list[str]:
    from airflow_provider_openai_usage.endpoints import finops_group_by

    return finops_group_by(key)


def airflow(*args: str, env: dict) -> subprocess.CompletedProcess:
    result = subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    return result


@pytest.fixture
def dag_env(airflow_db, conn_id) -> dict:
    return {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS), "OPENAI_USAGE_SETTLE_MINUTES": "60"}


def test_focus_export_is_added_on_request_after_the_costs_pull_and_the_directory(fake_api, conn_id, monkeypatch):
    """It reads what pull_costs landed (source='landed'): a day costs the API one costs request set (issue #28)."""
    from airflow.dag_processing.dagbag import DagBag

    monkeypatch.setenv("OPENAI_USAGE_FOCUS", "true")
    bag = DagBag(dag_folder=str(DAGS / "openai_usage_daily.py"))
    assert bag.import_errors == {}
    focus = bag.dags["openai_usage_daily"].get_task("organization.focus_export")
    assert focus.upstream_task_ids == {"organization.pull_costs", "organization.snapshot_directory"} and focus.source == "landed"
    monkeypatch.setenv("OPENAI_USAGE_ENDPOINTS", "completions")
    bag = DagBag(dag_folder=str(DAGS / "openai_usage_daily.py"))
    (error,) = bag.import_errors.values()
    assert "OPENAI_USAGE_FOCUS=true exports costs as FOCUS: add costs to OPENAI_USAGE_ENDPOINTS" in error
    assert fake_api.requests == []


def expected_rows(conn_id: str, key: str, start: int, end: int) -> int:
    """Rows the DAG lands: days before a grouping's floor (costs by api_key_id) are pulled without it."""
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build(key, start, end, group_by=grouping(key))
    return sum(1 for part, _ in query.floor_parts() for _ in OpenAIUsageHook(conn_id).iter_query_rows(part))


def parquet_rows(path) -> int:
    import pyarrow.parquet as pq

    with path.open("rb") as fh:
        return pq.read_metadata(fh).num_rows


def test_dags_import_fast_without_errors_or_requests(fake_api, conn_id):
    from airflow.dag_processing.dagbag import DagBag

    started = time.monotonic()
    bag = DagBag(dag_folder=str(DAGS))
    assert bag.import_errors == {}
    assert set(bag.dag_ids) == {"openai_usage_daily", "openai_usage_backfill", "openai_usage_monthly_rollup"}
    assert fake_api.requests == [], "parsing must not touch the network"
    daily = bag.dags["openai_usage_daily"]
    # The monthly rollup listens to the asset the daily pull of costs emits (one partition per day).
    rollup = bag.dags["openai_usage_monthly_rollup"]
    assert [rollup.timetable.asset_condition.uri] == [daily.get_task("organization.pull_costs").outlets[0].uri]
    per_org = {f"organization.{p}_{k}" for k in ENDPOINTS for p in ("wait", "pull")} | {"organization.snapshot_directory", "organization.check_organization"}
    assert {t.task_id for t in daily.tasks} == per_org | {"check_organizations", "spend_report", "spend_alerts", "all_organizations_landed"}
    leaves = {f"organization.pull_{k}" for k in ENDPOINTS} | {"organization.snapshot_directory"}
    for name in ("spend_report", "spend_alerts", "all_organizations_landed"):
        assert daily.get_task(name).upstream_task_ids == leaves, name
    # The report and alerts run for the organizations that landed; all_organizations_landed (a leaf with
    # the default rule) fails the run when any organization failed.
    assert {t.task_id for t in daily.tasks if t.trigger_rule != "all_success"} == {"spend_report", "spend_alerts"}
    assert all(t.deferrable for t in daily.tasks if ".wait_" in t.task_id)
    assert all(t.outlets for t in daily.tasks if ".pull_" in t.task_id), "pulls emit Assets"
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
    # One settle poll, one pull, and check_organization's question (asked twice here: the fake's clock
    # is a year behind this machine's, so the first 180-day window holds no costs).
    assert sum(r.path.endswith("/organization/costs") for r in fake_api.requests) == 4
    root = ObjectStoragePath(base, conn_id=out_conn or None)
    for key in ENDPOINTS:
        part = root / key / ORG_DIR / "date=2025-11-09" / "data.parquet"
        assert part.exists(), key
        assert parquet_rows(part) == expected_rows(conn_id, key, NOW - DAY, NOW), key


def test_backfill_dag_pulls_a_range_in_one_request_per_endpoint_with_daily_bytes(fake_api, conn_id, dag_env, tmp_path):
    backfill, daily = tmp_path / "backfill", tmp_path / "daily"
    conf = {"start_date": "2025-11-07", "end_date": "2025-11-09", "output_path": backfill.as_uri()}
    airflow("dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf), env=dag_env)
    assert len(fake_api.requests) == len(ENDPOINTS)
    for key in ENDPOINTS:
        days = sorted(p.parent.name for p in (backfill / key / ORG_DIR).glob("date=*/*.parquet"))
        assert days == ["date=2025-11-07", "date=2025-11-08", "date=2025-11-09"], key
        total = sum(parquet_rows(p) for p in (backfill / key / ORG_DIR).glob("date=*/*.parquet"))
        assert total == expected_rows(conn_id, key, NOW - 3 * DAY, NOW), key
    airflow("dags", "test", "openai_usage_daily", "2025-11-10", env={**dag_env, "OPENAI_USAGE_OUTPUT_PATH": daily.as_uri()})
    for key in ENDPOINTS:
        same_day = f"{key}/{ORG_DIR}/date=2025-11-09/data.parquet"
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
        f"{s3_bucket}/hist/{key}/{ORG_DIR}/date={d}/data.parquet" for key in ("costs", "images") for d in ("2025-11-08", "2025-11-09")
    ]




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


def test_the_shipped_dags_land_every_day_of_costs_by_api_key_from_2025_01_01_across_the_floor(fake_api, conn_id, dag_env, tmp_path):
    """Costs by api_key_id only exist from 2025-12-01 (issue #25): the catch-up lands every day, those
    before the floor without the key (their record says so), and a daily run on each side of it works."""
    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR

    fake_api.controls.now = COSTS_API_KEY_FLOOR + 45 * DAY  # 2026-01-15
    out = tmp_path / "out"
    conf = {"start_date": "2025-01-01", "end_date": "2026-01-14", "endpoints": ["costs"], "output_path": out.as_uri()}
    result = airflow("dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf), env=dag_env)
    days = sorted(p.parent.name for p in (out / "costs" / ORG_DIR).glob("date=*/data.parquet"))
    assert len(days) == 379 and days[0] == "date=2025-01-01" and days[-1] == "date=2026-01-14"
    assert all(r.status == 200 for r in fake_api.requests), "no costs request was refused"
    assert "the days 2025-01-01 to 2025-11-30 are pulled without group_by api_key_id" in result.stdout + result.stderr
    manifests = out / "costs" / ORG_DIR / "_openai_usage" / "manifests"
    grouped = {p.name: json.loads(p.read_text())["identity"]["group_by"] for p in manifests.glob("*.json")}
    assert "api_key_id" not in grouped["date=2025-11-30.json"] and "api_key_id" in grouped["date=2025-12-01.json"]
    before = {d: (out / "costs" / ORG_DIR / d / "data.parquet").read_bytes() for d in ("date=2025-06-01", "date=2025-12-01")}
    env = {**dag_env, "OPENAI_USAGE_OUTPUT_PATH": out.as_uri(), "OPENAI_USAGE_ENDPOINTS": "costs"}
    for logical in ("2025-06-02", "2025-12-02"):  # one daily run on each side of the floor, same bytes as the catch-up
        airflow("dags", "test", "openai_usage_daily", logical, env=env)
    assert {d: (out / "costs" / ORG_DIR / d / "data.parquet").read_bytes() for d in before} == before
    # (The directory snapshot's 404s for projects without a spend limit are the admin API's answer.)
    costs = [r for r in fake_api.requests if r.path == "/v1/organization/costs"]
    assert costs and [(r.query, r.status) for r in costs if r.status != 200] == []
