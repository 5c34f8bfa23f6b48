"""OpenAIUsageHook: the one way in and out of OpenAI's Usage and Costs API.

Every request goes through ``_get_page``: auth, timeouts, retries of the failed page (never the
whole range), error translation and one log line per page. Paging follows ``next_page`` with the
original query resent, so a range of any length is read in ``ceil(buckets / max limit)`` requests.
"""

from __future__ import annotations

import ipaddress
import json
import random
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from airflow.sdk import BaseHook

from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.get_provider_info import CONNECTION_EXTRAS
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.rows import bucket_results, bucket_rows, check_result_object

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection

DEFAULT_BASE_URL = "https://api.openai.com/v1"
CONNECT_TIMEOUT = 10.0
#: No single Retry-After is obeyed beyond this; the total is bounded by ``max_retry_wait``.
RETRY_AFTER_CAP = 60.0
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
ADMIN_KEY_HINT = (
    "The Usage and Costs API needs an organization *admin* key (sk-admin-...) with the api.usage.read "
    "scope; project keys (sk-proj-...) and restricted keys are refused. Create one at "
    "https://platform.openai.com/settings/organization/admin-keys and store it as the connection's password."
)


@dataclass(frozen=True)
class ConnectionSettings:
    base_url: str
    api_key: str
    timeout: float
    max_retries: int
    max_retry_wait: float
    backoff_base: float
    max_retry_after: float = 60.0

    def __repr__(self) -> str:  # the key stays out of reprs and tracebacks
        return f"ConnectionSettings(base_url={self.base_url!r}, api_key='***')"


class _Retryable(Exception):
    """A page failure worth retrying; carries what the final error must say."""

    def __init__(self, reason: str, *, status: int | None = None, api_message: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.api_message = api_message
        self.retry_after = retry_after


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def validate_base_url(url: str) -> str:
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise OpenAIUsageValidationError(f"connection host {url!r} is not a URL; use {DEFAULT_BASE_URL} (or leave it empty)")
    if parts.scheme == "http" and not _is_loopback(parts.hostname):
        raise OpenAIUsageValidationError(
            f"connection host {url!r} uses plain http to a non-loopback host; the admin key would travel "
            "unencrypted. Use https (plain http is only allowed for 127.0.0.1/localhost, e.g. the fake API)"
        )
    return url.rstrip("/")


def _api_error_message(body: bytes) -> str | None:
    try:
        error = json.loads(body)["error"]
        return str(error.get("message")) if isinstance(error, Mapping) else str(error)
    except Exception:
        return None


class OpenAIUsageHook(BaseHook):
    """Reads OpenAI's organization usage and costs for any registry endpoint and range.

    :param openai_usage_conn_id: connection of type ``openai_usage``: password = admin API key,
        host = base URL (empty: ``https://api.openai.com/v1``), extras ``timeout``, ``max_retries``,
        ``max_retry_wait``.
    """

    conn_name_attr = "openai_usage_conn_id"
    default_conn_name = "openai_usage_default"
    conn_type = "openai_usage"
    hook_name = "OpenAI Usage"

    def __init__(self, openai_usage_conn_id: str = default_conn_name, *, connection: Connection | None = None) -> None:
        super().__init__()
        self.openai_usage_conn_id = openai_usage_conn_id
        self._connection = connection
        self._settings: ConnectionSettings | None = None
        self._session: requests.Session | None = None

    def __repr__(self) -> str:
        return f"<OpenAIUsageHook conn_id={self.openai_usage_conn_id!r}>"

    # -- connection -------------------------------------------------------------------------------
    @property
    def settings(self) -> ConnectionSettings:
        if self._settings is None:
            conn = self._connection or self.get_connection(self.openai_usage_conn_id)
            key = (conn.password or "").strip()
            if not key:
                raise OpenAIUsageValidationError(
                    f"connection {self.openai_usage_conn_id!r} has no password; put the admin API key there. {ADMIN_KEY_HINT}"
                )
            from airflow.sdk.log import mask_secret

            mask_secret(key)
            extra = conn.extra_dejson or {}

            def extra_value(name: str) -> Any:
                value = extra.get(name, extra.get(f"extra__openai_usage__{name}"))
                return CONNECTION_EXTRAS[name]["default"] if value in (None, "") else value

            host = (conn.host or "").strip()
            if host and "://" not in host:
                # URI-form connections split the URL into host, port and schema and drop its scheme.
                scheme = "http" if _is_loopback(host) else "https"
                host = f"{scheme}://{host}" + (f":{conn.port}" if conn.port else "") + (f"/{conn.schema}" if conn.schema else "")
            try:
                settings = ConnectionSettings(
                    base_url=validate_base_url(host or DEFAULT_BASE_URL),
                    api_key=key,
                    timeout=float(extra_value("timeout")),
                    max_retries=int(extra_value("max_retries")),
                    max_retry_wait=float(extra_value("max_retry_wait")),
                    backoff_base=float(extra.get("backoff_base", 1.0)),
                    max_retry_after=float(extra.get("max_retry_after", RETRY_AFTER_CAP)),
                )
            except (TypeError, ValueError) as exc:
                if isinstance(exc, OpenAIUsageValidationError):
                    raise
                raise OpenAIUsageValidationError(
                    f"connection {self.openai_usage_conn_id!r} has a bad extra: {exc}; expected numbers for "
                    f"{', '.join(CONNECTION_EXTRAS)}"
                ) from None
            self._settings = settings
        return self._settings

    def get_conn(self) -> requests.Session:
        """One pooled session per hook; the key is sent as a Bearer token on every request."""
        if self._session is None:
            import requests

            session = requests.Session()
            session.headers.update(
                {
                    "Authorization": f"Bearer {self.settings.api_key}",
                    "Accept": "application/json",
                    "User-Agent": "airflow-provider-openai-usage",
                }
            )
            self._session = session
        return self._session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    # -- one request ------------------------------------------------------------------------------
    def _get_page(self, query: UsageQuery, cursor: str | None, params: list[tuple[str, str]] | None = None) -> dict[str, Any]:
        """Fetch one page, retrying that page (same query, same cursor) on transient failures."""
        from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, stop_before_delay

        settings = self.settings
        session = self.get_conn()
        url = settings.base_url + query.endpoint.path
        params = list(params if params is not None else query.params())
        if cursor is not None:
            params.append(("page", cursor))

        def wait(state: Any) -> float:
            exc = state.outcome.exception()
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return min(exc.retry_after, settings.max_retry_after)
            # Exponential backoff with full jitter: concurrent tasks do not retry in lockstep.
            return random.uniform(0, settings.backoff_base * 2 ** (state.attempt_number - 1))

        def log_retry(state: Any) -> None:
            exc = state.outcome.exception()
            self.log.warning(
                "%s: %s; retrying the same page in %.1fs (attempt %d of %d)",
                query.endpoint.key, exc, state.upcoming_sleep, state.attempt_number + 1, settings.max_retries + 1,
            )

        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable),
            stop=stop_after_attempt(settings.max_retries + 1) | stop_before_delay(settings.max_retry_wait),
            wait=wait,
            before_sleep=log_retry,
        )
        try:
            return retrying(self._request_once, session, url, params, query, settings)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, _Retryable)
            detail = f"HTTP {last.status}" if last.status else last.reason
            message = f" OpenAI said: {last.api_message}" if last.api_message else ""
            waited = float(retrying.statistics.get("idle_for", 0.0))
            raise OpenAIUsageAPIError(
                f"{query.endpoint.key}: giving up after {exc.last_attempt.attempt_number} attempts on "
                f"{query.endpoint.path}: {detail}.{message} (waited {waited:.1f}s between attempts; limits: "
                f"max_retries={settings.max_retries}, max_retry_wait={settings.max_retry_wait:g}s)",
                status=last.status,
                api_message=last.api_message,
            ) from None

    def _request_once(
        self, session: requests.Session, url: str, params: list[tuple[str, str]], query: UsageQuery, settings: ConnectionSettings
    ) -> dict[str, Any]:
        import requests

        try:
            response = session.get(url, params=params, timeout=(CONNECT_TIMEOUT, settings.timeout))
            body = response.content
        except requests.Timeout:
            raise _Retryable(f"no answer within {settings.timeout:g}s") from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None
        status = response.status_code
        if status in (401, 403):
            raise OpenAIUsageAuthError(
                f"{query.endpoint.key}: OpenAI refused the key with HTTP {status}: "
                f"{_api_error_message(body) or 'no message'}. {ADMIN_KEY_HINT}",
                status=status,
                api_message=_api_error_message(body),
            )
        if status in RETRYABLE_STATUSES:
            retry_after = None
            header = response.headers.get("Retry-After")
            if header:
                try:
                    retry_after = max(0.0, float(header))
                except ValueError:
                    retry_after = None
            raise _Retryable(f"HTTP {status}", status=status, api_message=_api_error_message(body), retry_after=retry_after)
        if status != 200:
            api_message = _api_error_message(body)
            raise OpenAIUsageAPIError(
                f"{query.endpoint.key}: OpenAI answered HTTP {status} for {query.describe()}: {api_message or body[:200]!r}",
                status=status,
                api_message=api_message,
            )
        try:
            # parse_float=Decimal keeps costs exact, whatever the number of decimals.
            page = json.loads(body, parse_float=Decimal)
        except ValueError:
            raise _Retryable("the answer was not complete JSON (truncated or not JSON)") from None
        # Directory paths that answer one object (spend_limit) say so on their request.
        if not isinstance(page, dict) or not (isinstance(page.get("data"), list) or getattr(query, "single_object", False)):
            raise OpenAIUsageResponseError(
                f"{query.endpoint.key}: the answer has no 'data' array (object={page.get('object') if isinstance(page, dict) else None!r}); nothing is written"
            )
        return page

    # -- paging -----------------------------------------------------------------------------------
    def iter_pages(self, query: UsageQuery) -> Iterator[dict[str, Any]]:
        """Every page of the query, following ``next_page``; a repeated cursor is an error, not a loop."""
        cursor: str | None = None
        seen: set[str] = set()
        number = 0
        buckets = 0
        while True:
            page = self._get_page(query, cursor)
            number += 1
            buckets += len(page["data"])
            self.log.info("%s: page %d, %d buckets so far", query.describe(), number, buckets)
            has_more, next_cursor = page.get("has_more"), page.get("next_page")
            yield page
            del page  # never hold two pages at once: memory stays flat however long the range
            if not has_more:
                return
            cursor = next_cursor
            if not cursor:
                raise OpenAIUsageResponseError(f"{query.describe()}: page {number} says has_more but gives no next_page")
            if cursor in seen:
                raise OpenAIUsageResponseError(
                    f"{query.describe()}: page {number} repeated an earlier cursor {cursor!r}; stopping instead of looping"
                )
            seen.add(cursor)

    def iter_query_buckets(self, query: UsageQuery) -> Iterator[dict[str, Any]]:
        """Buckets in time order, each once; one outside the range or out of order is an error.

        A page is checked whole before any of its buckets is yielded, so a bad answer stops the
        pull before anything from it can be written.
        """
        last_end = query.start_time
        for page in self.iter_pages(query):
            for bucket in page["data"]:
                if not isinstance(bucket, dict):
                    raise OpenAIUsageResponseError(f"{query.describe()}: a bucket is {type(bucket).__name__}, not an object")
                start, end = bucket.get("start_time"), bucket.get("end_time")
                if not isinstance(start, int) or not isinstance(end, int) or end <= start:
                    raise OpenAIUsageResponseError(f"{query.describe()}: bucket with bad times {start!r}–{end!r}")
                if start < query.start_time or end > query.end_time:
                    raise OpenAIUsageResponseError(
                        f"{query.describe()}: OpenAI returned bucket {start}–{end} outside the requested range; nothing is written"
                    )
                if start < last_end:
                    raise OpenAIUsageResponseError(
                        f"{query.describe()}: bucket {start}–{end} overlaps or repeats the previous one; refusing to double count"
                    )
                bucket["results"] = bucket_results(bucket)
                bucket.pop("result", None)
                for result in bucket["results"]:
                    check_result_object(query.endpoint, result)
                last_end = end
            data = page["data"]
            del page
            data.reverse()
            while data:  # hand buckets over one by one, releasing each as it goes
                yield data.pop()

    def iter_query_rows(self, query: UsageQuery) -> Iterator[dict[str, Any]]:
        for bucket in self.iter_query_buckets(query):
            yield from bucket_rows(query.endpoint, bucket)

    def iter_buckets(
        self, endpoint: str, start_time: Any, end_time: Any, *, bucket_width: str = "1d", group_by: Any = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Yield the API's buckets (``start_time``, ``end_time``, ``results``) of [start, end) in time order."""
        query = UsageQuery.build(endpoint, start_time, end_time, bucket_width=bucket_width, group_by=group_by, filters=filters)
        return self.iter_query_buckets(query)

    def iter_rows(
        self, endpoint: str, start_time: Any, end_time: Any, *, bucket_width: str = "1d", group_by: Any = None, **filters: Any
    ) -> Iterator[dict[str, Any]]:
        """Yield one flat dict per result: bucket times, then the endpoint's columns in registry order."""
        query = UsageQuery.build(endpoint, start_time, end_time, bucket_width=bucket_width, group_by=group_by, filters=filters)
        return self.iter_query_rows(query)

    # -- directory --------------------------------------------------------------------------------
    def iter_directory(self, entity: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield one flat row per object of a directory entity (``directory.ENTITY_KEYS``), every page
        and, for per-project entities, every project; bad entities or parameters fail before any request."""
        from airflow_provider_openai_usage.hooks.directory_paging import iter_directory

        return iter_directory(self, entity, **params)

    # -- connection test --------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """One cheap call (one daily bucket of costs) and an answer a user can act on."""
        import time

        now = int(time.time())
        try:
            query = UsageQuery.build("costs", now - 86400, now, bucket_width="1d")
            params = [(k, v) for k, v in query.params() if k != "limit"] + [("limit", "1")]
            self._get_page(query, None, params=params)
        except OpenAIUsageAuthError as exc:
            return False, str(exc)
        except OpenAIUsageError as exc:
            return False, f"Could not read usage: {exc}"
        return True, f"Connected to {self.settings.base_url}: the key can read organization usage and costs."
