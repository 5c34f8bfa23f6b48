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


def test_report_chart_and_marker_files_get_the_mode_day_files_get(fake_api, conn_id, tmp_path):
    """One mode rule (#26 item 7): every published file is 0o666 minus the umask, like any file the
    process creates (0644 under 022), not mkstemp's private 0600."""
    import stat

    from storage_support import D8, write

    from airflow_provider_openai_usage.report.publish import publish_bytes

    write(tmp_path, D8, D8 + 86400, endpoint="completions")
    (day_file,) = (tmp_path / "completions").glob("organization=*/date=*/data.parquet")
    report = tmp_path / "reports" / "date=2025-11-08" / "spend.html"
    publish_bytes(ObjectStoragePath(tmp_path.as_uri()) / "reports" / "date=2025-11-08" / "spend.html", b"<html></html>")
    assert stat.S_IMODE(report.stat().st_mode) == stat.S_IMODE(day_file.stat().st_mode)
    assert stat.S_IMODE(report.stat().st_mode) & 0o044, "readable by the group and others under the usual umask"
