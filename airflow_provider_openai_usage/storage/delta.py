"""Delta Lake tables through ``deltalake`` (delta-rs): the ``table_format="delta"`` sink.

Where: the folder ``<output_path>/delta/<dataset>`` is the table (``_delta_log/`` beside
``date=YYYY-MM-DD/`` partition folders). One commit per run: ``write_deltalake(mode="overwrite",
predicate="date IN (...)")`` replaces exactly the run's days. The commit is based on the version
the run read its part days from; delta-rs refuses it when a concurrent commit added or removed
files of those dates ("a concurrent transaction added new data"), and the run re-reads the days
from the new version and commits again (``TableSink.commit``). On S3 delta-rs commits with
conditional writes (no lock service). What the table holds (``openai_usage.identity``) is a table
property, written when the table is created; a newer schema adds its columns
(``schema_mode="merge"``), never dropping any.

``deltalake`` is imported only here, inside the functions (the ``[delta]`` extra).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

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

#: The folder under ``output_path`` that holds the Delta tables.
DELTA_DIR = "delta"


def _deltalake() -> Any:
    try:
        import deltalake
    except ImportError:
        raise missing_extra("delta", "deltalake") from None
    return deltalake


def table_uri(location: ObjectStoragePath, dataset: str) -> str:
    """The table's URI as delta-rs takes it (a plain path on a local disk)."""
    path = location / DELTA_DIR / dataset
    protocol = getattr(path, "protocol", "file")
    if protocol in ("file", "local", ""):
        return str(path.path)
    return f"{'s3' if protocol in ('s3', 's3a') else protocol}://{path.path}"


def storage_options(location: ObjectStoragePath) -> dict[str, str]:
    """The object store's credentials, endpoint and region from the ``output_conn_id`` connection
    (Airflow's S3Hook resolves them as for every other S3 call), in delta-rs's (object_store's) names."""
    protocol = getattr(location, "protocol", "file")
    if protocol not in ("s3", "s3a"):
        return {}
    from airflow.providers.amazon.aws.hooks.s3 import S3Hook

    hook = S3Hook(aws_conn_id=getattr(location, "conn_id", None))
    opts: dict[str, str] = {}
    credentials = hook.get_credentials()
    if credentials.access_key:
        opts["AWS_ACCESS_KEY_ID"] = credentials.access_key
    if credentials.secret_key:
        opts["AWS_SECRET_ACCESS_KEY"] = credentials.secret_key
    if credentials.token:
        opts["AWS_SESSION_TOKEN"] = credentials.token
    endpoint = hook.conn_config.get_service_endpoint_url(service_name="s3")
    if endpoint:
        opts["AWS_ENDPOINT_URL"] = endpoint
        if endpoint.startswith("http://"):
            opts["AWS_ALLOW_HTTP"] = "true"
    region = hook.conn_config.region_name
    if region:
        opts["AWS_REGION"] = region
    return opts


class DeltaSink(TableSink):
    format_name = "delta"

    def __init__(self, location: ObjectStoragePath, dataset: str, schema: pa.Schema, *, described_as: str | None = None) -> None:
        self.uri = table_uri(location, dataset)
        super().__init__(dataset, schema, self.uri, f"{described_as or 'output_path'}: the Delta table {self.uri}")
        self.options = storage_options(location)

    def _open(self) -> Any:
        dl = _deltalake()
        try:
            return dl.DeltaTable(self.uri, storage_options=self.options or None)
        except dl.exceptions.TableNotFoundError:
            return None

    def _held_identity(self) -> str | None:
        table = self._open()
        return None if table is None else self._snapshot_identity(table)

    def _snapshot_identity(self, snapshot: Any) -> str | None:
        value = snapshot.metadata().configuration.get(IDENTITY_PROPERTY)
        return None if value is None else str(value)

    def _create(self, identity: Mapping[str, Any]) -> None:
        """An empty table that records its identity (version 0); two runs creating it at once: one wins."""
        dl = _deltalake()
        try:
            dl.DeltaTable.create(
                self.uri, dl.Schema.from_arrow(table_schema(self.schema)), mode="ignore", partition_by=[DATE_COLUMN],
                configuration={IDENTITY_PROPERTY: identity_json(identity)}, storage_options=self.options or None,
                raise_if_key_not_exists=False,
            )
        except dl.exceptions.CommitFailedError:
            pass  # another writer created it first; prepare reads its identity next

    def _snapshot(self) -> Any:
        table = self._open()
        if table is None:
            raise CommitConflict("the table is gone")  # pragma: no cover - dropped between prepare and commit
        return table

    def _read_day(self, snapshot: Any, date: str) -> pa.Table:
        """The day's rows at ``snapshot``, read by delta-rs's own engine (DataFusion).

        Not ``to_pyarrow_table``: its pyarrow dataset scanner leaves threads that can abort the
        process at interpreter exit ("terminate called without an active exception", delta-rs#2184).
        """
        import pyarrow as pa

        reader = _deltalake().QueryBuilder().register("t", snapshot).execute(f"SELECT * FROM t WHERE {self.day_filter([date])}")
        return pa.table(reader.read_all())

    def _columns(self, snapshot: Any) -> set[str]:
        return {f.name for f in snapshot.schema().fields}

    def _replace(self, snapshot: Any, dates: list[str], rows: list[pa.Table], identity: Mapping[str, Any]) -> None:
        import pyarrow as pa

        dl = _deltalake()
        predicate = self.day_filter(dates)  # dates are YYYY-MM-DD, organization ids org-[A-Za-z0-9_-]: no quoting issue
        data = pa.concat_tables(rows, promote_options="default")
        try:
            dl.write_deltalake(
                snapshot, data, mode="overwrite", predicate=predicate, schema_mode="merge", partition_by=[DATE_COLUMN],
                commit_properties=dl.CommitProperties(custom_metadata={"openai_usage.days": ",".join(dates)}),
            )
        except dl.exceptions.CommitFailedError as exc:
            raise CommitConflict(str(exc)) from None
