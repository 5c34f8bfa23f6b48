"""`make bench`: our provider against the strongest alternatives, side by side in one run.

Writes docs/performance.md. The fake API runs in its own process (so its CPU is not ours) with an
injected per-request latency (default 50 ms), TCP_NODELAY and one write per response. Contenders
are interleaved (A B C A B C ...), every figure is the median of ``--repeats`` runs with its spread
(min–max), and every goal is reported met or missed with the measured reason — never loosened.

    python benchmarks/run.py [--latency 0.05] [--repeats 3] [--smoke]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import math
import os
import platform
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
DAY = 86400
#: A fixed "now" (2025-11-10T00:00Z) so every run pulls the same data.
NOW = 1762732800
KEY = "sk-admin-fake-benchmark-key"
GROUP_BY = ["project_id", "model"]
#: The most a 1d completions page holds (the API's maximum `limit` for 1d buckets).
MAX_LIMIT_1D = 31
#: Where `make bench` keeps every run's output until it ends (None: each run cleans up after itself).
OUT_ROOT: Path | None = None


@contextmanager
def run_dir() -> Iterator[str]:
    """A fresh output folder for one run. During `make bench` it is kept until the whole benchmark ends:
    ext4 makes creating files within minutes of deleting thousands cost several times the kernel time
    (it skips recently deleted inodes one by one), which would bill one run's clean-up to the next."""
    if OUT_ROOT is None:
        with tempfile.TemporaryDirectory() as tmp:
            yield tmp
    else:
        yield tempfile.mkdtemp(dir=OUT_ROOT)


# -- the fake API, in its own process ---------------------------------------------------------------
class FakeServer:
    """``python -m airflow_provider_openai_usage.testing serve`` in a child process."""

    def __init__(self, latency: float = 0.0, dense_groups: int = 0, seed: int = 11) -> None:
        self.args = [
            sys.executable, "-m", "airflow_provider_openai_usage.testing", "serve", "--key", KEY, "--now", str(NOW),
            "--seed", str(seed), "--latency", str(latency), "--dense-groups", str(dense_groups),
        ]

    def __enter__(self) -> FakeServer:
        self.proc = subprocess.Popen(self.args, stdout=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        # The server prints one "listening on URL" line when ready: wait on it, not on a sleep.
        for line in self.proc.stdout:
            if "listening on" in line:
                self.base_url = line.strip().rsplit(" ", 1)[1]
                break
        else:
            raise RuntimeError(f"fake API exited with {self.proc.wait()}")
        import requests

        self.session = requests.Session()
        return self

    def __exit__(self, *exc: object) -> None:
        self.session.close()
        self.proc.terminate()
        self.proc.wait()

    def requests_made(self, reset: bool = False) -> int:
        root = self.base_url.rsplit("/v1", 1)[0]
        return int(self.session.get(f"{root}/_fake/requests", params={"reset": "1"} if reset else {}).json()["requests"])


# -- contenders for one pull: 365 days of completions, 1d, grouped by project and model --------------
def _bench_connection(base_url: str) -> str:
    from airflow_provider_openai_usage.testing.data import FakeOrganization

    # The organization as a user sets it (the extra): the operator lands under it without asking the API.
    extra = {"organization_id": FakeOrganization().organization_id}
    os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "openai_usage", "host": base_url, "password": KEY, "extra": extra})
    return "bench"


def ours(base_url: str, start: int, end: int, bucket_width: str = "1d", group_by: list[str] | None = GROUP_BY,
         endpoint: str = "completions") -> int:
    """The hook alone: rows as dicts (no files)."""
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

    hook = OpenAIUsageHook(_bench_connection(base_url))
    try:
        return sum(1 for _ in hook.iter_rows(endpoint, start, end, bucket_width=bucket_width, group_by=group_by))
    finally:
        hook.close()


def ours_execute(base_url: str, start: int, end: int, out: Path, endpoint: str = "completions",
                 group_by: list[str] | None = GROUP_BY, parallel_requests: int | None = None) -> int:
    """The operator's ``execute``: typed, checked, one atomic Parquet partition per UTC day."""
    from airflow_provider_openai_usage.operators.usage import DEFAULT_PARALLEL_REQUESTS, OpenAIUsageOperator

    op = OpenAIUsageOperator(
        task_id=f"bench_{endpoint}", endpoint=endpoint, openai_usage_conn_id=_bench_connection(base_url),
        start_time=start, end_time=end, group_by=group_by, output_path=out.as_uri(),
        parallel_requests=parallel_requests or DEFAULT_PARALLEL_REQUESTS,
    )
    summary = op.execute(context={})  # type: ignore[arg-type]
    return int(summary["rows"])


#: Streams compared for the one pull (the operator's ``parallel_requests``; the default is among them).
STREAMS = (1, 2, 4)


def _execute_with(streams: int) -> Callable[..., int]:
    def run(base_url: str, start: int, end: int, out: Path) -> int:
        return ours_execute(base_url, start, end, out, parallel_requests=streams)

    run.__name__ = f"ours_execute_{streams}"
    run.writes = True  # type: ignore[attr-defined]
    return run


def ours_streams(base_url: str, start: int, end: int, streams: int) -> int:
    """The hook's pages in ``streams`` parts, as the operator asks for them, no files: what the network allows."""
    from airflow_provider_openai_usage.hooks.usage import PAGE_RESULTS, OpenAIUsageHook
    from airflow_provider_openai_usage.query import UsageQuery

    hook = OpenAIUsageHook(_bench_connection(base_url))
    query = UsageQuery.build("completions", start, end, bucket_width="1d", group_by=GROUP_BY, filters={})
    try:
        buckets = hook.iter_query_buckets(query, prefetch=True, page_results=PAGE_RESULTS, streams=streams)
        return sum(len(b["results"]) for b in buckets)
    finally:
        hook.close()


def dlt_rest_api(base_url: str, start: int, end: int, out: Path) -> int:
    """dlt's `rest_api` source: cursor paging with limit=31, Parquet into a local folder."""
    import dlt
    from dlt.sources.rest_api import rest_api_source

    source = rest_api_source({
        "client": {
            "base_url": base_url + "/",
            "auth": {"type": "bearer", "token": KEY},
            "paginator": {"type": "cursor", "cursor_path": "next_page", "cursor_param": "page"},
        },
        "resources": [{
            "name": "completions",
            "endpoint": {
                "path": "organization/usage/completions", "data_selector": "data",
                "params": {"start_time": start, "end_time": end, "limit": MAX_LIMIT_1D, "bucket_width": "1d", "group_by": GROUP_BY},
            },
        }],
    })
    pipeline = dlt.pipeline(
        pipeline_name=f"bench_{time.time_ns()}", pipelines_dir=str(out / "pipelines"), dataset_name="openai",
        destination=dlt.destinations.filesystem(bucket_url=(out / "files").as_uri()),
    )
    pipeline.run(source, loader_file_format="parquet")
    import pyarrow.parquet as pq

    return sum(pq.read_metadata(f).num_rows for f in (out / "files" / "openai" / "completions__results").glob("*.parquet"))


def _requests_pull(base_url: str, ranges: list[tuple[int, int]], limit: int | None) -> int:
    import requests

    rows = 0
    with requests.Session() as session:
        for start, end in ranges:
            params: dict[str, Any] = {"start_time": start, "end_time": end, "group_by": GROUP_BY}
            if limit:
                params["limit"] = limit
            while True:
                r = session.get(f"{base_url}/organization/usage/completions", params=params,
                                headers={"Authorization": f"Bearer {KEY}"}, timeout=60)
                r.raise_for_status()
                body = r.json()
                rows += sum(len(b["results"]) for b in body["data"])
                if not body["has_more"]:
                    break
                params = {**params, "page": body["next_page"]}
    return rows


def requests_whole_range(base_url: str, start: int, end: int) -> int:
    """A competent hand-written loop: one range, limit=31, next_page, kept-alive session (pull only)."""
    return _requests_pull(base_url, [(start, end)], MAX_LIMIT_1D)


def requests_daily(base_url: str, start: int, end: int) -> int:
    """The same function called once per day, default limit, as a day-by-day DAG runs it (pull only)."""
    return _requests_pull(base_url, [(d, d + DAY) for d in range(start, end, DAY)], None)


def _sdk_pull(base_url: str, ranges: list[tuple[int, int]], limit: int | None) -> int:
    from openai import OpenAI

    client = OpenAI(api_key="unused", admin_api_key=KEY, base_url=base_url, max_retries=2)
    rows = 0
    for start, end in ranges:
        page = None
        while True:
            kwargs: dict[str, Any] = {"start_time": start, "end_time": end, "group_by": GROUP_BY}
            if limit:
                kwargs["limit"] = limit
            if page:
                kwargs["page"] = page
            response = client.admin.organization.usage.completions(**kwargs)
            rows += sum(len(bucket.results) for bucket in response.data)
            if not response.has_more:
                break
            page = response.next_page
    client.close()
    return rows


def sdk_whole_range(base_url: str, start: int, end: int) -> int:
    """The official `openai` SDK over the whole range with limit=31 (pull only)."""
    return _sdk_pull(base_url, [(start, end)], MAX_LIMIT_1D)


def sdk_daily(base_url: str, start: int, end: int) -> int:
    """The SDK once per day, default limit (pull only)."""
    return _sdk_pull(base_url, [(d, d + DAY) for d in range(start, end, DAY)], None)


def measure(server: Any, fn: Callable[..., int], *args: Any, repeats: int = 1) -> dict[str, Any]:
    """One contender alone (used by the smoke test and by `interleaved`)."""
    runs = [_one_run(server, fn, args) for _ in range(repeats)]
    return _summary(runs)


def _one_run(server: Any, fn: Callable[..., int], args: tuple[Any, ...]) -> dict[str, Any]:
    server.requests_made(reset=True) if hasattr(server, "requests_made") else server.clear_requests()
    with run_dir() as tmp:
        extra = (Path(tmp),) if fn in (ours_execute, dlt_rest_api) or getattr(fn, "writes", False) else ()
        t, cpu = time.perf_counter(), time.process_time()
        rows = fn(server.base_url, *args, *extra)
        seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
    made = server.requests_made() if hasattr(server, "requests_made") else len(server.requests)
    # CPU seconds of this process (every thread; the fake API runs in its own process).
    return {"seconds": seconds, "requests": made, "rows": rows, "cpu": cpu}


def _summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    rows = {r["rows"] for r in runs}
    assert len(rows) == 1, f"a pull must return the same rows every time, got {rows}"
    times = [r["seconds"] for r in runs]
    return {
        "seconds": statistics.median(times), "min": min(times), "max": max(times),
        "requests": statistics.median(r["requests"] for r in runs), "rows": runs[0]["rows"],
        "cpu": statistics.median(r.get("cpu", 0.0) for r in runs),
    }


def interleaved(server: FakeServer, contenders: dict[str, tuple[Callable[..., int], tuple[Any, ...]]], repeats: int) -> dict[str, Any]:
    """A B C A B C ...: drift in the machine's load hits every contender alike."""
    for fn, args in contenders.values():  # warm-up: imports and first-use costs are not pull time
        _one_run(server, fn, args)
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in contenders}
    for _ in range(repeats):
        for name, (fn, args) in contenders.items():
            runs[name].append(_one_run(server, fn, args))
    return {name: _summary(r) for name, r in runs.items()}


# -- fresh process: hook → files, imports included -----------------------------------------------------
FRESH_PROBE = """
import json, os, sys, tempfile, time
t0 = time.perf_counter()
os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "openai_usage", "host": sys.argv[1], "password": sys.argv[2],
                                              "extra": {"organization_id": "org-FakeUsage7Fk3bQz9Mn2Lp5"}})  # the fake's, as a user sets it
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
t1 = time.perf_counter()
with tempfile.TemporaryDirectory() as tmp:
    op = OpenAIUsageOperator(task_id="t", endpoint="completions", openai_usage_conn_id="bench", start_time=int(sys.argv[3]),
                             end_time=int(sys.argv[4]), group_by=["project_id", "model"], output_path="file://" + tmp)
    rows = op.execute(context={})["rows"]
print(json.dumps({"rows": rows, "import": t1 - t0, "total": time.perf_counter() - t0}))
"""


def fresh_process(server: FakeServer, start: int, end: int, repeats: int) -> dict[str, float]:
    runs = []
    for _ in range(repeats):
        t = time.perf_counter()
        out = subprocess.run([sys.executable, "-c", FRESH_PROBE, server.base_url, KEY, str(start), str(end)],
                             capture_output=True, text=True, check=True)
        wall = time.perf_counter() - t
        runs.append({**json.loads(out.stdout.strip().splitlines()[-1]), "wall": wall})
    return {k: statistics.median(r[k] for r in runs) for k in ("import", "total", "wall")}


# -- every endpoint, a year each -----------------------------------------------------------------------
def all_endpoints(server: FakeServer, start: int, end: int, repeats: int) -> dict[str, Any]:
    from airflow_provider_openai_usage.endpoints import ENDPOINTS

    keys = sorted(ENDPOINTS)
    runs = []
    for _ in range(repeats):
        with run_dir() as tmp:
            server.requests_made(reset=True)
            t, cpu = time.perf_counter(), time.process_time()
            rows = sum(ours_execute(server.base_url, start, end, Path(tmp), endpoint=k, group_by=None) for k in keys)
            seconds, cpu = time.perf_counter() - t, time.process_time() - cpu
            files = sum(1 for p in Path(tmp).rglob("*") if p.is_file())
            days = sum(1 for _ in Path(tmp).glob("*/organization=*/date=*/data.*"))
            runs.append({"seconds": seconds, "rows": rows, "files": files, "days_written": days, "requests": server.requests_made(),
                         "cpu": cpu})
    times = [r["seconds"] for r in runs]
    return {"endpoints": len(keys), **runs[0], "seconds": statistics.median(times), "min": min(times), "max": max(times),
            "cpu": statistics.median(r["cpu"] for r in runs)}


# -- no request twice: the daily DAG's costs pull, then the FOCUS export from what it landed -----------------
def focus_requests(server: FakeServer, start: int, end: int) -> dict[str, int]:
    """Requests of a costs pull grouped as the daily DAG groups it, then of FOCUS from the landed costs."""
    from airflow_provider_openai_usage.endpoints import finops_group_by
    from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator

    with run_dir() as tmp:
        server.requests_made(reset=True)
        ours_execute(server.base_url, start, end, Path(tmp), endpoint="costs", group_by=finops_group_by("costs"))
        pull = server.requests_made(reset=True)
        OpenAIFocusOperator(
            task_id="focus", output_path=Path(tmp).as_uri(), openai_usage_conn_id=_bench_connection(server.base_url),
            start_time=start, end_time=end, source="landed", billing_account_name="Bench",
        ).execute(context={})  # type: ignore[arg-type]
        return {"pull_costs": pull, "focus_export": server.requests_made()}


# -- sinks: a year of costs + completions into files, Delta and Iceberg, fresh processes ------------------
SINK_PROBE = """
import json, os, sys, tempfile, time
os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "openai_usage", "host": sys.argv[1], "password": sys.argv[2],
                                              "extra": {"organization_id": "org-FakeUsage7Fk3bQz9Mn2Lp5"}})  # the fake's, as a user sets it
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
table_format = sys.argv[5] or None
if table_format == "delta":
    import deltalake  # noqa: F401 - imports are not write time
elif table_format == "iceberg":
    import pyiceberg.catalog.sql  # noqa: F401
def status(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))
baseline = status("VmRSS")
rows = 0
with tempfile.TemporaryDirectory() as tmp:
    t = time.perf_counter()
    for endpoint, group_by in (("costs", ["project_id", "line_item"]), ("completions", ["project_id", "model"])):
        op = OpenAIUsageOperator(task_id="t", endpoint=endpoint, openai_usage_conn_id="bench", start_time=int(sys.argv[3]),
                                 end_time=int(sys.argv[4]), group_by=group_by, output_path="file://" + tmp, table_format=table_format)
        rows += op.execute(context={})["rows"]
    seconds = time.perf_counter() - t
print(json.dumps({"rows": rows, "seconds": seconds, "over_baseline_mb": (status("VmHWM") - baseline) / 1024}))
"""
SINKS = ("files", "delta", "iceberg")


def sinks(server: FakeServer, start: int, end: int, repeats: int) -> dict[str, Any]:
    """Costs + completions over the range into each sink, interleaved, each run a fresh process (peak RSS its own)."""
    runs: dict[str, list[dict[str, Any]]] = {name: [] for name in SINKS}
    for _ in range(repeats):
        for name in SINKS:
            out = subprocess.run([sys.executable, "-c", SINK_PROBE, server.base_url, KEY, str(start), str(end),
                                  "" if name == "files" else name], capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"sink probe {name} failed:\n{out.stderr[-3000:]}")
            runs[name].append(json.loads(out.stdout.strip().splitlines()[-1]))
    out_figures = {}
    for name, r in runs.items():
        rows = {x["rows"] for x in r}
        assert len(rows) == 1, f"{name}: the same rows every time, got {rows}"
        times = [x["seconds"] for x in r]
        out_figures[name] = {"rows": r[0]["rows"], "seconds": statistics.median(times), "min": min(times), "max": max(times),
                             "over_baseline_mb": statistics.median(x["over_baseline_mb"] for x in r)}
    assert len({v["rows"] for v in out_figures.values()}) == 1, f"every sink lands the same rows: {out_figures}"
    return out_figures


# -- memory: one dense day of 1m buckets, fresh processes ------------------------------------------------
RSS_PROBE = """
import json, os, sys, tempfile
os.environ["AIRFLOW_CONN_BENCH"] = json.dumps({"conn_type": "openai_usage", "host": sys.argv[1], "password": sys.argv[2],
                                              "extra": {"organization_id": "org-FakeUsage7Fk3bQz9Mn2Lp5"}})  # the fake's, as a user sets it
import pyarrow, pyarrow.parquet, requests  # noqa: F401 - the import baseline includes what the pull uses
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook  # noqa: F401
from airflow_provider_openai_usage import storage, rows  # noqa: F401
def status(field):
    return next(int(line.split()[1]) for line in open("/proc/self/status") if line.startswith(field + ":"))
# Warm-up before the baseline: the first Parquet write pages ~60 MB of pyarrow's shared-library code into
# RSS whatever the data (measured with a 2-row table); that is not data held, so it is in the baseline.
import io, msgspec
pyarrow.parquet.write_table(pyarrow.table({"a": [1, 2]}), io.BytesIO(), compression="zstd")
msgspec.json.decode(b'{"a": 1.5}')
baseline = status("VmRSS")
now = int(sys.argv[3])
start, group_by, path = now - int(sys.argv[5]) * 86400, sys.argv[4].split(","), sys.argv[6]
if path == "operator":
    with tempfile.TemporaryDirectory() as tmp:
        op = OpenAIUsageOperator(task_id="t", endpoint="completions", openai_usage_conn_id="bench", start_time=start,
                                 end_time=now, bucket_width="1m", group_by=group_by, output_path="file://" + tmp)
        n = op.execute(context={})["rows"]
else:  # the hook's public path with default arguments, as a user's own @task calls it
    hook = OpenAIUsageHook("bench")
    if path == "iter_rows":
        n = sum(1 for _ in hook.iter_rows("completions", start, now, bucket_width="1m", group_by=group_by))
    else:
        n = sum(len(b["results"]) for b in hook.iter_buckets("completions", start, now, bucket_width="1m", group_by=group_by))
# VmHWM, not ru_maxrss: Linux keeps ru_maxrss across exec, so it would report the parent's size.
print(json.dumps({"rows": n, "baseline_kb": baseline, "hwm_kb": status("VmHWM")}))
"""


#: The public paths whose memory is bounded: the operator (into Parquet) and the hook's two iterators.
MEMORY_PATHS = ("operator", "iter_rows", "iter_buckets")


def peak_rss(groups: int, repeats: int, days: int = 1, path: str = "operator") -> dict[str, Any]:
    """Peak RSS over the import baseline of a fresh process pulling ``days`` of 1m completions through ``path``
    (``MEMORY_PATHS``: the operator into Parquet, or the hook's ``iter_rows``/``iter_buckets`` with default arguments)."""
    from airflow_provider_openai_usage.endpoints import ENDPOINTS

    dims = ",".join(c.name for c in ENDPOINTS["completions"].dimensions)
    runs = []
    with FakeServer(dense_groups=groups) as server:
        for _ in range(repeats):
            out = subprocess.run([sys.executable, "-c", RSS_PROBE, server.base_url, KEY, str(NOW), dims, str(days), path],
                                 capture_output=True, text=True)
            if out.returncode:
                raise RuntimeError(f"memory probe failed:\n{out.stderr[-3000:]}")
            runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
    over = [(r["hwm_kb"] - r["baseline_kb"]) / 1024 for r in runs]
    return {"path": path, "groups": groups, "days": days, "rows": runs[0]["rows"], "over_baseline_mb": statistics.median(over),
            "baseline_mb": statistics.median(r["baseline_kb"] for r in runs) / 1024}


# -- rows per second, bytes → Parquet, JSON decoding included -----------------------------------------
def page_bytes(days: int, groups: int) -> list[bytes]:
    """The API's own pages (1h buckets, 168 per page) as bytes, from the fake's encoder."""
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

    pages = []
    with FakeOpenAIUsageAPI(key=KEY, seed=11, now=NOW) as api:
        api.controls.dense_groups = groups
        import requests

        with requests.Session() as s:
            params: dict[str, Any] = {"start_time": NOW - days * DAY, "end_time": NOW, "bucket_width": "1h", "limit": 168}
            while True:
                r = s.get(f"{api.base_url}/organization/usage/completions", params=params, headers={"Authorization": f"Bearer {KEY}"})
                r.raise_for_status()
                pages.append(r.content)
                body = r.json()
                if not body["has_more"]:
                    return pages
                params["page"] = body["next_page"]


def bytes_to_parquet_ours(pages: list[bytes], days: int, out: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.hooks import usage as hook_module
    from airflow_provider_openai_usage.query import UsageQuery
    from airflow_provider_openai_usage.storage import PartitionWriter

    query = UsageQuery.build("completions", NOW - days * DAY, NOW, bucket_width="1h")
    writer = PartitionWriter(ObjectStoragePath(out.as_uri()), query.endpoint, "parquet")

    decode_page = getattr(hook_module, "decode_page", None)

    def buckets() -> Iterator[Any]:
        for body in pages:
            if decode_page is not None:
                yield from decode_page(query, body)["data"]
            else:  # the hook's JSON decoding before decode_page existed
                from decimal import Decimal

                yield from json.loads(body, parse_float=Decimal)["data"]

    for _ in writer.write(query, buckets()):
        pass


def bytes_to_parquet_pandas(pages: list[bytes], days: int, out: Path) -> None:
    """Baseline: json.loads + pandas.json_normalize + to_parquet per day, same codec (zstd)."""
    import pandas as pd

    by_day: dict[int, list[dict]] = {}
    for body in pages:
        for bucket in json.loads(body)["data"]:
            by_day.setdefault(bucket["start_time"] // DAY, []).append(bucket)
    for day, day_buckets in by_day.items():
        frame = pd.json_normalize(day_buckets, record_path="results", meta=["start_time", "end_time"])
        target = out / f"date={day}"
        target.mkdir(parents=True, exist_ok=True)
        frame.to_parquet(target / "part.parquet", compression="zstd")


def rows_per_second(fns: dict[str, Callable[[list[bytes], int, Path], None]], pages: list[bytes], days: int, repeats: int) -> dict[str, Any]:
    rows = sum(len(b["results"]) for p in pages for b in json.loads(p)["data"])
    small = page_bytes(1, 2)
    times: dict[str, list[float]] = {name: [] for name in fns}
    for fn in fns.values():  # warm-up
        with run_dir() as tmp:
            fn(small, 1, Path(tmp))
    for _ in range(repeats):
        for name, fn in fns.items():
            with run_dir() as tmp:
                t = time.perf_counter()
                fn(pages, days, Path(tmp))
                times[name].append(time.perf_counter() - t)
    return {"rows": rows, **{name: rows / statistics.median(ts) for name, ts in times.items()}}


def import_seconds(statement: str, repeats: int) -> float:
    times = []
    for _ in range(repeats):
        t = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


# -- the run -----------------------------------------------------------------------------------------
def run(latency: float, repeats: int, smoke: bool) -> dict[str, Any]:
    days = 40 if smoke else 365
    start = NOW - days * DAY
    from airflow_provider_openai_usage.operators.usage import DEFAULT_PARALLEL_REQUESTS

    f: dict[str, Any] = {"days": days, "latency": latency, "repeats": repeats, "minimum_requests": math.ceil(days / MAX_LIMIT_1D),
                         "parallel_requests": DEFAULT_PARALLEL_REQUESTS}
    import openai  # noqa: F401 - imports are paid before timing
    import requests  # noqa: F401

    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator  # noqa: F401

    with FakeServer(latency=latency) as server:
        f["pull"] = interleaved(server, {
            "ours_execute": (ours_execute, (start, NOW)),
            "ours_hook": (ours, (start, NOW)),
            "dlt": (dlt_rest_api, (start, NOW)),
            "requests_whole": (requests_whole_range, (start, NOW)),
            "sdk_whole": (sdk_whole_range, (start, NOW)),
        }, repeats)
        f["streams"] = interleaved(server, {
            **{f"execute_{n}": (_execute_with(n), (start, NOW)) for n in STREAMS},
            **{f"hook_{n}": (ours_streams, (start, NOW, n)) for n in STREAMS},
        }, repeats)
        f["daily_loops"] = interleaved(server, {
            "requests_daily": (requests_daily, (start, NOW)),
            "sdk_daily": (sdk_daily, (start, NOW)),
        }, 1 if smoke else max(1, repeats // 3) + (repeats >= 3))
        f["fresh_process"] = fresh_process(server, start, NOW, repeats)
        for width, per_page, seconds in (("1h", 168, 3600), ("1m", 1440, 60)):
            server.requests_made(reset=True)
            ours(server.base_url, NOW - 7 * DAY, NOW, bucket_width=width, group_by=None)
            f[f"requests_7d_{width}"] = {"ours": server.requests_made(), "minimum": math.ceil(7 * DAY / seconds / per_page)}
        f["all_endpoints"] = all_endpoints(server, start, NOW, 1 if smoke else repeats)
        f["focus_requests"] = focus_requests(server, start, NOW)
        f["sinks"] = sinks(server, start, NOW, 1 if smoke else repeats)
    if smoke:
        return f
    f["memory"] = {"1x": peak_rss(50, repeats), "5x": peak_rss(250, repeats), "1x_3days": peak_rss(50, repeats, days=3)}
    f["memory_paths"] = {path: {"1x": peak_rss(50, repeats, path=path), "5x": peak_rss(250, repeats, path=path)}
                         for path in MEMORY_PATHS if path != "operator"}
    pages = page_bytes(days=7, groups=1000)
    f["rows_per_second"] = rows_per_second({"ours": bytes_to_parquet_ours, "pandas": bytes_to_parquet_pandas}, pages, 7, repeats)
    f["import"] = {
        "airflow.sdk": import_seconds("import airflow.sdk", 5),
        "ours": import_seconds("import airflow_provider_openai_usage.operators.usage, airflow_provider_openai_usage.sensors.usage", 5),
    }
    return f


def verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def _spread(s: dict[str, Any]) -> str:
    return f"{s['seconds']:.2f} s ({s['min']:.2f}–{s['max']:.2f})"


def report(f: dict[str, Any]) -> str:
    p = f["pull"]
    ours_x, dlt, daily = p["ours_execute"], p["dlt"], f["daily_loops"]
    mem, rps, imp, every = f["memory"], f["rows_per_second"], f["import"], f["all_endpoints"]
    dlt_ratio = ours_x["seconds"] / dlt["seconds"]
    mem_ratio = mem["5x"]["over_baseline_mb"] / mem["1x"]["over_baseline_mb"]
    rows_ratio = rps["ours"] / rps["pandas"]
    import_ratio = imp["ours"] / imp["airflow.sdk"]
    # Requests one after another would wait requests x latency; the operator keeps `parallel_requests` in flight.
    parallel = f.get("parallel_requests", 1)
    latency_floor = every["requests"] * f["latency"] / parallel
    per_file_ms = max(0.0, every["seconds"] - latency_floor) / every["files"] * 1000
    latency = f["latency"]
    loop = p["requests_whole"]
    loop_ratio = ours_x["seconds"] / loop["seconds"]
    streams_floor = math.ceil(ours_x["requests"] / parallel) * latency  # each stream's requests, one after another
    floor_ratio = ours_x["seconds"] / streams_floor if streams_floor else float("inf")
    cpu_per_day_ms = every["cpu"] / max(1, every["days_written"]) * 1000
    paths = f["memory_paths"]
    path_rows = [("operator", mem["1x"], mem["5x"])] + [(name, m["1x"], m["5x"]) for name, m in paths.items()]
    path_ok = all(one["over_baseline_mb"] <= 60 and five["over_baseline_mb"] <= 1.5 * max(one["over_baseline_mb"], 1e-9)
                  for _, one, five in path_rows)
    path_text = "; ".join(f"`{name}` {one['over_baseline_mb']:.0f} → {five['over_baseline_mb']:.0f} MB" for name, one, five in path_rows)
    fr = f["focus_requests"]
    st = f["streams"]
    stream_lines = [
        f"| {n} | {math.ceil(ours_x['requests'] / n) * latency:.2f} s | {_spread(st[f'hook_{n}'])} | {_spread(st[f'execute_{n}'])} | "
        f"{st[f'execute_{n}']['cpu']:.2f} s |"
        for n in STREAMS
    ]
    lines = [
        "# Performance",
        "",
        f"Generated by `make bench` on {dt.date.today().isoformat()}: {platform.platform()}, {os.cpu_count()} cores, "
        f"Python {platform.python_version()}. The fake API runs in its own process with {f['latency'] * 1000:.0f} ms injected "
        f"latency per request (TCP_NODELAY, one write per response). Contenders are interleaved; each figure is the median "
        f"of {f['repeats']} runs with the spread (min–max) in brackets, measured side by side in one run. Every run writes "
        "into a folder of its own, deleted only when the benchmark ends (ext4 bills creating files soon after deleting "
        "thousands to whoever creates them; see `run_dir`).",
        "",
        f"## One pull: {f['days']} days of completions, 1d buckets, grouped by project and model",
        "",
        "| contender | what it does | requests | wall time |",
        "|---|---|---|---|",
        f"| **ours, `execute`** | typed, checked, one atomic Parquet partition per UTC day | {ours_x['requests']:.0f} | {_spread(ours_x)} |",
        f"| ours, hook only | rows as dicts, no files | {p['ours_hook']['requests']:.0f} | {_spread(p['ours_hook'])} |",
        f"| dlt 1.31 `rest_api` | cursor paging, limit=31, Parquet to a local folder (no day partitions, inferred types) | {dlt['requests']:.0f} | {_spread(dlt)} |",
        f"| hand-written `requests` | whole range, limit=31, `next_page`, kept-alive session; pull only | {p['requests_whole']['requests']:.0f} | {_spread(p['requests_whole'])} |",
        f"| `openai` SDK | whole range, limit=31; pull only | {p['sdk_whole']['requests']:.0f} | {_spread(p['sdk_whole'])} |",
        f"| `requests`, once per day | default limit, as a day-by-day DAG runs it; pull only | {daily['requests_daily']['requests']:.0f} | {_spread(daily['requests_daily'])} |",
        f"| `openai` SDK, once per day | default limit; pull only | {daily['sdk_daily']['requests']:.0f} | {_spread(daily['sdk_daily'])} |",
        "",
        f"Fresh process (imports included, `execute` into files): {f['fresh_process']['total']:.2f} s, of which "
        f"{f['fresh_process']['import']:.2f} s is importing the operator (Airflow's task SDK); the hook subclasses Airflow's "
        "`BaseHook`, so there is no Airflow-free path — a Python process that already has Airflow loaded (a worker) pays only the warm figure.",
        "",
        f"## Streams: the same pull in 1, {', '.join(map(str, STREAMS[1:]))} parts (`parallel_requests`; default {parallel})",
        "",
        "The network floor of n streams is each stream's share of the requests, one after another, at the injected latency. "
        "`hook` pages the parts as the operator does and writes nothing; `execute` also writes 365 day files; CPU is this "
        "process's (every thread), the fake API's is not in it.",
        "",
        "| streams | network floor | hook, no files | `execute` | `execute` CPU |",
        "|---|---|---|---|---|",
        *stream_lines,
        "",
        "## Goals",
        "",
        "| goal | measured | verdict |",
        "|---|---|---|",
        f"| {f['days']}-day pull, warm `execute` into files ≤ 0.6× the hand-written whole-range loop | {loop_ratio:.2f}× "
        f"({ours_x['seconds']:.2f} s vs {loop['seconds']:.2f} s) | {verdict(loop_ratio <= 0.6)} |",
        f"| the same ≤ 1.3× the network floor of the {parallel} streams used | {floor_ratio:.2f}× ({ours_x['seconds']:.2f} s vs "
        f"{streams_floor:.2f} s) | {verdict(floor_ratio <= 1.3)} |",
        f"| all {every['endpoints']} endpoints × {f['days']} days, warm `execute`, ≤ 5 s | {_spread(every)}; {every['cpu']:.2f} CPU s, "
        f"{cpu_per_day_ms:.2f} ms CPU per day written ({every['days_written']:,} days) | {verdict(every['seconds'] <= 5)} |",
        f"| peak RSS ≤ +60 MB on every public path (one day of 1m completions by every dimension), ≤ 1.5× that at 5× the groups | "
        f"{path_text} | {verdict(path_ok)} |",
        f"| no request twice: FOCUS from the landed costs (daily DAG) | costs pull {fr['pull_costs']} requests, FOCUS export "
        f"{fr['focus_export']} | {verdict(fr['focus_export'] == 0)} |",
        *_sinks_goal(f),
        f"| same pull as dlt: our warm `execute` ≤ 0.8× dlt's run, same request count | {dlt_ratio:.2f}× "
        f"({ours_x['seconds']:.2f} s vs {dlt['seconds']:.2f} s; {ours_x['requests']:.0f} vs {dlt['requests']:.0f} requests) | "
        f"{verdict(dlt_ratio <= 0.8 and ours_x['requests'] <= dlt['requests'])} |",
        f"| requests: the minimum ({f['minimum_requests']}) for {f['days']} daily buckets | {ours_x['requests']:.0f} | {verdict(ours_x['requests'] == f['minimum_requests'])} |",
        f"| requests, 7 days of 1h / 1m buckets: the minimum | {f['requests_7d_1h']['ours']} / {f['requests_7d_1m']['ours']} "
        f"(minimum {f['requests_7d_1h']['minimum']} / {f['requests_7d_1m']['minimum']}) | "
        f"{verdict(f['requests_7d_1h']['ours'] == f['requests_7d_1h']['minimum'] and f['requests_7d_1m']['ours'] == f['requests_7d_1m']['minimum'])} |",
        f"| all {every['endpoints']} endpoints × {f['days']} days, warm `execute`, ≤ 8 s | {_spread(every)}; {every['requests']} requests "
        f"(network floor {latency_floor:.1f} s at {parallel} requests in flight), {every['files']:,} files, ≈{per_file_ms:.2f} ms "
        f"per file beyond it | {verdict(every['seconds'] <= 8)} |",
        f"| peak RSS over the import baseline (imports plus a first 2-row Parquet write: pyarrow's code pages are not data), one day of "
        f"1m completions grouped by every dimension ({mem['1x']['rows']:,} rows), ≤ 60 MB | "
        f"{mem['1x']['over_baseline_mb']:.0f} MB | {verdict(mem['1x']['over_baseline_mb'] <= 60)} |",
        f"| the same over 3 days ({mem['1x_3days']['rows']:,} rows): flat in days | {mem['1x_3days']['over_baseline_mb']:.0f} MB, "
        f"{mem['1x_3days']['over_baseline_mb'] / mem['1x']['over_baseline_mb']:.2f}× one day | "
        f"{verdict(mem['1x_3days']['over_baseline_mb'] <= 1.5 * mem['1x']['over_baseline_mb'])} |",
        f"| the same at 5× the groups ({mem['5x']['rows']:,} rows), ≤ 1.5× | {mem['5x']['over_baseline_mb']:.0f} MB, {mem_ratio:.2f}× | {verdict(mem_ratio <= 1.5)} |",
        f"| rows/s, page bytes → Parquet incl. JSON decoding ({rps['rows']:,} rows), ≥ 5× `json.loads` + `pandas.json_normalize` + "
        f"`to_parquet` (zstd both) | {rps['ours']:,.0f} vs {rps['pandas']:,.0f}: {rows_ratio:.1f}× | {verdict(rows_ratio >= 5)} |",
        f"| import of operators + sensors, fresh interpreter, ≤ 1.10× `import airflow.sdk` | {imp['ours']:.2f} s vs {imp['airflow.sdk']:.2f} s: "
        f"{import_ratio:.2f}× | {verdict(import_ratio <= 1.10)} |",
        "",
        *_sinks_report(f),
        *MISSES_PLACEHOLDER,
        "Raw figures:",
        "",
        "```json",
        json.dumps(f, indent=2, default=str),
        "```",
        "",
    ]
    return "\n".join(lines)


def _sinks_goal(f: dict[str, Any]) -> list[str]:
    """The goals-table row of the table sinks (issue #28): each ≤ 1.5× the time into files."""
    if "sinks" not in f:
        return ["| a year of costs + completions into Delta / Iceberg ≤ 1.5× into files | not measured in this run | **missed** |"]
    s = f["sinks"]
    ratios = {name: s[name]["seconds"] / s["files"]["seconds"] for name in ("delta", "iceberg")}
    text = "; ".join(f"{name} {ratios[name]:.2f}× ({s[name]['over_baseline_mb']:.0f} MB peak)" for name in ratios)
    return [f"| {f['days']} days of costs + completions into Delta / Iceberg ≤ 1.5× into files | {text} | "
            f"{verdict(all(r <= 1.5 for r in ratios.values()))} |"]


def _sinks_report(f: dict[str, Any]) -> list[str]:
    if "sinks" not in f:
        return []
    s = f["sinks"]
    files = s["files"]
    lines = [
        f"## Sinks: {f['days']} days of costs + completions into files, Delta and Iceberg (fresh process each, interleaved)",
        "",
        "| sink | rows | wall time | × files | peak RSS over the import baseline | goal ≤ 1.5× files |",
        "|---|---|---|---|---|---|",
    ]
    for name in SINKS:
        ratio = s[name]["seconds"] / files["seconds"]
        goal = "" if name == "files" else verdict(ratio <= 1.5)
        lines.append(f"| {name} | {s[name]['rows']:,} | {_spread(s[name])} | {ratio:.2f}× | {s[name]['over_baseline_mb']:.0f} MB | {goal} |")
    return [*lines, ""]


#: Filled in by hand after a run when a goal is missed: the measured reason (see docs/performance.md).
MISSES_PLACEHOLDER: list[str] = []


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--latency", type=float, default=0.05)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="tiny sizes, print figures, write nothing")
    args = parser.parse_args(argv)
    global OUT_ROOT
    home = tempfile.mkdtemp(prefix="bench-airflow-")
    OUT_ROOT = Path(tempfile.mkdtemp(prefix="bench-output-"))
    os.environ["AIRFLOW_HOME"] = home
    os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
    os.environ.setdefault("RUNTIME__LOG_LEVEL", "WARNING")  # dlt's own logging
    try:
        figures = run(args.latency, args.repeats, args.smoke)
    finally:
        shutil.rmtree(home, ignore_errors=True)
        shutil.rmtree(OUT_ROOT, ignore_errors=True)
    if args.smoke:
        print(json.dumps(figures, indent=2, default=str))
        return 0
    text = report(figures)
    (REPO / "docs" / "performance.md").write_text(text)
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
