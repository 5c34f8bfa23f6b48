"""`airflow backfill create` over the daily DAG, run by a real scheduler, api-server and LocalExecutor.

Deterministic under load (issue #12): the metastore is a real PostgreSQL (no sqlite write lock shared
by scheduler, api-server and CLI), and the api-server counts as ready only once its Execution API
has answered (its lazy first-request set-up used to outlast the tasks' API timeout on a busy
machine, failing task instances before they ran). Every task must succeed on its first try, so a
regression cannot hide behind retries; on failure the service logs and the failed tasks' logs print.
"""

from __future__ import annotations

from conftest import ORG_DIR
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

DAG_ID = "openai_usage_daily"
#: Three endpoints (usage, images, costs) keep it quick; `dags test` tests cover all 11.
KEYS = ("completions", "images", "costs")


def test_airflow_backfill_create_over_daily_runs_with_a_real_scheduler(fake_api, tmp_path):
    home, out = tmp_path / "home", tmp_path / "out"
    home.mkdir()
    with ServiceSet(tmp_path, airflow_home=home) as services:
        port = free_port()
        env = airflow_env(home, sql_alchemy_conn=start_postgres(services), executor="LocalExecutor", api_port=port, extra={
            "AIRFLOW__CORE__PARALLELISM": "4",
            "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT": fake_api.connection_json(),
            "OPENAI_USAGE_OUTPUT_PATH": out.as_uri(), "OPENAI_USAGE_SETTLE_MINUTES": "60",
            # No scheduled run for "today" beside the backfill (the fake API's clock stops in 2025).
            "OPENAI_USAGE_END_DATE": "2025-11-02",
            "OPENAI_USAGE_ENDPOINTS": ",".join(KEYS),
        })
        airflow_cli("db", "migrate", env=env)
        airflow_cli("dags", "reserialize", env=env)
        airflow_cli("dags", "unpause", DAG_ID, env=env)
        airflow_cli("backfill", "create", "--dag-id", DAG_ID, "--from-date", "2025-11-01", "--to-date", "2025-11-02", env=env)
        api = start_api_server(services, env)
        scheduler = start_airflow(services, "scheduler", env)
        rest = AirflowAPI(port)

        def finished() -> dict[str, str] | None:
            runs = rest.runs(DAG_ID)
            return runs if len(runs) == 2 and all(s in ("success", "failed") for s in runs.values()) else None

        runs = wait_until(finished, timeout=900, what="both backfill runs to finish", every=2, watch=[api, scheduler])
        tries = {(ti["dag_run_id"], ti["task_id"]): (ti["state"], ti["try_number"]) for ti in rest.task_instances(DAG_ID)}
        assert sorted(runs) == ["backfill__2025-11-02T00:00:00+00:00", "backfill__2025-11-03T00:00:00+00:00"], runs
        assert set(runs.values()) == {"success"}, runs
        # Per run: check_organizations; per organization (one here) check_organization, wait + pull per
        # endpoint and the directory snapshot; then the spend report, the spend alerts and all_organizations_landed.
        assert len(tries) == 2 * (2 * len(KEYS) + 6), sorted(tries)
        assert set(tries.values()) == {("success", 1)}, {k: v for k, v in tries.items() if v != ("success", 1)}
    # Whatever the partition layout, every (endpoint, day) has a file whose path names both.
    files = [str(p.relative_to(out)) for p in out.rglob("*") if p.is_file()]
    for key in KEYS:
        for day in ("2025-11-01", "2025-11-02"):
            assert any(key in f and day in f for f in files), (key, day, files)
    # One directory snapshot per run, dated by the run's data interval end.
    for day in ("2025-11-02", "2025-11-03"):
        assert (out / "directory" / "projects" / ORG_DIR / f"date={day}" / "data.parquet").is_file(), files
