"""Recorded answers of OpenAI's live API (tests/data/recorded, sources in its README), replayed over HTTP
through the hook and the operators with totals checked exactly; and the default fake API held to the
same answers (issue #25), so neither the fake nor the hook can drift from what OpenAI really sends."""

from __future__ import annotations

import logging
from decimal import ROUND_HALF_EVEN, Decimal

import pyarrow.parquet as pq
import pytest
import requests
from conftest import DAY, SENTINEL_KEY, ORG_DIR
from recorded_support import RECORDED, ReplayAPI, load
from storage_support import ctx, day

from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR, ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageAPIError, OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator, OpenAIImagesUsageOperator
from airflow_provider_openai_usage.rows import unknown_fields_warning

OBSERVATION = "issue #25 observation"
RECORDINGS = sorted(p.name for p in RECORDED.glob("*.json"))
OBSERVATIONS = [name for name in RECORDINGS if str(load(name)["source"]).startswith(OBSERVATION)]


@pytest.fixture
def replay(request, monkeypatch):
    """``replay("name.json")``: a ReplayAPI of that recording behind ``openai_usage_default``."""
    started: list[ReplayAPI] = []

    def start(name: str) -> ReplayAPI:
        api = ReplayAPI.of(name).__enter__()
        started.append(api)
        monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json())
        return api

    yield start
    for api in started:
        api.__exit__()


def params(doc: dict) -> dict[str, str]:
    return {k: v for k, v in doc["request"]["params"]}


def amounts(buckets: list[dict]) -> Decimal:
    return sum((r["amount"]["value"] for b in buckets for r in b["results"]), Decimal(0))


def stored(value: Decimal) -> Decimal:
    """What decimal(38, 18) holds: digits past the 18th decimal rounded half-even (docs/design.md, "Decimals")."""
    return value.quantize(Decimal(1).scaleb(-18), rounding=ROUND_HALF_EVEN)


def test_every_recording_names_its_source_and_the_readme_lists_it():
    readme = (RECORDED / "README.md").read_text()
    for name in RECORDINGS:
        doc = load(name)
        assert doc["source"], name
        if not str(doc["source"]).startswith(OBSERVATION):
            path = doc["source"].get("path") or doc["source"]["path_under_top_level_folder_shared"]
            assert doc["source"]["repository"] in readme and path in readme, name
        assert f"`{name}`" in readme, name


# -- public recordings --------------------------------------------------------------------------------
def test_a_public_daily_costs_answer_is_read_whole_with_organization_id_typed(replay, caplog):
    doc = load("costs_daily_public_guardian.json")
    api = replay("costs_daily_public_guardian.json")
    start, end = int(params(doc)["start_time"]), int(params(doc)["end_time"])
    hook = OpenAIUsageHook()
    with caplog.at_level(logging.WARNING):
        buckets = list(hook.iter_buckets("costs", start, end, require_complete=False))
    # The day holding the moment of the answer (2025-10-12) ends after it: partial, not handed over for a bounded range.
    assert len(buckets) == doc["expected"]["complete_buckets"] and all(b["exact"] for b in buckets)
    assert [b["end_time"] - b["start_time"] for b in buckets] == [DAY] * 7
    assert amounts(buckets) == Decimal(doc["expected"]["amount_value"])
    assert all(type(r["amount"]["value"]) is Decimal for b in buckets for r in b["results"])
    assert [day(b["start_time"]) for b in buckets if not b["results"]] == ["2025-10-09"]
    assert all(dict(p)["limit"] == "180" for _, p in api.requests)
    api.rewind()
    rows = list(hook.iter_rows("costs", start, end, require_complete=False))
    assert {r["organization_id"] for r in rows} == {"org-Hp9mSGev2sVmtMeF2wrnSeOV"}
    # organization_name is in this one source only: kept, not dropped, in `extra`.
    assert {r["extra"] for r in rows} == {'{"organization_name":"Personal"}'}


def test_a_public_costs_answer_without_end_time_hands_over_the_open_day_marked_inexact(replay):
    doc = load("costs_daily_public_guardian.json")
    api = replay("costs_daily_public_guardian.json")
    buckets = list(OpenAIUsageHook().iter_buckets("costs", int(params(doc)["start_time"])))
    assert len(buckets) == doc["expected"]["buckets"]
    assert [b["exact"] for b in buckets] == [True] * 7 + [False]
    assert buckets[-1]["end_time"] > doc["answered_at"] and buckets[-1]["results"] == []
    assert "end_time" not in dict(api.requests[0][1])


def test_the_costs_operator_lands_the_public_answer_and_never_the_open_day_as_whole(replay, tmp_path):
    doc = load("costs_daily_public_guardian.json")
    api = replay("costs_daily_public_guardian.json")
    start, end = int(params(doc)["start_time"]), int(params(doc)["end_time"])
    op = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), parallel_requests=1)
    with pytest.raises(OpenAIUsageResponseError, match=r"reported buckets only up to 2025-10-12T00:00:00Z"):
        op.execute(ctx(start, end))
    landed = sorted(p.parent.name for p in (tmp_path / "costs" / f"organization={api.organization_id}").glob("date=*/data.parquet"))
    assert landed == [f"date={day(t)}" for t in range(start, end - DAY, DAY)], "the open 2025-10-12 is not written"
    table = pq.read_table(sorted((tmp_path / "costs" / f"organization={api.organization_id}").glob("date=*/data.parquet")))
    assert sum(table.column("amount_value").to_pylist()) == stored(Decimal(doc["expected"]["amount_value"]))
    assert set(table.column("organization_id").to_pylist()) == {"org-Hp9mSGev2sVmtMeF2wrnSeOV"}


def test_a_public_grouped_completions_answer_keeps_every_count(replay):
    doc = load("usage_completions_daily_public_guardian.json")
    replay("usage_completions_daily_public_guardian.json")
    p = params(doc)
    rows = list(OpenAIUsageHook().iter_rows("completions", int(p["start_time"]), int(p["end_time"]), group_by=p["group_by"]))
    assert len(rows) == doc["expected"]["rows"]
    for metric in ("input_tokens", "output_tokens", "num_model_requests"):
        assert sum(r[metric] for r in rows) == doc["expected"][metric], metric
    assert {r["batch"] for r in rows} == {False} and {r["extra"] for r in rows} == {None}


def test_a_public_ungrouped_minute_answer_reads_its_explicit_nulls_as_null_columns(replay):
    doc = load("usage_completions_1m_public_devbench.json")
    replay("usage_completions_1m_public_devbench.json")
    p = params(doc)
    (row,) = OpenAIUsageHook().iter_rows("completions", int(p["start_time"]), int(p["end_time"]), bucket_width="1m")
    assert (row["input_tokens"], row["output_tokens"], row["num_model_requests"]) == (2883, 1795, 4)
    assert all(row[g] is None for g in ("project_id", "user_id", "api_key_id", "model", "batch", "service_tier"))
    assert row["extra"] is None


# -- the observations of issue #25, through the hook and the operators --------------------------------
def test_an_unaligned_30_day_costs_window_ending_now_comes_back_whole(replay, caplog):
    doc = load("costs_unaligned_30_days.json")
    replay("costs_unaligned_30_days.json")
    start = int(params(doc)["start_time"])
    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_usage"), unknown_fields_warning():
        buckets = list(OpenAIUsageHook().iter_buckets("costs", start))
    assert len(buckets) == doc["expected"]["buckets"]
    assert buckets[0]["start_time"] == doc["expected"]["first_start"] < start, "the bucket of the day holding start_time"
    assert buckets[-1]["end_time"] == doc["expected"]["last_end"] > doc["answered_at"], "the day holding now ends after it"
    assert [b["exact"] for b in buckets] == [False] + [True] * 29 + [False]
    assert [b["start_time"] for b in buckets] == list(range(buckets[0]["start_time"], buckets[-1]["end_time"], DAY))
    assert amounts(buckets) == Decimal(doc["expected"]["amount_value"])
    assert max(-r["amount"]["value"].as_tuple().exponent for b in buckets for r in b["results"]) == 20
    assert not [r for r in caplog.records if "does not type" in r.getMessage()], "organization_id is typed, not unknown"


def test_a_field_only_one_source_shows_is_kept_and_named_once_per_run(replay, caplog):
    doc = load("costs_daily_public_guardian.json")
    api = replay("costs_daily_public_guardian.json")
    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_usage"), unknown_fields_warning():
        list(OpenAIUsageHook().iter_rows("costs", int(params(doc)["start_time"]), require_complete=False))
    (warning,) = [r.getMessage() for r in caplog.records if "does not type" in r.getMessage()]
    assert "'organization_name'" in warning and "organization_id" not in warning


def test_organization_id_and_user_email_are_typed_columns(replay):
    doc = load("costs_grouped_by_user.json")
    replay("costs_grouped_by_user.json")
    p = params(doc)
    rows = list(OpenAIUsageHook().iter_rows("costs", int(p["start_time"]), int(p["end_time"]), group_by=["user_id"]))
    assert len(rows) == doc["expected"]["rows"]
    assert {(r["user_id"], r["user_email"]) for r in rows} == {("user-7hQ2", "maria.lopez@example.com"), ("user-Kp4z", "j.chen@example.com")}
    assert {r["organization_id"] for r in rows} == {"org-Q7vR2mXk9LpT4wHs8NcB1dYe"} and {r["extra"] for r in rows} == {None}
    assert sum(r["amount_value"] for r in rows) == Decimal(doc["expected"]["amount_value"])


@pytest.mark.parametrize(
    ("name", "param"), [("costs_limit_366.json", "limit"), ("costs_api_key_floor.json", "start_time"), ("costs_cursor_other_params.json", "page")]
)
def test_a_400_naming_a_param_is_reported_with_openais_message_and_not_retried(replay, name, param):
    doc = load(name)
    api = replay(name)
    said = doc["answers"][0]["body"]["error"]["message"]
    with pytest.raises(OpenAIUsageAPIError) as info:
        list(OpenAIUsageHook().iter_rows("costs", doc["answered_at"] - 10 * DAY, doc["answered_at"] - DAY, group_by=["api_key_id"]))
    assert info.value.status == 400 and info.value.param == param and info.value.api_message == said
    assert said.rstrip(".") in str(info.value) and f"(param {param!r})" in str(info.value) and "Not retried" in str(info.value)
    assert len(api.requests) == 1


def test_the_hook_never_sends_what_the_live_api_refuses(fake_api, conn_id):
    with pytest.raises(OpenAIUsageValidationError, match="bucket_width='1h' is not allowed for endpoint 'costs'; allowed: 1d"):
        OpenAIUsageHook(conn_id).iter_buckets("costs", fake_api.controls.now - DAY, fake_api.controls.now, bucket_width="1h")
    list(OpenAIUsageHook(conn_id).iter_buckets("costs", fake_api.controls.now - 400 * DAY, fake_api.controls.now))
    assert fake_api.requests and {r.params()["limit"][0] for r in fake_api.requests} == {"180"}


def test_264_daily_buckets_page_as_180_and_84_with_quiet_days_landed_empty(replay, tmp_path):
    doc = load("costs_264_days.json")
    api = replay("costs_264_days.json")
    p = params(doc)
    start, end = int(p["start_time"]), int(p["end_time"])
    buckets = list(OpenAIUsageHook().iter_buckets("costs", start, end))
    assert len(buckets) == 264 and sum(not b["results"] for b in buckets) == doc["expected"]["empty_days"]
    assert all(b2["start_time"] - b1["start_time"] == DAY for b1, b2 in zip(buckets, buckets[1:]))
    assert amounts(buckets) == Decimal(doc["expected"]["amount_value"])
    first, second = (dict(q) for _, q in api.requests)
    assert "page" not in first and second.pop("page") == doc["answers"][0]["body"]["next_page"] and second == first
    api.rewind()
    op = OpenAICostsOperator(task_id="t", output_path=str(tmp_path), parallel_requests=1)
    summary = op.execute(ctx(start, end))
    assert len(summary["days"]) == 264 and sum(d["rows"] == 0 for d in summary["days"].values()) == 8
    exact = sum((stored(r["amount"]["value"]) for b in buckets for r in b["results"]), Decimal(0))
    assert Decimal(summary["totals"]["amount_value"]) == exact
    before = {p: p.read_bytes() for p in sorted(tmp_path.rglob("data.parquet"))}
    api.rewind()
    op.execute(ctx(start, end))
    assert {p: p.read_bytes() for p in sorted(tmp_path.rglob("data.parquet"))} == before, "a re-run is byte-identical"


def test_usage_buckets_start_at_an_unaligned_start_and_end_at_the_moment_of_the_call(replay):
    doc = load("usage_completions_unaligned_no_end.json")
    api = replay("usage_completions_unaligned_no_end.json")
    start = int(params(doc)["start_time"])
    buckets = list(OpenAIUsageHook().iter_buckets("completions", start))
    assert (buckets[0]["start_time"], buckets[-1]["end_time"]) == (doc["expected"]["first_start"], doc["expected"]["last_end"])
    assert [b["exact"] for b in buckets] == [True, True, True, False], "the partial day still open is not exact"
    assert sum(r.input_tokens for b in buckets for r in b["results"]) == doc["expected"]["input_tokens"]
    assert [len(b["results"]) for b in buckets] == [1, 1, 0, 1]
    assert "end_time" not in dict(api.requests[0][1])


def test_images_with_no_rows_on_days_costs_bill_images_land_as_they_are(replay, tmp_path):
    doc = load("images_quiet_costs_bill.json")
    replay("images_quiet_costs_bill.json")
    p = params(doc)
    start, end = int(p["start_time"]), int(p["end_time"])
    images = OpenAIImagesUsageOperator(task_id="i", output_path=str(tmp_path), parallel_requests=1).execute(ctx(start, end))
    costs = OpenAICostsOperator(task_id="c", output_path=str(tmp_path), group_by=["line_item"], parallel_requests=1).execute(ctx(start, end))
    assert images["rows"] == doc["expected"]["image_rows"] and len(images["days"]) == 3
    assert Decimal(costs["totals"]["amount_value"]) == Decimal(doc["expected"]["amount_value"]) and costs["rows"] == 3


# -- the default fake API answers as recorded ---------------------------------------------------------
def _fake_answer(fake_api, doc: dict, query: list[tuple[str, str]]) -> requests.Response:
    return requests.get(
        fake_api.base_url + doc["request"]["path"].removeprefix("/v1"), params=query, headers={"Authorization": f"Bearer {SENTINEL_KEY}"}, timeout=10
    )


@pytest.mark.parametrize("name", OBSERVATIONS)
def test_the_default_fake_answers_every_observation_as_recorded(fake_api, name):
    doc = load(name)
    fake_api.controls.now = doc["answered_at"]
    query = [tuple(kv) for kv in doc["request"]["params"]]
    cursor = None
    for number, recorded in enumerate(doc["answers"]):
        answer = _fake_answer(fake_api, doc, query + ([("page", cursor)] if cursor else []))
        if name == "costs_cursor_other_params.json":
            # A cursor of another query (limit=180) sent with this one's limit=100.
            first = _fake_answer(fake_api, doc, [kv if kv[0] != "limit" else ("limit", "180") for kv in query]).json()
            answer = _fake_answer(fake_api, doc, query + [("page", first["next_page"])])
        assert answer.status_code == recorded["status"], (name, number, answer.text)
        body = answer.json()
        if recorded["status"] != 200:
            want, got = recorded["body"]["error"], body["error"]
            assert (got["type"], got["param"], got["code"]) == (want["type"], want["param"], want["code"]), name
            if doc["exact_message"]:
                assert got["message"] == want["message"], name
            continue
        times = [(b["start_time"], b["end_time"]) for b in body["data"]]
        assert times == [(b["start_time"], b["end_time"]) for b in recorded["body"]["data"]], (name, number)
        assert body["has_more"] == recorded["body"]["has_more"], (name, number)
        for got_bucket, want_bucket in zip(body["data"], recorded["body"]["data"], strict=True):
            want_keys = {frozenset(r) for r in want_bucket["results"]}
            for result in got_bucket["results"]:
                assert want_keys == set() or frozenset(result) <= frozenset().union(*want_keys) | _UNRECORDED, (name, sorted(result))
                for field in ("organization_id", "user_email"):
                    if any(field in r for r in want_bucket["results"]):
                        assert result[field], (name, field)
        cursor = body["next_page"]


#: Fields the fake sends that the recorded observations do not show (the spec's and SDK's newer fields).
_UNRECORDED = frozenset({"quantity", "quantity_unit", "api_key_id", "user_id", "api_source", "input_cached_tokens",
                         "input_cache_write_tokens", "input_uncached_tokens", "input_text_tokens", "output_text_tokens",
                         "input_cached_text_tokens", "input_cached_audio_tokens", "input_image_tokens",
                         "input_cached_image_tokens", "output_image_tokens", "input_cache_write_12h_tokens",
                         "input_cache_write_30m_tokens", "api_source", "line_item"})


def test_the_fake_sends_every_group_field_of_an_ungrouped_usage_result_as_null(fake_api):
    doc = load("usage_completions_unaligned_no_end.json")
    fake_api.controls.now = doc["answered_at"]
    body = _fake_answer(fake_api, doc, [tuple(kv) for kv in doc["request"]["params"]]).json()
    results = [r for b in body["data"] for r in b["results"]]
    assert results and all(all(g in r and r[g] is None for g in ENDPOINTS["completions"].group_by) for r in results)


def test_the_fake_floor_and_limits_are_settings(fake_api):
    doc = load("costs_api_key_floor.json")
    query = [tuple(kv) for kv in doc["request"]["params"]]
    assert _fake_answer(fake_api, doc, query).status_code == 400
    assert fake_api.controls.api_key_floor == COSTS_API_KEY_FLOOR
    fake_api.controls.api_key_floor = int(query[0][1])
    fake_api.controls.now = doc["answered_at"]
    assert _fake_answer(fake_api, doc, query).status_code == 200
    fake_api.controls.costs_max_limit = 10
    refused = _fake_answer(fake_api, doc, [*query, ("limit", "11")]).json()["error"]["message"]
    assert refused == "Invalid limit provided: 11. Limit must be less than or equal to 10."
