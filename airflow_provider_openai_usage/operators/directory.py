"""``OpenAIDirectoryOperator``: a daily snapshot of the organization directory, one file per entity and day.

Layout: ``<output_path>/directory/<entity>/date=YYYY-MM-DD/data.<ext>``, written with the same
publishing primitive as usage partitions (``storage.DayStore``: one atomic replace per day file,
byte-identical re-runs, crash recovery).

Snapshot semantics: the date is the UTC date of the run's ``data_interval_end`` and the content is
the directory *as read during the run*. The admin API has no history, so a backfill of last
year writes today's names under last year's dates; keep a daily run going to build history.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_openai_usage.directory import ENTITIES, resolve_entities
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.task_range import is_templated
from airflow_provider_openai_usage.times import utc_date

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context

    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook


#: The folder under ``output_path`` that holds one dataset per entity.
DIRECTORY_DIR = "directory"
#: Bumped when the columns of any entity change meaning (read back from each day's manifest).
SCHEMA_VERSION = 1


def _literal(value: Any) -> bool:
    """A value known at DAG parse time (given, and not rendered at run time)."""
    return value is not None and not is_templated(value)


def snapshot_date(context: Mapping[str, Any]) -> str:
    """The UTC date a run's snapshot is filed under: its data interval end.

    A manual run without a data interval files under the date it runs (``run_after``), which is
    what it reads anyway.
    """
    moment = context.get("data_interval_end")
    name = "data_interval_end"
    if moment is None:
        dag_run = context.get("dag_run")
        moment, name = getattr(dag_run, "run_after", None), "run_after"
    if moment is None:
        moment, name = dt.datetime.now(dt.timezone.utc), "now"
    if isinstance(moment, str):
        moment = dt.datetime.fromisoformat(moment.replace("Z", "+00:00"))
    if not isinstance(moment, dt.datetime) or moment.tzinfo is None:
        raise OpenAIUsageValidationError(f"{name}={moment!r} is not an aware datetime; cannot tell which UTC date the snapshot is for")
    return utc_date(moment).isoformat()


def _asset_uris(output_path: Any, entities: Sequence[str]) -> list[Asset]:
    from airflow.sdk import Asset

    from airflow_provider_openai_usage.operators.usage import asset_base

    base = asset_base(output_path)
    if base is None:
        return []
    return [Asset(uri=f"{base}/{DIRECTORY_DIR}/{e}", extra={"directory_entity": e}) for e in entities]


class OpenAIDirectoryOperator(BaseOperator):
    """Snapshot OpenAI's organization directory (projects, users, keys, limits, ...) for the run's date.

    :param entities: ``"all"`` (default) or a list of entity keys: ``projects``, ``users``,
        ``project_users``, ``project_api_keys``, ``project_service_accounts``, ``admin_api_keys``,
        ``project_spend_limits``, ``project_spend_alerts``, ``project_rate_limits``.
    :param output_path: ``s3://...``, ``gs://...``, ``file:///...`` or an ``ObjectStoragePath``;
        each entity lands under ``<output_path>/directory/<entity>/date=YYYY-MM-DD/``.
    :param file_format: ``parquet`` (default, typed), ``jsonl`` or ``csv``.
    :param openai_usage_conn_id: the ``openai_usage`` connection holding the admin key.
    :param output_conn_id: connection for the object store (e.g. an ``aws`` connection).
    :param table_format: ``"delta"`` or ``"iceberg"``: each entity lands as a table
        (``<output_path>/delta/directory/<entity>`` or ``openai_usage.directory_<entity>``), one
        commit per entity and run, partitioned by the snapshot ``date``.
    :param catalog_conn_id: Iceberg only: the SQL catalog's connection (default a SQLite catalog
        at ``<output_path>/iceberg/catalog.db``).
    :param replace_history: overwrite a snapshot of a date more than a day past (default False: a
        backfill or late re-run keeps the snapshot read back then; dates without one are written).
    :param asset_partitions: emit the snapshot's date as the partition key of each entity's asset
        event when its snapshot changed (default); ``False``: one plain event per run (docs/ui.md).

    Every requested entity is read before any file is replaced, so a failed read changes nothing;
    a re-run of the same date on that date replaces that date's snapshot.
    """

    template_fields: Sequence[str] = (
        "entities", "output_path", "output_conn_id", "file_format", "table_format", "catalog_conn_id", "openai_usage_conn_id",
    )
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        output_path: Any,
        entities: str | Sequence[str] = "all",
        file_format: str = "parquet",
        openai_usage_conn_id: str = "openai_usage_default",
        output_conn_id: str | None = None,
        replace_history: bool = False,
        table_format: str | None = None,
        catalog_conn_id: str | None = None,
        asset_partitions: bool = True,
        **kwargs: Any,
    ) -> None:
        from airflow_provider_openai_usage.partitions import check_asset_partitions

        # Literal values are checked when the DAG is parsed, so a typo shows in the import errors.
        resolved = resolve_entities(entities) if _literal(entities) else None
        if _literal(output_path) and isinstance(output_path, str):
            from airflow_provider_openai_usage.storage import check_output_path

            check_output_path(output_path)
        if _literal(file_format):
            from airflow_provider_openai_usage.storage import check_file_format

            check_file_format(file_format)
        if _literal(table_format):
            from airflow_provider_openai_usage.storage.sinks import check_table_format

            check_table_format(table_format)
        if output_path is None:
            raise OpenAIUsageValidationError("output_path is required: the directory lands as files, e.g. s3://bucket/openai")
        if "outlets" not in kwargs and resolved is not None:
            assets = _asset_uris(output_path, resolved)
            if assets:
                kwargs["outlets"] = assets
        super().__init__(**kwargs)
        self.entities = entities
        self.output_path = output_path
        self.file_format = file_format
        self.openai_usage_conn_id = openai_usage_conn_id
        self.output_conn_id = output_conn_id
        self.asset_partitions = check_asset_partitions(asset_partitions)
        if not isinstance(replace_history, bool):
            raise OpenAIUsageValidationError(f"replace_history={replace_history!r} must be True or False")
        self.replace_history = replace_history
        self.table_format = table_format
        self.catalog_conn_id = catalog_conn_id

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_openai_usage.directory_rows import rows_table
        from airflow_provider_openai_usage.hooks.directory_paging import DirectoryReader
        from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
        from airflow_provider_openai_usage.organizations import check_no_single_organization_days, organization_root
        from airflow_provider_openai_usage.storage import DayStore, output_location
        from airflow_provider_openai_usage.storage.sinks import check_table_format

        entities = resolve_entities(self.entities)
        date = snapshot_date(context)
        location = output_location(self.output_path, self.output_conn_id or None)
        table_format = check_table_format(self.table_format or None)
        hook = OpenAIUsageHook(self.openai_usage_conn_id)
        try:
            organization_id = hook.organization_id()  # the connection's extra (no request), or one costs request
        except Exception:
            hook.close()
            raise
        if table_format is not None:
            return self._execute_tables(entities, date, location, table_format, hook, organization_id)
        for key in entities:
            check_no_single_organization_days(location / DIRECTORY_DIR / key, output_path=self.output_path)
        stores = {
            key: DayStore(
                organization_root(location / DIRECTORY_DIR / key, organization_id), self.file_format,
                described_as=f"output_path={location.as_uri()!r}",
            )
            for key in entities
        }
        for store in stores.values():
            store.prepare()  # before any request: an unwritable path fails without asking OpenAI
        kept = self._history_to_keep(date, stores)
        reader = DirectoryReader(hook)
        tables = {}
        try:
            for key in (k for k in entities if k not in kept):
                entity = ENTITIES[key]
                # Sorted, so a re-run over the same directory writes byte-identical files.
                rows = sorted(reader.iter_rows(key), key=lambda r: (r.get("project_id") or "", r["id"]))
                tables[key] = rows_table(entity, rows, self.file_format, organization_id=organization_id)
                self.log.info("directory %s: %d rows read", key, len(rows))
        finally:
            hook.close()
        from airflow_provider_openai_usage import partitions
        from airflow_provider_openai_usage.operators.usage import asset_base

        written = {}
        base = asset_base(self.output_path) if self.asset_partitions else None
        for key, table in tables.items():
            identity = {"dataset": f"{DIRECTORY_DIR}/{key}", "entity": key, "schema_version": SCHEMA_VERSION, "snapshot": "as_of_run",
                        "organization_id": organization_id}
            before = partitions.day_digests(stores[key].root, date, date) if base else {}
            day = stores[key].replace_day(date, table, identity)
            written[key] = {"rows": day.rows, "file": day.path.as_uri() if hasattr(day.path, "as_uri") else str(day.path)}
            if base:
                changed = partitions.changed_days(before, {date: day.sha256}, [date])
                partitions.emit_day_partitions(context, self.outlets, f"{base}/{DIRECTORY_DIR}/{key}", changed, self.log)
        return {
            "snapshot_date": date,
            "organization_id": organization_id,
            "output": f"{location.as_uri().rstrip('/')}/{DIRECTORY_DIR}",
            "file_format": self.file_format,
            "requests": reader.requests,
            "entities": written,
            "kept": kept,
            "rows": sum(w["rows"] for w in written.values()),
        }

    def _execute_tables(
        self, entities: Sequence[str], date: str, location: Any, table_format: str, hook: OpenAIUsageHook, organization_id: str
    ) -> dict[str, Any]:
        """Each entity's snapshot as one commit to its table (``storage.sinks``), identity checked first.

        One table per entity holds every organization: a commit replaces this organization's rows of the date.
        """
        from airflow_provider_openai_usage.directory_rows import arrow_schema as entity_schema
        from airflow_provider_openai_usage.directory_rows import rows_table
        from airflow_provider_openai_usage.hooks.directory_paging import DirectoryReader
        from airflow_provider_openai_usage.storage.sinks import SinkDay, open_table_sink

        sinks, identities = {}, {}
        try:
            for key in entities:
                dataset = f"{DIRECTORY_DIR}/{key}"
                sinks[key] = open_table_sink(
                    table_format, location, dataset, entity_schema(ENTITIES[key], "parquet", organization=True),
                    catalog_conn_id=self.catalog_conn_id, described_as=f"output_path={location.as_uri()!r}",
                    organization_id=organization_id,
                )
                identities[key] = {"dataset": dataset, "entity": key, "schema_version": SCHEMA_VERSION, "snapshot": "as_of_run",
                                   "format": table_format}
                sinks[key].prepare(identities[key])  # before any request
            kept = self._history_to_keep(date, sinks)
        except Exception:
            hook.close()
            raise
        reader = DirectoryReader(hook)
        tables = {}
        try:
            for key in (k for k in entities if k not in kept):
                rows = sorted(reader.iter_rows(key), key=lambda r: (r.get("project_id") or "", r["id"]))
                tables[key] = rows_table(ENTITIES[key], rows, "parquet", organization_id=organization_id)
                self.log.info("directory %s: %d rows read", key, len(rows))
        finally:
            hook.close()
        written = {}
        for key, table in tables.items():
            sinks[key].commit([SinkDay(date, table)], identities[key])
            written[key] = {"rows": table.num_rows, "table": sinks[key].location}
        return {
            "snapshot_date": date,
            "organization_id": organization_id,
            "output": f"{location.as_uri().rstrip('/')}",
            "table_format": table_format,
            "requests": reader.requests,
            "entities": written,
            "kept": kept,
            "rows": sum(w["rows"] for w in written.values()),
        }

    def _history_to_keep(self, date: str, stores: Mapping[str, Any]) -> list[str]:
        """Entities whose snapshot of a past ``date`` exists already: a late run cannot know past names.

        A snapshot is "history" once a whole day separates its date from now (a daily run, a retry
        or a re-run on the day itself replaces it). A backfill or a late re-run of such a date keeps
        the snapshot read back then instead of overwriting it with today's names, unless
        ``replace_history=True``. Dates without a snapshot are written as of now, as documented.
        """
        if self.replace_history:
            return []
        now = dt.datetime.now(dt.timezone.utc)
        if dt.date.fromisoformat(date) >= (now - dt.timedelta(days=1)).date():
            return []
        kept = [
            key for key, store in stores.items()
            if (store.has_day(date) if hasattr(store, "has_day") else store.current_day(date, read_data=False) is not None)
        ]
        if kept:
            self.log.warning(
                "directory snapshot of %s exists for %s and that date is past: kept as read then (names as of today "
                "would rewrite history). Set replace_history=True to overwrite it",
                date, ", ".join(kept),
            )
        return kept
