"""The endpoint registry: every per-endpoint fact of OpenAI's Usage and Costs API, once.

Hook, rows, storage, operators, sensors, the fake API and the docs all read these entries; none of
them may hard-code a path, a limit, a filter or a column. Adding an endpoint is one entry here (plus
the two discoverability classes in ``operators/usage.py`` and ``sensors/usage.py``).

Facts come from OpenAI's official OpenAPI spec (``components.schemas.Usage*Result`` /
``CostsResult`` and the ``paths./organization/...`` parameters).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

ColumnType = Literal["string", "int64", "bool", "decimal"]
FilterKind = Literal["strings", "bool"]

#: Default and maximum ``limit`` (buckets per page) per width, identical on the ten usage paths.
USAGE_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType(
    {"1d": (7, 31), "1h": (24, 168), "1m": (60, 1440)}
)
#: The costs path only knows daily buckets; its ``limit`` is documented as 1..180, default 7.
COSTS_LIMITS: Mapping[str, tuple[int, int]] = MappingProxyType({"1d": (7, 180)})

#: Seconds per bucket width; buckets are aligned to UTC multiples of these.
WIDTH_SECONDS: Mapping[str, int] = MappingProxyType({"1m": 60, "1h": 3600, "1d": 86400})

#: Precision of exact decimal columns: the widest that Parquet readers (Spark, Athena, BigQuery) share.
DECIMAL_PRECISION = 38


@dataclass(frozen=True)
class Column:
    """One output column: its name in rows and files, its type, and where the API puts it.

    ``source`` is the path inside a result object; costs nest the amount (``amount.value``).
    ``metric`` columns are summed in summaries and fingerprints; the others describe the row.
    """

    name: str
    type: ColumnType
    metric: bool = False
    source: tuple[str, ...] = ()
    #: Digits after the point for ``decimal`` columns (precision is always DECIMAL_PRECISION).
    scale: int = 0

    @property
    def path(self) -> tuple[str, ...]:
        return self.source or (self.name,)


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
    title: str
    path: str
    result_object: str
    limits: Mapping[str, tuple[int, int]]
    group_by: tuple[str, ...]
    filters: tuple[Filter, ...]
    dimensions: tuple[Column, ...]
    metrics: tuple[Column, ...]
    #: Older field spellings seen in the spec's history, mapped to today's name.
    legacy_fields: Mapping[str, str] = field(default_factory=dict)

    @property
    def bucket_widths(self) -> tuple[str, ...]:
        return tuple(self.limits)

    def max_limit(self, bucket_width: str) -> int:
        return self.limits[bucket_width][1]

    def default_limit(self, bucket_width: str) -> int:
        return self.limits[bucket_width][0]

    @property
    def columns(self) -> tuple[Column, ...]:
        """Row columns after the bucket's ``start_time``/``end_time``, in a fixed order."""
        return self.dimensions + self.metrics

    @property
    def column_names(self) -> tuple[str, ...]:
        return ("start_time", "end_time") + tuple(c.name for c in self.columns)

    @property
    def metric_columns(self) -> tuple[Column, ...]:
        return tuple(c for c in self.metrics if c.metric)

    @property
    def filter_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.filters)

    def filter(self, name: str) -> Filter:
        return next(f for f in self.filters if f.name == name)

    @property
    def operator_class_name(self) -> str:
        return "OpenAICostsOperator" if self.key == "costs" else f"OpenAI{self.title}UsageOperator"

    @property
    def sensor_class_name(self) -> str:
        return "OpenAICostsSensor" if self.key == "costs" else f"OpenAI{self.title}UsageSensor"


def _s(name: str) -> Column:
    return Column(name, "string")


def _i(name: str) -> Column:
    return Column(name, "int64", metric=True)


PROJECT_IDS = Filter("project_ids", "strings", "project_id")
USER_IDS = Filter("user_ids", "strings", "user_id")
API_KEY_IDS = Filter("api_key_ids", "strings", "api_key_id")
MODELS = Filter("models", "strings", "model")
PEOPLE_FILTERS = (PROJECT_IDS, USER_IDS, API_KEY_IDS, MODELS)
PEOPLE_GROUPS = ("project_id", "user_id", "api_key_id", "model")
PEOPLE_DIMENSIONS = tuple(_s(n) for n in PEOPLE_GROUPS)


def _model_usage(key: str, title: str, *metrics: str) -> Endpoint:
    """The four plain model endpoints share filters, groupings and dimensions."""
    return Endpoint(
        key=key,
        title=title,
        path=f"/organization/usage/{key}",
        result_object=f"organization.usage.{key}.result",
        limits=USAGE_LIMITS,
        group_by=PEOPLE_GROUPS,
        filters=PEOPLE_FILTERS,
        dimensions=PEOPLE_DIMENSIONS,
        metrics=tuple(_i(m) for m in metrics),
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
)

_ENDPOINT_LIST: tuple[Endpoint, ...] = (
    Endpoint(
        key="completions",
        title="Completions",
        path="/organization/usage/completions",
        result_object="organization.usage.completions.result",
        limits=USAGE_LIMITS,
        group_by=PEOPLE_GROUPS + ("batch", "service_tier"),
        filters=PEOPLE_FILTERS + (Filter("batch", "bool", "batch"),),
        dimensions=PEOPLE_DIMENSIONS + (Column("batch", "bool"), _s("service_tier")),
        metrics=tuple(_i(m) for m in COMPLETION_TOKEN_METRICS),
    ),
    _model_usage("embeddings", "Embeddings", "input_tokens", "num_model_requests"),
    _model_usage("moderations", "Moderations", "input_tokens", "num_model_requests"),
    Endpoint(
        key="images",
        title="Images",
        path="/organization/usage/images",
        result_object="organization.usage.images.result",
        limits=USAGE_LIMITS,
        group_by=PEOPLE_GROUPS + ("size", "source"),
        filters=PEOPLE_FILTERS
        + (
            Filter("sources", "strings", "source", ("image.generation", "image.edit", "image.variation")),
            Filter(
                "sizes", "strings", "size", ("256x256", "512x512", "1024x1024", "1792x1792", "1024x1792")
            ),
        ),
        dimensions=PEOPLE_DIMENSIONS + (_s("size"), _s("source")),
        metrics=(_i("images"), _i("num_model_requests")),
    ),
    _model_usage("audio_speeches", "AudioSpeeches", "characters", "num_model_requests"),
    _model_usage("audio_transcriptions", "AudioTranscriptions", "seconds", "num_model_requests"),
    Endpoint(
        key="vector_stores",
        title="VectorStores",
        path="/organization/usage/vector_stores",
        result_object="organization.usage.vector_stores.result",
        limits=USAGE_LIMITS,
        group_by=("project_id",),
        filters=(PROJECT_IDS,),
        dimensions=(_s("project_id"),),
        metrics=(_i("usage_bytes"),),
    ),
    Endpoint(
        key="code_interpreter_sessions",
        title="CodeInterpreterSessions",
        path="/organization/usage/code_interpreter_sessions",
        result_object="organization.usage.code_interpreter_sessions.result",
        limits=USAGE_LIMITS,
        group_by=("project_id",),
        filters=(PROJECT_IDS,),
        dimensions=(_s("project_id"),),
        metrics=(_i("num_sessions"),),
        # The first spec versions called the metric `sessions` (openai-openapi issue #421).
        legacy_fields=MappingProxyType({"sessions": "num_sessions"}),
    ),
    Endpoint(
        key="file_search_calls",
        title="FileSearchCalls",
        path="/organization/usage/file_search_calls",
        # Not `file_search_calls`: the spec names the result after the older feature name.
        result_object="organization.usage.file_searches.result",
        limits=USAGE_LIMITS,
        group_by=("project_id", "user_id", "api_key_id", "vector_store_id"),
        filters=(PROJECT_IDS, USER_IDS, API_KEY_IDS, Filter("vector_store_ids", "strings", "vector_store_id")),
        dimensions=tuple(_s(n) for n in ("project_id", "user_id", "api_key_id", "vector_store_id")),
        metrics=(_i("num_requests"),),
    ),
    Endpoint(
        key="web_search_calls",
        title="WebSearchCalls",
        path="/organization/usage/web_search_calls",
        result_object="organization.usage.web_searches.result",
        limits=USAGE_LIMITS,
        group_by=PEOPLE_GROUPS + ("context_level",),
        filters=PEOPLE_FILTERS + (Filter("context_levels", "strings", "context_level", ("low", "medium", "high")),),
        dimensions=PEOPLE_DIMENSIONS + (_s("context_level"),),
        metrics=(_i("num_model_requests"), _i("num_requests")),
    ),
    Endpoint(
        key="costs",
        title="Costs",
        path="/organization/costs",
        result_object="organization.costs.result",
        limits=COSTS_LIMITS,
        group_by=("project_id", "line_item", "api_key_id"),
        filters=(PROJECT_IDS, API_KEY_IDS),
        dimensions=(_s("project_id"), _s("api_key_id"), _s("line_item")),
        metrics=(
            # 28 decimals: the API has been seen sending amounts as strings with 28 decimals.
            Column("amount_value", "decimal", metric=True, source=("amount", "value"), scale=28),
            Column("amount_currency", "string", source=("amount", "currency")),
            # The API sends `quantity` only when grouped by line_item; it may be fractional.
            Column("quantity", "decimal", metric=True, scale=12),
            Column("quantity_unit", "string"),
        ),
    ),
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
