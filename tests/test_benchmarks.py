"""A tiny run of the benchmark harness: it works, and request counts are exactly the minimum."""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parents[1] / "benchmarks" / "run.py")
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.fixture
def bench_api():
    with FakeOpenAIUsageAPI(key=bench.KEY, seed=11, now=bench.NOW) as api:
        yield api


def test_our_pull_makes_the_minimum_number_of_requests_and_the_baseline_one_per_day(bench_api):
    days = 40
    start = bench.NOW - days * bench.DAY
    ours = bench.measure(bench_api, bench.ours, start, bench.NOW, repeats=1)
    baseline = bench.measure(bench_api, bench.hand_written_requests_daily, start, bench.NOW, repeats=1)
    assert ours["requests"] == math.ceil(days / 31) == 2
    assert baseline["requests"] == days
    assert ours["rows"] == baseline["rows"] > 0, "both read the same data"


@pytest.mark.parametrize(("width", "seconds", "per_page"), [("1h", 3600, 168), ("1m", 60, 1440)])
def test_finer_widths_pull_seven_days_in_the_minimum_requests(bench_api, width, seconds, per_page):
    bench.ours(bench_api.base_url, bench.NOW - 7 * bench.DAY, bench.NOW, bucket_width=width, group_by=None)
    assert len(bench_api.requests) == math.ceil(7 * bench.DAY / seconds / per_page)


def test_row_writer_benchmark_runs_on_a_small_input(tmp_path):
    buckets = bench.synthetic_buckets(days=1, groups=3)
    assert sum(len(b["results"]) for b in buckets) == 72
    assert bench.rows_per_second(bench.rows_to_parquet_ours, buckets, 1, 1) > 0
