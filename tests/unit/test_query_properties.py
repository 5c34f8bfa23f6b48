"""Property-based: any invalid parameter combination is refused before a request, naming the parameter;
no valid combination is refused. Validity is judged by an oracle read from OpenAI's two descriptions
of the API — the public spec and the official SDK's types, whose union the registry promises to
accept — not from our registry, so the two are checked against each other."""

from __future__ import annotations

import pendulum
import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from conftest import DAY, NOW
from openai_sdk import describe, endpoint_methods

KEYS = ["completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions", "vector_stores",
        "code_interpreter_sessions", "file_search_calls", "web_search_calls", "costs", "decisions"]
ALL_DIMENSIONS = ["project_id", "user_id", "api_key_id", "model", "batch", "service_tier", "size", "source",
                  "vector_store_id", "context_level", "line_item", "api_source", "bogus"]
ALL_FILTERS = ["project_ids", "user_ids", "api_key_ids", "models", "batch", "sources", "sizes", "vector_store_ids",
               "context_levels", "line_items", "bogus_ids"]
VALUES = st.one_of(
    st.booleans(),
    st.lists(st.sampled_from(["proj_alpha", "image.edit", "256x256", "low", "high", "x", ""]), max_size=3),
    st.sampled_from(["proj_alpha", "true", 1]),
)


def allowed(spec: dict, key: str) -> tuple[set[str], set[str], dict[str, tuple[str, set[str] | None]]] | None:
    """(bucket widths, group_by values, filter → (kind, enum or None)) that spec or SDK list; None: no such endpoint."""
    path = "/organization/costs" if key == "costs" else f"/organization/usage/{key}"
    widths: set[str] = set()
    groups: set[str] = set()
    filters: dict[str, tuple[str, set[str] | None]] = {}
    found = False
    if path in spec["paths"]:
        found = True
        params = {p["name"]: p["schema"] for p in spec["paths"][path]["get"]["parameters"]}
        widths |= set(params["bucket_width"]["enum"])
        groups |= set(params["group_by"]["items"]["enum"])
        for name, schema in params.items():
            if name in ("start_time", "end_time", "bucket_width", "limit", "page", "group_by"):
                continue
            enum = schema.get("items", {}).get("enum")
            filters[name] = ("bool" if schema["type"] == "boolean" else "strings", set(enum) if enum else None)
    if key in endpoint_methods():
        found = True
        # The second argument only picks the SDK's result model (unused here) among the union's members.
        sdk = describe(key, ENDPOINTS[key].result_object if key in ENDPOINTS else "")
        widths |= set(sdk.bucket_widths)
        groups |= set(sdk.group_by)
        for name, f in sdk.filters.items():
            kind, enum = filters.get(name, (f.kind, set()))
            union = None if enum is None or f.enum is None else enum | set(f.enum)
            filters[name] = (kind, union)
    return (widths, groups, filters) if found else None


def oracle(spec: dict, key: str, width: str, group_by: list[str], filters: dict, start: int, end: int) -> set[str]:
    """Every parameter that neither the spec nor the SDK allows (empty when the request is valid)."""
    known = allowed(spec, key)
    if known is None:
        return {"endpoint"}
    widths, groups, allowed_filters = known
    bad = set()
    if width not in widths:
        bad.add("bucket_width")
    if any(g not in groups for g in group_by) or len(set(group_by)) != len(group_by):
        bad.add("group_by")
    for name, value in sorted(filters.items()):
        if name not in allowed_filters:
            bad.add(name)
            continue
        kind, enum = allowed_filters[name]
        if kind == "bool":
            if not isinstance(value, bool):
                bad.add(name)
            continue
        values = [value] if isinstance(value, str) else value
        if not isinstance(values, list) or not values or not all(isinstance(v, str) and v for v in values):
            bad.add(name)
            continue
        if enum and any(v not in enum for v in values):
            bad.add(name)
    if end <= start:
        bad.add("end_time")
    return bad


combos = st.fixed_dictionaries(
    {
        "key": st.sampled_from(KEYS + ["chat", "usage"]),
        "width": st.sampled_from(["1d", "1d", "1h", "1m", "5m"]),
        "group_by": st.lists(st.sampled_from(ALL_DIMENSIONS), max_size=3),
        "filters": st.dictionaries(st.sampled_from(ALL_FILTERS), VALUES, max_size=2),
        "days": st.sampled_from([1, 2, 0, -1]),
    }
)


def judge(fake_api, spec: dict, combo: dict) -> tuple[int, int, set[str]]:
    """The example's range and what the spec says is wrong with it; the request log starts empty."""
    fake_api.clear_requests()
    start, end = NOW - 2 * DAY, NOW - 2 * DAY + combo["days"] * DAY
    bad = oracle(spec, combo["key"], combo["width"], combo["group_by"], combo["filters"], start, end)
    event("valid" if not bad else "refused")
    return start, end, bad


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(combo=combos)
def test_hook_refuses_exactly_what_the_spec_refuses(fake_api, conn_id, spec, combo):
    start, end, bad = judge(fake_api, spec, combo)
    hook = OpenAIUsageHook(conn_id)
    call = lambda: list(hook.iter_buckets(combo["key"], start, end, bucket_width=combo["width"], group_by=combo["group_by"], **combo["filters"]))  # noqa: E731
    if not bad:
        buckets = call()
        assert buckets, "a valid request returns its buckets"
        assert all(r.status == 200 for r in fake_api.requests)
    else:
        with pytest.raises(OpenAIUsageValidationError) as info:
            call()
        assert any(name in str(info.value) for name in bad), (bad, str(info.value))
        assert fake_api.requests == []


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(combo=combos)
def test_operator_refuses_exactly_what_the_spec_refuses(fake_api, conn_id, spec, combo):
    start, end, bad = judge(fake_api, spec, combo)
    context = {"data_interval_start": pendulum.from_timestamp(start, tz="UTC"), "data_interval_end": pendulum.from_timestamp(end, tz="UTC")}

    def run():
        op = OpenAIUsageOperator(task_id="p", endpoint=combo["key"], bucket_width=combo["width"], group_by=combo["group_by"],
                                 filters=combo["filters"], max_xcom_rows=10**6)
        return op.execute(context)

    if not bad:
        assert isinstance(run(), list)
    else:
        with pytest.raises(OpenAIUsageValidationError) as info:
            run()
        named = {"end_time": "interval"}
        assert any(named.get(name, name) in str(info.value) for name in bad), (bad, str(info.value))
        assert fake_api.requests == []
