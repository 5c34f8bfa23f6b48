"""The backfill DAG's params are checked in the words of its form, before any request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest
from conftest import ORG_DIR

DAGS = Path(__file__).resolve().parents[2] / "dags"


@pytest.mark.parametrize(
    ("conf", "fragment"),
    [
        ({"start_date": "2025-11-09", "end_date": "2025-11-07"},
         "params end_date=2025-11-07 is before start_date=2025-11-09; end_date is the last UTC day included, "
         "so swap them: start_date=2025-11-07, end_date=2025-11-09"),
        ({"start_date": "2025-11-01", "end_date": pendulum.today("UTC").to_date_string()},
         f"params end_date={pendulum.today('UTC').to_date_string()} is not over yet in UTC"),
    ],
)
def test_bad_dates_fail_naming_the_params_as_typed(fake_api, conn_id, airflow_db, tmp_path, conf, fragment):
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    conf = {**conf, "output_path": tmp_path.as_uri()}
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf)],
                            capture_output=True, text=True, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert fragment in output, output[-3000:]
    assert fake_api.requests == [] and not any(tmp_path.iterdir())


@pytest.mark.parametrize(
    ("group_by", "fragment"),
    [
        (["project_id"], "Invalid input for param group_by: ['project_id'] is not of type 'object'"),  # the form's own check
        ({"completions": ["project_id"]}, "params group_by names endpoint 'completions', which this run does not pull"),
        ({"costs": "project_id"}, "params group_by['costs']='project_id' must be a list of dimension names"),
        ({"costs": ["model"]}, "group_by"),  # the operator's own check: costs cannot be grouped by model
    ],
)
def test_bad_group_by_fails_naming_the_param_before_any_request(fake_api, conn_id, airflow_db, tmp_path, group_by, fragment):
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    conf = {"start_date": "2025-11-01", "end_date": "2025-11-02", "endpoints": ["costs"], "group_by": group_by,
            "output_path": tmp_path.as_uri()}
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf)],
                            capture_output=True, text=True, env=env, timeout=600)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert fragment in output, output[-3000:]
    assert fake_api.requests == []


def test_group_by_backfills_days_with_the_grouping_of_the_days_already_landed(fake_api, conn_id, airflow_db, tmp_path):
    """A user's own DAG landed costs by [project_id, line_item]; the backfill adds days grouped the same."""
    from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator

    mine = ["project_id", "line_item"]
    OpenAICostsOperator(task_id="mine", start_time="2025-11-03T00:00:00+00:00", end_time="2025-11-04T00:00:00+00:00",
                        group_by=mine, output_path=tmp_path.as_uri()).execute({})
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(DAGS)}
    conf = {"start_date": "2025-11-01", "end_date": "2025-11-02", "endpoints": ["costs"], "group_by": {"costs": mine},
            "output_path": tmp_path.as_uri()}
    result = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "openai_usage_backfill", "--conf", json.dumps(conf)],
                            capture_output=True, text=True, env=env, timeout=600)
    assert result.returncode == 0, (result.stdout + result.stderr)[-3000:]
    manifests = sorted((tmp_path / "costs" / ORG_DIR / "_openai_usage" / "manifests").glob("date=*.json"))
    groupings = {p.stem.removeprefix("date="): json.loads(p.read_text())["identity"]["group_by"] for p in manifests}
    assert groupings == {"2025-11-01": mine, "2025-11-02": mine, "2025-11-03": mine}, groupings

