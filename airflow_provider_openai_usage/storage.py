"""Buckets → one partition per UTC day on any ObjectStoragePath, atomically and idempotently.

Layout: ``<output_path>/<endpoint>/date=YYYY-MM-DD/part-HHMM-HHMM.<ext>``, where HHMM-HHMM is the
part of the UTC day the file covers (``part-0000-2400`` for a whole day). A day is written to a
local temporary file first and published in one step only when all of its buckets arrived:
``os.replace`` for local paths, a single upload for object stores (an object appears whole or not
at all). Files of the same day whose window overlaps the new one are then removed, so a partition
never holds the same usage twice. Nothing in a file depends on when it was written.
"""

from __future__ import annotations

import csv
import io
import json
import logging
import os
import re
import tempfile
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any

from airflow_provider_openai_usage.endpoints import DECIMAL_PRECISION, Endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.intervals import iso
from airflow_provider_openai_usage.rows import bucket_columns, rows_of, sort_columns

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

    from airflow_provider_openai_usage.query import UsageQuery

log = logging.getLogger(__name__)
DAY = 86400
FILE_FORMATS = ("parquet", "jsonl", "csv")
PART_RE = re.compile(r"^part-(\d{4})-(\d{4})\.(parquet|jsonl|csv)$")
ROW_GROUP_ROWS = 65536


def arrow_schema(endpoint: Endpoint) -> pa.Schema:
    """Typed from the registry, identical for every day of an endpoint, empty days included."""
    import pyarrow as pa

    types = {"string": pa.string(), "int64": pa.int64(), "bool": pa.bool_()}
    # Milliseconds: Parquet has no seconds unit, so this is what every reader sees anyway.
    ts = pa.timestamp("ms", tz="UTC")
    fields = [pa.field("start_time", ts, nullable=False), pa.field("end_time", ts, nullable=False)]
    for column in endpoint.columns:
        arrow_type = pa.decimal128(DECIMAL_PRECISION, column.scale) if column.type == "decimal" else types[column.type]
        fields.append(pa.field(column.name, arrow_type))
    return pa.schema(fields)


def day_label(day_start: int) -> str:
    return iso(day_start)[:10]


def part_name(window_start: int, window_end: int, file_format: str) -> str:
    day = window_start - window_start % DAY
    return f"part-{_hhmm(window_start - day)}-{_hhmm(window_end - day)}.{file_format}"


def _hhmm(seconds: int) -> str:
    return f"{seconds // 3600:02d}{seconds % 3600 // 60:02d}"


def _window_of(name: str) -> tuple[int, int] | None:
    match = PART_RE.match(name)
    if not match:
        return None
    a, b = match.group(1), match.group(2)
    return int(a[:2]) * 3600 + int(a[2:]) * 60, int(b[:2]) * 3600 + int(b[2:]) * 60


# -- row encoders -----------------------------------------------------------------------------------
def _text_value(value: Any, is_time: bool) -> Any:
    if is_time:
        return iso(value)
    if isinstance(value, Decimal):
        return format(value.normalize(), "f") if value else "0"
    return value


class _ParquetSink:
    """Buffers columns and writes a row group every ROW_GROUP_ROWS rows: memory stays flat."""

    def __init__(self, endpoint: Endpoint, fh: IO[bytes]) -> None:
        import pyarrow.parquet as pq

        self.schema = arrow_schema(endpoint)
        self.writer = pq.ParquetWriter(fh, self.schema, compression="zstd")
        self.buffer: dict[str, list[Any]] = {name: [] for name in self.schema.names}
        self.buffered = 0

    def write(self, n: int, columns: dict[str, list[Any]]) -> None:
        for name, values in columns.items():
            self.buffer[name].extend(values)
        self.buffered += n
        if self.buffered >= ROW_GROUP_ROWS:
            self.flush()

    def flush(self) -> None:
        import pyarrow as pa

        if not self.buffered:
            return
        data: dict[str, Any] = dict(self.buffer)
        seconds, millis = pa.timestamp("s", tz="UTC"), self.schema.field("start_time").type
        try:
            for name in ("start_time", "end_time"):
                data[name] = pa.array(data[name], type=seconds).cast(millis)  # Parquet has no seconds unit
            table = pa.Table.from_pydict(data, schema=self.schema)
        except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
            raise OpenAIUsageResponseError(f"a value does not fit its typed column: {exc}") from None
        self.writer.write_table(table)
        self.buffer = {name: [] for name in self.schema.names}
        self.buffered = 0

    def close(self) -> None:
        self.flush()
        self.writer.close()


class _JsonlSink:
    def __init__(self, endpoint: Endpoint, fh: IO[bytes]) -> None:
        self.fh = fh

    def write(self, n: int, columns: dict[str, list[Any]]) -> None:
        for row in rows_of(columns):
            line = {k: _text_value(v, k in ("start_time", "end_time")) for k, v in row.items()}
            self.fh.write(json.dumps(line, separators=(",", ":")).encode() + b"\n")

    def close(self) -> None:
        pass


class _CsvSink:
    def __init__(self, endpoint: Endpoint, fh: IO[bytes]) -> None:
        self.text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
        self.writer = csv.writer(self.text, lineterminator="\n")
        self.writer.writerow(endpoint.column_names)

    def write(self, n: int, columns: dict[str, list[Any]]) -> None:
        for row in rows_of(columns):
            values = []
            for k, v in row.items():
                v = _text_value(v, k in ("start_time", "end_time"))
                values.append("" if v is None else ("true" if v is True else "false" if v is False else v))
            self.writer.writerow(values)

    def close(self) -> None:
        self.text.flush()
        self.text.detach()


SINKS = {"parquet": _ParquetSink, "jsonl": _JsonlSink, "csv": _CsvSink}


@dataclass
class DayResult:
    date: str
    rows: int = 0
    files: list[str] = field(default_factory=list)
    #: Sum of each metric column over the day's rows (ints stay ints, amounts stay Decimals).
    totals: dict[str, Any] = field(default_factory=dict)


@dataclass
class PartitionWriter:
    """Writes one endpoint's days under ``root`` (= ``<output_path>/<endpoint>``)."""

    root: ObjectStoragePath
    endpoint: Endpoint
    file_format: str

    def __post_init__(self) -> None:
        if self.file_format not in FILE_FORMATS:
            raise OpenAIUsageValidationError(f"file_format={self.file_format!r} is not supported; allowed: {', '.join(FILE_FORMATS)}")

    @property
    def is_local(self) -> bool:
        return getattr(self.root, "protocol", "file") in ("file", "local", "")

    def write(self, query: UsageQuery, buckets: Iterable[dict[str, Any]]) -> Iterator[DayResult]:
        """Publish each day of the query's range as soon as all its buckets arrived."""
        current: _OpenDay | None = None
        covered_until = query.start_time
        try:
            for bucket in buckets:
                if bucket["start_time"] != covered_until:
                    # A day the API skipped would read as "no usage": refuse rather than guess.
                    raise self._gap(covered_until, bucket["start_time"])
                day = bucket["start_time"] - bucket["start_time"] % DAY
                if current is not None and current.day != day:
                    done, current = current, None
                    yield done.publish(covered_until)
                if current is None:
                    current = _OpenDay(self, day, max(query.start_time, day), min(query.end_time, day + DAY))
                current.add(bucket)
                covered_until = bucket["end_time"]
            if current is not None:
                done, current = current, None
                yield done.publish(covered_until)
        finally:
            if current is not None:
                current.discard()
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


class _OpenDay:
    """One UTC day being written to a local temporary file."""

    def __init__(self, writer: PartitionWriter, day: int, window_start: int, window_end: int) -> None:
        self.writer = writer
        self.day = day
        self.window = (window_start, window_end)
        self.rows = 0
        self.totals: dict[str, Any] = {c.name: 0 for c in writer.endpoint.metric_columns}
        self.dest = writer.root / f"date={day_label(day)}" / part_name(window_start, window_end, writer.file_format)
        if writer.is_local:
            self.dest.parent.mkdir(parents=True, exist_ok=True)
            tmp_dir: str | None = self.dest.parent.path
        else:
            tmp_dir = None
        fd, name = tempfile.mkstemp(prefix=f".{self.dest.name}.", suffix=".tmp", dir=tmp_dir)
        self.tmp = Path(name)
        self.fh = os.fdopen(fd, "wb")
        try:
            self.sink = SINKS[writer.file_format](writer.endpoint, self.fh)
        except BaseException:
            self.discard()
            raise

    def add(self, bucket: dict[str, Any]) -> None:
        try:
            endpoint = self.writer.endpoint
            n, columns = bucket_columns(endpoint, bucket)
            columns = sort_columns(endpoint, n, columns)
            self.sink.write(n, columns)
            self.rows += n
            for name in self.totals:
                self.totals[name] += sum(filter(None, columns[name]))  # drops None (and zeros, harmless)
        except BaseException:
            self.discard()
            raise

    def discard(self) -> None:
        sink = getattr(self, "sink", None)
        try:
            if sink is not None:
                # Finish the writer into the doomed temp file, so it does not write at garbage collection.
                sink.close()
        except Exception:  # noqa: BLE001 - the file is deleted anyway; the original error matters
            pass
        try:
            self.fh.close()
        finally:
            self.tmp.unlink(missing_ok=True)

    def publish(self, covered_until: int) -> DayResult:
        if covered_until < self.window[1]:
            self.discard()
            raise OpenAIUsageResponseError(
                f"{self.writer.endpoint.key}: day {day_label(self.day)} is only reported up to {iso(covered_until)}; "
                "its partition is left as it was"
            )
        try:
            self.sink.close()
            self.fh.close()
            if self.writer.is_local:
                os.replace(self.tmp, self.dest.path)
            else:
                self.dest.fs.put_file(str(self.tmp), self.dest.path)
        except BaseException:
            self.discard()
            raise
        finally:
            self.tmp.unlink(missing_ok=True)
        self._remove_overlapping()
        log.info("%s: wrote %s (%d rows)", self.writer.endpoint.key, self.dest.as_uri() if hasattr(self.dest, "as_uri") else self.dest, self.rows)
        return DayResult(day_label(self.day), self.rows, [self.dest.name], self.totals)

    def _remove_overlapping(self) -> None:
        """Older files of this day that cover any of the same minutes (other widths or formats)."""
        start, end = self.window[0] - self.day, self.window[1] - self.day
        for other in self.dest.parent.iterdir():
            window = _window_of(other.name)
            if other.name == self.dest.name or window is None:
                continue
            if window[0] < end and start < window[1]:
                other.unlink()
