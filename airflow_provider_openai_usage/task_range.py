"""What operators and sensors share: which endpoint they read and how a run's range becomes a query.

Both resolve the range and validate it here, so a DAG gets the same refusal, in the same words,
from a sensor and from the operator behind it.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_openai_usage.endpoints import get_endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

if TYPE_CHECKING:
    from airflow_provider_openai_usage.query import UsageQuery


class UsageRangeTask:
    """Mixin for tasks with ``endpoint``, ``start_time``/``end_time``, ``bucket_width``, ``group_by`` and ``filters``."""

    #: Set by the per-endpoint classes; the generic class takes ``endpoint=``.
    endpoint_key: ClassVar[str | None] = None
    endpoint: str
    start_time: Any
    end_time: Any
    bucket_width: str
    group_by: Any
    filters: Any

    @classmethod
    def resolve_endpoint(cls, endpoint: str | None) -> str:
        """The registry key this task reads, checked at DAG-parse time so typos fail early."""
        endpoint = endpoint or cls.endpoint_key
        if endpoint is None:
            raise OpenAIUsageValidationError(f"endpoint is required, e.g. {cls.__name__}(endpoint='costs', ...)")
        if cls.endpoint_key is not None and endpoint != cls.endpoint_key:
            raise OpenAIUsageValidationError(f"{cls.__name__} always reads {cls.endpoint_key!r}; got endpoint={endpoint!r}")
        get_endpoint(endpoint)
        return endpoint

    def build_query(self, context: Any, *, restate_days: int = 0) -> UsageQuery:
        """Resolve and validate the range and parameters, before any request."""
        from airflow_provider_openai_usage.intervals import resolve_range
        from airflow_provider_openai_usage.query import UsageQuery

        start, end = resolve_range(context, self.start_time, self.end_time, self.bucket_width, restate_days=restate_days)
        return UsageQuery.build(self.endpoint, start, end, bucket_width=self.bucket_width, group_by=self.group_by, filters=self.filters)
