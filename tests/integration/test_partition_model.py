"""Model-based test of invariants I1 and I3 (docs/data-layout.md): random operator writes vs a model.

A hypothesis state machine runs real ``OpenAIUsageOperator`` writes against the fake API — widths
1d/1h/1m, windows inside and across days, multi-day ranges, ``restate_days``, reruns, late revisions
of the API's numbers, grouping/filter/format changes — into ``file://`` and into moto S3. After every
step, each day partition is read back and compared with a model: for every bucket window any run
wrote, the rows of the latest run that covered it (taken from the hook, i.e. the API), nothing
twice, nothing else; each day's recorded identity; one file per partition and no temporary files.

Seeded and derandomized: the same steps run on every machine. A failure prints the steps.
"""

from __future__ import annotations

import datetime as dt
import itertools
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test

from airflow_provider_openai_usage.exceptions import OpenAIUsageStorageError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.storage import arrow_schema, list_day_files, read_day_table
from airflow_provider_openai_usage.endpoints import ENDPOINTS, WIDTH_SECONDS
from conftest import DAY, NOW, ORG_DIR

ENDPOINT = "completions"
FIRST_DAY = NOW - 5 * DAY  # days FIRST_DAY .. NOW - 1 DAY; restate_days may reach one day earlier
H, M = 3600, 60
GROUPINGS = ((), ("model",), ("project_id", "model"))
FILTERS = ((), (("models", ("gpt-4o-2024-08-06", "o3-2025-04-16")),))


@dataclass(frozen=True)
class Settings:
    width: str
    group_by: tuple[str, ...]
    filters: tuple[tuple[str, tuple[str, ...]], ...]
    file_format: str

    def identity(self) -> dict[str, Any]:
        return {"bucket_width": self.width, "group_by": list(self.group_by), "filters": {k: list(v) for k, v in self.filters}, "format": self.file_format}


@dataclass
class ModelDay:
    settings: Settings
    #: bucket start → that bucket's rows as the latest covering run wrote them.
    buckets: dict[int, list[tuple]] = field(default_factory=dict)


def label(t: int) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).strftime("%Y-%m-%d")


def row_key(row: dict[str, Any], names: list[str]) -> tuple:
    out = []
    for name in names:
        v = row[name]
        if isinstance(v, dt.datetime):
            v = int(v.timestamp())
        out.append(v)
    return tuple(out)


class PartitionModel(RuleBasedStateMachine):
    """Set ``target`` (a factory of fresh output locations) and ``conn_id`` before running."""

    target: Any = None
    conn_id: str = ""
    fake_api: Any = None
    counter = itertools.count()
    #: What the steps exercised, over all examples (the test asserts each kind happened).
    outcomes: Counter = Counter()

    def __init__(self) -> None:
        super().__init__()
        self.output_path, self.output_conn_id, self.root = self.target(next(self.counter))
        self.days: dict[int, ModelDay] = {}
        self.fake_api.controls.revisions.clear()
        self.schema = arrow_schema(ENDPOINTS[ENDPOINT], organization=True)
        # The hook's rows have no organization_id (the files do: one value, checked by test_organizations_in_airflow).
        self.names = [n for n in self.schema.names if n != "organization_id"]
        self.last_success: tuple | None = None
        self.revised_since_last = False
        self.bytes_after_last: dict[str, bytes] = {}

    # -- the system under test ------------------------------------------------------------------------
    def _run(self, s: Settings, start: int, end: int, restate_days: int) -> None:
        op = OpenAIUsageOperator(
            task_id="model", endpoint=ENDPOINT, output_path=self.output_path, output_conn_id=self.output_conn_id,
            start_time=start, end_time=end, bucket_width=s.width, group_by=list(s.group_by) or None,
            filters={k: list(v) for k, v in s.filters} or None, file_format=s.file_format, restate_days=restate_days,
        )
        expected_refusal = self._expected_refusal(s, start - restate_days * DAY, end)
        if expected_refusal:
            with pytest.raises(OpenAIUsageStorageError, match=expected_refusal):
                op.execute({})
            self.outcomes["refused: " + ("format" if "already holds a" in expected_refusal else "identity")] += 1
            return
        op.execute({})
        self._apply(s, start - restate_days * DAY, end)
        self.last_success = (s, start, end, restate_days)
        self.revised_since_last = False
        self.bytes_after_last = self._bytes()

    # -- the model -----------------------------------------------------------------------------------
    @staticmethod
    def _windows(start: int, end: int) -> list[tuple[int, int, int]]:
        out = []
        for day in range(start - start % DAY, end, DAY):
            out.append((day, max(start, day), min(end, day + DAY)))
        return out

    def _expected_refusal(self, s: Settings, start: int, end: int) -> str | None:
        for day, _, _ in self._windows(start, end):
            held = self.days.get(day)
            if held is not None and held.settings.file_format != s.file_format:
                return f"date={label(day)} already holds a {held.settings.file_format} file"
        for day, lo, hi in self._windows(start, end):
            held = self.days.get(day)
            if (lo, hi) != (day, day + DAY) and held is not None and held.settings != s:
                return f"of date={label(day)}, which already holds other rows"
        return None

    def _apply(self, s: Settings, start: int, end: int) -> None:
        hook = OpenAIUsageHook(self.conn_id)
        try:
            rows = list(hook.iter_rows(ENDPOINT, start, end, bucket_width=s.width, group_by=list(s.group_by) or None, **{k: list(v) for k, v in s.filters}))
        finally:
            hook.close()
        by_bucket: dict[int, list[tuple]] = {}
        width = WIDTH_SECONDS[s.width]
        for t in range(start, end, width):
            by_bucket[t] = []
        for row in rows:
            by_bucket[row["start_time"]].append(row_key(row, self.names))
        for day, lo, hi in self._windows(start, end):
            model = self.days.get(day)
            whole = (lo, hi) == (day, day + DAY)
            self.outcomes[
                ("whole day " + ("new" if model is None else "same settings" if model.settings == s else "other settings"))
                if whole else ("part of a new day" if model is None else "part merged into a day")
            ] += 1
            if model is None or whole:
                model = self.days[day] = ModelDay(s)
            for t in [t for t in model.buckets if lo <= t < hi]:
                del model.buckets[t]
            model.buckets.update({t: r for t, r in by_bucket.items() if lo <= t < hi})

    # -- rules ---------------------------------------------------------------------------------------
    settings_strategy = st.builds(
        Settings,
        width=st.sampled_from(("1d", "1h", "1h", "1m")),
        group_by=st.sampled_from(GROUPINGS),
        filters=st.sampled_from(FILTERS),
        file_format=st.sampled_from(("parquet", "parquet", "parquet", "jsonl")),
    )

    @initialize()
    def start_empty(self) -> None:
        pass

    @rule(s=settings_strategy, first=st.integers(0, 4), days=st.integers(1, 3), restate=st.sampled_from((0, 0, 0, 1)))
    def write_days(self, s: Settings, first: int, days: int, restate: int) -> None:
        """Whole days (any width): a daily run, a backfill, a restating run."""
        start = FIRST_DAY + first * DAY
        self._run(s, start, min(start + days * DAY, NOW), restate)

    @rule(s=settings_strategy.filter(lambda s: s.width != "1d"), hour=st.integers(0, 5 * 24 - 1), hours=st.sampled_from((1, 1, 2, 3, 7, 26)), restate=st.sampled_from((0, 0, 0, 1)))
    def write_hours(self, s: Settings, hour: int, hours: int, restate: int) -> None:
        """Parts of days at 1h or 1m: hourly runs, windows across midnight, multi-day ranges."""
        start = FIRST_DAY + hour * H
        self._run(s, start, min(start + hours * H, NOW), restate)

    @rule(s=settings_strategy.filter(lambda s: s.width == "1m"), minute=st.sampled_from((0, 30, 59 * 60 // M, 23 * 60 + 30)), day=st.integers(0, 4), minutes=st.sampled_from((1, 30, 61, 90)))
    def write_minutes(self, s: Settings, minute: int, day: int, minutes: int) -> None:
        """Minute windows inside an hour, across hours and across midnight."""
        start = FIRST_DAY + day * DAY + minute * M
        self._run(s, start, min(start + minutes * M, NOW), 0)

    @precondition(lambda self: self.last_success is not None)
    @rule()
    def rerun_last(self) -> None:
        """The same run again: nothing changes, byte for byte (unless the API revised numbers since)."""
        assert self.last_success is not None
        s, start, end, restate = self.last_success
        before = self._bytes()
        unchanged = not self.revised_since_last
        self._run(s, start, end, restate)
        if unchanged:
            assert self._bytes() == before, "a rerun with the same answers must give the same bytes"

    @rule(day=st.integers(-1, 4))
    def revise(self, day: int) -> None:
        """OpenAI revises a day's numbers: later runs land the new ones, earlier files keep the old."""
        t = FIRST_DAY + day * DAY
        self.fake_api.controls.revisions[t] = self.fake_api.controls.revisions.get(t, 0) + 1
        self.revised_since_last = True

    # -- after every step ------------------------------------------------------------------------------
    def _bytes(self) -> dict[str, bytes]:
        return {date: path.read_bytes() for date, path in list_day_files(self.root).items()}

    @invariant()
    def partitions_match_the_model(self) -> None:
        on_disk = list_day_files(self.root)
        assert sorted(on_disk) == sorted(label(d) for d in self.days), "exactly the days any run wrote, one file each"
        for day, model in self.days.items():
            path = on_disk[label(day)]
            assert path.name == f"data.{model.settings.file_format}"
            table = read_day_table(path, self.schema)
            got = [row_key(r, self.names) for r in table.to_pylist()]
            want = [r for t in sorted(model.buckets) for r in model.buckets[t]]
            assert got == want, f"date={label(day)}: {len(got)} rows on disk, {len(want)} in the model"
            manifest = self.root / "_openai_usage" / "manifests" / f"date={label(day)}.json"
            import json

            identity = json.loads(manifest.read_bytes())["identity"]
            assert {k: identity[k] for k in model.settings.identity()} == model.settings.identity()

    @invariant()
    def no_temporary_files_where_readers_look(self) -> None:
        for folder in self.root.iterdir() if self.root.exists() else []:
            if folder.name.startswith("date="):
                assert [p.name for p in folder.iterdir()] in ([], ["data.parquet"], ["data.jsonl"], ["data.csv"])
        tmp = self.root / "_openai_usage" / "tmp"
        leftovers = [p.name for p in tmp.iterdir()] if tmp.exists() else []
        assert not leftovers, leftovers


def _run_model(fake_api, conn_id, target, *, examples: int, steps: int) -> None:
    PartitionModel.target = staticmethod(target)
    PartitionModel.conn_id = conn_id
    PartitionModel.fake_api = fake_api
    fake_api.controls.page_size_cap = None
    PartitionModel.outcomes = Counter()
    run_state_machine_as_test(
        PartitionModel,
        settings=settings(
            max_examples=examples, stateful_step_count=steps, derandomize=True, deadline=None, database=None,
            suppress_health_check=list(HealthCheck), print_blob=True,
        ),
    )
    kinds = {"refused: format", "refused: identity", "whole day new", "whole day same settings", "whole day other settings", "part of a new day", "part merged into a day"}
    assert kinds <= set(PartitionModel.outcomes), PartitionModel.outcomes
    print(dict(PartitionModel.outcomes))


def test_partitions_match_the_model_on_local_disk(fake_api, conn_id, tmp_path):
    from airflow.sdk import ObjectStoragePath

    def target(n: int):
        out = tmp_path / f"run-{n}"
        return str(out), None, ObjectStoragePath(out.as_uri()) / ENDPOINT / ORG_DIR

    _run_model(fake_api, conn_id, target, examples=30, steps=12)


def test_partitions_match_the_model_on_s3(fake_api, conn_id, s3_bucket):
    from airflow.sdk import ObjectStoragePath

    def target(n: int):
        url = f"s3://{s3_bucket}/run-{n}"
        return url, "moto_s3", ObjectStoragePath(url, conn_id="moto_s3") / ENDPOINT / ORG_DIR

    _run_model(fake_api, conn_id, target, examples=10, steps=12)
