"""Sensors in real Airflow runs (dag.test): every mode, stable polls when deferred, timeouts, auth errors."""

from __future__ import annotations

import json

import pendulum
import pytest
from conftest import DAY, NOW

DAY_START = NOW - DAY


SENSOR_DAG = '''
import datetime as dt
import pendulum
from airflow.sdk import DAG, CronDataIntervalTimetable
from airflow_provider_openai_usage.sensors.usage import OpenAIEmbeddingsUsageSensor

with DAG("{dag_id}", schedule=CronDataIntervalTimetable("@daily", timezone="UTC"),
         start_date=pendulum.datetime(2025, 10, 1, tz="UTC"), catchup=False):
    OpenAIEmbeddingsUsageSensor(task_id="wait", settle_period=dt.timedelta(0), poke_interval=0.2, timeout={timeout},
                                mode="{mode}", deferrable={deferrable}, stable_polls={stable})
'''


def sensor_dag(dag_id: str, mode: str = "poke", deferrable: bool = False, timeout: float = 30, stable: int = 1) -> str:
    return SENSOR_DAG.format(dag_id=dag_id, mode=mode, deferrable=deferrable, timeout=timeout, stable=stable)


def reveal_after(fake_api, polls: int) -> None:
    """The day is not reported until the sensor polled ``polls`` times."""
    fake_api.controls.available_until = DAY_START

    def reveal(count: int, _request) -> None:
        if count >= polls:
            fake_api.controls.available_until = None

    fake_api.after_request = reveal


@pytest.mark.parametrize(("mode", "deferrable"), [("poke", False), ("reschedule", False), ("poke", True)])
def test_sensor_succeeds_once_the_day_appears(fake_api, conn_id, run_dag, mode, deferrable):
    reveal_after(fake_api, 2)
    dag_id = f"sensor_{mode}_{deferrable}".lower()
    dr, states = run_dag(sensor_dag(dag_id, mode, deferrable), dag_id, logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"wait": "success"}
    assert len(fake_api.requests) == 3, "two polls see nothing, the third sees the day"
    summary = dr.get_task_instance("wait").xcom_pull(task_ids="wait")
    assert summary["buckets"] == 1 and summary["rows"] > 0 and summary["endpoint"] == "embeddings"


def test_deferred_sensor_honours_stable_polls(fake_api, conn_id, run_dag):
    changes = {1: 1, 2: 2}  # the day's numbers change after the first and second polls

    def revise(count: int, _request) -> None:
        if count in changes:
            fake_api.controls.revisions[DAY_START] = changes[count]

    fake_api.after_request = revise
    dr, states = run_dag(sensor_dag("sensor_stable", deferrable=True, stable=2), "sensor_stable", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"wait": "success"} and len(fake_api.requests) == 4


@pytest.mark.parametrize("deferrable", [False, True])
def test_a_day_that_never_appears_times_out_with_a_clear_message(fake_api, conn_id, run_dag, deferrable, capsys):
    fake_api.controls.available_until = DAY_START
    dag_id = f"sensor_never_{deferrable}".lower()
    dr, states = run_dag(sensor_dag(dag_id, deferrable=deferrable, timeout=1), dag_id, logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"wait": "failed"}
    out = capsys.readouterr().out
    assert "returned 0 of 1 buckets complete" in out
    if deferrable:
        assert "timed out after 1" in out


def test_auth_failure_fails_the_deferred_sensor_with_the_admin_key_hint(fake_api, run_dag, monkeypatch, capsys):
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", json.dumps({"conn_type": "openai_usage", "host": fake_api.base_url, "password": "sk-proj-fake-project-key"}))
    dr, states = run_dag(sensor_dag("sensor_auth", deferrable=True), "sensor_auth", logical_date=pendulum.from_timestamp(NOW, tz="UTC"))
    assert states == {"wait": "failed"} and len(fake_api.requests) == 1
    assert "Missing scopes: api.usage.read" in capsys.readouterr().out
