"""Operators: partitions per UTC day, typed schemas, idempotent bytes, intervals that teach."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from conftest import DAY, NOW, ORG_DIR
from storage_support import START, ctx

from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator
from airflow_provider_openai_usage.testing import Fault


def test_without_output_path_rows_go_to_xcom_up_to_the_cap(fake_api, conn_id):
    rows = OpenAICostsOperator(task_id="t", group_by=["project_id"]).execute(ctx(START, NOW))
    expected = list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, group_by=["project_id"]))
    assert rows == [{k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in r.items()} for r in expected]
    json.dumps(rows)
    with pytest.raises(OpenAIUsageValidationError, match="more than max_xcom_rows=3 rows; XCom is not a data lake"):
        OpenAICostsOperator(task_id="t", group_by=["project_id"], max_xcom_rows=3).execute(ctx(START, NOW))


def test_a_relative_output_path_is_refused_before_any_request(fake_api, conn_id):
    # Range and parameter refusals: tests/unit/test_times.py, test_task_range.py, test_query.py.
    with pytest.raises(OpenAIUsageValidationError, match=r"output_path='relative/dir' is relative"):
        OpenAICostsOperator(task_id="t", output_path="relative/dir").execute(ctx(NOW - DAY, NOW))
    assert fake_api.requests == []


def test_a_literal_output_path_is_declared_as_an_asset(tmp_path):
    op = OpenAICostsOperator(task_id="t", output_path="s3://bucket/openai")
    assert [a.uri for a in op.outlets] == ["s3://bucket/openai/costs"]
    assert OpenAICostsOperator(task_id="u", output_path="{{ var.value.base }}").outlets == []


@pytest.mark.parametrize(
    ("kind", "fragment"),
    [
        ("wrong_object", "result object 'organization.usage.something_else.result' is not"),
        ("no_data", "no 'data' array"),
        ("shift", "outside the requested range"),
    ],
)
def test_bad_answers_fail_loudly_and_write_nothing(fake_api, conn_id, tmp_path, kind, fragment):
    fake_api.schedule_faults(Fault(kind))
    with pytest.raises(OpenAIUsageResponseError, match=re.escape(fragment)):
        OpenAICostsOperator(task_id="t", output_path=str(tmp_path)).execute(ctx(NOW - 3 * DAY, NOW))
    assert not [p for p in tmp_path.rglob("*") if p.is_file()]


@pytest.mark.parametrize("value", [0, 9, "2", 2.5, True, None])
def test_parallel_requests_outside_1_to_8_fail_at_parse_time_naming_it(value):
    with pytest.raises(OpenAIUsageValidationError, match=rf"parallel_requests={re.escape(repr(value))} must be an int from 1 to 8"):
        OpenAICostsOperator(task_id="t", parallel_requests=value)


def test_parallel_requests_write_the_same_bytes_with_the_same_requests(fake_api, conn_id, tmp_path):
    import threading

    from storage_support import files

    from airflow_provider_openai_usage.operators.usage import OpenAICompletionsUsageOperator

    start = NOW - 100 * DAY  # 4 pages of 31 days
    landed, sent = {}, {}
    for parallel in (1, 2, 4):
        fake_api.clear_requests()
        out = tmp_path / str(parallel)
        op = OpenAICompletionsUsageOperator(task_id="t", group_by=["project_id", "model"], output_path=str(out), parallel_requests=parallel)
        summary = op.execute(ctx(start, NOW))
        assert len(summary["days"]) == 100
        landed[parallel], sent[parallel] = files(out), len(fake_api.requests)
        assert not [t for t in threading.enumerate() if t.name.startswith("openai-usage-stream")]
    assert landed[1] == landed[2] == landed[4] and len(landed[1]) >= 100
    assert sent == {1: 4, 2: 4, 4: 4}
    assert OpenAICompletionsUsageOperator(task_id="d").parallel_requests == 2


# -- the API-key floor (issue #25) ------------------------------------------------------------------
def test_costs_by_api_key_land_every_day_from_2025_01_01_across_the_floor(fake_api, conn_id, tmp_path, caplog, capsys):
    import logging

    import pyarrow.parquet as pq

    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR as FLOOR
    from airflow_provider_openai_usage.endpoints import finops_group_by

    fake_api.controls.now = FLOOR + 46 * DAY  # 2026-01-16: the catch-up reaches "today"
    start, end = 1735689600, FLOOR + 46 * DAY  # 2025-01-01 .. 2026-01-16
    group_by = finops_group_by("costs")
    assert "api_key_id" in group_by
    op = OpenAICostsOperator(task_id="t", group_by=group_by, output_path=str(tmp_path))
    with caplog.at_level(logging.WARNING):
        summary = op.execute(ctx(start, end))
    assert len(summary["days"]) == (end - start) // DAY == 380
    assert summary["pulled_without"] == [
        {"group_by": ["project_id", "line_item"], "left_out": ["api_key_id"], "range": "2025-01-01T00:00:00Z/2025-12-01T00:00:00Z"}
    ]
    captured = capsys.readouterr()
    logged = caplog.text + captured.out + captured.err
    (warning,) = [line for line in logged.splitlines() if "pulled without group_by" in line]
    assert "the days 2025-01-01 to 2025-11-30 are pulled without group_by api_key_id" in warning and "api_key_id from 2025-12-01" in warning
    refused = [r for r in fake_api.requests if r.status != 200]
    assert refused == [] and all(
        "api_key_id" not in r.params().get("group_by[]", []) or int(r.params()["start_time"][0]) >= FLOOR for r in fake_api.requests
    )
    manifests = tmp_path / "costs" / ORG_DIR / "_openai_usage" / "manifests"
    identity = {p.name: json.loads(p.read_text())["identity"]["group_by"] for p in manifests.glob("*.json")}
    assert identity["date=2025-11-30.json"] == ["project_id", "line_item"]
    assert identity["date=2025-12-01.json"] == ["project_id", "line_item", "api_key_id"]
    keys = {p.parent.name: set(pq.read_table(p).column("api_key_id").to_pylist()) for p in (tmp_path / "costs" / ORG_DIR).glob("date=*/data.parquet")}
    assert keys["date=2025-11-30"] <= {None} and None not in keys.get("date=2025-12-02", {"x"})
    before = {p: p.read_bytes() for p in sorted((tmp_path / "costs" / ORG_DIR).rglob("*")) if p.is_file() and p.name != "lock"}
    op.execute(ctx(start, end))
    assert {p: p.read_bytes() for p in sorted((tmp_path / "costs" / ORG_DIR).rglob("*")) if p.is_file() and p.name != "lock"} == before
