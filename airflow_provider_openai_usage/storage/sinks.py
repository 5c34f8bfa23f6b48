"""Sinks: where a run's days land. One small interface, three implementations.

A run hands a sink its days (``SinkDay``: a UTC date, the rows, and the window of that day the run
covers) and the identity of what it writes; the sink checks the identity before any request
(``prepare``) and publishes the days (``commit``):

- files (``FileSink``, the layout of ``storage.days``): each day is one file replaced in one atomic
  step; days are published one after the other. The usage operator keeps streaming days into
  files through ``storage.usage.PartitionWriter`` (batched, threaded) exactly as before: the file
  sink's ``commit`` is for the directory snapshot and the FOCUS export.
- Delta Lake (``storage.delta.DeltaSink``) and Apache Iceberg (``storage.iceberg.IcebergSink``):
  all of a run's days are one commit (replace exactly those days), and a part of a day is merged
  inside that commit from the table version the commit is based on; a concurrent commit to the
  same day fails the commit, and it is redone from the new version (``TableSink``).

What is common to both table formats lives here: the day rows from API buckets (``usage_days``,
the same checks as the file writer), the part-day merge (``merge_day``), the identity rules and
the ``date`` partition column. Importing this module is cheap (pyarrow only inside functions).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol

from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageResponseError,
    OpenAIUsageStorageError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.organizations import ORGANIZATION_COLUMN
from airflow_provider_openai_usage.times import DAY, day_label, iso

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.endpoints import Endpoint
    from airflow_provider_openai_usage.query import UsageQuery
    from airflow_provider_openai_usage.storage.days import DayStore

log = logging.getLogger(__name__)

#: ``table_format`` values: ``None`` keeps files (``file_format``).
TABLE_FORMATS = ("delta", "iceberg")
#: The partition column every table has: the UTC day a row belongs to (a ``date``).
DATE_COLUMN = "date"
#: Where a table keeps what it holds (its identity), as canonical JSON in a table property.
IDENTITY_PROPERTY = "openai_usage.identity"
#: A commit that lost to a concurrent commit of the same day is redone from the new version this often.
COMMIT_ATTEMPTS = 20
#: Identity keys that must match for two runs to share a table; ``schema`` is evolved instead.
EVOLVING_KEYS = ("schema",)


def check_table_format(table_format: Any) -> str | None:
    """``None`` (files) or one of ``TABLE_FORMATS``; anything else names the parameter and the fix."""
    if table_format is None or table_format in TABLE_FORMATS:
        return table_format
    raise OpenAIUsageValidationError(
        f"table_format={table_format!r} is not supported; use 'delta' (pip install 'airflow-provider-openai-usage[delta]'), "
        "'iceberg' (pip install 'airflow-provider-openai-usage[iceberg]') or leave it unset to land files (file_format)"
    )


@dataclass
class SinkDay:
    """One UTC day of a run: its rows and the part of the day they replace (whole day by default)."""

    date: str
    table: pa.Table
    #: Unix seconds ``(start, end)`` of the day the rows cover; ``None``: the whole day.
    window: tuple[int, int] | None = None
    totals: Mapping[str, Any] | None = None


@dataclass
class DayLanded:
    """What a commit left in a day: its rows (the merged day's, for a part of a day)."""

    date: str
    rows: int
    location: str


class DaySink(Protocol):
    """What the usage, directory and FOCUS operators write through."""

    #: The sink's location as the user would name it (errors and XCom).
    location: str

    def prepare(self, identity: Mapping[str, Any]) -> None:
        """Before any request: the location can be written and holds nothing of another identity."""

    def commit(self, days: Sequence[SinkDay], identity: Mapping[str, Any]) -> list[DayLanded]:
        """Publish the days (tables: in one commit; files: one atomic step per day), in order."""


class FileSink:
    """Files (``storage.days.DayStore``): each day one file, replaced in one atomic step, as before."""

    def __init__(self, store: DayStore) -> None:
        self.store = store
        self.location = store.root.as_uri() if hasattr(store.root, "as_uri") else str(store.root)

    def prepare(self, identity: Mapping[str, Any]) -> None:
        self.store.prepare()

    def commit(self, days: Sequence[SinkDay], identity: Mapping[str, Any]) -> list[DayLanded]:
        out = []
        for day in days:
            if day.window is not None:
                raise ValueError("FileSink.commit takes whole days; part days are merged by PartitionWriter")
            landed = self.store.replace_day(day.date, day.table, identity, totals=day.totals)
            out.append(DayLanded(day.date, landed.rows, str(landed.path)))
        return out


# -- table rows -----------------------------------------------------------------------------------------
def table_schema(schema: pa.Schema) -> pa.Schema:
    """A dataset's schema as a table stores it: microsecond timestamps (what Delta and Iceberg hold)
    and the ``date`` partition column last (where Hive-partitioned file readers put it too)."""
    import pyarrow as pa

    fields = [pa.field(f.name, pa.timestamp("us", tz="UTC"), f.nullable) if pa.types.is_timestamp(f.type) else f for f in schema]
    return pa.schema([*fields, pa.field(DATE_COLUMN, pa.date32(), nullable=False)])


def with_date(table: pa.Table, date: str, schema: pa.Schema) -> pa.Table:
    """A day's rows (the dataset's schema) as table rows: timestamps in microseconds, ``date`` added."""
    import datetime as dt

    import pyarrow as pa

    target = table_schema(schema)
    columns = [table.column(f.name).cast(target.field(f.name).type) for f in schema]
    columns.append(pa.array([dt.date.fromisoformat(date)] * table.num_rows, pa.date32()))
    return pa.Table.from_arrays(columns, schema=target)


def without_date(table: pa.Table, schema: pa.Schema) -> pa.Table:
    """Table rows back in the dataset's schema (what a day file holds), for merges and comparisons."""
    import pyarrow as pa

    columns = []
    for f in schema:
        if f.name in table.column_names:
            columns.append(table.column(f.name).cast(f.type))
        else:  # a column added after these rows were written: null, as in an evolved table
            columns.append(pa.nulls(table.num_rows, f.type))
    return pa.Table.from_arrays(columns, schema=schema)


def merge_day(dataset: str, label: str, held: pa.Table, new: pa.Table, window: tuple[int, int]) -> pa.Table:
    """A part of a day (``window``) merged into the rows the day holds: the rule of the file writer.

    The held rows inside the window are dropped, the run's rows take their place, the rest of the
    day is kept; a held bucket that crosses the window's edge is refused (cutting it would halve it).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    if held.num_rows == 0:
        return new
    day = window[0] - window[0] % DAY
    starts = held.column("start_time").cast(pa.timestamp("s", tz="UTC")).cast(pa.int64())
    ends = held.column("end_time").cast(pa.timestamp("s", tz="UTC")).cast(pa.int64())
    lo, hi = window
    straddle = pc.and_(pc.less(starts, hi), pc.greater(ends, lo))
    inside = pc.and_(pc.greater_equal(starts, lo), pc.less_equal(ends, hi))
    if pc.any(pc.and_(straddle, pc.invert(inside))).as_py():
        raise OpenAIUsageStorageError(
            f"{dataset}: date={label} holds buckets that cross {iso(lo)}–{iso(hi)}; refusing to cut them. "
            f"Rewrite the whole day (start_time={iso(day)}, end_time={iso(day + DAY)})"
        )
    return pa.concat_tables([held.filter(pc.less(starts, lo)), new, held.filter(pc.greater_equal(starts, hi))])


def identity_json(identity: Mapping[str, Any]) -> str:
    from airflow_provider_openai_usage.storage.formats import canonical_json

    return canonical_json(dict(identity))


def check_table_identity(location: str, held_json: str | None, wanted: Mapping[str, Any]) -> None:
    """A table holds one kind of rows: a run with another width, grouping or filters is refused.

    Stricter than files (where a whole day of another identity may replace a day): a table is read
    as one dataset, so mixing two kinds of rows in it would mislead every query over it. The schema
    is not compared: a newer schema adds its columns to the table (``EVOLVING_KEYS``).
    """
    if held_json is None:
        return
    try:
        held = json.loads(held_json)
    except ValueError:
        held = {}
    keys = sorted((set(held) | set(wanted)) - set(EVOLVING_KEYS))
    differs = [f"{k}: the table holds {held.get(k)!r}, this run writes {wanted.get(k)!r}" for k in keys if held.get(k) != wanted.get(k)]
    if differs:
        raise OpenAIUsageStorageError(
            f"{location}: the table holds other rows ({'; '.join(differs)}); a table holds one kind of rows, so nothing "
            "was written. Write to another output_path (or table), or drop the table to rewrite it with these settings"
        )


# -- API buckets → day rows (tables) ------------------------------------------------------------------
def usage_days(
    endpoint: Endpoint, query: UsageQuery, buckets: Iterable[dict[str, Any]], schema: pa.Schema, *,
    organization_id: str | None = None,
) -> Iterator[SinkDay]:
    """The days of one pull, each once all its buckets arrived, with the file writer's checks.

    A gap, a bucket of the wrong width, or a range the API did not report to its end is refused
    (the complete days before it were yielded: the caller commits them, then the error is raised).
    With ``organization_id`` every row carries it (``storage.usage.with_organization``).
    """
    from itertools import chain

    from airflow_provider_openai_usage.rows import bucket_columns, sort_columns
    from airflow_provider_openai_usage.storage.formats import table_from_columns
    from airflow_provider_openai_usage.storage.usage import with_organization

    width = query.width_seconds
    covered_until = query.start_time
    parts: list[dict[str, list[Any]]] = []
    current: int | None = None

    def finish(day: int) -> SinkDay:
        window = (max(query.start_time, day), min(query.end_time, day + DAY))
        if covered_until < window[1]:
            raise OpenAIUsageResponseError(
                f"{endpoint.key}: day {day_label(day)} is only reported up to {iso(covered_until)}; it is left as it was. "
                f"Wait for it with an OpenAIUsageSensor (settle_period) before this task, or end the range at {day_label(day)}T00:00:00Z"
            )
        columns = {name: list(chain.from_iterable(p[name] for p in parts)) for name in schema.names}
        table = table_from_columns(schema, columns)
        return SinkDay(day_label(day), table, None if window == (day, day + DAY) else window)

    for bucket in buckets:
        start, end = bucket["start_time"], bucket["end_time"]
        if start != covered_until:
            raise OpenAIUsageResponseError(
                f"{endpoint.key}: OpenAI returned no buckets from {iso(covered_until)} to {iso(start)}; refusing to write a gap as no usage"
            )
        expected_end = min((start // width + 1) * width, query.end_time)
        if end > expected_end or end <= start or (start % width and start != query.start_time):
            raise OpenAIUsageResponseError(
                f"{endpoint.key}: OpenAI returned a bucket {iso(start)}–{iso(end)} for bucket_width={query.bucket_width}, whose "
                f"buckets end at {iso(expected_end)}; refusing it before writing anything of date={day_label(start - start % DAY)}"
            )
        day = start - start % DAY
        if current is not None and day != current:
            yield finish(current)
            parts = []
        current = day
        n, columns = bucket_columns(endpoint, bucket, arrow_checks_int64=True)
        if organization_id is not None:
            columns = with_organization(endpoint, organization_id, n, columns)
        parts.append(sort_columns(endpoint, n, columns))
        covered_until = end
    if current is not None:
        yield finish(current)
    if covered_until < query.end_time:
        raise OpenAIUsageResponseError(
            f"{endpoint.key}: OpenAI reported buckets only up to {iso(covered_until)}, not to {iso(query.end_time)}; "
            "the complete days before that are written, the rest is not reported yet. Wait for it with an "
            "OpenAIUsageSensor (settle_period) or end the range earlier"
        )


# -- opening a table sink -----------------------------------------------------------------------------
def open_table_sink(
    table_format: str, location: ObjectStoragePath, dataset: str, schema: pa.Schema, *,
    catalog_conn_id: str | None = None, described_as: str | None = None, organization_id: str | None = None,
    organization_column: str = ORGANIZATION_COLUMN,
) -> TableSink:
    """The table of ``dataset`` (``completions``, ``focus``, ``directory/projects``...) under ``location``.

    Delta: the table is the folder ``<output_path>/delta/<dataset>``. Iceberg: the table
    ``openai_usage.<dataset with / as _>`` of a SQL catalog (``catalog_conn_id``; default a SQLite
    catalog at ``<output_path>/iceberg/catalog.db`` on a local disk), its files under
    ``<output_path>/iceberg``.
    """
    check_table_format(table_format)
    sink: TableSink
    if table_format == "delta":
        from airflow_provider_openai_usage.storage.delta import DeltaSink

        sink = DeltaSink(location, dataset, schema, described_as=described_as)
    else:
        from airflow_provider_openai_usage.storage.iceberg import IcebergSink

        sink = IcebergSink(location, dataset, schema, catalog_conn_id=catalog_conn_id, described_as=described_as)
    if organization_id is not None:
        from airflow_provider_openai_usage.organizations import check_organization_id

        sink.organization_id = check_organization_id(organization_id)
        sink.organization_column = organization_column
    return sink


class TableSink:
    """What Delta and Iceberg share: prepare = identity check; commit = read, merge, replace, retry.

    Subclasses implement four engine calls: ``_held_identity`` (None: no table yet), ``_create``,
    ``_snapshot`` (an opaque handle of the version a commit is based on), ``_read_day`` (a day's
    rows at that snapshot) and ``_replace`` (replace exactly the given dates in one commit based on
    the snapshot, raising ``CommitConflict`` when a concurrent commit touched those dates).
    """

    format_name = "table"
    #: One organization's rows of a table every organization shares (issue #29): a commit reads and
    #: replaces only ``organization_id = <it>`` rows of its days. None: the whole days (one organization).
    organization_id: str | None = None
    #: The column that holds the organization (FOCUS: ``BillingAccountId``).
    organization_column: str = ORGANIZATION_COLUMN

    def __init__(self, dataset: str, schema: pa.Schema, location: str, described: str) -> None:
        self.dataset = dataset
        self.schema = schema
        #: The table's URI or identifier (XCom, logs); ``described``: how errors name it.
        self.location = location
        self.described = described

    def day_filter(self, dates: Sequence[str]) -> str:
        """The SQL predicate of the rows a commit of ``dates`` replaces (dates and ids are checked: no quoting)."""
        in_dates = f"{DATE_COLUMN} IN ({', '.join(repr(d) for d in dates)})"
        if self.organization_id is None:
            return in_dates
        return f"{in_dates} AND {self.organization_column} = '{self.organization_id}'"

    # -- the interface ---------------------------------------------------------------------------
    def prepare(self, identity: Mapping[str, Any]) -> None:
        held = self._held_identity()
        if held is None:
            self._create(identity)
            held = self._held_identity()
        check_table_identity(self.described, held, identity)
        if self.organization_id is not None and self.organization_column not in self._columns(self._snapshot()):
            # Its rows have no organization: replacing one organization's rows would leave them beside the new ones.
            raise OpenAIUsageStorageError(
                f"{self.described} was written before the organization level (no {self.organization_column} column); "
                "its rows cannot be told apart from this organization's, so nothing was written. Drop the table "
                "(it is rebuilt from the API by a backfill) or write to another output_path"
            )

    def has_day(self, date: str) -> bool:
        """Whether the table holds rows of ``date`` (the directory keeps a past snapshot it holds)."""
        if self._held_identity() is None:
            return False
        return bool(self._read_day(self._snapshot(), date).num_rows)

    def commit(self, days: Sequence[SinkDay], identity: Mapping[str, Any]) -> list[DayLanded]:
        """All ``days`` in one commit; merged days are re-read and re-merged after a lost race."""
        from airflow_provider_openai_usage.storage.days import fault_point, pause_point

        if not days:
            return []
        import datetime as dt

        for day in days:  # dates go into the engines' predicates: only YYYY-MM-DD gets there
            if not (isinstance(day.date, str) and len(day.date) == 10 and dt.date.fromisoformat(day.date).isoformat() == day.date):
                raise ValueError(f"date={day.date!r} is not YYYY-MM-DD")
        if len({d.date for d in days}) != len(days):
            raise ValueError(f"{self.described}: a commit holds each day once, got {[d.date for d in days]}")
        for _ in range(COMMIT_ATTEMPTS):
            snapshot = self._snapshot()
            check_table_identity(self.described, self._snapshot_identity(snapshot), identity)
            rows: list[pa.Table] = []
            landed = []
            for day in days:
                table = day.table
                if day.window is not None:
                    held = without_date(self._read_day(snapshot, day.date), self.schema)
                    table = merge_day(self.dataset, day.date, held, table, day.window)
                rows.append(with_date(table, day.date, self.schema))
                landed.append(DayLanded(day.date, table.num_rows, self.location))
            fault_point("table-merged")
            pause_point("table-merged")
            try:
                self._replace(snapshot, [d.date for d in days], rows, identity)
            except CommitConflict:
                log.info("%s: a concurrent commit changed the days of this run; merging again from the new version", self.location)
                continue
            fault_point("table-committed")
            return landed
        raise OpenAIUsageStorageError(
            f"{self.described}: other writers kept committing the same days ({COMMIT_ATTEMPTS} attempts); nothing of this run was "
            "committed. Retry the task"
        )

    # -- engine calls --------------------------------------------------------------------------------
    def _held_identity(self) -> str | None:
        raise NotImplementedError

    def _create(self, identity: Mapping[str, Any]) -> None:
        raise NotImplementedError

    def _snapshot(self) -> Any:
        raise NotImplementedError

    def _snapshot_identity(self, snapshot: Any) -> str | None:
        raise NotImplementedError

    def _read_day(self, snapshot: Any, date: str) -> pa.Table:
        raise NotImplementedError

    def _columns(self, snapshot: Any) -> set[str]:
        raise NotImplementedError

    def _replace(self, snapshot: Any, dates: list[str], rows: list[pa.Table], identity: Mapping[str, Any]) -> None:
        raise NotImplementedError


class CommitConflict(Exception):
    """A concurrent commit changed a day this commit replaces: read the new version and redo it."""


def missing_extra(table_format: str, module: str) -> OpenAIUsageValidationError:
    return OpenAIUsageValidationError(
        f"table_format={table_format!r} needs the {module} package: pip install 'airflow-provider-openai-usage[{table_format}]'"
    )
