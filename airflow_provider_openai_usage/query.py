"""A validated request for one endpoint and range: refused here, before any HTTP, or sent as is.

Hook, operators, sensors and the trigger all build a ``UsageQuery``, so every caller refuses the
same inputs with the same words: the parameter, the bad value, and what is allowed.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Any

from airflow_provider_openai_usage.endpoints import WIDTH_SECONDS, Endpoint, get_endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.times import check_range, iso, to_unix_seconds

#: The most page streams one pull may run at once (``iter_query_buckets(streams=...)``, the operator's
#: ``parallel_requests``): enough to hide a slow answer, few enough to stay polite to OpenAI's rate limits.
MAX_STREAMS = 8


def check_streams(value: Any, name: str = "streams") -> int:
    """How many sub-ranges of one pull are paged at once: an int from 1 to ``MAX_STREAMS``."""
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= MAX_STREAMS:
        raise OpenAIUsageValidationError(
            f"{name}={value!r} must be an int from 1 to {MAX_STREAMS} (requests in flight at once for one pull; "
            f"1 pages the range one request after another); e.g. {name}=2"
        )
    return value


def _allowed(values: Iterable[str]) -> str:
    return ", ".join(values) or "(none)"


def check_bucket_width(endpoint: Endpoint, bucket_width: Any) -> str:
    if bucket_width not in endpoint.bucket_widths:
        raise OpenAIUsageValidationError(
            f"bucket_width={bucket_width!r} is not allowed for endpoint {endpoint.key!r}; allowed: "
            f"{_allowed(endpoint.bucket_widths)}"
        )
    return bucket_width


def normalize_group_by(endpoint: Endpoint, group_by: Any) -> tuple[str, ...]:
    if group_by is None:
        return ()
    if isinstance(group_by, str):
        group_by = [g for g in group_by.split(",") if g]
    if not isinstance(group_by, (list, tuple)):
        raise OpenAIUsageValidationError(
            f"group_by={group_by!r} must be a list of field names; allowed for {endpoint.key}: "
            f"{_allowed(endpoint.group_by)}"
        )
    for value in group_by:
        if value not in endpoint.group_by:
            raise OpenAIUsageValidationError(
                f"group_by value {value!r} is not allowed for endpoint {endpoint.key!r}; allowed: "
                f"{_allowed(endpoint.group_by)}"
            )
    if len(set(group_by)) != len(group_by):
        raise OpenAIUsageValidationError(f"group_by={list(group_by)!r} repeats a value")
    # Registry order, so equal groupings give equal queries and cursors.
    return tuple(g for g in endpoint.group_by if g in group_by)


def check_filters_mapping(filters: Any) -> Mapping[str, Any]:
    if filters is None:
        return {}
    if not isinstance(filters, Mapping):
        raise OpenAIUsageValidationError(
            f"filters={filters!r} must be a mapping of filter name to value, e.g. {{'project_ids': ['proj_abc']}}"
        )
    return filters


def check_filter_name(endpoint: Endpoint, name: Any) -> None:
    if name not in endpoint.filter_names:
        raise OpenAIUsageValidationError(
            f"filter {name!r} is not accepted by endpoint {endpoint.key!r}; allowed: {_allowed(endpoint.filter_names)}"
        )


def normalize_filter(endpoint: Endpoint, name: str, value: Any) -> Any:
    """One filter's value as sent (a bool or a tuple of strings), or None when it is left out."""
    check_filter_name(endpoint, name)
    spec = endpoint.filter(name)
    if value is None:
        return None
    if spec.kind == "bool":
        if not isinstance(value, bool):
            raise OpenAIUsageValidationError(
                f"filter {name}={value!r} must be a bool (True: only {spec.dimension} rows, False: only non-"
                f"{spec.dimension} rows; leave it out for both)"
            )
        return value
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) and v for v in values):
        raise OpenAIUsageValidationError(f"filter {name}={value!r} must be a non-empty list of non-empty strings")
    if spec.enum is not None:
        for v in values:
            if v not in spec.enum:
                raise OpenAIUsageValidationError(f"filter {name} value {v!r} is not allowed; allowed: {_allowed(spec.enum)}")
    return tuple(values)


def _normalize_filters(endpoint: Endpoint, filters: Any) -> tuple[tuple[str, Any], ...]:
    out = []
    for name, value in check_filters_mapping(filters).items():
        normalized = normalize_filter(endpoint, name, value)
        if normalized is not None:
            out.append((name, normalized))
    return tuple(sorted(out))


@dataclass(frozen=True)
class UsageQuery:
    """Everything one paged request sequence sends, validated and normalized."""

    endpoint: Endpoint
    start_time: int
    end_time: int
    bucket_width: str
    group_by: tuple[str, ...]
    filters: tuple[tuple[str, Any], ...]
    #: ``end_time`` was omitted: "up to now". Nothing is sent as ``end_time`` (the API answers up to the
    #: moment of the call) and ``end_time`` holds an upper bound for the checks: the end of the UTC day
    #: after the one holding the moment the query was built (a day of slack for clock skew).
    open_end: bool = False

    @classmethod
    def build(
        cls,
        endpoint: str,
        start_time: Any,
        end_time: Any,
        *,
        bucket_width: str = "1d",
        group_by: Any = None,
        filters: Mapping[str, Any] | None = None,
    ) -> UsageQuery:
        ep = get_endpoint(endpoint)
        check_bucket_width(ep, bucket_width)
        check_filters_mapping(filters)
        start = to_unix_seconds(start_time, "start_time")
        if end_time is None:
            now = int(time.time())
            end = (now // 86400 + 2) * 86400
            if start >= now:
                raise OpenAIUsageValidationError(
                    f"start_time={start} ({iso(start)}) is not before now ({iso(now)}): end_time=None means up to now, "
                    "and the range would be empty; pass a start_time in the past or an explicit end_time"
                )
        else:
            end = to_unix_seconds(end_time, "end_time")
        check_range(start, end)
        return cls(
            endpoint=ep,
            start_time=start,
            end_time=end,
            bucket_width=bucket_width,
            group_by=normalize_group_by(ep, group_by),
            filters=_normalize_filters(ep, filters),
            open_end=end_time is None,
        )

    @property
    def width_seconds(self) -> int:
        return WIDTH_SECONDS[self.bucket_width]

    @property
    def limit(self) -> int:
        """Always the maximum: the fewest pages for the range (limit counts buckets, not results)."""
        return self.endpoint.max_limit(self.bucket_width)

    def params(self) -> list[tuple[str, str]]:
        """Query parameters in the official SDKs' encoding (``group_by[]=a&group_by[]=b``)."""
        params: list[tuple[str, str]] = [("start_time", str(self.start_time))]
        if not self.open_end:
            params.append(("end_time", str(self.end_time)))
        params += [("bucket_width", self.bucket_width), ("limit", str(self.limit))]
        params += [("group_by[]", g) for g in self.group_by]
        for name, value in self.filters:
            if isinstance(value, bool):
                params.append((name, "true" if value else "false"))
            else:
                params += [(f"{name}[]", v) for v in value]
        return params

    def bucket_count(self) -> int:
        """How many buckets the range spans (the first and the last may be partial)."""
        width = self.width_seconds
        return (self.end_time - 1) // width - self.start_time // width + 1

    def with_range(self, start_time: int, end_time: int) -> UsageQuery:
        """The same query over ``[start_time, end_time)`` (Unix seconds, already checked by the caller).

        Only the part that reaches the query's end stays open-ended (sends no ``end_time``)."""
        return replace(self, start_time=start_time, end_time=end_time, open_end=self.open_end and end_time == self.end_time)

    # -- covering buckets (costs) ------------------------------------------------------------------
    @property
    def bucket_bounds(self) -> tuple[int, int]:
        """Where the API's buckets for this query may start and end.

        Clipped endpoints (usage): the range itself. Covering ones (costs): from the start of the
        bucket holding ``start_time`` to the end of the one holding the range's last second.
        """
        if not self.endpoint.covering_buckets:
            return self.start_time, self.end_time
        width = self.width_seconds
        return self.start_time - self.start_time % width, -(-self.end_time // width) * width

    def is_exact(self, start: int, end: int) -> bool:
        """Whether a bucket [start, end) lies inside the requested range (else it is a covering bucket:
        a whole costs day reaching before ``start_time`` or after ``end_time``)."""
        return self.start_time <= start and end <= self.end_time

    # -- groupings with a floor -------------------------------------------------------------------
    def floor_parts(self) -> list[tuple[UsageQuery, tuple[str, ...]]]:
        """The query cut at the floors of its groupings (``Endpoint.group_by_floors``), each part with
        the groupings it leaves out because the range starts before their floor.

        OpenAI's Costs API refuses ``group_by=api_key_id`` for a range starting before 2025-12-01
        (HTTP 400, ``param: start_time``; issue #25), so [2025-11-20, 2025-12-10) grouped by
        ``project_id, api_key_id`` is [2025-11-20, 2025-12-01) by ``project_id`` (leaving out
        ``api_key_id``) and [2025-12-01, 2025-12-10) by both. Without a floor in range: ``[(self, ())]``.
        """
        floors = {g: self.endpoint.group_by_floors[g] for g in self.group_by if g in self.endpoint.group_by_floors}
        cuts = sorted({f for f in floors.values() if self.start_time < f < self.end_time})
        parts: list[tuple[UsageQuery, tuple[str, ...]]] = []
        for lo, hi in zip([self.start_time, *cuts], [*cuts, self.end_time], strict=True):
            dropped = tuple(g for g in self.group_by if floors.get(g, lo) > lo)
            part = self.with_range(lo, hi)
            if dropped:
                part = replace(part, group_by=tuple(g for g in self.group_by if g not in dropped))
            parts.append((part, dropped))
        return parts

    def split(self, parts: int) -> list[UsageQuery]:
        """Up to ``parts`` consecutive sub-queries covering the range, cut so their pages add up to this
        query's: never more than its pages, never a cut inside a bucket, and every sub-query but the
        last a whole number of full pages (``limit`` buckets each) from ``start_time``.

        365 days of 1d buckets (12 pages of 31) in 2 parts: 186 + 179 days, 6 + 6 requests. A range
        that fits one page is not split. Only the first part may start inside a bucket, as the query does.
        """
        pages = -(-self.bucket_count() // self.limit)
        parts = min(parts, pages)
        if parts <= 1:
            return [self]
        first_bucket = self.start_time // self.width_seconds
        subs: list[UsageQuery] = []
        start, pages_before = self.start_time, 0
        for k in range(parts):
            pages_before += pages // parts + (1 if k < pages % parts else 0)
            end = self.end_time if k == parts - 1 else (first_bucket + pages_before * self.limit) * self.width_seconds
            subs.append(self.with_range(start, end))
            start = end
        return subs

    def expected_buckets(self) -> list[tuple[int, int]]:
        """(start, end) of every bucket of the range; the first and last are clipped to it, as the API does."""
        buckets = []
        t = self.start_time
        while t < self.end_time:
            end = min((t // self.width_seconds + 1) * self.width_seconds, self.end_time)
            buckets.append((t, end))
            t = end
        return buckets

    def describe(self) -> str:
        end = "now" if self.open_end else iso(self.end_time)
        return f"{self.endpoint.key} [{iso(self.start_time)}, {end}) {self.bucket_width}"
