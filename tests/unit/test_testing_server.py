"""The fake API behaves like OpenAI's: spec-valid answers, paging, encodings, errors, faults."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from decimal import Decimal
from itertools import combinations

import pytest
import requests
from conftest import DAY, NOW, SENTINEL_KEY, result_schema_name

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.rows import bucket_rows
from airflow_provider_openai_usage.testing import DEFAULT_KEY, FakeOpenAIUsageAPI, FakeOrganization, fake_organizations, status
from airflow_provider_openai_usage.testing.data import day_events
from airflow_provider_openai_usage.testing.faults import Fault

START = NOW - 10 * DAY
#: The public spec copy predates these; tests/integration/test_openai_sdk.py validates them with the SDK's types.
SPEC_KEYS = [key for key in ENDPOINTS if key != "decisions"]


def get(api: FakeOpenAIUsageAPI, key: str, params, token: str | None = SENTINEL_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(api.base_url + ENDPOINTS[key].path, params=params, headers=headers, timeout=10)


def body(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return json.loads(response.content, parse_float=Decimal)


def all_buckets(api: FakeOpenAIUsageAPI, key: str, params: list, token: str = SENTINEL_KEY) -> list[dict]:
    buckets, page = [], None
    while True:
        data = body(get(api, key, params + ([("page", page)] if page else []), token))
        buckets += data["data"]
        if not data["has_more"]:
            return buckets
        page = data["next_page"]


def totals(endpoint_key: str, buckets: list[dict]) -> dict[str, Decimal]:
    out: dict[str, Decimal] = {}
    for bucket in buckets:
        for row in bucket_rows(ENDPOINTS[endpoint_key], bucket):
            for column in ENDPOINTS[endpoint_key].metric_columns:
                if column.name == "quantity":
                    continue  # only defined per line item
                out[column.name] = out.get(column.name, 0) + (row[column.name] or 0)
    return out


def past_the_floors(api: FakeOpenAIUsageAPI, key: str) -> int:
    """The fake's "now", moved past the endpoint's grouping floors (costs by api_key_id: 2025-12-01) so
    a range of the last weeks may use every grouping; returns it."""
    floors = ENDPOINTS[key].group_by_floors.values()
    if floors:
        api.controls.now = max(floors) + 40 * DAY
    return api.controls.now or NOW


@pytest.mark.parametrize("key", SPEC_KEYS)
def test_every_answer_of_every_endpoint_is_valid_against_the_official_spec(fake_api, spec_validator, key):
    endpoint = ENDPOINTS[key]
    groupings = [[]] + [[g] for g in endpoint.group_by] + [list(endpoint.group_by)]
    now = past_the_floors(fake_api, key)
    for width in endpoint.bucket_widths:
        start = now - (3 * DAY if width == "1d" else 7200 if width == "1h" else 600)
        for group_by in groupings:
            data = body(get(fake_api, key, [("start_time", start), ("bucket_width", width)] + [("group_by[]", g) for g in group_by]))
            spec_validator(data, "UsageResponse")
            assert data["data"], (key, width)
            for bucket in data["data"]:
                for result in bucket["results"]:
                    assert result["object"] == endpoint.result_object


@pytest.mark.parametrize("key", SPEC_KEYS)
def test_spec_examples_parse_as_the_registry_expects(spec, spec_examples, key):
    endpoint = ENDPOINTS[key]
    page = spec_examples["endpoint_examples"][endpoint.path]["response"]
    rows = [row for bucket in page["data"] for row in bucket_rows(endpoint, bucket)]
    assert rows and all(tuple(row) == endpoint.column_names for row in rows)
    example = spec_examples["object_examples"][result_schema_name(spec, endpoint.result_object)]
    (row,) = bucket_rows(endpoint, {"start_time": 0, "end_time": 1, "results": [example]})
    for column in endpoint.columns:
        node = example
        for part in column.path:
            node = node.get(part) if isinstance(node, dict) else None
        expected = Decimal(str(node)) if isinstance(node, float) else node
        assert row[column.name] == expected, column.name


def test_array_parameters_are_accepted_in_all_three_encodings(fake_api):
    base = [("start_time", START), ("end_time", NOW)]
    repeat = body(get(fake_api, "completions", base + [("group_by", "project_id"), ("group_by", "model"), ("models", "o3-2025-04-16"), ("models", "gpt-4o-2024-08-06")]))
    brackets = body(get(fake_api, "completions", base + [("group_by[]", "project_id"), ("group_by[]", "model"), ("models[]", "o3-2025-04-16"), ("models[]", "gpt-4o-2024-08-06")]))
    comma = body(get(fake_api, "completions", base + [("group_by", "project_id,model"), ("models", "o3-2025-04-16,gpt-4o-2024-08-06")]))
    assert repeat["data"] == brackets["data"] == comma["data"]
    models = {r["model"] for b in repeat["data"] for r in b["results"]}
    assert models and models <= {"o3-2025-04-16", "gpt-4o-2024-08-06"}


@pytest.mark.parametrize("key", list(ENDPOINTS))
def test_any_grouping_sums_to_the_ungrouped_totals(fake_api, key):
    endpoint = ENDPOINTS[key]
    now = past_the_floors(fake_api, key)
    base = [("start_time", now - 10 * DAY), ("end_time", now)]
    expected = totals(key, all_buckets(fake_api, key, base))
    assert any(expected.values())
    for n in (1, 2):
        for group in combinations(endpoint.group_by, n):
            grouped = totals(key, all_buckets(fake_api, key, base + [("group_by[]", g) for g in group]))
            assert grouped == expected, group


def test_hourly_and_minute_buckets_sum_to_the_daily_bucket(fake_api):
    day = NOW - 2 * DAY
    daily = totals("embeddings", all_buckets(fake_api, "embeddings", [("start_time", day), ("end_time", day + DAY)]))
    hourly = totals("embeddings", all_buckets(fake_api, "embeddings", [("start_time", day), ("end_time", day + DAY), ("bucket_width", "1h"), ("limit", 168)]))
    minutes = totals("embeddings", all_buckets(fake_api, "embeddings", [("start_time", day), ("end_time", day + DAY), ("bucket_width", "1m"), ("limit", 1440)]))
    assert daily == hourly == minutes and daily["input_tokens"] > 0


def test_filters_narrow_to_the_requested_values(fake_api):
    base = [("start_time", START), ("end_time", NOW), ("group_by[]", "project_id"), ("group_by[]", "batch")]
    rows = [r for b in all_buckets(fake_api, "completions", base + [("project_ids[]", "proj_beta"), ("batch", "true")]) for r in b["results"]]
    assert rows and {(r["project_id"], r["batch"]) for r in rows} == {("proj_beta", True)}
    images = [r for b in all_buckets(fake_api, "images", [("start_time", START), ("end_time", NOW), ("group_by[]", "size"), ("sizes[]", "256x256")]) for r in b["results"]]
    assert images and {r["size"] for r in images} == {"256x256"}


def test_sdk_only_groupings_and_filters_are_served(fake_api):
    """What only the SDK knows (issue #14): api_source groupings, costs by user and line item, decisions."""
    base = [("start_time", START), ("end_time", NOW)]
    for key in ("completions", "web_search_calls", "costs", "decisions"):
        results = [r for b in all_buckets(fake_api, key, base + [("group_by[]", "api_source")]) for r in b["results"]]
        assert {r["api_source"] for r in results} == {"agents_api", "unlabeled"}, key
    ungrouped = [r for b in all_buckets(fake_api, "completions", base) for r in b["results"]]
    assert ungrouped and {r["api_source"] for r in ungrouped} == {None}
    users = [r for b in all_buckets(fake_api, "costs", base + [("group_by[]", "user_id")]) for r in b["results"]]
    assert users and {r["user_id"] for r in users} <= {"user-ada", "user-grace", "user-alan", "user-linus"}
    by_item = [r for b in all_buckets(fake_api, "costs", base + [("group_by[]", "line_item")]) for r in b["results"]]
    item = min(r["line_item"] for r in by_item)
    assert len({r["line_item"] for r in by_item}) > 1
    narrowed = [r for b in all_buckets(fake_api, "costs", base + [("group_by[]", "line_item"), ("line_items[]", item)]) for r in b["results"]]
    assert narrowed and {r["line_item"] for r in narrowed} == {item}
    decisions = [r for b in all_buckets(fake_api, "decisions", base + [("group_by[]", "model")]) for r in b["results"]]
    assert decisions and {r["object"] for r in decisions} == {"organization.usage.decisions.result"}
    assert all(r["input_cache_write_tokens"] == r["input_cache_write_12h_tokens"] + r["input_cache_write_30m_tokens"] for r in decisions)


def test_unknown_result_fields_control_adds_fields_to_every_result(fake_api):
    fake_api.controls.unknown_result_fields = {"future_dimension": "x", "nested": {"b": 1, "a": Decimal("0.125")}}
    for key in ("costs", "vector_stores"):
        results = [r for b in all_buckets(fake_api, key, [("start_time", START), ("end_time", NOW)]) for r in b["results"]]
        assert results and all(r["future_dimension"] == "x" and r["nested"] == {"b": 1, "a": Decimal("0.125")} for r in results)
    fake_api.reset()
    assert fake_api.controls.unknown_result_fields == {}
    results = [r for b in all_buckets(fake_api, "costs", [("start_time", START), ("end_time", NOW)]) for r in b["results"]]
    assert results and not any("future_dimension" in r for r in results)


def test_partial_edge_buckets_and_empty_buckets(fake_api):
    start, end = START + 5 * 3600, NOW - 3 * 3600
    buckets = all_buckets(fake_api, "moderations", [("start_time", start), ("end_time", end)])
    assert buckets[0]["start_time"] == start and buckets[0]["end_time"] == START + DAY
    assert buckets[-1]["end_time"] == end and buckets[-1]["start_time"] == NOW - DAY
    assert all(a["end_time"] == b["start_time"] for a, b in zip(buckets, buckets[1:]))
    many = all_buckets(fake_api, "moderations", [("start_time", NOW - 60 * DAY), ("end_time", NOW)])
    assert any(b["results"] == [] for b in many), "roughly one day in ten has no usage"


def test_end_time_defaults_to_now_and_future_buckets_are_not_reported(fake_api):
    data = body(get(fake_api, "embeddings", [("start_time", NOW - 2 * DAY + 3600), ("limit", 31)]))
    assert data["data"][-1]["end_time"] == NOW
    fake_api.controls.available_until = NOW - DAY
    data = body(get(fake_api, "embeddings", [("start_time", NOW - 3 * DAY), ("end_time", NOW)]))
    assert [b["start_time"] for b in data["data"]] == [NOW - 3 * DAY, NOW - 2 * DAY]


def test_limit_counts_buckets_and_pages_follow_next_page(fake_api):
    params = [("start_time", NOW - 20 * DAY), ("end_time", NOW), ("limit", 7)]
    first = body(get(fake_api, "vector_stores", params))
    assert len(first["data"]) == 7 and first["has_more"] and first["next_page"]
    default = body(get(fake_api, "vector_stores", params[:2]))
    assert len(default["data"]) == 7, "the default limit for 1d is 7"
    assert len(all_buckets(fake_api, "vector_stores", params)) == 20
    fake_api.controls.page_size_cap = 3
    assert len(body(get(fake_api, "vector_stores", params))["data"]) == 3


def test_a_cursor_only_continues_its_own_query(fake_api):
    params = [("start_time", NOW - 20 * DAY), ("end_time", NOW), ("limit", 7)]
    cursor = body(get(fake_api, "vector_stores", params))["next_page"]
    other = get(fake_api, "vector_stores", [("start_time", NOW - 19 * DAY), ("end_time", NOW), ("limit", 7), ("page", cursor)])
    assert other.status_code == 400 and other.json()["error"]["param"] == "page"
    assert get(fake_api, "vector_stores", params + [("page", "garbage")]).status_code == 400


@pytest.mark.parametrize(
    ("key", "params", "param"),
    [
        ("costs", [("bucket_width", "1h")], "bucket_width"),
        ("completions", [("limit", 32)], "limit"),
        ("completions", [("bucket_width", "1h"), ("limit", 169)], "limit"),
        ("costs", [("limit", 181)], "limit"),
        ("embeddings", [("group_by[]", "batch")], "group_by"),
        ("embeddings", [("sizes[]", "256x256")], "sizes[]"),
        ("images", [("sources[]", "image.upscale")], "sources"),
        ("completions", [("batch", "yes")], "batch"),
        ("completions", [("end_time", NOW - 20 * DAY)], "end_time"),
    ],
)
def test_bad_parameters_get_400_with_openais_error_body(fake_api, spec_validator, key, params, param):
    response = get(fake_api, key, [("start_time", NOW - 10 * DAY)] + params)
    assert response.status_code == 400
    spec_validator(response.json(), "ErrorResponse")
    assert response.json()["error"]["param"] == param


def test_missing_start_time_is_refused(fake_api):
    response = get(fake_api, "costs", [("end_time", NOW)])
    assert response.status_code == 400 and response.json()["error"]["param"] == "start_time"


def test_costs_limit_allows_180_days(fake_api):
    data = body(get(fake_api, "costs", [("start_time", NOW - 200 * DAY), ("end_time", NOW), ("limit", 180)]))
    assert len(data["data"]) == 180 and data["has_more"]


def test_wrong_missing_or_project_keys_get_401(fake_api, spec_validator):
    for token, fragment in [(None, "didn't provide an API key"), ("sk-admin-wrong", "Incorrect API key"), ("sk-proj-fake-project-key", "Missing scopes: api.usage.read")]:
        response = get(fake_api, "costs", [("start_time", START)], token=token)
        assert response.status_code == 401
        spec_validator(response.json(), "ErrorResponse")
        assert fragment in response.json()["error"]["message"]
        assert SENTINEL_KEY not in response.text


def test_completions_token_identities_hold(fake_api):
    for bucket in all_buckets(fake_api, "completions", [("start_time", START), ("end_time", NOW), ("group_by[]", "model")]):
        for r in bucket["results"]:
            assert r["input_tokens"] == r["input_cached_tokens"] + r["input_cache_write_tokens"] + r["input_uncached_tokens"]
            assert r["input_uncached_tokens"] == r["input_text_tokens"] + r["input_audio_tokens"] + r["input_image_tokens"]
            assert r["input_cached_tokens"] == r["input_cached_text_tokens"] + r["input_cached_audio_tokens"] + r["input_cached_image_tokens"]
            assert r["output_tokens"] == r["output_text_tokens"] + r["output_audio_tokens"] + r["output_image_tokens"]


def test_costs_amounts_can_be_sent_as_strings_with_28_decimals(fake_api):
    numbers = all_buckets(fake_api, "costs", [("start_time", START), ("end_time", NOW)])
    fake_api.controls.amount_format = "string"
    strings = all_buckets(fake_api, "costs", [("start_time", START), ("end_time", NOW)])
    raw = [r["amount"]["value"] for b in strings for r in b["results"]]
    assert raw and all(isinstance(v, str) and len(v.split(".")[1]) == 28 for v in raw)
    assert totals("costs", numbers) == totals("costs", strings)
    assert all(isinstance(r["amount"]["value"], Decimal) for b in numbers for r in b["results"])


def test_quantity_is_only_sent_per_line_item(fake_api):
    plain = [r for b in all_buckets(fake_api, "costs", [("start_time", START), ("end_time", NOW)]) for r in b["results"]]
    by_item = [r for b in all_buckets(fake_api, "costs", [("start_time", START), ("end_time", NOW), ("group_by[]", "line_item")]) for r in b["results"]]
    assert plain and all(r["quantity"] is None and r["quantity_unit"] is None for r in plain)
    assert by_item and all(r["quantity"] is not None and r["quantity_unit"] for r in by_item)


def test_same_seed_same_data_other_seed_other_data():
    with FakeOpenAIUsageAPI(key="k", seed=1, now=NOW) as a, FakeOpenAIUsageAPI(key="k", seed=1, now=NOW) as b, FakeOpenAIUsageAPI(key="k", seed=2, now=NOW) as c:
        params = [("start_time", START), ("end_time", NOW)]
        assert get(a, "costs", params, "k").content == get(b, "costs", params, "k").content
        assert get(a, "costs", params, "k").content != get(c, "costs", params, "k").content


def test_revising_a_day_changes_only_that_day(fake_api):
    params = [("start_time", NOW - 3 * DAY), ("end_time", NOW)]
    before = body(get(fake_api, "embeddings", params))["data"]
    fake_api.controls.revisions[NOW - 2 * DAY] = 1
    after = body(get(fake_api, "embeddings", params))["data"]
    assert before[0] == after[0] and before[2] == after[2] and before[1] != after[1]


def test_faults_429_with_retry_after_5xx_and_the_request_log(fake_api):
    fake_api.schedule_faults(status(429, retry_after=3), status(503), Fault("garbage"))
    params = [("start_time", START)]
    first = get(fake_api, "costs", params)
    assert first.status_code == 429 and first.headers["Retry-After"] == "3"
    assert get(fake_api, "costs", params).status_code == 503
    garbage = get(fake_api, "costs", params)
    assert garbage.status_code == 200
    with pytest.raises(ValueError):
        garbage.json()
    assert get(fake_api, "costs", params).status_code == 200
    log = fake_api.requests
    assert [r.status for r in log] == [429, 503, 200, 200]
    assert [r.fault for r in log] == ["429 retry-after=3", "503", "garbage", None]
    assert log[0].params()["start_time"] == [str(START)]


def test_dropped_and_truncated_answers_fail_on_the_client(fake_api):
    fake_api.schedule_faults(Fault("drop"), Fault("truncate"))
    with pytest.raises(requests.ConnectionError):
        get(fake_api, "costs", [("start_time", START)])
    with pytest.raises((requests.exceptions.ChunkedEncodingError, requests.ConnectionError)):
        get(fake_api, "costs", [("start_time", START)]).content  # noqa: B018
    assert get(fake_api, "costs", [("start_time", START)]).status_code == 200


def test_slow_answers_time_out_on_the_client(fake_api):
    fake_api.schedule_faults(Fault("slow", delay=1.0))
    with pytest.raises(requests.Timeout):
        requests.get(fake_api.base_url + "/organization/costs", params={"start_time": START}, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, timeout=0.2)


def test_seeded_fault_rate_is_reproducible():
    def run() -> list:
        with FakeOpenAIUsageAPI(key="k", now=NOW) as api:
            api.faults.at_rate(0.5, [status(500), status(429, retry_after=1)], seed=3)
            return [get(api, "costs", [("start_time", START)], "k").status_code for _ in range(12)]

    first = run()
    assert first == run() and {200, 500} <= set(first)


# -- the live API's behaviour by default (issue #25; the recorded observations: test_recorded_answers.py) ----
def test_every_answer_carries_a_date_header_from_the_fakes_clock(fake_api):
    import email.utils

    answer = get(fake_api, "costs", [("start_time", NOW - DAY)])
    assert email.utils.parsedate_to_datetime(answer.headers["Date"]).timestamp() == NOW
    assert get(fake_api, "costs", [("start_time", NOW - DAY), ("limit", 500)]).headers["Date"] == answer.headers["Date"]


def test_costs_days_are_whole_from_the_day_holding_start_to_the_day_holding_now(fake_api):
    fake_api.controls.now = NOW + 7200
    data = body(get(fake_api, "costs", [("start_time", NOW - 2 * DAY + 3600)]))["data"]
    assert [(b["start_time"], b["end_time"]) for b in data] == [(NOW - 2 * DAY, NOW - DAY), (NOW - DAY, NOW), (NOW, NOW + DAY)]
    assert all(r["organization_id"] == fake_api.organization.organization_id for b in data for r in b["results"])
    # With a reporting delay only the days reported whole come back.
    fake_api.controls.available_until = NOW - DAY + 3600
    data = body(get(fake_api, "costs", [("start_time", NOW - 2 * DAY + 3600)]))["data"]
    assert [b["start_time"] for b in data] == [NOW - 2 * DAY]


def test_costs_grouped_by_user_carry_the_users_email(fake_api):
    data = body(get(fake_api, "costs", [("start_time", START), ("end_time", NOW), ("group_by", "user_id")]))["data"]
    results = [r for b in data for r in b["results"]]
    assert results and all(r["user_email"] == fake_api.organization.user_email(r["user_id"]) for r in results)
    ungrouped = [r for b in body(get(fake_api, "costs", [("start_time", START), ("end_time", NOW)]))["data"] for r in b["results"]]
    assert ungrouped and all("user_email" not in r for r in ungrouped)


# -- several organizations, one per admin key (issue #29) -------------------------------------------------
SECOND_KEY = SENTINEL_KEY + "-2"


@pytest.fixture
def two_orgs() -> Iterator[FakeOpenAIUsageAPI]:
    """The ``fake_api`` organization under ``SENTINEL_KEY``, and a second one under ``SECOND_KEY``."""
    with FakeOpenAIUsageAPI(key=SENTINEL_KEY, seed=7, now=NOW, organization_count=2) as api:
        yield api


def event_totals(org: FakeOrganization, endpoint_key: str, start: int, end: int) -> dict[str, Decimal]:
    """What the answers must sum to: the organization's generated events in [start, end)."""
    out: dict[str, Decimal] = {}
    names = [c.name for c in ENDPOINTS[endpoint_key].metric_columns if c.name != "quantity"]
    for day in range(start, end, DAY):
        for event in day_events(org, endpoint_key, day):
            metrics = dict(event.metrics)
            for name in names:
                out[name] = out.get(name, 0) + (metrics.get(name) or 0)
    return out


def test_one_server_answers_each_key_with_its_own_organizations_data(two_orgs):
    first, second = two_orgs.organizations[SENTINEL_KEY], two_orgs.organizations[SECOND_KEY]
    assert list(two_orgs.organizations) == [SENTINEL_KEY, SECOND_KEY] and first == two_orgs.organization
    assert first.organization_id != second.organization_id and not set(first.projects) & set(second.projects)
    params = [("start_time", START), ("end_time", NOW), ("group_by", "project_id")]
    for key in ("completions", "costs", "embeddings"):
        ours, theirs = all_buckets(two_orgs, key, params), all_buckets(two_orgs, key, params, SECOND_KEY)
        assert ours != theirs, key
        assert {r["project_id"] for b in ours for r in b["results"]} <= set(first.projects)
        assert {r["project_id"] for b in theirs for r in b["results"]} <= set(second.projects)
    for token, org in ((SENTINEL_KEY, first), (SECOND_KEY, second)):
        results = [r for b in all_buckets(two_orgs, "costs", params, token) for r in b["results"]]
        assert results and {r["organization_id"] for r in results} == {org.organization_id}


@pytest.mark.parametrize("key", ["completions", "costs", "vector_stores"])
def test_each_organizations_grouped_totals_are_the_sum_of_its_own_events(two_orgs, key):
    base = [("start_time", START), ("end_time", NOW)]
    group = [("group_by[]", g) for g in ENDPOINTS[key].group_by[:2]]
    for token, org in two_orgs.organizations.items():
        expected = event_totals(org, key, START, NOW)
        assert any(expected.values()), (key, org.organization_id)
        assert totals(key, all_buckets(two_orgs, key, base + group, token)) == expected
    assert event_totals(two_orgs.organization, key, START, NOW) != event_totals(two_orgs.organizations[SECOND_KEY], key, START, NOW)


def test_the_first_organization_answers_byte_for_byte_as_a_lone_one(fake_api, two_orgs):
    """Serving more organizations changes nothing for the first: same bodies, same cursors."""
    asked = [
        ("costs", [("start_time", START), ("end_time", NOW), ("group_by", "project_id,line_item"), ("limit", 4)]),
        ("completions", [("start_time", START), ("end_time", NOW), ("group_by", "model"), ("limit", 3)]),
        ("audio_speeches", [("start_time", NOW - DAY), ("bucket_width", "1h"), ("limit", 5)]),
    ]
    for key, params in asked:
        lone, shared = get(fake_api, key, params), get(two_orgs, key, params)
        assert lone.content == shared.content and lone.json()["next_page"], key
        cursor = [("page", lone.json()["next_page"])]
        assert get(fake_api, key, params + cursor).content == get(two_orgs, key, params + cursor).content
        assert get(two_orgs, key, params, SECOND_KEY).content != shared.content
    for path in ("/organization/projects", "/organization/users", "/organization/admin_api_keys"):
        lone_answer = requests.get(fake_api.base_url + path, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, timeout=10)
        shared_answer = requests.get(two_orgs.base_url + path, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, timeout=10)
        assert lone_answer.status_code == 200 and lone_answer.content == shared_answer.content, path


def test_a_cursor_of_one_organization_does_not_continue_anothers(two_orgs):
    params = [("start_time", NOW - 20 * DAY), ("end_time", NOW), ("limit", 7)]
    cursor = body(get(two_orgs, "vector_stores", params))["next_page"]
    other = get(two_orgs, "vector_stores", params + [("page", cursor)], SECOND_KEY)
    assert other.status_code == 400 and other.json()["error"]["param"] == "page"
    assert body(get(two_orgs, "vector_stores", params + [("page", cursor)]))["data"]


def test_a_fault_aimed_at_one_key_storms_only_that_organization(two_orgs):
    params = [("start_time", START)]
    two_orgs.faults.at_rate(1.0, [status(429, retry_after=1, key=SECOND_KEY)])
    for _ in range(3):
        assert get(two_orgs, "costs", params, SECOND_KEY).status_code == 429
        assert get(two_orgs, "costs", params).status_code == 200
    two_orgs.reset()
    two_orgs.schedule_faults(status(401, key=SECOND_KEY), status(401, key=SECOND_KEY))
    assert get(two_orgs, "costs", params).status_code == 200 and two_orgs.faults.pending == 2, "not aimed: not consumed"
    assert [get(two_orgs, "costs", params, SECOND_KEY).status_code for _ in range(3)] == [401, 401, 200]
    log = two_orgs.requests
    assert [(r.organization_id, r.status) for r in log] == [
        (two_orgs.organization.organization_id, 200)] + [(two_orgs.organizations[SECOND_KEY].organization_id, s) for s in (401, 401, 200)]
    assert SECOND_KEY not in repr(log) and SENTINEL_KEY not in repr(log), "the log never holds a key"


def test_a_revoked_key_gets_the_401_of_an_unknown_key_and_the_others_still_answer(two_orgs, spec_validator):
    params = [("start_time", START)]
    two_orgs.revoke(SECOND_KEY)
    refused, unknown = get(two_orgs, "costs", params, SECOND_KEY), get(two_orgs, "costs", params, SENTINEL_KEY + "-3")
    for answer in (refused, unknown):
        assert answer.status_code == 401
        spec_validator(answer.json(), "ErrorResponse")
        assert answer.json()["error"]["code"] == "invalid_api_key" and "Incorrect API key provided" in answer.json()["error"]["message"]
        assert SENTINEL_KEY not in answer.text
    directory = requests.get(two_orgs.base_url + "/organization/projects", headers={"Authorization": f"Bearer {SECOND_KEY}"}, timeout=10)
    assert directory.status_code == 401
    assert get(two_orgs, "costs", params).status_code == 200
    assert get(two_orgs, "costs", params, "sk-proj-fake-project-key").status_code == 401
    assert [r.organization_id for r in two_orgs.requests] == [None, None, None, two_orgs.organization.organization_id, None]
    two_orgs.restore(SECOND_KEY)
    assert get(two_orgs, "costs", params, SECOND_KEY).status_code == 200


def test_organizations_are_added_with_their_own_key_and_id_only(fake_api):
    key, org = fake_organizations(3, key=SENTINEL_KEY, seed=7)[2]
    fake_api.add_organization(key, org)
    assert fake_api.organizations[key] == org and fake_api.organizations[SENTINEL_KEY] == fake_api.organization
    body(get(fake_api, "costs", [("start_time", START)], key))
    with pytest.raises(ValueError, match="already served"):
        fake_api.add_organization(key, FakeOrganization.numbered(4))
    with pytest.raises(ValueError, match="organization_id"):
        fake_api.add_organization(SENTINEL_KEY + "-other", FakeOrganization(seed=99))


def test_numbered_organizations_share_no_id_and_the_first_is_the_default():
    served = fake_organizations(4)
    assert served[0] == (DEFAULT_KEY, FakeOrganization())
    assert [k for k, _ in served[1:]] == [f"{DEFAULT_KEY}-{n}" for n in (2, 3, 4)]
    orgs = [o for _, o in served]
    for field in ("organization_id", "seed", "projects", "users", "api_keys", "vector_stores"):
        values = [getattr(o, field) for o in orgs]
        assert len(set(values)) == len(orgs), field
        if isinstance(values[0], tuple):
            assert len({v for vs in values for v in vs}) == sum(map(len, values)), f"{field}: an id in two organizations"
    assert all(re.fullmatch(r"org-[A-Za-z0-9]{20,30}", o.organization_id) for o in orgs)
    assert FakeOrganization.numbered(2, seed=0).salt != FakeOrganization(seed=0).salt, "the same seed still draws apart"


def test_the_connection_of_each_organization_reads_its_own_organization(monkeypatch):
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

    with FakeOpenAIUsageAPI(key=SENTINEL_KEY, organization_count=2) as api:  # the real clock: the hook asks for the last 180 days
        for conn_id, token in (("fake_org_one", SENTINEL_KEY), ("fake_org_two", SECOND_KEY)):
            conn = json.loads(api.connection_json_for(token, max_retries=0))
            assert conn["password"] == token and conn["extra"]["organization_id"] == api.organizations[token].organization_id
            monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", api.connection_json_for(token, max_retries=0))
            assert OpenAIUsageHook(conn_id).organization_id(verify=True) == api.organizations[token].organization_id
        assert "extra" not in json.loads(api.connection_json_for(SECOND_KEY, organization_id=None))
        assert api.connection_json() == api.connection_json_for(SENTINEL_KEY)
        with pytest.raises(KeyError):
            api.connection_json_for("sk-admin-not-served")
