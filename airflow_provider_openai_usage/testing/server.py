"""A real HTTP server on loopback that answers like OpenAI's Usage and Costs API.

It serves every registry endpoint with deterministic data, OpenAI's paging (``limit`` buckets per
page, opaque ``next_page`` cursors), its error bodies, and injected faults; it logs every request it
received so tests can prove what a client did (and did not) send.

By default it answers like OpenAI's live API, including what the spec does not say (issue #25,
docs/fake-api.md "How the real API behaves"; the recorded answers in tests/data/recorded):
- usage buckets are clipped: the first starts at ``start_time``, the last ends at ``end_time`` or at
  the moment of the call (an ``end_time`` after now is clipped to now);
- costs buckets are whole UTC days whatever ``start_time`` is, the day holding now included (it ends
  after now); every costs result carries ``organization_id``, grouped by ``user_id`` also ``user_email``;
- costs refuse ``limit`` > 180 and ``bucket_width`` other than ``1d`` with OpenAI's words, and
  ``group_by`` with ``api_key_id`` for a range starting before ``FakeControls.api_key_floor``;
- quiet days are buckets with ``results: []``; ungrouped results carry every group field as null;
- every answer has a ``Date`` header (the fake's clock), as OpenAI's do;
- parameters it does not know, and malformed ones, get a 400 with OpenAI's error body;
- a cursor only continues the query it was issued for (every original parameter must be resent).

One server can serve several organizations (``add_organization``, ``organization_count``): as at
OpenAI, an admin key belongs to one organization, and every answer (usage, costs, directory) is that
organization's; the controls and the fault plan stay the server's (a fault can aim at one key).
"""

from __future__ import annotations

import base64
import email.utils
import hashlib
import json
import re
import shlex
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR, ENDPOINTS, WIDTH_SECONDS, Endpoint
from airflow_provider_openai_usage.testing.admin import AdminAPI
from airflow_provider_openai_usage.testing.data import (
    PROJECT_POOL,
    FakeOrganization,
    aggregate,
    day_events,
    dense_results,
    event_minutes,
    matches,
)
from airflow_provider_openai_usage.testing.faults import Fault, FaultPlan
from airflow_provider_openai_usage.times import DAY

DEFAULT_KEY = "sk-admin-fake-openai-usage-key"
CORRUPTIONS = ("loop", "shift", "legacy", "drift", "wrong_object", "no_data", "no_has_more", "gap", "empty")
_COMMA_LIST = re.compile(r",(?! )")
SCALARS = ("start_time", "end_time", "bucket_width", "limit", "page")


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass
class FakeControls:
    """Knobs a test turns between requests to make data appear, change or page differently."""

    #: Unix seconds the server believes it is; None means the real clock.
    now: int | None = None
    #: Nothing at or after this time is reported yet (OpenAI's reporting delay); None: up to now.
    available_until: int | None = None
    #: Per-UTC-day revision (day start → n); bumping one changes that day's numbers (late revisions).
    revisions: dict[int, int] = field(default_factory=dict)
    #: Serve at most this many buckets per page whatever ``limit`` says (forces many pages).
    page_size_cap: int | None = None
    #: Extra latency added to every answer, seconds (benchmarks).
    latency: float = 0.0
    #: How costs amounts are sent: "number" (as the spec says), "string" (a string with 28 decimals,
    #: as the API has been seen doing), or "mixed" (alternating per bucket).
    amount_format: str = "number"
    #: Benchmarks only: every bucket carries this many synthetic results (one per project
    #: ``proj_000``...), computed arithmetically instead of from events; grouping is ignored.
    dense_groups: int = 0
    #: Result fields a newer API sends that the registry does not type: every result of every
    #: endpoint carries these (copied), to prove nothing is dropped (the rows' ``extra`` column).
    unknown_result_fields: dict[str, Any] = field(default_factory=dict)
    #: Costs grouped by ``api_key_id`` are refused (400, ``param: start_time``) for a range starting
    #: before this (Unix seconds; the live API's ~2025-12-01, issue #25). None: never refused.
    api_key_floor: int | None = COSTS_API_KEY_FLOOR
    #: The most costs buckets one page may ask for; more is refused, not clamped (the live API: 180).
    costs_max_limit: int = 180

    def current_time(self) -> int:
        return int(time.time()) if self.now is None else self.now

    def visible_until(self) -> int:
        now = self.current_time()
        return now if self.available_until is None else min(now, self.available_until)


@dataclass(frozen=True)
class LoggedRequest:
    method: str
    path: str
    query: tuple[tuple[str, str], ...]
    status: int
    fault: str | None
    at: float
    #: The organization the request's key belongs to; None when the key was refused (missing, unknown,
    #: revoked or a project key). The key itself is never logged.
    organization_id: str | None = None

    def params(self) -> dict[str, list[str]]:
        out: dict[str, list[str]] = {}
        for k, v in self.query:
            out.setdefault(k, []).append(v)
        return out


def _error_body(message: str, type_: str, param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


_DECIMAL_MARK = "__decimal__:"
_DECIMAL_RE = re.compile(r'"__decimal__:(-?[0-9]+(?:\.[0-9]+)?)"')


def _dumps(payload: Any) -> bytes:
    """JSON with Decimals written as exact number literals (``json`` would make them floats)."""

    def swap(obj: Any) -> Any:
        if isinstance(obj, Decimal):
            return _DECIMAL_MARK + format(obj, "f")
        if isinstance(obj, dict):
            return {k: swap(v) for k, v in obj.items()}
        if isinstance(obj, list):
            return [swap(v) for v in obj]
        return obj

    return _DECIMAL_RE.sub(r"\1", json.dumps(swap(payload))).encode()


def bearer_token(authorization: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header; None without one."""
    return (authorization or "").removeprefix("Bearer ").strip() if (authorization or "").startswith("Bearer ") else None


class UsageAPI:
    """The request → response logic, independent of sockets so it is easy to reason about.

    ``org``/``key``/``admin`` are the first organization's; ``organizations`` maps every admin key
    served to its organization (``admins``: to its directory), and a request is answered with the
    data of the organization its key belongs to.
    """

    def __init__(self, org: FakeOrganization, key: str, project_keys: Iterable[str], controls: FakeControls) -> None:
        self.org = org
        self.key = key
        self.project_keys = frozenset(project_keys)
        self.controls = controls
        self.routes: Mapping[str, Endpoint] = {f"/v1{e.path}": e for e in ENDPOINTS.values()}
        #: The organization admin paths (directory), same organization and key.
        self.admin = AdminAPI(org, key, controls)
        self.organizations: dict[str, FakeOrganization] = {key: org}
        self.admins: dict[str, AdminAPI] = {key: self.admin}
        #: Keys answered 401 like unknown ones (a key revoked at OpenAI), though their organization stays.
        self.revoked: set[str] = set()

    def add_organization(self, key: str, org: FakeOrganization) -> None:
        """Answer ``key`` with ``org``'s data and directory; a key served twice would make the
        organization of a request ambiguous, so it is refused."""
        if key in self.organizations or key in self.project_keys:
            raise ValueError("that key is already served (each admin key belongs to one organization)")
        self.organizations[key] = org
        self.admins[key] = AdminAPI(org, key, self.controls)

    def organization_for(self, token: str | None) -> FakeOrganization | None:
        """The organization of a Bearer token, or None when the token is refused."""
        if token is None or token in self.revoked:
            return None
        return self.organizations.get(token)

    def handle(self, path: str, query: list[tuple[str, str]], authorization: str | None) -> tuple[int, dict[str, str], bytes]:
        endpoint = self.routes.get(path.rstrip("/"))
        admin_route = self.admin.route(path) if endpoint is None else None
        if endpoint is None and admin_route is None:
            return 404, {}, _error_body(f"Invalid URL (GET {path})", "invalid_request_error")
        token = bearer_token(authorization)
        if token in self.project_keys:
            return 401, {}, _error_body(
                "You have insufficient permissions for this operation. Missing scopes: api.usage.read. "
                "Check that you have the correct role in your organization (Reader, Writer, Owner) and project "
                "(Member, Owner), and if you're using a restricted API key, that it has the necessary scopes.",
                "invalid_request_error",
            )
        org = self.organization_for(token)
        if org is None:
            shown = (token[:3] + "*" * 4 + token[-4:]) if token else ""
            message = (
                f"Incorrect API key provided: {shown}. You can find your API key at https://platform.openai.com/account/api-keys."
                if token
                else "You didn't provide an API key. You need to provide your API key in an Authorization header "
                "using Bearer auth (i.e. Authorization: Bearer YOUR_KEY)."
            )
            return 401, {}, _error_body(message, "invalid_request_error", code="invalid_api_key" if token else None)
        if admin_route is not None:
            assert token is not None
            return self.admins[token].handle(admin_route, query)
        assert endpoint is not None
        try:
            page = self.page(endpoint, query, org)
        except BadRequest as exc:
            return 400, {}, _error_body(str(exc), "invalid_request_error", param=exc.param, code=exc.code)
        return 200, {}, _dumps(page)

    # -- parameters -------------------------------------------------------------------------------
    def _parse(self, endpoint: Endpoint, query: list[tuple[str, str]]) -> dict[str, Any]:
        arrays = {"group_by"} | {f.name for f in endpoint.filters if f.kind == "strings"}
        bools = {f.name for f in endpoint.filters if f.kind == "bool"}
        scalars: dict[str, str] = {}
        lists: dict[str, list[str]] = {}
        for raw_key, value in query:
            key = raw_key[:-2] if raw_key.endswith("[]") else raw_key
            if key in arrays:
                # All three encodings seen in the wild: k=a&k=b, k[]=a&k[]=b, k=a,b. A bracketed value
                # is one value, and ", " never separates (costs line items read "gpt-4o, input").
                parts = [value] if raw_key.endswith("[]") else _COMMA_LIST.split(value)
                lists.setdefault(key, []).extend(v for v in parts if v)
            elif key in SCALARS or key in bools:
                if key in scalars or raw_key.endswith("[]"):
                    raise BadRequest(f"Parameter '{key}' must be given once.", key)
                scalars[key] = value
            else:
                raise BadRequest(f"Unrecognized request argument supplied: {raw_key}", raw_key)
        out: dict[str, Any] = {"lists": lists}
        if "start_time" not in scalars:
            raise BadRequest("Missing required parameter: 'start_time'.", "start_time")
        for name in ("start_time", "end_time", "limit"):
            if name in scalars:
                try:
                    out[name] = int(scalars[name])
                except ValueError:
                    raise BadRequest(f"Invalid '{name}': expected an integer, got {scalars[name]!r}.", name) from None
        width = scalars.get("bucket_width", "1d")
        if width not in endpoint.bucket_widths:
            if endpoint.covering_buckets:  # the live Costs API's words (issue #25)
                raise BadRequest(f"Supported values are: {', '.join(repr(w) for w in endpoint.bucket_widths)}", "bucket_width")
            raise BadRequest(
                f"Invalid 'bucket_width': {width!r}. Supported values are: {', '.join(endpoint.bucket_widths)}.", "bucket_width"
            )
        out["bucket_width"] = width
        default_limit, max_limit = endpoint.limits[width]
        limit = out.get("limit", default_limit)
        if endpoint.covering_buckets and limit > self.controls.costs_max_limit:
            # Refused, not clamped; the number is the one sent (issue #25).
            raise BadRequest(
                f"Invalid limit provided: {limit}. Limit must be less than or equal to {self.controls.costs_max_limit}.", "limit"
            )
        if not 1 <= limit <= max_limit:
            raise BadRequest(f"Invalid 'limit': {limit}. For bucket_width={width} it must be between 1 and {max_limit}.", "limit")
        out["limit"] = limit
        end = out.get("end_time")
        if end is not None and end <= out["start_time"]:
            raise BadRequest("'end_time' must be greater than 'start_time'.", "end_time")
        for value in lists.get("group_by", []):
            if value not in endpoint.group_by:
                raise BadRequest(
                    f"Invalid 'group_by' value {value!r}. Supported values are: {', '.join(endpoint.group_by)}.", "group_by"
                )
        filters: dict[str, set[Any]] = {}
        for f in endpoint.filters:
            if f.kind == "bool" and f.name in scalars:
                if scalars[f.name] not in ("true", "false"):
                    raise BadRequest(f"Invalid '{f.name}': expected true or false, got {scalars[f.name]!r}.", f.name)
                filters[f.dimension] = {scalars[f.name] == "true"}
            elif f.name in lists:
                for v in lists[f.name]:
                    if f.enum and v not in f.enum:
                        raise BadRequest(f"Invalid '{f.name}' value {v!r}. Supported values are: {', '.join(f.enum)}.", f.name)
                filters[f.dimension] = set(lists[f.name])
        out["filters"] = filters
        out["page"] = scalars.get("page")
        out["group_by"] = [g for g in endpoint.group_by if g in lists.get("group_by", [])]
        floor = self.controls.api_key_floor
        if endpoint.group_by_floors.get("api_key_id") and "api_key_id" in out["group_by"] and floor is not None:
            if out["start_time"] < floor:
                # Spend by API key only exists from the floor on (issue #25): status, param and code as observed.
                raise BadRequest(
                    f"Grouping by api_key_id is only available for start_time on or after {floor}; got {out['start_time']}.",
                    "start_time",
                    "invalid_request_error",
                )
        return out

    @staticmethod
    def _fingerprint(endpoint: Endpoint, query: list[tuple[str, str]], organization_id: str | None = None) -> str:
        kept: list[Any] = sorted((k.removesuffix("[]"), v) for k, v in query if k != "page")
        if organization_id is not None:  # another organization's cursor does not continue this one's query
            kept.append(["organization", organization_id])
        return hashlib.sha256(json.dumps([endpoint.key, kept]).encode()).hexdigest()[:16]

    # -- data -------------------------------------------------------------------------------------
    def page(self, endpoint: Endpoint, query: list[tuple[str, str]], org: FakeOrganization | None = None) -> dict[str, Any]:
        """One page of ``org``'s answer (default: the first organization's)."""
        org = self.org if org is None else org
        p = self._parse(endpoint, query)
        # The first organization's cursors stay what they were before several were served.
        fingerprint = self._fingerprint(endpoint, query, None if org == self.org else org.organization_id)
        offset = 0
        if p["page"] is not None:
            try:
                decoded = base64.urlsafe_b64decode(p["page"].removeprefix("page_").encode()).decode()
                offset_text, issued_for = decoded.split(":", 1)
                offset = int(offset_text)
            except Exception:
                raise BadRequest(f"Invalid 'page': {p['page']!r} is not a cursor this API issued.", "page") from None
            if issued_for != fingerprint:
                raise BadRequest(
                    "Invalid 'page': the cursor belongs to a different query; resend every original parameter with it.",
                    "page",
                )
        width = WIDTH_SECONDS[p["bucket_width"]]
        now, visible = self.controls.current_time(), self.controls.visible_until()
        spans = self._spans(endpoint, p["start_time"], p.get("end_time"), width, now, visible)
        size = p["limit"] if self.controls.page_size_cap is None else min(p["limit"], self.controls.page_size_cap)
        chosen = spans[offset : offset + size]
        buckets = []
        for start, bucket_end in chosen:
            # Usage counted up to the bucket's end, and never past what is reported (whole costs days too).
            until = min(bucket_end, visible)
            buckets.append(
                {
                    "object": "bucket",
                    "start_time": start,
                    "end_time": bucket_end,
                    "results": self._results(org, endpoint, start, until, p["group_by"], p["filters"]),
                }
            )
        starts = spans
        has_more = offset + size < len(starts)
        next_page = None
        if has_more:
            next_page = "page_" + base64.urlsafe_b64encode(f"{offset + size}:{fingerprint}".encode()).decode()
        return {"object": "page", "data": buckets, "has_more": has_more, "next_page": next_page}

    @staticmethod
    def _spans(endpoint: Endpoint, start: int, end_time: int | None, width: int, now: int, visible: int) -> list[tuple[int, int]]:
        """(start, end) of every bucket the query gets.

        Usage: clipped, the first starts at ``start`` and the last ends at ``end_time``, now, or what
        is reported so far. Costs: whole UTC days from the one holding ``start`` to the one holding the
        earlier of ``end_time`` and now (which ends after now); with a reporting delay
        (``available_until``) only the days reported whole.
        """
        spans: list[tuple[int, int]] = []
        if endpoint.covering_buckets:
            stop = now if end_time is None else min(end_time, now)
            t = start - start % width
            while t < stop and (t + width <= visible or visible >= now):
                spans.append((t, t + width))
                t += width
            return spans
        end = visible if end_time is None else min(end_time, visible)
        t = start
        while t < end:
            spans.append((t, min((t // width + 1) * width, end)))
            t = spans[-1][1]
        return spans

    def _results(
        self, org: FakeOrganization, endpoint: Endpoint, start: int, end: int, group_by: list[str], filters: Mapping[str, set[Any]]
    ) -> list[dict[str, Any]]:
        results = self._group_results(org, endpoint, start, end, group_by, filters)
        if endpoint.reported_fields:
            # Sent by the live Costs API, in neither spec nor SDK (issue #25).
            for r in results:
                if "user_id" in group_by and r.get("user_id") is not None:
                    r["user_email"] = org.user_email(r["user_id"])
                r["organization_id"] = org.organization_id
        return results

    def _group_results(
        self, org: FakeOrganization, endpoint: Endpoint, start: int, end: int, group_by: list[str], filters: Mapping[str, set[Any]]
    ) -> list[dict[str, Any]]:
        if self.controls.dense_groups:
            return dense_results(endpoint, start, self.controls.dense_groups)
        events = []
        day = start - start % DAY
        while day < end:
            revision = self.controls.revisions.get(day, 0)
            day_list = day_events(org, endpoint.key, day, revision)
            minutes = event_minutes(org, endpoint.key, day, revision)
            lo, hi = bisect_left(minutes, start), bisect_left(minutes, end)
            events += [e for e in day_list[lo:hi] if matches(e, filters)]
            day += DAY
        results = aggregate(endpoint, events, group_by)
        if self.controls.unknown_result_fields:
            for r in results:
                r.update(json.loads(_dumps(self.controls.unknown_result_fields), parse_float=Decimal))
        fmt = self.controls.amount_format
        if fmt == "string" or (fmt == "mixed" and (start // 86400) % 2):
            for r in results:
                if isinstance(r.get("amount"), dict) and isinstance(r["amount"].get("value"), Decimal):
                    value = r["amount"]["value"].quantize(Decimal(1).scaleb(-28), context=Context(prec=60))
                    r["amount"]["value"] = format(value, "f")
        return results


def _corrupt(body: bytes, kind: str, cursor: str | None) -> bytes:
    """Answers a buggy or drifting server could give (see ``Fault``)."""
    page = json.loads(body, parse_float=Decimal)
    if kind == "loop":
        page["has_more"], page["next_page"] = True, cursor or page.get("next_page") or "page_loop"
    elif kind == "shift" and page["data"]:
        page["data"][-1]["start_time"] += 7 * DAY
        page["data"][-1]["end_time"] += 7 * DAY
    elif kind == "legacy":
        # The first spec versions: `result` instead of `results`, `sessions` instead of `num_sessions`.
        for bucket in page["data"]:
            bucket["result"] = bucket.pop("results")
            for r in bucket["result"]:
                if "num_sessions" in r:
                    r["sessions"] = r.pop("num_sessions")
    elif kind == "drift":
        # A newer API: an unknown field on every result, and optional fields left out.
        for bucket in page["data"]:
            for r in bucket["results"]:
                r["drift_field"] = "responses"
                for optional in ("service_tier", "quantity_unit", "input_image_tokens"):
                    r.pop(optional, None)
    elif kind == "wrong_object":
        for bucket in page["data"]:
            for r in bucket["results"]:
                r["object"] = "organization.usage.something_else.result"
    elif kind == "no_data":
        page.pop("data")
    elif kind == "no_has_more":
        page.pop("has_more")
    elif kind == "gap" and len(page["data"]) >= 3:
        del page["data"][len(page["data"]) // 2]
    elif kind == "empty":
        page["data"], page["has_more"], page["next_page"] = [], False, None
    return _dumps(page)


#: Not an OpenAI path: the fake's request count for clients in other processes (not logged itself).
REQUEST_COUNT_PATH = "/_fake/requests"


def _response_head(status: int, headers: Mapping[str, str], length: int) -> bytes:
    content_type = headers.get("Content-Type", "application/json")
    lines = [f"HTTP/1.1 {status} {HTTPStatus(status).phrase}", f"Content-Type: {content_type}", f"Content-Length: {length}"]
    lines += [f"{k}: {v}" for k, v in headers.items() if k != "Content-Type"]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    #: TCP_NODELAY: a response goes out as soon as it is written (see do_GET).
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - silence stderr access logs
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server's naming
        received = time.monotonic()
        fake = self.server.fake
        parts = urlsplit(self.path)
        query = parse_qsl(parts.query, keep_blank_values=True)
        if parts.path == REQUEST_COUNT_PATH:
            # Out-of-process clients (the benchmarks) read the request count here; ?reset=1 clears it.
            count = len(fake.requests)
            if ("reset", "1") in query:
                fake.clear_requests()
            self.wfile.write(_response_head(200, {}, len(body := _dumps({"requests": count}))) + body)
            return
        token = bearer_token(self.headers.get("Authorization"))
        fault = fake.faults.next_for(parts.path, query, key=token)
        try:
            status, headers, body = fake.api.handle(parts.path, query, self.headers.get("Authorization"))
        except Exception as exc:  # a bug in the fake must look like a server error, not a hang
            status, headers, body = 500, {}, _error_body(f"fake API error: {exc!r}", "server_error")
        if fault is not None and fault.kind == "status":
            default = "Rate limit reached for requests" if fault.status == 429 else "The server had an error while processing your request."
            status, body = fault.status, _error_body(
                fault.message or default,
                "requests" if fault.status == 429 else "invalid_request_error" if fault.status < 500 else "server_error",
                param=fault.param,
            )
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after is not None else {}
        if fault is not None and fault.kind in ("echo", "echo_html"):
            auth = self.headers.get("Authorization") or ""
            status, headers = fault.status, {}
            if fault.kind == "echo":
                body = _error_body(f"Invalid request (GET {parts.path}); headers received: Authorization: {auth}", "server_error")
            else:
                headers = {"Content-Type": "text/html; charset=utf-8"}
                body = (
                    f"<html><head><title>{status} Not Found</title></head><body><h1>{status}</h1>"
                    f"<p>nginx could not route GET {parts.path}</p><pre>Authorization: {auth}\n"
                    f"X-Api-Key: {token if token in fake.api.organizations else fake.key}</pre>"
                    "</body></html>"
                ).encode()
        if fault is not None and fault.kind in CORRUPTIONS and status == 200:
            body = _corrupt(body, fault.kind, dict(query).get("page"))
        if fault is not None and fault.kind == "garbage":
            status, body = 200, b"<html><body>502 Bad Gateway</body></html>"
        # OpenAI's answers carry a Date header; the hook reads it as the moment of the call (the fake's clock).
        headers = {**headers, "Date": email.utils.formatdate(fake.api.controls.current_time(), usegmt=True)}
        org = fake.api.organization_for(token)
        fake._log(
            LoggedRequest(
                "GET", parts.path, tuple(query), status, fault.describe() if fault else None, received,
                org.organization_id if org is not None else None,
            )
        )
        if fake.api.controls.latency:
            time.sleep(fake.api.controls.latency)
        if fault is not None and fault.kind == "slow":
            time.sleep(fault.delay)
        if fault is not None and fault.kind == "drop":
            self.close_connection = True
            return
        truncate = fault is not None and fault.kind == "truncate"
        try:
            if fault is not None and fault.kind == "trickle":
                # The head at once, then the body one byte per ``delay``: each read succeeds quickly,
                # so only a whole-request deadline ends it.
                self.close_connection = True
                self.wfile.write(_response_head(status, headers, len(body)))
                for i in range(len(body)):
                    self.wfile.write(body[i : i + 1])
                    time.sleep(fault.delay)
                return
            # Head and body in one write (with TCP_NODELAY, see the class): written apart, Nagle's
            # algorithm plus the client's delayed ACK stall every kept-alive response ~40 ms, and the
            # benchmarks would measure our test server instead of the clients.
            self.wfile.write(_response_head(status, headers, len(body)) + (body[: len(body) // 2] if truncate else body))
            if truncate:
                self.close_connection = True
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


#: stop() waits for the serve loop's next poll: at 0.05 s that was ~45 ms per fake API, 16 s of the
#: unit suite's ~350 servers. Polling an idle socket 200 times a second costs next to nothing.
SHUTDOWN_POLL_SECONDS = 0.005


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    fake: FakeOpenAIUsageAPI


class FakeOpenAIUsageAPI:
    """Start with ``with FakeOpenAIUsageAPI() as api:``; point a connection at ``api.base_url``.

    ``api.requests`` is the log of every request received, ``api.faults`` schedules failures and
    ``api.controls`` moves the clock, hides or revises days and shrinks pages.

    ``key``/``organization`` (or ``seed``) are the first organization; ``organization_count=N`` also
    serves ``FakeOrganization.numbered(2..N)`` under the keys ``<key>-2``... (``fake_organizations``),
    and ``add_organization`` any other. ``api.organizations`` maps each admin key to its organization.
    """

    def __init__(
        self,
        *,
        key: str = DEFAULT_KEY,
        seed: int = 0,
        organization: FakeOrganization | None = None,
        project_keys: Iterable[str] = ("sk-proj-fake-project-key",),
        host: str = "127.0.0.1",
        port: int = 0,
        now: int | None = None,
        organization_count: int = 1,
    ) -> None:
        self.key = key
        self.organization = organization or FakeOrganization(seed=seed)
        self.controls = FakeControls(now=now)
        self.faults = FaultPlan()
        self.api = UsageAPI(self.organization, key, project_keys, self.controls)
        if organization_count < 1:
            raise ValueError(f"organization_count={organization_count}: serve at least one organization")
        if organization_count > 1:
            projects = max(1, min(len(self.organization.projects), len(PROJECT_POOL)))
            for other_key, other in fake_organizations(organization_count, key=key, seed=self.organization.seed, projects=projects)[1:]:
                self.add_organization(other_key, other)
        self._log_lock = threading.Lock()
        self._requests: list[LoggedRequest] = []
        self._host, self._port = host, port
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        #: Called with (requests so far, the request) once a request's answer is decided; tests use it
        #: to make data appear or change between a client's polls without racing the clock.
        self.after_request: Callable[[int, LoggedRequest], None] | None = None

    # -- lifecycle --------------------------------------------------------------------------------
    def start(self) -> FakeOpenAIUsageAPI:
        self._server = _Server((self._host, self._port), _Handler)
        self._server.fake = self
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": SHUTDOWN_POLL_SECONDS}, name="fake-openai-usage", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> FakeOpenAIUsageAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "start() the fake API first"
        return self._server.server_address[1]

    @property
    def base_url(self) -> str:
        """Like OpenAI's, it ends in ``/v1``."""
        return f"http://{self._host}:{self.port}/v1"

    def connection_json(self, **extra: Any) -> str:
        """An ``AIRFLOW_CONN_...`` value pointing at this server, its organization id as the extra
        ``organization_id`` (pass ``organization_id=None`` to leave it out: the hook then asks the costs API)."""
        return self.connection_json_for(self.key, **extra)

    def connection_json_for(self, key: str, **extra: Any) -> str:
        """``connection_json`` of the organization ``key`` belongs to: that key, that ``organization_id``."""
        if key not in self.api.organizations:
            raise KeyError("no organization is served for that key (add_organization first)")
        extra.setdefault("organization_id", self.api.organizations[key].organization_id)
        return connection_json(self.base_url, key, **{k: v for k, v in extra.items() if v is not None})

    # -- organizations ----------------------------------------------------------------------------
    @property
    def organizations(self) -> Mapping[str, FakeOrganization]:
        """Admin key → the organization it belongs to, the first one first (a copy)."""
        return dict(self.api.organizations)

    def add_organization(self, key: str, organization: FakeOrganization) -> None:
        """Serve ``organization`` to requests carrying ``key``, beside the others, with the server's
        controls and faults. ``FakeOrganization.numbered(n)`` makes one apart from every other."""
        if organization.organization_id in {o.organization_id for o in self.api.organizations.values()}:
            raise ValueError(f"organization_id {organization.organization_id!r} is already served: give each its own")
        self.api.add_organization(key, organization)

    def admin_for(self, key: str) -> AdminAPI:
        """The directory (admin paths) of ``key``'s organization: its ``edits``, ``leak_full_key``."""
        return self.api.admins[key]

    def revoke(self, key: str) -> None:
        """From now on requests with ``key`` get the 401 of an unknown key (a key revoked at OpenAI);
        its organization and the other keys are untouched. ``reset()`` or ``restore(key)`` undoes it."""
        if key not in self.api.organizations:
            raise KeyError("no organization is served for that key")
        self.api.revoked.add(key)

    def restore(self, key: str) -> None:
        """Answer ``key`` again after ``revoke``."""
        self.api.revoked.discard(key)

    # -- request log ------------------------------------------------------------------------------
    def _log(self, entry: LoggedRequest) -> None:
        with self._log_lock:
            self._requests.append(entry)
            count = len(self._requests)
        if self.after_request is not None:
            self.after_request(count, entry)

    @property
    def requests(self) -> list[LoggedRequest]:
        with self._log_lock:
            return list(self._requests)

    def clear_requests(self) -> None:
        with self._log_lock:
            self._requests.clear()

    def schedule_faults(self, *faults: Fault) -> None:
        self.faults.schedule(faults)

    def reset(self) -> None:
        """Back to a quiet server: no faults, no log, no revoked key, default controls (clock kept);
        the organizations served stay."""
        self.faults.clear()
        self.api.revoked.clear()
        self.clear_requests()
        self.after_request = None
        now = self.controls.now
        for name, value in FakeControls().__dict__.items():
            setattr(self.controls, name, value)
        self.controls.now = now


def connection_json(base_url: str, key: str, **extra: Any) -> str:
    """An ``AIRFLOW_CONN_...`` value for a fake API at ``base_url`` (also for one not started yet)."""
    conn: dict[str, Any] = {"conn_type": "openai_usage", "host": base_url, "password": key}
    if extra:
        conn["extra"] = extra
    return json.dumps(conn)


def connection_export(
    base_url: str, key: str = DEFAULT_KEY, *, conn_id: str = "openai_usage_default", organization_id: str | None = None
) -> str:
    """The shell line that points ``conn_id`` at a fake API (its key is no secret); with
    ``organization_id``, the connection carries it as its extra (a lake of several organizations)."""
    extra = {"organization_id": organization_id} if organization_id is not None else {}
    return f"export AIRFLOW_CONN_{conn_id.upper()}={shlex.quote(connection_json(base_url, key, **extra))}"


def fake_organizations(
    count: int, *, key: str = DEFAULT_KEY, seed: int = 0, projects: int = 3
) -> list[tuple[str, FakeOrganization]]:
    """(admin key, organization) of ``count`` organizations one fake can serve, clearly apart.

    The first is ``key`` and ``FakeOrganization.numbered(1, seed=seed)`` (the default organization);
    the n-th ``<key>-<n>`` and ``FakeOrganization.numbered(n, seed=seed + n - 1)``: its own
    ``organization_id``, amounts, project, user and key ids, and directory names.
    """
    if count < 1:
        raise ValueError(f"count={count}: serve at least one organization")
    return [
        (key if n == 1 else f"{key}-{n}", FakeOrganization.numbered(n, seed=seed + n - 1, projects=projects))
        for n in range(1, count + 1)
    ]


def serve_forever(api: FakeOpenAIUsageAPI, on_ready: Callable[[FakeOpenAIUsageAPI], None] | None = None) -> None:
    """Run until interrupted (the command-line entry point)."""
    api.start()
    if on_ready:
        on_ready(api)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        pass
    finally:
        api.stop()
