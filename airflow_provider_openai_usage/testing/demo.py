"""``make demo``: the example DAGs, for real, against the fake API, into ./demo-output.

Steps: a local AIRFLOW_HOME (sqlite) → the fake OpenAI usage API on 127.0.0.1 → the
``openai_usage_default`` connection pointed at it → ``openai_usage_backfill`` over the last 30 days
→ one ``openai_usage_daily`` run → a report of what landed. Running it twice gives the same files.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from decimal import Decimal
from pathlib import Path

DEMO_SEED = 42
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


def _report(output: Path) -> str:
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    from airflow_provider_openai_usage.endpoints import ENDPOINTS

    lines = [f"What landed in {output}:", f"  {'endpoint':28} {'days':>5} {'rows':>7} {'files':>6}"]
    for key in ENDPOINTS:
        files = sorted((output / key).glob("date=*/*.parquet"))
        days = {f.parent.name for f in files}
        rows = sum(pq.read_metadata(f).num_rows for f in files)
        lines.append(f"  {key:28} {len(days):>5} {rows:>7} {len(files):>6}")
    costs = pq.read_table(output / "costs", partitioning="hive")
    if costs.num_rows:
        dates = costs.column("date").to_pylist()
        lines.append(f"Costs per project, {min(dates)} to {max(dates)}:")
        by_project = costs.group_by("project_id").aggregate([("amount_value", "sum")]).sort_by("project_id")
        for project, amount in zip(by_project.column("project_id").to_pylist(), by_project.column("amount_value_sum").to_pylist()):
            lines.append(f"  {project or '(no project)':28} {amount.quantize(CENT):>12} usd")
        lines.append(f"  {'total':28} {pc.sum(costs.column('amount_value')).as_py().quantize(CENT):>12} usd")
    return "\n".join(lines)


NEXT_STEPS = """
Point the same DAGs at the real API and at S3:
  export AIRFLOW_CONN_OPENAI_USAGE_DEFAULT='{"conn_type": "openai_usage", "password": "sk-admin-..."}'
  export AIRFLOW_CONN_AWS_DEFAULT='{"conn_type": "aws", "extra": {"region_name": "eu-west-1"}}'
  export OPENAI_USAGE_OUTPUT_PATH=s3://my-bucket/openai OPENAI_USAGE_OUTPUT_CONN_ID=aws_default
  airflow dags test openai_usage_daily $(date -u +%F)      # yesterday, UTC
(docs/quickstart.md has the details; the admin key must have the api.usage.read scope.)"""


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m airflow_provider_openai_usage.testing.demo")
    parser.add_argument("--workdir", type=Path, default=Path.cwd(), help="where .demo-airflow/ and demo-output/ go")
    parser.add_argument("--dags", type=Path, default=None, help="the example DAGs folder (default: <workdir>/dags)")
    parser.add_argument("--days", type=int, default=30, help="days of history to backfill")
    parser.add_argument("--verbose", action="store_true", help="show Airflow's task logs")
    args = parser.parse_args(argv)
    workdir = args.workdir.resolve()
    dags = (args.dags or workdir / "dags").resolve()
    output = workdir / "demo-output"
    output.mkdir(parents=True, exist_ok=True)
    _configure_airflow(workdir, dags, output, args.verbose)
    started = time.monotonic()

    from airflow_provider_openai_usage.testing.server import FakeOpenAIUsageAPI

    with FakeOpenAIUsageAPI(seed=DEMO_SEED) as api:
        os.environ["AIRFLOW_CONN_OPENAI_USAGE_DEFAULT"] = api.connection_json()
        print(f"fake OpenAI usage API on {api.base_url} (seed {DEMO_SEED})", flush=True)

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
        print(f"backfill: {first.to_date_string()} .. {last.to_date_string()}, all endpoints, one task each", flush=True)
        run = bag.get_dag("openai_usage_backfill").test(
            run_conf={"start_date": first.to_date_string(), "end_date": last.to_date_string(), "output_path": output.as_uri()}
        )
        if run.state != "success":
            print(f"backfill run ended {run.state}", file=sys.stderr)
            return 1
        print(f"daily run: interval {last.to_date_string()} .. {today.to_date_string()} (sensor, then pull, per endpoint)", flush=True)
        run = bag.get_dag("openai_usage_daily").test(logical_date=today)
        if run.state != "success":
            print(f"daily run ended {run.state}", file=sys.stderr)
            return 1
        requests = len(api.requests)
    print()
    print(_report(output))
    print(f"\n{requests} requests to the fake API; finished in {time.monotonic() - started:.1f}s.")
    print(NEXT_STEPS)
    return 0


if __name__ == "__main__":
    sys.exit(main())
