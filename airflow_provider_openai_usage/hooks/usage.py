"""OpenAIUsageHook: the one way in and out of OpenAI's Usage and Costs API.

Every request goes through ``get_json``: auth, a whole-request deadline, retries of the failed
request (never the whole range) within a per-request and a per-pull wait budget, error translation
with secrets scrubbed from anything the server sent back. Paging follows ``next_page`` with the
original query resent, so a range of any length is read in ``ceil(buckets / max limit)`` requests.

What each layer guarantees about the buckets it hands over:
- ``iter_pages``: every page of the query, each with a ``data`` array and a boolean ``has_more``;
  a cursor seen twice, or ``has_more`` without a ``next_page``, is an error.
- ``iter_query_buckets`` / ``iter_query_rows``: buckets in time order, each once, inside the range,
  contiguous from ``start_time`` (a missing bucket in the middle is an error); amounts of decimal
  columns are exact ``Decimal``. With ``require_complete=False`` the buckets may stop before
  ``end_time`` (not reported yet): the writer and the settle check look at the tail themselves.
- ``iter_buckets`` / ``iter_rows``: the same, and by default the buckets must reach ``end_time``;
  ``end_time=None`` reads up to the moment of the call.

"Inside the range" is what OpenAI may answer for it (``UsageQuery.bucket_bounds``): the range for
usage (the API clips the first and last bucket), the whole UTC days it touches for costs (the API
answers whole days whatever ``start_time`` is; issue #25). Buckets are handed over whole, each with
``exact`` (docs/hook.md, "What iter_buckets returns"); the moment of the call is the answer's
``Date`` header, and a costs day still open then is held back from a range with an ``end_time``.

``streams=N`` (``iter_pages``/``iter_query_buckets``; the operator's ``parallel_requests``) pages up
to N consecutive parts of the range at once (``hooks/page_streams.py``) with the same requests and
the same guarantees: the caller cannot tell the buckets from one stream's.
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections.abc import Callable, Generator, Iterator, Mapping, Sequence
from contextlib import closing
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from functools import partial
from itertools import repeat
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseHook

from airflow_provider_openai_usage.connection import (
    ADMIN_KEY_HINT,
    CONN_TYPE,
    DEFAULT_CONN_ID,
    ConnectionSettings,
    known_extras,
    read_settings,
    unknown_extras,
)
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.page_decoding import decode_typed_page, is_typed
from airflow_provider_openai_usage.query import UsageQuery, check_streams
from airflow_provider_openai_usage.rows import MAX_JSON_DEPTH, bucket_results, bucket_rows, check_result_object, too_deep

if TYPE_CHECKING:
    import requests
    from airflow.sdk import Connection
    from tenacity import RetryCallState

    from airflow_provider_openai_usage.endpoints import Endpoint

CONNECT_TIMEOUT = 10.0
RETRYABLE_STATUSES = frozenset({429, 500, 502, 503, 504})
#: Seconds between two progress lines of one pull (the first and the last page are always logged).
PROGRESS_INTERVAL = 5.0
_READ_SIZE = 1 << 16
#: Results per page the usage operator asks for at most (``iter_pages(page_results=...)``): ~2 KB each
#: decoded, so two pages held (this one and the prefetched one) stay near 20 MB (docs/design.md).
PAGE_RESULTS = 5000
#: A dense-able sub-day pull with ``page_results`` asks this much time first (1h buckets: one bucket).
PROBE_SECONDS = 600


def check_page_results(value: Any) -> None:
    """``page_results`` is None (maximum pages) or a positive int; checked before any request."""
    if value is not None and (not isinstance(value, int) or isinstance(value, bool) or value < 1):
        raise OpenAIUsageValidationError(
            f"page_results={value!r} must be a positive int (about how many results to hold at a time; "
            f"default {PAGE_RESULTS}) or None (the maximum limit per page, memory grows with the grouping)"
        )

# What a server may echo back that must never reach an error, a log or the UI: bearer tokens and
# anything shaped like an OpenAI key (sk-..., sk-admin-..., sk-proj-...).
_BEARER = re.compile(r"(?i)(bearer)(\s+|%20|\+)[^\s\"'<>,;&]+")
# OpenAI keys carry 40+ characters after "sk-"; 16 spares our own hints ("sk-admin-...").
_KEY_LIKE = re.compile(r"sk-[A-Za-z0-9_\-]{16,}")


def scrub(text: str, *secrets: str) -> str:
    """``text`` with the given secrets, any ``Bearer …`` token and anything like ``sk-…`` replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    text = _BEARER.sub(lambda m: f"{m.group(1)}{m.group(2)}***", text)
    return _KEY_LIKE.sub("sk-***", text)


class _Cancelled(Exception):
    """The pull was closed while one of its requests waited to retry: the wait ends at once."""


@dataclass
class RetryBudget:
    """Seconds all retries of one pull may still wait; shared by every request of that pull, whichever
    thread sends it (checked and spent under a lock). ``cancel()`` ends the pull's retry waits early."""

    total: float
    spent: float = 0.0
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)
    _cancelled: threading.Event = field(default_factory=threading.Event, repr=False, compare=False)

    @property
    def remaining(self) -> float:
        return max(0.0, self.total - self.spent)

    def take(self, seconds: float) -> bool:
        """Spend ``seconds`` if that many are left (atomically: two streams cannot both take the last ones)."""
        with self._lock:
            if seconds > self.remaining:
                return False
            self.spent += seconds
            return True

    def sleep(self, seconds: float) -> None:
        """Wait before a retry; raises ``_Cancelled`` at once if the pull is closed meanwhile."""
        if self._cancelled.wait(seconds):
            raise _Cancelled

    def cancel(self) -> None:
        self._cancelled.set()


class _Retryable(Exception):
    """A failed attempt worth retrying; carries what the final error must say."""

    def __init__(self, reason: str, *, status: int | None = None, api_message: str | None = None, retry_after: float | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.status = status
        self.api_message = api_message
        self.retry_after = retry_after


def _api_error(body: bytes) -> tuple[str | None, str | None]:
    """(message, param) of OpenAI's error body ``{"error": {"message", "param", ...}}``, if it is one."""
    try:
        error = json.loads(body)["error"]
    except Exception:
        return None, None
    if isinstance(error, Mapping):
        param = error.get("param")
        return (None if error.get("message") is None else str(error["message"])), (param if isinstance(param, str) else None)
    return str(error), None


def _wrong_base_url_hint(status: int, base_url: str) -> str:
    """A 404 from a base URL without OpenAI's ``/v1`` prefix is almost always that prefix missing."""
    from urllib.parse import urlsplit

    if status != 404 or urlsplit(base_url).path.rstrip("/").endswith("/v1"):
        return ""
    return (
        f" (the connection's base URL {base_url} does not end in /v1: OpenAI's API is under "
        f"{base_url.rstrip('/')}/v1, e.g. https://api.openai.com/v1; set the connection's host to that)"
    )


def _excerpt(body: bytes, limit: int = 300) -> str:
    """The start of a non-JSON body (a proxy's HTML page) as one readable line."""
    text = re.sub(r"\s+", " ", re.sub(r"<[^>]*>", " ", body[:4096].decode("utf-8", "replace"))).strip()
    return (text[:limit] + "…") if len(text) > limit else text


def _set_read_timeout(response: requests.Response, seconds: float) -> None:
    """Shorten the socket's per-read timeout to what is left of the request's deadline."""
    try:
        sock = response.raw.connection.sock  # urllib3's connection of this response
        if sock is not None:
            sock.settimeout(max(0.001, seconds))
    except (AttributeError, OSError):
        pass  # the deadline check between reads still holds


def _exact(value: Any, endpoint: Endpoint, column: str) -> Decimal | None:
    if value is None or type(value) is Decimal and value.is_finite():
        return value
    try:
        if isinstance(value, bool) or not isinstance(value, (str, int, Decimal)):
            raise InvalidOperation
        number = Decimal(value)
        if not number.is_finite():
            raise InvalidOperation
    except InvalidOperation:
        raise OpenAIUsageResponseError(f"{endpoint.key}: {column}={str(value)[:40]!r} is not a finite number; nothing is written") from None
    return number


def _make_exact(endpoint: Endpoint, result: dict[str, Any], path: tuple[str, ...], name: str) -> None:
    """Decimal columns as exact ``Decimal``, whether OpenAI sent a number or a string."""
    node: Any = result
    for part in path[:-1]:
        node = node.get(part) if isinstance(node, dict) else None
    if isinstance(node, dict) and path[-1] in node:
        node[path[-1]] = _exact(node[path[-1]], endpoint, name)


def _already_exact(endpoint: Endpoint, results: list[Any]) -> bool:
    """The common case, checked per column over the whole bucket: plain dicts of the right object whose
    amounts the JSON decoder already made ``Decimal`` (always finite: JSON numbers have no NaN)."""
    if is_typed(endpoint, results):
        return True  # msgspec checked the object and decoded every amount as an exact Decimal
    if set(map(type, results)) != {dict} or not set(map(dict.get, results, repeat("object"))) <= {endpoint.result_object}:
        return False
    for column in endpoint.columns:
        if column.type != "decimal":
            continue
        nodes: list[Any] = results
        for part in column.path[:-1]:
            nodes = [n.get(part) if type(n) is dict else None for n in nodes]
        values = [n.get(column.path[-1]) if type(n) is dict else None for n in nodes]
        if not set(map(type, values)) <= {Decimal, type(None)}:
            return False
    return True


def answered_at(headers: Mapping[str, str]) -> int:
    """The moment of the call: the answer's ``Date`` header (the server's clock, as OpenAI sends it),
    else this machine's clock."""
    import email.utils

    value = headers.get("Date")
    if value:
        try:
            return int(email.utils.parsedate_to_datetime(value).timestamp())
        except (TypeError, ValueError, IndexError, OverflowError):
            pass
    return int(time.time())


#: The key under which ``_get_page`` keeps the moment of the call on a page (``answered_at``).
ANSWERED_AT = "_answered_at"


def check_page_buckets(query: UsageQuery, page: dict[str, Any], last_end: int, *, mark_exact: bool = False) -> int:
    """Check a page's buckets (times, order, contiguity from ``last_end``, result objects, exact amounts)
    in place, before any of them is handed over; returns where the page's buckets end.

    Covering endpoints (costs) may answer with whole UTC days reaching before ``start_time`` and
    after ``end_time`` (``UsageQuery.bucket_bounds``); a bucket still open at the moment of the call
    (it ends after the answer's ``Date``) is partial: dropped from a query with an ``end_time`` (not
    reported yet, never written as a whole day), kept for an open-ended one. ``mark_exact`` (what
    ``iter_buckets`` hands over): every bucket kept gets ``"exact"``, True when it lies inside the
    requested range and was complete when answered (off for the writers: a key more per bucket dict
    costs the 1m benchmark's memory bound).
    """
    from airflow_provider_openai_usage.times import iso

    endpoint = query.endpoint
    low, high = query.bucket_bounds
    if last_end == query.start_time:
        last_end = low  # a covering first bucket starts at the day holding start_time
    moment = page.get(ANSWERED_AT)
    width = query.width_seconds
    kept = 0
    for bucket in page["data"]:
        if not isinstance(bucket, dict):
            raise OpenAIUsageResponseError(f"{query.describe()}: a bucket is {type(bucket).__name__}, not an object")
        start, end = bucket.get("start_time"), bucket.get("end_time")
        if type(start) is not int or type(end) is not int or end <= start:
            raise OpenAIUsageResponseError(f"{query.describe()}: bucket with bad times {str(start)[:20]!r}–{str(end)[:20]!r}")
        if start < low or end > high:
            raise OpenAIUsageResponseError(
                f"{query.describe()}: OpenAI returned bucket {start}–{end} outside the requested range; nothing is written"
            )
        if start < last_end:
            raise OpenAIUsageResponseError(
                f"{query.describe()}: bucket {start}–{end} overlaps or repeats the previous one; refusing to double count"
            )
        if start > last_end:
            raise OpenAIUsageResponseError(
                f"{query.describe()}: OpenAI returned no bucket from {iso(last_end)} to {iso(start)}; "
                "refusing to skip a gap that would read as no usage"
            )
        still_open = moment is not None and end > moment and endpoint.covering_buckets
        if still_open and not query.open_end:
            break  # the day holding "now": partial, so not reported yet for a bounded range
        bucket["results"] = results = bucket_results(bucket)
        bucket.pop("result", None)
        if not _already_exact(endpoint, results):
            for result in results:
                check_result_object(endpoint, result)
                for column in endpoint.columns:
                    if column.type == "decimal":
                        _make_exact(endpoint, result, column.path, column.name)
        if mark_exact:
            clipped_at_now = query.open_end and moment is not None and end >= moment and end % width != 0
            bucket["exact"] = query.is_exact(start, end) and not still_open and not clipped_at_now
        last_end = end
        kept += 1
    if kept < len(page["data"]):
        del page["data"][kept:]
    return last_end


def _with(query: UsageQuery, start_time: int, limit: int) -> list[tuple[str, str]]:
    """The query's parameters from ``start_time`` with ``limit`` buckets per page."""
    return [(k, str(start_time) if k == "start_time" else str(limit) if k == "limit" else v) for k, v in query.params()]


def _next_limit(data: list[Any], page_results: int, max_limit: int) -> tuple[int, int | None]:
    """(the limit that holds about ``page_results`` results given this page's density, where the page ended)."""
    if not data or not isinstance(data[-1], dict):
        return max_limit, None
    results = sum(len(r) for b in data if isinstance(b, dict) for r in (b.get("results", b.get("result")),) if isinstance(r, list))
    per_bucket = max(1, -(-results // len(data)))
    end = data[-1].get("end_time")
    return max(1, min(max_limit, page_results // per_bucket)), (end if type(end) is int else None)


def _pages_only(pages: Generator[tuple[UsageQuery, dict[str, Any]], None, None]) -> Iterator[dict[str, Any]]:
    with closing(pages):  # closing this closes the pull (and its threads)
        for _, page in pages:
            yield page


_DECODER: Any = None


def decode_json(body: bytes) -> Any:
    """JSON with every number exact (``Decimal`` for non-integers), decoded by msgspec.

    Anything msgspec refuses (``NaN``/``Infinity`` literals, which Python's ``json`` reads) goes through
    the standard library as before, so what is accepted or refused, and with which error, is unchanged.
    """
    global _DECODER
    import msgspec

    if _DECODER is None:
        _DECODER = msgspec.json.Decoder(float_hook=Decimal)
    try:
        try:
            value = _DECODER.decode(body)
        except msgspec.DecodeError:
            value = json.loads(body, parse_float=Decimal)
    except RecursionError:
        raise _too_deep() from None
    if too_deep(value):
        raise _too_deep()
    check_unique_keys(body)
    return value


def _too_deep() -> OpenAIUsageResponseError:
    # Not a ValueError: that would be retried as an incomplete answer, and the same answer comes back.
    return OpenAIUsageResponseError(
        f"OpenAI's answer is JSON nested deeper than {MAX_JSON_DEPTH} levels; no usage answer has that shape, so "
        "nothing of it is written"
    )


class _DuplicateKey(Exception):
    pass


def _unique_pairs(pairs: list[tuple[str, Any]]) -> None:
    if len(pairs) > 1 and len(dict(pairs)) != len(pairs):
        seen: set[str] = set()
        for key, _ in pairs:
            if key in seen:
                raise _DuplicateKey(key)
            seen.add(key)


def _nothing(_text: str) -> None:
    return None


def check_unique_keys(body: bytes) -> None:
    """Refuse an answer with a key twice in one object (JSON decoders keep the last one silently).

    One pass of the standard library's C scanner that keeps nothing (objects become None, numbers a
    throwaway int): about four times the cost of the typed decode on a dense page (docs/performance.md,
    rows/s), the price of not guessing which value is meant.
    """
    try:
        # Numbers go to `len`, a C builtin (a Python function per number was a third of this pass on a
        # dense page: millions of calls); what they become does not matter, nothing is kept.
        json.loads(body, object_pairs_hook=_unique_pairs, parse_int=len, parse_float=len, parse_constant=_nothing)
    except _DuplicateKey as dup:
        raise OpenAIUsageResponseError(
            f"OpenAI's answer sends the key {dup.args[0]!r} twice in one object; which value is meant cannot be known, "
            "so nothing of it is written"
        ) from None
    except RecursionError:
        raise _too_deep() from None


def decode_usage_page(endpoint: Endpoint, body: bytes) -> Any:
    """A usage page: typed straight from the bytes when it is the common shape, else as any JSON (``page_decoding``)."""
    page = decode_typed_page(endpoint, body)
    if page is None:
        return decode_json(body)
    check_unique_keys(body)  # a typed page is at most a few levels deep by its shape
    return page


def decode_page(query: UsageQuery, body: bytes) -> dict[str, Any]:
    """One page's bytes → the checked page, as the hook hands it over (benchmarks call this)."""
    page = decode_usage_page(query.endpoint, body)
    if not isinstance(page, dict) or not isinstance(page.get("data"), list):
        raise OpenAIUsageResponseError(f"{query.endpoint.key}: the answer has no 'data' array; nothing is written")
    data = page["data"]
    first = data[0].get("start_time") if data and isinstance(data[0], dict) else None
    check_page_buckets(query, page, first if type(first) is int else query.start_time)
    return page


class OpenAIUsageHook(BaseHook):
    """Reads OpenAI's organization usage and costs for any registry endpoint and range.

    :param openai_usage_conn_id: connection of type ``openai_usage``: password = admin API key,
        host = base URL (empty: ``https://api.openai.com/v1``), extras as in docs/connection.md
        (``timeout``, ``max_retries``, ``max_retry_wait``, ``max_total_retry_wait``, ...).
    """

    conn_name_attr = "openai_usage_conn_id"
    default_conn_name = DEFAULT_CONN_ID
    conn_type = CONN_TYPE
    hook_name = "OpenAI Usage"
    #: Seconds between progress lines of one pull.
    progress_interval = PROGRESS_INTERVAL

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
            settings = read_settings(self.openai_usage_conn_id, conn)
            from airflow.sdk.log import mask_secret

            mask_secret(settings.api_key.get_secret_value())
            unknown = unknown_extras(conn)
            if unknown:
                self.log.warning(
                    "connection %r has extras this provider does not read: %s (known: %s)",
                    self.openai_usage_conn_id, ", ".join(unknown), ", ".join(known_extras()),
                )
            self._settings = settings
        return self._settings

    def get_conn(self) -> requests.Session:
        """One pooled session per hook; the key is sent as a Bearer token on every request."""
        if self._session is None:
            self._session = self.new_session()
        return self._session

    def new_session(self) -> requests.Session:
        """A session of its own (what ``get_conn`` holds): one per page stream, since a ``requests.Session``
        is not documented as safe to use from several threads at once. The caller closes it."""
        import requests

        session = requests.Session()
        session.headers.update(
            {
                "Authorization": f"Bearer {self.settings.api_key.get_secret_value()}",
                "Accept": "application/json",
                "User-Agent": "airflow-provider-openai-usage",
            }
        )
        return session

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None

    def scrub(self, text: str) -> str:
        """``text`` without the key, bearer tokens or key-like strings: for anything a server sent."""
        secret = self._settings.api_key.get_secret_value() if self._settings is not None else ""
        return scrub(text, secret)

    def _scrub_error(self, exc: OpenAIUsageError) -> None:
        exc.args = tuple(self.scrub(a) if isinstance(a, str) else a for a in exc.args)
        if isinstance(exc, OpenAIUsageAPIError) and exc.api_message:
            exc.api_message = self.scrub(exc.api_message)

    # -- one request ------------------------------------------------------------------------------
    def new_retry_budget(self) -> RetryBudget:
        """The wait budget of one pull (``max_total_retry_wait``); pass it to every ``get_json`` of the pull."""
        return RetryBudget(self.settings.max_total_retry_wait)

    def get_json(
        self,
        path: str,
        params: Sequence[tuple[str, str]],
        *,
        what: str,
        budget: RetryBudget | None = None,
        session: requests.Session | None = None,
        decode: Callable[[bytes], Any] | None = None,
        on_headers: Callable[[Mapping[str, str]], None] | None = None,
    ) -> Any:
        """GET ``base_url + path`` and return the decoded JSON (floats as exact ``Decimal``).

        Retries 429, 5xx, timeouts, dropped connections and incomplete bodies with the same
        parameters, honouring ``Retry-After``; 401/403 raise ``OpenAIUsageAuthError`` at once, other
        statuses ``OpenAIUsageAPIError`` (with ``status``, ``api_message`` and ``param``). Every text
        taken from the answer is scrubbed of secrets. ``what`` names the resource in logs and errors;
        ``budget`` is shared by the requests of one pull (default: a fresh one for this request);
        ``session``: the one to send it with (default: the hook's, ``get_conn``); ``decode``: bytes →
        value (default ``decode_json``); a body it cannot read is retried as incomplete. ``on_headers``
        is called with the headers of the answer that is returned (the pages read its ``Date``).
        """
        try:
            budget = budget if budget is not None else self.new_retry_budget()
            return self._get_json(path, list(params), what, budget, session or self.get_conn(), decode or decode_json, on_headers)
        except OpenAIUsageError as exc:
            self._scrub_error(exc)
            raise

    def _get_json(
        self, path: str, params: list[tuple[str, str]], what: str, budget: RetryBudget, session: requests.Session,
        decode: Callable[[bytes], Any], on_headers: Callable[[Mapping[str, str]], None] | None = None,
    ) -> Any:
        from tenacity import RetryError, Retrying, retry_if_exception_type

        settings = self.settings
        url = settings.base_url + path
        why_stopped: list[str] = []

        def wait(state: RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _Retryable) and exc.retry_after is not None:
                return min(exc.retry_after, settings.max_retry_after)
            # Exponential backoff with full jitter: concurrent tasks do not retry in lockstep.
            return random.uniform(0, settings.backoff_base * 2 ** (state.attempt_number - 1))

        def stop(state: RetryCallState) -> bool:
            if state.attempt_number > settings.max_retries:
                return True
            sleep = state.upcoming_sleep
            exc = state.outcome.exception() if state.outcome else None
            asked = (
                f"the server asked to wait {exc.retry_after:g}s (Retry-After"
                + (f", capped at max_retry_after={settings.max_retry_after:g}s)" if exc.retry_after > settings.max_retry_after else ")")
                if isinstance(exc, _Retryable) and exc.retry_after is not None
                else f"the next backoff is {sleep:.1f}s"
            )
            page_left = settings.max_retry_wait - (state.idle_for or 0.0)
            if sleep > page_left:
                why_stopped.append(
                    f"{asked}, more than this request's retry budget allows "
                    f"({max(0.0, page_left):.1f}s left of max_retry_wait={settings.max_retry_wait:g}s)"
                )
                return True
            if not budget.take(sleep):
                why_stopped.append(
                    f"{asked}, more than this pull's retry budget allows "
                    f"({budget.remaining:.1f}s left of max_total_retry_wait={settings.max_total_retry_wait:g}s)"
                )
                return True
            return False

        def before_sleep(state: RetryCallState) -> None:  # the wait was taken from the budget by `stop`
            exc = state.outcome.exception() if state.outcome else None
            self.log.warning(
                "%s: %s; retrying the same request in %.1fs (attempt %d of %d)",
                what, self.scrub(str(exc)), state.upcoming_sleep, state.attempt_number + 1, settings.max_retries + 1,
            )

        retrying = Retrying(
            retry=retry_if_exception_type(_Retryable), stop=stop, wait=wait, before_sleep=before_sleep, sleep=budget.sleep
        )
        try:
            return retrying(self._request_once, session, url, params, what, settings, decode, on_headers)
        except RetryError as exc:
            last = exc.last_attempt.exception()
            assert isinstance(last, _Retryable)
            detail = f"HTTP {last.status}" if last.status else f"{last.reason} to {settings.base_url}"
            message = f" OpenAI said: {last.api_message}" if last.api_message else ""
            waited = float(retrying.statistics.get("idle_for", 0.0))
            attempts = exc.last_attempt.attempt_number
            why = (
                f"stopped because {why_stopped[-1]}"
                if why_stopped
                else f"max_retries={settings.max_retries} reached"
            )
            waited_text = f"; waited {waited:.1f}s between attempts" if attempts > 1 else ""
            raise OpenAIUsageAPIError(
                f"{what}: giving up after {attempts} attempt{'s' if attempts > 1 else ''} on {path}: {detail}.{message} "
                f"({why}{waited_text})",
                status=last.status,
                api_message=last.api_message,
            ) from None

    def _request_once(
        self, session: requests.Session, url: str, params: list[tuple[str, str]], what: str, settings: ConnectionSettings,
        decode: Callable[[bytes], Any] = decode_json, on_headers: Callable[[Mapping[str, str]], None] | None = None,
    ) -> Any:
        import requests
        import urllib3

        started = time.monotonic()
        too_slow = f"the answer did not arrive within timeout={settings.timeout:g}s"
        try:
            response = session.get(url, params=params, timeout=(CONNECT_TIMEOUT, settings.timeout), stream=True)
        except requests.Timeout:
            raise _Retryable(too_slow) from None
        except (requests.ConnectionError, requests.exceptions.ChunkedEncodingError) as exc:
            raise _Retryable(f"connection failed ({type(exc).__name__})") from None
        except requests.RequestException as exc:  # cannot be sent at all (bad URL, redirects): not retried
            raise OpenAIUsageAPIError(f"{what}: the request could not be sent: {type(exc).__name__}: {self.scrub(str(exc))}") from None
        # One deadline for the whole answer: a server trickling bytes never resets it, unlike the
        # socket's per-read timeout.
        deadline = started + settings.timeout
        chunks: list[bytes] = []
        complete = False
        try:
            while True:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise urllib3.exceptions.TimeoutError()
                _set_read_timeout(response, remaining)
                chunk = response.raw.read1(_READ_SIZE, decode_content=True)
                if not chunk:
                    break
                chunks.append(chunk)
            complete = True
        except urllib3.exceptions.TimeoutError:
            raise _Retryable(f"{too_slow} (the server sent {sum(map(len, chunks))} bytes of the body by then)") from None
        except (urllib3.exceptions.HTTPError, OSError) as exc:
            raise _Retryable(f"connection failed while reading the answer ({type(exc).__name__})") from None
        finally:
            if complete:
                response.raw.release_conn()  # back to the pool for the next page
            else:
                response.close()
        body = b"".join(chunks)
        del chunks  # the body once, not twice, while it is decoded
        status = response.status_code
        if status in (401, 403):
            api_message, param = _api_error(body)
            said = (api_message or _excerpt(body) or "no message").rstrip(". ")
            raise OpenAIUsageAuthError(
                f"{what}: OpenAI refused the key of connection {self.openai_usage_conn_id!r} with HTTP {status}: {said}. {ADMIN_KEY_HINT}",
                status=status,
                api_message=api_message,
                param=param,
            )
        if status in RETRYABLE_STATUSES:
            retry_after = None
            header = response.headers.get("Retry-After")
            if header:
                try:
                    retry_after = max(0.0, float(header))
                except ValueError:
                    retry_after = None
            api_message, _ = _api_error(body)
            raise _Retryable(f"HTTP {status}", status=status, api_message=api_message or _excerpt(body) or None, retry_after=retry_after)
        if status != 200:
            api_message, param = _api_error(body)
            raise OpenAIUsageAPIError(
                f"{what}: OpenAI answered HTTP {status}: {api_message or _excerpt(body) or 'no message'}"
                + _wrong_base_url_hint(status, settings.base_url),
                status=status,
                api_message=api_message,
                param=param,
            )
        try:
            # Exact Decimals keep costs exact, whatever the number of decimals.
            decoded = decode(body)
        except ValueError:
            raise _Retryable("the answer was not complete JSON (truncated or not JSON)") from None
        if on_headers is not None:
            on_headers(response.headers)
        return decoded

    # -- paging -----------------------------------------------------------------------------------
    def _get_page(
        self,
        query: UsageQuery,
        cursor: str | None,
        params: list[tuple[str, str]] | None = None,
        budget: RetryBudget | None = None,
        session: requests.Session | None = None,
    ) -> dict[str, Any]:
        """One page of ``query`` (its first, or the one ``cursor`` points at)."""
        params = list(params if params is not None else query.params())
        if cursor is not None:
            params.append(("page", cursor))
        moments: list[int] = []
        try:
            page = self.get_json(
                query.endpoint.path, params, what=query.endpoint.key, budget=budget, session=session,
                decode=partial(decode_usage_page, query.endpoint), on_headers=lambda headers: moments.append(answered_at(headers)),
            )
        except OpenAIUsageAPIError as exc:
            if exc.status == 400:
                raise self._explain_bad_request(query, exc) from None
            raise
        if not isinstance(page, dict) or not isinstance(page.get("data"), list):
            shown = self.scrub(repr(page.get("object") if isinstance(page, dict) else None))[:80]
            raise OpenAIUsageResponseError(f"{query.endpoint.key}: the answer has no 'data' array (object={shown}); nothing is written")
        page[ANSWERED_AT] = moments[-1] if moments else int(time.time())
        return page

    def _explain_bad_request(self, query: UsageQuery, exc: OpenAIUsageAPIError) -> OpenAIUsageAPIError:
        """A 400 for a query the registry allowed: OpenAI's live API refuses something its spec lists.

        Known case: costs ``group_by=api_key_id`` (in the spec and the SDK) is answered 400. The
        error names the parameter OpenAI blamed (its ``param``, else one its message mentions).
        """
        said = exc.api_message or str(exc)
        candidates = [("group_by", list(query.group_by))] if query.group_by else []
        candidates += [(name, list(value) if isinstance(value, tuple) else value) for name, value in query.filters]
        blamed = re.sub(r"\[\d*\]$", "", exc.param or "")
        culprit = next((c for c in candidates if c[0] == blamed), None)
        if culprit is None:
            culprit = next(
                (
                    c
                    for c in candidates
                    if c[0] in said or any(isinstance(v, str) and repr(v) in said for v in (c[1] if isinstance(c[1], list) else []))
                ),
                None,
            )
        floored = [g for g in query.group_by if g in query.endpoint.group_by_floors]
        if blamed == "start_time" and floored:
            from airflow_provider_openai_usage.times import iso

            floors = ", ".join(f"{g} from {iso(query.endpoint.group_by_floors[g])}" for g in floored)
            hint = (
                f"OpenAI answers group_by={floored!r} only for ranges starting on or after its floor ({floors} as this release "
                "knows it; issue #25). The operators pull the days before the floor without it (docs/hook.md, \"The API-key "
                "floor\"); with the hook, start the range at the floor or leave the grouping out before it. If the range "
                "already starts after that floor, OpenAI moved it: please report this with the message"
            )
        elif culprit is not None:
            hint = (
                f"OpenAI rejected {culprit[0]}={culprit[1]!r}, which this provider allows because OpenAI's spec and SDK "
                f"list it for {query.endpoint.key}; OpenAI's live API has the last word: remove it from {culprit[0]} "
                "(known case: costs group_by=['api_key_id'])"
            )
        elif blamed:
            hint = f"OpenAI blamed {blamed!r}, which this provider computes itself: please report this with the message"
        elif candidates:
            hint = f"OpenAI rejected a parameter this provider allows; check {', '.join(c[0] for c in candidates)}"
        else:
            hint = "OpenAI rejected the request; no grouping or filter was sent, so this is likely a provider bug: please report it"
        said = said.rstrip(". ") + (f" (param {exc.param!r})" if exc.param else "")
        return OpenAIUsageAPIError(
            f"{query.endpoint.key}: OpenAI answered HTTP 400 for {query.describe()}: {said}. Hint: {hint}. Not retried.",
            status=400,
            api_message=exc.api_message,
            param=exc.param,
        )

    def iter_pages(
        self, query: UsageQuery, *, prefetch: bool = False, page_results: int | None = None, streams: int = 1
    ) -> Iterator[dict[str, Any]]:
        """Every page of the query in time order, following ``next_page``; a repeated cursor is an error, not a loop.

        All pages share one retry budget (``max_total_retry_wait``). Progress is logged against
        the number of buckets in the range, at most every ``progress_interval`` seconds.

        ``prefetch``: request the next page on a background thread while the caller works on this
        one (network overlaps writing). One request is in flight at a time, as without it, with the
        same retries, budget and scrubbing; its error is raised where the caller asks for that page;
        at most two pages are held; the thread ends with the iterator (closing it waits for the
        request in flight). Off by default: then nothing is requested before the caller asks.

        ``page_results``: hold about this many results per page, not a whole page of a dense grouping
        (memory is bounded by the results held). A grouped 1h/1m pull starts with ten minutes of buckets (one 1h bucket);
        after each page the next ``limit`` is this number over the results per bucket seen (at most
        the maximum). A changed ``limit`` is sent as a new query from where the page ended (no cursor
        is reused with other parameters). Sparse pulls keep the maximum and the fewest requests.

        ``streams``: page up to this many consecutive sub-ranges at once (1 to ``MAX_STREAMS``), each
        on its own thread and session; pages still come in time order. See ``iter_query_buckets``.
        """
        check_streams(streams)
        return _pages_only(self._ordered_pages(query, prefetch, page_results, streams))

    def _ordered_pages(
        self, query: UsageQuery, prefetch: bool, page_results: int | None, streams: int
    ) -> Generator[tuple[UsageQuery, dict[str, Any]], None, None]:
        """(the sub-query a page answers, the page) in time order, progress logged against the whole range."""
        budget = self.new_retry_budget()
        subs = query.split(streams)
        pages: Generator[tuple[UsageQuery, dict[str, Any]], None, None]
        if len(subs) == 1 and not prefetch:
            pages = ((query, page) for page in self._stream_pages(query, page_results, budget))
        else:
            from airflow_provider_openai_usage.hooks.page_streams import PageStreams

            streamed = PageStreams(
                subs,
                lambda sub, session: self._stream_pages(sub, page_results, budget, session),
                self.new_session,
                budget.cancel,
                page_results,
            )
            pages = streamed.pages()
        number = buckets = 0
        total = query.bucket_count()
        started = last_log = time.monotonic()
        with closing(pages):
            for sub, page in pages:
                number += 1
                buckets += len(page["data"])
                done = sub is subs[-1] and not page["has_more"]
                now = time.monotonic()
                if number == 1 or done or now - last_log >= self.progress_interval:
                    last_log = now
                    self._log_progress(query, number, buckets, total, now - started, done=done)
                yield sub, page
                del page  # at most this page and the ones fetched ahead are held, however long the range

    def _stream_pages(
        self, query: UsageQuery, page_results: int | None, budget: RetryBudget, session: requests.Session | None = None
    ) -> Iterator[dict[str, Any]]:
        """The pages of one (sub-)query, one request per page asked for: ``has_more`` checked, cursors
        followed (a repeat is an error), ``limit`` adapted to ``page_results``."""
        max_limit = limit = query.limit
        if page_results and query.group_by and query.width_seconds < 86400:
            # Ten minutes first: a page shows how dense the grouping is (at 250 groups an hour of 1m buckets
            # would already be 15,000 results, three times what the pull means to hold).
            limit = min(max_limit, max(1, PROBE_SECONDS // query.width_seconds))
        params = _with(query, query.start_time, limit)
        cursor: str | None = None
        seen: set[str] = set()
        number = 0
        while True:
            page = self._get_page(query, cursor, params, budget, session)
            number += 1
            has_more, next_cursor = page.get("has_more"), page.get("next_page")
            if not isinstance(has_more, bool):
                raise OpenAIUsageResponseError(
                    f"{query.describe()}: page {number} has has_more={self.scrub(repr(has_more))[:40]} instead of true/false; "
                    "cannot tell whether more pages follow, so nothing from this pull is trusted"
                )
            fresh = False
            if has_more and page_results:
                new_limit, last_end = _next_limit(page["data"], page_results, max_limit)
                if new_limit != limit and last_end is not None:
                    limit, fresh = new_limit, True
                    params = _with(query, last_end, limit)
            yield page
            del page
            if not has_more:
                return
            if fresh:
                cursor = None
                continue
            cursor = next_cursor
            if not isinstance(cursor, str) or not cursor:
                raise OpenAIUsageResponseError(f"{query.describe()}: page {number} says has_more but gives no next_page")
            if cursor in seen:
                raise OpenAIUsageResponseError(
                    f"{query.describe()}: page {number} repeated an earlier cursor {self.scrub(repr(cursor))[:60]}; "
                    "stopping instead of looping"
                )
            seen.add(cursor)

    def _log_progress(self, query: UsageQuery, page: int, buckets: int, total: int, elapsed: float, *, done: bool) -> None:
        share = min(buckets, total) / total if total else 1.0
        if done:
            eta = "done"
        elif share > 0:
            eta = f"ETA {elapsed / share - elapsed:.0f}s"
        else:
            eta = "ETA unknown"
        self.log.info(
            "%s: %d of %d buckets (%.0f%%) after page %d, %.1fs elapsed, %s",
            query.describe(), buckets, total, share * 100, page, elapsed, eta,
        )

    def iter_query_buckets(
        self,
        query: UsageQuery,
        *,
        require_complete: bool = False,
        prefetch: bool = False,
        page_results: int | None = None,
        streams: int = 1,
        mark_exact: bool = False,
    ) -> Generator[dict[str, Any], None, None]:
        """Buckets in time order, each once, contiguous from ``start_time``; see the module docstring.

        A page is checked whole before any of its buckets is yielded, so a bad answer stops the
        pull before anything from it can be written. ``require_complete``: the buckets must reach
        ``end_time``; otherwise an error follows the last one (the writer and the settle check
        leave it False and judge the tail themselves). ``prefetch``/``page_results``: see ``iter_pages``.
        ``mark_exact``: give every bucket ``"exact"`` as ``iter_buckets`` does (off for the writers).

        ``streams`` (1 to ``MAX_STREAMS``, checked before any request): split the range into up to
        this many consecutive sub-ranges (``UsageQuery.split``: cut at whole pages of the maximum
        ``limit`` from ``start_time``, on bucket boundaries, never more parts than pages, so a sparse
        pull makes exactly the requests one stream makes: 365 days in 2 streams are 6 + 6 requests)
        and page each on its own thread with its own session; the range's wall time is about the
        slowest stream's. The buckets come exactly as with one stream, checked the same way across
        the cuts: a sub-range that stops before its end while a later one has buckets is the usual
        gap error; only buckets at the very end may be missing (not reported yet: the later
        sub-ranges then answer with no buckets, one request each). An error of a later stream is
        raised where the caller reaches it, after every bucket before it. Memory stays bounded: the
        stream being read keeps one page ahead (as ``prefetch``); a later stream holds at most two
        pages, or, with ``page_results``, fetches only while all pages held stay within about
        ``page_results`` results (so dense pulls take turns and hold what one stream holds, sparse
        ones run ahead). The streams share the pull's retry budget; closing the iterator (or an
        error) ends retry waits, waits for requests in flight and ends every thread.
        """
        check_streams(streams)
        return self._scrubbed_buckets(query, require_complete, prefetch, page_results, streams, mark_exact)

    def _scrubbed_buckets(
        self, query: UsageQuery, require_complete: bool, prefetch: bool, page_results: int | None, streams: int,
        mark_exact: bool = False,
    ) -> Generator[dict[str, Any], None, None]:
        try:
            yield from self._checked_buckets(query, require_complete, prefetch, page_results, streams, mark_exact)
        except OpenAIUsageError as exc:
            self._scrub_error(exc)
            raise

    def _checked_buckets(
        self, query: UsageQuery, require_complete: bool, prefetch: bool = False, page_results: int | None = None, streams: int = 1,
        mark_exact: bool = False,
    ) -> Iterator[dict[str, Any]]:
        from airflow_provider_openai_usage.times import iso

        last_end = query.start_time
        with closing(self._ordered_pages(query, prefetch, page_results, streams)) as pages:
            for sub, page in pages:
                # Checked against the sub-range it answers, and contiguous across the cuts.
                last_end = check_page_buckets(sub, page, last_end, mark_exact=mark_exact)
                data = page["data"]
                del page
                data.reverse()
                while data:  # hand buckets over one by one, releasing each as it goes
                    yield data.pop()
        if require_complete and last_end < query.end_time:
            raise OpenAIUsageResponseError(
                f"{query.describe()}: OpenAI reported buckets only up to {iso(last_end)}, not to {iso(query.end_time)} "
                "(not reported yet, or the answer was cut short). Wait for it (OpenAIUsageSensor with a settle_period), "
                "end the range earlier, or pass require_complete=False to take what is reported so far"
            )

    @staticmethod
    def _make_exact(endpoint: Endpoint, result: dict[str, Any], path: tuple[str, ...], name: str) -> None:
        _make_exact(endpoint, result, path, name)

    def iter_query_rows(
        self, query: UsageQuery, *, require_complete: bool = False, page_results: int | None = PAGE_RESULTS
    ) -> Iterator[dict[str, Any]]:
        """One flat dict per result of ``query``; ``page_results`` bounds the results held (see ``iter_pages``)."""
        for bucket in self.iter_query_buckets(query, require_complete=require_complete, page_results=page_results):
            yield from bucket_rows(query.endpoint, bucket)

    def iter_buckets(
        self,
        endpoint: str,
        start_time: Any,
        end_time: Any = None,
        *,
        bucket_width: str = "1d",
        group_by: Any = None,
        require_complete: bool = True,
        page_results: int | None = PAGE_RESULTS,
        **filters: Any,
    ) -> Iterator[dict[str, Any]]:
        """Yield the API's buckets (``start_time``, ``end_time``, ``results``, ``exact``) of [start, end) in time order.

        Amounts are exact ``Decimal``. Every bucket of the range comes, or an error: with
        ``require_complete=False`` the range may end early where OpenAI has not reported yet.

        ``end_time=None`` means "up to now": no ``end_time`` is sent and the buckets run to the moment
        of the call (``require_complete`` does not apply). Buckets are handed over whole, as OpenAI
        sent them; ``bucket["exact"]`` tells them apart (docs/hook.md, "What iter_buckets returns"):
        True for a bucket inside the requested range and complete when answered; False for a costs
        bucket covering more than the range (the whole UTC day holding an unaligned ``start_time`` or
        ``end_time``) and for the partial bucket still open at the moment of the call.

        ``page_results`` (default ``PAGE_RESULTS``): hold about this many results at a time, so a dense
        grouping (a day of 1m buckets by every dimension is ~72,000 results) costs the same memory as
        a sparse one; a dense sub-day pull then asks smaller pages (ten minutes first, then as many buckets
        as hold about this many results). Sparse pulls make exactly the requests they make without it.
        ``None`` asks the maximum ``limit`` every time (fewest requests, memory grows with the grouping).
        """
        check_page_results(page_results)
        query = UsageQuery.build(endpoint, start_time, end_time, bucket_width=bucket_width, group_by=group_by, filters=filters)
        return self.iter_query_buckets(
            query, require_complete=require_complete and not query.open_end, mark_exact=True, page_results=page_results
        )

    def iter_rows(
        self,
        endpoint: str,
        start_time: Any,
        end_time: Any = None,
        *,
        bucket_width: str = "1d",
        group_by: Any = None,
        require_complete: bool = True,
        page_results: int | None = PAGE_RESULTS,
        **filters: Any,
    ) -> Iterator[dict[str, Any]]:
        """Yield one flat dict per result: bucket times, then the endpoint's columns in registry order.

        The rows of the buckets ``iter_buckets`` hands over, whole: a row from a covering costs bucket
        carries that bucket's ``start_time``/``end_time`` (before the requested start, or after the
        requested end), so a caller tells it from an exact one by comparing them with the range.
        ``page_results``: as for ``iter_buckets`` (memory bounded by default).
        """
        check_page_results(page_results)
        query = UsageQuery.build(endpoint, start_time, end_time, bucket_width=bucket_width, group_by=group_by, filters=filters)
        return self.iter_query_rows(query, require_complete=require_complete and not query.open_end, page_results=page_results)

    # -- directory --------------------------------------------------------------------------------
    def iter_directory(self, entity: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Yield one flat row per object of a directory entity (``directory.ENTITY_KEYS``), every page
        and, for per-project entities, every project; bad entities or parameters fail before any request."""
        from airflow_provider_openai_usage.hooks.directory_paging import iter_directory

        return iter_directory(self, entity, **params)

    # -- organization -----------------------------------------------------------------------------
    def organization_id(self, *, verify: bool = False) -> str:
        """The OpenAI organization this connection's key reads: the level its data lands under.

        The connection's ``organization_id`` extra when it is set (no request), else what the Costs
        API reports (``reported_organization_id``: one request). ``verify=True`` asks the API even
        when the extra is set and refuses a mismatch (the daily DAG's ``check_organization`` does,
        before any pull): a key of one organization never lands under another's folder. An
        organization without any costs result in the last 180 days cannot be told by the API:
        then the extra is needed.
        """
        from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

        configured = self.settings.organization_id
        if configured and not verify:
            return configured
        reported = self.reported_organization_id()
        if reported is None:
            if configured:
                return configured
            raise OpenAIUsageValidationError(
                f"connection {self.openai_usage_conn_id!r} has no organization_id extra and the Costs API reported no "
                "organization for its key (no costs in the last 180 days); set the extra organization_id=org-... "
                "(platform settings → Organization → Organization ID)"
            )
        if configured and reported != configured:
            raise OpenAIUsageValidationError(
                f"connection {self.openai_usage_conn_id!r} says organization_id={configured!r}, but its key reads "
                f"organization {reported!r} (the Costs API's organization_id); nothing is landed under the wrong "
                "organization. Fix the extra or the key"
            )
        return reported

    def reported_organization_id(self) -> str | None:
        """The ``organization_id`` the Costs API reports for this key (one request, the last 180 days), or None.

        Every costs result carries it (docs/hook.md); an organization with no spend in that range has
        no result to carry it. Two different ids in one answer are refused (the answer is wrong).
        """
        from airflow_provider_openai_usage.endpoints import ENDPOINTS
        from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
        from airflow_provider_openai_usage.organizations import check_organization_id
        from airflow_provider_openai_usage.times import DAY

        def ask(now: int) -> tuple[set[str], int]:
            start = now - now % DAY - 179 * DAY
            params = [("start_time", str(start)), ("bucket_width", "1d"), ("limit", "180")]
            moments: list[int] = []
            page = self.get_json(
                ENDPOINTS["costs"].path, params, what="costs (which organization)", on_headers=lambda h: moments.append(answered_at(h))
            )
            seen: set[str] = set()
            for bucket in page.get("data") or [] if isinstance(page, dict) else []:
                for result in (bucket.get("results") or []) if isinstance(bucket, dict) else []:
                    org = result.get("organization_id") if isinstance(result, dict) else None
                    if org is not None:
                        try:
                            seen.add(check_organization_id(org, described_as="organization_id"))
                        except OpenAIUsageValidationError as exc:
                            raise OpenAIUsageResponseError(f"costs: the answer's {exc}; nothing is landed") from None
            return seen, (moments[-1] if moments else now)

        local_now = int(time.time())
        seen, server_now = ask(local_now)
        if not seen and server_now < local_now - DAY:
            # The server's clock is behind ours (a test server with a fixed clock): its last 180 days.
            seen, _ = ask(server_now)
        if len(seen) > 1:
            raise OpenAIUsageResponseError(f"costs: one answer names several organizations {sorted(seen)}; nothing is landed")
        return next(iter(seen), None)

    # -- connection test --------------------------------------------------------------------------
    def test_connection(self) -> tuple[bool, str]:
        """One cheap call (one daily bucket of costs) and an answer a user can act on."""
        import dataclasses

        now = int(time.time())
        try:
            configured = self.settings
        except OpenAIUsageError as exc:  # a connection that cannot be read: say why, as a test result
            return False, self.scrub(str(exc))
        # One retry and short waits: the UI's Test button answers in seconds, not after the task's
        # whole retry budget (an unreachable host took 37 s with the defaults).
        self._settings = dataclasses.replace(
            configured, max_retries=1, timeout=min(configured.timeout, 15.0),
            max_retry_wait=min(configured.max_retry_wait, 2.0), max_total_retry_wait=min(configured.max_total_retry_wait, 2.0),
            backoff_base=min(configured.backoff_base, 0.5),
        )
        try:
            query = UsageQuery.build("costs", now - 86400, now, bucket_width="1d")
            params = [(k, v) for k, v in query.params() if k != "limit"] + [("limit", "1")]
            self._get_page(query, None, params=params)
        except OpenAIUsageAuthError as exc:
            return False, self.scrub(str(exc))
        except OpenAIUsageError as exc:
            return False, self.scrub(f"Could not read usage: {exc}")
        except Exception as exc:  # the UI shows whatever comes back: never a raw error with the key in it
            return False, self.scrub(f"Could not read usage: {type(exc).__name__}: {exc}")
        finally:
            self._settings = configured
        return True, f"Connected to {self.settings.base_url}: the key can read organization usage and costs."
