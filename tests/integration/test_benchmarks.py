"""A small run of the benchmark harness: it works, and request counts are exactly the minimum.

Timings are not asserted (a loaded machine makes them noise); counts and row equality are.
"""

from __future__ import annotations

import importlib.util
import math
from pathlib import Path

import pytest

spec = importlib.util.spec_from_file_location("bench_run", Path(__file__).resolve().parents[2] / "benchmarks" / "run.py")
assert spec is not None and spec.loader is not None
bench = importlib.util.module_from_spec(spec)
spec.loader.exec_module(bench)


@pytest.fixture(scope="module")
def server():
    """The fake API in its own process, as the benchmarks run it."""
    with bench.FakeServer() as s:
        yield s


def test_every_contender_reads_the_same_rows_and_ours_makes_the_minimum_requests(server):
    days = 40
    start = bench.NOW - days * bench.DAY
    figures = bench.interleaved(server, {
        "ours_execute": (bench.ours_execute, (start, bench.NOW)),
        "ours_hook": (bench.ours, (start, bench.NOW)),
        "requests_whole": (bench.requests_whole_range, (start, bench.NOW)),
        "requests_daily": (bench.requests_daily, (start, bench.NOW)),
    }, repeats=1)
    assert figures["ours_execute"]["requests"] == figures["ours_hook"]["requests"] == math.ceil(days / 31) == 2
    assert figures["requests_whole"]["requests"] == 2, "the whole-range baseline is as frugal as we are"
    assert figures["requests_daily"]["requests"] == days
    rows = {name: f["rows"] for name, f in figures.items()}
    assert len(set(rows.values())) == 1 and rows["ours_hook"] > 0, rows


@pytest.mark.parametrize(("width", "seconds", "per_page"), [("1h", 3600, 168), ("1m", 60, 1440)])
def test_finer_widths_pull_seven_days_in_the_minimum_requests(server, width, seconds, per_page):
    server.requests_made(reset=True)
    bench.ours(server.base_url, bench.NOW - 7 * bench.DAY, bench.NOW, bucket_width=width, group_by=None)
    assert server.requests_made() == math.ceil(7 * bench.DAY / seconds / per_page)


def test_bytes_to_parquet_benchmark_runs_on_a_small_input():
    pages = bench.page_bytes(days=1, groups=3)
    figures = bench.rows_per_second({"ours": bench.bytes_to_parquet_ours}, pages, 1, 1)
    assert figures["rows"] == 72 and figures["ours"] > 0


def test_peak_memory_is_flat_in_days():
    """Bounded by design: pages are handled one at a time (plus the one prefetched) and each day is
    published as it completes, so three days of dense 1m buckets peak about where one day does.
    What a page holds is the bound (docs/design.md: memory); a fresh process per measurement."""
    one = bench.peak_rss(groups=5, repeats=1, days=1)
    three = bench.peak_rss(groups=5, repeats=1, days=3)
    assert three["rows"] == 3 * one["rows"] == 3 * 1440 * 5
    assert three["over_baseline_mb"] <= 1.6 * one["over_baseline_mb"], (one, three)


def test_peak_memory_is_bounded_by_the_results_held_not_by_the_groups():
    """Issue #15's bound on its own case: one day of 1m completions grouped by every dimension stays
    within 70 MB over the import baseline, and five times the groups (five times the rows of that day)
    within 1.5x of it: a day streams into its file by row groups (docs/design.md: memory).

    The bound was 60 MB until issue #29 added ``organization_id`` to every landed row: measured here,
    the same day costs 57.5 MB without the column and 63–65 MB with it (a string per row in the
    buckets' lists, the Arrow column and the row group being encoded). The hook's paths below keep 60.
    """
    one = bench.peak_rss(groups=50, repeats=1)
    five = bench.peak_rss(groups=250, repeats=1)
    assert five["rows"] == 5 * one["rows"] == 5 * 1440 * 50
    assert one["over_baseline_mb"] <= 70, one
    assert five["over_baseline_mb"] <= 1.5 * one["over_baseline_mb"], (one, five)


@pytest.mark.parametrize("path", ["iter_rows", "iter_buckets"])
def test_the_hooks_public_path_is_bounded_by_the_results_held(path):
    """Issue #28: what a user's own @task calls, with default arguments, holds about PAGE_RESULTS results
    however dense the grouping: one day of 1m completions by every dimension within 60 MB over the
    import baseline, five times the groups within 1.5x of it (a fresh process per measurement)."""
    one = bench.peak_rss(groups=50, repeats=1, path=path)
    five = bench.peak_rss(groups=250, repeats=1, path=path)
    assert five["rows"] == 5 * one["rows"] == 5 * 1440 * 50
    assert one["over_baseline_mb"] <= 60, one
    assert five["over_baseline_mb"] <= 1.5 * one["over_baseline_mb"], (one, five)


def test_the_hooks_bounded_pages_cost_the_requests_the_bound_implies():
    """A dense day: ten minutes first, then pages of PAGE_RESULTS results (5,000 / 50 groups = 100 minutes);
    a sparse range keeps the minimum (test_finer_widths_pull_seven_days_in_the_minimum_requests)."""
    from airflow_provider_openai_usage.endpoints import ENDPOINTS
    from airflow_provider_openai_usage.hooks.usage import PAGE_RESULTS, PROBE_SECONDS

    dims = [c.name for c in ENDPOINTS["completions"].dimensions]
    with bench.FakeServer(dense_groups=50) as dense:
        dense.requests_made(reset=True)
        rows = bench.ours(dense.base_url, bench.NOW - bench.DAY, bench.NOW, bucket_width="1m", group_by=dims)
        first = PROBE_SECONDS // 60
        assert rows == 1440 * 50
        assert dense.requests_made() == 1 + math.ceil((1440 - first) / (PAGE_RESULTS // 50))


def test_the_sink_benchmark_lands_the_same_rows_in_files_delta_and_iceberg(server):
    figures = bench.sinks(server, bench.NOW - 20 * bench.DAY, bench.NOW, repeats=1)
    assert set(figures) == {"files", "delta", "iceberg"}
    assert len({f["rows"] for f in figures.values()}) == 1 and figures["files"]["rows"] > 0
    assert all(f["over_baseline_mb"] > 0 for f in figures.values())
    lines = bench._sinks_report({"days": 20, "sinks": figures})
    assert any(line.startswith("| delta |") for line in lines)
