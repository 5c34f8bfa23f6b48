"""Invariants I2 and I4 under SIGKILL: a real writer process dies at every publishing step boundary.

The writer is a forked process running ``OpenAIUsageOperator.execute``; the injected fault point
(``OPENAI_USAGE_TEST_KILL_AT=<step>@<n>``) makes it ``SIGKILL`` itself exactly there, not by timing
luck. The run merges revised numbers into parts of two days that already hold hourly files. After
the kill: every day file is byte-identical to the old one or to the one a clean run writes, each
partition holds exactly one file, and nothing temporary sits in a partition. Then the next run
(no fault) finishes: the tree equals the clean run's, and no temporary file or pending manifest is
left, locally or on S3 (moto), nor in the OS temp folder the object-store writer uses.
"""

from __future__ import annotations

import hashlib
import os
import signal
import tempfile
from pathlib import Path

import pytest

# Imported here, before any fork, so each forked writer starts warm (no per-process import cost).
import pyarrow.parquet  # noqa: F401

from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook  # noqa: F401
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.storage.days import FAULT_ENV, PUBLISH_STEPS
from conftest import DAY, NOW, ORG_DIR

H = 3600
D6, D7 = NOW - 4 * DAY, NOW - 3 * DAY
#: The crashing run: 05:00 of day 6 → 06:00 of day 7 at 1h, i.e. a part of each of the two days.
CRASH_RANGE = (D6 + 5 * H, D7 + 6 * H)
KILL_POINTS = [f"{step}@{n}" for n in (1, 2) for step in PUBLISH_STEPS]


def run_writer(output_path: str, conn: str | None, start: int, end: int, *, kill_at: str | None, tmpdir: Path) -> int:
    """A writer run: in this process without a fault, else in a forked process that the fault kills.

    Returns 0 on success, or the forked writer's exit code (or -signal)."""
    if kill_at is None:
        saved, tempfile.tempdir = tempfile.tempdir, str(tmpdir)
        try:
            OpenAIUsageOperator(
                task_id="w", endpoint="completions", output_path=output_path, output_conn_id=conn, bucket_width="1h",
                group_by=["model"], start_time=start, end_time=end,
            ).execute({})
        finally:
            tempfile.tempdir = saved
        return 0
    pid = os.fork()
    if pid == 0:  # the writer
        code = 1
        try:
            if kill_at:
                os.environ[FAULT_ENV] = kill_at
            tempfile.tempdir = str(tmpdir)
            _forget_parent_filesystems()
            OpenAIUsageOperator(
                task_id="w", endpoint="completions", output_path=output_path, output_conn_id=conn, bucket_width="1h",
                group_by=["model"], start_time=start, end_time=end,
            ).execute({})
            code = 0
        except BaseException:  # noqa: BLE001 - report through the exit code
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    return -os.WTERMSIG(status) if os.WIFSIGNALED(status) else os.WEXITSTATUS(status)


def _forget_parent_filesystems() -> None:
    """Async filesystems (s3fs) refuse to run in a forked child; a fresh process would have none cached."""
    from airflow.sdk.io import store

    store._STORE_CACHE.clear()
    try:
        import s3fs

        s3fs.S3FileSystem.clear_instance_cache()
    except ImportError:
        pass


class LocalStore:
    def __init__(self, root: Path) -> None:
        self.root = root

    def url(self, name: str) -> str:
        return str(self.root / name)

    conn = None

    def tree(self, name: str) -> dict[str, str]:
        base = self.root / name
        return {str(p.relative_to(base)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(base.rglob("*")) if p.is_file()}


class S3Store:
    conn = "moto_s3"

    def __init__(self, bucket: str, endpoint: str) -> None:
        import boto3

        self.bucket = bucket
        self.s3 = boto3.client("s3", endpoint_url=endpoint, aws_access_key_id="testing", aws_secret_access_key="testing", region_name="us-east-1")

    def url(self, name: str) -> str:
        return f"s3://{self.bucket}/{name}"

    def tree(self, name: str) -> dict[str, str]:
        out = {}
        for page in self.s3.get_paginator("list_objects_v2").paginate(Bucket=self.bucket, Prefix=f"{name}/"):
            for obj in page.get("Contents", []):
                body = self.s3.get_object(Bucket=self.bucket, Key=obj["Key"])["Body"].read()
                out[obj["Key"][len(name) + 1 :]] = hashlib.sha256(body).hexdigest()
        return out


def data_of(tree: dict[str, str]) -> dict[str, str]:
    return {k: v for k, v in tree.items() if "/date=" in f"/{k}" and "/_openai_usage/" not in f"/{k}"}


def leftovers(tree: dict[str, str]) -> list[str]:
    return [k for k in tree if "/_openai_usage/tmp/" in f"/{k}"]


def check_crashes(store, fake_api, tmp_path: Path) -> None:
    tmpdir = tmp_path / "os-tmp"
    tmpdir.mkdir()

    def prepare_old(name: str) -> None:
        fake_api.controls.revisions.clear()
        assert run_writer(store.url(name), store.conn, D6, D7 + DAY, kill_at=None, tmpdir=tmpdir) == 0
        fake_api.controls.revisions.update({D6: 1, D7: 1})

    prepare_old("reference")
    old = store.tree("reference")
    assert run_writer(store.url("reference"), store.conn, *CRASH_RANGE, kill_at=None, tmpdir=tmpdir) == 0
    new = store.tree("reference")
    old_data, new_data = data_of(old), data_of(new)
    assert old_data.keys() == new_data.keys() and len(new_data) == 2
    assert all(old_data[k] != new_data[k] for k in old_data), "the run must change both days for the test to mean anything"

    for i, kill_at in enumerate(KILL_POINTS):
        name = f"crash-{i}"
        prepare_old(name)
        status = run_writer(store.url(name), store.conn, *CRASH_RANGE, kill_at=kill_at, tmpdir=tmpdir)
        assert status == -signal.SIGKILL, f"{kill_at}: the writer was not killed (status {status})"
        after = store.tree(name)
        data = data_of(after)
        # I2: each day is exactly as it was or exactly as the run leaves it; one file per partition.
        assert data.keys() == old_data.keys(), (kill_at, sorted(after))
        for key, digest in data.items():
            assert digest in (old_data[key], new_data[key]), f"{kill_at}: {key} is neither the old nor the new day"
        step, n = kill_at.split("@")
        published = sum(1 for k in data if data[k] == new_data[k])
        expected_published = (int(n) - 1) + (1 if PUBLISH_STEPS.index(step) >= PUBLISH_STEPS.index("data-published") else 0)
        assert published == expected_published, f"{kill_at}: {published} days published"
        # I4: the next run cleans up and finishes: the tree is the clean run's, nothing left over.
        assert run_writer(store.url(name), store.conn, *CRASH_RANGE, kill_at=None, tmpdir=tmpdir) == 0
        final = store.tree(name)
        assert not leftovers(final), (kill_at, leftovers(final))
        assert {k: v for k, v in final.items() if "/locks/" not in k} == {k: v for k, v in new.items() if "/locks/" not in k}, kill_at
        assert not [p.name for p in tmpdir.iterdir()], f"{kill_at}: OS temp files left: {list(tmpdir.iterdir())}"


def test_sigkill_at_every_publishing_step_on_local_disk(fake_api, conn_id, tmp_path):
    store = LocalStore(tmp_path / "out")
    check_crashes(store, fake_api, tmp_path)
    # Killed before the commit, a local writer leaves its temp beside the data, never in a partition:
    prepare = tmp_path / "out" / "leftover"
    assert run_writer(str(prepare), None, D6, D7 + DAY, kill_at=None, tmpdir=tmp_path / "os-tmp") == 0
    assert run_writer(str(prepare), None, *CRASH_RANGE, kill_at="temp-written@1", tmpdir=tmp_path / "os-tmp") == -signal.SIGKILL
    temps = [p.relative_to(prepare) for p in prepare.rglob("*.tmp")]
    assert temps and all(str(p).startswith(f"completions/{ORG_DIR}/_openai_usage/tmp/") for p in temps), temps


def test_sigkill_at_every_publishing_step_on_s3(fake_api, conn_id, s3_bucket, moto_server, tmp_path):
    check_crashes(S3Store(s3_bucket, moto_server), fake_api, tmp_path)
    # Killed before the commit, an object-store writer leaves its temp in the OS temp folder only.
    os_tmp = tmp_path / "os-tmp-2"
    os_tmp.mkdir()
    url = f"s3://{s3_bucket}/leftover"
    assert run_writer(url, "moto_s3", D6, D7 + DAY, kill_at=None, tmpdir=os_tmp) == 0
    assert run_writer(url, "moto_s3", *CRASH_RANGE, kill_at="temp-written@1", tmpdir=os_tmp) == -signal.SIGKILL
    assert [p.name.startswith("openai-usage-") for p in os_tmp.iterdir()] == [True]
    assert not leftovers(S3Store(s3_bucket, moto_server).tree("leftover"))


@pytest.mark.parametrize("step", PUBLISH_STEPS)
def test_every_step_is_a_fault_point(step):
    """The list the crash test iterates is the list the publisher reaches (a renamed step fails here)."""
    source = (Path(__file__).resolve().parents[2] / "airflow_provider_openai_usage" / "storage" / "days.py").read_text()
    assert f'fault_point("{step}")' in source


def test_sigkill_inside_a_batch_of_whole_days_leaves_a_prefix_published(fake_api, conn_id, tmp_path):
    """Whole days are published as one batch (staged on threads, made durable together, then published in
    day order): a kill at the n-th day's step leaves exactly the days before it (and that day, once its
    file is in place) published, nothing half-written, and the next run finishes the tree."""
    store = LocalStore(tmp_path / "out")
    tmpdir = tmp_path / "os-tmp"
    tmpdir.mkdir()
    first, end = D6 - 3 * DAY, D7 + DAY  # five whole days, one batch
    fake_api.controls.revisions.clear()
    assert run_writer(store.url("old"), None, first, end, kill_at=None, tmpdir=tmpdir) == 0
    fake_api.controls.revisions.update({d: 1 for d in range(first, end, DAY)})
    assert run_writer(store.url("new"), None, first, end, kill_at=None, tmpdir=tmpdir) == 0
    old_data, new_data = data_of(store.tree("old")), data_of(store.tree("new"))
    assert len(new_data) == 5 and all(old_data[k] != new_data[k] for k in new_data), "the revision must change every day"
    for step in PUBLISH_STEPS:
        for n in (1, 3, 5):
            name = f"batch-{step}-{n}"
            fake_api.controls.revisions.clear()
            assert run_writer(store.url(name), None, first, end, kill_at=None, tmpdir=tmpdir) == 0
            fake_api.controls.revisions.update({d: 1 for d in range(first, end, DAY)})
            assert run_writer(store.url(name), None, first, end, kill_at=f"{step}@{n}", tmpdir=tmpdir) == -signal.SIGKILL
            data = data_of(store.tree(name))
            assert data.keys() == new_data.keys()
            published = [k for k in sorted(data) if data[k] == new_data[k]]
            kept = [k for k in sorted(data) if data[k] == old_data[k]]
            expected = (n - 1) + (1 if PUBLISH_STEPS.index(step) >= PUBLISH_STEPS.index("data-published") else 0)
            assert published == sorted(new_data)[:expected] and len(kept) == 5 - expected, (step, n, published)
            assert run_writer(store.url(name), None, first, end, kill_at=None, tmpdir=tmpdir) == 0
            final = store.tree(name)
            assert data_of(final) == new_data and not leftovers(final), (step, n)
