"""Delta and Iceberg tables for real: two processes merging overlapping parts of one day at once (local
disk and moto's S3 server), kill -9 at each commit step, and engines we did not write reading them back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from decimal import Decimal
from pathlib import Path

import pytest
from conftest import DAY, NOW
from table_support import TABLE_FORMATS, canonical_rows, file_rows_by_day, read_table, rows_by_day

from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

WRITER = textwrap.dedent(
    """
    import json, sys, pendulum
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
    out, conn, fmt = sys.argv[1], sys.argv[2] or None, sys.argv[3]
    start, end, extra = int(sys.argv[4]), int(sys.argv[5]), json.loads(sys.argv[6])
    op = OpenAIUsageOperator(task_id="w", endpoint="completions", bucket_width="1h", group_by=["project_id", "model"],
                             output_path=out, output_conn_id=conn, table_format=fmt, **extra)
    op.execute({"data_interval_start": pendulum.from_timestamp(start, tz="UTC"),
                "data_interval_end": pendulum.from_timestamp(end, tz="UTC")})
    """
)
D = NOW - 2 * DAY


def writer(out: str, conn: str, fmt: str, start: int, end: int, env: dict | None = None, **extra) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-c", WRITER, out, conn, fmt, str(start), str(end), json.dumps(extra)],
        env=env or os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )


def finish(proc: subprocess.Popen) -> subprocess.CompletedProcess:
    out, err = proc.communicate(timeout=300)
    return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def expected_rows(conn_id: str, start: int, end: int) -> list[dict]:
    return list(OpenAIUsageHook(conn_id).iter_rows("completions", start, end, bucket_width="1h", group_by=["project_id", "model"]))


def merge_at_once(out: str, conn: str, fmt: str, gate: Path, windows, per_process=None, **extra) -> None:
    """Each window in its own process (``per_process``: each its own operator arguments too); both
    hold after reading and merging the day (the pause point) until both got there, so without
    conflict detection one part is lost every time."""
    from services import wait_until

    from airflow_provider_openai_usage.storage.days import PAUSE_ENV

    gate.mkdir()
    env = {**os.environ, PAUSE_ENV: f"table-merged={gate}"}
    own = per_process or [{} for _ in windows]
    procs = [writer(out, conn, fmt, a, b, env, **extra, **mine) for (a, b), mine in zip(windows, own, strict=True)]
    try:
        wait_until(lambda: len(list(gate.glob("*.reached"))) == 2 or any(p.poll() is not None for p in procs),
                   timeout=120, what="both merges read")
        (gate / "go").touch()
        for p in procs:
            done = finish(p)
            assert done.returncode == 0, done.stderr.decode()[-3000:]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
    assert len(list(gate.glob("*.reached"))) == 2, "both writers held a merged day at the same time"


@pytest.mark.parametrize("table_format", TABLE_FORMATS)
def test_two_processes_merging_overlapping_parts_of_one_day_lose_nothing_and_double_nothing(fake_api, conn_id, tmp_path, table_format):
    out = tmp_path / "lake"
    first = finish(writer(str(out), "", table_format, D, D + DAY))
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    fake_api.controls.revisions[D] = 1  # the day is revised: both parts change
    merge_at_once(str(out), "", table_format, tmp_path / "gate", ((D, D + 14 * 3600), (D + 10 * 3600, D + DAY)))
    table = read_table(out, table_format, "completions")
    expected = expected_rows(conn_id, D, D + DAY)
    assert table.num_rows == len(expected)
    assert sum(table.column("input_tokens").to_pylist()) == sum(r["input_tokens"] for r in expected)
    assert sorted(int(t.timestamp()) for t in table.column("start_time").to_pylist()) == sorted(r["start_time"] for r in expected)


@pytest.mark.parametrize("table_format", TABLE_FORMATS)
def test_two_processes_merging_two_halves_of_one_day_on_s3_lose_neither(
    fake_api, conn_id, s3_bucket, moto_server, tmp_path, table_format, monkeypatch
):
    extra = {}
    if table_format == "iceberg":
        monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_CATALOG", json.dumps({"conn_type": "sqlite", "host": str(tmp_path / "catalog.db")}))
        extra = {"catalog_conn_id": "iceberg_catalog"}
    out = f"s3://{s3_bucket}/lake"
    first = finish(writer(out, "moto_s3", table_format, D, D + DAY, **extra))
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    fake_api.controls.revisions[D] = 1
    merge_at_once(out, "moto_s3", table_format, tmp_path / "gate", ((D, D + DAY // 2), (D + DAY // 2, D + DAY)), **extra)
    table = read_s3_table(table_format, s3_bucket, moto_server, tmp_path)
    expected = expected_rows(conn_id, D, D + DAY)
    assert table.num_rows == len(expected)
    assert sum(table.column("input_tokens").to_pylist()) == sum(r["input_tokens"] for r in expected)


def read_s3_table(table_format: str, bucket: str, endpoint: str, tmp_path: Path):
    opts = {"AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "testing", "AWS_ENDPOINT_URL": endpoint,
            "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}
    if table_format == "delta":
        from table_support import delta_rows

        return delta_rows(f"s3://{bucket}/lake/delta/completions", opts)
    from pyiceberg.catalog.sql import SqlCatalog

    catalog = SqlCatalog("openai_usage", uri=f"sqlite:///{tmp_path / 'catalog.db'}", **{
        "s3.endpoint": endpoint, "s3.access-key-id": "testing", "s3.secret-access-key": "testing", "s3.region": "us-east-1"})
    return catalog.load_table("openai_usage.completions").scan().to_arrow()


@pytest.mark.parametrize("table_format", TABLE_FORMATS)
@pytest.mark.parametrize("step", ["table-merged", "table-committed"])
def test_a_kill_at_each_commit_step_leaves_the_table_as_it_was_or_as_the_run_leaves_it(fake_api, conn_id, tmp_path, table_format, step):
    from airflow_provider_openai_usage.storage.days import FAULT_ENV

    out = tmp_path / "lake"
    first = finish(writer(str(out), "", table_format, D - DAY, D + 12 * 3600))
    assert first.returncode == 0, first.stderr.decode()[-3000:]
    before = rows_by_day(read_table(out, table_format, "completions"))
    fake_api.controls.revisions[D] = 1
    fake_api.controls.revisions[D - DAY] = 1
    killed = finish(writer(str(out), "", table_format, D - DAY, D + DAY, {**os.environ, FAULT_ENV: step}))
    assert killed.returncode == -9, killed.stderr.decode()[-3000:]
    after = rows_by_day(read_table(out, table_format, "completions"))
    finish(writer(str(tmp_path / "clean"), "", table_format, D - DAY, D + DAY))
    clean = rows_by_day(read_table(tmp_path / "clean", table_format, "completions"))
    assert after == (before if step == "table-merged" else clean), "all of the run's days or none of them"
    rerun = finish(writer(str(out), "", table_format, D - DAY, D + DAY))
    assert rerun.returncode == 0, rerun.stderr.decode()[-3000:]
    assert rows_by_day(read_table(out, table_format, "completions")) == clean, "the re-run after the crash: nothing doubled"


# -- engines we did not write ------------------------------------------------------------------------
def _duckdb():
    import glob

    import duckdb
    import duckdb_extension_avro
    import duckdb_extension_delta
    import duckdb_extension_iceberg

    con = duckdb.connect(config={"autoinstall_known_extensions": False, "autoload_known_extensions": False})
    # From the packages' own files (pip install duckdb-extension-...): nothing is downloaded at run time.
    for package, name in ((duckdb_extension_delta, "delta"), (duckdb_extension_avro, "avro"), (duckdb_extension_iceberg, "iceberg")):
        path = glob.glob(os.path.join(os.path.dirname(package.__file__), "extensions", "*", f"{name}.duckdb_extension"))[0]
        con.execute(f"LOAD '{path}'")
    return con


def test_duckdb_and_polars_read_both_tables_and_their_costs_equal_the_apis_to_the_last_decimal(fake_api, conn_id, tmp_path, monkeypatch):
    import polars as pl

    monkeypatch.setenv("POLARS_ICEBERG_PLANNER", "pyiceberg")  # Polars' own planner is another package

    from storage_support import write

    group_by = ["project_id", "line_item"]
    for fmt in TABLE_FORMATS:
        write(tmp_path, NOW - 5 * DAY, NOW, endpoint="costs", group_by=group_by, table_format=fmt)
    write(tmp_path, NOW - 5 * DAY, NOW, endpoint="costs", group_by=group_by)
    rows = OpenAIUsageHook(conn_id).iter_rows("costs", NOW - 5 * DAY, NOW, group_by=group_by)
    expected = sum((Decimal(str(r["amount_value"])) for r in rows), Decimal(0))
    assert expected != 0

    con = _duckdb()
    delta = con.execute(f"SELECT sum(amount_value), count(*) FROM delta_scan('{tmp_path / 'delta' / 'costs'}')").fetchone()
    from table_support import iceberg_table

    metadata = iceberg_table(tmp_path, "costs").metadata_location
    iceberg = con.execute(f"SELECT sum(amount_value), count(*) FROM iceberg_scan('{metadata}')").fetchone()
    files = con.execute(f"SELECT sum(amount_value), count(*) FROM read_parquet('{tmp_path / 'costs'}/*/date=*/data.parquet')").fetchone()
    assert delta == iceberg == files and delta[0] == expected

    polars_delta = pl.read_delta(str(tmp_path / "delta" / "costs"))
    polars_iceberg = pl.scan_iceberg(iceberg_table(tmp_path, "costs")).collect()
    for frame in (polars_delta, polars_iceberg):
        assert frame.height == files[1]
        assert frame["amount_value"].sum() == expected
    file_rows = file_rows_by_day(tmp_path, "costs")
    assert rows_by_day(read_table(tmp_path, "delta", "costs")) == file_rows == rows_by_day(read_table(tmp_path, "iceberg", "costs"))
    assert canonical_rows(polars_delta.to_arrow()) == canonical_rows(read_table(tmp_path, "delta", "costs"))


def test_iceberg_with_a_postgresql_catalog_two_processes_merging_one_day_lose_nothing(fake_api, conn_id, tmp_path, monkeypatch):
    """The production catalog: an Airflow postgres connection (catalog_conn_id) to a real PostgreSQL."""
    from services import ServiceSet, start_postgres

    with ServiceSet(tmp_path / "services") as services:
        url = start_postgres(services, "iceberg")
        port = int(url.rsplit(":", 1)[1].split("/", 1)[0])
        monkeypatch.setenv("AIRFLOW_CONN_ICEBERG_PG", json.dumps(
            {"conn_type": "postgres", "host": "127.0.0.1", "port": port, "login": "airflow", "schema": "iceberg"}))
        out = tmp_path / "lake"
        first = finish(writer(str(out), "", "iceberg", D, D + DAY, catalog_conn_id="iceberg_pg"))
        assert first.returncode == 0, first.stderr.decode()[-3000:]
        fake_api.controls.revisions[D] = 1
        merge_at_once(str(out), "", "iceberg", tmp_path / "gate", ((D, D + 9 * 3600), (D + 9 * 3600, D + DAY)),
                      catalog_conn_id="iceberg_pg")
        from pyiceberg.catalog.sql import SqlCatalog

        catalog = SqlCatalog("openai_usage", uri=url, warehouse=(out / "iceberg").as_uri())
        table = catalog.load_table("openai_usage.completions").scan().to_arrow()
        expected = expected_rows(conn_id, D, D + DAY)
        assert table.num_rows == len(expected)
        assert sum(table.column("input_tokens").to_pylist()) == sum(r["input_tokens"] for r in expected)
        assert not (out / "iceberg" / "catalog.db").exists(), "the connection's catalog, not the default SQLite one"


@pytest.mark.parametrize("table_format", TABLE_FORMATS)
def test_two_organizations_committing_the_same_day_at_once_keep_both(fake_api, conn_id, tmp_path, monkeypatch, table_format):
    """Two processes, two organizations, one day, one table: both hold a merged commit at once; the
    engine refuses the second (its days were touched) and it commits again: each organization's rows once."""
    import pyarrow.compute as pc

    from airflow_provider_openai_usage.testing.data import FakeOrganization

    second = FakeOrganization.numbered(2, seed=8)
    fake_api.add_organization(fake_api.key + "-2", second)
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_ORG_2", fake_api.connection_json_for(fake_api.key + "-2", max_retries=1))
    out = tmp_path / "lake"
    conns = {"org-FakeUsage7Fk3bQz9Mn2Lp5": "openai_usage_default", second.organization_id: "openai_usage_org_2"}
    merge_at_once(str(out), "", table_format, tmp_path / "gate", [(D, D + DAY)] * 2,
                  per_process=[{"openai_usage_conn_id": c} for c in conns.values()])
    table = read_table(out, table_format, "completions")
    for org, conn in conns.items():
        mine = table.filter(pc.equal(table.column("organization_id"), org))
        expected = expected_rows(conn, D, D + DAY)
        assert mine.num_rows == len(expected) > 0, org
        assert sum(mine.column("input_tokens").to_pylist()) == sum(r["input_tokens"] for r in expected), org
    assert set(table.column("organization_id").to_pylist()) == set(conns)
