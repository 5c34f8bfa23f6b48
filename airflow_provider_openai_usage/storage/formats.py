"""Arrow tables ↔ the bytes of one day file (Parquet, JSONL, CSV), typed and deterministic.

Every format goes through an Arrow table typed from a schema, so a value that does not fit its column
(an int beyond int64, an amount beyond the decimal) is refused the same way whatever the format, with
the column and the value named. Nothing in a file depends on when it was written: the same table
gives the same bytes.

Text formats: times as ``2025-11-09T00:00:00Z``, decimals as exact strings (``"0.5"``, ``"0"``),
booleans as ``true``/``false``, missing values as ``null`` (JSONL) or an empty field (CSV).
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
from collections.abc import Mapping, Sequence
from decimal import ROUND_HALF_EVEN, Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError

if TYPE_CHECKING:
    import pyarrow as pa

FILE_FORMATS = ("parquet", "jsonl", "csv")
#: Key of the Parquet key-value metadata entry holding the day's identity (JSON).
METADATA_KEY = "openai_usage"
ROW_GROUP_ROWS = 65536
#: A day with fewer rows is written without compression or dictionaries: for a file of a few KB,
#: zstd's and the dictionaries' set-up per column cost more than the bytes they save (measured: about
#: half of the encoding time of a one-row day). Decided on the day's row count alone, so deterministic.
SMALL_DAY_ROWS = 256
_PER_SECOND = {"s": 1, "ms": 1000, "us": 1_000_000, "ns": 1_000_000_000}


def check_file_format(file_format: Any) -> str:
    if file_format not in FILE_FORMATS:
        raise OpenAIUsageValidationError(f"file_format={file_format!r} is not supported; allowed: {', '.join(FILE_FORMATS)}")
    return str(file_format)


def canonical_json(value: Any) -> str:
    """One spelling per value (sorted keys, no spaces): identities compare and hash as text."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, (tuple, set, frozenset)):
        return list(value)
    raise TypeError(f"{type(value).__name__} is not JSON")


# -- Python columns → a typed table ------------------------------------------------------------------
def table_from_columns(schema: pa.Schema, columns: Mapping[str, Sequence[Any]]) -> pa.Table:
    """Typed columns; times may be Unix seconds. Names the column and value that do not fit."""
    import pyarrow as pa

    arrays = []
    for f in schema:
        values = columns[f.name]
        arrays.append(_array(f, values))
    return pa.Table.from_arrays(arrays, schema=schema)


def _array(f: pa.Field, values: Sequence[Any]) -> pa.Array:
    import pyarrow as pa

    t = f.type
    try:
        if pa.types.is_timestamp(t):
            if values and isinstance(next((v for v in values if v is not None), None), int):
                # Unix seconds → the column's unit in Python: cheaper than a compute cast per small chunk.
                per_second = _PER_SECOND[t.unit]
                return pa.array([None if v is None else v * per_second for v in values], type=t)
            return pa.array(values, type=t)
        if pa.types.is_decimal(t):
            values = [_fit_scale(v, t.scale) for v in values]
        return pa.array(values, type=t)
    except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
        bad = _first_bad(f, values)
        raise OpenAIUsageResponseError(
            f"{f.name}={bad!r} does not fit the column's type {t}; nothing of this day is written"
        ) from None


def _fit_scale(value: Any, scale: int) -> Any:
    """Digits beyond the column's scale are rounded half-even (see docs/design.md: decimals)."""
    if isinstance(value, Decimal) and value.is_finite() and value.as_tuple().exponent < -scale:  # type: ignore[operator]
        return value.quantize(Decimal(1).scaleb(-scale), rounding=ROUND_HALF_EVEN)
    return value


def _first_bad(f: pa.Field, values: Sequence[Any]) -> Any:
    import pyarrow as pa

    for v in values:
        try:
            pa.array([v], type=f.type)
        except (pa.ArrowInvalid, pa.ArrowTypeError, OverflowError, TypeError, ValueError):
            return v
    return "(unknown value)"


# -- encoding ----------------------------------------------------------------------------------------
def write_table(table: pa.Table, file_format: str, fh: Any, metadata: Mapping[str, Any] | None = None) -> None:
    """Write ``table`` to the binary file object ``fh``; ``metadata`` goes into Parquet's key-value metadata."""
    encoder = DayEncoder(table.schema, file_format, metadata, sink=fh)
    encoder.write(table)
    encoder.close()


def encode_table(table: pa.Table, file_format: str, metadata: Mapping[str, Any] | None = None) -> Any:
    """The file's bytes (a buffer: ``pyarrow.Buffer`` for Parquet, ``bytes`` for text), encoded in memory."""
    encoder = DayEncoder(table.schema, file_format, metadata)
    encoder.write(table)
    return encoder.finish()


class DayEncoder:
    """One day file encoded from tables handed over in row order, a piece at a time.

    Why: a day of minute buckets grouped by every dimension is hundreds of thousands of rows; held
    whole it bounds nothing. Fed piece by piece, at most one Parquet row group (``ROW_GROUP_ROWS``)
    is held as Arrow data, plus the encoded bytes so far (compressed, a few per cent of the table).

    The bytes depend only on the rows, never on how they were cut into pieces: Parquet row groups
    are cut at exactly every ``ROW_GROUP_ROWS`` rows, and each is handed to the writer as one
    contiguous chunk, so a day streamed bucket by bucket, a day merged from an old file and a day
    written in one call are the same file byte for byte. Text formats are row by row anyway.
    """

    def __init__(
        self, schema: pa.Schema, file_format: str, metadata: Mapping[str, Any] | None = None, *, sink: Any = None
    ) -> None:
        import pyarrow as pa

        self.file_format = check_file_format(file_format)
        if metadata is not None and file_format == "parquet":
            schema = schema.with_metadata({METADATA_KEY: canonical_json(metadata)})
        self.schema = schema
        self.rows = 0
        self._own_sink = sink is None
        self._sink: Any = sink if sink is not None else (pa.BufferOutputStream() if file_format == "parquet" else io.BytesIO())
        self._held: list[pa.Table] = []
        self._held_rows = 0
        self._parquet: Any = None
        self._header_written = False

    def write(self, table: pa.Table) -> None:
        """Append ``table``'s rows (any number, any chunking)."""
        self.rows += table.num_rows
        if self.file_format != "parquet":
            self._write_text(table)
            return
        if table.num_rows == 0:
            return
        self._held.append(table)
        self._held_rows += table.num_rows
        while self._held_rows >= ROW_GROUP_ROWS:
            import pyarrow as pa

            held = pa.concat_tables(self._held)
            self._row_group(held.slice(0, ROW_GROUP_ROWS))
            rest = held.slice(ROW_GROUP_ROWS)
            self._held, self._held_rows = ([rest] if rest.num_rows else []), rest.num_rows

    def _row_group(self, table: pa.Table, *, small: bool = False) -> None:
        if self._parquet is None:
            import pyarrow.parquet as pq

            options: dict[str, Any] = {"compression": "none", "use_dictionary": False} if small else {"compression": "zstd"}
            self._parquet = pq.ParquetWriter(self._sink, self.schema, **options)
        # One contiguous chunk per column: the writer's pages depend on how its input is cut.
        self._parquet.write_table(table.combine_chunks(), row_group_size=ROW_GROUP_ROWS)

    def close(self) -> None:
        """Write what is held and the file's footer (nothing may be written after)."""
        if self.file_format == "parquet":
            if self._held or self._parquet is None:  # an empty day is one empty row group, as pq.write_table writes it
                import pyarrow as pa

                small = self._parquet is None and self.rows < SMALL_DAY_ROWS  # the whole day is held: its size is known
                self._row_group(pa.concat_tables(self._held) if self._held else self.schema.empty_table(), small=small)
                self._held, self._held_rows = [], 0
            self._parquet.close()
        elif self.file_format == "csv" and not self._header_written:
            self._write_text(self.schema.empty_table())

    def finish(self) -> Any:
        """Close, and return the file's bytes (for an encoder that owns its in-memory sink)."""
        self.close()
        if not self._own_sink:
            raise ValueError("this encoder writes to a caller's file; its bytes are there")
        return self._sink.getvalue()

    def _write_text(self, table: pa.Table) -> None:
        fh = self._sink
        if self.file_format == "jsonl":
            for row in _text_rows(table, csv_style=False):
                fh.write(json.dumps(row, separators=(",", ":")).encode() + b"\n")
            return
        text = io.TextIOWrapper(fh, encoding="utf-8", newline="", write_through=True)
        writer = csv.writer(text, lineterminator="\n")
        if not self._header_written:
            writer.writerow(table.schema.names)
            self._header_written = True
        table, bare_cr = _csv_safe_strings(table)
        for row in _text_rows(table, csv_style=True):
            if bare_cr:
                text.write(",".join(_rfc4180(v) for v in row.values()) + "\n")
            else:
                writer.writerow(row.values())
        text.flush()
        text.detach()


#: A text cell starting with one of these is run as a formula by spreadsheets (OWASP "CSV Injection");
#: ``'`` itself is included so that reading strips exactly one leading ``'`` and every value round-trips.
FORMULA_STARTS = "=+-@\t\r'"
_FORMULA_RE = "^[=+\\-@\t\r']"
#: ...except a plain number (a negative amount as text, e.g. FOCUS decimals): spreadsheets read it as
#: the number it is, and a ``'`` would turn it into text for every reader.
_NUMBER_RE = "^[+-]?[0-9]+(\\.[0-9]+)?([eE][+-]?[0-9]+)?$"


def _csv_safe_strings(table: pa.Table) -> tuple[pa.Table, bool]:
    """String columns with formula-like cells prefixed by ``'``; and whether any cell holds a CR.

    Python's ``csv`` quotes a field holding the separator, a quote or the line terminator (LF here)
    but not a bare CR, which every RFC 4180 reader takes as a line break: such rows are quoted by
    ``_rfc4180`` instead (rare, so the C writer keeps the common case).
    """
    import pyarrow as pa
    import pyarrow.compute as pc

    bare_cr = False
    for i, f in enumerate(table.schema):
        if not pa.types.is_string(f.type):
            continue
        column = table.column(i)
        if pc.any(pc.match_substring(column, "\r")).as_py():
            bare_cr = True
        risky = pc.and_(pc.match_substring_regex(column, _FORMULA_RE), pc.invert(pc.match_substring_regex(column, _NUMBER_RE)))
        if pc.any(risky).as_py():
            prefixed = pc.binary_join_element_wise(pa.scalar("'"), column, pa.scalar(""))
            table = table.set_column(i, f, pc.if_else(risky, prefixed, column))
    return table, bare_cr


def _rfc4180(value: Any) -> str:
    """One CSV field: quoted (quotes doubled) when it holds a separator, a quote, CR or LF."""
    text = str(value)
    if any(c in text for c in ',"\r\n'):
        return '"' + text.replace('"', '""') + '"'
    return text


def _text_value(value: Any, csv_style: bool) -> Any:
    if isinstance(value, dt.datetime):
        value = value.astimezone(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    elif isinstance(value, Decimal):
        value = format(value.normalize(), "f") if value else "0"
    if csv_style:
        if value is None:
            return ""
        if isinstance(value, bool):
            return "true" if value else "false"
    return value


def _text_rows(table: pa.Table, csv_style: bool) -> Any:
    columns = table.to_pydict()
    names = list(columns)
    converted = [[_text_value(v, csv_style) for v in columns[name]] for name in names]
    for values in zip(*converted, strict=True):  # a table's columns all have num_rows values
        yield dict(zip(names, values, strict=True))


# -- decoding ----------------------------------------------------------------------------------------
def read_table(data: bytes, file_format: str, schema: pa.Schema | None = None) -> pa.Table:
    """A day file's bytes → a table. Text formats need ``schema`` (they carry no types)."""
    import pyarrow as pa

    if file_format == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(pa.BufferReader(data))
        return table if schema is None else table.select(schema.names).cast(schema)
    if schema is None:
        raise ValueError(f"reading {file_format} needs the dataset's schema")
    if file_format == "jsonl":
        records = [json.loads(line) for line in data.decode().splitlines() if line]
        raw = {name: [r.get(name) for r in records] for name in schema.names}
    elif file_format == "csv":
        reader = csv.reader(io.StringIO(data.decode(), newline=""))
        header = next(reader, None)
        if header is None:
            raise ValueError("a CSV day file without a header")
        rows = list(reader)
        index = {name: i for i, name in enumerate(header)}
        raw = {name: [_from_csv(r[index[name]], schema.field(name).type) for r in rows] for name in schema.names}
    else:
        check_file_format(file_format)
        raise AssertionError("unreachable")
    columns = {f.name: [_from_text(v, f.type) for v in raw[f.name]] for f in schema}
    return table_from_columns(schema, columns)


def _from_csv(value: str, t: pa.DataType) -> Any:
    import pyarrow as pa

    if value == "" and not pa.types.is_string(t):
        return None
    if value == "" and pa.types.is_string(t):
        return None  # CSV cannot tell "" from null; the writer writes null as empty
    if value.startswith("'") and pa.types.is_string(t):
        return value[1:]  # the writer's formula guard (``_csv_safe_strings``)
    if pa.types.is_boolean(t):
        return value == "true"
    if pa.types.is_integer(t):
        return int(value)
    return value


def _from_text(value: Any, t: pa.DataType) -> Any:
    import pyarrow as pa

    if value is None:
        return None
    if pa.types.is_timestamp(t):
        return int(dt.datetime.strptime(value, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.timezone.utc).timestamp())
    if pa.types.is_decimal(t):
        return Decimal(value)
    return value
