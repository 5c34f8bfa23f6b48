"""OpenAIFocusOperator: whole-day FOCUS files, exact totals, refusals before anything is written."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from collections import defaultdict
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest

from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator
from airflow_provider_openai_usage.testing import Fault
from conftest import FAKE_ORG, ORG_DIR

NOW = 1762732800  # 2025-11-10T00:00:00Z, as tests/conftest.py
DAY = 86400
START = NOW - 10 * DAY
ACCOUNT = {"billing_account_id": FAKE_ORG, "billing_account_name": "Test Org"}


def ctx(start: int, end: int) -> dict:
    return {"data_interval_start": pendulum.from_timestamp(start, tz="UTC"), "data_interval_end": pendulum.from_timestamp(end, tz="UTC")}


def day(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def day_files(root: Path, ext: str = "parquet") -> dict[str, Path]:
    return {p.parent.name.removeprefix("date="): p for p in sorted((root / "focus" / ORG_DIR).glob(f"date=*/*.{ext}"))}


def costs_by_day(conn_id: str, start: int, end: int, **kwargs) -> dict[str, Decimal]:
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

    hook = OpenAIUsageHook(conn_id)
    totals: dict[str, Decimal] = defaultdict(Decimal)
    try:
        for row in hook.iter_rows("costs", start, end, **kwargs):
            totals[day(row["start_time"])] += row["amount_value"]
    finally:
        hook.close()
    return dict(totals)


def test_one_file_per_day_with_exact_totals_and_identical_reruns(conn_id, tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    op = OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), **ACCOUNT)
    summary = op.execute(ctx(START, NOW))
    files = day_files(tmp_path)
    assert list(files) == [day(START + i * DAY) for i in range(10)]
    assert all(p.name == "data.parquet" for p in files.values())
    expected = costs_by_day(conn_id, START, NOW)  # ungrouped: the organization's total per day
    for d, path in files.items():
        table = pq.read_table(path)
        billed = pc.sum(table.column("BilledCost")).as_py() or Decimal(0)
        assert billed == expected.get(d, Decimal(0)), d  # to the last decimal
        assert Decimal(summary["days"][d]["BilledCost"]) == billed
        assert set(table.column("BillingAccountId").to_pylist()) <= {FAKE_ORG}
    assert summary["rows"] == sum(pq.read_metadata(p).num_rows for p in files.values()) > 0
    assert summary["output"].endswith(f"/focus/{ORG_DIR}") and summary["billing_account_id"] == FAKE_ORG
    json.dumps(summary)  # XCom-safe

    before = tree(tmp_path / "focus" / ORG_DIR)
    op.execute(ctx(START, NOW))
    assert tree(tmp_path / "focus" / ORG_DIR) == before  # byte-identical re-run
    # a daily run rewrites its day with the same bytes a wide run wrote
    OpenAIFocusOperator(task_id="d", output_path=str(tmp_path), **ACCOUNT).execute(ctx(NOW - DAY, NOW))
    assert tree(tmp_path / "focus" / ORG_DIR) == before


def test_csv_on_request(conn_id, tmp_path):
    import csv

    OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), file_format="csv", **ACCOUNT).execute(ctx(NOW - 2 * DAY, NOW))
    files = day_files(tmp_path, "csv")
    assert list(files) == [day(NOW - 2 * DAY), day(NOW - DAY)]
    expected = costs_by_day(conn_id, NOW - 2 * DAY, NOW)
    for d, path in files.items():
        rows = list(csv.DictReader(path.open(newline="")))
        assert sum(Decimal(r["BilledCost"]) for r in rows) == expected.get(d, Decimal(0))
        assert all(r["ChargePeriodStart"] == f"{d}T00:00:00Z" for r in rows)


def test_billing_account_from_the_connection_extras(fake_api, monkeypatch, tmp_path):
    import pyarrow.parquet as pq

    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT",
        fake_api.connection_json(organization_name="From Extras", max_retries=1, backoff_base=0.01),
    )
    OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path)).execute(ctx(NOW - DAY, NOW))
    table = pq.read_table(day_files(tmp_path)[day(NOW - DAY)])
    assert set(table.column("BillingAccountName").to_pylist()) == {"From Extras"}
    assert set(table.column("BillingAccountId").to_pylist()) == {FAKE_ORG}


def test_a_connection_naming_another_organization_exports_nothing(fake_api, monkeypatch, tmp_path):
    # The key answers for FAKE_ORG; the connection claims another organization: never exported under it.
    monkeypatch.setenv(
        "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT",
        fake_api.connection_json(organization_id="org-SomeoneElse", organization_name="Other", max_retries=1, backoff_base=0.01),
    )
    with pytest.raises(OpenAIUsageResponseError, match=r"organization_id='org-FakeUsage7Fk3bQz9Mn2Lp5'.*'org-SomeoneElse'"):
        OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path)).execute(ctx(NOW - DAY, NOW))
    assert not any(p.is_file() and "date=" in str(p) for p in tmp_path.rglob("*"))
    with pytest.raises(OpenAIUsageValidationError, match=r"billing_account_id='org-Other'.*reads organization 'org-SomeoneElse'"):
        OpenAIFocusOperator(task_id="f2", output_path=str(tmp_path), billing_account_id="org-Other").execute(ctx(NOW - DAY, NOW))


def test_missing_billing_account_fails_before_any_request_and_writes_nothing(fake_api, conn_id, tmp_path):
    fake_api.clear_requests()
    # The organization (BillingAccountId) is the connection's; its name is not reported by any API.
    with pytest.raises(OpenAIUsageValidationError, match=r"billing_account_name=None: .*organization_name"):
        OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path)).execute(ctx(NOW - DAY, NOW))
    assert fake_api.requests == []
    assert not any(p.is_file() for p in tmp_path.rglob("*"))


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"billing_account_id": "  "}, r"billing_account_id='  '.*not guessed"),
        ({"billing_account_name": ""}, r"billing_account_name=''"),
        ({"group_by": ["project_id"]}, r"group_by=\['project_id'\] has no 'line_item'.*PricingQuantity"),
        ({"file_format": "jsonl"}, r"file_format='jsonl' is not supported for FOCUS; allowed: parquet, csv"),
        ({"output_path": ""}, r"output_path=''"),
        ({"output_path": None}, r"output_path=None"),
    ],
)
def test_bad_literal_arguments_fail_at_dag_parse_time(kwargs, message, tmp_path):
    with pytest.raises(OpenAIUsageValidationError, match=message):
        OpenAIFocusOperator(task_id="focus", **({"output_path": str(tmp_path)} | ACCOUNT | kwargs))


def test_a_bad_row_anywhere_in_the_range_means_no_day_is_written(fake_api, conn_id, tmp_path):
    """OpenAI drops quantity_unit (a drifting API): FOCUS cannot price the rows, so nothing is published."""
    op = OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), **ACCOUNT)
    op.execute(ctx(NOW - 3 * DAY, NOW))
    before = tree(tmp_path)
    fake_api.schedule_faults(Fault("drift", path="/organization/costs"))
    with pytest.raises(OpenAIUsageResponseError, match=r"costs row of 2025-11-0\d .*quantity_unit=None"):
        op.execute(ctx(NOW - 3 * DAY, NOW))
    assert tree(tmp_path) == before  # earlier days untouched, no temp files left


def test_days_not_reported_yet_are_refused_before_writing(fake_api, conn_id, tmp_path):
    fake_api.controls.available_until = NOW - DAY
    with pytest.raises(OpenAIUsageResponseError, match="no FOCUS day is written"):
        OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), **ACCOUNT).execute(ctx(NOW - 3 * DAY, NOW))
    assert day_files(tmp_path) == {}


def test_project_names_from_directory_snapshots(conn_id, tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    from airflow_provider_openai_usage.storage import DayStore, output_location

    store = DayStore(output_location(str(tmp_path), None) / "directory" / "projects" / ORG_DIR, "parquet")
    store.prepare()
    snapshot = pa.table({"id": ["proj_alpha", "proj_beta"], "name": ["Alpha (old)", None]})
    store.replace_day(day(NOW - 5 * DAY), snapshot, {"dataset": "directory/projects"})
    store.replace_day(day(NOW), pa.table({"id": ["proj_alpha"], "name": ["Alpha"]}), {"dataset": "directory/projects"})
    OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), **ACCOUNT).execute(ctx(START, NOW))
    seen = set()
    for d, path in day_files(tmp_path).items():
        t = pq.read_table(path, columns=["SubAccountId", "SubAccountName", "x_SubAccountNameSource"])
        for pid, name, source in zip(*(t.column(i).to_pylist() for i in range(3)), strict=True):
            if pid == "proj_alpha":  # a snapshot dated D holds the names as at the end of D-1
                expected = ("Alpha (old)" if d < day(NOW - 5 * DAY) else "Alpha", "directory")
            else:  # proj_beta is unnamed, proj_gamma missing from the directory: the ID
                expected = (pid, "project_id")
            assert (name, source) == expected, (d, pid)
            seen.add((pid, expected[0]))
    assert seen == {("proj_alpha", "Alpha (old)"), ("proj_alpha", "Alpha"), ("proj_beta", "proj_beta"), ("proj_gamma", "proj_gamma")}


def test_focus_by_api_key_across_the_floor_exports_every_day_with_and_without_the_key(fake_api, conn_id, tmp_path):
    import pyarrow.parquet as pq

    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR as FLOOR

    fake_api.controls.now = FLOOR + 10 * DAY
    start, end = FLOOR - 3 * DAY, FLOOR + 3 * DAY
    op = OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), group_by=["project_id", "line_item", "api_key_id"], **ACCOUNT)
    summary = op.execute(ctx(start, end))
    files = day_files(tmp_path)
    assert list(files) == [day(t) for t in range(start, end, DAY)] == list(summary["days"])
    keys = {d: set(pq.read_table(p).column("x_ApiKeyId").to_pylist()) for d, p in files.items()}
    assert all(keys[day(t)] <= {None} for t in range(start, FLOOR, DAY)), "before the floor: no key dimension"
    assert any(keys[day(t)] - {None} for t in range(FLOOR, end, DAY))
    manifests = {p.name: json.loads(p.read_text())["identity"]["group_by"] for p in (tmp_path / "focus" / ORG_DIR).rglob("date=*.json")}
    assert manifests[f"date={day(FLOOR - DAY)}.json"] == ["project_id", "line_item"]
    assert manifests[f"date={day(FLOOR)}.json"] == ["project_id", "line_item", "api_key_id"]
    before = tree(tmp_path / "focus" / ORG_DIR)
    op.execute(ctx(start, end))
    assert tree(tmp_path / "focus" / ORG_DIR) == before


# -- source="landed": the FOCUS export from the costs partitions a pull landed (issue #28) ------------------
LANDED_GROUP_BY = ["project_id", "api_key_id", "line_item", "api_source"]


def land_costs(out: Path, start: int, end: int, **kwargs) -> dict:
    """What the daily DAG's pull_costs lands: costs grouped by every FinOps dimension."""
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

    params = {"group_by": LANDED_GROUP_BY} | kwargs
    return OpenAIUsageOperator(task_id="pull_costs", endpoint="costs", output_path=str(out), **params).execute(ctx(start, end))


def focus_tables(root: Path) -> dict[str, list[dict]]:
    import pyarrow.parquet as pq

    return {d: pq.read_table(p).to_pylist() for d, p in day_files(root).items()}


def test_landed_source_gives_the_api_sources_files_without_a_costs_request(fake_api, conn_id, tmp_path):
    """Summed over api_key_id and api_source, exactly: byte-identical FOCUS days, and no request at all."""
    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR as FLOOR

    fake_api.controls.now = FLOOR + 10 * DAY
    start, end = FLOOR - 2 * DAY, FLOOR + 4 * DAY  # across the api_key_id floor: days landed with and without the key
    pulled, landed = tmp_path / "pulled", tmp_path / "landed"
    land_costs(landed, start, end)
    OpenAIFocusOperator(task_id="f", output_path=str(pulled), **ACCOUNT).execute(ctx(start, end))
    fake_api.clear_requests()
    summary = OpenAIFocusOperator(task_id="f", output_path=str(landed), source="landed", **ACCOUNT).execute(ctx(start, end))
    assert fake_api.requests == [], "the landed source asks the API nothing"
    assert summary["source"] == "landed" and list(summary["days"]) == [day(t) for t in range(start, end, DAY)]
    assert tree(pulled / "focus" / ORG_DIR) == tree(landed / "focus" / ORG_DIR), "the same bytes as a pull of its own"
    assert focus_tables(landed) and all(rows for rows in focus_tables(landed).values())


def test_landed_source_keeps_the_key_where_it_was_landed_and_sums_exactly(fake_api, conn_id, tmp_path):
    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR as FLOOR

    fake_api.controls.now = FLOOR + 10 * DAY
    start, end = FLOOR - DAY, FLOOR + 2 * DAY
    land_costs(tmp_path, start, end)
    op = OpenAIFocusOperator(task_id="f", output_path=str(tmp_path), source="landed", group_by=["project_id", "line_item", "api_key_id"], **ACCOUNT)
    summary = op.execute(ctx(start, end))
    tables = focus_tables(tmp_path)
    assert {r["x_ApiKeyId"] for r in tables[day(FLOOR - DAY)]} <= {None}, "before the floor the key was never landed"
    assert {r["x_ApiKeyId"] for r in tables[day(FLOOR)]} - {None}
    expected = costs_by_day(conn_id, start, end)
    for d, rows in tables.items():
        assert sum((r["BilledCost"] for r in rows), Decimal(0)) == expected.get(d, Decimal(0)) == Decimal(summary["days"][d]["BilledCost"])


def test_landed_source_refuses_a_day_not_landed_and_writes_nothing(fake_api, conn_id, tmp_path):
    land_costs(tmp_path, NOW - 3 * DAY, NOW - DAY)
    with pytest.raises(OpenAIUsageValidationError, match=rf"date={day(NOW - DAY)} has no landed costs file.*pull_costs"):
        OpenAIFocusOperator(task_id="f", output_path=str(tmp_path), source="landed", **ACCOUNT).execute(ctx(NOW - 3 * DAY, NOW))
    assert day_files(tmp_path) == {}


@pytest.mark.parametrize(
    ("landing", "message"),
    [
        ({"group_by": ["project_id"]}, r"was pulled with group_by=\['project_id'\], without \['line_item'\]"),
        ({"filters": {"project_ids": ["proj_alpha"]}}, r"was pulled with filters=\{'project_ids': \['proj_alpha'\]\}, not \{\}"),
    ],
)
def test_landed_source_refuses_days_landed_another_way(fake_api, conn_id, tmp_path, landing, message):
    land_costs(tmp_path, NOW - 2 * DAY, NOW, **landing)
    with pytest.raises(OpenAIUsageValidationError, match=message):
        OpenAIFocusOperator(task_id="f", output_path=str(tmp_path), source="landed", **ACCOUNT).execute(ctx(NOW - 2 * DAY, NOW))
    assert day_files(tmp_path) == {}


def test_landed_source_refuses_a_part_day_and_a_file_changed_by_hand(fake_api, conn_id, tmp_path):
    """Costs pulls land whole days (1d only), but the reader checks coverage all the same: a manifest
    whose windows miss part of the day (written by another tool or version) is refused."""
    land_costs(tmp_path, NOW - DAY, NOW)
    manifest = tmp_path / "costs" / ORG_DIR / "_openai_usage" / "manifests" / f"date={day(NOW - DAY)}.json"
    whole = manifest.read_text()
    record = json.loads(whole)
    record["covered"] = [[NOW - DAY, NOW - DAY + 6 * 3600]]
    manifest.write_text(json.dumps(record))
    focus = OpenAIFocusOperator(task_id="f", output_path=str(tmp_path), source="landed", **ACCOUNT)
    with pytest.raises(OpenAIUsageValidationError, match=rf"date={day(NOW - DAY)} covers only .* of the UTC day"):
        focus.execute(ctx(NOW - DAY, NOW))
    manifest.write_text(whole)
    focus.execute(ctx(NOW - DAY, NOW))  # whole again
    import pyarrow as pa
    import pyarrow.parquet as pq

    data = tmp_path / "costs" / ORG_DIR / f"date={day(NOW - DAY)}" / "data.parquet"
    original = data.read_bytes()
    data.write_bytes(original + b"tampered")
    with pytest.raises(OpenAIUsageValidationError, match="has a costs file that cannot be read"):
        focus.execute(ctx(NOW - DAY, NOW))
    table = pq.read_table(pa.BufferReader(original)).replace_schema_metadata(None)
    pq.write_table(table.slice(1), data)  # a readable file with a row less, not the one the manifest describes
    with pytest.raises(OpenAIUsageValidationError, match="does not match its manifest"):
        focus.execute(ctx(NOW - DAY, NOW))


def test_landed_source_reads_costs_path_and_text_formats(fake_api, conn_id, tmp_path):
    land_costs(tmp_path / "elsewhere", NOW - 2 * DAY, NOW, file_format="jsonl")
    OpenAIFocusOperator(task_id="a", output_path=str(tmp_path / "api"), **ACCOUNT).execute(ctx(NOW - 2 * DAY, NOW))
    OpenAIFocusOperator(
        task_id="l", output_path=str(tmp_path / "landed"), source="landed", costs_path=str(tmp_path / "elsewhere" / "costs"), **ACCOUNT
    ).execute(ctx(NOW - 2 * DAY, NOW))
    assert tree(tmp_path / "api" / "focus" / ORG_DIR) == tree(tmp_path / "landed" / "focus" / ORG_DIR)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"source": "warehouse"}, r"source='warehouse' is not a FOCUS source; use 'api' .* or 'landed'"),
        ({"costs_path": "/tmp/costs"}, r"costs_path='/tmp/costs' is read only with source='landed'"),
        ({"source": "landed", "costs_path": ""}, r"output_path=''"),
    ],
)
def test_bad_source_arguments_fail_at_dag_parse_time(kwargs, message, tmp_path):
    with pytest.raises(OpenAIUsageValidationError, match=message):
        OpenAIFocusOperator(task_id="focus", output_path=str(tmp_path), **ACCOUNT, **kwargs)
