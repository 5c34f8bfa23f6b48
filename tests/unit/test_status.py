"""The landing status and the re-hash of landed files (``status.py``), on a lake the real operators
landed from the fake API: whole days, a part of a day, a directory snapshot, a deleted day file, a
tampered day file and a day file without its manifest."""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path

import pendulum
import pytest
from report_support import ORG, ORG_B, GROUP_BY, _env, fake_api, land, location, org_root, snapshot_directory

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.status import (
    Landing,
    check_datasets,
    dataset_status,
    find_datasets,
    lake_status,
    parse_day,
    verify_lake,
    yesterday_utc,
)

THROUGH = dt.date(2025, 11, 9)


def land_part_of_day(output_path: str) -> None:
    """Hours 00-06 of 2025-11-09 of completions at 1h: a day landed in part (hourly runs still going)."""
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

    start, end = "2025-11-09T00:00:00Z", "2025-11-09T06:00:00Z"
    with (
        fake_api(7, 1762732800) as api,
        _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()),
    ):
        op = OpenAIUsageOperator(
            task_id="pull_hourly", endpoint="completions", group_by=GROUP_BY["completions"], output_path=output_path,
            bucket_width="1h", start_time=start, end_time=end,
        )
        op.execute({"data_interval_start": pendulum.parse(start), "data_interval_end": pendulum.parse(end)})


@pytest.fixture(scope="module")
def lake(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("status-lake")
    land(root.as_uri(), "2025-11-03", "2025-11-09")
    land_part_of_day(root.as_uri())
    snapshot_directory(root.as_uri(), "2025-11-09")
    return root


@pytest.fixture()
def damaged(lake: Path, tmp_path: Path) -> Path:
    """A copy of the lake with costs 11-05 deleted, costs 11-07 tampered, completions 11-04's manifest removed."""
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(lake, root)
    (org_root(root, "costs") / "date=2025-11-05" / "data.parquet").unlink()
    tampered = org_root(root, "costs") / "date=2025-11-07" / "data.parquet"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    (org_root(root, "completions") / "_openai_usage" / "manifests" / "date=2025-11-04.json").unlink()
    return root


@pytest.fixture(scope="module")
def two_orgs(lake: Path, tmp_path_factory) -> Path:
    """The lake plus a second organization's costs, 2025-11-06 to 2025-11-08 only (it joined later)."""
    import shutil

    root = tmp_path_factory.mktemp("two-orgs") / "lake"
    shutil.copytree(lake, root)
    land(root.as_uri(), "2025-11-06", "2025-11-09", seed=11, endpoints=("costs",), organization_id=ORG_B)
    return root


def test_every_dataset_under_the_output_path_is_found_by_its_control_folder(lake: Path) -> None:
    found = find_datasets(location(lake))
    assert found == ["completions", "costs", "directory/project_spend_limits", "directory/projects"]


def test_whole_days_are_landed_a_part_of_a_day_is_partial(lake: Path) -> None:
    status = dataset_status(location(lake), "completions", through=THROUGH, organization_id=ORG)
    assert status.landed == [f"2025-11-0{d}" for d in range(3, 9)]
    assert status.partial == ["2025-11-09"] and status.missing == []
    assert status.first == "2025-11-03" and status.last_landed_day == "2025-11-09"
    assert status.restated is None and status.last_run is None  # no Airflow record given: unknown, not "none"


def test_days_without_a_file_up_to_through_are_missing(damaged: Path) -> None:
    costs = dataset_status(location(damaged), "costs", through=THROUGH, organization_id=ORG)
    assert costs.missing == ["2025-11-05", "2025-11-09"] and not costs.complete
    assert "2025-11-07" in costs.landed  # a tampered file is still landed; verify is what tells


def test_since_widens_the_range_before_the_first_landed_day(lake: Path) -> None:
    status = dataset_status(location(lake), "costs", since=dt.date(2025, 11, 1), through=dt.date(2025, 11, 8), organization_id=ORG)
    assert status.missing == ["2025-11-01", "2025-11-02"] and len(status.landed) == 6


def test_the_default_through_is_yesterday_or_the_last_landed_day(lake: Path) -> None:
    assert yesterday_utc(dt.datetime(2025, 11, 10, 0, 30, tzinfo=dt.timezone.utc)) == dt.date(2025, 11, 9)
    # The lake's days are long past: every day since the last landed one is missing.
    status = dataset_status(location(lake), "costs", organization_id=ORG)
    assert status.through == yesterday_utc().isoformat() and "2025-11-09" in status.missing
    # A snapshot is dated by its run's interval end: a snapshot of "today" is not beyond the range.
    snapshot = dataset_status(location(lake), "directory/projects", through=None, organization_id=ORG)
    assert snapshot.landed[0] == "2025-11-09"


def test_restated_days_and_the_last_run_come_from_the_landing_events(lake: Path) -> None:
    def landing(day: str, run: str, minute: int) -> Landing:
        return Landing(day, "openai_usage_daily", run, "pull_costs", -1, dt.datetime(2025, 11, 10, 1, minute, tzinfo=dt.timezone.utc))

    events = {
        "2025-11-07": [landing("2025-11-07", "scheduled__a", 0), landing("2025-11-07", "scheduled__b", 5)],
        "2025-11-08": [landing("2025-11-08", "scheduled__b", 4)],
    }
    status = dataset_status(location(lake), "costs", through=THROUGH, events=events, organization_id=ORG)
    assert status.restated == ["2025-11-07"]
    assert status.last_run is not None and status.last_run.run_id == "scheduled__b" and status.last_run.day == "2025-11-07"
    assert json.loads(json.dumps(status.as_dict()))["last_run"]["task_id"] == "pull_costs"


def test_verify_finds_nothing_on_a_lake_as_landed(lake: Path) -> None:
    checked, problems = verify_lake(location(lake))
    assert problems == [] and checked == 6 + 7 + 1 + 1


def test_verify_reports_the_deleted_the_tampered_and_the_unrecorded_file(damaged: Path) -> None:
    _, problems = verify_lake(location(damaged))
    found = {(p.dataset, p.organization_id, p.day, p.kind) for p in problems}
    assert found == {
        ("costs", ORG, "2025-11-05", "missing"),
        ("costs", ORG, "2025-11-07", "differs"),
        ("completions", ORG, "2025-11-04", "unrecorded"),
    }
    differs = next(p for p in problems if p.kind == "differs")
    assert "its manifest says" in differs.detail


def test_a_dataset_that_is_not_there_is_named_with_what_is(lake: Path) -> None:
    with pytest.raises(OpenAIUsageValidationError, match=r"\['cost'\] are not under .*it holds \['completions', 'costs'"):
        check_datasets(location(lake), ["cost"])


def test_a_bad_day_names_the_parameter_and_the_form(lake: Path) -> None:
    with pytest.raises(OpenAIUsageValidationError, match=r"--through='11/09/2025' is not a UTC day; give it as YYYY-MM-DD"):
        parse_day("11/09/2025", "--through")


def test_an_empty_output_path_has_no_dataset(tmp_path: Path) -> None:
    assert lake_status(location(tmp_path)) == [] and find_datasets(location(tmp_path / "nothing")) == []


def test_each_organization_of_a_dataset_has_its_own_row(two_orgs: Path) -> None:
    statuses = lake_status(location(two_orgs), datasets=["costs"], through=dt.date(2025, 11, 8))
    assert [(s.dataset, s.organization_id) for s in statuses] == [("costs", ORG), ("costs", ORG_B)]
    first, second = statuses
    assert len(first.landed) == 6 and first.first == "2025-11-03"
    # The second organization's range starts at its own first day: its later start is not "missing".
    assert second.landed == ["2025-11-06", "2025-11-07", "2025-11-08"] and second.missing == []
    assert [s.as_dict()["organization_id"] for s in statuses] == [ORG, ORG_B]


def test_the_organization_filter_keeps_only_that_organization(two_orgs: Path) -> None:
    statuses = lake_status(location(two_orgs), through=dt.date(2025, 11, 8), organizations=[ORG_B])
    assert {(s.dataset, s.organization_id) for s in statuses} == {("costs", ORG_B)}
    checked, problems = verify_lake(location(two_orgs), organizations=[ORG_B])
    assert checked == 3 and problems == []


def test_a_damaged_day_of_one_organization_is_not_blamed_on_the_other(two_orgs: Path, tmp_path: Path) -> None:
    import shutil

    root = tmp_path / "lake"
    shutil.copytree(two_orgs, root)
    tampered = org_root(root, "costs", ORG_B) / "date=2025-11-07" / "data.parquet"
    tampered.write_bytes(tampered.read_bytes() + b"\0")
    _, problems = verify_lake(location(root))
    assert [(p.dataset, p.organization_id, p.day, p.kind) for p in problems] == [("costs", ORG_B, "2025-11-07", "differs")]


def test_bare_day_events_of_a_dataset_with_two_organizations_are_unknown_not_guessed() -> None:
    from airflow_provider_openai_usage.status import organization_events

    at = dt.datetime(2025, 11, 10, tzinfo=dt.timezone.utc)
    bare = {"2025-11-07": [Landing("2025-11-07", "d", "r", "t", -1, at)]}
    assert organization_events(bare, ORG, 1) == {"2025-11-07": bare["2025-11-07"]}
    assert organization_events(bare, ORG, 2) is None
    keyed = {f"{ORG_B}|2025-11-07": [Landing("2025-11-07", "d", "r", "t", -1, at)]}
    assert organization_events(keyed, ORG, 2) == {} and list(organization_events(keyed, ORG_B, 2) or {}) == ["2025-11-07"]
