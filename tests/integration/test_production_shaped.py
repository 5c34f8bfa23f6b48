"""The daily DAG on a production-shaped Airflow (issue #19): PostgreSQL metastore, Redis broker, two
Celery workers, a separate triggerer, api-server, scheduler and dag-processor, each its own process.

Against a fake OpenAI API (its own process) that fails a tenth of requests (429 with Retry-After,
5xx, dropped connections) and reports the last days late, the DAG catches up with several days in
flight at once. In the middle one Celery worker is SIGKILLed while it runs tasks, and the triggerer is
restarted while it holds the late days' triggers. Every run must still succeed (Airflow's own
retries allowed) and the output tree must be byte-identical to a clean ``airflow dags test`` of the
same days on sqlite.

``make test`` runs a small scenario (5 days, 3 endpoints incl. costs); ``make e2e-prod`` the large one
(``E2E_DAYS=30 E2E_ENDPOINTS=all``). ``E2E_REPORT=path`` appends a one-line JSON summary per run
(runs, kills, retries, faults served) for docs/reliability.md.
"""

from __future__ import annotations

import collections
import datetime as dt
import hashlib
import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

from services import (
    CELERY_WORKER_READY,
    AirflowAPI,
    Service,
    ServiceSet,
    airflow_cli,
    airflow_env,
    free_port,
    start_airflow,
    start_api_server,
    start_fake_api,
    start_postgres,
    start_redis,
    wait_until,
)

from airflow_provider_openai_usage.endpoints import ENDPOINTS

DAG_ID = "openai_usage_daily"
DAY = 86400
#: The fake API's "now" (2025-11-10T00:00:00Z): data and buckets never depend on the clock.
NOW = 1762732800
SEED = 7
DAYS = int(os.environ.get("E2E_DAYS", "5"))
CHOSEN = os.environ.get("E2E_ENDPOINTS", "completions,images,costs")
KEYS = sorted(ENDPOINTS) if CHOSEN == "all" else [k.strip() for k in CHOSEN.split(",")]
#: The last LATE days are not reported until the test says so (after the triggerer restart).
LATE = 2
FIRST_DAY = NOW - DAYS * DAY
#: Seconds to allow per task instance of the whole scenario (2 cores, Celery start-up per task), so
#: the waits scale from the 5-day CI scenario to ``make e2e-prod``'s 30 days of every endpoint.
PER_TASK = 8
SCENARIO_TASKS = DAYS * 2 * len(KEYS)
CONNECTION_EXTRA = {"timeout": 10, "max_retries": 6, "max_retry_wait": 60, "backoff_base": 0.2}


def day(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.timezone.utc).strftime("%Y-%m-%d")


def tree_digest(root: Path) -> dict[str, str]:
    """Every file under ``root`` (whatever the layout), by relative path, with its sha256."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def dag_env(output: Path, base_url: str, key: str) -> dict[str, str]:
    return {
        "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT": json.dumps(
            {"conn_type": "openai_usage", "host": base_url, "password": key, "extra": CONNECTION_EXTRA}),
        "OPENAI_USAGE_OUTPUT_PATH": output.as_uri(),
        "OPENAI_USAGE_ENDPOINTS": ",".join(KEYS),
        "OPENAI_USAGE_SETTLE_MINUTES": "60",
        "OPENAI_USAGE_START_DATE": day(FIRST_DAY),
        "OPENAI_USAGE_END_DATE": day(NOW - DAY),
        "OPENAI_USAGE_CATCHUP": "true",
        "OPENAI_USAGE_MAX_ACTIVE_RUNS": "3",
        "OPENAI_USAGE_POKE_SECONDS": "3",
        "OPENAI_USAGE_RETRIES": "3",
        "OPENAI_USAGE_RETRY_DELAY_SECONDS": "2",
        # The spend report reads what has landed when it runs, so its bytes depend on the order runs
        # finish in; this test compares landed bytes with a sequential reference, so only the pulls run
        # (the directory snapshot has its own Airflow test: tests/integration/test_directory_in_airflow.py).
        "OPENAI_USAGE_SPEND_REPORT": "false",
        "OPENAI_USAGE_DIRECTORY": "false",
    }


#: ``airflow dags test`` for several days in one process: ``dag.test()`` is what the command runs, and one
#: interpreter saves its ~1 s start-up plus the in-process Execution API's ~3 s per day.
DAGS_TEST_DAYS = """
import sys
import pendulum
from airflow.dag_processing.dagbag import DagBag

bag = DagBag(dag_folder=sys.argv[1])
assert not bag.import_errors, bag.import_errors
dag = bag.get_dag(sys.argv[2])
for day in sys.argv[3:]:
    run = dag.test(logical_date=pendulum.parse(day, tz="UTC"))
    states = {ti.task_id: ti.state for ti in run.get_task_instances()}
    assert run.state == "success", (day, states)
    print("REFERENCE", day, run.state, flush=True)
"""


def reference_tree(tmp_path: Path) -> dict[str, str]:
    """The same days through ``airflow dags test`` (``dag.test()``) on sqlite, against a fault-free fake API."""
    home, output = tmp_path / "reference-home", tmp_path / "reference-output"
    home.mkdir()
    with ServiceSet(tmp_path / "reference", airflow_home=home) as services:
        key = "sk-admin-e2e-reference-key"
        base_url = start_fake_api(services, "--key", key, "--seed", str(SEED), "--now", str(NOW), name="fake-api-clean")
        env = airflow_env(home, sql_alchemy_conn=f"sqlite:///{home}/airflow.db", executor="LocalExecutor", api_port=free_port(),
                          extra={**dag_env(output, base_url, key), "OPENAI_USAGE_END_DATE": ""})
        airflow_cli("db", "migrate", env=env)
        days = [day(FIRST_DAY + n * DAY) for n in range(1, DAYS + 1)]  # `dags test D` lands the day that ends at D
        done = subprocess.run([sys.executable, "-c", DAGS_TEST_DAYS, env["AIRFLOW__CORE__DAGS_FOLDER"], DAG_ID, *days],
                              env=env, capture_output=True, text=True, timeout=3600)
        landed = [line.split()[1:] for line in done.stdout.splitlines() if line.startswith("REFERENCE ")]
        assert done.returncode == 0 and landed == [[d, "success"] for d in days], (
            done.stdout[-3000:] + done.stderr[-6000:])
    return tree_digest(output)


def celery_in_flight(worker: Service) -> int:
    """Tasks the worker has received and not finished, from its own log."""
    text = worker.current_text()
    received = len(re.findall(r"Task \S+\[[0-9a-f-]+\] received", text))
    done = len(re.findall(r"Task \S+\[[0-9a-f-]+\] (?:succeeded|failed|raised)", text))
    return received - done


def test_daily_dag_on_postgres_celery_and_a_separate_triggerer_survives_kills(tmp_path):
    started = time.monotonic()
    expected = reference_tree(tmp_path)
    assert len(expected) >= DAYS * len(KEYS), sorted(expected)
    reference_seconds = time.monotonic() - started

    home, output = tmp_path / "home", tmp_path / "output"
    home.mkdir()
    reveal = tmp_path / "reveal-late-days"
    requests_log = tmp_path / "fake-api-requests.jsonl"
    with ServiceSet(tmp_path, airflow_home=home) as services:
        db_url = start_postgres(services)
        broker = start_redis(services)
        key = "sk-admin-e2e-prod-key"
        base_url = start_fake_api(
            services, "--key", key, "--seed", str(SEED), "--now", str(NOW),
            "--fault-rate", "0.1", "--fault-kinds", "429,500,502,503,drop", "--retry-after", "1", "--fault-seed", "19",
            "--available-until", str(NOW - LATE * DAY), "--reveal-file", str(reveal), "--request-log", str(requests_log),
        )
        api_port = free_port()
        env = airflow_env(home, sql_alchemy_conn=db_url, executor="CeleryExecutor", api_port=api_port, extra={
            **dag_env(output, base_url, key),
            "AIRFLOW__CELERY__BROKER_URL": broker,
            "AIRFLOW__CELERY__RESULT_BACKEND": "db+" + db_url.replace("+psycopg2", ""),
            "AIRFLOW__CORE__PARALLELISM": "8",
            # A worker that dies takes its tasks' heartbeats with it: notice within 30 s, not 5 min.
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT": "30",
            "AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT_DETECTION_INTERVAL": "5",
            # Messages a dead worker had reserved come back after this (Redis' default is a day).
            "AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT": "60",
            "AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT": "90",
            "AIRFLOW__TRIGGERER__JOB_HEARTBEAT_SEC": "2",
        })
        airflow_cli("db", "migrate", env=env)
        api = start_api_server(services, env)
        processor = start_airflow(services, "dag-processor", env)
        scheduler = start_airflow(services, "scheduler", env)
        triggerer = start_airflow(services, "triggerer", env)
        workers = []
        for n in (1, 2):
            worker_env = {**env, "AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT": str(free_port())}
            workers.append(start_airflow(services, "celery", worker_env, "worker", "--concurrency", "2",
                                         "--celery-hostname", f"worker{n}@%h", name=f"worker{n}", ready=CELERY_WORKER_READY))
        everything = [api, processor, scheduler, triggerer, *workers]
        rest = AirflowAPI(api_port)

        def serialized() -> bool:
            return rest.session.get(f"{rest.base}/dags/{DAG_ID}", timeout=30).status_code == 200

        wait_until(serialized, timeout=300, what="the dag-processor to serialize the DAG", watch=everything)
        rest.unpause(DAG_ID)

        # 1. SIGKILL worker1 while one of its task processes is running an attempt (Airflow's TI pid is
        #    below the worker): that attempt dies with it and must be retried by Airflow.
        def running_on_worker1() -> list[dict]:
            below = set(workers[0].descendants())
            return [ti for ti in rest.task_instances(DAG_ID) if ti["state"] == "running" and ti.get("pid") in below]

        wait_until(running_on_worker1, timeout=600, what="worker1 to run a task attempt", every=0.2, watch=everything)
        below = set(workers[0].descendants())
        killed_in_flight = celery_in_flight(workers[0])
        workers[0].kill()
        # Attempts whose process was below worker1 and that are still "running" after the kill died
        # mid-attempt (one that had finished would have reported its state before its process ended).
        killed = {(ti["dag_run_id"], ti["task_id"]) for ti in rest.task_instances(DAG_ID)
                  if ti["state"] == "running" and ti.get("pid") in below}

        # 2. Restart the triggerer while it holds the late days' triggers; the new one must resume them.
        def deferred() -> list[dict]:
            return [ti for ti in rest.task_instances(DAG_ID) if ti["state"] == "deferred"]

        # The late days' sensors defer only once the runs before them have been scheduled.
        wait_until(deferred, timeout=max(600, PER_TASK * SCENARIO_TASKS), what="a sensor to defer to the triggerer", every=1,
                   watch=[api, processor, scheduler, triggerer, workers[1]])
        wait_until(lambda: "poll " in _trigger_logs(home), timeout=300, what="the triggerer to poll a late day",
                   watch=[triggerer])
        triggerer.stop()
        polls_before_restart = _trigger_logs(home).count('"poll ')
        triggerer.start()
        wait_until(lambda: _trigger_logs(home).count('"poll ') > polls_before_restart, timeout=300,
                   what="the restarted triggerer to poll the deferred sensors again", watch=[triggerer])
        deferred_at_restart = len(deferred())

        # 3. The late days are reported now; everything must finish and succeed.
        reveal.touch()
        workers[0].start()  # capacity back, as an orchestrator would restart a dead worker
        alive = [api, processor, scheduler, triggerer, *workers]

        def finished() -> dict[str, str] | None:
            runs = rest.runs(DAG_ID)
            return runs if len(runs) == DAYS and all(s in ("success", "failed") for s in runs.values()) else None

        runs = wait_until(finished, timeout=max(1800, PER_TASK * SCENARIO_TASKS), what=f"{DAYS} runs to finish", every=2, watch=alive)
        instances = rest.task_instances(DAG_ID)
        assert set(runs.values()) == {"success"}, f"{runs}\n{services.report()}"
        # Per day: wait + pull per endpoint and check_organization (one organization: map index 0), then
        # check_organizations before and all_organizations_landed after them.
        assert len(instances) == DAYS * (2 * len(KEYS) + 3) and {ti["state"] for ti in instances} == {"success"}

        got = tree_digest(output)
        missing, extra = sorted(set(expected) - set(got)), sorted(set(got) - set(expected))
        differ = sorted(k for k in set(got) & set(expected) if got[k] != expected[k])
        assert not (missing or extra or differ), f"missing {missing}\nextra {extra}\ndiffer {differ}"

        faults = collections.Counter(json.loads(line)["fault"] for line in requests_log.read_text().splitlines())
        retried = sorted(f'{ti["dag_run_id"][-25:-15]} {ti["task_id"]} try {ti["try_number"]}'
                         for ti in instances if ti["try_number"] > 1)
        summary = {
            "days": DAYS, "endpoints": len(KEYS), "runs": len(runs), "task_instances": len(instances),
            "worker_sigkilled_with_tasks_in_flight": killed_in_flight, "attempts_killed": len(killed), "triggerer_restarts": 1,
            "sensors_deferred_at_restart": deferred_at_restart, "airflow_retries": len(retried),
            "requests": sum(faults.values()), "faults_served": {k: v for k, v in faults.items() if k},
            "files": len(got), "reference_seconds": round(reference_seconds), "total_seconds": round(time.monotonic() - started),
        }
        print(json.dumps(summary), "\n", "\n".join(retried))
        if os.environ.get("E2E_REPORT"):
            with open(os.environ["E2E_REPORT"], "a") as fh:
                fh.write(json.dumps(summary) + "\n")
        assert killed and deferred_at_restart > 0, summary
        tries = {(ti["dag_run_id"], ti["task_id"]): ti["try_number"] for ti in instances}
        assert all(tries[k] > 1 for k in killed), f"killed attempts must have been retried: {killed} {tries}"


def _trigger_logs(home: Path) -> str:
    """The trigger logs Airflow writes next to the task logs (``attempt=N.log.trigger.<id>.log``)."""
    # Mapped tasks (the daily DAG's organization group) log one level deeper: .../task_id=*/map_index=N/.
    return "".join(p.read_text(errors="replace") for p in sorted((home / "logs").rglob("*.trigger.*.log")))


def test_daily_dag_knobs_for_deployments_come_from_the_environment(monkeypatch):
    import importlib.util as util

    import pytest
    from airflow.sdk import DAG

    def load() -> DAG:
        spec = util.spec_from_file_location("daily_knobs", Path(__file__).resolve().parents[2] / "dags" / f"{DAG_ID}.py")
        module = util.module_from_spec(spec)
        spec.loader.exec_module(module)
        return next(v for v in vars(module).values() if isinstance(v, DAG))

    default = load()
    # Per organization (the mapped `organization` group): check_organization, wait + pull per endpoint,
    # snapshot_directory (focus_export only on request); then check_organizations before them and
    # spend_report, spend_alerts and all_organizations_landed after them.
    assert len(default.tasks) == 2 * len(ENDPOINTS) + 6 and default.max_active_runs == 4 and default.end_date is None
    assert {(t.pool, t.retries) for t in default.tasks} == {("default_pool", 2)}
    for name, value in {"OPENAI_USAGE_ENDPOINTS": "costs, images", "OPENAI_USAGE_END_DATE": "2025-11-09",
                        "OPENAI_USAGE_MAX_ACTIVE_RUNS": "3", "OPENAI_USAGE_POKE_SECONDS": "3", "OPENAI_USAGE_POOL": "org_main",
                        "OPENAI_USAGE_RETRIES": "5", "OPENAI_USAGE_RETRY_DELAY_SECONDS": "7", "OPENAI_USAGE_FOCUS": "true"}.items():
        monkeypatch.setenv(name, value)
    dag = load()
    assert sorted(t.task_id for t in dag.tasks) == [
        "all_organizations_landed", "check_organizations", "organization.check_organization", "organization.focus_export",
        "organization.pull_costs", "organization.pull_images", "organization.snapshot_directory", "organization.wait_costs",
        "organization.wait_images", "spend_alerts", "spend_report",
    ]
    assert dag.max_active_runs == 3 and dag.end_date.isoformat().startswith("2025-11-09")
    assert {(t.pool, t.retries, t.retry_delay.total_seconds()) for t in dag.tasks} == {("org_main", 5, 7.0)}
    assert {t.poke_interval for t in dag.tasks if ".wait_" in t.task_id} == {3.0}
    monkeypatch.setenv("OPENAI_USAGE_ENDPOINTS", "costs,chat")
    with pytest.raises(ValueError, match=r"OPENAI_USAGE_ENDPOINTS names unknown endpoints \['chat'\]"):
        load()
