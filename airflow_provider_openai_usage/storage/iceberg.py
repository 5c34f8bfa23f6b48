"""Apache Iceberg tables through ``pyiceberg`` with a SQL catalog: the ``table_format="iceberg"`` sink.

Where: the table ``openai_usage.<dataset>`` (``directory/projects`` → ``directory_projects``) of a
SQL catalog, its data and metadata files under ``<output_path>/iceberg``. The catalog is the
Airflow connection ``catalog_conn_id`` (PostgreSQL in production; ``sqlite`` connections too), or,
on a local disk, a SQLite catalog at ``<output_path>/iceberg/catalog.db`` (demo, tests).

One commit per run: one transaction that (if the schema gained columns) adds them, then
``overwrite(overwrite_filter=In("date", days))``: the run's days replaced, nothing else. The
transaction is based on the snapshot the run read its part days from; pyiceberg validates it
against every commit since (data added or removed in those dates fails it with a
``ValidationException``; commits to other dates are retried by pyiceberg itself), and the run
re-reads its days from the new snapshot and commits again (``TableSink.commit``). What the
table holds (``openai_usage.identity``) is a table property set when the table is created.

``pyiceberg`` is imported only here, inside the functions (the ``[iceberg]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.storage.sinks import (
    DATE_COLUMN,
    IDENTITY_PROPERTY,
    CommitConflict,
    TableSink,
    identity_json,
    missing_extra,
    table_schema,
)

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

#: The folder under ``output_path`` that holds the Iceberg warehouse (and the default SQLite catalog).
ICEBERG_DIR = "iceberg"
#: The catalog namespace of every table this provider writes.
NAMESPACE = "openai_usage"
CATALOG_FILE = "catalog.db"
#: The table property that maps the columns of files written here (no Iceberg field ids) to fields.
NAME_MAPPING = "schema.name-mapping.default"


def table_identifier(dataset: str) -> str:
    return f"{NAMESPACE}.{dataset.replace('/', '_')}"


def _catalog_uri(location: ObjectStoragePath, catalog_conn_id: str | None, described_as: str) -> str:
    """The SQLAlchemy URL of the catalog: the connection's, or a SQLite file beside a local warehouse."""
    if catalog_conn_id:
        from airflow.sdk import Connection

        conn = Connection.get(catalog_conn_id)
        if conn.conn_type in ("postgres", "postgresql"):
            from urllib.parse import quote

            auth = f"{quote(conn.login or '', safe='')}:{quote(conn.password or '', safe='')}@" if conn.login else ""
            port = f":{conn.port}" if conn.port else ""
            return f"postgresql+psycopg2://{auth}{conn.host or 'localhost'}{port}/{conn.schema or 'postgres'}"
        if conn.conn_type == "sqlite":
            return f"sqlite:///{conn.host}"
        raise OpenAIUsageValidationError(
            f"catalog_conn_id={catalog_conn_id!r} is a {conn.conn_type!r} connection; the Iceberg catalog is a SQL catalog: "
            "use a postgres (production) or sqlite connection"
        )
    protocol = getattr(location, "protocol", "file")
    if protocol not in ("file", "local", ""):
        raise OpenAIUsageValidationError(
            f"table_format='iceberg' with {described_as} (an object store) needs catalog_conn_id: a postgres connection to the "
            "Iceberg SQL catalog (the default SQLite catalog lives on a local disk only)"
        )
    import os

    folder = os.path.join(str((location / ICEBERG_DIR).path))
    os.makedirs(folder, exist_ok=True)
    return f"sqlite:///{os.path.join(folder, CATALOG_FILE)}"


def _io_properties(location: ObjectStoragePath) -> dict[str, str]:
    """pyiceberg's FileIO settings for an S3 warehouse, from the ``output_conn_id`` filesystem."""
    from airflow_provider_openai_usage.storage.delta import storage_options

    opts = storage_options(location)
    names = {
        "AWS_ACCESS_KEY_ID": "s3.access-key-id", "AWS_SECRET_ACCESS_KEY": "s3.secret-access-key",
        "AWS_SESSION_TOKEN": "s3.session-token", "AWS_ENDPOINT_URL": "s3.endpoint", "AWS_REGION": "s3.region",
    }
    return {names[k]: v for k, v in opts.items() if k in names}


def _warehouse(location: ObjectStoragePath) -> str:
    path = location / ICEBERG_DIR
    protocol = getattr(path, "protocol", "file")
    if protocol in ("file", "local", ""):
        return f"file://{path.path}"
    return f"{'s3' if protocol in ('s3', 's3a') else protocol}://{path.path}"


class IcebergSink(TableSink):
    format_name = "iceberg"

    def __init__(
        self, location: ObjectStoragePath, dataset: str, schema: pa.Schema, *, catalog_conn_id: str | None = None,
        described_as: str | None = None,
    ) -> None:
        described = described_as or "output_path"
        self.identifier = table_identifier(dataset)
        super().__init__(dataset, schema, self.identifier, f"{described}: the Iceberg table {self.identifier}")
        try:
            from pyiceberg.catalog.sql import SqlCatalog
        except ImportError:
            raise missing_extra("iceberg", "pyiceberg") from None
        self.catalog = SqlCatalog(
            NAMESPACE, uri=_catalog_uri(location, catalog_conn_id, described), warehouse=_warehouse(location),
            **_io_properties(location),
        )

    def _load(self) -> Any:
        from pyiceberg.exceptions import NoSuchTableError

        try:
            return self.catalog.load_table(self.identifier)
        except NoSuchTableError:
            return None

    def _held_identity(self) -> str | None:
        table = self._load()
        return None if table is None else self._snapshot_identity(table)

    def _snapshot_identity(self, snapshot: Any) -> str | None:
        value = snapshot.properties.get(IDENTITY_PROPERTY)
        return None if value is None else str(value)

    def _create(self, identity: Mapping[str, Any]) -> None:
        """The table, partitioned by ``date``, with its identity: one catalog commit (two writers: one wins)."""
        from pyiceberg.exceptions import CommitFailedException, NamespaceAlreadyExistsError, TableAlreadyExistsError

        try:
            self.catalog.create_namespace_if_not_exists(NAMESPACE)
        except NamespaceAlreadyExistsError:  # pragma: no cover - created by a concurrent writer in between
            pass
        except Exception:
            # Two writers creating the namespace at once: the SQL catalog's unique key refuses the second
            # (sqlalchemy's IntegrityError, not pyiceberg's error). Fine if it exists now; else a real error.
            if (NAMESPACE,) not in {tuple(n) for n in self.catalog.list_namespaces()}:
                raise
        try:
            txn = self.catalog.create_table_transaction(
                self.identifier, schema=table_schema(self.schema), properties={IDENTITY_PROPERTY: identity_json(identity)}
            )
            with txn.update_spec() as spec:
                spec.add_identity(DATE_COLUMN)
            txn.commit_transaction()
        except (TableAlreadyExistsError, CommitFailedException):
            pass  # another writer created it first; prepare reads its identity next
        except Exception:
            if self._load() is None:  # the same race on the catalog's table row; anything else is raised
                raise

    def _snapshot(self) -> Any:
        table = self._load()
        if table is None:
            raise CommitConflict("the table is gone")  # pragma: no cover - dropped between prepare and commit
        return table

    def _read_day(self, snapshot: Any, date: str) -> pa.Table:
        return snapshot.scan(row_filter=self.day_filter([date])).to_arrow()  # date: YYYY-MM-DD, nothing to quote

    def _columns(self, snapshot: Any) -> set[str]:
        return {f.name for f in snapshot.schema().fields}

    def _replace(self, snapshot: Any, dates: list[str], rows: list[pa.Table], identity: Mapping[str, Any]) -> None:
        """``overwrite`` as pyiceberg builds it (a delete of the dates with overwrite isolation, then an
        append, one transaction), except that each day's file is written here: pyiceberg splits a
        table into partitions with one Arrow filter per partition over the whole table, which made a
        year of days 20× slower than files. A file written before a commit that fails is referenced
        by no snapshot (an orphan, as Delta leaves them), never read."""
        import warnings

        from pyiceberg.exceptions import CommitFailedException, ValidationException
        from pyiceberg.table.snapshots import Operation

        columns = {c.name for c in snapshot.schema().fields}
        missing = [f for table in rows[:1] for f in table.schema if f.name not in columns]
        in_dates = self.day_filter(dates)  # dates are YYYY-MM-DD (checked in commit), organization ids checked
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", "Delete operation did not match any records")  # a day new to the table
                txn = snapshot.transaction()
                if missing:
                    with txn.update_schema() as update:
                        update.union_by_name(rows[0].schema)  # a provider release's new typed columns; nothing dropped
                mapping = txn.table_metadata.schema().name_mapping.model_dump_json()
                if txn.table_metadata.properties.get(NAME_MAPPING) != mapping:
                    txn.set_properties(**{NAME_MAPPING: mapping})  # how our files' columns map to the table's fields
                txn.delete(delete_filter=in_dates, _isolation_operation=Operation.OVERWRITE)
                paths = [self._write_day(snapshot, date, table) for date, table in zip(dates, rows, strict=True) if table.num_rows]
                if paths:
                    txn.add_files(paths, check_duplicate_files=False)
                txn.commit_transaction()
        except (ValidationException, CommitFailedException) as exc:
            raise CommitConflict(str(exc)) from None

    def _write_day(self, snapshot: Any, date: str, table: pa.Table) -> str:
        """One day's rows as a new Parquet file under the table's data folder (``data/date=.../``)."""
        import uuid

        import pyarrow.parquet as pq

        path = f"{snapshot.location().rstrip('/')}/data/{DATE_COLUMN}={date}/{uuid.uuid4().hex}.parquet"
        with snapshot.io.new_output(path).create(overwrite=False) as stream:
            pq.write_table(table, stream, compression="zstd")
        return path
