"""OpenAIDirectoryOperator: one snapshot file per entity and date, typed, replaced atomically, refused early."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import os
from pathlib import Path

import pendulum
import pytest
from conftest import FAKE_ORG, DAY, NOW, SENTINEL_KEY, ORG_DIR

from airflow_provider_openai_usage.directory import ENTITIES, ENTITY_KEYS
from airflow_provider_openai_usage.directory_rows import arrow_schema
from airflow_provider_openai_usage.exceptions import OpenAIUsageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator, snapshot_date
from airflow_provider_openai_usage.testing import status

DATE = "2025-11-10"  # the UTC date of NOW, the run's data_interval_end


def ctx(end: int = NOW) -> dict:
    return {
        "data_interval_start": pendulum.from_timestamp(end - DAY, tz="UTC"),
        "data_interval_end": pendulum.from_timestamp(end, tz="UTC"),
    }


def files(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def run(tmp_path: Path, end: int = NOW, **kwargs) -> dict:
    kwargs.setdefault("output_path", tmp_path.as_uri())
    kwargs.setdefault("replace_history", True)  # NOW is in the past: these tests re-run past dates on purpose
    return OpenAIDirectoryOperator(task_id="directory", **kwargs).execute(ctx(end))


def snapshot(tmp_path: Path, entity: str, date: str = DATE) -> list[dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "directory" / entity / ORG_DIR / f"date={date}" / "data.parquet")
    assert table.schema.remove_metadata() == arrow_schema(ENTITIES[entity], organization=True)
    assert set(table.column("organization_id").to_pylist()) <= {FAKE_ORG}, "every row names the organization it was read from"
    table = table.drop_columns(["organization_id"])
    return [{k: (int(v.timestamp()) if hasattr(v, "timestamp") else v) for k, v in row.items()} for row in table.to_pylist()]


def test_every_entity_lands_typed_under_the_run_s_date_with_the_hook_s_rows(fake_api, conn_id, tmp_path):
    summary = run(tmp_path)
    assert summary["snapshot_date"] == DATE and set(summary["entities"]) == set(ENTITY_KEYS)
    hook = OpenAIUsageHook(conn_id)
    for key in ENTITY_KEYS:
        expected = sorted(hook.iter_directory(key), key=lambda r: (r.get("project_id") or "", r["id"]))
        assert snapshot(tmp_path, key) == expected, key
        assert summary["entities"][key]["rows"] == len(expected)
        assert sorted(os.listdir(tmp_path / "directory" / key / ORG_DIR)) == ["_openai_usage", f"date={DATE}"]
    # One project listing shared by the six per-project entities.
    assert sum(1 for r in fake_api.requests[: summary["requests"]] if r.path.endswith("/organization/projects")) == 1


def test_a_rerun_of_the_same_day_is_byte_identical_and_a_changed_directory_replaces_it(fake_api, conn_id, tmp_path):
    run(tmp_path, entities=["projects", "project_api_keys"])
    first = files(tmp_path / "directory")
    run(tmp_path, entities=["projects", "project_api_keys"])
    assert files(tmp_path / "directory") == first
    fake_api.api.admin.edits["proj_alpha"] = {"name": "Support Bot"}
    run(tmp_path, entities=["projects"])
    names = {r["id"]: r["name"] for r in snapshot(tmp_path, "projects")}
    assert names["proj_alpha"] == "Support Bot"
    assert len(list((tmp_path / "directory" / "projects" / ORG_DIR).glob("date=*/*"))) == 1, "replaced, not added beside"


def test_each_date_is_its_own_snapshot(fake_api, conn_id, tmp_path):
    run(tmp_path, entities="projects", end=NOW - DAY)
    fake_api.api.admin.edits["proj_beta"] = {"name": "Ranking v2"}
    run(tmp_path, entities="projects")
    before = {r["id"]: r["name"] for r in snapshot(tmp_path, "projects", "2025-11-09")}
    after = {r["id"]: r["name"] for r in snapshot(tmp_path, "projects", DATE)}
    assert before["proj_beta"] != after["proj_beta"] == "Ranking v2"


def test_a_late_rerun_of_a_past_date_keeps_the_snapshot_read_back_then(fake_api, conn_id, tmp_path):
    run(tmp_path, entities=["projects", "users"])
    before = files(tmp_path / "directory")
    fake_api.api.admin.edits["proj_alpha"] = {"name": "Renamed since"}
    fake_api.clear_requests()
    summary = run(tmp_path, entities=["projects", "users", "admin_api_keys"], replace_history=False)
    assert summary["kept"] == ["projects", "users"] and list(summary["entities"]) == ["admin_api_keys"]
    assert {k: v for k, v in files(tmp_path / "directory").items() if not k.startswith("admin_api_keys")} == before
    assert not any(r.path.endswith(("/organization/users", "/organization/projects")) for r in fake_api.requests), "kept: not even read"
    run(tmp_path, entities=["projects"], replace_history=True)
    assert {r["id"]: r["name"] for r in snapshot(tmp_path, "projects")}["proj_alpha"] == "Renamed since"


def test_a_rerun_on_the_snapshot_s_own_date_replaces_it(fake_api, conn_id, tmp_path):
    today = dt.datetime.now(dt.timezone.utc).replace(hour=0, minute=0, second=0, microsecond=0)
    end = int(today.timestamp())
    run(tmp_path, end=end, entities=["projects"], replace_history=False)
    fake_api.api.admin.edits["proj_alpha"] = {"name": "Renamed today"}
    summary = run(tmp_path, end=end, entities=["projects"], replace_history=False)
    assert (
        summary["kept"] == []
        and {r["id"]: r["name"] for r in snapshot(tmp_path, "projects", today.strftime("%Y-%m-%d"))}["proj_alpha"] == "Renamed today"
    )


def test_a_failed_read_replaces_nothing(fake_api, conn_id, tmp_path, monkeypatch):
    run(tmp_path, entities=["projects", "users"])
    before = files(tmp_path / "directory")
    fake_api.api.admin.edits["proj_alpha"] = {"name": "Never written"}
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01))
    fake_api.schedule_faults(*[status(500, path="/organization/users")] * 4)
    with pytest.raises(OpenAIUsageError, match="giving up"):
        run(tmp_path, entities=["projects", "users"])
    assert files(tmp_path / "directory") == before


def test_a_full_key_in_an_answer_lands_nowhere_and_the_snapshot_still_lands(fake_api, conn_id, tmp_path):
    import re

    fake_api.api.admin.leak_full_key = True
    run(tmp_path)
    for path in tmp_path.rglob("*"):
        if path.is_file():
            assert SENTINEL_KEY.encode() not in path.read_bytes()
            assert not re.search(rb"sk-proj-[0-9a-f]{20}", path.read_bytes())
    assert list(tmp_path.rglob("date=*")), "the snapshot is scrubbed, not refused (#26 item 12)"


def test_the_admin_key_is_stored_only_redacted(fake_api, conn_id, tmp_path):
    run(tmp_path, entities=["admin_api_keys"], file_format="jsonl")
    text = (tmp_path / "directory" / "admin_api_keys" / ORG_DIR / f"date={DATE}" / "data.jsonl").read_text()
    assert SENTINEL_KEY not in text and f'"{SENTINEL_KEY[:8]}...{SENTINEL_KEY[-4:]}"' in text


@pytest.mark.parametrize("file_format", ["jsonl", "csv"])
def test_text_formats_hold_the_same_rows(fake_api, conn_id, tmp_path, file_format):
    run(tmp_path, entities=["project_spend_alerts", "projects"], file_format=file_format)
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.storage import read_day_table

    path = ObjectStoragePath(f"file://{tmp_path}/directory/projects/{ORG_DIR}/date={DATE}/data.{file_format}")
    table = read_day_table(path, arrow_schema(ENTITIES["projects"]))
    written = sorted(table.to_pylist(), key=lambda r: r["id"])
    assert [{k: (int(v.timestamp()) if hasattr(v, "timestamp") else v) for k, v in r.items()} for r in written] == sorted(
        OpenAIUsageHook(conn_id).iter_directory("projects"), key=lambda r: r["id"]
    )
    alerts = ObjectStoragePath(f"file://{tmp_path}/directory/project_spend_alerts/{ORG_DIR}/date={DATE}/data.{file_format}")
    recipients = (
        read_day_table(alerts, arrow_schema(ENTITIES["project_spend_alerts"], file_format)).column("notification_recipients").to_pylist()
    )
    if file_format == "csv":  # a CSV cell holds a list as JSON text
        recipients = [json.loads(r) for r in recipients]
    assert recipients and all(r[0] == "finops@example.com" and len(r) == 2 for r in recipients)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"entities": ["projects", "apikeys"]}, "entity='apikeys' is not an OpenAI directory entity; allowed: projects"),
        ({"entities": []}, "non-empty list"),
        ({"file_format": "xlsx"}, "xlsx"),
        ({"output_path": "ftp://host/x"}, "output_path='ftp://host/x'"),
        ({"output_path": "relative/dir"}, "relative"),
        ({"output_path": None}, "output_path"),
        ({"replace_history": "yes"}, "replace_history='yes' must be True or False"),
    ],
)
def test_bad_parameters_fail_when_the_dag_is_parsed(fake_api, kwargs, match, tmp_path):
    kwargs = {"output_path": tmp_path.as_uri(), **kwargs}
    with pytest.raises(OpenAIUsageValidationError, match=match):
        OpenAIDirectoryOperator(task_id="directory", **kwargs)
    assert fake_api.requests == []


def test_templated_parameters_are_checked_at_run_time_before_any_request(fake_api, conn_id, tmp_path):
    op = OpenAIDirectoryOperator(task_id="directory", entities="{{ params.entities }}", output_path=tmp_path.as_uri())
    op.entities = ["projects", "nope"]  # what rendering produced
    with pytest.raises(OpenAIUsageValidationError, match="'nope'"):
        op.execute(ctx())
    assert fake_api.requests == []


def test_an_unwritable_output_path_fails_before_any_request(fake_api, conn_id, tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("not a folder")
    with pytest.raises(OpenAIUsageError, match="output_path"):
        run(tmp_path, output_path=blocker.as_uri())
    assert fake_api.requests == []


def test_snapshot_date_is_the_data_interval_end_or_when_a_manual_run_runs():
    assert snapshot_date(ctx(NOW)) == DATE
    assert snapshot_date(ctx(NOW + 3600)) == DATE, "an interval ending during a day files under that day"

    class Run:
        run_after = pendulum.datetime(2026, 1, 2, 23, 59, 59, 999_999, tz="UTC")

    assert snapshot_date({"data_interval_end": None, "dag_run": Run()}) == "2026-01-02"
    assert snapshot_date({"data_interval_end": "2025-11-10T01:00:00+02:00"}) == "2025-11-09", "UTC, not local"
    before = dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")
    assert snapshot_date({}) in {before, dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%d")}  # a run at midnight may cross
    with pytest.raises(OpenAIUsageValidationError, match="not an aware datetime"):
        snapshot_date({"data_interval_end": dt.datetime(2025, 11, 10)})


def test_outlets_name_one_asset_per_entity(tmp_path):
    op = OpenAIDirectoryOperator(task_id="d", entities=["users", "projects"], output_path=tmp_path.as_uri())
    assert [a.uri for a in op.outlets] == [f"{tmp_path.as_uri()}/directory/projects", f"{tmp_path.as_uri()}/directory/users"]
