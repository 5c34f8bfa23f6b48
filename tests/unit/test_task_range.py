"""task_range.py: operators and sensors refuse every literal parameter at DAG parse time, with the
same rules (and words) the run applies to rendered values; templated values wait for the run."""

from __future__ import annotations

import datetime as dt

import pendulum
import pytest
from conftest import DAY, NOW

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAIUsageOperator
from airflow_provider_openai_usage.sensors.usage import OpenAICostsSensor, OpenAIUsageSensor
from airflow_provider_openai_usage.task_range import is_templated

T0 = NOW - 7 * DAY

#: (endpoint, kwargs, what the message must say): each is refused by operator and sensor alike.
SHARED_BAD = [
    ("completion", {}, r"endpoint='completion' is not"),
    ("costs", {"bucket_width": "1h"}, r"bucket_width='1h' is not allowed for endpoint 'costs'; allowed: 1d"),
    ("completions", {"bucket_width": "5m"}, r"bucket_width='5m' is not allowed for endpoint 'completions'"),
    ("costs", {"group_by": ["model"]}, r"group_by value 'model' is not allowed for endpoint 'costs'"),
    ("costs", {"group_by": ["project_id", "project_id"]}, r"group_by=\['project_id', 'project_id'\] repeats a value"),
    ("costs", {"filters": {"models": ["x"]}}, r"filter 'models' is not accepted by endpoint 'costs'"),
    ("costs", {"filters": {"modles": "{{ params.m }}"}}, r"filter 'modles' is not accepted by endpoint 'costs'"),
    ("completions", {"filters": {"batch": "yes"}}, r"filter batch='yes' must be a bool"),
    ("completions", {"filters": {"project_ids": []}}, r"filter project_ids=\[\] must be a non-empty list"),
    ("images", {"filters": {"sizes": ["9x9"]}}, r"filter sizes value '9x9' is not allowed"),
    ("costs", {"filters": "project_ids=p"}, r"filters='project_ids=p' must be a mapping"),
    ("costs", {"start_time": T0 * 1000, "end_time": NOW * 1000}, r"start_time=\d+ looks like epoch milliseconds"),
    ("costs", {"start_time": "{{ ds }}", "end_time": NOW * 1000}, r"end_time=\d+ looks like epoch milliseconds"),
    ("costs", {"start_time": T0}, r"give both or neither"),
    ("costs", {"end_time": "{{ ds }}"}, r"give both or neither"),
    ("costs", {"start_time": NOW, "end_time": T0}, r"start_time/end_time is empty or inverted \(2025-11-10T00:00:00Z"),
    ("costs", {"start_time": T0 + 3600, "end_time": NOW}, r"start_time/end_time start 2025-11-03T01:00:00Z is not on UTC midnight"),
    ("costs", {"start_time": "2025-11-03T00:00:00Z", "end_time": "yesterday"}, r"end_time='yesterday' is not a time"),
    ("costs", {"start_time": dt.datetime(2025, 11, 3), "end_time": NOW}, r"start_time=.* is a naive datetime"),
]

OPERATOR_BAD = [
    ({"file_format": "xlsx"}, r"file_format='xlsx' is not supported; allowed: parquet, jsonl, csv"),
    ({"file_format": "xlsx", "output_path": "s3://b/openai"}, r"file_format='xlsx' is not supported"),
    ({"max_xcom_rows": -1}, r"max_xcom_rows=-1 must be an int >= 0"),
    ({"max_xcom_rows": "10"}, r"max_xcom_rows='10' must be an int >= 0"),
    ({"max_xcom_rows": 1.5}, r"max_xcom_rows=1.5 must be an int >= 0"),
    ({"restate_days": 100_000}, r"restate_days=100000 reaches back before 1970-01-01"),
    ({"restate_days": 3, "start_time": 2 * DAY, "end_time": NOW}, r"restate_days=3 reaches back before 1970-01-01"),
]

SENSOR_BAD = [
    ({"settle_period": dt.timedelta(seconds=-1)}, r"settle_period=.* must be a timedelta >= 0"),
    ({"settle_period": 3600}, r"settle_period=3600 must be a timedelta >= 0"),
    ({"stable_polls": 0}, r"stable_polls=0 must be an int >= 1"),
    ({"require_results": "yes"}, r"require_results='yes' must be True or False"),
]


@pytest.mark.parametrize(("endpoint", "kwargs", "fragment"), SHARED_BAD)
@pytest.mark.parametrize("cls", [OpenAIUsageOperator, OpenAIUsageSensor])
def test_operators_and_sensors_refuse_bad_literals_when_constructed(cls, endpoint, kwargs, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        cls(task_id="t", endpoint=endpoint, **kwargs)


@pytest.mark.parametrize(("kwargs", "fragment"), OPERATOR_BAD)
def test_operator_only_parameters_are_refused_when_constructed(kwargs, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        OpenAICostsOperator(task_id="t", **kwargs)


@pytest.mark.parametrize(("kwargs", "fragment"), SENSOR_BAD)
def test_sensor_settle_parameters_are_refused_when_constructed(kwargs, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        OpenAICostsSensor(task_id="t", **kwargs)


def test_endpoint_fixed_by_the_class_cannot_be_overridden():
    with pytest.raises(OpenAIUsageValidationError, match="always reads 'costs'"):
        OpenAICostsOperator(task_id="t", endpoint="images")
    with pytest.raises(OpenAIUsageValidationError, match="always reads 'costs'"):
        OpenAICostsSensor(task_id="t", endpoint="images")


GOOD_LITERALS = [
    {},
    {"bucket_width": "1h", "group_by": ["project_id", "model"], "filters": {"batch": False, "models": "gpt-4o", "user_ids": None}},
    {"start_time": T0, "end_time": NOW},
    {"start_time": "2025-11-03T00:00:00+00:00", "end_time": pendulum.datetime(2025, 11, 10, tz="UTC")},
    {"bucket_width": "1m", "start_time": T0 + 60, "end_time": T0 + 3600},
    {"group_by": "project_id,model"},
]


@pytest.mark.parametrize("kwargs", GOOD_LITERALS)
def test_valid_literals_pass_parsing_and_run_without_a_validation_error(fake_api, conn_id, kwargs):
    context = {"data_interval_start": pendulum.from_timestamp(NOW - DAY, tz="UTC"),
               "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    OpenAIUsageSensor(task_id="s", endpoint="completions", **kwargs)
    rows = OpenAIUsageOperator(task_id="t", endpoint="completions", max_xcom_rows=10**6, **kwargs).execute(context)
    assert isinstance(rows, list) and fake_api.requests


TEMPLATED = [
    {"bucket_width": "{{ params.width }}", "start_time": "{{ params.start }}", "end_time": "{{ params.end }}"},
    {"group_by": "{{ params.group_by }}", "filters": "{{ params.filters }}"},
    {"group_by": ["project_id", "{{ params.extra }}"], "filters": {"project_ids": ["{{ params.project }}"]}},
    {"start_time": "{{ params.start_date }}T00:00:00+00:00", "end_time": T0},
]


@pytest.mark.parametrize("kwargs", TEMPLATED)
def test_templated_values_are_left_for_the_run(kwargs):
    OpenAIUsageSensor(task_id="s", endpoint="costs", **kwargs)
    OpenAIUsageOperator(task_id="t", endpoint="costs", file_format="{{ params.format }}", **kwargs)


def test_an_xcom_arg_is_left_for_the_run():
    from airflow.sdk import DAG, task

    with DAG("xcom_times", schedule=None):

        @task
        def start() -> int:
            return T0

        op = OpenAICostsOperator(task_id="t", start_time=start(), end_time=NOW)
    assert is_templated(op.start_time) and not is_templated(op.end_time)


@pytest.mark.parametrize(
    ("rendered", "fragment"),
    [
        ({"file_format": "xlsx"}, r"file_format='xlsx' is not supported"),
        ({"bucket_width": "1h"}, r"bucket_width='1h' is not allowed for endpoint 'costs'"),
        ({"group_by": ["model"]}, r"group_by value 'model' is not allowed"),
        ({"filters": {"project_ids": 7}}, r"filter project_ids=7 must be a non-empty list"),
        ({"start_time": str(T0 * 1000), "end_time": str(NOW * 1000)}, r"start_time=\d+ looks like epoch milliseconds"),
    ],
)
def test_rendered_values_get_the_same_refusal_before_any_request(fake_api, conn_id, rendered, fragment):
    op = OpenAICostsOperator(task_id="t", **{name: "{{ params.x }}" for name in rendered})
    for name, value in rendered.items():  # what rendering gave
        setattr(op, name, value)
    context = {"data_interval_start": pendulum.from_timestamp(NOW - DAY, tz="UTC"),
               "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    with pytest.raises(OpenAIUsageValidationError, match=fragment):
        op.execute(context)
    assert fake_api.requests == []
