"""Usage/costs buckets → one file per UTC day, exactly once whatever widths, windows and reruns meet.

A run covers a window of each day it touches (the whole day, or the first/last part of its range).
A whole day is simply replaced. A part of a day is merged: the day's current file is read, its rows
inside the window are dropped, the run's rows are added, and the merged day is published in one
atomic step (``DayStore.replace_day``). So every bucket window holds the rows of the latest run
that covered it, and nothing twice (invariant I1 in docs/data-layout.md).

What a day holds (its *identity*: endpoint, bucket width, grouping, filters, schema, format) is
recorded with it. A run with another identity replaces a day it covers whole; for a part of a day
it is refused before any request, with what differs and what to do, because keeping the rest of
the day would mix two kinds of rows and dropping it would lose usage.
"""

from __future__ import annotations

import hashlib
import json
import logging
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from decimal import Decimal
from itertools import chain
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.endpoints import DECIMAL_PRECISION, Endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageStorageError
from airflow_provider_openai_usage.organizations import ORGANIZATION_COLUMN
from airflow_provider_openai_usage.rows import INT64_MAX, add_totals, bucket_columns, column_total, json_safe, sort_columns
from airflow_provider_openai_usage.storage.days import DayFile, DayStore, StagedDay, data_name, file_metadata
from airflow_provider_openai_usage.storage.formats import ROW_GROUP_ROWS, DayEncoder, encode_table, read_table, table_from_columns
from airflow_provider_openai_usage.times import DAY, day_label, iso

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.query import UsageQuery

log = logging.getLogger(__name__)
#: Version of this layout (one file per day, identity recorded); part of every day's identity.
LAYOUT_VERSION = 2
#: Threads that finish and stage days on a local disk (see ``_Publisher``); object stores: one day at a time.
PUBLISH_THREADS = 4
#: Days published as one batch on a local disk: made durable together, then published in day order.
BATCH_DAYS = 32
#: ...or fewer days, once they hold this many rows (a batch's days are held until it is published).
BATCH_ROWS = ROW_GROUP_ROWS
#: Rows of a day kept as Python values before they become a typed Arrow chunk (memory: see docs/design.md).
ARROW_CHUNK_ROWS = 2048
#: Small whole days (fewer than ARROW_CHUNK_ROWS rows together) typed in one Arrow conversion.
SMALL_DAYS_TYPED_TOGETHER = 32
#: Below this many values an int column is summed in Python (Arrow's compute calls cost more for a few).
ARROW_SUM_ROWS = 256
#: Seconds between two "published" progress lines of one write.
PROGRESS_INTERVAL = 5.0


def arrow_schema(endpoint: Endpoint, *, organization: bool = False) -> pa.Schema:
    """Typed from the registry, identical for every day of an endpoint, empty days included.

    ``organization=True`` (every operator's files and tables, issue #29): every row also carries
    ``organization_id``, right after the times (costs already have it where OpenAI sends it).
    """
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_()}
    # Milliseconds: Parquet has no seconds unit, so this is what every reader sees anyway.
    ts = pa.timestamp("ms", tz="UTC")
    fields = [pa.field("start_time", ts, nullable=False), pa.field("end_time", ts, nullable=False)]
    if organization and ORGANIZATION_COLUMN not in {c.name for c in endpoint.columns}:
        fields.append(pa.field(ORGANIZATION_COLUMN, pa.string()))
    for column in endpoint.columns:
        if column.type == "decimal":
            arrow_type = pa.decimal128(DECIMAL_PRECISION, column.scale)
        else:
            arrow_type = types.get(column.type, pa.string())
        fields.append(pa.field(column.name, arrow_type))
    return pa.schema(fields)


def schema_fingerprint(schema: pa.Schema) -> str:
    spelled = json.dumps([[f.name, str(f.type), f.nullable] for f in schema])
    return hashlib.sha256(spelled.encode()).hexdigest()[:16]


def usage_identity(query: UsageQuery, file_format: str, schema: pa.Schema, organization_id: str | None = None) -> dict[str, Any]:
    """What a day written by this query holds; two runs may share a day only if these are equal.

    With ``organization_id`` (every operator), the organization is part of it: a day of one
    organization never takes rows of another, even if files were moved by hand.
    """
    identity = {
        "dataset": query.endpoint.key,
        "layout_version": LAYOUT_VERSION,
        "schema": schema_fingerprint(schema),
        "format": file_format,
        "bucket_width": query.bucket_width,
        "group_by": list(query.group_by),
        "filters": {name: value if isinstance(value, bool) else list(value) for name, value in query.filters},
    }
    if organization_id is not None:
        identity["organization_id"] = organization_id
    return identity


def with_organization(endpoint: Endpoint, organization_id: str, n: int, columns: dict[str, list[Any]]) -> dict[str, list[Any]]:
    """A bucket's columns with ``organization_id`` on every row: the connection's organization.

    Where OpenAI sends it (costs), each value must be that organization (a null is filled in); a
    result naming another organization is refused before anything of its day is written: the key
    answered for an organization the connection does not say it reads.
    """
    sent = columns.get(ORGANIZATION_COLUMN)
    if sent is not None:
        other = next((v for v in sent if v is not None and v != organization_id), None)
        if other is not None:
            raise OpenAIUsageResponseError(
                f"{endpoint.key}: OpenAI answered for organization_id={other!r}, but this connection's organization is "
                f"{organization_id!r}; nothing of this day is written (fix the connection's organization_id extra or its key)"
            )
    columns[ORGANIZATION_COLUMN] = [organization_id] * n
    return columns


def identity_differences(held: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    return [
        f"{key}: the day holds {held.get(key)!r}, this run writes {wanted.get(key)!r}"
        for key in sorted(set(held) | set(wanted))
        if held.get(key) != wanted.get(key)
    ]


def day_totals(endpoint: Endpoint, table: pa.Table) -> dict[str, Any]:
    """Sum of each metric column over a day's rows: the one place summaries get their numbers from.

    The rule of ``rows.metric_totals`` (nulls skipped; ints stay ints, amounts stay exact Decimals),
    summed by Arrow over the typed column instead of over Python values: int64 and decimal128 sums
    are exact, and a sum that could leave the column's range is summed in Python instead.
    """
    return {c.name: _column_total(table.column(c.name)) for c in endpoint.metric_columns}


def _column_total(column: pa.ChunkedArray) -> Any:
    import pyarrow as pa

    present = len(column) - column.null_count
    if present == 0:
        return 0
    if present < ARROW_SUM_ROWS and not pa.types.is_decimal(column.type):
        return column_total(column.to_pylist())  # a few ints: cheaper than two compute calls
    import pyarrow.compute as pc

    bounds = pc.min_max(column)
    largest = max(abs(bounds["min"].as_py()), abs(bounds["max"].as_py()))
    if pa.types.is_decimal(column.type):
        fits = largest * present < Decimal(10) ** (DECIMAL_PRECISION - column.type.scale)
    else:
        fits = largest * present <= INT64_MAX
    if not fits:
        return column_total(column.to_pylist())
    return pc.sum(column).as_py()


def merge_windows(windows: Iterable[Iterable[int]]) -> list[list[int]]:
    out: list[list[int]] = []
    for start, end in sorted(tuple(w) for w in windows):
        if out and start <= out[-1][1]:
            out[-1][1] = max(out[-1][1], end)
        else:
            out.append([start, end])
    return out


@dataclass
class DayResult:
    date: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    #: Sum of each metric column over the rows this run wrote (ints stay ints, amounts stay Decimals).
    totals: dict[str, Any] = field(default_factory=dict)


@dataclass
class _DayJob:
    """A complete day on its way to its file: staged on a worker (a whole day) or under the lock (a merge)."""

    result: DayResult
    rows: int
    #: Returns the staged day; a whole day's runs on a worker thread, a merged day's inside ``commit``.
    stage: Callable[[], StagedDay]
    whole: bool


class _Publisher:
    """Publishes finished days in batches, on threads, handing the results back in day order.

    Why: on a local disk a day's cost is mostly the filesystem's journal, not CPU: one ``fsync`` per
    day is one journal commit per day, and every file created meanwhile waits for it. So days are
    finished (encoded) and written to their temps on a few threads, up to ``BATCH_DAYS`` days (or
    ``BATCH_ROWS`` rows) at a time; then a committer thread makes the batch durable at once and runs
    its days' publishing steps strictly one day after the other, in day order, under the dataset's
    lock (``DayStore.commit``), while the caller goes on building the next days. A crash leaves every
    day before it published and none after it. The first failure is raised in day order after the
    days before it are published, and no later batch is published. At most two batches are handed
    over at a time (memory stays bounded); leaving the ``with`` block (normally, by an error, or by
    the caller dropping the iterator) waits for every thread and removes every temp not published.
    """

    def __init__(self, store: DayStore, workers: int, batch_days: int, batch_rows: int) -> None:
        self.store = store
        threaded = workers > 1
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="openai-usage-publish") if threaded else None
        self.committer = ThreadPoolExecutor(1, thread_name_prefix="openai-usage-publish-commit") if threaded else None
        self.batch_days, self.batch_rows = batch_days, batch_rows
        self.batch: list[tuple[_DayJob, Future[StagedDay] | None]] = []
        self.rows = 0
        self.handed: deque[Future[tuple[list[DayResult], BaseException | None]]] = deque()
        self.failed = False

    def __enter__(self) -> _Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        self.failed = True  # a batch not yet committed is not published any more
        try:
            self._discard(self.batch)
        finally:
            self.batch = []
            for executor in (self.committer, self.pool):
                if executor is not None:
                    executor.shutdown(wait=True, cancel_futures=True)

    def submit(self, job: _DayJob) -> Iterator[DayResult]:
        """Queue a day; yields the days (in order) of the batches published so far."""
        future = self.pool.submit(job.stage) if self.pool is not None and job.whole else None
        self.batch.append((job, future))
        self.rows += job.rows
        if len(self.batch) >= self.batch_days or self.rows >= self.batch_rows:
            self._hand_over()
        while self.handed and (len(self.handed) > 1 or self.handed[0].done()):
            yield from self._collect()

    def drain(self) -> Iterator[DayResult]:
        """Publish every queued day; results in day order, then the first failure (if any) is raised."""
        self._hand_over()
        while self.handed:
            yield from self._collect()

    def _hand_over(self) -> None:
        if not self.batch:
            return
        batch, self.batch, self.rows = self.batch, [], 0
        if self.committer is None:
            done: Future[tuple[list[DayResult], BaseException | None]] = Future()
            done.set_result(self._commit(batch))
            self.handed.append(done)
        else:
            self.handed.append(self.committer.submit(self._commit, batch))

    def _collect(self) -> Iterator[DayResult]:
        results, failure = self.handed.popleft().result()
        yield from results
        if failure is not None:
            raise failure

    def _commit(self, batch: list[tuple[_DayJob, Future[StagedDay] | None]]) -> tuple[list[DayResult], BaseException | None]:
        """Stage what is left, publish the batch in day order; (days published, the failure that stopped it)."""
        if self.failed:
            self._discard(batch)
            return [], None
        items: list[StagedDay | Callable[[], StagedDay]] = []
        failure: BaseException | None = None
        try:
            for i, (job, future) in enumerate(batch):
                if not job.whole:
                    items.append(job.stage)
                    continue
                try:
                    items.append(future.result() if future is not None else job.stage())
                except Exception as exc:  # noqa: BLE001 - reported after the days before it are published
                    failure = exc
                    self._discard(batch[i + 1 :])
                    break
            published: list[Any] = []
            try:
                self.store.commit(items, published)
            except Exception as exc:  # noqa: BLE001 - days are published in order: the ones before it are
                failure = exc
            del items[len(published) :]
        finally:
            for item in items:
                if isinstance(item, StagedDay):
                    item.close()
        if failure is not None:
            self.failed = True
        return [job.result for job, _ in batch[: len(items)]], failure

    @staticmethod
    def _discard(batch: list[tuple[_DayJob, Future[StagedDay] | None]]) -> None:
        """Days that will not be published: wait for their workers, then remove their temps."""
        for _, future in batch:
            if future is None or future.cancel():
                continue
            try:
                future.result().close()
            except BaseException:  # noqa: BLE001 - a day that failed to stage left nothing to remove
                pass


class PartitionWriter:
    """Writes one endpoint's days under ``root`` (= ``<output_path>/<endpoint>``)."""

    #: Threads staging days (local disks only; object stores: one day at a time).
    publish_threads = PUBLISH_THREADS
    #: Days (or rows) published as one batch on a local disk.
    batch_days, batch_rows = BATCH_DAYS, BATCH_ROWS

    def __init__(
        self, root: ObjectStoragePath, endpoint: Endpoint, file_format: str, *, described_as: str | None = None,
        organization_id: str | None = None,
    ) -> None:
        self.root = root
        self.endpoint = endpoint
        self.file_format = file_format
        #: Every row's ``organization_id`` and part of each day's identity (None: files without it, as before #29).
        self.organization_id = organization_id
        self.store = DayStore(root, file_format, described_as=described_as)
        self._schema: pa.Schema | None = None

    @property
    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = arrow_schema(self.endpoint, organization=self.organization_id is not None)
        return self._schema

    def identity(self, query: UsageQuery) -> dict[str, Any]:
        """What this writer's days of ``query`` hold (``usage_identity`` with its organization)."""
        return usage_identity(query, self.file_format, self.schema, self.organization_id)

    # -- before the first request ---------------------------------------------------------------------
    def prepare(self, query: UsageQuery) -> None:
        """Everything that can refuse the run without asking OpenAI: location, leftovers, conflicts."""
        self.store.prepare()
        wanted = self.identity(query)
        formats = self.store.existing_formats()
        for day in range(query.start_time - query.start_time % DAY, query.end_time, DAY):
            held = formats.get(day_label(day))
            if held is not None and held != self.file_format:
                raise OpenAIUsageStorageError(
                    f"{self.endpoint.key}: date={day_label(day)} already holds a {held} file and this run writes "
                    f"{self.file_format}; a day holds one file. Keep file_format={held!r}, or write to a separate output_path"
                )
        for day, window in self._partial_days(query):
            merges = f"{iso(window[0])}–{iso(window[1])} into date={day_label(day)}"
            self.store.check_merges_possible(f"{self.endpoint.key}: this run merges {merges}")
            current = self.store.current_day(day_label(day), read_data=False)
            if current is not None:
                self._check_same_identity(current.identity, wanted, day, window)

    @staticmethod
    def _partial_days(query: UsageQuery) -> list[tuple[int, tuple[int, int]]]:
        out = []
        for t in {query.start_time, query.end_time - 1}:
            day = t - t % DAY
            window = (max(query.start_time, day), min(query.end_time, day + DAY))
            if window != (day, day + DAY):
                out.append((day, window))
        return sorted(out)

    def _check_same_identity(self, held: Mapping[str, Any], wanted: Mapping[str, Any], day: int, window: tuple[int, int]) -> None:
        if dict(held) == dict(wanted):
            return
        differs = identity_differences(held, wanted) if held else ["the day's record is missing (files changed outside this provider?)"]
        raise OpenAIUsageStorageError(
            f"{self.endpoint.key}: this run writes only {iso(window[0])}–{iso(window[1])} of date={day_label(day)}, which "
            f"already holds other rows ({'; '.join(differs)}). Merging would mix them and dropping the rest of the "
            "day would lose usage, so nothing was written. Write to a separate output_path, or rewrite the whole "
            f"day with these settings (start_time={iso(day)}, end_time={iso(day + DAY)})"
        )

    # -- writing ---------------------------------------------------------------------------------------
    def write(self, query: UsageQuery, buckets: Iterable[dict[str, Any]]) -> Iterator[DayResult]:
        """Publish each day of the query's range once all its buckets arrived (in batches, see ``_Publisher``)."""
        wanted = self.identity(query)
        local = self.store.local
        publisher = _Publisher(self.store, self.publish_threads if local else 1, self.batch_days if local else 1, self.batch_rows)
        with publisher:
            yield from self._progress(self._write(query, buckets, publisher, wanted, query.width_seconds))

    def _progress(self, results: Iterator[DayResult]) -> Iterator[DayResult]:
        """One log line every ``PROGRESS_INTERVAL`` seconds and one at the end, not one per day."""
        count, last, last_log = 0, None, time.monotonic()
        for result in results:
            count, last = count + 1, result.date
            now = time.monotonic()
            if now - last_log >= PROGRESS_INTERVAL:
                last_log = now
                log.info("%s: published %d day files so far, up to date=%s", self.root, count, last)
            yield result
        log.info("%s: published %d day files%s", self.root, count, f", the last date={last}" if last else "")

    def _write(
        self, query: UsageQuery, buckets: Iterable[dict[str, Any]], publisher: _Publisher, wanted: dict[str, Any], width: int
    ) -> Iterator[DayResult]:
        building: _DayBuilder | None = None
        small: list[_DayBuilder] = []
        covered_until = query.start_time
        try:
            for bucket in buckets:
                start, end = bucket["start_time"], bucket["end_time"]
                if start != covered_until:
                    # A day the API skipped would read as "no usage": refuse rather than guess.
                    raise self._gap(covered_until, start)
                expected_end = min((start // width + 1) * width, query.end_time)
                if end > expected_end or end <= start or (start % width and start != query.start_time):
                    raise OpenAIUsageResponseError(
                        f"{self.endpoint.key}: OpenAI returned a bucket {iso(start)}–{iso(end)} for bucket_width="
                        f"{query.bucket_width}, whose buckets end at {iso(expected_end)}; refusing it before writing "
                        f"anything of date={day_label(start - start % DAY)}"
                    )
                bucket_day = start - start % DAY
                if building is not None and bucket_day != building.day:
                    yield from self._complete(query, wanted, building, covered_until, small, publisher)
                    building = None
                if building is None:
                    building = self._builder(query, wanted, bucket_day)
                n, columns = bucket_columns(self.endpoint, bucket, arrow_checks_int64=True)
                del bucket
                if self.organization_id is not None:
                    columns = with_organization(self.endpoint, self.organization_id, n, columns)
                building.add(n, sort_columns(self.endpoint, n, columns))
                covered_until = end
            if building is not None:
                yield from self._complete(query, wanted, building, covered_until, small, publisher)
                building = None
            yield from self._type_small(query, wanted, small, publisher)
        except Exception:
            # The days completed before the failure are checked and whole: publish them, then fail.
            try:
                yield from self._type_small(query, wanted, small, publisher)
            except Exception:  # noqa: BLE001 - those rows cannot be typed (the failure itself): not published
                small.clear()
            yield from publisher.drain()
            raise
        yield from publisher.drain()
        if covered_until < query.end_time:
            raise OpenAIUsageResponseError(
                f"{self.endpoint.key}: OpenAI reported buckets only up to {iso(covered_until)}, not to {iso(query.end_time)}; "
                "the complete days before that are written, the rest is not reported yet. Wait for it with an "
                "OpenAIUsageSensor (settle_period) or end the range earlier"
            )

    def _gap(self, since: int, until: int) -> OpenAIUsageResponseError:
        return OpenAIUsageResponseError(
            f"{self.endpoint.key}: OpenAI returned no buckets from {iso(since)} to {iso(until)}; refusing to write a gap as no usage"
        )

    def _table(self, parts: list[dict[str, list[Any]]]) -> pa.Table:
        """Buckets' columns → one typed table (a value that does not fit its column is refused here)."""
        if len(parts) == 1:
            return table_from_columns(self.schema, parts[0])
        return table_from_columns(self.schema, {name: list(chain.from_iterable(p[name] for p in parts)) for name in self.schema.names})

    def _builder(self, query: UsageQuery, wanted: dict[str, Any], day: int) -> _DayBuilder:
        """A whole day streams into its file as its rows arrive; a part of a day is kept to be merged."""
        window = (max(query.start_time, day), min(query.end_time, day + DAY))
        encoder: Callable[[], DayEncoder] | None = None
        if window == (day, day + DAY):
            metadata = file_metadata(self.store.day_record(day_label(day), 0, wanted, covered=[[day, day + DAY]]))

            def encoder() -> DayEncoder:
                return DayEncoder(self.schema, self.file_format, metadata)

        return _DayBuilder(self, day, window, encoder)

    def _complete(
        self, query: UsageQuery, wanted: dict[str, Any], building: _DayBuilder, covered_until: int,
        small: list[_DayBuilder], publisher: _Publisher,
    ) -> Iterator[DayResult]:
        """All of a day's buckets arrived: check it is complete (here, in order), then hand it over.

        A small whole day (fewer than ``ARROW_CHUNK_ROWS`` rows, still Python values) waits to be
        typed together with the next small days (``_type_small``): a year of daily buckets becomes a
        few Arrow conversions instead of one per column per day. Days are handed over in day order.
        """
        label = day_label(building.day)
        if covered_until < building.window[1]:
            raise OpenAIUsageResponseError(
                f"{self.endpoint.key}: day {label} is only reported up to {iso(covered_until)}; its partition is left as it was. "
                f"Wait for it with an OpenAIUsageSensor (settle_period) before this task, or end the range at {label}T00:00:00Z"
            )
        if building.new_encoder is not None and not building.chunks:
            small.append(building)
            if len(small) >= SMALL_DAYS_TYPED_TOGETHER or sum(b.held for b in small) >= ARROW_CHUNK_ROWS:
                yield from self._type_small(query, wanted, small, publisher)
            return
        yield from self._type_small(query, wanted, small, publisher)
        yield from publisher.submit(self._finish(query, wanted, building))

    def _type_small(
        self, query: UsageQuery, wanted: dict[str, Any], small: list[_DayBuilder], publisher: _Publisher
    ) -> Iterator[DayResult]:
        """Type the waiting small days' rows in one table, give each day its slice, hand them over in order."""
        if not small:
            return
        try:
            table = self._table([part for b in small for part in b.parts]) if any(b.parts for b in small) else None
        except Exception:
            if len(small) == 1:
                raise
            # A value Arrow refuses (e.g. an int beyond int64) refuses its own day, not the days
            # typed with it: type them one by one, so the days before it are published (one rule
            # for every refusal) and the failure is raised at the day that holds it.
            days = list(small)
            small.clear()
            for b in days:
                small.append(b)
                yield from self._type_small(query, wanted, small, publisher)
            return
        at = 0
        for b in small:
            if b.held and table is not None:
                b.chunks, b.chunk_rows = [table.slice(at, b.held)], b.held
                b.rows += b.held
                add_totals(b.totals, day_totals(self.endpoint, b.chunks[0]))
                at += b.held
            b.parts, b.held = [], 0
        days = list(small)
        small.clear()
        for b in days:
            yield from publisher.submit(self._finish(query, wanted, b))

    def _finish(self, query: UsageQuery, wanted: dict[str, Any], building: _DayBuilder) -> _DayJob:
        """The job that stages a complete day (its rows typed now, if not yet)."""
        day, window, label = building.day, building.window, day_label(building.day)
        building.flush()
        result = DayResult(label, building.rows, [data_name(self.file_format)], building.totals)
        rows = building.rows
        if building.new_encoder is not None:
            encoder, chunks = building.encoder, building.chunks
            new_encoder = building.new_encoder
            del building

            def stage_whole() -> StagedDay:
                nonlocal encoder, chunks
                if encoder is None:  # a small day: its one row group is encoded here, on a worker
                    encoder = new_encoder()
                for chunk in chunks:
                    encoder.write(chunk)
                data, encoder, chunks = encoder.finish(), None, []  # the day's memory goes with them
                record = self.store.day_record(label, rows, wanted, covered=[[day, day + DAY]], totals=_json_totals(result.totals))
                return self.store.stage(label, data, record)

            return _DayJob(result, rows, stage_whole, whole=True)
        chunks = building.chunks
        del building

        def stage_merged() -> StagedDay:
            import pyarrow as pa

            new = pa.concat_tables(chunks) if chunks else self.schema.empty_table()
            current = self.store.current_day(label)
            table, covered = self._merged(current, wanted, day, window, new)
            totals = _json_totals(result.totals if table is new else day_totals(self.endpoint, table))
            record = self.store.day_record(label, table.num_rows, wanted, covered=covered, totals=totals)
            data = encode_table(table, self.file_format, metadata=file_metadata(record))
            return self.store.stage(label, data, record, expected=self.store.expected_version(current))

        return _DayJob(result, rows, stage_merged, whole=False)

    def _merged(
        self, current: DayFile | None, wanted: dict[str, Any], day: int, window: tuple[int, int], new: pa.Table
    ) -> tuple[pa.Table, list[list[int]]]:
        """A part of a day (``window``) merged into what the day holds now (whole days never come here)."""
        label = day_label(day)
        if current is None or current.data is None:
            return new, [list(window)]
        self._check_same_identity(current.identity, wanted, day, window)
        import pyarrow as pa
        import pyarrow.compute as pc

        old = read_table(current.data, self.file_format, self.schema)
        starts = old.column("start_time").cast(pa.int64())
        ends = old.column("end_time").cast(pa.int64())
        lo, hi = window[0] * 1000, window[1] * 1000
        straddle = pc.and_(pc.less(starts, hi), pc.greater(ends, lo))
        inside = pc.and_(pc.greater_equal(starts, lo), pc.less_equal(ends, hi))
        if pc.any(pc.and_(straddle, pc.invert(inside))).as_py():
            raise OpenAIUsageStorageError(
                f"{self.endpoint.key}: date={label} holds buckets that cross {iso(window[0])}–{iso(window[1])}; refusing to cut them. "
                f"Rewrite the whole day (start_time={iso(day)}, end_time={iso(day + DAY)})"
            )
        before = old.filter(pc.less(starts, lo))
        after = old.filter(pc.greater_equal(starts, hi))
        merged = pa.concat_tables([before, new, after])
        return merged, merge_windows(current.covered + [list(window)])


class _DayBuilder:
    """One day's rows as they arrive: Python columns for at most ``ARROW_CHUNK_ROWS`` rows, then typed
    Arrow chunks. A whole day's chunks stream into its file's encoder once they fill a Parquet row
    group (a small day is encoded whole on a worker); a part of a day is kept to be merged."""

    def __init__(self, writer: PartitionWriter, day: int, window: tuple[int, int], new_encoder: Callable[[], DayEncoder] | None) -> None:
        self.writer, self.day, self.window, self.new_encoder = writer, day, window, new_encoder
        self.encoder: DayEncoder | None = None
        self.parts: list[dict[str, list[Any]]] = []
        self.held = 0
        self.rows = 0
        self.totals: dict[str, Any] = {}
        self.chunks: list[pa.Table] = []
        self.chunk_rows = 0

    def add(self, n: int, columns: dict[str, list[Any]]) -> None:
        self.parts.append(columns)
        self.held += n
        if self.held >= ARROW_CHUNK_ROWS:
            self.flush()

    def flush(self) -> None:
        if not self.parts:
            return
        table = self.writer._table(self.parts)
        self.parts, self.held = [], 0
        self.rows += table.num_rows
        add_totals(self.totals, day_totals(self.writer.endpoint, table))
        self.chunks.append(table)
        self.chunk_rows += table.num_rows
        if self.new_encoder is not None and self.chunk_rows >= ROW_GROUP_ROWS:
            if self.encoder is None:
                self.encoder = self.new_encoder()
            for chunk in self.chunks:
                self.encoder.write(chunk)  # whole row groups are encoded now; the rest stays held
            self.chunks, self.chunk_rows = [], 0


def _json_totals(totals: Mapping[str, Any]) -> dict[str, Any]:
    return {k: json_safe(v) for k, v in totals.items()}
