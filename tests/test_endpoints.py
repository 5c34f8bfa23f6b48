"""The registry against OpenAI's spec: every per-endpoint fact we hard-code is checked at the source."""

from __future__ import annotations

import pytest

from airflow_provider_openai_usage.endpoints import ENDPOINT_KEYS, ENDPOINTS, WIDTH_SECONDS, get_endpoint
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from conftest import result_schema_name

EXPECTED_KEYS = (
    "completions", "embeddings", "moderations", "images", "audio_speeches", "audio_transcriptions",
    "vector_stores", "code_interpreter_sessions", "file_search_calls", "web_search_calls", "costs",
)


def _params(spec: dict, path: str) -> dict[str, dict]:
    return {p["name"]: p for p in spec["paths"][path]["get"]["parameters"]}


def _enum(param: dict) -> list:
    schema = param["schema"]
    return schema.get("items", schema).get("enum")


def test_registry_has_exactly_the_eleven_endpoints_keyed_as_pinned():
    assert ENDPOINT_KEYS == EXPECTED_KEYS


@pytest.mark.parametrize("key", EXPECTED_KEYS)
def test_path_widths_group_by_and_filters_match_the_spec(spec: dict, key: str):
    endpoint = ENDPOINTS[key]
    params = _params(spec, endpoint.path)
    assert set(endpoint.bucket_widths) == set(_enum(params["bucket_width"]))
    assert list(endpoint.group_by) == _enum(params["group_by"])
    filter_params = set(params) - {"start_time", "end_time", "bucket_width", "limit", "page", "group_by"}
    assert set(endpoint.filter_names) == filter_params
    for f in endpoint.filters:
        assert f.enum == (tuple(_enum(params[f.name])) if _enum(params[f.name]) else None), f.name
        assert (f.kind == "bool") == (params[f.name]["schema"]["type"] == "boolean"), f.name
        assert f.dimension in endpoint.group_by, f.name
    for width, (default, maximum) in endpoint.limits.items():
        text = params["limit"].get("description", "")
        if key == "costs":
            assert (default, maximum) == (params["limit"]["schema"]["default"], 180) and "180" in text
        else:
            assert f"`bucket_width={width}`: default: {default}, max: {maximum}" in text


@pytest.mark.parametrize("key", EXPECTED_KEYS)
def test_columns_cover_every_field_of_the_result_schema(spec: dict, key: str):
    endpoint = ENDPOINTS[key]
    schema = spec["components"]["schemas"][result_schema_name(spec, endpoint.result_object)]
    fields = set(schema["properties"]) - {"object"}
    top_level_sources = {c.path[0] for c in endpoint.columns}
    assert top_level_sources == fields
    for column in endpoint.dimensions:
        assert column.name in endpoint.group_by
    for name in schema.get("required", []):
        if name != "object":
            assert name in {c.path[0] for c in endpoint.metrics}


def test_newer_endpoints_use_the_specs_result_object_names():
    assert ENDPOINTS["file_search_calls"].result_object == "organization.usage.file_searches.result"
    assert ENDPOINTS["web_search_calls"].result_object == "organization.usage.web_searches.result"


def test_costs_only_allow_daily_buckets_and_widths_are_utc_seconds():
    assert ENDPOINTS["costs"].bucket_widths == ("1d",)
    assert WIDTH_SECONDS == {"1m": 60, "1h": 3600, "1d": 86400}


def test_unknown_endpoint_error_lists_the_valid_keys():
    with pytest.raises(OpenAIUsageValidationError, match=r"endpoint='chat'.*completions, embeddings"):
        get_endpoint("chat")


def test_class_names_are_derived_from_the_key():
    assert ENDPOINTS["completions"].operator_class_name == "OpenAICompletionsUsageOperator"
    assert ENDPOINTS["web_search_calls"].operator_class_name == "OpenAIWebSearchCallsUsageOperator"
    assert ENDPOINTS["costs"].operator_class_name == "OpenAICostsOperator"
    assert ENDPOINTS["costs"].sensor_class_name == "OpenAICostsSensor"
