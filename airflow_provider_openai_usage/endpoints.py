"""The endpoint registry: every per-endpoint fact of OpenAI's Usage and Costs API, once.

Hook, rows, storage, operators, sensors, the fake API and the docs all read these entries; none of
them may hard-code a path, a limit, a filter or a column. Adding an endpoint is one entry here (plus
the two discoverability classes at the bottom of ``operators/usage.py`` and ``sensors/usage.py``).

Where the facts come from, and which wins:
- OpenAI's public OpenAPI spec (``components.schemas.Usage*Result`` / ``CostsResult`` and the
  ``paths./organization/...`` parameters; the copy the tests read is openai-openapi f85dbe22);
- OpenAI's official Python SDK, generated from OpenAI's own, newer description of the API:
  ``openai==3.57.0``, ``openai.types.admin.organization.usage_*_params`` / ``usage_*_response``
  (``client.admin.organization.usage.<endpoint>(...)``, costs included). It knows the
  ``decisions`` endpoint, ``api_source`` groupings, the 12h/30m cache-write tokens, costs by
  ``user_id``/``api_source`` and the ``line_items`` filter, none of which the spec has yet.

Both count. Where they disagree the registry takes the **union**: a grouping, filter or field that
either source lists is accepted and sent to OpenAI, which has the last word (a 400 names what it
refused). The fake API answers the union too. ``tests/unit/test_endpoints.py`` diffs this registry
against both sources, so the next drift fails a test; deliberate differences are named there.

Result fields neither source knows yet are not dropped: rows keep them as canonical JSON in the
``extra`` column every endpoint ends with (``EXTRA``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

ColumnType = Literal["string", "int64", "bool", "decimal"]
ColumnRole = Literal["dimension", "metric", "unit", "extra"]
FilterKind = Literal["strings", "bool"]

#: Default and maximum ``limit`` (buckets per page) per width, identical on the usage paths.
USAGE_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}
)
#: The costs path only knows daily buckets; its ``limit`` is documented as 1..180, default 7.
COSTS_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType({"1d": (7, 180)})

#: 2025-12-01T00:00:00Z: the first day OpenAI's Costs API answers ``group_by=api_key_id`` (issue #25
#: observation: a range grouped by it that starts earlier gets HTTP 400 with ``"param": "start_time"``).
COSTS_API_KEY_FLOOR = 1_764_547_200

#: Seconds per bucket width; buckets are aligned to UTC multiples of these.
WIDTH_SECONDS: Mapping[str, int] = MappingProxyType({"1m": 60, "1h": 3600, "1d": 86400})

#: Precision of exact decimal columns: the widest that Parquet readers (Spark, Athena, BigQuery) share.
DECIMAL_PRECISION = 38

#: The SDK's ``api_source`` values: ``agents_api`` for attributed Agents API activity, ``unlabeled``
#: for everything else; null when the query does not group by ``api_source``.
API_SOURCES = ("agents_api", "unlabeled")

@dataclass(frozen=True)
class Column:
    """One output column: its name in rows and files, its type, its role, and where the API puts it.

    Roles: ``dimension`` (what a row is about; a grouping), ``metric`` (a quantity, summed in
    summaries and fingerprints), ``unit`` (what a metric is measured in: currency, quantity unit),
    ``extra`` (result fields the registry does not know, as canonical JSON; read by rows, not from a
    path). ``source`` is the path inside a result object; costs nest the amount (``amount.value``).
    """

    name: str
    type: ColumnType
    role: ColumnRole = "unit"
    source: tuple[str, ...] = ()
    #: Digits after the point for ``decimal`` columns (precision is always DECIMAL_PRECISION).
    scale: int = 0
    #: The values the API may send, where a source types them (fake data draws from these).
    enum: tuple[str, ...] | None = None

    @property
    def path(self) -> tuple[str, ...]:
        return self.source or (self.name,)


#: Every endpoint's last column: the result fields this release does not type, as canonical JSON
#: (sorted keys; null when a result has none), so a field OpenAI adds is kept, not dropped.
EXTRA = Column("extra", "string", role="extra")


@dataclass(frozen=True)
class Filter:
    """A query filter: the API's parameter name, its kind, allowed values and the dimension it narrows."""

    name: str
    kind: FilterKind
    dimension: str
    enum: tuple[str, ...] | None = None


@dataclass(frozen=True)
class Endpoint:
    key: str
    path: str
    result_object: str
    limits: Mapping[str, tuple[int, int]]
    group_by: tuple[str, ...]
    filters: tuple[Filter, ...]
    dimensions: tuple[Column, ...]
    #: What a result reports about its group, in file order: metrics and the units that go with them.
    values: tuple[Column, ...]
    #: The metric whose non-zero total means "something was reported" (settlement's
    #: ``require_results``); None: any result counts. Costs: a zero amount is not a bill yet.
    reported_by: str | None = None
    #: Older field spellings seen in the spec's history, mapped to today's name.
    legacy_fields: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    #: Groupings OpenAI's live API only answers from a floor on (grouping → Unix seconds): a range
    #: starting earlier is refused with HTTP 400 ``param: start_time`` (``query.floor_parts``).
    group_by_floors: Mapping[str, int] = field(default_factory=lambda: MappingProxyType({}))
    #: Buckets are whole UTC days whatever ``start_time`` is (costs, issue #25): an unaligned start gets
    #: the bucket of the day holding it, and the day holding "now" ends after now. Else the API clips
    #: the first bucket to ``start_time`` and the last to ``end_time`` (or now).
    covering_buckets: bool = False
    #: Result fields the API sends about a group rather than as a grouping: never in ``group_by`` and
    #: never drawn by the fake's events (costs: ``organization_id`` always, ``user_email`` with ``user_id``).
    reported_fields: tuple[str, ...] = ()

    @property
    def bucket_widths(self) -> tuple[str, ...]:
        return tuple(self.limits)

    def max_limit(self, bucket_width: str) -> int:
        return self.limits[bucket_width][1]

    def default_limit(self, bucket_width: str) -> int:
        return self.limits[bucket_width][0]

    @property
    def columns(self) -> tuple[Column, ...]:
        """Row columns after the bucket's ``start_time``/``end_time``, in a fixed order; ``extra`` last."""
        return self.dimensions + self.values + (EXTRA,)

    @property
    def column_names(self) -> tuple[str, ...]:
        return ("start_time", "end_time") + tuple(c.name for c in self.columns)

    def column(self, name: str) -> Column:
        return next(c for c in self.columns if c.name == name)

    @property
    def metric_columns(self) -> tuple[Column, ...]:
        """The summed columns (totals, fingerprints)."""
        return tuple(c for c in self.values if c.role == "metric")

    @property
    def unit_columns(self) -> tuple[Column, ...]:
        """Value columns that are not summed: what the metrics are measured in."""
        return tuple(c for c in self.values if c.role == "unit")

    @property
    def result_fields(self) -> frozenset[str]:
        """Top-level result fields the registry types (``object`` and legacy spellings excluded)."""
        return frozenset(c.path[0] for c in self.dimensions + self.values)

    @property
    def filter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.filters)

    def filter(self, name: str) -> Filter:
        return next(f for f in self.filters if f.name == name)


def _s(name: str) -> Column:
    return Column(name, "string", role="dimension")


def _i(name: str) -> Column:
    return Column(name, "int64", role="metric")


PROJECT_IDS = Filter("project_ids", "strings", "project_id")
USER_IDS = Filter("user_ids", "strings", "user_id")
API_KEY_IDS = Filter("api_key_ids", "strings", "api_key_id")
MODELS = Filter("models", "strings", "model")
PEOPLE_FILTERS = (PROJECT_IDS, USER_IDS, API_KEY_IDS, MODELS)
PEOPLE_GROUPS = ("project_id", "user_id", "api_key_id", "model")
PEOPLE_DIMENSIONS = tuple(_s(n) for n in PEOPLE_GROUPS)
#: SDK only (not in the spec copy): completions, decisions, web_search_calls and costs group by it.
API_SOURCE = Column("api_source", "string", role="dimension", enum=API_SOURCES)


def _usage(
    key: str,
    *,
    group_by: tuple[str, ...],
    filters: tuple[Filter, ...],
    dimensions: tuple[Column, ...],
    values: tuple[Column, ...],
    result: str | None = None,
    legacy_fields: Mapping[str, str] = MappingProxyType({}),
) -> Endpoint:
    """A ``/organization/usage/<key>`` endpoint: the shared path, result object and limits."""
    return Endpoint(
        key=key,
        path=f"/organization/usage/{key}",
        result_object=f"organization.usage.{result or key}.result",
        limits=USAGE_LIMITS,
        group_by=group_by,
        filters=filters,
        dimensions=dimensions,
        values=values,
        legacy_fields=legacy_fields,
    )


def _model_usage(key: str, *metrics: str) -> Endpoint:
    """The four plain model endpoints share filters, groupings and dimensions."""
    return _usage(
        key, group_by=PEOPLE_GROUPS, filters=PEOPLE_FILTERS, dimensions=PEOPLE_DIMENSIONS, values=tuple(_i(m) for m in metrics)
    )


def _project_usage(key: str, metric: str, legacy_fields: Mapping[str, str] = MappingProxyType({})) -> Endpoint:
    """The endpoints reported per project only (storage, sessions)."""
    return _usage(
        key,
        group_by=("project_id",),
        filters=(PROJECT_IDS,),
        dimensions=(_s("project_id"),),
        values=(_i(metric),),
        legacy_fields=legacy_fields,
    )


COMPLETION_TOKEN_METRICS = (
    "input_tokens",
    "output_tokens",
    "input_cached_tokens",
    "input_cache_write_tokens",
    "input_uncached_tokens",
    "input_text_tokens",
    "output_text_tokens",
    "input_cached_text_tokens",
    "input_audio_tokens",
    "input_cached_audio_tokens",
    "output_audio_tokens",
    "input_image_tokens",
    "input_cached_image_tokens",
    "output_image_tokens",
    "num_model_requests",
    # SDK only: the cache writes split by retention (together: input_cache_write_tokens).
    "input_cache_write_12h_tokens",
    "input_cache_write_30m_tokens",
)


def _token_usage(key: str) -> Endpoint:
    """Completions and decisions: model token usage with batch, service tier and API source."""
    return _usage(
        key,
        group_by=PEOPLE_GROUPS + ("batch", "service_tier", "api_source"),
        filters=PEOPLE_FILTERS + (Filter("batch", "bool", "batch"),),
        dimensions=PEOPLE_DIMENSIONS + (Column("batch", "bool", role="dimension"), _s("service_tier"), API_SOURCE),
        values=tuple(_i(m) for m in COMPLETION_TOKEN_METRICS),
    )


_ENDPOINT_LIST: tuple[Endpoint, ...] = (
    _token_usage("completions"),
    _model_usage("embeddings", "input_tokens", "num_model_requests"),
    _model_usage("moderations", "input_tokens", "num_model_requests"),
    _usage(
        "images",
        group_by=PEOPLE_GROUPS + ("size", "source"),
        filters=PEOPLE_FILTERS
        + (
            Filter("sources", "strings", "source", ("image.generation", "image.edit", "image.variation")),
            Filter("sizes", "strings", "size", ("256x256", "512x512", "1024x1024", "1792x1792", "1024x1792")),
        ),
        dimensions=PEOPLE_DIMENSIONS + (_s("size"), _s("source")),
        values=(_i("images"), _i("num_model_requests")),
    ),
    _model_usage("audio_speeches", "characters", "num_model_requests"),
    _model_usage("audio_transcriptions", "seconds", "num_model_requests"),
    _project_usage("vector_stores", "usage_bytes"),
    # The first spec versions called the metric `sessions` (openai-openapi issue #421).
    _project_usage("code_interpreter_sessions", "num_sessions", legacy_fields=MappingProxyType({"sessions": "num_sessions"})),
    _usage(
        "file_search_calls",
        # Not `file_search_calls`: the spec names the result after the older feature name.
        result="file_searches",
        group_by=("project_id", "user_id", "api_key_id", "vector_store_id"),
        filters=(PROJECT_IDS, USER_IDS, API_KEY_IDS, Filter("vector_store_ids", "strings", "vector_store_id")),
        dimensions=tuple(_s(n) for n in ("project_id", "user_id", "api_key_id", "vector_store_id")),
        values=(_i("num_requests"),),
    ),
    _usage(
        "web_search_calls",
        result="web_searches",
        group_by=PEOPLE_GROUPS + ("context_level", "api_source"),
        filters=PEOPLE_FILTERS + (Filter("context_levels", "strings", "context_level", ("low", "medium", "high")),),
        dimensions=PEOPLE_DIMENSIONS + (_s("context_level"), API_SOURCE),
        values=(_i("num_model_requests"), _i("num_requests")),
    ),
    Endpoint(
        key="costs",
        path="/organization/costs",
        result_object="organization.costs.result",
        limits=COSTS_LIMITS,
        # The SDK's order; the spec copy lists project_id, line_item, api_key_id.
        group_by=("project_id", "user_id", "line_item", "api_key_id", "api_source"),
        filters=(PROJECT_IDS, API_KEY_IDS, Filter("line_items", "strings", "line_item")),
        # organization_id (every result) and user_email (grouped by user_id) are in neither the spec nor
        # the SDK, but the live API always sends them (issue #25; recorded answers in tests/data/recorded).
        dimensions=(
            _s("project_id"), _s("api_key_id"), _s("line_item"), _s("user_id"), API_SOURCE, _s("user_email"), _s("organization_id"),
        ),
        values=(
            # decimal(38, 18): 20 integer digits, 18 decimals (docs/design.md, "Decimals").
            Column("amount_value", "decimal", role="metric", source=("amount", "value"), scale=18),
            Column("amount_currency", "string", source=("amount", "currency")),
            # The API sends `quantity` only when grouped by line_item; it may be fractional.
            Column("quantity", "decimal", role="metric", scale=18),
            Column("quantity_unit", "string"),
        ),
        reported_by="amount_value",
        group_by_floors=MappingProxyType({"api_key_id": COSTS_API_KEY_FLOOR}),
        covering_buckets=True,
        reported_fields=("user_email", "organization_id"),
    ),
    # SDK only (the spec copy predates it): usage of the Decisions API, shaped like completions.
    _token_usage("decisions"),
)

ENDPOINTS: Mapping[str, Endpoint] = MappingProxyType({e.key: e for e in _ENDPOINT_LIST})
ENDPOINT_KEYS: tuple[str, ...] = tuple(ENDPOINTS)


def get_endpoint(key: str) -> Endpoint:
    """Look an endpoint up, failing with the list of valid keys (a teaching error)."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    try:
        return ENDPOINTS[key]
    except (KeyError, TypeError):
        raise OpenAIUsageValidationError(
            f"endpoint={key!r} is not an OpenAI usage endpoint; allowed: {', '.join(ENDPOINT_KEYS)}"
        ) from None


#: What a FinOps team slices spend by; the example DAGs group each endpoint by those it allows.
FINOPS_DIMENSIONS: tuple[str, ...] = ("project_id", "user_id", "api_key_id", "model", "line_item")


def finops_group_by(key: str) -> list[str]:
    """The FinOps dimensions endpoint ``key`` can group by, in ``FINOPS_DIMENSIONS`` order.

    Costs leave out ``user_id``: grouped by it together with ``project_id``, the Costs endpoint is
    answered 400 on some organizations (SDK docs).
    """
    endpoint = get_endpoint(key)
    return [d for d in FINOPS_DIMENSIONS if d in endpoint.group_by and (key, d) != ("costs", "user_id")]
