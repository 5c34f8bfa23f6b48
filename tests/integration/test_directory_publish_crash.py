"""OpenAIDirectoryOperator under SIGKILL: a real writer process dies at each publishing step.

After the kill the snapshot is the old one or the new one, the other entity's day is whole, and the
next run completes with no temporary file left. Unit tests of the operator: tests/unit/test_operators_directory.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pendulum
import pytest
from conftest import DAY, NOW, ORG_DIR

from airflow_provider_openai_usage.directory import ENTITIES
from airflow_provider_openai_usage.directory_rows import arrow_schema
from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator

DATE = "2025-11-10"  # the UTC date of NOW, the run's data_interval_end


def run(tmp_path: Path, entities: list[str]) -> dict:
    """A clean run of ``entities`` for the day ending at NOW (a past date: replace_history on purpose)."""
    ctx = {"data_interval_start": pendulum.from_timestamp(NOW - DAY, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    operator = OpenAIDirectoryOperator(task_id="directory", entities=entities, output_path=tmp_path.as_uri(), replace_history=True)
    return operator.execute(ctx)


def snapshot(tmp_path: Path, entity: str) -> list[dict]:
    import pyarrow.parquet as pq

    table = pq.read_table(tmp_path / "directory" / entity / ORG_DIR / f"date={DATE}" / "data.parquet")
    assert table.schema.remove_metadata() == arrow_schema(ENTITIES[entity], organization=True)
    return table.to_pylist()


KILLED_RUN = textwrap.dedent(
    """
    import os, sys, pendulum
    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
    op = OpenAIDirectoryOperator(task_id="d", entities=["projects", "users"], output_path=sys.argv[1], replace_history=True)
    end = pendulum.from_timestamp(int(sys.argv[2]), tz="UTC")
    op.execute({"data_interval_start": end.subtract(days=1), "data_interval_end": end})
    """
)


@pytest.mark.parametrize("step", ["temp-written", "pending-written", "data-published", "manifest-published"])
def test_a_kill_at_any_publishing_step_leaves_the_old_or_the_new_snapshot_and_a_rerun_completes(fake_api, conn_id, tmp_path, step):
    from airflow_provider_openai_usage.storage.days import FAULT_ENV

    run(tmp_path, entities=["projects", "users"])
    old = {r["id"]: r["name"] for r in snapshot(tmp_path, "projects")}
    fake_api.api.admin.edits["proj_alpha"] = {"name": "Renamed"}
    env = {**os.environ, FAULT_ENV: step}
    killed = subprocess.run(
        [sys.executable, "-c", KILLED_RUN, tmp_path.as_uri(), str(NOW)], env=env, capture_output=True, text=True, timeout=300
    )
    assert killed.returncode == -9, killed.stderr[-2000:]
    names = {r["id"]: r["name"] for r in snapshot(tmp_path, "projects")}
    assert names == old or names["proj_alpha"] == "Renamed"
    assert len(snapshot(tmp_path, "users")) > 100, "the other entity's day is whole and typed"
    run(tmp_path, entities=["projects", "users"])
    assert {r["id"]: r["name"] for r in snapshot(tmp_path, "projects")}["proj_alpha"] == "Renamed"
    leftovers = [p for p in (tmp_path / "directory").rglob("*") if p.is_file() and "tmp" in p.relative_to(tmp_path).parts]
    assert leftovers == []
    manifest = json.loads((tmp_path / "directory" / "projects" / ORG_DIR / "_openai_usage" / "manifests" / f"date={DATE}.json").read_text())
    assert manifest["identity"]["entity"] == "projects" and manifest["rows"] == len(names)
