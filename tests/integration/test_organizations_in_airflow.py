"""Several organizations in one lake, through real Airflow (`airflow dags test`, mapped task groups).

Two organizations served by one fake API, each its own key and its own data (distinct ids, seeds
and projects, as OpenAI keeps organizations apart): every endpoint of each lands exactly its API's
rows under ``<dataset>/organization=<id>/``; one organization's 401 or 429 storm fails only its
own map index; the same organization under two connections is refused before any request;
per-organization and all-organization costs equal the API's to the last decimal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import DAY, FAKE_ORG, NOW, ORG_DIR

from airflow_provider_openai_usage.endpoints import ENDPOINTS, finops_group_by
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.testing.data import FakeOrganization
from airflow_provider_openai_usage.testing.faults import status

REPO = Path(__file__).resolve().parents[2]
SECOND = FakeOrganization.numbered(2, seed=8)
SECOND_ORG = SECOND.organization_id
DAY_LABEL = "2025-11-09"
QUICK = {"timeout": 60, "max_retries": 2, "max_retry_wait": 2, "max_total_retry_wait": 4, "backoff_base": 0.01, "max_retry_after": 0.05}


@pytest.fixture
def second_key(fake_api) -> str:
    key = fake_api.key + "-2"
    fake_api.add_organization(key, SECOND)
    return key


@pytest.fixture
def two_orgs(airflow_db, fake_api, conn_id, second_key, monkeypatch, tmp_path) -> dict:
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_ORG_2", fake_api.connection_json_for(second_key, **QUICK))
    return {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "OPENAI_USAGE_SETTLE_MINUTES": "60",
        "OPENAI_USAGE_RETRIES": "0",
        "OPENAI_USAGE_CONN_IDS": "openai_usage_default,openai_usage_org_2",
        "OPENAI_USAGE_OUTPUT_PATH": (tmp_path / "lake").as_uri(),
    }


def of(fake_api, org: str) -> list:
    return [r for r in fake_api.requests if r.organization_id == org]


def dags_test(env: dict, date: str = "2025-11-10") -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "airflow", "dags", "test", "openai_usage_daily", date], capture_output=True, text=True, env=env, timeout=900
    )


def expected_rows(conn_id: str, key: str) -> int:
    query = UsageQuery.build(key, NOW - DAY, NOW, group_by=finops_group_by(key))
    return sum(1 for part, _ in query.floor_parts() for _ in OpenAIUsageHook(conn_id).iter_query_rows(part))


def landed(lake: Path, key: str, org: str) -> Path:
    return lake / key / f"organization={org}" / f"date={DAY_LABEL}" / "data.parquet"


def landed_amount(lake: Path, org: str) -> Decimal:
    import pyarrow.parquet as pq

    table = pq.read_table(landed(lake, "costs", org))
    assert set(table.column("organization_id").to_pylist()) <= {org}
    return sum((v for v in table.column("amount_value").to_pylist() if v is not None), Decimal(0))


def api_amount(conn_id: str) -> Decimal:
    rows = OpenAIUsageHook(conn_id).iter_rows("costs", NOW - DAY, NOW, group_by=["project_id", "line_item"])
    return sum((r["amount_value"] for r in rows), Decimal(0))


def test_two_organizations_land_every_endpoint_as_map_indexes_with_exact_totals(two_orgs, fake_api, tmp_path):
    import pyarrow.parquet as pq

    result = dags_test(two_orgs)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    lake = tmp_path / "lake"
    for key in ENDPOINTS:
        for conn, org in (("openai_usage_default", FAKE_ORG), ("openai_usage_org_2", SECOND_ORG)):
            table = pq.read_table(landed(lake, key, org))
            assert table.num_rows == expected_rows(conn, key), (key, org)
            assert set(table.column("organization_id").to_pylist()) <= {org}, (key, org)
        assert sorted(p.name for p in (lake / key).iterdir()) == sorted([ORG_DIR, f"organization={SECOND_ORG}"]), key
    first, second = landed_amount(lake, FAKE_ORG), landed_amount(lake, SECOND_ORG)
    assert first == api_amount("openai_usage_default") and second == api_amount("openai_usage_org_2") and first != second
    # The all-organization total: one read over the organization level, no day counted twice.
    everything = pq.read_table(lake / "costs", partitioning="hive")
    assert sum((v for v in everything.column("amount_value").to_pylist() if v is not None), Decimal(0)) == first + second
    assert sorted(set(everything.column("organization").to_pylist())) == sorted([FAKE_ORG, SECOND_ORG])
    # Both organizations were asked with their own key; nothing was refused on a usage or costs path.
    assert of(fake_api, FAKE_ORG) and of(fake_api, SECOND_ORG) and all(r.organization_id for r in fake_api.requests)
    assert all(r.status == 200 for r in fake_api.requests if "/organization/usage/" in r.path or r.path.endswith("/costs"))
    assert (lake / "reports" / f"date={DAY_LABEL}" / "spend.html").exists(), "one report for all organizations"
    # The directory snapshots land per organization too (names for each organization's own ids), dated
    # the end of the interval (a snapshot dated D holds the names as at the end of D-1).
    snapshots = {org: lake / "directory" / "projects" / f"organization={org}" / "date=2025-11-10" / "data.parquet" for org in (FAKE_ORG, SECOND_ORG)}
    ids = {org: set(pq.read_table(path).column("id").to_pylist()) for org, path in snapshots.items()}
    assert ids[FAKE_ORG] and ids[SECOND_ORG] and not ids[FAKE_ORG] & ids[SECOND_ORG]
    assert set(pq.read_table(snapshots[SECOND_ORG]).column("organization_id").to_pylist()) == {SECOND_ORG}


@pytest.mark.parametrize("storm", ["401", "429"])
def test_one_organization_s_storm_fails_only_its_own_map_index(two_orgs, fake_api, second_key, tmp_path, storm):
    if storm == "401":
        fake_api.revoke(second_key)  # the connection's key was revoked in the meantime
    else:
        fake_api.faults.at_rate(1.0, [status(429, retry_after=0, key=second_key)])  # every request of org 2 is rate limited
    result = dags_test(two_orgs)
    assert result.returncode != 0, "a failed organization fails the run (all_organizations_landed)"
    lake = tmp_path / "lake"
    for key in ENDPOINTS:
        assert landed(lake, key, FAKE_ORG).exists(), key  # the healthy organization landed everything
        assert not (lake / key / f"organization={SECOND_ORG}").exists(), key
    assert landed_amount(lake, FAKE_ORG) == api_amount("openai_usage_default")
    assert all(r.status == 200 for r in of(fake_api, FAKE_ORG) if "/organization/usage/" in r.path or r.path.endswith("/costs"))
    stormed = [r for r in fake_api.requests if r.organization_id != FAKE_ORG]
    assert stormed and {r.status for r in stormed} == {401 if storm == "401" else 429}
    # The report and the alerts still ran for the organization that landed (trigger_rule="all_done").
    assert (lake / "reports" / f"date={DAY_LABEL}" / "spend.html").exists()


def test_the_same_organization_under_two_connections_is_refused_before_any_request(two_orgs, fake_api, tmp_path):
    env = {**two_orgs, "AIRFLOW_CONN_OPENAI_USAGE_ORG_2": fake_api.connection_json(max_retries=0)}  # org 1 again
    result = dags_test(env)
    assert result.returncode != 0
    assert "the same organization is configured more than once" in result.stdout + result.stderr
    assert FAKE_ORG in result.stdout + result.stderr
    assert fake_api.requests == []
    assert not (tmp_path / "lake").exists() or not any((tmp_path / "lake").rglob("data.parquet"))


def test_the_dag_shape_one_group_mapped_over_the_connections_and_one_per_pool(two_orgs, monkeypatch):
    from airflow.dag_processing.dagbag import DagBag

    for name, value in two_orgs.items():
        if name.startswith("OPENAI_USAGE_"):
            monkeypatch.setenv(name, value)
    dag = DagBag(dag_folder=str(REPO / "dags" / "openai_usage_daily.py")).dags["openai_usage_daily"]
    pull = dag.get_task("organization.pull_costs")
    assert pull.task_group.group_id == "organization" and type(pull.task_group).__name__ == "MappedTaskGroup"
    assert dag.get_task("spend_report").trigger_rule == "all_done" and dag.get_task("all_organizations_landed").trigger_rule == "all_success"
    monkeypatch.setenv("OPENAI_USAGE_POOLS", json.dumps({"openai_usage_default": "openai_org_a", "openai_usage_org_2": "openai_org_b"}))
    dag = DagBag(dag_folder=str(REPO / "dags" / "openai_usage_daily.py")).dags["openai_usage_daily"]
    pools = {t.task_group.group_id: t.pool for t in dag.tasks if t.task_group is not None and t.task_group.group_id}
    assert pools == {"organization_openai_org_a": "openai_org_a", "organization_openai_org_b": "openai_org_b"}
    for bad, message in (
        ({"OPENAI_USAGE_CONN_IDS": "a,b,a"}, "names 'a' more than once"),
        ({"OPENAI_USAGE_POOLS": '{"nobody": "p"}'}, "names connections ['nobody'] that are not in OPENAI_USAGE_CONN_IDS"),
        ({"OPENAI_USAGE_POOLS": '["p"]'}, "OPENAI_USAGE_POOLS must be a JSON object"),
    ):
        for name, value in bad.items():
            monkeypatch.setenv(name, value)
        (error,) = DagBag(dag_folder=str(REPO / "dags" / "openai_usage_daily.py")).import_errors.values()
        assert message in error
        monkeypatch.setenv("OPENAI_USAGE_CONN_IDS", two_orgs["OPENAI_USAGE_CONN_IDS"])
        monkeypatch.delenv("OPENAI_USAGE_POOLS", raising=False)
