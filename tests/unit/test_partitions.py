"""Landed days as asset partitions (``partitions.py``, wired into the usage and directory
operators): one partition key per UTC day whose content changed, none for a re-run that changed
nothing, and the plain event when ``asset_partitions=False``. Real operators against the fake API,
Airflow's own outlet event accessors."""

from __future__ import annotations

import shutil
from pathlib import Path

import pendulum
import pytest
from report_support import GROUP_BY, _env

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.partitions import changed_days, check_asset_partitions, day_digests
from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI
from conftest import ORG_DIR

NOW = 1762732800  # 2025-11-10T00:00:00Z
DAYS = ["2025-11-06", "2025-11-07", "2025-11-08", "2025-11-09"]


def run_costs(root: Path, **kw) -> tuple[OpenAIUsageOperator, set[str]]:
    """One run over 2025-11-06..09; the partition keys it added to its outlet's event."""
    from airflow.sdk.execution_time.context import OutletEventAccessors

    op = OpenAIUsageOperator(task_id="pull_costs", endpoint="costs", group_by=GROUP_BY["costs"], output_path=root.as_uri(), **kw)
    events = OutletEventAccessors()
    context = {
        "data_interval_start": pendulum.parse("2025-11-06"), "data_interval_end": pendulum.parse("2025-11-10"), "outlet_events": events,
    }
    with FakeOpenAIUsageAPI(seed=7, now=NOW) as api, _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()):
        op.execute(context)
    (asset,) = op.outlets
    return op, set(events[asset].partition_keys)


def test_a_first_run_adds_every_landed_day_as_a_partition_key(tmp_path: Path) -> None:
    _, keys = run_costs(tmp_path)
    assert sorted(keys) == DAYS


def test_a_rerun_with_the_same_answers_adds_none_and_a_relanded_day_adds_itself(tmp_path: Path) -> None:
    run_costs(tmp_path)
    _, again = run_costs(tmp_path)
    assert again == set()  # same bytes: nothing downstream to re-run
    shutil.rmtree(tmp_path / "costs" / ORG_DIR / "date=2025-11-07")
    (tmp_path / "costs" / ORG_DIR / "_openai_usage" / "manifests" / "date=2025-11-07.json").unlink()
    _, relanded = run_costs(tmp_path)
    assert relanded == {"2025-11-07"}


def test_asset_partitions_false_leaves_the_plain_event(tmp_path: Path) -> None:
    _, keys = run_costs(tmp_path, asset_partitions=False)
    assert keys == set()


def test_the_directory_snapshot_adds_its_date_per_entity(tmp_path: Path) -> None:
    from airflow.sdk.execution_time.context import OutletEventAccessors

    events = OutletEventAccessors()
    op = OpenAIDirectoryOperator(task_id="snapshot_directory", output_path=tmp_path.as_uri(), entities=["projects", "users"])
    with FakeOpenAIUsageAPI(seed=7, now=NOW) as api, _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()):
        op.execute({"data_interval_end": pendulum.now("UTC"), "outlet_events": events})
        today = pendulum.now("UTC").to_date_string()
        assert {a.uri.rsplit("/", 1)[-1]: set(events[a].partition_keys) for a in op.outlets} == {"projects": {today}, "users": {today}}
        second = OutletEventAccessors()
        op.execute({"data_interval_end": pendulum.now("UTC"), "outlet_events": second})
    assert all(second[a].partition_keys == set() for a in op.outlets)  # the same directory: no change


def test_digests_and_changes() -> None:
    assert changed_days({"a": "1", "b": "2"}, {"a": "1", "b": "3", "c": "4"}, ["a", "b", "c"]) == ["b", "c"]
    assert changed_days({}, {}, []) == []


def test_day_digests_read_the_manifests_in_range(tmp_path: Path) -> None:
    from airflow.sdk import ObjectStoragePath

    run_costs(tmp_path)
    digests = day_digests(ObjectStoragePath(f"file://{tmp_path}/costs/{ORG_DIR}"), "2025-11-07", "2025-11-08")
    assert sorted(digests) == ["2025-11-07", "2025-11-08"] and all(len(d or "") == 64 for d in digests.values())


def test_a_non_bool_is_refused_with_both_meanings() -> None:
    with pytest.raises(OpenAIUsageValidationError, match=r"asset_partitions='yes' must be True .* or False"):
        check_asset_partitions("yes")


def test_a_day_openai_revised_is_the_only_key_of_a_restatement(tmp_path: Path) -> None:
    """The same range pulled again after OpenAI revised 2025-11-07: only that day is a partition key."""
    import datetime as dt

    from airflow.sdk.execution_time.context import OutletEventAccessors

    from airflow_provider_openai_usage.times import day_start

    def run(api: FakeOpenAIUsageAPI) -> set[str]:
        op = OpenAIUsageOperator(task_id="pull_costs", endpoint="costs", group_by=GROUP_BY["costs"], output_path=tmp_path.as_uri())
        events = OutletEventAccessors()
        with _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()):
            op.execute({"data_interval_start": pendulum.parse("2025-11-06"), "data_interval_end": pendulum.parse("2025-11-10"),
                        "outlet_events": events})
        return set(events[op.outlets[0]].partition_keys)

    with FakeOpenAIUsageAPI(seed=7, now=NOW) as api:
        assert sorted(run(api)) == DAYS
        api.controls.revisions[day_start(dt.date(2025, 11, 7))] = 1
        assert run(api) == {"2025-11-07"}
