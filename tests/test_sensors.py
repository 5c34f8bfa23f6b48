"""Sensors and the trigger: each settle condition, every mode in real Airflow, errors, serialization."""

from __future__ import annotations

import asyncio
import datetime as dt
import json

import pendulum
import pytest

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.sensors.usage import OpenAICostsSensor, OpenAIUsageSensor
from airflow_provider_openai_usage.settlement import SettleRules, StabilityState, check_settled
from airflow_provider_openai_usage.triggers.usage import OpenAIUsageTrigger
from airflow_provider_openai_usage.endpoints import ENDPOINTS
from conftest import DAY, NOW, SENTINEL_KEY

DAY_START = NOW - DAY


def query(key: str = "embeddings", start: int = DAY_START, end: int = NOW) -> UsageQuery:
    return UsageQuery.build(key, start, end)


# -- each success condition alone ------------------------------------------------------------------
def test_settle_period_waits_without_a_request(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    rules = SettleRules(settle_period_seconds=3600)
    early = check_settled(hook, query(), rules, now=NOW + 1800, state=StabilityState())
    assert not early.settled and "settle period until 2025-11-10T01:00:00Z" in early.reason
    assert fake_api.requests == []
    assert check_settled(hook, query(), rules, now=NOW + 3600, state=StabilityState()).settled


def test_every_bucket_must_be_reported(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    fake_api.controls.available_until = NOW - 6 * 3600
    missing = check_settled(hook, query(start=NOW - 3 * DAY), SettleRules(0), now=NOW, state=StabilityState())
    assert not missing.settled and "returned 2 of 3 buckets complete" in missing.reason
    fake_api.controls.available_until = None
    assert check_settled(hook, query(start=NOW - 3 * DAY), SettleRules(0), now=NOW, state=StabilityState()).settled


def _empty_day(hook: OpenAIUsageHook, key: str) -> int:
    for bucket in hook.iter_buckets(key, NOW - 60 * DAY, NOW):
        if not bucket["results"]:
            return bucket["start_time"]
    raise AssertionError("the fake has empty days")


def test_require_results_waits_for_usage_and_for_a_non_zero_cost(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    for key in ("embeddings", "costs"):
        empty = _empty_day(hook, key)
        q = query(key, empty, empty + DAY)
        assert check_settled(hook, q, SettleRules(0, require_results=False), now=NOW, state=StabilityState()).settled
        waiting = check_settled(hook, q, SettleRules(0, require_results=True), now=NOW, state=StabilityState())
        assert not waiting.settled and "require_results=True" in waiting.reason
        fake_api.controls.revisions[empty] = 5  # late usage arrives (revision 5 of that day has events)
        assert check_settled(hook, q, SettleRules(0, require_results=True), now=NOW, state=StabilityState()).settled, key


def test_stable_polls_need_identical_results_in_a_row(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    rules = SettleRules(0, stable_polls=2)
    first = check_settled(hook, query(), rules, now=NOW, state=StabilityState())
    assert not first.settled and "unchanged on 1 of 2" in first.reason
    fake_api.controls.revisions[DAY_START] = 1
    changed = check_settled(hook, query(), rules, now=NOW, state=first.state)
    assert not changed.settled and changed.state.streak == 1
    same = check_settled(hook, query(), rules, now=NOW, state=changed.state)
    assert same.settled and same.summary["rows"] > 0 and same.summary["buckets"] == 1


# -- modes in real Airflow --------------------------------------------------------------------------
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


def test_zero_length_intervals_are_refused_like_the_operators(fake_api, conn_id):
    sensor = OpenAICostsSensor(task_id="s", settle_period=dt.timedelta(0))
    ctx = {"data_interval_start": pendulum.from_timestamp(NOW, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    with pytest.raises(OpenAIUsageValidationError, match="data interval is empty"):
        sensor.poke(ctx)
    assert fake_api.requests == []


def test_stable_polls_in_reschedule_mode_is_refused_with_the_alternatives():
    with pytest.raises(OpenAIUsageValidationError, match="use deferrable=True .* or mode='poke'"):
        OpenAICostsSensor(task_id="s", mode="reschedule", stable_polls=2)


# -- trigger ----------------------------------------------------------------------------------------
def test_trigger_serializes_to_plain_kwargs_without_the_key(fake_api, conn_id):
    trigger = OpenAIUsageTrigger(
        openai_usage_conn_id=conn_id, endpoint="completions", start_time=DAY_START, end_time=NOW,
        group_by=["model"], filters={"batch": False, "project_ids": ["proj_alpha"]}, stable_polls=2, deadline=123.0,
    )
    classpath, kwargs = trigger.serialize()
    text = json.dumps(kwargs)
    assert SENTINEL_KEY not in text and SENTINEL_KEY not in classpath
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**json.loads(text))
    assert rebuilt.serialize() == (classpath, kwargs)


def test_trigger_polls_in_a_thread_and_never_blocks_the_event_loop(fake_api, conn_id):
    fake_api.controls.latency = 0.3
    trigger = OpenAIUsageTrigger(openai_usage_conn_id=conn_id, endpoint="costs", start_time=DAY_START, end_time=NOW, settle_period_seconds=0)

    async def main() -> tuple[dict, int]:
        ticks = 0
        done = asyncio.Event()

        async def ticker() -> None:
            nonlocal ticks
            while not done.is_set():
                ticks += 1
                await asyncio.sleep(0.01)

        task = asyncio.create_task(ticker())
        event = await trigger.run().__anext__()
        done.set()
        await task
        return event.payload, ticks

    payload, ticks = asyncio.run(main())
    assert payload["status"] == "success" and payload["summary"]["buckets"] == 1
    assert ticks >= 10, "the loop kept running while the 0.3 s request was in flight"


def test_trigger_reports_validation_errors_as_error_events(fake_api, conn_id):
    trigger = OpenAIUsageTrigger(openai_usage_conn_id=conn_id, endpoint="costs", start_time=DAY_START, end_time=NOW, bucket_width="1h")

    async def first() -> dict:
        return (await trigger.run().__anext__()).payload

    payload = asyncio.run(first())
    assert payload["status"] == "error" and "bucket_width='1h'" in payload["message"]
    assert fake_api.requests == []


def test_deferrable_sensor_returns_at_once_when_already_settled(fake_api, conn_id):
    sensor = OpenAICostsSensor(task_id="s", settle_period=dt.timedelta(0), deferrable=True)
    ctx = {"data_interval_start": pendulum.from_timestamp(DAY_START, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    summary = sensor.execute(ctx)
    assert summary["buckets"] == 1 and len(fake_api.requests) == 1


def test_deferrable_sensor_defers_with_what_its_first_poll_saw(fake_api, conn_id):
    from airflow.sdk.exceptions import TaskDeferred

    fake_api.controls.available_until = DAY_START
    sensor = OpenAICostsSensor(task_id="s", settle_period=dt.timedelta(0), deferrable=True, stable_polls=3, poke_interval=7, timeout=60)
    ctx = {"data_interval_start": pendulum.from_timestamp(DAY_START, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    with pytest.raises(TaskDeferred) as info:
        sensor.execute(ctx)
    _, kwargs = info.value.trigger.serialize()
    assert kwargs["stability_streak"] == 1 and kwargs["stability_fingerprint"] and kwargs["initial_delay"] == 7
    assert kwargs["deadline"] > kwargs["start_time"] and info.value.method_name == "execute_complete"
    assert SENTINEL_KEY not in json.dumps(kwargs)
