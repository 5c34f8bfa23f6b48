"""``UsageRangeTask``, the parameters usage operators and sensors share, and ``is_templated``.

The mixin holds which endpoint a task reads and how its range and parameters become a ``UsageQuery``
(the time rules themselves live in ``times.py``).

Both resolve the range and validate it here, so a DAG gets the same refusal, in the same words,
from a sensor and from the operator behind it. Parameters are checked twice with the same rules
(``query.py``): the literal ones when the DAG file is parsed, so ``airflow dags list-import-errors``
shows a typo before any run, and all of them, rendered, before each run's first request.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow_provider_openai_usage.endpoints import get_endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

if TYPE_CHECKING:
    from airflow_provider_openai_usage.query import UsageQuery


def is_templated(value: Any) -> bool:
    """True when Airflow will render part of ``value`` at run time, so it cannot be judged at parse.

    That is a Jinja string, or a value Airflow resolves itself (an ``XComArg`` such as
    ``task.output``: anything with a ``resolve`` method, the test Airflow's templater applies).
    """
    if not isinstance(value, (str, os.PathLike)) and callable(getattr(value, "resolve", None)):
        return True
    if isinstance(value, str):
        return "{{" in value or "{%" in value
    if isinstance(value, Mapping):
        return any(is_templated(k) or is_templated(v) for k, v in value.items())
    if isinstance(value, (list, tuple, set)):
        return any(is_templated(v) for v in value)
    return False


class UsageRangeTask:
    """Mixin for tasks with ``endpoint``, ``start_time``/``end_time``, ``bucket_width``, ``group_by`` and ``filters``."""

    #: Set by the per-endpoint classes; the generic class takes ``endpoint=``.
    endpoint_key: ClassVar[str | None] = None
    endpoint: str
    openai_usage_conn_id: str
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

    def keep_range_parameters(
        self, endpoint: str, openai_usage_conn_id: str, start_time: Any, end_time: Any, bucket_width: str, group_by: Any, filters: Any
    ) -> None:
        """Store the shared parameters as the attributes Airflow renders (``template_fields``) and runs read."""
        self.endpoint = endpoint
        self.openai_usage_conn_id = openai_usage_conn_id
        self.start_time = start_time
        self.end_time = end_time
        self.bucket_width = bucket_width
        self.group_by = group_by
        self.filters = filters

    def build_query(self, context: Any, *, restate_days: int = 0) -> UsageQuery:
        """Resolve and validate the range and parameters, before any request."""
        from airflow_provider_openai_usage.query import UsageQuery
        from airflow_provider_openai_usage.times import resolve_range

        start, end = resolve_range(context, self.start_time, self.end_time, self.bucket_width, restate_days=restate_days)
        return UsageQuery.build(self.endpoint, start, end, bucket_width=self.bucket_width, group_by=self.group_by, filters=self.filters)

    def check_literal_parameters(self, *, restate_days: int = 0) -> None:
        """Validate every parameter that is not templated, with the rules ``build_query`` applies at run time.

        Called from the constructors, i.e. at DAG parse time. A templated value (``"{{ ... }}"``) is
        left for the run; inside ``filters`` only the templated values are, not their names.
        """
        from airflow_provider_openai_usage import query
        from airflow_provider_openai_usage.times import resolve_range, to_unix_seconds

        ep = get_endpoint(self.endpoint)
        if not is_templated(self.bucket_width):
            query.check_bucket_width(ep, self.bucket_width)
        if not is_templated(self.group_by):
            query.normalize_group_by(ep, self.group_by)
        if not (isinstance(self.filters, str) and is_templated(self.filters)):
            for name, value in query.check_filters_mapping(self.filters).items():
                if is_templated(value):
                    query.check_filter_name(ep, name)
                else:
                    query.normalize_filter(ep, name, value)
        start, end = self.start_time, self.end_time
        one_missing = (start is None) != (end is None)
        if one_missing or not (start is None or is_templated(start) or is_templated(end)):
            # Both literal (or one missing): the run-time range rules, without a run.
            width = "1m" if is_templated(self.bucket_width) else self.bucket_width
            resolve_range({}, start, end, width, restate_days=restate_days)
        else:
            for name, value in (("start_time", start), ("end_time", end)):
                if value is not None and not is_templated(value):
                    to_unix_seconds(value, name)
