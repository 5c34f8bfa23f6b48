"""OpenAI's official Python SDK as a second client: it parses every answer of our fake API with its
strict types, and its values equal what our hook returns for the same query.

The SDK is code nobody here wrote, generated from OpenAI's own description of the API. Real HTTP
to the fake API on 127.0.0.1 (``base_url`` pointed at it); no mocks. Deliberate disagreements are
named: costs amounts sent as 28-decimal strings (seen from the live API) are not floats to the SDK,
and the costs fields the live API sends beyond the SDK (``organization_id``, ``user_email``; issue
#25) are registry columns here and extras to the SDK.
"""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any

import openai_sdk
import pytest
from conftest import DAY, NOW
from openai import OpenAI
from pydantic import ValidationError

from airflow_provider_openai_usage.endpoints import ENDPOINTS, Endpoint
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

def windows(fake_api) -> dict[str, tuple[int, int]]:
    """The ranges compared, ending at the fake's "now"."""
    now = fake_api.controls.now or NOW
    return {"1d": (now - 10 * DAY, now), "1h": (now - 30 * 3600, now), "1m": (now - 90 * 60, now)}


def past_the_floors(fake_api, endpoint: Endpoint) -> None:
    """Move the fake's clock past the endpoint's grouping floors (costs by api_key_id from 2025-12-01)
    so every grouping is answered over the last ten days."""
    if endpoint.group_by_floors:
        fake_api.controls.now = max(endpoint.group_by_floors.values()) + 20 * DAY


@pytest.fixture
def sdk(fake_api) -> OpenAI:
    return OpenAI(api_key="unused", admin_api_key=fake_api.key, base_url=fake_api.base_url, max_retries=0, timeout=10)


def sdk_pages(client: OpenAI, key: str, strict: bool = True, **query: Any) -> list[Any]:
    """Every page of a query through the SDK, each validated with the SDK's response model."""
    call = getattr(client.admin.organization.usage.with_raw_response, key)
    model = openai_sdk.response_type(key)
    pages, cursor = [], None
    while True:
        raw = call(**query, **({"page": cursor} if cursor else {}))
        page = model.model_validate(json.loads(raw.http_response.content), strict=strict)
        pages.append(page)
        if not page.has_more:
            return pages
        cursor = page.next_page
        assert cursor


def _value(result: Any, path: tuple[str, ...]) -> Any:
    node = result
    for part in path:
        node = getattr(node, part, None) if node is not None else None
    return node


def sdk_rows(endpoint: Endpoint, pages: list[Any]) -> list[tuple]:
    out = []
    for page in pages:
        for bucket in page.data:
            for result in bucket.results:
                assert result.object == endpoint.result_object
                values = []
                for column in endpoint.columns:
                    if column.role == "extra":
                        # Typed by the registry, extras to the SDK (the live API sends them; issue #25).
                        extra = {k: v for k, v in (result.model_extra or {}).items() if k not in endpoint.reported_fields}
                        values.append(extra or None)
                    else:
                        values.append(_value(result, column.path))
                out.append((bucket.start_time, bucket.end_time, *values))
    return sorted(out, key=repr)


def hook_rows(endpoint: Endpoint, rows: list[dict]) -> list[tuple]:
    out = []
    for row in rows:
        values = []
        for column in endpoint.columns:
            value = row[column.name]
            if column.role == "extra":
                value = json.loads(value) if value is not None else None
            elif isinstance(value, Decimal):
                value = float(value)  # the SDK's type for amounts and quantities (named exception)
            values.append(value)
        out.append((row["start_time"], row["end_time"], *values))
    return sorted(out, key=repr)


def _filter_value(fake_api, endpoint: Endpoint, name: str, width: str) -> Any:
    """A value of the filter that occurs in the data (so the narrowed answer is not empty)."""
    f = endpoint.filter(name)
    if f.kind == "bool":
        return True
    if f.enum:
        return [f.enum[0]]
    start, end = windows(fake_api)[width]
    rows = [r for r in _ours(fake_api, endpoint.key, start, end, width, [f.dimension], {}) if r[f.dimension] is not None]
    return [min(r[f.dimension] for r in rows)] if rows else ["none-such"]


def _ours(fake_api, key: str, start: int, end: int, width: str, group_by: list[str], filters: dict) -> list[dict]:
    hook = OpenAIUsageHook("openai_usage_default")
    try:
        return list(hook.iter_rows(key, start, end, bucket_width=width, group_by=group_by or None, **filters))
    finally:
        hook.close()


def cases(endpoint: Endpoint) -> list[tuple[str, list[str], dict, int | None]]:
    """(width, group_by, filters, limit): every width, each grouping alone, all together, each filter."""
    out: list[tuple[str, list[str], dict, int | None]] = [(w, [], {}, None) for w in endpoint.bucket_widths]
    out += [("1d", [g], {}, None) for g in endpoint.group_by]
    out.append(("1d", list(endpoint.group_by), {}, 3))  # every grouping at once, three buckets a page
    out += [("1d", [endpoint.filter(name).dimension], {name: None}, None) for name in endpoint.filter_names]
    if "1h" in endpoint.bucket_widths:
        out.append(("1h", list(endpoint.group_by[:2]), {}, 5))
    return out


def _check(fake_api, sdk: OpenAI, endpoint: Endpoint, width: str, group_by: list[str], filters: dict, limit: int | None) -> int:
    start, end = windows(fake_api)[width]
    filters = {name: (_filter_value(fake_api, endpoint, name, width) if value is None else value) for name, value in filters.items()}
    query: dict[str, Any] = {"start_time": start, "end_time": end, "bucket_width": width, **filters}
    if group_by:
        query["group_by"] = group_by
    if limit:
        query["limit"] = limit
    pages = sdk_pages(sdk, endpoint.key, **query)
    ours = _ours(fake_api, endpoint.key, start, end, width, group_by, filters)
    assert sdk_rows(endpoint, pages) == hook_rows(endpoint, ours), (endpoint.key, width, group_by, filters, limit)
    return len(ours)


@pytest.mark.parametrize("key", list(ENDPOINTS))
def test_the_sdk_parses_every_answer_strictly_and_agrees_with_the_hook(fake_api, conn_id, sdk, key):
    endpoint = ENDPOINTS[key]
    past_the_floors(fake_api, endpoint)
    seen = 0
    for width, group_by, filters, limit in cases(endpoint):
        seen += _check(fake_api, sdk, endpoint, width, group_by, filters, limit)
    assert seen > 0, "the cases must compare real rows, not only empty answers"


@pytest.mark.parametrize("key", ["completions", "costs", "decisions"])
def test_pages_cut_smaller_than_limit_still_agree(fake_api, conn_id, sdk, key):
    fake_api.controls.page_size_cap = 2
    endpoint = ENDPOINTS[key]
    past_the_floors(fake_api, endpoint)
    assert _check(fake_api, sdk, endpoint, "1d", list(endpoint.group_by[:2]), {}, None) > 0


def test_unknown_fields_are_what_the_sdk_keeps_as_extras(fake_api, conn_id, sdk):
    """The SDK allows extra fields on its models; our `extra` column must hold exactly those."""
    fake_api.controls.unknown_result_fields = {"billing_region": "eu", "discount": {"rate": 0.5}}
    for key in ("completions", "costs", "decisions", "vector_stores"):
        assert _check(fake_api, sdk, ENDPOINTS[key], "1d", [], {}, None) > 0


def test_named_exception_costs_amounts_as_strings_are_not_floats_to_the_strict_sdk(fake_api, conn_id, sdk):
    """The live API has been seen sending amounts as 28-decimal strings; the SDK types them float."""
    fake_api.controls.amount_format = "string"
    query = {"start_time": NOW - 10 * DAY, "end_time": NOW, "group_by": ["line_item"]}
    with pytest.raises(ValidationError) as info:
        sdk_pages(sdk, "costs", **query)
    # The union of every result type is tried member by member; in the costs member only the amount fails.
    member = "DataResultOrganizationCostsResult"
    costs_errors = {err["loc"][err["loc"].index(member) + 1 :] for err in info.value.errors() if member in err["loc"]}
    assert costs_errors == {("amount", "value")}, "only amount.value disagrees"
    lax = sdk_pages(sdk, "costs", strict=False, **query)
    ours = _ours(fake_api, "costs", query["start_time"], query["end_time"], "1d", ["line_item"], {})
    assert ours and sdk_rows(ENDPOINTS["costs"], lax) == hook_rows(ENDPOINTS["costs"], ours)
