"""storage.usage: PartitionWriter: buckets merged into day files, the three scenarios of issue #11, identity of a day,
summaries and totals, answers that must not land, days published in parallel."""

from __future__ import annotations

import json
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import FAKE_ORG, DAY, NOW, ORG_DIR
from storage_support import D8, START, H, ctx, data_files, day, files, object_path, partition_writer, read_back, temps, usage_bucket, write

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageResponseError,
    OpenAIUsageStorageError,
)
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAIUsageOperator
from airflow_provider_openai_usage.storage import DayStore


def day_sum(root: Path, endpoint: str, date: str, metric: str = "input_tokens") -> int:
    import pyarrow.parquet as pq

    return sum(v for v in pq.read_table(root / endpoint / ORG_DIR / f"date={date}" / "data.parquet").column(metric).to_pylist() if v)


def api_sum(conn_id: str, endpoint: str, start: int, end: int, width: str = "1d", metric: str = "input_tokens") -> int:
    rows = OpenAIUsageHook(conn_id).iter_rows(endpoint, start, end, bucket_width=width)
    return sum(r[metric] or 0 for r in rows)


# -- schema, days of a range, merged hours ---------------------------------------------------------
def test_parquet_schema_is_typed_from_the_registry_and_identical_on_empty_days(fake_api, conn_id, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    start = NOW - 60 * DAY
    summary = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), group_by=["project_id", "line_item"]).execute(ctx(start, NOW))
    empty = [d for d, info in summary["days"].items() if info["rows"] == 0]
    full = [d for d, info in summary["days"].items() if info["rows"] > 0]
    assert empty and full and len(summary["days"]) == 60
    schemas = {str(pq.read_schema(tmp_path / "costs" / ORG_DIR / f"date={d}" / "data.parquet").remove_metadata()) for d in summary["days"]}
    assert len(schemas) == 1
    schema = pq.read_schema(tmp_path / "costs" / ORG_DIR / f"date={empty[0]}" / "data.parquet")
    assert schema.field("start_time").type == pa.timestamp("ms", tz="UTC")
    assert schema.field("amount_value").type == pa.decimal128(38, 18)
    assert schema.field("quantity").type == pa.decimal128(38, 18)
    assert schema.field("project_id").type == pa.string()
    completions = OpenAIUsageOperator(task_id="c", endpoint="completions", output_path=str(tmp_path), group_by=["batch"]).execute(ctx(START, NOW))
    cschema = pq.read_schema(tmp_path / "completions" / ORG_DIR / f"date={next(iter(completions['days']))}" / "data.parquet")
    assert cschema.field("batch").type == pa.bool_() and cschema.field("input_tokens").type == pa.int64()
    # Readers that list the dataset see the day files only (the control folder starts with "_").
    table = pq.read_table(tmp_path / "costs" / ORG_DIR, partitioning="hive")
    assert table.num_rows == summary["rows"] and "date" in table.column_names


def test_a_multi_day_range_writes_the_same_bytes_as_daily_runs(fake_api, conn_id, tmp_path):
    wide, daily = tmp_path / "wide", tmp_path / "daily"
    kwargs = {"endpoint": "completions", "group_by": ["project_id", "model"]}
    OpenAIUsageOperator(task_id="w", output_path=str(wide), **kwargs).execute(ctx(START, NOW))
    for i in range(4):
        OpenAIUsageOperator(task_id="d", output_path=str(daily), **kwargs).execute(ctx(START + i * DAY, START + (i + 1) * DAY))
    assert files(wide) == files(daily) and len(data_files(wide)) == 4


def test_hourly_runs_merged_into_a_day_give_the_bytes_of_one_whole_day_pull(fake_api, conn_id, tmp_path):
    for h in (3, 0, 1, 2) + tuple(range(4, 24)):
        write(tmp_path / "hourly", D8 + h * H, D8 + (h + 1) * H, group_by=["model"], bucket_width="1h")
    write(tmp_path / "whole", D8, D8 + DAY, group_by=["model"], bucket_width="1h")
    assert files(tmp_path / "hourly" / "completions" / ORG_DIR / f"date={day(D8)}") == files(tmp_path / "whole" / "completions" / ORG_DIR / f"date={day(D8)}")
    manifest = json.loads((tmp_path / "hourly" / "completions" / ORG_DIR / "_openai_usage" / "manifests" / f"date={day(D8)}.json").read_text())
    assert manifest["covered"] == [[D8, D8 + DAY]]


# -- the three scenarios of issue #11 --------------------------------------------------------------
def test_a_narrower_write_never_deletes_a_wider_file(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + DAY)
    whole = day_sum(tmp_path, "completions", day(D8))
    assert whole == api_sum(conn_id, "completions", D8, D8 + DAY)
    with pytest.raises(OpenAIUsageStorageError, match=r"bucket_width: the day holds '1d', this run writes '1h'.*separate output_path.*whole"):
        write(tmp_path, D8 + 5 * H, D8 + 6 * H, bucket_width="1h")
    assert day_sum(tmp_path, "completions", day(D8)) == whole
    assert data_files(tmp_path / "completions" / ORG_DIR) == [f"date={day(D8)}/data.parquet"]


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
    rows = read_back(tmp_path / "m" / "completions" / ORG_DIR / f"date={day(D8)}" / "data.parquet", "parquet")
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
    assert data_files(tmp_path / "completions" / ORG_DIR) == [f"date={day(D8)}/data.parquet"]
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
    meta = pq.read_metadata(tmp_path / "completions" / ORG_DIR / f"date={day(D8)}" / "data.parquet").metadata
    recorded = json.loads(meta[b"openai_usage"])
    assert recorded["identity"] | {} == {
        "dataset": "completions", "layout_version": 2, "schema": recorded["identity"]["schema"], "format": "parquet",
        "bucket_width": "1h", "group_by": ["model"], "filters": {"batch": False}, "organization_id": FAKE_ORG,
    }
    assert recorded["covered"] == [[D8 + H, D8 + 2 * H]]
    current = DayStore(object_path(tmp_path / "completions" / ORG_DIR)).current_day(day(D8))
    assert current is not None and current.identity == recorded["identity"] and current.rows == pq.read_metadata(current.path.path).num_rows


def test_another_format_on_a_day_is_refused_before_any_request(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + DAY)
    fake_api.clear_requests()
    with pytest.raises(OpenAIUsageStorageError, match=r"already holds a parquet file and this run writes csv.*file_format='parquet'"):
        write(tmp_path, D8, D8 + DAY, file_format="csv")
    assert fake_api.requests == []


# -- days not reported yet, restated days, summaries -----------------------------------------------
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
    assert summary["bucket_width"] == "1d" and summary["output"] == f"file://{tmp_path}/costs/{ORG_DIR}"
    assert sum(d["rows"] for d in summary["days"].values()) == len(rows)
    json.dumps(summary)


# -- answers that must not land -------------------------------------------------------------------
def test_a_bucket_wider_than_the_width_is_refused_before_anything_is_written(tmp_path):
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("moderations", D8, D8 + 2 * DAY)
    writer = partition_writer(tmp_path, "moderations")
    writer.prepare(query)
    with pytest.raises(OpenAIUsageResponseError, match=r"bucket 2025-11-08T00:00:00Z–2025-11-10T00:00:00Z for bucket_width=1d"):
        list(writer.write(query, [usage_bucket(D8, D8 + 2 * DAY, [])]))
    assert data_files(tmp_path) == []


@pytest.mark.parametrize("file_format", ["parquet", "jsonl", "csv"])
def test_an_int_beyond_int64_is_refused_naming_the_column_and_value(tmp_path, capfd, file_format):
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("moderations", D8, D8 + DAY)
    writer = partition_writer(tmp_path, "moderations", file_format)
    writer.prepare(query)
    result = {"object": "organization.usage.moderations.result", "input_tokens": 2**63, "num_model_requests": 1}
    with pytest.raises(OpenAIUsageResponseError, match=r"input_tokens=9223372036854775808 does not fit"):
        list(writer.write(query, [usage_bucket(D8, D8 + DAY, [result])]))
    import gc

    gc.collect()
    assert "Exception ignored" not in capfd.readouterr().err
    assert data_files(tmp_path) == []


# -- a day not fully reported ----------------------------------------------------------------------
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
    (tmp_path / "embeddings" / ORG_DIR).mkdir(parents=True)
    (tmp_path / "embeddings" / ORG_DIR / f"date={blocked}").write_text("a file where the day's folder goes")
    with pytest.raises(NotADirectoryError):
        write(tmp_path, start, NOW, endpoint="embeddings")
    published = sorted(p.split("/")[0] for p in data_files(tmp_path / "embeddings" / ORG_DIR))
    assert published == [f"date={day(start + i * DAY)}" for i in range(4)]
    assert not temps(tmp_path)
    assert not [t for t in threading.enumerate() if t.name.startswith("openai-usage-publish")]
    (tmp_path / "embeddings" / ORG_DIR / f"date={blocked}").unlink()
    write(tmp_path, start, NOW, endpoint="embeddings")
    assert len(data_files(tmp_path / "embeddings" / ORG_DIR)) == 12 and not temps(tmp_path)



@pytest.mark.parametrize("typed", [True, False])
@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_an_int64_overflow_on_day_25_publishes_the_24_days_before_it_like_every_refusal(tmp_path, file_format, typed):
    """One rule for every refusal (docs/design.md): the complete days before it are published (#26 item 6)."""
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("moderations", D8 - 24 * DAY, D8 + DAY)
    writer = partition_writer(tmp_path, "moderations", file_format)
    writer.prepare(query)
    obj = "organization.usage.moderations.result"
    buckets = [usage_bucket(D8 - i * DAY, D8 - (i - 1) * DAY, [{"object": obj, "input_tokens": i, "num_model_requests": 1}])
               for i in range(24, 0, -1)]
    buckets.append(usage_bucket(D8, D8 + DAY, [{"object": obj, "input_tokens": 2**63, "num_model_requests": 1}]))
    if typed:  # as the hook hands a page over: results decoded by msgspec, int64 checked by Arrow
        from airflow_provider_openai_usage.page_decoding import decode_typed_page

        page = decode_typed_page(ENDPOINTS["moderations"], json.dumps({"object": "page", "data": buckets, "has_more": False}).encode())
        assert page is not None
        buckets = page["data"]
    published = []
    with pytest.raises(OpenAIUsageResponseError, match=r"input_tokens=9223372036854775808 does not fit"):
        for result in writer.write(query, buckets):
            published.append(result.date)
    assert published == [day(D8 - i * DAY) for i in range(24, 0, -1)]
    assert data_files(tmp_path / "moderations") == [f"date={d}/data.{file_format}" for d in published]
