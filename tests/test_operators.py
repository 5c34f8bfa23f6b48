"""Operators: partitions per UTC day, typed schemas, idempotent bytes, intervals that teach."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageAPIError, OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAIUsageOperator
from airflow_provider_openai_usage.testing import Fault, status
from conftest import DAY, NOW


START = NOW - 4 * DAY


def ctx(start: int, end: int) -> dict:
    return {
        "data_interval_start": pendulum.from_timestamp(start, tz="UTC"),
        "data_interval_end": pendulum.from_timestamp(end, tz="UTC"),
    }


def day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def files(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under root (hidden temp files included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def read_back(path: Path, file_format: str) -> list[dict]:
    if file_format == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        return [
            {k: (int(v.timestamp()) if isinstance(v, dt.datetime) else v) for k, v in row.items()} for row in table.to_pylist()
        ]
    if file_format == "jsonl":
        return [json.loads(line) for line in path.read_text().splitlines()]
    with path.open(newline="") as fh:
        return list(csv.DictReader(fh))


def normalized_hook_rows(rows: list[dict], file_format: str) -> list[dict]:
    """What the hook's rows look like once written in a text format."""
    if file_format == "parquet":
        return rows
    out = []
    for row in rows:
        converted = {}
        for k, v in row.items():
            if k in ("start_time", "end_time"):
                v = dt.datetime.fromtimestamp(v, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
            elif isinstance(v, Decimal):
                v = format(v.normalize(), "f")
            if file_format == "csv":
                v = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
            converted[k] = v
        out.append(converted)
    return out


def sort_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


@pytest.mark.parametrize("file_format", ["parquet", "jsonl", "csv"])
@pytest.mark.parametrize("key", list(ENDPOINTS))
def test_every_endpoint_and_format_reads_back_equal_to_the_hooks_rows(fake_api, conn_id, tmp_path, key, file_format):
    group_by = list(ENDPOINTS[key].group_by[:2])
    op = OpenAIUsageOperator(task_id="t", endpoint=key, output_path=str(tmp_path), group_by=group_by, file_format=file_format)
    summary = op.execute(ctx(START, NOW))
    expected = list(OpenAIUsageHook(conn_id).iter_rows(key, START, NOW, group_by=group_by))
    assert sorted(summary["days"]) == [day(START + i * DAY) for i in range(4)]
    written = []
    for d in summary["days"]:
        (name,) = summary["days"][d]["files"]
        assert name == f"part-0000-2400.{file_format}"
        written += read_back(tmp_path / key / f"date={d}" / name, file_format)
    assert sort_rows(written) == sort_rows(normalized_hook_rows(expected, file_format))
    assert summary["rows"] == len(expected)
    assert not [p for p in tmp_path.rglob("*") if p.name.startswith(".")], "no temporary files left behind"


def test_parquet_schema_is_typed_from_the_registry_and_identical_on_empty_days(fake_api, conn_id, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = NOW - 60 * DAY
    summary = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), group_by=["project_id", "line_item"]).execute(ctx(start, NOW))
    empty = [d for d, info in summary["days"].items() if info["rows"] == 0]
    full = [d for d, info in summary["days"].items() if info["rows"] > 0]
    assert empty and full and len(summary["days"]) == 60
    schemas = {str(pq.read_schema(tmp_path / "costs" / f"date={d}" / "part-0000-2400.parquet")) for d in summary["days"]}
    assert len(schemas) == 1
    schema = pq.read_schema(tmp_path / "costs" / f"date={empty[0]}" / "part-0000-2400.parquet")
    assert schema.field("start_time").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("amount_value").type == pa.decimal128(38, 28)
    assert schema.field("project_id").type == pa.string()
    completions = OpenAIUsageOperator(task_id="c", endpoint="completions", output_path=str(tmp_path), group_by=["batch"]).execute(ctx(START, NOW))
    cschema = pq.read_schema(tmp_path / "completions" / f"date={next(iter(completions['days']))}" / "part-0000-2400.parquet")
    assert cschema.field("batch").type == pa.bool_() and cschema.field("input_tokens").type == pa.int64()
    table = pq.read_table(tmp_path / "costs", partitioning="hive")
    assert table.num_rows == summary["rows"] and "date" in table.column_names


def test_a_multi_day_range_writes_the_same_bytes_as_daily_runs(fake_api, conn_id, tmp_path):
    wide, daily = tmp_path / "wide", tmp_path / "daily"
    kwargs = {"endpoint": "completions", "group_by": ["project_id", "model"]}
    OpenAIUsageOperator(task_id="w", output_path=str(wide), **kwargs).execute(ctx(START, NOW))
    for i in range(4):
        OpenAIUsageOperator(task_id="d", output_path=str(daily), **kwargs).execute(ctx(START + i * DAY, START + (i + 1) * DAY))
    assert files(wide) == files(daily) and len(files(wide)) == 4


def test_re_running_an_interval_gives_identical_bytes(fake_api, conn_id, tmp_path):
    op = OpenAIUsageOperator(task_id="t", endpoint="images", output_path=f"file://{tmp_path}", group_by=["size", "source"])
    op.execute(ctx(START, NOW))
    first = files(tmp_path)
    op.execute(ctx(START, NOW))
    assert files(tmp_path) == first


def test_a_fault_mid_day_leaves_the_previous_partition_and_no_temporary_files(fake_api, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01))
    op = OpenAIUsageOperator(task_id="t", endpoint="embeddings", output_path=str(tmp_path), bucket_width="1h")
    op.execute(ctx(START, START + 2 * DAY))
    before = files(tmp_path)
    assert len(before) == 2
    # New numbers for day 1, 10 hours per page: page 1 succeeds, page 2 fails on both attempts.
    fake_api.controls.revisions[START] = 3
    fake_api.controls.page_size_cap = 10
    fake_api.schedule_faults(Fault("pass"), status(500), status(500))
    with pytest.raises(OpenAIUsageAPIError, match="HTTP 500"):
        op.execute(ctx(START, START + 2 * DAY))
    assert files(tmp_path) == before
    fake_api.schedule_faults(Fault("pass"), Fault("pass"), Fault("pass"), status(500), status(500))
    with pytest.raises(OpenAIUsageAPIError):
        op.execute(ctx(START, START + 2 * DAY))
    after = files(tmp_path)
    assert after.keys() == before.keys()
    day1, day2 = sorted(after)
    assert after[day1] != before[day1], "day 1 was complete, so it was replaced with the revised numbers"
    assert after[day2] == before[day2], "day 2 failed mid-way, so its old partition stays"


def test_days_not_reported_yet_are_not_written_as_empty(fake_api, conn_id, tmp_path):
    fake_api.controls.available_until = NOW - DAY
    op = OpenAIUsageOperator(task_id="t", endpoint="moderations", output_path=str(tmp_path))
    with pytest.raises(Exception, match="reported buckets only up to"):
        op.execute(ctx(NOW - 3 * DAY, NOW))
    assert sorted(p.parent.name for p in tmp_path.rglob("*.parquet")) == [f"date={day(NOW - 3 * DAY)}", f"date={day(NOW - 2 * DAY)}"]


def test_hourly_runs_add_files_and_a_daily_rewrite_replaces_them(fake_api, conn_id, tmp_path):
    op = OpenAIUsageOperator(task_id="t", endpoint="embeddings", output_path=str(tmp_path), bucket_width="1h")
    op.execute(ctx(START, START + 3600))
    op.execute(ctx(START + 3600, START + 7200))
    partition = tmp_path / "embeddings" / f"date={day(START)}"
    assert sorted(p.name for p in partition.iterdir()) == ["part-0000-0100.parquet", "part-0100-0200.parquet"]
    OpenAIUsageOperator(task_id="d", endpoint="embeddings", output_path=str(tmp_path)).execute(ctx(START, START + DAY))
    assert sorted(p.name for p in partition.iterdir()) == ["part-0000-2400.parquet"]


def test_restate_days_rewrites_the_days_before_the_interval(fake_api, conn_id, tmp_path):
    op = OpenAIUsageOperator(task_id="t", endpoint="costs", output_path=str(tmp_path), restate_days=2)
    summary = op.execute(ctx(NOW - DAY, NOW))
    assert sorted(summary["days"]) == [day(NOW - 3 * DAY), day(NOW - 2 * DAY), day(NOW - DAY)]


def test_without_output_path_rows_go_to_xcom_up_to_the_cap(fake_api, conn_id):
    rows = OpenAICostsOperator(task_id="t", group_by=["project_id"]).execute(ctx(START, NOW))
    expected = list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, group_by=["project_id"]))
    assert rows == [{k: (format(v, "f") if isinstance(v, Decimal) else v) for k, v in r.items()} for r in expected]
    json.dumps(rows)
    with pytest.raises(OpenAIUsageValidationError, match="more than max_xcom_rows=3 rows; XCom is not a data lake"):
        OpenAICostsOperator(task_id="t", group_by=["project_id"], max_xcom_rows=3).execute(ctx(START, NOW))


def test_summary_reports_days_files_and_metric_totals(fake_api, conn_id, tmp_path):
    summary = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), group_by=["line_item"]).execute(ctx(START, NOW))
    rows = list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, group_by=["line_item"]))
    assert summary["totals"]["amount_value"] == format(sum(r["amount_value"] for r in rows), "f")
    assert summary["bucket_width"] == "1d" and summary["output"] == f"file://{tmp_path}/costs"
    assert sum(d["rows"] for d in summary["days"].values()) == len(rows)
    json.dumps(summary)


def test_a_relative_output_path_is_refused_before_any_request(fake_api, conn_id):
    # Range and parameter refusals: tests/unit/test_intervals.py, test_task_range.py, test_query.py.
    with pytest.raises(OpenAIUsageValidationError, match=r"output_path='relative/dir' is relative"):
        OpenAICostsOperator(task_id="t", output_path="relative/dir").execute(ctx(NOW - DAY, NOW))
    assert fake_api.requests == []


def test_a_literal_output_path_is_declared_as_an_asset(tmp_path):
    op = OpenAICostsOperator(task_id="t", output_path="s3://bucket/openai")
    assert [a.uri for a in op.outlets] == ["s3://bucket/openai/costs"]
    assert OpenAICostsOperator(task_id="u", output_path="{{ var.value.base }}").outlets == []
