"""A bad literal parameter is a DAG import error, shown by ``airflow dags list-import-errors``,
before any run: the real CLI over a real dags folder and metadata database."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

HEADER = """\
import datetime as dt
import pendulum
from airflow.sdk import DAG
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAICompletionsUsageOperator
from airflow_provider_openai_usage.sensors.usage import OpenAICostsSensor
with DAG("{name}", schedule=None, start_date=pendulum.datetime(2025, 1, 1, tz="UTC")):
    {task}
"""

#: DAG file name → (the task line, what the import error must say).
BAD = {
    "costs_hourly": ('OpenAICostsOperator(task_id="t", bucket_width="1h")',
                     "bucket_width='1h' is not allowed for endpoint 'costs'"),
    "costs_by_model": ('OpenAICostsOperator(task_id="t", group_by=["model"])',
                       "group_by value 'model' is not allowed for endpoint 'costs'"),
    "unknown_filter": ('OpenAICostsOperator(task_id="t", filters={"models": ["gpt-4o"]})',
                       "filter 'models' is not accepted by endpoint 'costs'"),
    "filter_value": ('OpenAICompletionsUsageOperator(task_id="t", filters={"batch": "no"})', "filter batch='no' must be a bool"),
    "xlsx": ('OpenAICostsOperator(task_id="t", file_format="xlsx")', "file_format='xlsx' is not supported"),
    "restate": ('OpenAICostsOperator(task_id="t", restate_days=100000)', "restate_days=100000 reaches back before 1970-01-01"),
    "xcom_cap": ('OpenAICostsOperator(task_id="t", max_xcom_rows=-1)', "max_xcom_rows=-1 must be an int >= 0"),
    "parallel": ('OpenAICostsOperator(task_id="t", parallel_requests=16)', "parallel_requests=16 must be an int from 1 to 8"),
    "millis": ('OpenAICostsOperator(task_id="t", start_time=1762128000000, end_time=1762732800000)',
               "start_time=1762128000000 looks like epoch milliseconds"),
    "sensor_polls": ('OpenAICostsSensor(task_id="t", stable_polls=0)', "stable_polls=0 must be an int >= 1"),
    "sensor_group": ('OpenAICostsSensor(task_id="t", group_by=["model"])', "group_by value 'model' is not allowed for endpoint 'costs'"),
}
GOOD = {
    "templated": ('OpenAICostsOperator(task_id="t", bucket_width="{{ params.w }}", start_time="{{ params.s }}", '
                  'end_time="{{ params.e }}", file_format="{{ params.f }}")', None),
}


@pytest.fixture(scope="module")
def airflow_cli(tmp_path_factory):
    home = tmp_path_factory.mktemp("parse-errors-home")
    dags = home / "dags"
    dags.mkdir()
    env = {
        "PATH": f"{Path(sys.executable).parent}:/usr/bin:/bin",
        "HOME": str(home),
        "AIRFLOW_HOME": str(home),
        "AIRFLOW__CORE__DAGS_FOLDER": str(dags),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
        "AIRFLOW__LOGGING__LOGGING_LEVEL": "ERROR",
    }

    def run(*args: str, returncode: int = 0) -> str:
        result = subprocess.run(["airflow", *args], env=env, capture_output=True, text=True, timeout=300)
        assert result.returncode == returncode, f"airflow {' '.join(args)}:\n{result.stdout}\n{result.stderr}"
        return result.stdout

    run("db", "migrate")
    for name, (task, _) in {**BAD, **GOOD}.items():
        (dags / f"{name}.py").write_text(HEADER.format(name=name, task=task))
    return run


def _errors(output: str) -> dict[str, str]:
    # The JSON list is the last line; the CLI may log above it.
    # (The CLI exits 1 when there are import errors.)
    rows = json.loads(output.strip().splitlines()[-1])
    return {Path(row["filepath"]).stem: row["error"] for row in rows}


def test_list_import_errors_names_each_bad_parameter(airflow_cli):
    # What the dag processor records (and the UI shows), through the same parse the scheduler does.
    airflow_cli("dags", "reserialize")
    errors = _errors(airflow_cli("dags", "list-import-errors", "-o", "json", returncode=1))
    assert set(errors) == set(BAD), errors
    for name, (_, fragment) in BAD.items():
        assert fragment in errors[name], (name, errors[name])
        assert "OpenAIUsageValidationError" in errors[name]


def test_list_import_errors_local_parse_agrees(airflow_cli):
    errors = _errors(airflow_cli("dags", "list-import-errors", "--local", "-o", "json", returncode=1))
    assert set(errors) == set(BAD)
    assert all(fragment in errors[name] for name, (_, fragment) in BAD.items())
