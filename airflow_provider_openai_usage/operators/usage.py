"""Operators that land a DAG run's usage as one partition per UTC day in object storage.

``OpenAIUsageOperator(endpoint=...)`` does the work; the per-endpoint classes below only fix
``endpoint`` so DAG authors find them by name and see the right docs. A range of many days (a
manual backfill or a wide interval) is pulled with the fewest requests and written as the same
per-day files that daily runs write, byte for byte.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from contextlib import closing
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.rows import json_safe, unknown_fields_warning
from airflow_provider_openai_usage.task_range import UsageRangeTask, is_templated

if TYPE_CHECKING:
    from airflow.sdk import Asset, Context, ObjectStoragePath

    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
    from airflow_provider_openai_usage.query import UsageQuery
    from airflow_provider_openai_usage.storage import PartitionWriter

DEFAULT_MAX_XCOM_ROWS = 10_000
#: Two requests in flight: about half the wall time of a long backfill, and gentle on OpenAI's rate
#: limits (docs/design.md).
DEFAULT_PARALLEL_REQUESTS = 2


def check_max_xcom_rows(max_xcom_rows: Any) -> int:
    if not isinstance(max_xcom_rows, int) or isinstance(max_xcom_rows, bool) or max_xcom_rows < 0:
        raise OpenAIUsageValidationError(
            f"max_xcom_rows={max_xcom_rows!r} must be an int >= 0 (the most rows pushed to XCom without output_path)"
        )
    return max_xcom_rows


def output_location(output_path: Any, output_conn_id: str | None) -> ObjectStoragePath:
    """Kept here for callers of the operator module; the checks live in ``storage.location``."""
    from airflow_provider_openai_usage.storage.location import output_location as location

    return location(output_path, output_conn_id)


def asset_base(output_path: Any) -> str | None:
    """The URI (no trailing ``/``) of a literal output location, for Assets; a templated one cannot be known at parse."""
    from airflow.sdk import ObjectStoragePath

    if isinstance(output_path, ObjectStoragePath):
        base = output_path.as_uri()
    elif isinstance(output_path, str) and not is_templated(output_path) and output_path.strip():
        base = output_path.strip() if "://" in output_path else "file://" + output_path.strip()
    else:
        return None
    return base.rstrip("/")


def _asset_for(output_path: Any, endpoint_key: str) -> Asset | None:
    """The Asset a literal output location declares."""
    from airflow.sdk import Asset

    base = asset_base(output_path)
    return None if base is None else Asset(uri=f"{base}/{endpoint_key}", extra={"endpoint": endpoint_key})


class OpenAIUsageOperator(UsageRangeTask, BaseOperator):
    """Pull one usage/costs endpoint for a range and write one partition per UTC day.

    :param endpoint: a registry key (``completions``, ..., ``costs``).
    :param openai_usage_conn_id: the ``openai_usage`` connection holding the admin key.
    :param start_time: range start (inclusive); default the run's ``data_interval_start``.
    :param end_time: range end (exclusive); default the run's ``data_interval_end``.
    :param bucket_width: ``1d`` (default), ``1h`` or ``1m`` where the endpoint allows it.
    :param group_by: dimensions to group by, e.g. ``["project_id", "model"]``.
    :param filters: the API's filters, e.g. ``{"project_ids": ["proj_abc"], "batch": False}``.
    :param output_path: ``s3://...``, ``gs://...``, ``file:///...`` or an ``ObjectStoragePath``;
        without it the rows are returned through XCom (up to ``max_xcom_rows``).
    :param output_conn_id: connection for the object store (e.g. an ``aws`` connection).
    :param file_format: ``parquet`` (default), ``jsonl`` or ``csv``.
    :param table_format: ``"delta"`` or ``"iceberg"`` to land the days as a table instead of files
        (``<output_path>/delta/<endpoint>``, or the Iceberg table ``openai_usage.<endpoint>``):
        a run replaces exactly its days in one commit (docs/data-layout.md, "Table layout").
    :param catalog_conn_id: Iceberg only: an Airflow connection to the SQL catalog (a PostgreSQL
        connection in production); default a SQLite catalog at ``<output_path>/iceberg/catalog.db``.
    :param restate_days: also re-pull and rewrite this many days before the range, because OpenAI
        revises recent buckets.
    :param max_xcom_rows: refuse to push more rows than this through XCom.
    :param asset_partitions: with a literal ``output_path``, emit one asset event per UTC day whose
        content changed, the day (``YYYY-MM-DD``) as its partition key (default), for downstream
        DAGs on a ``PartitionedAssetTimetable``; ``False`` emits one plain event per run instead, for
        DAGs on ``schedule=[Asset(...)]`` (docs/ui.md).
    :param parallel_requests: how many requests of one pull may be in flight at once (1 to 8,
        default 2). A range longer than one page (31 days of ``1d`` buckets) is cut into that many
        consecutive parts at whole pages, each paged on its own thread: the same requests, the same
        files byte for byte, about half the wall time of a long backfill at 2. 1 pages the range one
        request after another.
    """

    template_fields: Sequence[str] = (
        "start_time", "end_time", "bucket_width", "group_by", "filters", "output_path", "output_conn_id", "file_format",
        "table_format", "catalog_conn_id", "openai_usage_conn_id",
    )
    template_fields_renderers = {"filters": "json", "group_by": "json"}
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        endpoint: str | None = None,
        openai_usage_conn_id: str = "openai_usage_default",
        start_time: Any = None,
        end_time: Any = None,
        bucket_width: str = "1d",
        group_by: Sequence[str] | None = None,
        filters: Mapping[str, Any] | None = None,
        output_path: Any = None,
        output_conn_id: str | None = None,
        file_format: str = "parquet",
        table_format: str | None = None,
        catalog_conn_id: str | None = None,
        restate_days: int = 0,
        max_xcom_rows: int = DEFAULT_MAX_XCOM_ROWS,
        parallel_requests: int = DEFAULT_PARALLEL_REQUESTS,
        asset_partitions: bool = True,
        **kwargs: Any,
    ) -> None:
        from airflow_provider_openai_usage.partitions import check_asset_partitions

        endpoint = self.resolve_endpoint(endpoint)
        if output_path is not None and "outlets" not in kwargs:
            asset = _asset_for(output_path, endpoint)
            if asset is not None:
                kwargs["outlets"] = [asset]
        super().__init__(**kwargs)
        self.keep_range_parameters(endpoint, openai_usage_conn_id, start_time, end_time, bucket_width, group_by, filters)
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        self.file_format = file_format
        self.table_format = table_format
        self.catalog_conn_id = catalog_conn_id
        self.restate_days = restate_days
        self.max_xcom_rows = max_xcom_rows
        self.parallel_requests = parallel_requests
        self.asset_partitions = check_asset_partitions(asset_partitions)
        self._check_parameters()

    def _check_parameters(self) -> None:
        """At DAG parse time: every literal parameter, so list-import-errors names a bad one before any run."""
        from airflow_provider_openai_usage.query import check_streams
        from airflow_provider_openai_usage.storage import check_file_format
        from airflow_provider_openai_usage.times import check_restate_days

        check_restate_days(self.restate_days)
        check_max_xcom_rows(self.max_xcom_rows)
        check_streams(self.parallel_requests, "parallel_requests")
        if not is_templated(self.file_format):
            check_file_format(self.file_format)  # even without output_path: a format silently ignored is still a typo
        if self.table_format is not None and not is_templated(self.table_format):
            from airflow_provider_openai_usage.storage.sinks import check_table_format

            check_table_format(self.table_format)
        self.check_literal_parameters(restate_days=self.restate_days)

    def execute(self, context: Context) -> list[dict[str, Any]] | dict[str, Any]:
        from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
        from airflow_provider_openai_usage.storage import check_file_format
        check_file_format(self.file_format)  # rendered now; the other rendered values are checked by build_query
        table_format = None
        if self.table_format:  # files never import the table sinks (the file path's memory bound: docs/design.md)
            from airflow_provider_openai_usage.storage.sinks import check_table_format

            table_format = check_table_format(self.table_format)
        query = self.build_query(context, restate_days=self.restate_days)
        parts = floor_parts_logged(query, self.log)
        if table_format is not None:
            return self._write_table(query, parts, table_format)
        writer = None
        hook = OpenAIUsageHook(self.openai_usage_conn_id)
        if self.output_path is not None:
            from airflow_provider_openai_usage.organizations import check_no_single_organization_days, organization_root
            from airflow_provider_openai_usage.storage import PartitionWriter

            # Built and prepared before the first data request: a bad path or format, a path that cannot
            # be written, or a day that holds other rows fails without touching the API. The organization
            # is the connection's extra (no request), or one costs request when the extra is empty.
            location = output_location(self.output_path, self.output_conn_id or None)
            organization_id = self._organization_id(hook)
            check_no_single_organization_days(location / self.endpoint, output_path=self.output_path)
            writer = PartitionWriter(
                organization_root(location / self.endpoint, organization_id), query.endpoint, self.file_format,
                described_as=f"output_path={self.output_path!r}", organization_id=organization_id,
            )
            for part, _ in parts:
                writer.prepare(part)  # each part's grouping is what its days record
        self.log.info("Pulling %s", query.describe())
        try:
            with unknown_fields_warning():  # one warning per run naming fields kept in `extra`
                if writer is None:
                    return self._rows_to_xcom(hook, query, parts)
                return self._write(hook, query, parts, writer, context)
        finally:
            hook.close()

    def _organization_id(self, hook: OpenAIUsageHook) -> str:
        """The organization this run lands under (``OpenAIUsageHook.organization_id``), logged once."""
        try:
            organization_id = hook.organization_id()
        except Exception:
            hook.close()
            raise
        self.log.info("Connection %r reads organization %s", self.openai_usage_conn_id, organization_id)
        return organization_id

    def _rows_to_xcom(
        self, hook: OpenAIUsageHook, query: UsageQuery, parts: list[tuple[UsageQuery, tuple[str, ...]]]
    ) -> list[dict[str, Any]]:
        rows: list[dict[str, Any]] = []
        for row in (row for part, _ in parts for row in hook.iter_query_rows(part)):
            if len(rows) >= self.max_xcom_rows:
                raise OpenAIUsageValidationError(
                    f"{query.describe()} has more than max_xcom_rows={self.max_xcom_rows} rows; XCom is not a data lake. "
                    "Set output_path (e.g. s3://bucket/openai) to write partitions, or narrow the range/grouping"
                )
            rows.append({k: json_safe(v) for k, v in row.items()})
        return rows

    def _write(
        self,
        hook: OpenAIUsageHook,
        query: UsageQuery,
        parts: list[tuple[UsageQuery, tuple[str, ...]]],
        writer: PartitionWriter,
        context: Context | None = None,
    ) -> dict[str, Any]:
        from airflow_provider_openai_usage import partitions
        from airflow_provider_openai_usage.rows import add_totals
        from airflow_provider_openai_usage.times import day_label, iso

        first, last = day_label(query.start_time), day_label(query.end_time - 1)
        base = asset_base(self.output_path)
        # The manifests are read (one small read per landed day of the range, before and after) only
        # when partition events can be emitted: a task run with outlet events, not a bare execute().
        emit = self.asset_partitions and base is not None and partitions.has_outlet_events(context)
        before = partitions.day_digests(writer.root, first, last) if emit else {}

        totals: dict[str, Any] = {c.name: 0 for c in query.endpoint.metric_columns}
        days: dict[str, dict[str, Any]] = {}
        from airflow_provider_openai_usage.hooks.usage import PAGE_RESULTS

        # prefetch: the next page is fetched while this one's days are written; page_results bounds memory;
        # streams: a long range is paged in parts at once. Closed however the writer ends: no thread outlives it.
        # One pull per floor part (usually one): each writes its days with the grouping it was pulled by.
        for part, _ in parts:
            buckets = hook.iter_query_buckets(part, prefetch=True, page_results=PAGE_RESULTS, streams=self.parallel_requests)
            with closing(buckets):
                for day in writer.write(part, buckets):
                    days[day.date] = {"rows": day.rows, "files": day.files}
                    add_totals(totals, day.totals)
        left_out = [
            {"group_by": list(part.group_by), "left_out": list(dropped), "range": f"{iso(part.start_time)}/{iso(part.end_time)}"}
            for part, dropped in parts
            if dropped
        ]
        if emit and base is not None:
            # A day without a file before is new: only the days that had one are read again.
            after = partitions.day_digests(writer.root, first, last, only=before)
            changed = partitions.changed_days(before, after, days)
            partitions.emit_day_partitions(context, self.outlets, f"{base}/{self.endpoint}", changed, self.log)
        return {
            "endpoint": self.endpoint,
            "organization_id": writer.organization_id,
            "start_time": query.start_time,
            "end_time": query.end_time,
            "range": f"{iso(query.start_time)}/{iso(query.end_time)}",
            "bucket_width": query.bucket_width,
            "output": writer.root.as_uri(),
            "file_format": self.file_format,
            "days": days,
            "rows": sum(d["rows"] for d in days.values()),
            "totals": {k: json_safe(v) for k, v in totals.items()},
            **({"pulled_without": left_out} if left_out else {}),
        }


    def _write_table(self, query: UsageQuery, parts: list[tuple[UsageQuery, tuple[str, ...]]], table_format: str) -> dict[str, Any]:
        """The run's days as one commit to the endpoint's Delta/Iceberg table (``storage.sinks``).

        The table and its identity are checked before the first request; the days are built from
        the buckets as they arrive and committed together once the pull is complete. If the pull
        fails, the complete days before the failure are committed (as files publish them), then
        the error is raised.
        """
        from airflow_provider_openai_usage.hooks.usage import PAGE_RESULTS, OpenAIUsageHook
        from airflow_provider_openai_usage.rows import add_totals
        from airflow_provider_openai_usage.storage.sinks import open_table_sink, usage_days
        from airflow_provider_openai_usage.storage.usage import arrow_schema, day_totals, usage_identity
        from airflow_provider_openai_usage.times import iso

        if self.output_path is None:
            raise OpenAIUsageValidationError(f"table_format={table_format!r} needs output_path (where the table lives)")
        location = output_location(self.output_path, self.output_conn_id or None)
        hook = OpenAIUsageHook(self.openai_usage_conn_id)
        organization_id = self._organization_id(hook)
        schema = arrow_schema(query.endpoint, organization=True)
        sink = open_table_sink(
            table_format, location, self.endpoint, schema, catalog_conn_id=self.catalog_conn_id,
            described_as=f"output_path={self.output_path!r}", organization_id=organization_id,
        )
        # One table holds every organization (an organization_id column): its identity has no organization.
        identity = usage_identity(query, table_format, schema)
        try:
            sink.prepare(identity)
        except Exception:
            hook.close()
            raise
        self.log.info("Pulling %s into the %s table %s", query.describe(), table_format, sink.location)
        collected = []
        failure: BaseException | None = None
        try:
            with unknown_fields_warning():
                for part, _ in parts:
                    buckets = hook.iter_query_buckets(part, prefetch=True, page_results=PAGE_RESULTS, streams=self.parallel_requests)
                    with closing(buckets):
                        for day in usage_days(query.endpoint, part, buckets, schema, organization_id=organization_id):
                            collected.append(day)
        except Exception as exc:  # noqa: BLE001 - the complete days before it are committed, then it is raised
            failure = exc
        finally:
            hook.close()
        landed = sink.commit(collected, identity)
        if failure is not None:
            raise failure
        totals: dict[str, Any] = {c.name: 0 for c in query.endpoint.metric_columns}
        days: dict[str, dict[str, Any]] = {}
        for day, result in zip(collected, landed, strict=True):
            add_totals(totals, day_totals(query.endpoint, day.table))
            days[day.date] = {"rows": day.table.num_rows, "day_rows": result.rows}
        self.log.info("%s: committed %d days in one commit", sink.location, len(days))
        return {
            "endpoint": self.endpoint,
            "start_time": query.start_time,
            "end_time": query.end_time,
            "range": f"{iso(query.start_time)}/{iso(query.end_time)}",
            "bucket_width": query.bucket_width,
            "organization_id": organization_id,
            "output": sink.location,
            "table_format": table_format,
            "days": days,
            "rows": sum(d["rows"] for d in days.values()),
            "totals": {k: json_safe(v) for k, v in totals.items()},
        }


def floor_parts_logged(query: UsageQuery, log: Any) -> list[tuple[UsageQuery, tuple[str, ...]]]:
    """``query.floor_parts()``, saying in the task log which days lack a grouping and why (issue #25)."""
    from airflow_provider_openai_usage.times import day_label

    parts = query.floor_parts()
    for part, dropped in parts:
        if dropped:
            floors = ", ".join(f"{g} from {day_label(query.endpoint.group_by_floors[g])}" for g in dropped)
            log.warning(
                "%s: the days %s to %s are pulled without group_by %s (by %s): OpenAI's %s API answers that grouping "
                "only for ranges starting on or after its floor (%s), and refuses earlier ones with HTTP 400. Those days "
                "hold no %s dimension (null in every row), and their record says so (docs/hook.md, \"The API-key floor\")",
                query.endpoint.key, day_label(part.start_time), day_label(part.end_time - 1), ", ".join(dropped),
                list(part.group_by) or "nothing", query.endpoint.key, floors, ", ".join(dropped),
            )
    return parts


# One thin class per endpoint: discoverable by name, documented, nothing but `endpoint_key`.
class OpenAICompletionsUsageOperator(OpenAIUsageOperator):
    """Token and request usage of chat/completions/responses models (``/organization/usage/completions``)."""

    endpoint_key = "completions"


class OpenAIEmbeddingsUsageOperator(OpenAIUsageOperator):
    """Embeddings usage (``/organization/usage/embeddings``)."""

    endpoint_key = "embeddings"


class OpenAIModerationsUsageOperator(OpenAIUsageOperator):
    """Moderations usage (``/organization/usage/moderations``)."""

    endpoint_key = "moderations"


class OpenAIImagesUsageOperator(OpenAIUsageOperator):
    """Image generation/edit/variation usage (``/organization/usage/images``)."""

    endpoint_key = "images"


class OpenAIAudioSpeechesUsageOperator(OpenAIUsageOperator):
    """Text-to-speech usage in characters (``/organization/usage/audio_speeches``)."""

    endpoint_key = "audio_speeches"


class OpenAIAudioTranscriptionsUsageOperator(OpenAIUsageOperator):
    """Transcription usage in seconds (``/organization/usage/audio_transcriptions``)."""

    endpoint_key = "audio_transcriptions"


class OpenAIVectorStoresUsageOperator(OpenAIUsageOperator):
    """Vector store storage in bytes (``/organization/usage/vector_stores``)."""

    endpoint_key = "vector_stores"


class OpenAICodeInterpreterSessionsUsageOperator(OpenAIUsageOperator):
    """Code interpreter sessions (``/organization/usage/code_interpreter_sessions``)."""

    endpoint_key = "code_interpreter_sessions"


class OpenAIFileSearchCallsUsageOperator(OpenAIUsageOperator):
    """File search tool calls (``/organization/usage/file_search_calls``)."""

    endpoint_key = "file_search_calls"


class OpenAIWebSearchCallsUsageOperator(OpenAIUsageOperator):
    """Web search tool calls (``/organization/usage/web_search_calls``)."""

    endpoint_key = "web_search_calls"


class OpenAICostsOperator(OpenAIUsageOperator):
    """Spend in currency per day (``/organization/costs``): the numbers that reconcile to the invoice."""

    endpoint_key = "costs"


class OpenAIDecisionsUsageOperator(OpenAIUsageOperator):
    """Decisions API token and request usage (``/organization/usage/decisions``)."""

    endpoint_key = "decisions"
