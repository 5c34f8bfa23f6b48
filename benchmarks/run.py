"""`make bench`: our provider against the alternatives, measured side by side in one run.

Writes docs/performance.md. Every figure is the median of several runs against the shipped fake
API with an injected per-request latency (default 50 ms), fixed seeds, and is reported both raw and
as a ratio to its baseline. Goals are stated as the issue set them; a missed goal is reported, not
loosened.

    python benchmarks/run.py [--latency 0.05] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAY = 86400
#: A fixed "now" (2025-11-10T00:00Z) so every run pulls the same data.
NOW = 1762732800
KEY = "sk-admin-fake-benchmark-key"
GROUP_BY = ["project_id", "model"]


def _airflow_env(home: str) -> None:
    os.environ.setdefault("AIRFLOW_HOME", home)
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")


# -- the three ways to pull a year ----------------------------------------------------------------------
def ours(base_url: str, start: int, end: int, bucket_width: str = "1d", group_by: list[str] | None = GROUP_BY) -> int:
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

    os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "openai_usage", "host": base_url, "password": KEY})
    hook = OpenAIUsageHook("bench")
    return sum(1 for _ in hook.iter_rows("completions", start, end, bucket_width=bucket_width, group_by=group_by))


def official_sdk_daily_loop(base_url: str, start: int, end: int) -> int:
    """Baseline 1: the `openai` package's admin usage method, one day per call (a daily task), default limit."""
    from openai import OpenAI

    client = OpenAI(api_key="unused", admin_api_key=KEY, base_url=base_url, max_retries=2)
    rows = 0
    for day in range(start, end, DAY):
        page = None
        while True:
            kwargs: dict[str, Any] = {"start_time": day, "end_time": day + DAY, "group_by": GROUP_BY}
            if page:
                kwargs["page"] = page
            response = client.admin.organization.usage.completions(**kwargs)
            rows += sum(len(bucket.results) for bucket in response.data)
            if not response.has_more:
                break
            page = response.next_page
    return rows


def hand_written_requests_daily(base_url: str, start: int, end: int) -> int:
    """Baseline 2: a PythonOperator-style function with requests, default limit, following next_page,
    called once per day as a daily DAG would."""
    import requests

    def pull_day(day: int) -> list[dict]:
        rows, params = [], {"start_time": day, "end_time": day + DAY, "group_by": GROUP_BY}
        while True:
            r = requests.get(f"{base_url}/organization/usage/completions", params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
            r.raise_for_status()
            body = r.json()
            for bucket in body["data"]:
                rows += bucket["results"]
            if not body["has_more"]:
                return rows
            params = {**params, "page": body["next_page"]}

    return sum(len(pull_day(day)) for day in range(start, end, DAY))


def hand_written_requests_whole_range(base_url: str, start: int, end: int) -> int:
    """Baseline 2 variant: the same function called once over the whole range (default limit 7)."""
    import requests

    rows, params = 0, {"start_time": start, "end_time": end, "group_by": GROUP_BY}
    while True:
        r = requests.get(f"{base_url}/organization/usage/completions", params=params, headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
        body = r.json()
        rows += sum(len(b["results"]) for b in body["data"])
        if not body["has_more"]:
            return rows
        params = {**params, "page": body["next_page"]}


def measure(api: Any, fn: Callable[..., int], *args: Any, repeats: int) -> dict[str, float]:
    times, requests_made, rows = [], [], []
    for _ in range(repeats):
        api.clear_requests()
        t = time.perf_counter()
        rows.append(fn(api.base_url, *args))
        times.append(time.perf_counter() - t)
        requests_made.append(len(api.requests))
    assert len(set(rows)) == 1, "a pull must return the same rows every time"
    return {"seconds": statistics.median(times), "requests": statistics.median(requests_made), "rows": rows[0]}


# -- rows per second --------------------------------------------------------------------------------
def synthetic_buckets(days: int, groups: int) -> list[dict]:
    from airflow_provider_openai_usage.endpoints import ENDPOINTS
    from airflow_provider_openai_usage.testing.data import dense_results

    start = NOW - days * DAY
    return [
        {"object": "bucket", "start_time": t, "end_time": t + 3600, "results": dense_results(ENDPOINTS["completions"], t, groups)}
        for t in range(start, NOW, 3600)
    ]


def rows_to_parquet_ours(buckets: list[dict], days: int, out: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.query import UsageQuery
    from airflow_provider_openai_usage.storage import PartitionWriter

    query = UsageQuery.build("completions", NOW - days * DAY, NOW, bucket_width="1h")
    writer = PartitionWriter(ObjectStoragePath(out.as_uri()), query.endpoint, "parquet")
    for _ in writer.write(query, buckets):
        pass


def rows_to_parquet_pandas(buckets: list[dict], days: int, out: Path) -> None:
    """Baseline 3: pandas.json_normalize + to_parquet, per day."""
    import pandas as pd

    by_day: dict[int, list[dict]] = {}
    for bucket in buckets:
        by_day.setdefault(bucket["start_time"] // DAY, []).append(bucket)
    for day, day_buckets in by_day.items():
        frame = pd.json_normalize(day_buckets, record_path="results", meta=["start_time", "end_time"])
        target = out / f"date={day}"
        target.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target / "part.parquet")


def rows_per_second(fn: Callable, buckets: list[dict], days: int, repeats: int) -> float:
    rows = sum(len(b["results"]) for b in buckets)
    times = []
    with tempfile.TemporaryDirectory() as tmp:  # warm-up: imports and first-use costs are not rows/s
        fn(synthetic_buckets(days=1, groups=2), 1, Path(tmp))
    for _ in range(repeats):
        with tempfile.TemporaryDirectory() as tmp:
            copy = json.loads(json.dumps(buckets))  # same input each time; writers may not keep references
            t = time.perf_counter()
            fn(copy, days, Path(tmp))
            times.append(time.perf_counter() - t)
    return rows / statistics.median(times)


# -- memory and import cost (fresh processes) ----------------------------------------------------------
RSS_PROBE = """
import json, os, sys, tempfile
from pathlib import Path
os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "openai_usage", "host": sys.argv[1], "password": sys.argv[2]})
from airflow.sdk import ObjectStoragePath
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.storage import PartitionWriter
days, now = int(sys.argv[3]), int(sys.argv[4])
query = UsageQuery.build("embeddings", now - days * 86400, now, bucket_width="1m", group_by=["project_id"])
with tempfile.TemporaryDirectory() as tmp:
    writer = PartitionWriter(ObjectStoragePath(Path(tmp).as_uri()), query.endpoint, "parquet")
    rows = sum(d.rows for d in writer.write(query, OpenAIUsageHook("bench").iter_query_buckets(query)))
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's size.
hwm = next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(json.dumps({"rows": rows, "max_rss_kb": hwm}))
"""


def peak_rss(days: int, groups: int) -> dict[str, int]:
    server = subprocess.Popen(
        [sys.executable, "-m", "airflow_provider_openai_usage.testing", "serve", "--key", KEY, "--now", str(NOW), "--dense-groups", str(groups)],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        base_url = server.stdout.readline().strip().rsplit(" ", 1)[1]
        out = subprocess.run([sys.executable, "-c", RSS_PROBE, base_url, KEY, str(days), str(NOW)], capture_output=True, text=True, check=True)
        return json.loads(out.stdout.strip().splitlines()[-1])
    finally:
        server.terminate()
        server.wait()


def import_seconds(statement: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -- the report -------------------------------------------------------------------------------------
def run(latency: float, repeats: int, smoke: bool) -> dict[str, Any]:
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

    days = 40 if smoke else 365
    start = NOW - days * DAY
    figures: dict[str, Any] = {"days": days, "latency": latency, "repeats": repeats}
    # Imports are paid before timing: a figure measures pulling, not importing.
    import openai  # noqa: F401
    import requests  # noqa: F401
    import tenacity  # noqa: F401

    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook  # noqa: F401

    with FakeOpenAIUsageAPI(key=KEY, seed=11, now=NOW) as api:
        api.controls.latency = latency
        figures["ours"] = measure(api, ours, start, NOW, repeats=repeats)
        figures["minimum_requests"] = math.ceil(days / 31)
        figures["sdk"] = measure(api, official_sdk_daily_loop, start, NOW, repeats=repeats)
        figures["requests_daily"] = measure(api, hand_written_requests_daily, start, NOW, repeats=repeats)
        figures["requests_whole"] = measure(api, hand_written_requests_whole_range, start, NOW, repeats=repeats)
        for width, per_page in (("1h", 168), ("1m", 1440)):
            api.clear_requests()
            ours(api.base_url, NOW - 7 * DAY, NOW, bucket_width=width, group_by=None)
            figures[f"requests_7d_{width}"] = {"ours": len(api.requests), "minimum": math.ceil(7 * DAY / {"1h": 3600, "1m": 60}[width] / per_page)}
    if smoke:
        return figures
    figures["rss"] = {
        label: {"rows": runs[0]["rows"], "max_rss_kb": statistics.median(r["max_rss_kb"] for r in runs)}
        for label, runs in (("1d", [peak_rss(1, 50) for _ in range(repeats)]), ("30d", [peak_rss(30, 50) for _ in range(repeats)]))
    }
    buckets = synthetic_buckets(days=7, groups=1000)
    figures["rows_per_second"] = {
        "rows": sum(len(b["results"]) for b in buckets),
        "ours": rows_per_second(rows_to_parquet_ours, buckets, 7, repeats),
        "pandas": rows_per_second(rows_to_parquet_pandas, buckets, 7, repeats),
    }
    figures["import"] = {
        "airflow.sdk": import_seconds("import airflow.sdk", 5),
        "ours": import_seconds("import airflow_provider_openai_usage.operators.usage, airflow_provider_openai_usage.sensors.usage", 5),
    }
    return figures


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def report(f: dict[str, Any]) -> str:
    ours, sdk, daily, whole = f["ours"], f["sdk"], f["requests_daily"], f["requests_whole"]
    rps, rss, imp = f["rows_per_second"], f["rss"], f["import"]
    req_ratio = min(sdk["requests"], daily["requests"]) / ours["requests"]
    time_ratio = min(sdk["seconds"], daily["seconds"]) / ours["seconds"]
    rss_ratio = rss["30d"]["max_rss_kb"] / rss["1d"]["max_rss_kb"]
    import_ratio = imp["ours"] / imp["airflow.sdk"]
    rows_ratio = rps["ours"] / rps["pandas"]
    lines = [
        "# Performance",
        "",
        f"Generated by `make bench` on {dt.date.today().isoformat()}: {platform.platform()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. Fake API with {f['latency'] * 1000:.0f} ms injected latency per request; "
        f"every figure is the median of {f['repeats']} runs (imports: 5), measured side by side in one run.",
        "",
        "| figure | ours | baseline | ratio | goal | verdict |",
        "|---|---|---|---|---|---|",
        f"| requests, {f['days']} days of 1d buckets grouped by project and model | {ours['requests']:.0f} (minimum {f['minimum_requests']}) | "
        f"SDK loop {sdk['requests']:.0f}; requests loop {daily['requests']:.0f} | {req_ratio:.1f}x fewer | minimum and >= 30x | "
        f"{verdict(ours['requests'] == f['minimum_requests'] and req_ratio >= 30)} |",
        f"| wall time, same pull | {ours['seconds']:.2f} s | SDK loop {sdk['seconds']:.2f} s; requests loop {daily['seconds']:.2f} s | "
        f"{time_ratio:.1f}x faster | >= 20x | {verdict(time_ratio >= 20)} |",
        f"| requests, 7 days of 1h buckets | {f['requests_7d_1h']['ours']} | minimum {f['requests_7d_1h']['minimum']} | | the minimum | "
        f"{verdict(f['requests_7d_1h']['ours'] == f['requests_7d_1h']['minimum'])} |",
        f"| requests, 7 days of 1m buckets | {f['requests_7d_1m']['ours']} | minimum {f['requests_7d_1m']['minimum']} | | the minimum | "
        f"{verdict(f['requests_7d_1m']['ours'] == f['requests_7d_1m']['minimum'])} |",
        f"| peak RSS, 30 days of 1m buckets x 50 groups ({rss['30d']['rows']:,} rows) vs 1 day | {rss['30d']['max_rss_kb'] / 1024:.0f} MB | "
        f"{rss['1d']['max_rss_kb'] / 1024:.0f} MB | {rss_ratio:.2f}x | <= 1.2x | {verdict(rss_ratio <= 1.2)} |",
        f"| rows/s, API pages to Parquet ({rps['rows']:,} rows) | {rps['ours']:,.0f} | pandas.json_normalize + to_parquet {rps['pandas']:,.0f} | "
        f"{rows_ratio:.1f}x | >= 200k rows/s and >= 5x | {verdict(rps['ours'] >= 200_000 and rows_ratio >= 5)} |",
        f"| import of operators + sensors modules, fresh interpreter | {imp['ours']:.2f} s | `import airflow.sdk` {imp['airflow.sdk']:.2f} s | "
        f"{import_ratio:.2f}x | <= 1.10x | {verdict(import_ratio <= 1.10)} |",
        "",
        "Baselines, written as a competent user would: (1) the `openai` package's "
        "`client.admin.organization.usage.completions` called page by page with its default `limit`, one "
        "day per call as a daily task would; (2) a PythonOperator-style function with `requests`, default "
        "`limit`, following `next_page`, once per day; (3) `pandas.json_normalize` + `to_parquet` per day.",
        "",
        f"Variant of baseline 2 called once over the whole range (still default `limit` 7): "
        f"{whole['requests']:.0f} requests, {whole['seconds']:.2f} s; ours is {whole['requests'] / ours['requests']:.1f}x fewer requests "
        f"and {whole['seconds'] / ours['seconds']:.1f}x faster. The 30x goal is measured against the daily forms, which is how "
        "these baselines run in a daily DAG; against a whole-range loop the gain is the ratio of page sizes (31/7).",
        "",
        *(
            [
                f"Why the rows/s goal is missed: our writer reaches {rps['ours']:,.0f} rows/s ({rows_ratio:.1f}x the pandas "
                "baseline) but not 5x. Per row it does work the baseline does not: it checks every result's `object` "
                "and value types against the registry (so wrong data fails instead of landing), sorts each bucket's rows "
                "by their dimensions (so re-runs are byte-identical) and writes exact decimals; pandas infers types and "
                "keeps the API's order. The remaining cost is mostly reading the values out of the parsed JSON dicts, "
                "one `dict.get` per cell; going further means a columnar JSON parser (e.g. pyarrow.json), which "
                "cannot stream OpenAI's nested pages as they arrive.",
                "",
            ]
            if rows_ratio < 5 or rps["ours"] < 200_000
            else []
        ),
        "Raw figures:",
        "",
        "```json",
        json.dumps(f, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, print figures, write nothing")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        _airflow_env(home)
        figures = run(args.latency, args.repeats, args.smoke)
        if args.smoke:
            print(json.dumps(figures, indent=2, default=str))
            return 0
        text = report(figures)
    (REPO / "docs" / "performance.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
