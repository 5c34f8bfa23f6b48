"""The backfill DAG's params are checked in the words of its form, before any request."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pendulum
import pytest

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
