"""storage.days: publishing one day's file: the umask, stale and dead writers' temporary files, a fault mid-run
leaving the previous partition."""

from __future__ import annotations

import os
import stat

import pytest
from conftest import DAY, NOW, ORG_DIR
from storage_support import D8, START, ctx, data_files, day, files, temps, write

from airflow_provider_openai_usage.exceptions import OpenAIUsageAPIError
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.testing import Fault, status


def test_published_files_honour_the_umask(fake_api, conn_id, tmp_path):
    old = os.umask(0o022)
    try:
        write(tmp_path / "a", D8, D8 + DAY)
        os.umask(0o027)
        write(tmp_path / "b", D8, D8 + DAY)
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "a" / "completions" / ORG_DIR / f"date={day(D8)}" / "data.parquet").stat().st_mode) == 0o644
    assert stat.S_IMODE((tmp_path / "b" / "completions" / ORG_DIR / f"date={day(D8)}" / "data.parquet").stat().st_mode) == 0o640
    manifest = tmp_path / "a" / "completions" / ORG_DIR / "_openai_usage" / "manifests" / f"date={day(D8)}.json"
    assert stat.S_IMODE(manifest.stat().st_mode) == 0o644


def test_stale_temporary_files_of_a_dead_writer_are_removed_by_the_next_run(fake_api, conn_id, tmp_path):
    write(tmp_path, D8, D8 + DAY)
    tmp_dir = tmp_path / "completions" / ORG_DIR / "_openai_usage" / "tmp"
    (tmp_dir / "0123456789abcdef.tmp").write_bytes(b"half a parquet file")  # nobody holds its lock: a dead writer's
    (tmp_dir / f"pending.{day(D8)}.0123456789abcdef.json").write_text('{"file": "data.parquet", "sha256": "00"}')
    write(tmp_path, D8 - DAY, D8)
    assert not temps(tmp_path)


def test_a_fault_mid_day_leaves_the_previous_partition_and_no_temporary_files(fake_api, monkeypatch, tmp_path):
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01))
    op = OpenAIUsageOperator(task_id="t", endpoint="embeddings", output_path=str(tmp_path), bucket_width="1h")
    op.execute(ctx(START, START + 2 * DAY))
    before = files(tmp_path)
    assert len(data_files(tmp_path / "embeddings" / ORG_DIR)) == 2
    # New numbers for day 1, 10 hours per page: page 1 succeeds, page 2 fails on both attempts.
    fake_api.controls.revisions[START] = 3
    fake_api.controls.page_size_cap = 10
    fake_api.schedule_faults(Fault("pass"), status(500), status(500))
    with pytest.raises(OpenAIUsageAPIError, match="HTTP 500"):
        op.execute(ctx(START, START + 2 * DAY))
    assert files(tmp_path) == before
    fake_api.schedule_faults(Fault("pass"), Fault("pass"), Fault("pass"), status(500), status(500))
    with pytest.raises(OpenAIUsageAPIError):
        op.execute(ctx(START, START + 2 * DAY))
    after = files(tmp_path)
    day1, day2 = (f"embeddings/{ORG_DIR}/date={day(START + i * DAY)}/data.parquet" for i in range(2))
    assert after[day1] != before[day1], "day 1 was complete, so it was replaced with the revised numbers"
    assert after[day2] == before[day2], "day 2 failed mid-way, so its old partition stays"
    assert not temps(tmp_path)


def test_an_empty_temp_of_a_dead_writer_is_removed_at_once(fake_api, conn_id, tmp_path):
    """Temps carry their writer's pid: an empty one (a writer killed between creating and locking it)
    whose process is gone is removed by the next run, not left for a minute."""
    import subprocess
    import sys

    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True, check=True)
    tmp = tmp_path / "embeddings" / ORG_DIR / "_openai_usage" / "tmp"
    tmp.mkdir(parents=True)
    (tmp / f"0123456789abcdef-{dead.stdout.strip()}.tmp").touch()
    (tmp / f"fedcba9876543210-{os.getpid()}.tmp").touch()  # this process lives: maybe between create and lock
    write(tmp_path, NOW - DAY, NOW, endpoint="embeddings")
    assert sorted(p.name for p in tmp.iterdir()) == [f"fedcba9876543210-{os.getpid()}.tmp"]


# -- batches: staged on any thread, made durable together, published in order under one lock ---------------
def _store(tmp_path):
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.storage.days import DayStore

    store = DayStore(ObjectStoragePath(tmp_path.as_uri()), "jsonl")
    store.prepare()
    return store


def _stage(store, date, text):
    record = store.day_record(date, 1, {"dataset": "t"})
    return store.stage(date, text.encode(), record)


def test_a_batch_is_published_in_order_and_its_manifests_replace_the_pending_records(tmp_path):
    import json

    store = _store(tmp_path)
    days = [f"2025-11-0{i}" for i in range(1, 6)]
    published = store.commit([_stage(store, d, f'{{"day":"{d}"}}\n') for d in days])
    assert [p.date for p in published] == days
    for d in days:
        assert (tmp_path / f"date={d}" / "data.jsonl").read_text() == f'{{"day":"{d}"}}\n'
        manifest = json.loads((tmp_path / "_openai_usage" / "manifests" / f"date={d}.json").read_text())
        assert manifest["sha256"] == store.current_day(d).sha256
    assert not temps(tmp_path), "pending records became the manifests; temps were renamed into place"


def test_a_failure_mid_batch_publishes_the_days_before_it_and_removes_every_temp(tmp_path):
    store = _store(tmp_path)
    (tmp_path / "date=2025-11-03").write_text("a file where the day's folder goes")
    staged = [_stage(store, f"2025-11-0{i}", "{}\n") for i in range(1, 6)]
    published: list = []
    with pytest.raises(NotADirectoryError):
        store.commit(staged, published)
    assert [p.date for p in published] == ["2025-11-01", "2025-11-02"]
    assert sorted(store.existing_formats()) == ["2025-11-01", "2025-11-02"]
    assert not temps(tmp_path) and all(s.closed for s in staged)


def test_a_merged_day_is_staged_only_once_the_dataset_lock_is_held(tmp_path):
    import fcntl

    store = _store(tmp_path)
    seen = []

    def stage_under_lock():
        fd = os.open(tmp_path / "_openai_usage" / "lock", os.O_RDWR)
        try:
            with pytest.raises(BlockingIOError):
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # this writer holds it
        finally:
            os.close(fd)
        seen.append("staged")
        return _stage(store, "2025-11-02", "{}\n")

    store.commit([_stage(store, "2025-11-01", "{}\n"), stage_under_lock])
    assert seen == ["staged"] and sorted(store.existing_formats()) == ["2025-11-01", "2025-11-02"]
