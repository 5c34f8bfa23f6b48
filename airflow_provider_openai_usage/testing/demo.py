"""``make demo``: the example DAGs, for real, against the fake API, into ./demo-output.

Steps: a local AIRFLOW_HOME (sqlite) → the fake OpenAI usage API on 127.0.0.1 → the
``openai_usage_default`` connection pointed at it → ``openai_usage_backfill`` over the last 30 days
(``--days``), or from ``--since`` (``make demo``: 2025-01-01, so costs by API key cross OpenAI's
2025-12-01 floor and the days before it land without the key) → one ``openai_usage_daily`` run
(pulls, then the spend report and spend alerts) → a report of what landed. The fake organization's
``proj_beta`` spends many times its usual amount yesterday, so the anomaly rule fires; its alert
goes through the Slack provider's notifier to a local stand-in for a Slack webhook and is printed.
Running it twice gives the same files and sends no alert twice.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import shlex
import socket
import sys
import time
import warnings
from decimal import Decimal
from pathlib import Path
from typing import Any

DEMO_SEED = 42
#: Yesterday, this project runs this many extra events: an anomaly for the spend alerts to catch.
SPIKE_PROJECT, SPIKE_EVENTS = "proj_beta", 40
ALERT_CONN_ID = "openai_usage_demo_alerts"
#: Enough projects for a "top five" (the directory names them).
DEMO_PROJECTS = 7
CENT = Decimal("0.01")


def _configure_airflow(workdir: Path, dags: Path, output: Path, verbose: bool) -> None:
    """Must run before anything imports Airflow: it reads its configuration once."""
    home = workdir / ".demo-airflow"
    home.mkdir(parents=True, exist_ok=True)
    os.environ.update(
        {
            "AIRFLOW_HOME": str(home),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{home}/airflow.db",
            "OPENAI_USAGE_OUTPUT_PATH": output.as_uri(),
            # The fake API's days are final at once; against OpenAI keep the default hour.
            "OPENAI_USAGE_SETTLE_MINUTES": "0",
        }
    )
    if not verbose:
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING")
    # Airflow's in-process execution API (used by dag.test) imports svcs, which imports starlette's
    # test client, which warns about httpx on every run. Neither is ours to fix; this one message is
    # noise in a demo, so it alone is silenced (our own modules never import the test client).
    warnings.filterwarnings("ignore", message=r"Using `httpx` with `starlette\.testclient` is deprecated")


def _report(output: Path) -> str:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from airflow_provider_openai_usage.endpoints import ENDPOINTS

    lines = [
        f"What landed in {output} (an empty day is a file with 0 rows: that day had no usage):",
        f"  {'endpoint':28} {'organization':30} {'days':>5} {'empty':>6} {'rows':>7} {'files':>6}",
    ]
    for key in ENDPOINTS:
        for org_dir in sorted((output / key).glob("organization=*")):
            files = sorted(org_dir.glob("date=*/*.parquet"))
            rows_per_day: dict[str, int] = {}
            for f in files:
                rows_per_day[f.parent.name] = rows_per_day.get(f.parent.name, 0) + pq.read_metadata(f).num_rows
            empty = sum(1 for n in rows_per_day.values() if n == 0)
            org = org_dir.name.split("=", 1)[1]
            lines.append(f"  {key:28} {org:30} {len(rows_per_day):>5} {empty:>6} {sum(rows_per_day.values()):>7} {len(files):>6}")
    costs = pq.read_table(output / "costs", partitioning="hive")
    if costs.num_rows:
        dates = costs.column("date").to_pylist()
        lines.append(f"Costs per organization and project, {min(dates)} to {max(dates)}:")
        for org in sorted(set(costs.column("organization_id").to_pylist())):
            mine = costs.filter(pc.equal(costs.column("organization_id"), org))
            by_project = mine.group_by("project_id").aggregate([("amount_value", "sum")]).sort_by("project_id")
            projects, amounts = by_project.column("project_id").to_pylist(), by_project.column("amount_value_sum").to_pylist()
            lines.append(f"  {org}")
            for project, amount in zip(projects, amounts, strict=True):
                lines.append(f"    {project or '(no project)':26} {amount.quantize(CENT):>12} usd")
            lines.append(f"    {'organization total':26} {pc.sum(mine.column('amount_value')).as_py().quantize(CENT):>12} usd")
            lines += _top_projects_by_name(output, org, by_project)
        lines.append(f"  {'all organizations':28} {pc.sum(costs.column('amount_value')).as_py().quantize(CENT):>12} usd")
    lines += _focus_report(output)
    return "\n".join(lines)


def _top_projects_by_name(output: Path, org: str, by_project: Any) -> list[str]:
    """The five projects of ``org`` that cost most, named from its latest directory snapshot (ids without a name stay ids)."""
    import pyarrow.parquet as pq

    snapshots = sorted((output / "directory" / "projects" / f"organization={org}").glob("date=*/data.parquet"))
    if not snapshots:
        return []
    projects = pq.read_table(snapshots[-1], columns=["id", "name"])
    names = dict(zip(projects.column("id").to_pylist(), projects.column("name").to_pylist(), strict=True))
    costs = zip(by_project.column("project_id").to_pylist(), by_project.column("amount_value_sum").to_pylist(), strict=True)
    ranked = sorted(costs, key=lambda p: -p[1])
    lines = [f"    Top five projects by cost, named from the directory snapshot of {snapshots[-1].parent.name[5:]}:"]
    for rank, (project, amount) in enumerate(ranked[:5], 1):
        lines.append(f"      {rank}. {names.get(project) or project or '(no project)':25} {amount.quantize(CENT):>12} usd   {project}")
    return lines


#: The demo's two organizations: (connection id, display name). Their ids and data are the fake API's
#: (``fake_organizations(2, seed=DEMO_SEED, projects=DEMO_PROJECTS)``, what ``serve --organizations 2`` serves);
#: the names are connection extras (no API reports an organization's name; FOCUS needs it).
DEMO_CONNECTIONS = (("openai_usage_default", "Demo Organization"), ("openai_usage_org_2", "Demo Research"))
#: The first organization's id (the default fake organization's), FOCUS's BillingAccountId of its rows.
DEMO_ACCOUNT_ID, DEMO_ACCOUNT_NAME = "org-FakeUsage7Fk3bQz9Mn2Lp5", DEMO_CONNECTIONS[0][1]


def write_focus(output: Path, first, end, source: str = "api", openai_usage_conn_id: str = "openai_usage_default") -> dict:
    """The backfilled days' costs as FOCUS 1.2, beside the raw partitions (``<output>/focus/organization=<id>``).
    The demo reads the costs the backfill landed (``source="landed"``: no request); the daily run wrote its own day.

    Runs the operator's ``execute`` directly: ``dag.test()`` only runs DAGs from the dags folder, and
    the example DAGs stay the two the README describes. tests/integration/test_focus_validator.py
    runs the FinOps validator on exactly this output.
    """
    from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator

    operator = OpenAIFocusOperator(
        task_id="focus",
        output_path=output.as_uri(),
        start_time=first,
        end_time=end,
        source=source,
        openai_usage_conn_id=openai_usage_conn_id,
    )
    from airflow.sdk.bases.operator import ExecutorSafeguard

    # Airflow warns ("execute cannot be called outside of the Task Runner!") unless the runner's
    # sentinel names the operator; the demo is the runner here, so it sets the same sentinel.
    token = ExecutorSafeguard.tracker.set(operator)
    try:
        return operator.execute({})
    finally:
        ExecutorSafeguard.tracker.reset(token)


def _tables(output: Path, first: Any, end: Any) -> list[str]:
    """Costs and completions as Delta and Iceberg tables beside the files, and one DuckDB query over them."""
    from airflow_provider_openai_usage.testing import demo_tables

    print(f"tables: {', '.join(demo_tables.TABLE_ENDPOINTS)} as Delta and Iceberg (table_format=...)", flush=True)
    try:
        lines = ["", "Tables (docs/query.md, \"Delta and Iceberg tables\"), both organizations in each:"]
        for conn_id, _ in DEMO_CONNECTIONS:
            lines += demo_tables.write_tables(output, first, end, openai_usage_conn_id=conn_id)
        query, result = demo_tables.duckdb_query(output)
    except ImportError as exc:
        return [f"\nTables skipped: {exc.name} is not installed (pip install 'airflow-provider-openai-usage[delta,iceberg]')"]
    lines += ["", "One DuckDB query over them:", *("  " + q for q in query.splitlines())]
    lines += [f"  -> {sink:8} {rows:>6} rows  {usd} usd" for sink, rows, usd in result]
    return lines


def _dags_folder(workdir: Path, given: Path | None) -> Path:
    """``--dags``, else ``<workdir>/dags``, else the ``dags/`` of the clone this package runs from."""
    if given is not None:
        candidates = [given.resolve()]
    else:
        candidates = [(workdir / "dags").resolve(), Path(__file__).resolve().parents[2] / "dags"]
    for folder in candidates:
        if (folder / "openai_usage_daily.py").is_file() and (folder / "openai_usage_backfill.py").is_file():
            return folder
    raise SystemExit(
        f"demo: no folder with the shipped DAGs (openai_usage_daily.py, openai_usage_backfill.py) at "
        f"{' or '.join(str(c) for c in candidates)}; pass --dags PATH, the dags/ folder of a clone of this repository"
    )


def _focus_report(output: Path) -> list[str]:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    lines = []
    for org_dir in sorted((output / "focus").glob("organization=*")):
        files = sorted(org_dir.glob("date=*/*.parquet"))
        billed = sum((pc.sum(pq.read_table(f, columns=["BilledCost"]).column(0)).as_py() or Decimal(0) for f in files), Decimal(0))
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        lines.append(
            f"FOCUS 1.2 (focus/{org_dir.name}/): {len(files)} days, {rows} rows, BilledCost {billed.quantize(CENT)} usd (docs/focus.md)"
        )
    return lines


def _free_port(preferred: int = 8000) -> int:
    """8000 when it is free (the docs use it), else any free port: the printed commands must work."""
    for port in (preferred, 0):
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return s.getsockname()[1]
    raise OSError("no free port on 127.0.0.1")


def next_steps(workdir: Path, dags: Path, output: Path, today: dt.date) -> str:
    """Commands that work pasted into fresh shells: every setting the demo made is spelled out."""
    from airflow_provider_openai_usage.testing.server import connection_export

    q = shlex.quote
    python = Path(sys.executable)
    port = _free_port()
    yesterday = today - dt.timedelta(days=1)
    from airflow_provider_openai_usage.testing.server import fake_organizations

    served = fake_organizations(len(DEMO_CONNECTIONS), seed=DEMO_SEED, projects=DEMO_PROJECTS)
    export_conn = "\n  ".join(
        connection_export(f"http://127.0.0.1:{port}/v1", key, conn_id=conn_id, organization_id=org.organization_id)
        for (key, org), (conn_id, _) in zip(served, DEMO_CONNECTIONS, strict=True)
    )
    serve = (
        f"{q(str(python))} -m airflow_provider_openai_usage.testing serve --port {port} --seed {DEMO_SEED} "
        f"--spike {SPIKE_PROJECT}:{yesterday.isoformat()}:{SPIKE_EVENTS} --projects {DEMO_PROJECTS} --organizations {len(DEMO_CONNECTIONS)}"
    )
    return f"""
Next steps: run the DAGs yourself. Paste into two fresh shells (the demo's fake API has stopped).
  # shell 1: the fake OpenAI usage API (Ctrl-C stops it)
  {serve}

  # shell 2: the demo's Airflow (metadata database already migrated by the demo)
  export PATH={q(str(python.parent))}:"$PATH" AIRFLOW_HOME={q(str(workdir / ".demo-airflow"))}
  export AIRFLOW__CORE__DAGS_FOLDER={q(str(dags))} AIRFLOW__CORE__LOAD_EXAMPLES=False
  export AIRFLOW__CORE__TEST_CONNECTION=Enabled OPENAI_USAGE_SETTLE_MINUTES=0
  export OPENAI_USAGE_OUTPUT_PATH={q(output.as_uri())} OPENAI_USAGE_CONN_IDS={",".join(c for c, _ in DEMO_CONNECTIONS)}
  {export_conn}
  airflow connections test openai_usage_default
  airflow dags test openai_usage_daily {today.isoformat()}   # lands {yesterday.isoformat()}, the UTC day that ends then

Then point the same DAGs at the real API and at S3 (in shell 2, with your admin key and bucket):
  export AIRFLOW_CONN_OPENAI_USAGE_DEFAULT='{{"conn_type": "openai_usage", "password": "sk-admin-..."}}'
  export AIRFLOW_CONN_AWS_DEFAULT='{{"conn_type": "aws", "extra": {{"region_name": "eu-west-1"}}}}'
  export OPENAI_USAGE_OUTPUT_PATH=s3://my-bucket/openai OPENAI_USAGE_OUTPUT_CONN_ID=aws_default OPENAI_USAGE_SETTLE_MINUTES=60
  export OPENAI_USAGE_CONN_IDS=openai_usage_default   # one connection per organization, comma-separated
  airflow dags test openai_usage_daily {today.isoformat()}
(docs/quickstart.md has the details; the admin key must have the api.usage.read scope.)"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_openai_usage.testing.demo")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="where .demo-airflow/ and demo-output/ go")
    parser.add_argument("--dags", type=Path, default=None, help="the shipped DAGs' folder (default: <workdir>/dags, else the clone's)")
    parser.add_argument("--days", type=int, default=30, help="days of history to backfill")
    parser.add_argument(
        "--since", type=dt.date.fromisoformat, default=None,
        help="backfill from this UTC day instead (YYYY-MM-DD; `make demo` catches up from 2025-01-01, the daily DAG's "
        "start date, so costs by API key cross the API's 2025-12-01 floor)",
    )
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    dags = _dags_folder(workdir, args.dags)
    output = workdir / "demo-output"
    output.mkdir(parents=True, exist_ok=True)
    _configure_airflow(workdir, dags, output, args.verbose)
    started = time.monotonic()

    import dataclasses

    from airflow_provider_openai_usage.testing.data import parse_spike
    from airflow_provider_openai_usage.testing.receivers import WebhookReceiver
    from airflow_provider_openai_usage.testing.server import FakeOpenAIUsageAPI, fake_organizations

    yesterday = (dt.datetime.now(dt.timezone.utc).date() - dt.timedelta(days=1)).isoformat()
    # Two organizations, one admin key each, as `serve --organizations 2` serves them; the first one's
    # proj_beta spikes yesterday (the anomaly alert).
    served = fake_organizations(len(DEMO_CONNECTIONS), seed=DEMO_SEED, projects=DEMO_PROJECTS)
    served[0] = (served[0][0], dataclasses.replace(served[0][1], spike=parse_spike(f"{SPIKE_PROJECT}:{yesterday}:{SPIKE_EVENTS}")))
    with FakeOpenAIUsageAPI(key=served[0][0], organization=served[0][1]) as api, WebhookReceiver() as webhook:
        for key, org in served[1:]:
            api.add_organization(key, org)
        # Each organization's connection: its key, its id (checked against the Costs API) and its name (FOCUS).
        for (key, _org), (conn_id, name) in zip(served, DEMO_CONNECTIONS, strict=True):
            os.environ[f"AIRFLOW_CONN_{conn_id.upper()}"] = api.connection_json_for(key, organization_name=name)
        os.environ["OPENAI_USAGE_CONN_IDS"] = ",".join(conn_id for conn_id, _ in DEMO_CONNECTIONS)
        os.environ["OPENAI_USAGE_FOCUS"] = "true"
        os.environ[f"AIRFLOW_CONN_{ALERT_CONN_ID.upper()}"] = webhook.connection_json()
        os.environ["OPENAI_USAGE_ALERT_SLACK_CONN_ID"] = ALERT_CONN_ID
        print(f"fake OpenAI usage API on {api.base_url} (seed {DEMO_SEED}), {len(served)} organizations: "
              f"{', '.join(org.organization_id for _, org in served)}", flush=True)

        import pendulum
        from airflow.dag_processing.dagbag import DagBag
        from airflow.utils import db

        db.initdb()
        bag = DagBag(dag_folder=str(dags))
        if bag.import_errors:
            print(json.dumps(bag.import_errors, indent=2), file=sys.stderr)
            return 1
        today = pendulum.today("UTC")
        first, last = today.subtract(days=args.days), today.subtract(days=1)
        if args.since is not None:
            first = pendulum.datetime(args.since.year, args.since.month, args.since.day, tz="UTC")
        for conn_id, name in DEMO_CONNECTIONS:
            print(
                f"backfill: {first.to_date_string()} .. {last.to_date_string()}, all endpoints, one task each, {name} ({conn_id})",
                flush=True,
            )
            run = bag.get_dag("openai_usage_backfill").test(
                run_conf={"start_date": first.to_date_string(), "end_date": last.to_date_string(), "output_path": output.as_uri(),
                          "openai_usage_conn_id": conn_id}
            )
            if run.state != "success":
                print(f"backfill run of {conn_id} ended {run.state}", file=sys.stderr)
                return 1
        print(
            f"daily run: interval {last.to_date_string()} .. {today.to_date_string()} (per organization, a map index of the "
            "`organization` task group: sensor, then pull, per endpoint, a directory snapshot and FOCUS; then one spend "
            "report and the alerts over both)",
            flush=True,
        )
        run = bag.get_dag("openai_usage_daily").test(logical_date=today)
        if run.state != "success":
            print(f"daily run ended {run.state}", file=sys.stderr)
            return 1
        if first < last:  # the daily run exported `last` itself: each FOCUS day is written once
            print(
                f"focus: FOCUS 1.2 dataset of {first.to_date_string()} .. {last.subtract(days=1).to_date_string()} from the "
                "landed costs of each organization (OpenAIFocusOperator, source='landed', no request)", flush=True,
            )
            for conn_id, _ in DEMO_CONNECTIONS:
                write_focus(output, first, last, source="landed", openai_usage_conn_id=conn_id)
        tables = _tables(output, first, today)
        requests = len(api.requests)
        alerts = [m.get("text", "") for m in webhook.messages]
    print()
    print(_report(output))
    print(f"\nSpend report: {output / 'reports' / f'date={last.to_date_string()}' / 'spend.html'} (open it in a browser)")
    print(f"Alerts sent to the stand-in Slack webhook: {len(alerts)}" + (" (already sent by an earlier run)" if not alerts else ""))
    for text in alerts:
        print(f"  {text}")
    for line in tables:
        print(line)
    print(f"\n{requests} requests to the fake API; finished in {time.monotonic() - started:.1f}s.")
    print(next_steps(workdir, dags, output, today.date()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
