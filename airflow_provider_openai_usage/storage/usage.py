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
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.endpoints import DECIMAL_PRECISION, Endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageStorageError
from airflow_provider_openai_usage.rows import bucket_columns, json_safe, metric_totals, sort_columns
from airflow_provider_openai_usage.storage.days import DayStore, data_name
from airflow_provider_openai_usage.storage.formats import read_table, table_from_columns
from airflow_provider_openai_usage.times import DAY, day_label, iso

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.query import UsageQuery

log = logging.getLogger(__name__)
#: Version of this layout (one file per day, identity recorded); part of every day's identity.
LAYOUT_VERSION = 2
#: Days published at once on a local disk (see ``_Publisher``); object stores publish one at a time.
PUBLISH_THREADS = 4
#: Rows of a day kept as Python values before they become a typed Arrow chunk (memory: see docs/design.md).
ARROW_CHUNK_ROWS = 8192
#: Seconds between two "published" progress lines of one write.
PROGRESS_INTERVAL = 5.0


def arrow_schema(endpoint: Endpoint) -> pa.Schema:
    """Typed from the registry, identical for every day of an endpoint, empty days included."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_()}
    # Milliseconds: Parquet has no seconds unit, so this is what every reader sees anyway.
    ts = pa.timestamp("ms", tz="UTC")
    fields = [pa.field("start_time", ts, nullable=False), pa.field("end_time", ts, nullable=False)]
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


def usage_identity(query: UsageQuery, file_format: str, schema: pa.Schema) -> dict[str, Any]:
    """What a day written by this query holds; two runs may share a day only if these are equal."""
    return {
        "dataset": query.endpoint.key,
        "layout_version": LAYOUT_VERSION,
        "schema": schema_fingerprint(schema),
        "format": file_format,
        "bucket_width": query.bucket_width,
        "group_by": list(query.group_by),
        "filters": {name: value if isinstance(value, bool) else list(value) for name, value in query.filters},
    }


def identity_differences(held: Mapping[str, Any], wanted: Mapping[str, Any]) -> list[str]:
    return [
        f"{key}: the day holds {held.get(key)!r}, this run writes {wanted.get(key)!r}"
        for key in sorted(set(held) | set(wanted))
        if held.get(key) != wanted.get(key)
    ]


def day_totals(endpoint: Endpoint, table: pa.Table) -> dict[str, Any]:
    """Sum of each metric column over a day's rows: the one place summaries get their numbers from."""
    return metric_totals(endpoint, {c.name: table.column(c.name).to_pylist() for c in endpoint.metric_columns})


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


class _Skipped(Exception):
    """A day not published because an earlier day of the same write failed (that failure is raised)."""


class _Turn:
    """Day order for the publishing steps of days prepared in parallel (see ``_Publisher``)."""

    def __init__(self, previous: _Turn | None) -> None:
        self.previous = previous
        self.done = threading.Event()
        self.ok = False

    def wait(self) -> None:
        if self.previous is not None:
            self.previous.done.wait()
            if not self.previous.ok:
                raise _Skipped()
            self.previous = None  # let finished days go


class _Publisher:
    """Publishes finished days on a few threads, handing the results back in day order.

    Why: on a local disk a day's cost is mostly waiting on the disk (``fsync``, creating and renaming
    files), not CPU. Days are merged, encoded, written and fsynced in parallel (the filesystem commits
    their journal entries together), while their publishing steps (pending manifest, rename,
    manifest) still run strictly one day after the other, in day order, exactly as one thread would
    run them: a crash leaves every day before it published and none after it. At most ``workers``
    days are in flight (memory stays bounded), the first failure is raised in day order and stops
    the later days, and leaving the ``with`` block (normally, by an error, or by the caller dropping
    the iterator) waits for every thread.
    """

    def __init__(self, workers: int) -> None:
        self.workers = workers
        self.pool = ThreadPoolExecutor(workers, thread_name_prefix="openai-usage-publish") if workers > 1 else None
        self.in_flight: deque[Future[DayResult]] = deque()
        self.last: _Turn | None = None

    def __enter__(self) -> _Publisher:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)

    def submit(self, job: Callable[[Callable[[], None] | None], DayResult]) -> Iterator[DayResult]:
        """Start publishing a day; yields the days (in order) that are done or must be waited for."""
        if self.pool is None:
            yield job(None)
            return
        turn = self.last = _Turn(self.last)

        def run() -> DayResult:
            try:
                result = job(turn.wait)
                turn.ok = True
                return result
            finally:
                turn.done.set()

        self.in_flight.append(self.pool.submit(run))
        while self.in_flight and (len(self.in_flight) > self.workers or self.in_flight[0].done()):
            yield self.in_flight.popleft().result()

    def drain(self) -> Iterator[DayResult]:
        while self.in_flight:
            yield self.in_flight.popleft().result()


class PartitionWriter:
    """Writes one endpoint's days under ``root`` (= ``<output_path>/<endpoint>``)."""

    #: Days published at once (local disks only; object stores: one at a time).
    publish_threads = PUBLISH_THREADS

    def __init__(self, root: ObjectStoragePath, endpoint: Endpoint, file_format: str, *, described_as: str | None = None) -> None:
        self.root = root
        self.endpoint = endpoint
        self.file_format = file_format
        self.store = DayStore(root, file_format, described_as=described_as)
        self._schema: pa.Schema | None = None

    @property
    def schema(self) -> pa.Schema:
        if self._schema is None:
            self._schema = arrow_schema(self.endpoint)
        return self._schema

    # -- before the first request ---------------------------------------------------------------------
    def prepare(self, query: UsageQuery) -> None:
        """Everything that can refuse the run without asking OpenAI: location, leftovers, conflicts."""
        self.store.prepare()
        wanted = usage_identity(query, self.file_format, self.schema)
        formats = self.store.existing_formats()
        for day in range(query.start_time - query.start_time % DAY, query.end_time, DAY):
            held = formats.get(day_label(day))
            if held is not None and held != self.file_format:
                raise OpenAIUsageStorageError(
                    f"{self.endpoint.key}: date={day_label(day)} already holds a {held} file and this run writes "
                    f"{self.file_format}; a day holds one file. Keep file_format={held!r}, or write to a separate output_path"
                )
        for day, window in self._partial_days(query):
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
        """Publish each day of the query's range as soon as all its buckets arrived."""
        wanted = usage_identity(query, self.file_format, self.schema)
        width = query.width_seconds
        with _Publisher(self.publish_threads if self.store.local else 1) as publisher:
            yield from self._progress(self._write(query, buckets, publisher, wanted, width))

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
        day: int | None = None
        # The day so far: typed Arrow chunks, and the last few buckets' columns as Python values (at
        # most ARROW_CHUNK_ROWS rows of them), so a dense day is held compactly, not as Python objects.
        chunks: list[pa.Table] = []
        parts: list[dict[str, list[Any]]] = []
        held = 0
        covered_until = query.start_time
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
            if day is not None and bucket_day != day:
                yield from publisher.submit(self._finish(query, wanted, day, chunks + [self._table(parts)], covered_until))
                chunks, parts, held = [], [], 0
            day = bucket_day
            n, columns = bucket_columns(self.endpoint, bucket)
            del bucket
            parts.append(sort_columns(self.endpoint, n, columns))
            held += n
            if held >= ARROW_CHUNK_ROWS:
                chunks.append(self._table(parts))
                parts, held = [], 0
            covered_until = end
        if day is not None:
            yield from publisher.submit(self._finish(query, wanted, day, chunks + [self._table(parts)], covered_until))
            chunks, parts = [], []
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
        return table_from_columns(self.schema, {name: [v for part in parts for v in part[name]] for name in self.schema.names})

    def _finish(
        self, query: UsageQuery, wanted: dict[str, Any], day: int, chunks: list[pa.Table], covered_until: int
    ) -> Callable[[Callable[[], None] | None], DayResult]:
        """Check the day is complete and build its table (here, in order); returns the publication to run."""
        window = (max(query.start_time, day), min(query.end_time, day + DAY))
        label = day_label(day)
        if covered_until < window[1]:
            raise OpenAIUsageResponseError(
                f"{self.endpoint.key}: day {label} is only reported up to {iso(covered_until)}; its partition is left as it was. "
                f"Wait for it with an OpenAIUsageSensor (settle_period) before this task, or end the range at {label}T00:00:00Z"
            )
        if len(chunks) == 1:
            new = chunks[0]
        else:
            import pyarrow as pa

            new = pa.concat_tables(chunks).combine_chunks()  # one chunk per column: the same bytes as one build
        del chunks
        result = DayResult(label, new.num_rows, [data_name(self.file_format)], day_totals(self.endpoint, new))

        def publish(wait_turn: Callable[[], None] | None) -> DayResult:
            with self.store.day_lock(label):
                table, covered = self._merged(wanted, day, window, new)
                totals = _json_totals(result.totals if table is new else day_totals(self.endpoint, table))
                self.store.replace_day(label, table, wanted, covered=covered, totals=totals, wait_turn=wait_turn)
            return result

        return publish

    def _merged(self, wanted: dict[str, Any], day: int, window: tuple[int, int], new: pa.Table) -> tuple[pa.Table, list[list[int]]]:
        label = day_label(day)
        if window == (day, day + DAY):
            return new, [[day, day + DAY]]
        current = self.store.current_day(label)
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
        merged = pa.concat_tables([before, new, after]).combine_chunks()
        return merged, merge_windows(current.covered + [list(window)])


def _json_totals(totals: Mapping[str, Any]) -> dict[str, Any]:
    return {k: json_safe(v) for k, v in totals.items()}
