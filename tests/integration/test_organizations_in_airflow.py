"""Several organizations in one lake, through real Airflow (`airflow dags test`, mapped task groups).

Two organizations, each its own key and its own data (two fake APIs: distinct keys, ids, seeds and
projects, as OpenAI keeps organizations apart): every endpoint of each lands exactly its API's rows
under ``<dataset>/organization=<id>/``; one organization's 401 or 429 storm fails only its own map
index; the same organization under two connections is refused before any request; per-organization
and all-organization costs equal the APIs' to the last decimal.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import DAY, FAKE_ORG, NOW, ORG_DIR

from airflow_provider_openai_usage.endpoints import ENDPOINTS, finops_group_by
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI
from airflow_provider_openai_usage.testing.data import FakeOrganization
from airflow_provider_openai_usage.testing.faults import status

REPO = Path(__file__).resolve().parents[2]
SECOND_ORG = "org-SecondFakeOrg4Tq8Wz1"
SECOND_KEY = "sk-admin-second-organization-test-key"
DAY_LABEL = "2025-11-09"


@pytest.fixture
def second_api() -> Iterator[FakeOpenAIUsageAPI]:
    org = FakeOrganization(seed=11, organization_id=SECOND_ORG, projects=("proj_north", "proj_south"))
    with FakeOpenAIUsageAPI(key=SECOND_KEY, organization=org, now=NOW) as api:
        yield api


@pytest.fixture
def two_orgs(airflow_db, fake_api, conn_id, second_api, monkeypatch, tmp_path) -> dict:
    quick = {"timeout": 60, "max_retries": 2, "max_retry_wait": 2, "max_total_retry_wait": 4, "backoff_base": 0.01, "max_retry_after": 0.05}
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_ORG_2", second_api.connection_json(**quick))
    return {
        **os.environ,
        "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
        "OPENAI_USAGE_SETTLE_MINUTES": "60",
        "OPENAI_USAGE_RETRIES": "0",
        "OPENAI_USAGE_CONN_IDS": "openai_usage_default,openai_usage_org_2",
        "OPENAI_USAGE_OUTPUT_PATH": (tmp_path / "lake").as_uri(),
        "AIRFLOW_CONN_OPENAI_USAGE_ORG_2": second_api.connection_json(**quick),
    }


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


def test_two_organizations_land_every_endpoint_as_map_indexes_with_exact_totals(two_orgs, fake_api, second_api, monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    result = dags_test(two_orgs)
    assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
    lake = tmp_path / "lake"
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_ORG_2", two_orgs["AIRFLOW_CONN_OPENAI_USAGE_ORG_2"])
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
    # Each API only ever saw its own key: no request of one organization went to the other.
    assert fake_api.requests and second_api.requests
    assert all(r.status == 200 for r in fake_api.requests + second_api.requests)
    assert (lake / "reports" / f"date={DAY_LABEL}" / "spend.html").exists(), "one report for all organizations"
    # The directory snapshots land per organization too (names for each organization's own ids).
    for org in (FAKE_ORG, SECOND_ORG):
        assert (lake / "directory" / "projects" / f"organization={org}" / f"date={DAY_LABEL}").is_dir()
    names = pq.read_table(lake / "directory" / "projects" / f"organization={SECOND_ORG}" / f"date={DAY_LABEL}" / "data.parquet")
    assert set(names.column("id").to_pylist()) == {"proj_north", "proj_south"}


@pytest.mark.parametrize("storm", ["401", "429"])
def test_one_organization_s_storm_fails_only_its_own_map_index(two_orgs, fake_api, second_api, tmp_path, storm):
    if storm == "401":
        second_api.api.key = "sk-admin-revoked-in-the-meantime-000"  # the connection's key is no longer valid
    else:
        second_api.faults.at_rate(1.0, [status(429, retry_after=0)])  # every request of org 2 is rate limited
    result = dags_test(two_orgs)
    assert result.returncode != 0, "a failed organization fails the run (all_organizations_landed)"
    lake = tmp_path / "lake"
    for key in ENDPOINTS:
        assert landed(lake, key, FAKE_ORG).exists(), key  # the healthy organization landed everything
        assert not (lake / key / f"organization={SECOND_ORG}").exists(), key
    assert landed_amount(lake, FAKE_ORG) == api_amount("openai_usage_default")
    assert all(r.status == 200 for r in fake_api.requests)
    assert {r.status for r in second_api.requests} == {401 if storm == "401" else 429}
    # The report and the alerts still ran for the organization that landed (trigger_rule="all_done").
    assert (lake / "reports" / f"date={DAY_LABEL}" / "spend.html").exists()


def test_the_same_organization_under_two_connections_is_refused_before_any_request(two_orgs, fake_api, second_api, tmp_path):
    env = {**two_orgs, "AIRFLOW_CONN_OPENAI_USAGE_ORG_2": fake_api.connection_json(max_retries=0)}  # org 1 again
    result = dags_test(env)
    assert result.returncode != 0
    assert "the same organization is configured more than once" in result.stdout + result.stderr
    assert FAKE_ORG in result.stdout + result.stderr
    assert fake_api.requests == [] and second_api.requests == []
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
