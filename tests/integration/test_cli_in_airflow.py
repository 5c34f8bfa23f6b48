"""``airflow openai-usage status|verify`` as Airflow's own CLI runs them (the provider's ``cli``
entry), on a lake the operators landed, with a deleted and a tampered day file."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from report_support import ORG, land, org_root


def airflow(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)


def test_status_and_verify_exit_1_on_a_deleted_and_a_tampered_day(tmp_path: Path) -> None:
    land(tmp_path.as_uri(), "2025-11-05", "2025-11-09")
    base = ["--output-path", str(tmp_path)]
    status = airflow("openai-usage", "status", *base, "--through", "2025-11-08")
    assert status.returncode == 0, status.stdout + status.stderr
    verify = airflow("openai-usage", "verify", *base)
    assert verify.returncode == 0 and "8 day files checked, 0 problem(s)" in verify.stdout, verify.stdout + verify.stderr

    (org_root(tmp_path, "costs") / "date=2025-11-06" / "data.parquet").unlink()
    tampered = org_root(tmp_path, "completions") / "date=2025-11-07" / "data.parquet"
    tampered.write_bytes(tampered.read_bytes()[:-1] + b"X")

    status = airflow("openai-usage", "status", *base, "--through", "2025-11-08")
    assert status.returncode == 1, status.stdout + status.stderr
    costs = next(line for line in status.stdout.splitlines() if line.startswith("costs "))
    assert costs.split()[1:5] == [ORG, "3", "-", "1:"] and "2025-11-06" in costs
    verify = airflow("openai-usage", "verify", *base, "--output", "table")
    assert verify.returncode == 1, verify.stdout + verify.stderr
    assert f"missing     costs  {ORG}  2025-11-06" in verify.stdout and f"differs     completions  {ORG}  2025-11-07" in verify.stdout


def test_bad_input_exits_2_before_reading_anything(tmp_path: Path) -> None:
    result = airflow("openai-usage", "status", "--output-path", str(tmp_path), "--since", "last week")
    assert result.returncode == 2 and "--since='last week' is not a UTC day; give it as YYYY-MM-DD" in result.stderr


def test_the_group_is_listed_in_airflows_help() -> None:
    result = airflow("openai-usage", "--help")
    assert result.returncode == 0 and "status" in result.stdout and "verify" in result.stdout, result.stdout + result.stderr
    assert "move-to-organization" in result.stdout


def test_move_to_organization_as_airflow_runs_it(tmp_path: Path) -> None:
    """The command of docs/data-layout.md, on a lake put back in the single-organization layout."""
    land(tmp_path.as_uri(), "2025-11-05", "2025-11-07", endpoints=("costs",))
    level = org_root(tmp_path, "costs")
    for child in list(level.iterdir()):
        child.rename(tmp_path / "costs" / child.name)
    level.rmdir()
    moved = airflow("openai-usage", "move-to-organization", "--output-path", str(tmp_path), "--organization-id", ORG)
    assert moved.returncode == 0 and "moved costs: 2 day(s) and _openai_usage" in moved.stdout, moved.stdout + moved.stderr
    verify = airflow("openai-usage", "verify", "--output-path", str(tmp_path), "--organization-id", ORG)
    assert verify.returncode == 0 and "2 day files checked, 0 problem(s)" in verify.stdout, verify.stdout + verify.stderr
