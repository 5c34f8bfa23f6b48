"""The registry against its two sources: OpenAI's public spec and the official SDK's types.

Precedence (endpoints.py): both count, the registry holds their union. So for every endpoint the
registry must equal spec ∪ SDK (group_by values, filters, result fields), and every difference
between the two sources, or between a source and the registry, is either that union or a named
exception below. The next drift in either source fails here instead of surprising a user.
"""

from __future__ import annotations

import openai_sdk
import pytest
from conftest import result_schema_name

from airflow_provider_openai_usage.endpoints import (
    API_SOURCES,
    ENDPOINT_KEYS,
    ENDPOINTS,
    EXTRA,
    WIDTH_SECONDS,
    get_endpoint,
)
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

EXPECTED_KEYS = (
    "completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions",
    "vector_stores", "code_interpreter_sessions", "file_search_calls", "web_search_calls", "costs", "decisions",
)

#: Endpoints the spec copy (openai-openapi f85dbe22) does not have yet; only the SDK describes them.
SDK_ONLY_ENDPOINTS = {"decisions"}
#: Deliberate disagreements with the SDK's result types: (endpoint, field) → why.
#: Result fields the live API sends that neither the spec nor the SDK knows (recorded answers, issue #25).
OBSERVED_FIELDS = {
    ("costs", "organization_id"): "every costs result (tests/data/recorded/costs_daily_org_id.json)",
    ("costs", "user_email"): "costs results grouped by user_id (issue #25 observation)",
}

SDK_TYPE_EXCEPTIONS = {
    ("costs", "amount.value"): "decimal(38,28), not float: money stays exact (the API sends 28-decimal strings too)",
    ("costs", "quantity"): "decimal(38,12), not float: fractional quantities stay exact",
}


def _params(spec: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}


def _enum(param: dict) -> list:
    schema = param["schema"]
    return schema.get("items", schema).get("enum")


def _spec_facts(spec: dict, key: str) -> dict:
    """group_by values, filters (name → (kind, enum)) and result fields the spec gives an endpoint."""
    endpoint = ENDPOINTS[key]
    if endpoint.path not in spec["paths"]:
        assert key in SDK_ONLY_ENDPOINTS, f"{key}: not in the spec and not a named SDK-only endpoint"
        return {"group_by": set(), "filters": {}, "fields": set()}
    assert key not in SDK_ONLY_ENDPOINTS, f"{key} is in the spec now: drop it from SDK_ONLY_ENDPOINTS"
    params = _params(spec, endpoint.path)
    filters = {
        name: ("bool" if p["schema"]["type"] == "boolean" else "strings", tuple(_enum(p)) if _enum(p) else None)
        for name, p in params.items()
        if name not in openai_sdk.NON_FILTERS
    }
    schema = spec["components"]["schemas"][result_schema_name(spec, endpoint.result_object)]
    fields: set[str] = set()
    for name, prop in schema["properties"].items():
        if name == "object":
            continue
        nested = prop.get("properties") or spec_ref_properties(spec, prop)
        fields |= {f"{name}.{sub}" for sub in nested} if nested else {name}
    return {"group_by": set(_enum(params["group_by"])), "filters": filters, "fields": fields, "params": params}


def spec_ref_properties(spec: dict, prop: dict) -> dict:
    ref = prop.get("$ref") or next((p.get("$ref") for p in prop.get("allOf", []) + prop.get("anyOf", []) if "$ref" in p), None)
    if not ref:
        return {}
    return spec["components"]["schemas"][ref.rsplit("/", 1)[-1]].get("properties", {})


def _registry_fields(key: str) -> dict[str, str]:
    """Dotted result path → column type, for every column read from a result."""
    endpoint = ENDPOINTS[key]
    return {".".join(c.path): c.type for c in endpoint.dimensions + endpoint.values}


def test_registry_has_exactly_the_twelve_endpoints_keyed_as_pinned():
    assert ENDPOINT_KEYS == EXPECTED_KEYS


def test_the_sdk_calls_exactly_the_registry_endpoints():
    assert openai_sdk.endpoint_methods() == set(ENDPOINT_KEYS)


@pytest.mark.parametrize("key", EXPECTED_KEYS)
def test_group_by_and_filters_are_the_union_of_spec_and_sdk(spec: dict, key: str):
    endpoint = ENDPOINTS[key]
    sdk = openai_sdk.describe(key, endpoint.result_object)
    facts = _spec_facts(spec, key)
    assert set(endpoint.group_by) == facts["group_by"] | set(sdk.group_by)
    assert len(set(endpoint.group_by)) == len(endpoint.group_by)
    sdk_filters = {f.name: (f.kind, f.enum) for f in sdk.filters.values()}
    assert set(endpoint.filter_names) == set(facts["filters"]) | set(sdk_filters)
    for f in endpoint.filters:
        for source in (facts["filters"], sdk_filters):
            if f.name in source:
                assert (f.kind, f.enum) == source[f.name], f.name
        assert f.dimension in endpoint.group_by, f.name


@pytest.mark.parametrize("key", EXPECTED_KEYS)
def test_result_fields_are_the_union_of_spec_and_sdk_with_named_type_exceptions(spec: dict, key: str):
    endpoint = ENDPOINTS[key]
    sdk = openai_sdk.describe(key, endpoint.result_object)
    registry = _registry_fields(key)
    observed = {path for k, path in OBSERVED_FIELDS if k == key}
    assert set(registry) == _spec_facts(spec, key)["fields"] | set(sdk.fields) | observed
    assert set(endpoint.reported_fields) == observed
    for path, (sdk_type, sdk_enum) in sdk.fields.items():
        if (key, path) in SDK_TYPE_EXCEPTIONS:
            assert (sdk_type, registry[path]) == ("float", "decimal"), SDK_TYPE_EXCEPTIONS[key, path]
            continue
        assert registry[path] == sdk_type, path
        column = next(c for c in endpoint.columns if ".".join(c.path) == path)
        assert column.enum == sdk_enum, path
    for column in endpoint.dimensions:
        assert (column.name in endpoint.group_by) != (column.name in endpoint.reported_fields), column.name
    assert EXTRA.name not in registry and endpoint.columns[-1] is EXTRA


@pytest.mark.parametrize("key", EXPECTED_KEYS)
def test_path_widths_and_result_object_match_the_sdk(key: str):
    endpoint = ENDPOINTS[key]
    sdk = openai_sdk.describe(key, endpoint.result_object)
    assert (sdk.path, set(sdk.bucket_widths)) == (endpoint.path, set(endpoint.bucket_widths))
    assert endpoint.result_object in sdk.result_objects


@pytest.mark.parametrize("key", [k for k in EXPECTED_KEYS if k not in SDK_ONLY_ENDPOINTS])
def test_widths_and_limits_match_the_spec(spec: dict, key: str):
    endpoint = ENDPOINTS[key]
    params = _params(spec, endpoint.path)
    assert set(endpoint.bucket_widths) == set(_enum(params["bucket_width"]))
    for width, (default, maximum) in endpoint.limits.items():
        text = params["limit"].get("description", "")
        if key == "costs":
            assert (default, maximum) == (params["limit"]["schema"]["default"], 180) and "180" in text
        else:
            assert f"`bucket_width={width}`: default: {default}, max: {maximum}" in text


def test_required_spec_fields_are_value_columns(spec: dict):
    for key in EXPECTED_KEYS:
        if key in SDK_ONLY_ENDPOINTS:
            continue
        endpoint = ENDPOINTS[key]
        schema = spec["components"]["schemas"][result_schema_name(spec, endpoint.result_object)]
        for name in schema.get("required", []):
            if name != "object":
                assert name in {c.path[0] for c in endpoint.values}, (key, name)


def test_sdk_only_facts_of_the_issue_are_in_the_registry():
    """The table of issue #14, spelled out: what only the SDK knew when it was filed."""
    completions, web, costs, decisions = (ENDPOINTS[k] for k in ("completions", "web_search_calls", "costs", "decisions"))
    assert "api_source" in completions.group_by and "api_source" in web.group_by
    assert {"input_cache_write_12h_tokens", "input_cache_write_30m_tokens"} <= {c.name for c in completions.metric_columns}
    assert {"user_id", "api_source"} <= set(costs.group_by) and "line_items" in costs.filter_names
    assert {"user_id", "api_source"} <= {c.name for c in costs.dimensions}
    assert decisions.path == "/organization/usage/decisions"
    assert decisions.result_object == "organization.usage.decisions.result"
    assert decisions.column("api_source").enum == API_SOURCES


def test_value_columns_split_into_metrics_and_units():
    costs = ENDPOINTS["costs"]
    assert [c.name for c in costs.metric_columns] == ["amount_value", "quantity"]
    assert [c.name for c in costs.unit_columns] == ["amount_currency", "quantity_unit"]
    assert costs.reported_by == "amount_value" and costs.column("amount_value").role == "metric"
    for endpoint in ENDPOINTS.values():
        assert set(endpoint.values) == set(endpoint.metric_columns) | set(endpoint.unit_columns)
        assert all(c.type in ("int64", "decimal") for c in endpoint.metric_columns)
        assert endpoint.reported_by is None or endpoint.reported_by in {c.name for c in endpoint.metric_columns}
        assert [c.name for c in endpoint.columns].count("extra") == 1


def test_newer_endpoints_use_the_specs_result_object_names():
    assert ENDPOINTS["file_search_calls"].result_object == "organization.usage.file_searches.result"
    assert ENDPOINTS["web_search_calls"].result_object == "organization.usage.web_searches.result"


def test_costs_only_allow_daily_buckets_and_widths_are_utc_seconds():
    assert ENDPOINTS["costs"].bucket_widths == ("1d",)
    assert WIDTH_SECONDS == {"1m": 60, "1h": 3600, "1d": 86400}


def test_unknown_endpoint_error_lists_the_valid_keys():
    with pytest.raises(OpenAIUsageValidationError, match=r"endpoint='chat'.*completions, embeddings"):
        get_endpoint("chat")


def test_one_thin_operator_and_sensor_class_per_registry_entry():
    """The classes are the only place their names live; docs derive the table from them."""
    import airflow_provider_openai_usage.operators.usage as operators
    import airflow_provider_openai_usage.sensors.usage as sensors

    for module, base in ((operators, operators.OpenAIUsageOperator), (sensors, sensors.OpenAIUsageSensor)):
        classes = [c for c in vars(module).values() if isinstance(c, type) and issubclass(c, base) and c is not base]
        assert sorted(c.endpoint_key for c in classes) == sorted(ENDPOINT_KEYS), module.__name__
        for cls in classes:
            endpoint = ENDPOINTS[cls.endpoint_key]
            assert cls.__doc__ and endpoint.path in cls.__doc__
            assert {k for k in vars(cls) if not k.startswith("_")} == {"endpoint_key"}, "no copied bodies"
            suffix = "Operator" if base is operators.OpenAIUsageOperator else "Sensor"
            assert cls.__name__.startswith("OpenAI") and cls.__name__.endswith(suffix)
    assert operators.OpenAIDecisionsUsageOperator.endpoint_key == "decisions"
    assert sensors.OpenAIDecisionsUsageSensor.endpoint_key == "decisions"


def test_finops_group_by_is_every_finops_dimension_an_endpoint_allows_but_costs_by_user():
    from airflow_provider_openai_usage.endpoints import FINOPS_DIMENSIONS, finops_group_by

    assert finops_group_by("costs") == ["project_id", "api_key_id", "line_item"]
    assert finops_group_by("completions") == ["project_id", "user_id", "api_key_id", "model"]
    for key, endpoint in ENDPOINTS.items():
        chosen = finops_group_by(key)
        assert set(chosen) <= set(endpoint.group_by) & set(FINOPS_DIMENSIONS), key
    with pytest.raises(OpenAIUsageValidationError, match="endpoint='chat' is not an OpenAI usage endpoint"):
        finops_group_by("chat")
