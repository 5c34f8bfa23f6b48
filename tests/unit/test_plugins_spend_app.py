"""The Spend view's pages (``plugins/spend_app.py``): escaping of hostile names, no credentials shown,
configured lakes only, days as dates."""

from __future__ import annotations

import datetime as dt

import pytest

from airflow_provider_openai_usage.plugins.spend_app import _check_day, _lake, output_paths, shown_path, status_table
from airflow_provider_openai_usage.status import DatasetStatus, Landing

HOSTILE = '<img src=x onerror="alert(1)">'


def test_names_and_run_ids_are_escaped_in_the_status_table() -> None:
    run = Landing("2025-11-09", HOSTILE, "run/<b>", "pull_costs", -1, dt.datetime(2025, 11, 10, tzinfo=dt.timezone.utc))
    status = DatasetStatus(dataset=HOSTILE, first="2025-11-09", through="2025-11-09", landed=["2025-11-09"], restated=[], last_run=run)
    page = status_table([status])
    assert HOSTILE not in page and "&lt;img src=x onerror=&quot;alert(1)&quot;&gt;" in page
    assert "run%2F%3Cb%3E" in page and 'target="_top"' in page  # quoted in the link, escaped as text


def test_unknown_restated_and_runs_say_unknown() -> None:
    page = status_table([DatasetStatus(dataset="costs", first=None, through="2025-11-09")])
    assert page.count("unknown") == 2


def test_credentials_in_an_output_path_are_not_shown() -> None:
    assert shown_path("s3://AKIA:secret@bucket/openai") == "s3://bucket/openai"
    assert shown_path("file:///data/openai") == "file:///data/openai"


def test_only_configured_lakes_by_index_and_days_as_dates(monkeypatch) -> None:
    from fastapi import HTTPException

    monkeypatch.setenv("OPENAI_USAGE_OUTPUT_PATH", "file:///lake/a")
    monkeypatch.setenv("AIRFLOW__OPENAI_USAGE__UI_OUTPUT_PATHS", "s3://b/openai, file:///lake/a")
    assert output_paths() == ["file:///lake/a", "s3://b/openai"]
    assert _lake(1) == "s3://b/openai"
    with pytest.raises(HTTPException, match="lake=2 is not one of the 2 configured"):
        _lake(2)
    with pytest.raises(HTTPException) as bad_day:
        _check_day("../../etc/passwd")
    assert bad_day.value.status_code == 400


def test_no_configured_lake_names_the_setting(monkeypatch) -> None:
    from fastapi import HTTPException

    monkeypatch.delenv("OPENAI_USAGE_OUTPUT_PATH", raising=False)
    monkeypatch.delenv("AIRFLOW__OPENAI_USAGE__UI_OUTPUT_PATHS", raising=False)
    with pytest.raises(HTTPException, match="OPENAI_USAGE_OUTPUT_PATH"):
        _lake(0)


def test_the_spend_view_lists_them_escaped() -> None:
    from airflow_provider_openai_usage.plugins.spend_app import alerts_table

    hostile = {"rule": "<b>r</b>", "project": None, "period": "2025-11", "amount": "1234.5678", "threshold": "0.01",
               "message": "<script>x</script>", "delivered": ["slack"]}
    page = alerts_table([hostile])
    assert "<script>" not in page and "&lt;script&gt;x&lt;/script&gt;" in page and "1 notifier(s)" in page and "1,234.57" in page
    assert "No spend alert fired" in alerts_table([])


def test_the_status_table_and_the_alerts_name_each_organization() -> None:
    from airflow_provider_openai_usage.plugins.spend_app import alerts_table

    page = status_table([
        DatasetStatus(dataset="costs", first=None, through="2025-11-09", organization_id="org-One1"),
        DatasetStatus(dataset="costs", first=None, through="2025-11-09", organization_id="org-Two2"),
        DatasetStatus(dataset="completions", first=None, through="2025-11-09"),
    ])
    assert "<th>organization</th>" in page
    assert "<td>costs</td><td>org-One1</td>" in page and "<td>costs</td><td>org-Two2</td>" in page
    assert "<td>completions</td><td>(not moved)</td>" in page
    fired = [{"rule": "daily", "organization": "Research (org-One1)", "organization_id": "org-One1", "project": None,
              "period": "2025-11-09", "amount": "3", "threshold": "1", "message": "m", "delivered": ["x"]}]
    table = alerts_table(fired)
    assert "<th>organization</th>" in table and "<td>Research (org-One1)</td>" in table
