"""Landed data for the report and alert tests: the real pull operator against the fake API.

Nothing is hand-written into Parquet: the partitions are what ``OpenAIUsageOperator`` lands, so
the report is tested on the files users get. The oracles read those files back without our code.
"""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path

import pendulum

#: tests/conftest.py's fixed "now" (2025-11-10T00:00:00Z); repeated here because under tests/integration
#: ``conftest`` names that folder's own conftest module.
NOW = 1762732800

#: The organization the fake API serves by default (``FakeOrganization.organization_id``): where
#: ``land`` puts the days, ``<dataset>/organization=<ORG>/``.
ORG = "org-FakeUsage7Fk3bQz9Mn2Lp5"
#: A second organization for the tests of several organizations in one lake.
ORG_B = "org-SecondFakeOrgB2x9Qw4"

#: What the report needs: costs by project and line item, completions by project and model.
GROUP_BY = {"costs": ["project_id", "line_item"], "completions": ["project_id", "model"]}


@contextmanager
def _env(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


def fake_api(seed: int, now: int, organization_id: str = ORG):
    """The fake API serving one organization (``ORG`` by default; another id: another organization)."""
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI
    from airflow_provider_openai_usage.testing.data import FakeOrganization

    return FakeOpenAIUsageAPI(seed=seed, now=now, organization=FakeOrganization(seed=seed, organization_id=organization_id))


def land(
    output_path: str, start: str, end: str, *, seed: int = 7, now: int = NOW, endpoints=("costs", "completions"),
    output_conn_id: str | None = None, organization_id: str = ORG,
) -> None:
    """Pull ``[start, end)`` of each endpoint of one organization from a fresh fake API into ``output_path``."""
    from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

    with (
        fake_api(seed, now, organization_id) as api,
        _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()),
    ):
        for key in endpoints:
            op = OpenAIUsageOperator(
                task_id=f"pull_{key}", endpoint=key, group_by=GROUP_BY[key], output_path=output_path, output_conn_id=output_conn_id,
                start_time=f"{start}T00:00:00Z", end_time=f"{end}T00:00:00Z",
            )
            op.execute({"data_interval_start": pendulum.parse(start), "data_interval_end": pendulum.parse(end)})


def snapshot_directory(output_path: str, date: str, *, seed: int = 7, now: int = NOW, organization_id: str = ORG) -> None:
    """The organization directory as ``OpenAIDirectoryOperator`` lands it for a run whose interval ends on ``date``."""
    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator

    with (
        fake_api(seed, now, organization_id) as api,
        _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()),
    ):
        op = OpenAIDirectoryOperator(task_id="snapshot_directory", output_path=output_path, entities=["projects", "project_spend_limits"])
        op.execute({"data_interval_end": pendulum.parse(date)})


def org_root(root: Path, dataset: str, organization_id: str = ORG) -> Path:
    """``<root>/<dataset>/organization=<id>``: where one organization's days of a dataset are."""
    return root / dataset / f"organization={organization_id}"


def partition_sums(costs_root: Path, project: str | None = None) -> dict[str, Decimal]:
    """Oracle: each landed day's exact cost, summed in plain Python from each file's rows."""
    import pyarrow.parquet as pq

    sums: dict[str, Decimal] = {}
    for part in sorted(costs_root.glob("date=*/*.parquet")):
        rows = pq.read_table(part, columns=["project_id", "amount_value"]).to_pylist()
        day = part.parent.name.removeprefix("date=")
        sums[day] = sums.get(day, Decimal(0)) + sum(
            (r["amount_value"] for r in rows if project is None or r["project_id"] == project), Decimal(0)
        )
    return sums


#: The report day of the report tests, and a day of their landed range that never landed.
REPORT_DAY = dt.date(2025, 11, 9)
GAP = "2025-11-03"
_LANDED_WITH_GAP: dict[str, Path] = {}


def land_with_gap(tmp_path_factory) -> Path:
    """36 days of costs and completions (2025-10-05 to 2025-11-09) as the pull operator lands them,
    with ``GAP`` never landed; landed once per session and shared (tests that change it copy it)."""
    import shutil

    if "root" not in _LANDED_WITH_GAP:
        root = tmp_path_factory.mktemp("landed")
        land(root.as_uri(), "2025-10-05", "2025-11-10")
        shutil.rmtree(org_root(root, "costs") / f"date={GAP}")
        _LANDED_WITH_GAP["root"] = root
    return _LANDED_WITH_GAP["root"]


def location(root: Path):
    """``root`` as the ObjectStoragePath the report reads."""
    from airflow.sdk import ObjectStoragePath

    return ObjectStoragePath(root.as_uri())
