"""sensors/usage.py outside a scheduler: parameter checks, and deferring with what the first poll saw."""

from __future__ import annotations

import datetime as dt
import json

import pendulum
import pytest
from conftest import DAY, NOW, SENTINEL_KEY

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.sensors.usage import OpenAICostsSensor

DAY_START = NOW - DAY


def test_zero_length_intervals_are_refused_like_the_operators(fake_api, conn_id):
    sensor = OpenAICostsSensor(task_id="s", settle_period=dt.timedelta(0))
    ctx = {"data_interval_start": pendulum.from_timestamp(NOW, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    with pytest.raises(OpenAIUsageValidationError, match="data interval is empty"):
        sensor.poke(ctx)
    assert fake_api.requests == []


def test_stable_polls_in_reschedule_mode_is_refused_with_the_alternatives():
    with pytest.raises(OpenAIUsageValidationError, match="use deferrable=True .* or mode='poke'"):
        OpenAICostsSensor(task_id="s", mode="reschedule", stable_polls=2)


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
