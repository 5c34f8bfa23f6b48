"""storage/conditional.py: versions and conditional writes on moto's S3 server; none on a local disk."""

from __future__ import annotations

import pytest

from airflow_provider_openai_usage.storage.conditional import ABSENT, WriteConflict, preconditions_for


def s3_path(bucket: str, key: str):
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(f"s3://{bucket}/{key}", conn_id="moto_s3")


def test_a_local_disk_has_no_preconditions(tmp_path):
    from airflow.sdk import ObjectStoragePath

    assert preconditions_for(ObjectStoragePath(tmp_path.as_uri())) is None


def test_create_only_then_write_if_unchanged_and_a_stale_version_is_a_conflict(s3_bucket):
    path = s3_path(s3_bucket, "costs/date=2025-11-09/data.parquet")
    store = preconditions_for(path)
    assert store is not None
    assert store.read(path) == (None, ABSENT) and store.version(path) == ABSENT
    first = store.write(path, b"one", ABSENT)
    assert store.read(path) == (b"one", first) and store.version(path) == first
    with pytest.raises(WriteConflict):
        store.write(path, b"again", ABSENT)  # "the day had no file" no longer holds
    second = store.write(path, b"two", first)
    with pytest.raises(WriteConflict):
        store.write(path, b"lost update", first)  # read before "two" was written
    assert store.read(path) == (b"two", second)
    assert store.write(path, b"forced", None) != second  # unconditional writes stay possible
