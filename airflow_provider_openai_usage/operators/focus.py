"""``OpenAIFocusOperator``: a range of OpenAI costs as a FOCUS 1.2 ``CostAndUsage`` dataset.

One file per UTC day under ``<output_path>/focus/date=YYYY-MM-DD/``, published with the same
atomic day replacement as the raw partitions (``storage.DayStore``). The whole range is pulled and
checked before the first day is published: a row the mapping cannot take (no amount, an unknown
currency, no quantity) or a day OpenAI did not report stops the task with nothing written.
The mapping itself is ``airflow_provider_openai_usage.focus`` (docs/focus.md).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.task_range import UsageRangeTask, is_templated

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import Context, ObjectStoragePath

    from airflow_provider_openai_usage.focus import BillingAccount
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
    from airflow_provider_openai_usage.query import UsageQuery

DATASET = "focus"
FILE_FORMATS = ("parquet", "csv")
#: Where the costs come from: the API (a pull of its own) or the costs partitions a pull landed.
SOURCES = ("api", "landed")
#: The costs dataset the pulls land, relative to ``output_path`` (``source="landed"`` reads it).
COSTS_DATASET = "costs"
DEFAULT_GROUP_BY = ("project_id", "line_item")
#: Where the organization directory keeps project snapshots, relative to ``output_path``.
DIRECTORY_PROJECTS = "directory/projects"
SCHEMA_VERSION = 1


class OpenAIFocusOperator(UsageRangeTask, BaseOperator):
    """Pull OpenAI costs for a range and publish them as FOCUS 1.2, one file per UTC day.

    :param output_path: ``s3://...``, ``gs://...``, ``file:///...`` or an ``ObjectStoragePath``; the
        dataset goes to ``<output_path>/focus``. Required.
    :param billing_account_id: the OpenAI organization ID (``org-...``); default: the connection extra
        ``organization_id``. The Costs API does not report it, so without either the task fails.
    :param billing_account_name: the organization's name; default: the connection extra ``organization_name``.
    :param openai_usage_conn_id: the ``openai_usage`` connection holding the admin key.
    :param start_time: range start (inclusive, UTC midnight); default the run's ``data_interval_start``.
    :param end_time: range end (exclusive, UTC midnight); default the run's ``data_interval_end``.
    :param group_by: costs grouping; default ``["project_id", "line_item"]``. Must include
        ``line_item``: OpenAI sends quantities only per line item and FOCUS requires them.
        Add ``api_key_id`` to get ``x_ApiKeyId``; drop ``project_id`` to get no sub accounts.
    :param filters: the costs endpoint's filters (``project_ids``, ``api_key_ids``).
    :param output_conn_id: connection for the object store (e.g. an ``aws`` connection).
    :param file_format: ``parquet`` (default) or ``csv``.
    :param restate_days: also rewrite this many days before the range (OpenAI revises recent days).
    :param table_format: ``"delta"`` or ``"iceberg"``: the dataset lands as one table
        (``<output_path>/delta/focus`` or ``openai_usage.focus``), the run's days in one commit.
    :param catalog_conn_id: Iceberg only: the SQL catalog's connection (default a SQLite catalog
        at ``<output_path>/iceberg/catalog.db``).
    :param project_names: ``{project_id: name}`` to use instead of the directory snapshots.
    :param directory_path: where project snapshots are; default ``<output_path>/directory/projects``.
        Without snapshots SubAccountName is the project ID (docs/focus.md, "Project names").
    :param source: ``"api"`` (default): pull the costs; ``"landed"``: read the costs partitions a pull
        already landed (``<output_path>/costs``, or ``costs_path``) and sum them over the dimensions
        FOCUS does not keep (e.g. ``api_key_id``), exactly: no request for costs at all. Each day must
        be landed whole, grouped by at least ``group_by``, with the same ``filters``; otherwise the
        task fails naming the day, before anything is written (docs/focus.md, "From the landed costs").
    :param costs_path: where the landed costs are, with ``source="landed"``; default ``<output_path>/costs``.
    """

    endpoint_key = "costs"
    template_fields: Sequence[str] = (
        "start_time", "end_time", "group_by", "filters", "output_path", "output_conn_id", "file_format",
        "billing_account_id", "billing_account_name", "directory_path", "source", "costs_path", "table_format", "catalog_conn_id",
        "openai_usage_conn_id",
    )
    template_fields_renderers = {"filters": "json", "group_by": "json"}
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        output_path: Any,
        billing_account_id: str | None = None,
        billing_account_name: str | None = None,
        openai_usage_conn_id: str = "openai_usage_default",
        start_time: Any = None,
        end_time: Any = None,
        group_by: Sequence[str] | None = DEFAULT_GROUP_BY,
        filters: Mapping[str, Any] | None = None,
        output_conn_id: str | None = None,
        file_format: str = "parquet",
        restate_days: int = 0,
        project_names: Mapping[str, str] | None = None,
        directory_path: Any = None,
        source: str = "api",
        costs_path: Any = None,
        table_format: str | None = None,
        catalog_conn_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        _check_arguments(output_path, billing_account_id, billing_account_name, group_by, file_format)
        _check_source(source, costs_path)
        if not is_templated(table_format):
            from airflow_provider_openai_usage.storage.sinks import check_table_format

            check_table_format(table_format)
        if "outlets" not in kwargs:
            from airflow_provider_openai_usage.operators.usage import _asset_for

            asset = _asset_for(output_path, DATASET)
            if asset is not None:
                kwargs["outlets"] = [asset]
        super().__init__(**kwargs)
        group_by = list(group_by) if isinstance(group_by, (list, tuple)) else group_by
        self.keep_range_parameters(self.resolve_endpoint(None), openai_usage_conn_id, start_time, end_time, "1d", group_by, filters)
        self.output_path = output_path
        self.billing_account_id = billing_account_id
        self.billing_account_name = billing_account_name
        self.output_conn_id = output_conn_id
        self.file_format = file_format
        self.restate_days = restate_days
        self.project_names = dict(project_names) if project_names is not None else None
        self.directory_path = directory_path
        self.source = source
        self.costs_path = costs_path
        self.table_format = table_format
        self.catalog_conn_id = catalog_conn_id

    # -- execute ----------------------------------------------------------------------------------
    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_openai_usage import focus
        from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
        from airflow_provider_openai_usage.storage import DayStore, output_location
        from airflow_provider_openai_usage.storage.sinks import DaySink, FileSink, SinkDay, check_table_format, open_table_sink

        # Everything that can be refused is refused before the first request.
        _check_arguments(self.output_path, self.billing_account_id, self.billing_account_name, self.group_by, self.file_format)
        _check_source(self.source, self.costs_path)
        query = self.build_query(context, restate_days=self.restate_days)
        if "line_item" not in query.group_by:
            raise OpenAIUsageValidationError(_LINE_ITEM_HINT.format(group_by=list(query.group_by)))
        from airflow_provider_openai_usage.organizations import check_no_single_organization_days, organization_root

        hook = OpenAIUsageHook(self.openai_usage_conn_id)
        try:
            organization_id = hook.organization_id()  # the connection's extra (no request), or one costs request
            account = self._billing_account(hook, organization_id)
            location = output_location(self.output_path, self.output_conn_id or None)
            table_format = check_table_format(self.table_format or None)
            if table_format is None:
                check_no_single_organization_days(location / DATASET, output_path=self.output_path)
            sink: DaySink = (
                FileSink(DayStore(
                    organization_root(location / DATASET, organization_id), self.file_format,
                    described_as=f"output_path={self.output_path!r}",
                ))
                if table_format is None
                else open_table_sink(
                    table_format, location, DATASET, focus.arrow_schema(), catalog_conn_id=self.catalog_conn_id,
                    described_as=f"output_path={self.output_path!r}", organization_id=organization_id,
                    organization_column="BillingAccountId",
                )
            )
            sink.prepare(self._identity(query, account.id, table_format))
            names = _DirectoryNames(self.project_names, self._directory_root(location, organization_id))
            from airflow_provider_openai_usage.operators.usage import floor_parts_logged
            from airflow_provider_openai_usage.times import day_label

            if self.source == "landed":
                self.log.info("Reading the landed %s for FOCUS (no costs request)", query.describe())
                days, grouped = self._landed_days(query, location, organization_id)
            else:
                self.log.info("Pulling %s for FOCUS", query.describe())
                # Days before the api_key_id floor are pulled without it (x_ApiKeyId null; issue #25).
                parts = floor_parts_logged(query, self.log)
                buckets = (bucket for part, _ in parts for bucket in hook.iter_query_buckets(part))
                days = _whole_days(query, buckets)
                grouped = {
                    day_label(t): list(part.group_by) for part, _ in parts for t in range(part.start_time, part.end_time, 86400)
                }
        finally:
            hook.close()

        _check_organization(days, organization_id)
        # Map and check every row of every day before publishing the first one.
        tables: dict[str, pa.Table] = {}
        totals: dict[str, Decimal] = {}
        rows_per_day: dict[str, int] = {}
        for day, rows in days.items():
            ctx = focus.FocusContext(account, names.for_day(day))
            mapped = sorted(focus.focus_rows(rows, ctx), key=_row_order)
            table = focus.arrow_table(mapped)
            tables[day] = focus.csv_table(table) if self.file_format == "csv" and table_format is None else table
            totals[day] = sum((r["BilledCost"] for r in mapped), Decimal(0))
            rows_per_day[day] = len(mapped)
        identity = self._identity(query, account.id, table_format)
        published: dict[str, dict[str, Any]] = {}
        if table_format is not None:  # one commit for the run's days; the table records the grouping asked for
            for landed in sink.commit([SinkDay(day, table) for day, table in tables.items()], identity):
                published[landed.date] = {"rows": landed.rows, "BilledCost": format(totals[landed.date], "f"), "table": landed.location}
        for day, table in tables.items() if table_format is None else ():
            day_identity = {**identity, "group_by": grouped.get(day, identity["group_by"])}  # the grouping pulled
            (landed,) = sink.commit([SinkDay(day, table, totals={"BilledCost": format(totals[day], "f")})], day_identity)
            published[day] = {"rows": rows_per_day[day], "BilledCost": format(totals[day], "f"), "file": landed.location}
            self.log.info("focus: published %s (%d rows, BilledCost %s)", day, rows_per_day[day], totals[day])
        return {
            "dataset": DATASET,
            "organization_id": organization_id,
            "source": self.source,
            "output": organization_root(location / DATASET, organization_id).as_uri() if table_format is None else sink.location,
            "file_format": self.file_format,
            **({"table_format": table_format} if table_format else {}),
            "billing_account_id": account.id,
            "days": published,
            "rows": sum(rows_per_day.values()),
            "BilledCost": format(sum(totals.values(), Decimal(0)), "f"),
        }

    def _landed_days(
        self, query: UsageQuery, location: ObjectStoragePath, organization_id: str
    ) -> tuple[dict[str, list[dict[str, Any]]], dict[str, list[str]]]:
        """(rows per day from the landed costs, summed to each day's FOCUS grouping; that grouping per day).

        Every day of the range is read and checked before any is mapped; days before the api_key_id
        floor keep the grouping they were landed with (issue #25), as a pull of their own would.
        Only this connection's organization is read (``<costs>/organization=<id>/``).
        """
        from airflow_provider_openai_usage.landed_costs import landed_day_rows, regroup
        from airflow_provider_openai_usage.organizations import organization_root
        from airflow_provider_openai_usage.storage import DayStore, output_location
        from airflow_provider_openai_usage.times import day_label

        if self.costs_path is None:
            root = organization_root(location / COSTS_DATASET, organization_id)
            described = f"output_path={self.output_path!r} ({COSTS_DATASET}/organization={organization_id}/)"
        else:
            root = organization_root(output_location(self.costs_path, self.output_conn_id or None), organization_id)
            described = f"costs_path={self.costs_path!r} (organization={organization_id}/)"
        formats = DayStore(root, "parquet", described_as=described).existing_formats()
        filters = dict(query.filters)
        days: dict[str, list[dict[str, Any]]] = {}
        grouped: dict[str, list[str]] = {}
        low, high = query.bucket_bounds
        for part, _ in query.floor_parts():
            wanted = list(part.group_by)
            for t in range(max(low, part.start_time - part.start_time % 86400), min(high, part.end_time), 86400):
                day = day_label(t)
                rows, held = landed_day_rows(root, day, group_by=wanted, filters=filters, described_as=described, formats=formats)
                days[day] = regroup(query.endpoint, rows, [g for g in held if g not in wanted])
                grouped[day] = wanted
        return days, grouped
    def _identity(self, query: UsageQuery, account_id: str, table_format: str | None) -> dict[str, Any]:
        from airflow_provider_openai_usage import focus

        return {
            "dataset": DATASET, "schema_version": SCHEMA_VERSION, "focus_version": focus.FOCUS_VERSION,
            "format": table_format or self.file_format,
            "group_by": list(query.group_by), "filters": {k: (list(v) if isinstance(v, tuple) else v) for k, v in query.filters},
            "billing_account_id": account_id,
        }

    def _billing_account(self, hook: OpenAIUsageHook, organization_id: str) -> BillingAccount:
        """The organization as FOCUS's billing account: BillingAccountId is its id, always.

        A ``billing_account_id`` naming another organization is refused: the rows would claim an
        account the connection's key does not read.
        """
        from airflow_provider_openai_usage import focus

        account_id, account_name = self.billing_account_id, self.billing_account_name
        if account_id is not None and account_id != organization_id:
            raise OpenAIUsageValidationError(
                f"billing_account_id={account_id!r}, but connection {self.openai_usage_conn_id!r} reads organization "
                f"{organization_id!r}; FOCUS's BillingAccountId is the organization. Leave billing_account_id unset"
            )
        if account_name is None:
            account_name = hook.settings.organization_name  # validated connection extra
        return focus.BillingAccount.of(organization_id, account_name)

    def _directory_root(self, location: ObjectStoragePath, organization_id: str) -> ObjectStoragePath | None:
        """This organization's project snapshots (``<directory_path>/organization=<id>``)."""
        from airflow_provider_openai_usage.organizations import organization_root

        if self.project_names is not None:
            return None
        if self.directory_path is None:
            return organization_root(location / DIRECTORY_PROJECTS, organization_id)
        from airflow_provider_openai_usage.storage import output_location

        return organization_root(output_location(self.directory_path, self.output_conn_id or None), organization_id)


_LINE_ITEM_HINT = (
    "group_by={group_by} has no 'line_item': OpenAI sends quantity and quantity_unit only per line item, and FOCUS "
    "requires PricingQuantity/PricingUnit and a SkuId on every usage row. Use group_by=['project_id', 'line_item'] "
    "(the default), optionally with 'api_key_id'"
)


def _check_arguments(output_path: Any, account_id: Any, account_name: Any, group_by: Any, file_format: Any) -> None:
    """Refusals that need no request, run at DAG parse time for literal values and again at execute."""
    from airflow_provider_openai_usage import focus
    from airflow_provider_openai_usage.storage import check_output_path

    if output_path is None or (isinstance(output_path, str) and not is_templated(output_path)):
        check_output_path(output_path)  # names output_path, the value and the fix
    if not is_templated(file_format) and file_format not in FILE_FORMATS:
        raise OpenAIUsageValidationError(f"file_format={file_format!r} is not supported for FOCUS; allowed: {', '.join(FILE_FORMATS)}")
    if isinstance(group_by, (list, tuple)) and "line_item" not in group_by:
        raise OpenAIUsageValidationError(_LINE_ITEM_HINT.format(group_by=list(group_by)))
    for param, value in (("billing_account_id", account_id), ("billing_account_name", account_name)):
        if value is not None and not is_templated(value):  # None: read from the connection at run time
            focus.account_value(param, value)


def _check_organization(days: Mapping[str, list[dict[str, Any]]], organization_id: str) -> None:
    """Every costs row is the connection's organization's (OpenAI sends ``organization_id`` on each)."""
    for day, rows in days.items():
        other = next((r.get("organization_id") for r in rows if r.get("organization_id") not in (None, organization_id)), None)
        if other is not None:
            raise OpenAIUsageResponseError(
                f"costs of {day} are for organization_id={other!r}, but this connection's organization is {organization_id!r}; "
                "nothing is exported (fix the connection's organization_id extra or its key)"
            )


def _check_source(source: Any, costs_path: Any) -> None:
    """``source`` is one of ``SOURCES``; ``costs_path`` only means something with ``source='landed'``."""
    if is_templated(source):
        return
    if source not in SOURCES:
        raise OpenAIUsageValidationError(
            f"source={source!r} is not a FOCUS source; use 'api' (pull the costs) or 'landed' (read the costs a pull "
            "already landed under <output_path>/costs, no request)"
        )
    if costs_path is not None and source != "landed":
        raise OpenAIUsageValidationError(
            f"costs_path={costs_path!r} is read only with source='landed' (source={source!r} pulls the costs); "
            "pass source='landed' or drop costs_path"
        )
    if isinstance(costs_path, str) and not is_templated(costs_path):
        from airflow_provider_openai_usage.storage import check_output_path

        check_output_path(costs_path)


def _row_order(row: Mapping[str, Any]) -> tuple[str, ...]:
    """Deterministic row order inside a day file, so re-runs give identical bytes."""
    return tuple(row[k] or "" for k in ("SubAccountId", "x_ApiKeyId", "SkuId", "x_QuantityUnit"))


def _whole_days(query: UsageQuery, buckets: Iterable[dict[str, Any]]) -> dict[str, list[dict[str, Any]]]:
    """Rows per UTC day; every day of the range must be reported, or nothing is returned."""
    from airflow_provider_openai_usage.rows import bucket_rows
    from airflow_provider_openai_usage.times import day_label, iso

    days: dict[str, list[dict[str, Any]]] = {}
    covered = query.start_time
    for bucket in buckets:
        if bucket["start_time"] != covered:
            raise OpenAIUsageResponseError(
                f"costs: OpenAI returned no bucket from {iso(covered)} to {iso(bucket['start_time'])}; refusing to publish a "
                "missing day as no spend, so no FOCUS day is written"
            )
        days.setdefault(day_label(bucket["start_time"]), []).extend(bucket_rows(query.endpoint, bucket))
        covered = bucket["end_time"]
    if covered < query.end_time:
        raise OpenAIUsageResponseError(
            f"costs: OpenAI reported days only up to {iso(covered)}, not to {iso(query.end_time)}; no FOCUS day is written. "
            "Wait for the range with OpenAICostsSensor or end it earlier"
        )
    return days


class _DirectoryNames:
    """Project names per day from the organization directory's snapshots (or a fixed mapping)."""

    def __init__(self, fixed: Mapping[str, str] | None, root: ObjectStoragePath | None) -> None:
        self.fixed = fixed
        self.snapshots: dict[str, ObjectStoragePath] = {}
        self.cache: dict[str, dict[str, str]] = {}
        if fixed is None and root is not None:
            from airflow_provider_openai_usage.storage import list_day_files

            try:
                self.snapshots = dict(list_day_files(root))
            except FileNotFoundError:
                self.snapshots = {}

    def for_day(self, day: str) -> Mapping[str, str]:
        """Names as at the end of ``day``: a snapshot dated D is read during the run for day D-1, so the
        first snapshot dated after ``day``, else the newest one before it; {} without snapshots."""
        if self.fixed is not None:
            return self.fixed
        if not self.snapshots:
            return {}
        after = [d for d in self.snapshots if d > day]
        chosen = min(after) if after else max(self.snapshots)
        if chosen not in self.cache:
            self.cache[chosen] = _names_of(self.snapshots[chosen])
        return self.cache[chosen]


def _names_of(path: ObjectStoragePath) -> dict[str, str]:
    from airflow_provider_openai_usage.directory import ENTITIES
    from airflow_provider_openai_usage.directory_rows import read_snapshot

    table = read_snapshot(path, ENTITIES["projects"])
    id_col = "id" if "id" in table.column_names else "project_id"
    name_col = "name" if "name" in table.column_names else "project_name"
    if id_col not in table.column_names or name_col not in table.column_names:
        raise OpenAIUsageResponseError(
            f"project snapshot {path} has columns {table.column_names}; expected 'id' and 'name' to read project names from"
        )
    ids, names = table.column(id_col).to_pylist(), table.column(name_col).to_pylist()
    return {i: n for i, n in zip(ids, names, strict=True) if i is not None and n}
