"""``make demo`` end to end, and what it prints: the report (empty days shown) and "next steps"
commands that work when pasted into fresh shells (each run here in a clean environment)."""

from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from conftest import ORG_DIR

from airflow_provider_openai_usage.endpoints import ENDPOINTS

REPO = Path(__file__).resolve().parents[2]
DAGS = REPO / "dags"
#: A fresh shell: no AIRFLOW_* / OPENAI_USAGE_* settings, no venv on PATH.
CLEAN_ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "LANG": "C.UTF-8"}


#: Table folders: every run is a new table version (new commit files), so not byte-identical; their rows are (below).
TABLE_DIRS = ("delta", "iceberg")


def tree_digest(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.relative_to(root).parts[0] not in TABLE_DIRS
    }


def table_rows(output: Path) -> dict[str, list]:
    import sys

    sys.path.insert(0, str(REPO / "tests"))
    from table_support import TABLE_FORMATS, canonical_rows, read_table

    return {f"{fmt}/{key}": canonical_rows(read_table(output, fmt, key)) for fmt in TABLE_FORMATS for key in ("costs", "completions")}


@pytest.fixture(scope="module")
def demo(tmp_path_factory) -> dict:
    work = tmp_path_factory.mktemp("demo")
    shutil.copytree(DAGS, work / "dags")
    cmd = [sys.executable, "-m", "airflow_provider_openai_usage.testing.demo", "--workdir", str(work), "--days", "3"]
    first = subprocess.run(cmd, capture_output=True, text=True, env={**CLEAN_ENV, "HOME": str(work)}, timeout=600)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    digest = tree_digest(work / "demo-output")
    return {"work": work, "cmd": cmd, "run": first, "digest": digest, "tables": table_rows(work / "demo-output")}


def test_demo_lands_every_endpoint_and_is_repeatable(demo):
    out = demo["run"].stdout
    assert "What landed in" in out and "Costs per organization and project" in out and "s3://my-bucket/openai" in out
    second = subprocess.run(demo["cmd"], capture_output=True, text=True, env={**CLEAN_ENV, "HOME": str(demo["work"])}, timeout=600)
    assert second.returncode == 0, second.stdout[-3000:] + second.stderr[-3000:]
    assert tree_digest(demo["work"] / "demo-output") == demo["digest"]
    assert table_rows(demo["work"] / "demo-output") == demo["tables"], "a re-run changes no row of the tables"


def test_the_demo_lands_tables_and_prints_one_duckdb_query_with_the_same_costs_thrice(demo):
    out = demo["run"].stdout
    assert "One DuckDB query over them:" in out and "delta_scan(" in out and "iceberg_scan(" in out
    results = [line.split() for line in out.splitlines() if line.strip().startswith("-> ")]
    assert [r[1] for r in results] == ["delta", "iceberg", "files"]
    assert len({r[4] for r in results}) == 1, results  # usd: equal to the last decimal
    assert results[0][2] == results[1][2], results  # the two tables: the same rows (the daily DAG's files group by more)
    assert int(results[0][2]) > 0
    assert all(demo["tables"][name] for name in demo["tables"]), "every table has rows"


def test_the_report_counts_days_empty_days_rows_and_files_as_on_disk(demo):
    """Two organizations land side by side (issue #29): a line per endpoint and organization."""
    out, output = demo["run"].stdout, demo["work"] / "demo-output"
    header = next(line for line in out.splitlines() if line.strip().startswith("endpoint "))
    assert header.split() == ["endpoint", "organization", "days", "empty", "rows", "files"]
    total_empty, organizations = 0, set()
    for key in ENDPOINTS:
        lines = [line.split() for line in out.splitlines() if line.strip().startswith(key + " ")]
        assert len(lines) == 2, (key, lines)  # both organizations
        for _, org, *numbers in lines:
            days, empty, rows, files = map(int, numbers)
            paths = sorted((output / key / f"organization={org}").glob("date=*/*.parquet"))
            per_day: dict[str, int] = {}
            for p in paths:
                per_day[p.parent.name] = per_day.get(p.parent.name, 0) + pq.read_metadata(p).num_rows
            assert (days, empty, rows, files) == (len(per_day), sum(n == 0 for n in per_day.values()), sum(per_day.values()), len(paths))
            assert days == 3
            total_empty += empty
            organizations.add(org)
    assert len(organizations) == 2 and ORG_DIR.split("=", 1)[1] in organizations
    # The seed-42 organization has days without usage for some endpoints: the column is not always 0.
    assert total_empty > 0, out


def test_the_report_shows_both_organizations_with_exact_totals(demo):
    """The spend report of the last day names both organizations; the printed totals add up exactly."""
    from decimal import Decimal

    out, output = demo["run"].stdout, demo["work"] / "demo-output"
    totals = [Decimal(line.split()[-2]) for line in out.splitlines() if line.strip().startswith("organization total")]
    everything = next(Decimal(line.split()[-2]) for line in out.splitlines() if line.strip().startswith("all organizations"))
    assert len(totals) == 2 and abs(sum(totals) - everything) <= Decimal("0.01"), out  # each rounded to the cent
    costs = pq.read_table(output / "costs", partitioning="hive")
    assert len(set(costs.column("organization_id").to_pylist())) == 2
    report = sorted((output / "reports").glob("date=*/spend.html"))[-1].read_text()
    for org in set(costs.column("organization_id").to_pylist()):
        assert org in report, org


def test_the_report_names_the_top_five_projects_by_cost_from_the_directory_snapshot(demo):
    out, output = demo["run"].stdout, demo["work"] / "demo-output"
    date = out.split("Top five projects by cost, named from the directory snapshot of ", 1)[1][:10]
    names = {}
    for org_dir in (output / "directory" / "projects").glob("organization=*"):  # the block is one organization's
        snapshot = pq.read_table(org_dir / f"date={date}" / "data.parquet")
        names.update(zip(snapshot.column("id").to_pylist(), snapshot.column("name").to_pylist()))
    lines = out.split("Top five projects by cost", 1)[1].splitlines()[1:6]
    assert [line.split(".")[0].strip() for line in lines] == ["1", "2", "3", "4", "5"], out
    for line in lines:
        project_id = line.split()[-1]
        assert names[project_id] in line and not line.split(". ", 1)[1].startswith("proj_"), line
    for entity in ("users", "project_api_keys", "project_spend_limits"):
        assert (output / "directory" / entity / ORG_DIR / f"date={date}" / "data.parquet").exists(), entity


def test_the_demo_prints_no_starlette_testclient_warning(demo):
    assert "starlette.testclient" not in demo["run"].stdout + demo["run"].stderr


def _block(out: str, title: str) -> list[str]:
    """The command lines printed under ``# <title>`` (up to the next blank line), as pasted."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.strip().startswith(f"# {title}"))
    block = []
    for line in lines[start + 1:]:
        if not line.strip():
            break
        block.append(line.strip())
    return block


def test_next_steps_work_pasted_into_fresh_shells(demo):
    out = demo["run"].stdout
    server_lines, airflow_lines = _block(out, "shell 1"), _block(out, "shell 2")
    assert len(server_lines) == 1 and " serve --port " in server_lines[0]
    assert any(line.startswith("airflow connections test") for line in airflow_lines)
    day_run = next(line for line in airflow_lines if line.startswith("airflow dags test openai_usage_daily"))
    landed_day = re.search(r"# lands (\d{4}-\d{2}-\d{2})", day_run).group(1)

    server = subprocess.Popen(
        ["bash", "-c", server_lines[0]], env={**CLEAN_ENV, "HOME": str(demo["work"])},
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True,
    )
    try:
        first = server.stdout.readline()
        assert "listening on http://127.0.0.1:" in first, first + server.stdout.read()
        printed_export = [server.stdout.readline() for _ in range(2)][1].strip()
        # The server prints the same connection line the demo told shell 2 to paste.
        assert printed_export in airflow_lines, (printed_export, airflow_lines)
        day_file = demo["work"] / "demo-output" / "costs" / ORG_DIR / f"date={landed_day}"
        before = tree_digest(demo["work"] / "demo-output")
        shutil.rmtree(day_file)  # so the pasted run must land it again
        script = "set -euo pipefail\n" + "\n".join(airflow_lines) + "\n"
        result = subprocess.run(["bash", "-c", script], env={**CLEAN_ENV, "HOME": str(demo["work"])},
                                capture_output=True, text=True, timeout=900, cwd=demo["work"])
        assert result.returncode == 0, result.stdout[-4000:] + result.stderr[-4000:]
        assert "Connection success" in result.stdout + result.stderr, result.stdout[-2000:]
        assert tree_digest(demo["work"] / "demo-output") == before, "the pasted daily run lands the same bytes"
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def test_each_focus_day_is_written_once_from_the_landed_costs(demo):
    """The daily run exports its own day; the backfilled days come from the landed costs (no request),
    so no FOCUS day is written twice and FOCUS asks the API nothing (issue #28)."""
    import datetime as dt

    out, output = demo["run"].stdout, demo["work"] / "demo-output"
    today = dt.datetime.now(dt.timezone.utc).date()
    first, last = today - dt.timedelta(days=3), today - dt.timedelta(days=1)
    line = next(line for line in out.splitlines() if line.startswith("focus: FOCUS 1.2 dataset of"))
    assert f"of {first} .. {last - dt.timedelta(days=1)} from the landed costs" in line and "no request" in line
    days = sorted(p.parent.name for p in (output / "focus" / ORG_DIR).glob("date=*/data.parquet"))
    assert days == [f"date={first + dt.timedelta(days=i)}" for i in range(3)]
