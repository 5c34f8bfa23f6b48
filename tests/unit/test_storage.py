"""storage: one file per UTC day, replaced atomically; merges of partial days; identity; hygiene."""

from __future__ import annotations

import csv
import datetime as dt
import hashlib
import json
import os
import stat
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageResponseError,
    OpenAIUsageStorageError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAIUsageOperator
from airflow_provider_openai_usage.storage import DayStore, list_day_files, read_day_table
from airflow_provider_openai_usage.testing import Fault, status
from conftest import DAY, NOW

START = NOW - 4 * DAY
#: 2025-11-08, the day the issue's scenarios use (seed 7).
D8 = NOW - 2 * DAY
H = 3600


def ctx(start: int, end: int) -> dict:
    return {
        "data_interval_start": pendulum.from_timestamp(start, tz="UTC"),
        "data_interval_end": pendulum.from_timestamp(end, tz="UTC"),
    }


def day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def files(root: Path) -> dict[str, str]:
    """Relative path → sha256 of every file under root (control files included)."""
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def data_files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("date=*/*"))


def temps(root: Path) -> list[Path]:
    return [p for p in root.rglob("*") if p.name.endswith(".tmp") or p.name.startswith(".") or p.name.startswith("pending.")]


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
                v = format(v.normalize(), "f") if v else "0"
            if file_format == "csv":
                v = "" if v is None else ("true" if v is True else "false" if v is False else str(v))
            converted[k] = v
        out.append(converted)
    return out


def sort_rows(rows: list[dict]) -> list[dict]:
    return sorted(rows, key=lambda r: json.dumps(r, sort_keys=True, default=str))


def day_sum(root: Path, endpoint: str, date: str, metric: str = "input_tokens") -> int:
    import pyarrow.parquet as pq

    return sum(v for v in pq.read_table(root / endpoint / f"date={date}" / "data.parquet").column(metric).to_pylist() if v)


def api_sum(conn_id: str, endpoint: str, start: int, end: int, width: str = "1d", metric: str = "input_tokens") -> int:
    rows = OpenAIUsageHook(conn_id).iter_rows(endpoint, start, end, bucket_width=width)
    return sum(r[metric] or 0 for r in rows)


def write(tmp_path: Path, start: int, end: int, endpoint: str = "completions", **kwargs) -> dict:
    op = OpenAIUsageOperator(task_id="t", endpoint=endpoint, output_path=str(tmp_path), start_time=start, end_time=end, **kwargs)
    return op.execute({})


# -- formats and bytes ------------------------------------------------------------------------------
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
        assert name == f"data.{file_format}"
        written += read_back(tmp_path / key / f"date={d}" / name, file_format)
    assert sort_rows(written) == sort_rows(normalized_hook_rows(expected, file_format))
    assert summary["rows"] == len(expected)
    assert not temps(tmp_path), "no temporary files left behind"
    assert data_files(tmp_path / key) == [f"date={day(START + i * DAY)}/data.{file_format}" for i in range(4)]


def test_parquet_schema_is_typed_from_the_registry_and_identical_on_empty_days(fake_api, conn_id, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = NOW - 60 * DAY
    summary = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), group_by=["project_id", "line_item"]).execute(ctx(start, NOW))
    empty = [d for d, info in summary["days"].items() if info["rows"] == 0]
    full = [d for d, info in summary["days"].items() if info["rows"] > 0]
    assert empty and full and len(summary["days"]) == 60
    schemas = {str(pq.read_schema(tmp_path / "costs" / f"date={d}" / "data.parquet").remove_metadata()) for d in summary["days"]}
    assert len(schemas) == 1
    schema = pq.read_schema(tmp_path / "costs" / f"date={empty[0]}" / "data.parquet")
    assert schema.field("start_time").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("amount_value").type == pa.decimal128(38, 18)
    assert schema.field("quantity").type == pa.decimal128(38, 18)
    assert schema.field("project_id").type == pa.string()
    completions = OpenAIUsageOperator(task_id="c", endpoint="completions", output_path=str(tmp_path), group_by=["batch"]).execute(ctx(START, NOW))
    cschema = pq.read_schema(tmp_path / "completions" / f"date={next(iter(completions['days']))}" / "data.parquet")
    assert cschema.field("batch").type == pa.bool_() and cschema.field("input_tokens").type == pa.int64()
    # Readers that list the dataset see the day files only (the control folder starts with "_").
    table = pq.read_table(tmp_path / "costs", partitioning="hive")
    assert table.num_rows == summary["rows"] and "date" in table.column_names


def test_a_multi_day_range_writes_the_same_bytes_as_daily_runs(fake_api, conn_id, tmp_path):
    wide, daily = tmp_path / "wide", tmp_path / "daily"
    kwargs = {"endpoint": "completions", "group_by": ["project_id", "model"]}
    OpenAIUsageOperator(task_id="w", output_path=str(wide), **kwargs).execute(ctx(START, NOW))
    for i in range(4):
        OpenAIUsageOperator(task_id="d", output_path=str(daily), **kwargs).execute(ctx(START + i * DAY, START + (i + 1) * DAY))
    assert files(wide) == files(daily) and len(data_files(wide)) == 4


def test_re_running_an_interval_gives_identical_bytes(fake_api, conn_id, tmp_path):
    op = OpenAIUsageOperator(task_id="t", endpoint="images", output_path=f"file://{tmp_path}", group_by=["size", "source"])
    op.execute(ctx(START, NOW))
    first = files(tmp_path)
    op.execute(ctx(START, NOW))
    assert files(tmp_path) == first


def test_hourly_runs_merged_into_a_day_give_the_bytes_of_one_whole_day_pull(fake_api, conn_id, tmp_path):
    for h in (3, 0, 1, 2) + tuple(range(4, 24)):
        write(tmp_path / "hourly", D8 + h * H, D8 + (h + 1) * H, group_by=["model"], bucket_width="1h")
    write(tmp_path / "whole", D8, D8 + DAY, group_by=["model"], bucket_width="1h")
    assert files(tmp_path / "hourly" / "completions" / f"date={day(D8)}") == files(tmp_path / "whole" / "completions" / f"date={day(D8)}")
    manifest = json.loads((tmp_path / "hourly" / "completions" / "_openai_usage" / "manifests" / f"date={day(D8)}.json").read_text())
    assert manifest["covered"] == [[D8, D8 + DAY]]


# -- the three scenarios of issue #11 --------------------------------------------------------------
def test_a_narrower_write_never_deletes_a_wider_file(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + DAY)
    whole = day_sum(tmp_path, "completions", day(D8))
    assert whole == api_sum(conn_id, "completions", D8, D8 + DAY)
    with pytest.raises(OpenAIUsageStorageError, match=r"bucket_width: the day holds '1d', this run writes '1h'.*separate output_path.*whole"):
        write(tmp_path, D8 + 5 * H, D8 + 6 * H, bucket_width="1h")
    assert day_sum(tmp_path, "completions", day(D8)) == whole
    assert data_files(tmp_path / "completions") == [f"date={day(D8)}/data.parquet"]


def test_a_minute_write_across_hourly_files_keeps_the_rest_of_each_hour(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + 2 * H, bucket_width="1h")
    before = day_sum(tmp_path, "completions", day(D8))
    with pytest.raises(OpenAIUsageStorageError, match="bucket_width"):
        write(tmp_path, D8 + 30 * 60, D8 + 90 * 60, bucket_width="1m")
    assert day_sum(tmp_path, "completions", day(D8)) == before == api_sum(conn_id, "completions", D8, D8 + 2 * H, "1h")
    # The same widths do merge: minutes 00:30–01:30 over minute files of 00:00–02:00 keep 00:00–00:30 and 01:30–02:00.
    write(tmp_path / "m", D8, D8 + 2 * H, bucket_width="1m")
    write(tmp_path / "m", D8 + 30 * 60, D8 + 90 * 60, bucket_width="1m")
    assert day_sum(tmp_path / "m", "completions", day(D8)) == api_sum(conn_id, "completions", D8, D8 + 2 * H, "1m")
    rows = read_back(tmp_path / "m" / "completions" / f"date={day(D8)}" / "data.parquet", "parquet")
    assert sorted({r["start_time"] for r in rows}) == sorted({r["start_time"] for r in OpenAIUsageHook(conn_id).iter_rows("completions", D8, D8 + 2 * H, bucket_width="1m")})


def test_restate_days_with_hourly_width_never_deletes_history(fake_api, conn_id, tmp_path):
    write(tmp_path, D8 - 2 * DAY, D8)  # two whole days, 1d
    before = {d: day_sum(tmp_path, "completions", d) for d in (day(D8 - 2 * DAY), day(D8 - DAY))}
    op = OpenAIUsageOperator(task_id="t", endpoint="completions", output_path=str(tmp_path), bucket_width="1h", restate_days=2)
    with pytest.raises(OpenAIUsageStorageError, match=rf"date={day(D8 - 2 * DAY)}.*bucket_width"):
        op.execute(ctx(D8 + 5 * H, D8 + 6 * H))
    assert {d: day_sum(tmp_path, "completions", d) for d in before} == before
    # Hourly from the start: restating merges hours into the days and sums stay the API's.
    hourly = tmp_path / "hourly"
    write(hourly, D8 - 2 * DAY, D8, bucket_width="1h")
    OpenAIUsageOperator(task_id="t", endpoint="completions", output_path=str(hourly), bucket_width="1h", restate_days=2).execute(
        ctx(D8 + 5 * H, D8 + 6 * H)
    )
    for d in (D8 - 2 * DAY, D8 - DAY):
        assert day_sum(hourly, "completions", day(d)) == api_sum(conn_id, "completions", d, d + DAY, "1h")
    assert day_sum(hourly, "completions", day(D8)) == api_sum(conn_id, "completions", D8, D8 + 6 * H, "1h")  # restated from 11-06 05:00


def test_a_whole_day_run_replaces_a_day_of_another_width_in_one_file(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + 3 * H, bucket_width="1h")
    write(tmp_path, D8, D8 + DAY)  # 1d over the whole day: replaces the hourly file
    assert data_files(tmp_path / "completions") == [f"date={day(D8)}/data.parquet"]
    assert day_sum(tmp_path, "completions", day(D8)) == api_sum(conn_id, "completions", D8, D8 + DAY)


# -- identity --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "first, second, differs",
    [
        ({"group_by": ["model"]}, {"group_by": ["project_id"]}, "group_by"),
        ({"filters": {"models": ["gpt-4o-2024-08-06"]}}, {"filters": {"models": ["o3-2025-04-16"]}}, "filters"),
    ],
)
def test_a_part_of_a_day_with_another_grouping_or_filter_is_refused_before_any_request(fake_api, conn_id, tmp_path, first, second, differs):
    write(tmp_path, D8, D8 + 2 * H, bucket_width="1h", **first)
    before = files(tmp_path)
    fake_api.clear_requests()
    with pytest.raises(OpenAIUsageStorageError, match=rf"{differs}: the day holds .*separate output_path"):
        write(tmp_path, D8 + H, D8 + 2 * H, bucket_width="1h", **second)
    assert fake_api.requests == [] and files(tmp_path) == before


def test_identity_is_recorded_in_parquet_metadata_and_the_manifest(fake_api, conn_id, tmp_path):
    import pyarrow.parquet as pq

    write(tmp_path, D8 + H, D8 + 2 * H, bucket_width="1h", group_by=["model"], filters={"batch": False})
    meta = pq.read_metadata(tmp_path / "completions" / f"date={day(D8)}" / "data.parquet").metadata
    recorded = json.loads(meta[b"openai_usage"])
    assert recorded["identity"] | {} == {
        "dataset": "completions", "layout_version": 2, "schema": recorded["identity"]["schema"], "format": "parquet",
        "bucket_width": "1h", "group_by": ["model"], "filters": {"batch": False},
    }
    assert recorded["covered"] == [[D8 + H, D8 + 2 * H]]
    current = DayStore(_path(tmp_path / "completions")).current_day(day(D8))
    assert current is not None and current.identity == recorded["identity"] and current.rows == pq.read_metadata(current.path.path).num_rows


def test_another_format_on_a_day_is_refused_before_any_request(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + DAY)
    fake_api.clear_requests()
    with pytest.raises(OpenAIUsageStorageError, match=r"already holds a parquet file and this run writes csv.*file_format='parquet'"):
        write(tmp_path, D8, D8 + DAY, file_format="csv")
    assert fake_api.requests == []


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_text_formats_merge_partial_days_exactly(fake_api, conn_id, tmp_path, file_format):
    write(tmp_path / "a", D8, D8 + DAY, bucket_width="1h", group_by=["model"], file_format=file_format, endpoint="embeddings")
    for h in (5, 0, 23):
        write(tmp_path / "b", D8 + h * H, D8 + (h + 1) * H, bucket_width="1h", group_by=["model"], file_format=file_format, endpoint="embeddings")
    write(tmp_path / "b", D8, D8 + DAY, bucket_width="1h", group_by=["model"], file_format=file_format, endpoint="embeddings")
    name = f"embeddings/date={day(D8)}/data.{file_format}"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    costs = tmp_path / "c"
    write(costs, D8, D8 + DAY, endpoint="costs", group_by=["line_item"], file_format=file_format)
    table = read_day_table(list_day_files(_path(costs / "costs"))[day(D8)], _schema("costs"))
    assert sum(table.column("amount_value").to_pylist()) == sum(
        r["amount_value"] for r in OpenAIUsageHook(conn_id).iter_rows("costs", D8, D8 + DAY, group_by=["line_item"])
    )


# -- hygiene ---------------------------------------------------------------------------------------
def test_published_files_honour_the_umask(fake_api, conn_id, tmp_path):
    old = os.umask(0o022)
    try:
        write(tmp_path / "a", D8, D8 + DAY)
        os.umask(0o027)
        write(tmp_path / "b", D8, D8 + DAY)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "completions" / f"date={day(D8)}" / "data.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b" / "completions" / f"date={day(D8)}" / "data.parquet").stat().st_mode) == 0o640
    manifest = tmp_path / "a" / "completions" / "_openai_usage" / "manifests" / f"date={day(D8)}.json"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o644


def test_stale_temporary_files_of_a_dead_writer_are_removed_by_the_next_run(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + DAY)
    tmp_dir = tmp_path / "completions" / "_openai_usage" / "tmp"
    (tmp_dir / "0123456789abcdef.tmp").write_bytes(b"half a parquet file")  # nobody holds its lock: a dead writer's
    (tmp_dir / f"pending.{day(D8)}.0123456789abcdef.json").write_text('{"file": "data.parquet", "sha256": "00"}')
    write(tmp_path, D8 - DAY, D8)
    assert not temps(tmp_path)


def test_a_fault_mid_day_leaves_the_previous_partition_and_no_temporary_files(fake_api, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01))
    op = OpenAIUsageOperator(task_id="t", endpoint="embeddings", output_path=str(tmp_path), bucket_width="1h")
    op.execute(ctx(START, START + 2 * DAY))
    before = files(tmp_path)
    assert len(data_files(tmp_path / "embeddings")) == 2
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
    day1, day2 = (f"embeddings/date={day(START + i * DAY)}/data.parquet" for i in range(2))
    assert after[day1] != before[day1], "day 1 was complete, so it was replaced with the revised numbers"
    assert after[day2] == before[day2], "day 2 failed mid-way, so its old partition stays"
    assert not temps(tmp_path)


def test_days_not_reported_yet_are_not_written_as_empty(fake_api, conn_id, tmp_path):
    fake_api.controls.available_until = NOW - DAY
    op = OpenAIUsageOperator(task_id="t", endpoint="moderations", output_path=str(tmp_path))
    with pytest.raises(OpenAIUsageResponseError, match="reported buckets only up to"):
        op.execute(ctx(NOW - 3 * DAY, NOW))
    assert sorted(p.parent.name for p in tmp_path.rglob("*.parquet")) == [f"date={day(NOW - 3 * DAY)}", f"date={day(NOW - 2 * DAY)}"]


def test_restate_days_rewrites_the_days_before_the_interval(fake_api, conn_id, tmp_path):
    op = OpenAIUsageOperator(task_id="t", endpoint="costs", output_path=str(tmp_path), restate_days=2)
    summary = op.execute(ctx(NOW - DAY, NOW))
    assert sorted(summary["days"]) == [day(NOW - 3 * DAY), day(NOW - 2 * DAY), day(NOW - DAY)]


def test_summary_reports_days_files_and_metric_totals(fake_api, conn_id, tmp_path):
    summary = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), group_by=["line_item"]).execute(ctx(START, NOW))
    rows = list(OpenAIUsageHook(conn_id).iter_rows("costs", START, NOW, group_by=["line_item"]))
    assert Decimal(summary["totals"]["amount_value"]) == sum(r["amount_value"] for r in rows)
    assert summary["bucket_width"] == "1d" and summary["output"] == f"file://{tmp_path}/costs"
    assert sum(d["rows"] for d in summary["days"].values()) == len(rows)
    json.dumps(summary)


# -- answers that must not land -------------------------------------------------------------------
def _writer(tmp_path: Path, endpoint: str = "completions", file_format: str = "parquet"):
    from airflow_provider_openai_usage.storage import PartitionWriter

    return PartitionWriter(_path(tmp_path / endpoint), ENDPOINTS[endpoint], file_format)


def _path(p: Path):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(p.as_uri())


def _schema(endpoint: str):
    from airflow_provider_openai_usage.storage import arrow_schema

    return arrow_schema(ENDPOINTS[endpoint])


def _bucket(start: int, end: int, results: list) -> dict:
    return {"object": "bucket", "start_time": start, "end_time": end, "results": results}


def test_a_bucket_wider_than_the_width_is_refused_before_anything_is_written(tmp_path):
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("moderations", D8, D8 + 2 * DAY)
    writer = _writer(tmp_path, "moderations")
    writer.prepare(query)
    with pytest.raises(OpenAIUsageResponseError, match=r"bucket 2025-11-08T00:00:00Z–2025-11-10T00:00:00Z for bucket_width=1d"):
        list(writer.write(query, [_bucket(D8, D8 + 2 * DAY, [])]))
    assert data_files(tmp_path) == []


@pytest.mark.parametrize("file_format", ["parquet", "jsonl", "csv"])
def test_an_int_beyond_int64_is_refused_naming_the_column_and_value(tmp_path, capfd, file_format):
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("moderations", D8, D8 + DAY)
    writer = _writer(tmp_path, "moderations", file_format)
    writer.prepare(query)
    result = {"object": "organization.usage.moderations.result", "input_tokens": 2**63, "num_model_requests": 1}
    with pytest.raises(OpenAIUsageResponseError, match=r"input_tokens=9223372036854775808 does not fit"):
        list(writer.write(query, [_bucket(D8, D8 + DAY, [result])]))
    import gc

    gc.collect()
    assert "Exception ignored" not in capfd.readouterr().err
    assert data_files(tmp_path) == []


def test_a_large_amount_and_28_decimal_strings_fit(tmp_path):
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("costs", D8, D8 + DAY)
    writer = _writer(tmp_path, "costs")
    writer.prepare(query)
    results = [
        {"object": "organization.costs.result", "amount": {"value": Decimal("12345678901.5"), "currency": "usd"}},
        {"object": "organization.costs.result", "amount": {"value": "0.0600000000000000000000000000", "currency": "usd"}},
        {"object": "organization.costs.result", "amount": {"value": "0.3333333333333333333333333333", "currency": "usd"}},
    ]
    (result,) = writer.write(query, [_bucket(D8, D8 + DAY, results)])
    values = read_day_table(list_day_files(_path(tmp_path / "costs"))[day(D8)]).column("amount_value").to_pylist()
    assert values == [Decimal("12345678901.5"), Decimal("0.06"), Decimal("0.333333333333333333")]
    assert result.totals["amount_value"] == sum(values)


# -- output_path -----------------------------------------------------------------------------------
@pytest.mark.parametrize(
    "output_path, fragment",
    [
        ("ftp://example.com/usage", "output_path='ftp://example.com/usage': ftp:// is not a storage"),
        ("http://example.com/usage", "http:// is not a storage"),
        ("relative/path", "is relative"),
        ("file:///proc/openai-usage", "output_path='file:///proc/openai-usage' cannot be written"),
    ],
)
def test_an_output_path_that_cannot_be_written_fails_before_any_request(fake_api, conn_id, output_path, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment.replace("(", r"\(").replace("?", r"\?")):
        OpenAIUsageOperator(task_id="t", endpoint="completions", output_path=output_path).execute(ctx(D8, D8 + DAY))
    assert fake_api.requests == []


def test_an_output_path_under_a_file_fails_before_any_request(fake_api, conn_id, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OpenAIUsageValidationError, match=r"output_path='.*a-file/usage' cannot be written \(.*\); point output_path"):
        OpenAIUsageOperator(task_id="t", endpoint="completions", output_path=str(tmp_path / "a-file" / "usage")).execute(ctx(D8, D8 + DAY))
    assert fake_api.requests == []


def test_a_day_not_fully_reported_is_left_as_it_was_and_the_error_gives_the_fix(fake_api, conn_id, tmp_path):
    fake_api.controls.now = NOW - 12 * H  # OpenAI has reported 2025-11-09 only up to 12:00
    op = OpenAIUsageOperator(task_id="t", endpoint="completions", bucket_width="1h", output_path=tmp_path.as_uri())
    with pytest.raises(OpenAIUsageResponseError) as info:
        op.execute(ctx(NOW - 2 * DAY, NOW))
    message = str(info.value)
    assert "2025-11-09 is only reported up to 2025-11-09T12:00:00Z" in message, message
    assert "OpenAIUsageSensor" in message and "end the range at 2025-11-09T00:00:00Z" in message, message
    assert day(NOW - DAY) not in " ".join(data_files(tmp_path)), "the incomplete day is not written"


# -- days published in parallel (local disks) ---------------------------------------------------------
def test_a_day_that_cannot_be_published_stops_the_later_days_and_leaves_no_thread_or_temp(fake_api, conn_id, tmp_path):
    """Days are written and fsynced on several threads but published in day order: a failure at day 5
    leaves days 1-4 published, nothing after it, no temporary file, and no publisher thread alive."""
    import threading

    start = NOW - 12 * DAY
    blocked = day(start + 4 * DAY)
    (tmp_path / "embeddings").mkdir()
    (tmp_path / "embeddings" / f"date={blocked}").write_text("a file where the day's folder goes")
    with pytest.raises(NotADirectoryError):
        write(tmp_path, start, NOW, endpoint="embeddings")
    published = sorted(p.split("/")[0] for p in data_files(tmp_path / "embeddings"))
    assert published == [f"date={day(start + i * DAY)}" for i in range(4)]
    assert not temps(tmp_path)
    assert not [t for t in threading.enumerate() if t.name.startswith("openai-usage-publish")]
    (tmp_path / "embeddings" / f"date={blocked}").unlink()
    write(tmp_path, start, NOW, endpoint="embeddings")
    assert len(data_files(tmp_path / "embeddings")) == 12 and not temps(tmp_path)


def test_an_empty_temp_of_a_dead_writer_is_removed_at_once(fake_api, conn_id, tmp_path):
    """Temps carry their writer's pid: an empty one (a writer killed between creating and locking it)
    whose process is gone is removed by the next run, not left for a minute."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    tmp = tmp_path / "embeddings" / "_openai_usage" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / f"0123456789abcdef-{dead.stdout.strip()}.tmp").touch()
    (tmp / f"fedcba9876543210-{os.getpid()}.tmp").touch()  # this process lives: maybe between create and lock
    write(tmp_path, NOW - DAY, NOW, endpoint="embeddings")
    assert sorted(p.name for p in tmp.iterdir()) == [f"fedcba9876543210-{os.getpid()}.tmp"]
