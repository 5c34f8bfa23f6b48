"""report/publish.py: a small file appears whole or not at all, and a missing one reads as None."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_openai_usage.report.publish import publish_bytes, read_bytes_if_exists


def test_publish_replaces_the_file_whole_and_leaves_no_temp(tmp_path: Path):
    dest = ObjectStoragePath(tmp_path.as_uri()) / "reports" / "date=2025-11-09" / "spend.html"
    assert read_bytes_if_exists(dest) is None
    publish_bytes(dest, b"first")
    publish_bytes(dest, b"second")
    assert read_bytes_if_exists(dest) == b"second"
    assert [p.name for p in (tmp_path / "reports" / "date=2025-11-09").iterdir()] == ["spend.html"]


def test_a_crash_before_the_rename_keeps_the_old_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    dest = ObjectStoragePath(tmp_path.as_uri()) / "marker.json"
    publish_bytes(dest, b"old")

    def killed(src: str, dst: str) -> None:
        raise OSError("killed while publishing")

    monkeypatch.setattr(os, "replace", killed)
    with pytest.raises(OSError, match="killed"):
        publish_bytes(dest, b"new")
    assert (tmp_path / "marker.json").read_bytes() == b"old"
    assert [p.name for p in tmp_path.iterdir()] == ["marker.json"]
