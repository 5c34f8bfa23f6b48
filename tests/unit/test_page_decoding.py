"""page_decoding.py: typed decoding gives exactly what the dict path gives, and steps aside for anything else."""

from __future__ import annotations

import json

import pytest
import requests
from conftest import DAY, NOW, SENTINEL_KEY
from hypothesis import given, settings
from hypothesis import strategies as st

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError
from airflow_provider_openai_usage.hooks.usage import decode_json, decode_page
from airflow_provider_openai_usage.page_decoding import decode_typed_page, is_typed
from airflow_provider_openai_usage.query import UsageQuery
from airflow_provider_openai_usage.rows import bucket_columns

COMPLETIONS = ENDPOINTS["completions"]
FLAT = sorted(key for key, e in ENDPOINTS.items() if all(len(c.path) == 1 for c in e.columns))


def page_body(fake_api, endpoint: str, group_by: list[str] | None = None) -> bytes:
    params: dict = {"start_time": NOW - 3 * DAY, "end_time": NOW, "bucket_width": "1h", "limit": 72}
    if group_by:
        params["group_by"] = group_by
    if "1h" not in ENDPOINTS[endpoint].bucket_widths:
        params.update(bucket_width="1d", limit=3)
    r = requests.get(
        f"{fake_api.base_url}{ENDPOINTS[endpoint].path}", params=params, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, timeout=30
    )
    r.raise_for_status()
    return r.content


def columns_of(endpoint, page) -> list[tuple[int, dict]]:
    return [bucket_columns(endpoint, bucket) for bucket in page["data"]]


@pytest.mark.parametrize("key", FLAT)
def test_every_flat_endpoint_decodes_typed_to_the_same_columns_as_dicts(fake_api, key):
    endpoint = ENDPOINTS[key]
    body = page_body(fake_api, key, [d.name for d in endpoint.dimensions])
    typed = decode_typed_page(endpoint, body)
    assert typed is not None, "the fake API's pages are the common shape: the typed path must take them"
    assert any(is_typed(endpoint, b["results"]) for b in typed["data"]), "some bucket must hold results"
    plain = decode_json(body)
    assert columns_of(endpoint, typed) == columns_of(endpoint, plain)
    assert [typed.get(k) for k in ("object", "has_more", "next_page")] == [plain.get(k) for k in ("object", "has_more", "next_page")]


def test_costs_nest_their_amount_so_they_take_the_dict_path(fake_api):
    assert decode_typed_page(ENDPOINTS["costs"], page_body(fake_api, "costs")) is None


def result(**fields) -> dict:
    return {"object": COMPLETIONS.result_object, "input_tokens": 1, "output_tokens": 2, "num_model_requests": 1, **fields}


def body_of(*results: dict, **page) -> bytes:
    bucket = {"object": "bucket", "start_time": NOW - DAY, "end_time": NOW, "results": list(results)}
    return json.dumps({"object": "page", "data": [bucket], "has_more": False, "next_page": None, **page}).encode()


@pytest.mark.parametrize(
    "odd",
    [
        result(brand_new_field=5),  # a field this release does not type: must be kept (extra), not dropped
        result(object="organization.usage.embeddings.result"),  # another endpoint's answer
        result(object="orgainzation.usage.completions.result"),  # the spec's historical typo
        result(input_tokens=1.5),  # a number that is not an int
        result(input_tokens="12"),  # a string where an int belongs
        result(model=7),  # an int where a string belongs
    ],
)
def test_anything_but_the_common_shape_steps_aside_to_the_dict_path(odd):
    assert decode_typed_page(COMPLETIONS, body_of(odd)) is None


def test_an_unknown_field_is_kept_in_extra_through_the_hooks_decoding():
    query = UsageQuery.build("completions", NOW - DAY, NOW)
    page = decode_page(query, body_of(result(brand_new_field=5)))
    _, columns = bucket_columns(COMPLETIONS, page["data"][0])
    assert columns["extra"] == ['{"brand_new_field":5}']


def test_a_page_level_field_or_legacy_bucket_key_steps_aside():
    assert decode_typed_page(COMPLETIONS, body_of(result(), cursor_hint="x")) is None
    legacy = json.dumps({"data": [{"start_time": NOW - DAY, "end_time": NOW, "result": [result()]}], "has_more": False}).encode()
    assert decode_typed_page(COMPLETIONS, legacy) is None
    assert decode_typed_page(COMPLETIONS, b"not json") is None


def test_bad_times_and_has_more_keep_the_hooks_own_errors():
    query = UsageQuery.build("completions", NOW - DAY, NOW)
    bad_times = json.dumps({"data": [{"start_time": "yesterday", "end_time": NOW, "results": []}], "has_more": False}).encode()
    assert decode_typed_page(COMPLETIONS, bad_times) is not None  # times stay untyped on purpose
    with pytest.raises(OpenAIUsageResponseError, match="bad times"):
        decode_page(query, bad_times)


def test_an_int_beyond_int64_is_refused_on_the_typed_path_too():
    page = decode_typed_page(COMPLETIONS, body_of(result(input_tokens=2**63)))
    assert page is not None and is_typed(COMPLETIONS, page["data"][0]["results"])
    with pytest.raises(OpenAIUsageResponseError, match=r"input_tokens=9223372036854775808 does not fit a 64-bit integer"):
        bucket_columns(COMPLETIONS, page["data"][0])


@settings(max_examples=60, deadline=None)
@given(
    st.lists(
        st.fixed_dictionaries(
            {},
            optional={
                "input_tokens": st.one_of(st.none(), st.integers(-(2**70), 2**70), st.floats(allow_nan=False), st.text(max_size=3)),
                "model": st.one_of(st.none(), st.text(max_size=5), st.integers(0, 3)),
                "batch": st.one_of(st.none(), st.booleans(), st.integers(0, 1)),
                "num_model_requests": st.one_of(st.none(), st.integers(0, 2**40)),
                "surprise": st.integers(0, 3),
            },
        ),
        max_size=4,
    )
)
def test_typed_and_dict_paths_accept_and_refuse_the_same_results_with_the_same_values(results):
    """Whatever a result holds: where the typed path takes a page, its columns equal the dict path's."""
    body = body_of(*[{"object": COMPLETIONS.result_object, **r} for r in results])
    typed = decode_typed_page(COMPLETIONS, body)
    if typed is None:
        return  # the dict path decides alone, as before this module existed
    plain = decode_json(body)

    def outcome(page):
        try:
            return bucket_columns(COMPLETIONS, page["data"][0])
        except OpenAIUsageResponseError as exc:
            return type(exc)

    assert outcome(typed) == outcome(plain)
