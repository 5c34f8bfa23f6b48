"""storage.formats: Arrow tables to Parquet/JSONL/CSV bytes and back: every endpoint and format reads back as the
hook's rows, the same bytes on a re-run, text formats merge partial days exactly, decimals fit their column."""

from __future__ import annotations

import datetime as dt
import functools
import json
from decimal import Decimal

import pytest
from conftest import FAKE_ORG, DAY, NOW, ORG_DIR
from storage_support import D8, START, H, ctx, data_files, day, files, object_path, partition_writer, read_back, temps, usage_bucket, write

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.storage import list_day_files, read_day_table


def normalized_hook_rows(rows: list[dict], file_format: str) -> list[dict]:
    """What the hook's rows look like once written (every landed row also names its organization)."""
    rows = [{**row, "organization_id": FAKE_ORG} for row in rows]
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


def _schema(endpoint: str):
    from airflow_provider_openai_usage.storage import arrow_schema

    return arrow_schema(ENDPOINTS[endpoint], organization=True)


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
        written += read_back(tmp_path / key / ORG_DIR / f"date={d}" / name, file_format)
    assert sort_rows(written) == sort_rows(normalized_hook_rows(expected, file_format))
    assert summary["rows"] == len(expected)
    assert not temps(tmp_path), "no temporary files left behind"
    assert data_files(tmp_path / key / ORG_DIR) == [f"date={day(START + i * DAY)}/data.{file_format}" for i in range(4)]


def test_re_running_an_interval_gives_identical_bytes(fake_api, conn_id, tmp_path):
    op = OpenAIUsageOperator(task_id="t", endpoint="images", output_path=f"file://{tmp_path}", group_by=["size", "source"])
    op.execute(ctx(START, NOW))
    first = files(tmp_path)
    op.execute(ctx(START, NOW))
    assert files(tmp_path) == first


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_text_formats_merge_partial_days_exactly(fake_api, conn_id, tmp_path, file_format):
    write(tmp_path / "a", D8, D8 + DAY, bucket_width="1h", group_by=["model"], file_format=file_format, endpoint="embeddings")
    for h in (5, 0, 23):
        write(tmp_path / "b", D8 + h * H, D8 + (h + 1) * H, bucket_width="1h", group_by=["model"], file_format=file_format, endpoint="embeddings")
    write(tmp_path / "b", D8, D8 + DAY, bucket_width="1h", group_by=["model"], file_format=file_format, endpoint="embeddings")
    name = f"embeddings/{ORG_DIR}/date={day(D8)}/data.{file_format}"
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
    costs = tmp_path / "c"
    write(costs, D8, D8 + DAY, endpoint="costs", group_by=["line_item"], file_format=file_format)
    table = read_day_table(list_day_files(object_path(costs / "costs" / ORG_DIR))[day(D8)], _schema("costs"))
    assert sum(table.column("amount_value").to_pylist()) == sum(
        r["amount_value"] for r in OpenAIUsageHook(conn_id).iter_rows("costs", D8, D8 + DAY, group_by=["line_item"])
    )


def test_a_large_amount_and_28_decimal_strings_fit(tmp_path):
    from airflow_provider_openai_usage.query import UsageQuery

    query = UsageQuery.build("costs", D8, D8 + DAY)
    writer = partition_writer(tmp_path, "costs")
    writer.prepare(query)
    results = [
        {"object": "organization.costs.result", "amount": {"value": Decimal("12345678901.5"), "currency": "usd"}},
        {"object": "organization.costs.result", "amount": {"value": "0.0600000000000000000000000000", "currency": "usd"}},
        {"object": "organization.costs.result", "amount": {"value": "0.3333333333333333333333333333", "currency": "usd"}},
    ]
    (result,) = writer.write(query, [usage_bucket(D8, D8 + DAY, results)])
    values = read_day_table(list_day_files(object_path(tmp_path / "costs"))[day(D8)]).column("amount_value").to_pylist()
    assert values == [Decimal("12345678901.5"), Decimal("0.06"), Decimal("0.333333333333333333")]
    assert result.totals["amount_value"] == sum(values)


# -- DayEncoder: a day streamed piece by piece is the same file as a day written in one call -------------
@functools.lru_cache(maxsize=8)  # Arrow tables are immutable: every example of a size shares one
def _day_table(n: int):
    import pyarrow as pa

    from airflow_provider_openai_usage.storage.usage import arrow_schema

    endpoint = ENDPOINTS["completions"]
    schema = arrow_schema(endpoint)
    columns = {}
    for f in schema:
        if f.name in ("start_time", "end_time"):
            columns[f.name] = pa.array([(NOW + i) * 1000 for i in range(n)], type=f.type)
        elif pa.types.is_integer(f.type):
            columns[f.name] = pa.array([None if i % 11 == 0 else i * 7 % 1000 for i in range(n)], type=f.type)
        elif pa.types.is_boolean(f.type):
            columns[f.name] = pa.array([None if i % 5 == 0 else i % 2 == 0 for i in range(n)], type=f.type)
        else:
            columns[f.name] = pa.array([None if i % 3 == 0 else f"v{i % 17}" for i in range(n)], type=f.type)
    return pa.table(columns, schema=schema)


from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=25, deadline=None)
@given(
    rows=st.sampled_from([0, 1, 2047, 65535, 65536, 65537, 140_000]),
    cuts=st.lists(st.integers(1, 70_000), min_size=1, max_size=6),
    file_format=st.sampled_from(["parquet", "jsonl", "csv"]),
)
def test_a_day_streamed_in_any_pieces_is_byte_identical_to_one_call(rows, cuts, file_format):
    from airflow_provider_openai_usage.storage.formats import DayEncoder, encode_table

    if file_format != "parquet" and rows > 2047:
        rows = 2047  # text formats are row by row; keep them quick
    table = _day_table(rows)
    metadata = {"identity": {"dataset": "completions"}, "covered": [[NOW, NOW + DAY]]}
    whole = bytes(encode_table(table, file_format, metadata))
    encoder = DayEncoder(table.schema, file_format, metadata)
    at, i = 0, 0
    while at < rows:
        # The cuts in turn, for the first 200 pieces (tiny ones included); then the rest in one piece,
        # so 140,000 rows cut by 1 stay 201 calls instead of 140,000.
        size = cuts[i % len(cuts)] if i < 200 else rows - at
        encoder.write(table.slice(at, size))
        at, i = at + size, i + 1
    assert bytes(encoder.finish()) == whole
    assert encoder.rows == rows


def test_a_streamed_day_holds_at_most_one_row_group_of_rows():
    import pyarrow as pa

    from airflow_provider_openai_usage.storage.formats import ROW_GROUP_ROWS, DayEncoder

    table = _day_table(3 * ROW_GROUP_ROWS + 5)
    encoder = DayEncoder(table.schema, "parquet")
    held = []
    for at in range(0, table.num_rows, 2048):
        encoder.write(table.slice(at, 2048))
        held.append(encoder._held_rows)
    assert max(held) < ROW_GROUP_ROWS, "whole row groups are encoded as soon as they are complete"
    import pyarrow.parquet as pq

    meta = pq.read_metadata(pa.BufferReader(encoder.finish()))
    assert [meta.row_group(i).num_rows for i in range(meta.num_row_groups)] == [ROW_GROUP_ROWS] * 3 + [5]


@pytest.mark.parametrize(("rows", "codec"), [(1, "UNCOMPRESSED"), (255, "UNCOMPRESSED"), (256, "ZSTD"), (70_000, "ZSTD")])
def test_a_day_of_a_few_rows_is_written_without_compression_and_a_bigger_one_with_zstd(rows, codec):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_openai_usage.storage.formats import SMALL_DAY_ROWS, encode_table

    assert SMALL_DAY_ROWS == 256
    meta = pq.read_metadata(pa.BufferReader(encode_table(_day_table(rows), "parquet")))
    assert {meta.row_group(0).column(i).compression for i in range(meta.num_columns)} == {codec}


# -- hostile strings (#26 items 5 and 10) ------------------------------------------------------------
HOSTILE = [
    "a\rb", "a\nb", "a\r\nb", "\r", "\n", 'say "hi"', '"', "a,b", ",", " lead", "trail ", "\t", "tab\tin",
    "=1+1", "+1", "-1", "-1.5", "-2+3", "@SUM(A1)", "\tx", "\rx", "'quoted", "''", "'=x", "\\", "null", "\u2028 \u2029 \x85 \x0b",
    "ü€😀", "{\"k\": 1}", "plain",
]


def _hostile_table():
    import pyarrow as pa

    schema = _schema("completions")
    n = len(HOSTILE)
    columns = {}
    for f in schema:
        if f.name in ("start_time", "end_time"):
            columns[f.name] = pa.array([NOW * 1000] * n, type=f.type)
        elif pa.types.is_string(f.type):
            columns[f.name] = pa.array(HOSTILE if f.name == "project_id" else [None] * n, type=f.type)
        else:
            columns[f.name] = pa.array([None] * n, type=f.type)
    return pa.table(columns, schema=schema)


@pytest.mark.parametrize("file_format", ["parquet", "jsonl", "csv"])
def test_hostile_strings_read_back_exactly_in_every_format(file_format):
    from airflow_provider_openai_usage.storage.formats import encode_table, read_table

    table = _hostile_table()
    back = read_table(bytes(encode_table(table, file_format)), file_format, table.schema)
    assert back.column("project_id").to_pylist() == HOSTILE
    assert back.num_rows == len(HOSTILE)


def test_csv_quotes_every_cr_lf_quote_and_separator_so_strict_readers_see_one_row_per_record():
    """RFC 4180: a field holding CR, LF, a quote or the separator is quoted (a bare CR split the row)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from airflow_provider_openai_usage.storage.formats import encode_table

    data = bytes(encode_table(_hostile_table(), "csv"))
    strict = pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(column_types={"project_id": pa.string()}),
                            parse_options=pacsv.ParseOptions(newlines_in_values=True))
    assert strict.num_rows == len(HOSTILE)
    assert b',"a\rb",' in data


def test_csv_cells_a_spreadsheet_would_run_as_formulas_are_neutralised():
    """OWASP CSV injection: a text cell starting with = + - @ TAB or CR gets a leading ' (so does one
    starting with ', so reading strips exactly one and every value round-trips)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    from airflow_provider_openai_usage.storage.formats import encode_table

    data = bytes(encode_table(_hostile_table(), "csv"))
    cells = pacsv.read_csv(pa.BufferReader(data), convert_options=pacsv.ConvertOptions(column_types={"project_id": pa.string()}),
                           parse_options=pacsv.ParseOptions(newlines_in_values=True)).column("project_id").to_pylist()
    import re

    for original, cell in zip(HOSTILE, cells, strict=True):
        if re.fullmatch(r"[+-]?[0-9]+(\.[0-9]+)?", original):
            assert cell == original, "a plain number stays a number (a negative amount as text)"
        elif original and original[0] in "=+-@\t\r'":
            assert cell == "'" + original
        elif original:
            assert cell == original
