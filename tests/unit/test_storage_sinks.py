"""storage.sinks with both table formats (storage.delta, storage.iceberg): every endpoint equals its
file partitions row for row, part days merge like files, re-runs change no row, the identity is
kept and enforced before any request, new typed columns are added, totals are exact."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest
from conftest import DAY, FAKE_ORG, NOW, ORG_DIR
from storage_support import D8, H, object_path, write
from table_support import TABLE_FORMATS, canonical_rows, file_rows_by_day, read_table, rows_by_day, table_version

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageStorageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.storage.sinks import SinkDay, check_table_format, merge_day, open_table_sink

pytestmark = pytest.mark.parametrize("table_format", TABLE_FORMATS)


def test_every_endpoint_lands_as_a_table_equal_to_its_file_partitions_row_for_row(fake_api, conn_id, tmp_path, table_format):
    for key, endpoint in ENDPOINTS.items():
        group_by = list(endpoint.group_by)[:2]
        write(tmp_path, NOW - 3 * DAY, NOW, endpoint=key, group_by=group_by)
        result = write(tmp_path, NOW - 3 * DAY, NOW, endpoint=key, group_by=group_by, table_format=table_format)
        files = file_rows_by_day(tmp_path, key)
        assert files, f"{key}: the fake API must give rows to compare"
        assert rows_by_day(read_table(tmp_path, table_format, key)) == files, key
        assert result["rows"] == sum(len(r) for r in files.values()) and result["table_format"] == table_format


def test_hourly_halves_merge_into_the_rows_of_one_whole_day_pull(fake_api, conn_id, tmp_path, table_format):
    for a, b in ((D8, D8 + 5 * H), (D8 + 5 * H, D8 + 17 * H), (D8 + 17 * H, D8 + DAY + 3 * H)):
        write(tmp_path / "t", a, b, bucket_width="1h", group_by=["model"], table_format=table_format)
    write(tmp_path / "f", D8, D8 + DAY + 3 * H, bucket_width="1h", group_by=["model"])
    assert rows_by_day(read_table(tmp_path / "t", table_format, "completions")) == file_rows_by_day(tmp_path / "f", "completions")


def test_a_rerun_with_the_same_answers_changes_no_row(fake_api, conn_id, tmp_path, table_format):
    write(tmp_path, NOW - 4 * DAY, NOW, endpoint="costs", group_by=["project_id", "line_item"], table_format=table_format)
    before, version = canonical_rows(read_table(tmp_path, table_format, "costs")), table_version(tmp_path, table_format, "costs")
    write(tmp_path, NOW - 4 * DAY, NOW, endpoint="costs", group_by=["project_id", "line_item"], table_format=table_format)
    assert table_version(tmp_path, table_format, "costs") != version, "a new version"
    assert canonical_rows(read_table(tmp_path, table_format, "costs")) == before, "the same rows"


def test_restating_a_revised_day_replaces_exactly_that_day(fake_api, conn_id, tmp_path, table_format):
    write(tmp_path, NOW - 4 * DAY, NOW, group_by=["model"], table_format=table_format)
    before = rows_by_day(read_table(tmp_path, table_format, "completions"))
    fake_api.controls.revisions[D8] = 1
    write(tmp_path, D8, D8 + DAY, group_by=["model"], table_format=table_format)
    after = rows_by_day(read_table(tmp_path, table_format, "completions"))
    label = "2025-11-08"
    assert after[label] != before[label]
    assert {d: r for d, r in after.items() if d != label} == {d: r for d, r in before.items() if d != label}


@pytest.mark.parametrize(
    "first, second, differs",
    [
        ({"group_by": ["model"]}, {"group_by": ["project_id"]}, "group_by"),
        ({"bucket_width": "1h"}, {"bucket_width": "1d"}, "bucket_width"),
        ({"filters": {"models": ["gpt-4o-2024-08-06"]}}, {"filters": {"models": ["o3-2025-04-16"]}}, "filters"),
    ],
)
def test_another_width_grouping_or_filter_is_refused_before_any_request(fake_api, conn_id, tmp_path, table_format, first, second, differs):
    write(tmp_path, D8, D8 + DAY, table_format=table_format, **first)
    before = canonical_rows(read_table(tmp_path, table_format, "completions"))
    fake_api.clear_requests()
    with pytest.raises(OpenAIUsageStorageError, match=rf"{differs}: the table holds .*another output_path"):
        write(tmp_path, D8, D8 + DAY, table_format=table_format, **second)
    assert fake_api.requests == []
    assert canonical_rows(read_table(tmp_path, table_format, "completions")) == before


def test_a_new_typed_column_is_added_to_the_table_and_no_row_is_dropped(fake_api, conn_id, tmp_path, table_format):
    from airflow_provider_openai_usage.storage.usage import arrow_schema

    full = arrow_schema(ENDPOINTS["completions"])
    older = full.remove(full.get_field_index("input_audio_tokens"))  # as an older provider release wrote it
    location = object_path(tmp_path)
    sink = open_table_sink(table_format, location, "completions", older)
    identity = {"dataset": "completions", "bucket_width": "1d"}
    old_day = older.empty_table()
    import pyarrow as pa

    old_day = pa.Table.from_pylist(
        [{"start_time": (D8 - DAY) * 1000, "end_time": D8 * 1000, "input_tokens": 7, "num_model_requests": 1}], schema=older
    )
    sink.prepare(identity)
    sink.commit([SinkDay("2025-11-07", old_day)], identity)
    newer = open_table_sink(table_format, location, "completions", full)
    new_day = pa.Table.from_pylist(
        [{"start_time": D8 * 1000, "end_time": (D8 + DAY) * 1000, "input_tokens": 5, "input_audio_tokens": 3}], schema=full
    )
    newer.prepare(identity)
    newer.commit([SinkDay("2025-11-08", new_day)], identity)
    table = read_table(tmp_path, table_format, "completions")
    assert "input_audio_tokens" in table.column_names
    rows = {r["date"].isoformat(): (r["input_tokens"], r["input_audio_tokens"]) for r in table.to_pylist()}
    assert rows == {"2025-11-07": (7, None), "2025-11-08": (5, 3)}


def test_costs_totals_equal_the_apis_to_the_last_decimal(fake_api, conn_id, tmp_path, table_format):
    write(tmp_path, NOW - 6 * DAY, NOW, endpoint="costs", group_by=["project_id", "line_item"], table_format=table_format)
    table = read_table(tmp_path, table_format, "costs")
    rows = OpenAIUsageHook(conn_id).iter_rows("costs", NOW - 6 * DAY, NOW, group_by=["project_id", "line_item"])
    expected = sum((Decimal(str(r["amount_value"])) for r in rows), Decimal(0))
    assert expected != 0
    assert sum(table.column("amount_value").to_pylist(), Decimal(0)) == expected


def test_a_bad_table_format_names_the_parameter_and_the_fix(table_format):
    assert check_table_format(table_format) == table_format
    with pytest.raises(OpenAIUsageValidationError, match=r"table_format='parquet' .*'delta'.*\[delta\].*file_format"):
        OpenAIUsageOperator(task_id="t", endpoint="costs", output_path="/tmp/x", table_format="parquet")


def test_a_held_bucket_across_the_window_is_refused_not_cut(table_format):
    import pyarrow as pa

    from airflow_provider_openai_usage.storage.usage import arrow_schema

    schema = arrow_schema(ENDPOINTS["completions"])
    held = pa.Table.from_pylist([{"start_time": D8 * 1000, "end_time": (D8 + DAY) * 1000}], schema=schema)
    with pytest.raises(OpenAIUsageStorageError, match="cross .*Rewrite the whole day"):
        merge_day("completions", "2025-11-08", held, schema.empty_table(), (D8, D8 + H))


def test_the_directory_snapshot_lands_as_one_table_per_entity_equal_to_its_files(fake_api, conn_id, tmp_path, table_format):
    from test_operators_directory import ctx as directory_ctx

    from airflow_provider_openai_usage.directory import ENTITY_KEYS
    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator

    for kwargs in ({}, {"table_format": table_format}):
        OpenAIDirectoryOperator(task_id="d", output_path=tmp_path.as_uri(), replace_history=True, **kwargs).execute(directory_ctx(NOW))
    for key in ENTITY_KEYS:
        import pyarrow.parquet as pq

        date = "2025-11-10"
        files = canonical_rows(pq.read_table(tmp_path / "directory" / key / ORG_DIR / f"date={date}" / "data.parquet"), drop=())
        table = read_table(tmp_path, table_format, f"directory/{key}")
        assert set(d.isoformat() for d in table.column("date").to_pylist()) <= {date}
        assert canonical_rows(table) == files, key


def test_the_focus_export_lands_as_one_table_equal_to_its_files_with_exact_billed_cost(fake_api, conn_id, tmp_path, table_format):
    from test_operators_focus import ACCOUNT, costs_by_day
    from test_operators_focus import ctx as focus_ctx

    from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator

    start = NOW - 5 * DAY
    OpenAIFocusOperator(task_id="f", output_path=str(tmp_path), **ACCOUNT).execute(focus_ctx(start, NOW))
    operator = OpenAIFocusOperator(task_id="f", output_path=str(tmp_path), table_format=table_format, **ACCOUNT)
    summary = operator.execute(focus_ctx(start, NOW))
    table = read_table(tmp_path, table_format, "focus")
    assert rows_by_day(table) == file_rows_by_day(tmp_path, "focus")
    assert sum(table.column("BilledCost").to_pylist(), Decimal(0)) == sum(costs_by_day(conn_id, start, NOW).values(), Decimal(0))
    assert summary["table_format"] == table_format and summary["rows"] == table.num_rows


def test_refusals_come_before_any_request_and_name_the_parameter(fake_api, conn_id, tmp_path, table_format, monkeypatch):
    fake_api.clear_requests()
    with pytest.raises(OpenAIUsageValidationError, match="table_format='.*' needs output_path"):
        OpenAIUsageOperator(task_id="t", endpoint="costs", table_format=table_format, start_time=D8, end_time=D8 + DAY).execute({})
    templated = OpenAIUsageOperator(task_id="t", endpoint="costs", output_path=str(tmp_path), start_time=D8, end_time=D8 + DAY,
                                    table_format="{{ params.fmt }}")
    templated.table_format = "hudi"  # as rendered
    with pytest.raises(OpenAIUsageValidationError, match="table_format='hudi'"):
        templated.execute({})
    if table_format == "iceberg":
        with pytest.raises(OpenAIUsageValidationError, match="needs catalog_conn_id"):
            OpenAIUsageOperator(task_id="t", endpoint="costs", output_path="s3://bucket/openai", start_time=D8, end_time=D8 + DAY,
                                table_format="iceberg").execute({})
        monkeypatch.setenv("AIRFLOW_CONN_NOT_SQL", json.dumps({"conn_type": "http", "host": "example.invalid"}))
        with pytest.raises(OpenAIUsageValidationError, match="catalog_conn_id='not_sql' is a 'http' connection"):
            write(tmp_path, D8, D8 + DAY, table_format="iceberg", catalog_conn_id="not_sql")
    assert fake_api.requests == []


def test_a_date_that_is_not_a_day_never_reaches_the_engines_predicate(tmp_path, table_format):
    from airflow_provider_openai_usage.storage.usage import arrow_schema

    schema = arrow_schema(ENDPOINTS["completions"])
    sink = open_table_sink(table_format, object_path(tmp_path), "completions", schema)
    sink.prepare({"dataset": "completions"})
    for hostile in ("2025-11-08' OR '1'='1", "2025-11-8", "20251108"):
        with pytest.raises(ValueError, match="is not YYYY-MM-DD"):
            sink.commit([SinkDay(hostile, schema.empty_table())], {"dataset": "completions"})


def test_a_pull_reported_only_in_part_commits_the_complete_days_before_it_then_fails(fake_api, conn_id, tmp_path, table_format):
    from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError

    fake_api.controls.available_until = D8 + 12 * H
    with pytest.raises(OpenAIUsageResponseError, match="day 2025-11-08 is only reported up to .*left as it was"):
        write(tmp_path, NOW - 4 * DAY, NOW, table_format=table_format)
    landed = read_table(tmp_path, table_format, "completions")
    write(tmp_path / "f", NOW - 4 * DAY, D8)  # the two complete days, as files (a day without usage: no rows in a table)
    assert rows_by_day(landed) == file_rows_by_day(tmp_path / "f", "completions") != {}
    assert "2025-11-08" not in rows_by_day(landed)


def test_the_file_sink_publishes_whole_days_and_leaves_part_days_to_the_partition_writer(tmp_path, table_format):
    import pyarrow as pa

    from airflow_provider_openai_usage.storage import DayStore
    from airflow_provider_openai_usage.storage.sinks import FileSink

    sink = FileSink(DayStore(object_path(tmp_path / "x"), "parquet"))
    sink.prepare({})
    landed = sink.commit([SinkDay("2025-11-08", pa.table({"a": [1, 2]}))], {"dataset": "x"})
    assert [(d.date, d.rows) for d in landed] == [("2025-11-08", 2)]
    assert (tmp_path / "x" / "date=2025-11-08" / "data.parquet").exists()
    with pytest.raises(ValueError, match="whole days"):
        sink.commit([SinkDay("2025-11-08", pa.table({"a": [1]}), window=(D8, D8 + H))], {"dataset": "x"})


# -- several organizations in one table (issue #29) ----------------------------------------------------
def test_two_organizations_share_a_table_and_a_run_replaces_only_its_own_rows(fake_api, conn_id, monkeypatch, tmp_path, table_format):
    import pyarrow.compute as pc

    from airflow_provider_openai_usage.testing.data import FakeOrganization

    second = FakeOrganization.numbered(2, seed=8)
    fake_api.add_organization(fake_api.key + "-2", second)
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_ORG_2", fake_api.connection_json_for(fake_api.key + "-2", max_retries=1))
    orgs = {FAKE_ORG: "openai_usage_default", second.organization_id: "openai_usage_org_2"}
    grouping = {"endpoint": "costs", "group_by": ["project_id", "line_item"]}
    for org, conn in orgs.items():  # the files, to compare with; then the table, the second org's first
        write(tmp_path / "f", NOW - 3 * DAY, NOW, openai_usage_conn_id=conn, **grouping)
    for org, conn in reversed(orgs.items()):
        write(tmp_path / "t", NOW - 3 * DAY, NOW, openai_usage_conn_id=conn, table_format=table_format, **grouping)

    def by_org(table):
        return {org: rows_by_day(table.filter(pc.equal(table.column("organization_id"), org))) for org in orgs}

    table = read_table(tmp_path / "t", table_format, "costs")
    assert set(table.column("organization_id").to_pylist()) == set(orgs)
    expected = {org: file_rows_by_day(tmp_path / "f", "costs", f"organization={org}") for org in orgs}
    assert by_org(table) == expected and expected[FAKE_ORG] != expected[second.organization_id]
    assert sum(table.column("amount_value").to_pylist()) == sum(
        sum(r["amount_value"] for r in OpenAIUsageHook(conn).iter_rows("costs", NOW - 3 * DAY, NOW, **{"group_by": grouping["group_by"]}))
        for conn in orgs.values()
    ), "the all-organization total is the API's, to the last decimal"
    # A revised day of the first organization replaces its rows of that day, and nobody else's.
    import datetime as dt

    label = min(expected[FAKE_ORG])  # a day with costs
    start = int(dt.datetime.fromisoformat(label).replace(tzinfo=dt.timezone.utc).timestamp())
    fake_api.controls.revisions[start] = 1
    write(tmp_path / "t", start, start + DAY, table_format=table_format, **grouping)
    after = by_org(read_table(tmp_path / "t", table_format, "costs"))
    assert after[second.organization_id] == expected[second.organization_id]
    assert after[FAKE_ORG].get(label) != expected[FAKE_ORG][label]  # revised (the revision may have no rows)
    assert {d: r for d, r in after[FAKE_ORG].items() if d != label} == {d: r for d, r in expected[FAKE_ORG].items() if d != label}


def test_a_table_written_before_the_organization_level_is_refused_before_any_request(fake_api, conn_id, tmp_path, table_format):
    import pyarrow as pa

    from airflow_provider_openai_usage.query import UsageQuery
    from airflow_provider_openai_usage.storage.usage import arrow_schema, usage_identity

    query = UsageQuery.build("costs", NOW - DAY, NOW, group_by=["project_id", "line_item"])
    old_schema = arrow_schema(ENDPOINTS["costs"])  # no organization column: the release before #29
    old_schema = old_schema.remove(old_schema.get_field_index("organization_id"))
    sink = open_table_sink(table_format, object_path(tmp_path), "costs", old_schema)
    sink.prepare(usage_identity(query, table_format, arrow_schema(ENDPOINTS["costs"], organization=True)))
    sink.commit([SinkDay("2025-11-09", pa.Table.from_pylist([], schema=old_schema))], usage_identity(query, table_format, old_schema))
    fake_api.clear_requests()
    with pytest.raises(OpenAIUsageStorageError, match=r"written before the organization level \(no organization_id column\)"):
        write(tmp_path, NOW - DAY, NOW, endpoint="costs", group_by=["project_id", "line_item"], table_format=table_format)
    assert fake_api.requests == []
