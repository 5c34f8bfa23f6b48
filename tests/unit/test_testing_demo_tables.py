"""testing/demo_tables.py: the demo's tables and its one DuckDB query, over costs the real operators landed."""

from __future__ import annotations

import pendulum
from conftest import DAY, NOW

from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator
from airflow_provider_openai_usage.testing import demo_tables


def test_the_tables_land_beside_the_files_and_one_query_sums_the_same_costs_thrice(fake_api, conn_id, tmp_path):
    start, end = pendulum.from_timestamp(NOW - 3 * DAY, tz="UTC"), pendulum.from_timestamp(NOW, tz="UTC")
    OpenAICostsOperator(task_id="c", group_by=["project_id", "line_item"], output_path=tmp_path.as_uri(),
                        start_time=start, end_time=end).execute({})
    lines = demo_tables.write_tables(tmp_path, start, end)
    assert len(lines) == 4 and all("rows" in line for line in lines)
    query, result = demo_tables.duckdb_query(tmp_path)
    assert "delta_scan" in query and "iceberg_scan" in query
    assert [sink for sink, _, _ in result] == ["delta", "iceberg", "files"]
    assert len({usd for _, _, usd in result}) == 1 and result[0][2] > 0
    assert result[0][1] == result[1][1] == result[2][1]  # the same grouping here: the same rows
