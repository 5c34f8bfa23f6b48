"""Finance numbers are right or loudly absent: faults, concurrency, drift, bad input, secrets."""

from __future__ import annotations

import hashlib
import importlib.util
import json
import os
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pendulum
import pytest
from conftest import DAY, NOW, SENTINEL_KEY, ORG_DIR

from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

REPO = Path(__file__).resolve().parents[2]
spec = importlib.util.spec_from_file_location("soak", REPO / "benchmarks" / "soak.py")
soak = importlib.util.module_from_spec(spec)
sys.modules["soak"] = soak  # dataclasses look their module up
spec.loader.exec_module(soak)


def test_fault_soak_small(tmp_path):
    runner = soak.Soak(tmp_path)
    try:
        result = runner.run(range(40))
    finally:
        runner.close()
    assert result.schedules == 40
    assert result.lost_or_mixed == 0 and result.unclear_errors == 0 and result.temp_files_left == 0, result.examples
    assert result.identical > 0 and result.clean_failures > 0, "the sample must exercise both outcomes"
    assert set(result.by_width) == {"1d", "1h", "1m"}
    assert result.retry_after_waits > 0 and result.retry_after_too_early == 0, "Retry-After is waited for, for real"
    assert result.identical + result.clean_failures == 40


# -- concurrency ------------------------------------------------------------------------------------
WRITER = textwrap.dedent(
    """
    import os, sys, pendulum
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
    out, conn = sys.argv[1], sys.argv[2] or None
    op = OpenAIUsageOperator(task_id="w", endpoint="completions", group_by=["project_id", "model"], output_path=out, output_conn_id=conn)
    op.execute({"data_interval_start": pendulum.from_timestamp(int(sys.argv[3]), tz="UTC"),
                "data_interval_end": pendulum.from_timestamp(int(sys.argv[4]), tz="UTC")})
    """
)


def run_two_writers_at_once(fake_api, out: str, conn: str, start: int, end: int) -> None:
    """Two real processes pull and write the same interval; their first requests meet at a barrier,
    so both are provably mid-range at the same time."""
    barrier = threading.Barrier(2)

    def hold_first_pages(_count: int, request) -> None:
        if "page" not in request.params():
            barrier.wait(timeout=120)

    fake_api.after_request = hold_first_pages
    try:
        procs = [
            subprocess.Popen([sys.executable, "-c", WRITER, out, conn, str(start), str(end)], env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE)
            for _ in range(2)
        ]
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-3000:]
    finally:
        fake_api.after_request = None
    assert not barrier.broken


def test_two_processes_writing_the_same_interval_leave_one_complete_partition_per_day_file(fake_api, conn_id, tmp_path):
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

    start = NOW - 5 * DAY
    fake_api.controls.page_size_cap = 1
    run_two_writers_at_once(fake_api, str(tmp_path / "concurrent"), "", start, NOW)
    ctx = {"data_interval_start": pendulum.from_timestamp(start, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    OpenAIUsageOperator(task_id="r", endpoint="completions", group_by=["project_id", "model"], output_path=str(tmp_path / "single")).execute(ctx)
    assert soak.tree(tmp_path / "concurrent") == soak.tree(tmp_path / "single")


def test_two_processes_writing_the_same_interval_to_s3(fake_api, conn_id, s3_bucket, moto_server):
    import boto3
    import pyarrow as pa
    import pyarrow.parquet as pq

    fake_api.controls.page_size_cap = 1
    run_two_writers_at_once(fake_api, f"s3://{s3_bucket}/c", "moto_s3", NOW - 3 * DAY, NOW)
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    all_keys = sorted(o["Key"] for o in s3.list_objects_v2(Bucket=s3_bucket)["Contents"])
    keys = [k for k in all_keys if "/_openai_usage/" not in k]
    assert len(keys) == 3 and all(k.endswith("/data.parquet") for k in keys)
    assert not [k for k in all_keys if "/_openai_usage/tmp/" in k], "no temporary object left"
    for key, day_start in zip(keys, range(NOW - 3 * DAY, NOW, DAY)):
        table = pq.read_table(pa.BufferReader(s3.get_object(Bucket=s3_bucket, Key=key)["Body"].read()))
        expected = list(OpenAIUsageHook(conn_id).iter_rows("completions", day_start, day_start + DAY, group_by=["project_id", "model"]))
        assert table.num_rows == len(expected)


# -- secrets ----------------------------------------------------------------------------------------
def test_the_key_never_leaves_the_connection_in_a_real_run(fake_api, conn_id, airflow_db, tmp_path):
    out = tmp_path / "out"
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "OPENAI_USAGE_OUTPUT_PATH": out.as_uri(),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}
    run = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "openai_usage_daily", "2025-11-10"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    assert "Pulling costs" in run.stdout + run.stderr, "the grep must see the task logs"
    # Airflow's own supervisor echoes every MaskSecret request at DEBUG level under `dags test`
    # (an upstream behaviour, reported in our notes); every other line must be clean.
    leaking = [line for line in (run.stdout + run.stderr).splitlines() if SENTINEL_KEY in line]
    assert all("supervisor.py" in line and "MaskSecret(value=" in line for line in leaking), leaking[:3]
    produced = [p for root in (Path(os.environ["AIRFLOW_HOME"]), out) for p in root.rglob("*") if p.is_file()]
    assert any(p.suffix == ".parquet" for p in produced) and any(p.name == "airflow.db" for p in produced)
    leaks = [str(p) for p in produced if SENTINEL_KEY.encode() in p.read_bytes()]
    assert leaks == [], "XCom, rendered fields, trigger kwargs, logs and files live here"


# -- concurrent part-day merges on an object store (#26 item 1) ----------------------------------------
HALF_WRITER = textwrap.dedent(
    """
    import sys, pendulum
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
    out, conn, fmt, start, end = sys.argv[1], sys.argv[2] or None, sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
    op = OpenAIUsageOperator(task_id="w", endpoint="completions", bucket_width="1h", group_by=["project_id", "model"],
                             output_path=out, output_conn_id=conn, file_format=fmt)
    op.execute({"data_interval_start": pendulum.from_timestamp(start, tz="UTC"),
                "data_interval_end": pendulum.from_timestamp(end, tz="UTC")})
    """
)


@pytest.mark.parametrize("file_format", ["parquet", "csv"])
def test_two_processes_merging_two_halves_of_one_day_on_s3_lose_neither(fake_api, conn_id, s3_bucket, moto_server, tmp_path, file_format):
    """Both processes read the day before either writes (a pause point holds each after its merge is
    staged until both got there), so without conditional writes one half is lost every time."""
    import boto3

    from airflow_provider_openai_usage.storage.days import PAUSE_ENV
    from airflow_provider_openai_usage.storage.formats import read_table
    from airflow_provider_openai_usage.storage.usage import arrow_schema
    from airflow_provider_openai_usage.endpoints import ENDPOINTS

    day = NOW - 2 * DAY
    out = f"s3://{s3_bucket}/m"
    whole = subprocess.run([sys.executable, "-c", HALF_WRITER, out, "moto_s3", file_format, str(day), str(day + DAY)],
                           env=os.environ.copy(), capture_output=True)
    assert whole.returncode == 0, whole.stderr.decode()[-3000:]
    fake_api.controls.revisions[day] = 1  # the day is revised: both halves change
    gate = tmp_path / "gate"
    gate.mkdir()
    env = {**os.environ, PAUSE_ENV: f"merge-staged={gate}"}
    procs = [
        subprocess.Popen([sys.executable, "-c", HALF_WRITER, out, "moto_s3", file_format, str(a), str(b)], env=env,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        for a, b in ((day, day + DAY // 2), (day + DAY // 2, day + DAY))
    ]
    try:
        from services import wait_until

        wait_until(lambda: len(list(gate.glob("*.reached"))) == 2 or any(p.poll() is not None for p in procs),
                   timeout=120, what="both merges staged")
        (gate / "go").touch()
        for p in procs:
            _, err = p.communicate(timeout=300)
            assert p.returncode == 0, err.decode()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert len(list(gate.glob("*.reached"))) == 2, "both writers held their merge at the same time"
    s3 = boto3.client("s3", endpoint_url=moto_server, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")
    label = pendulum.from_timestamp(day, tz="UTC").format("YYYY-MM-DD")
    data = s3.get_object(Bucket=s3_bucket, Key=f"m/completions/{ORG_DIR}/date={label}/data.{file_format}")["Body"].read()
    manifest = json.loads(s3.get_object(Bucket=s3_bucket, Key=f"m/completions/{ORG_DIR}/_openai_usage/manifests/date={label}.json")["Body"].read())
    endpoint = ENDPOINTS["completions"]
    table = read_table(data, file_format, arrow_schema(endpoint))
    expected = list(OpenAIUsageHook(conn_id).iter_rows("completions", day, day + DAY, bucket_width="1h", group_by=["project_id", "model"]))
    assert table.num_rows == len(expected)
    assert sum(table.column("input_tokens").to_pylist()) == sum(r["input_tokens"] for r in expected)
    assert manifest["sha256"] == hashlib.sha256(data).hexdigest(), "the manifest describes the file"
    assert manifest["covered"] == [[day, day + DAY]] and manifest["rows"] == table.num_rows


def test_keys_in_directory_answers_are_scrubbed_in_a_real_run_and_never_block_the_snapshot(fake_api, conn_id, airflow_db, tmp_path):
    """#26 item 12 under `airflow dags test`: answers carry full keys (a project key's redacted_value,
    the admin key list's own key, a key pasted into a project's id), and a member named a key like a
    key. The run succeeds, the directory lands, and no full key reaches any output line or file."""
    import re

    fake_api.api.admin.leak_full_key = True
    pasted = "sk-proj-" + "Zq9x" * 12
    projects = fake_api.api.admin.directory.objects("projects")
    keys = fake_api.api.admin.directory.objects("project_api_keys", projects[0]["id"])
    fake_api.api.admin.edits[keys[-1]["id"]] = {"id": pasted}
    fake_api.api.admin.edits[keys[0]["id"]] = {"name": "sk-proj-backend-prod-service-key"}
    out = tmp_path / "out"
    env = {**os.environ, "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"), "OPENAI_USAGE_OUTPUT_PATH": out.as_uri(),
           "AIRFLOW__LOGGING__LOGGING_LEVEL": "DEBUG"}
    run = subprocess.run([sys.executable, "-m", "airflow", "dags", "test", "openai_usage_daily", "2025-11-10"], capture_output=True, text=True, env=env, timeout=600)
    assert run.returncode == 0, run.stderr[-3000:]
    output = run.stdout + run.stderr
    full = re.compile(r"sk-proj-[0-9a-f]{40}|" + re.escape(pasted))
    assert "held what looks like a full API key" in output, "the scrub is reported"
    assert not full.findall(output), [line for line in output.splitlines() if full.search(line)][:3]
    leaking = [line for line in output.splitlines() if SENTINEL_KEY in line]
    assert all("supervisor.py" in line and "MaskSecret(value=" in line for line in leaking), leaking[:3]
    produced = [p for root in (Path(os.environ["AIRFLOW_HOME"]), out) for p in root.rglob("*") if p.is_file()]
    assert [p for p in produced if SENTINEL_KEY.encode() in p.read_bytes() or full.search(p.read_bytes().decode(errors="replace"))] == []
    snapshot = list((out / "directory" / "project_api_keys" / ORG_DIR).rglob("data.*"))
    assert snapshot and any(b"sk-proj-backend-prod-service-key" in p.read_bytes() for p in snapshot)
