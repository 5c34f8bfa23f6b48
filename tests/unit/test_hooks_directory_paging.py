"""``OpenAIUsageHook.iter_directory``: every object once, fewest requests, refusals before any request."""

from __future__ import annotations

import re

import math

import pytest
from conftest import SENTINEL_KEY
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_openai_usage.directory import ENTITIES, ENTITY_KEYS
from airflow_provider_openai_usage.directory_rows import object_row
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)
from airflow_provider_openai_usage.hooks.directory_paging import DirectoryReader
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI
from airflow_provider_openai_usage.testing.faults import Fault, status


def served_rows(api: FakeOpenAIUsageAPI, key: str) -> list[dict]:
    """What the fake serves for an entity, flattened: the fan-out done by hand from its own data."""
    entity = ENTITIES[key]
    directory = api.api.admin.directory
    if not entity.per_project:
        return [object_row(entity, o) for o in directory.objects(key)]
    rows = []
    for project in directory.objects("projects"):
        if entity.skips_archived_projects and project["status"] == "archived":
            continue
        rows += [object_row(entity, o, project["id"]) for o in directory.objects(key, project["id"])]
    return rows


@pytest.mark.parametrize("paged", [False, True])
@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_rows_equal_the_fake_api_s_across_pages_and_projects(fake_api, conn_id, key, paged):
    served = served_rows(fake_api, key)
    biggest = max(sum(1 for r in served if r.get("project_id") == p) for p in {r.get("project_id") for r in served})
    cap = max(1, min(7, biggest - 1)) if paged else None  # small enough that some list needs several pages
    fake_api.controls.page_size_cap = cap
    rows = list(OpenAIUsageHook(conn_id).iter_directory(key))
    assert rows == served
    entity = ENTITIES[key]
    for row in rows:
        assert tuple(row) == entity.column_names and row["id"]
        assert ("name" in row) == ("name" in entity.column_names)
    own = [r for r in fake_api.requests if not r.path.endswith("/organization/projects") or key == "projects"]
    per_path: dict[str, int] = {}
    for row in rows:
        path = entity.path_for(row.get("project_id"))
        per_path[path] = per_path.get(path, 0) + 1
    if entity.paged:
        size = cap or 100
        empty = sum(1 for r in own if r.path.removeprefix("/v1") not in per_path)
        assert len(own) == sum(math.ceil(n / size) for n in per_path.values()) + empty
        if cap:
            assert max(per_path.values()) > cap, "several pages somewhere"


def test_fewest_requests_at_the_maximum_limit_and_one_project_listing(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    reader = DirectoryReader(hook)
    users = list(reader.iter_rows("users"))
    assert len(users) > 100
    assert len(fake_api.requests) == math.ceil(len(users) / 100) == 2
    assert all(r.params()["limit"] == ["100"] for r in fake_api.requests)
    assert "after" not in fake_api.requests[0].params() and fake_api.requests[1].params()["after"] == [users[99]["id"]]
    fake_api.clear_requests()
    for key in ("project_api_keys", "project_rate_limits", "project_spend_alerts"):
        list(reader.iter_rows(key))
    listings = [r for r in fake_api.requests if r.path.endswith("/organization/projects")]
    projects = reader.projects()
    assert len(listings) == 1 and listings[0].params()["include_archived"] == ["true"], "projects listed once, archived included"
    assert len(fake_api.requests) == 1 + 3 * len(projects)


def test_archived_projects_are_skipped_only_where_the_api_refuses_them(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    archived = {p["id"] for p in hook.iter_directory("projects") if p["status"] == "archived"}
    assert archived
    assert not {r["project_id"] for r in hook.iter_directory("project_users")} & archived
    assert {r["project_id"] for r in hook.iter_directory("project_api_keys")} & archived, "their keys still name usage"
    assert all(r.status in (200, 404) for r in fake_api.requests)


def test_keys_of_owners_who_lost_access_are_in_the_directory(fake_api, conn_id):
    keys = list(OpenAIUsageHook(conn_id).iter_directory("project_api_keys"))
    assert {k["owner_project_access"] for k in keys} == {"active", "inactive"}
    assert {r.params().get("owner_project_access", [None])[0] for r in fake_api.requests if r.path.endswith("/api_keys")} == {"any"}
    owner = next(k for k in keys if k["owner_type"] == "service_account")
    assert owner["owner_id"].startswith("svc_acct_") and owner["owner_email"] is None


def test_projects_without_a_spend_limit_have_no_row(fake_api, conn_id):
    rows = list(OpenAIUsageHook(conn_id).iter_directory("project_spend_limits"))
    statuses = [r.status for r in fake_api.requests if r.path.endswith("/spend_limit")]
    assert 404 in statuses and len(rows) == statuses.count(200) > 0
    assert all(r["id"] == r["project_id"] for r in rows)


def test_parameters_reach_the_api_and_project_ids_skip_the_listing(fake_api, conn_id):
    hook = OpenAIUsageHook(conn_id)
    ada = next(u for u in hook.iter_directory("users") if u["id"] == "user-ada")
    fake_api.clear_requests()
    assert [u["id"] for u in hook.iter_directory("users", emails=[ada["email"]])] == ["user-ada"]
    assert [p["id"] for p in hook.iter_directory("projects", include_archived=False) if p["status"] == "archived"] == []
    fake_api.clear_requests()
    rows = list(hook.iter_directory("project_service_accounts", project_ids=["proj_beta"]))
    assert {r["project_id"] for r in rows} == {"proj_beta"} and len(fake_api.requests) == 1


@pytest.mark.parametrize(
    ("entity", "params", "match"),
    [
        ("project", {}, "entity='project' is not an OpenAI directory entity; allowed: projects, users"),
        ("users", {"include_archived": True}, "parameter 'include_archived' is not accepted by entity 'users'; allowed: emails"),
        ("projects", {"project_ids": ["proj_alpha"]}, "allowed: include_archived$"),
        ("projects", {"include_archived": "yes"}, "include_archived='yes' must be True or False"),
        ("project_api_keys", {"owner_project_access": "all"}, "allowed: active, inactive, any"),
        ("users", {"emails": []}, "non-empty list"),
        ("users", {"limit": 10}, "pages by itself"),
        ("admin_api_keys", {"after": "key_x"}, "pages by itself"),
        ("project_users", {"project_ids": [""]}, "non-empty strings"),
        ("admin_api_keys", {"order": "newest"}, "allowed: asc, desc"),
        ("project_users", {"project_ids": ["proj_alpha", "proj_alpha"]}, "repeats a project"),
    ],
)
def test_bad_entities_and_parameters_are_refused_before_any_request(fake_api, conn_id, entity, params, match):
    with pytest.raises(OpenAIUsageValidationError, match=match):
        OpenAIUsageHook(conn_id).iter_directory(entity, **params)
    assert fake_api.requests == []


def test_a_failed_page_is_retried_alone(fake_api, conn_id):
    fake_api.controls.page_size_cap = 50
    fake_api.schedule_faults(Fault("pass"), status(503), status(429, retry_after=0))
    rows = list(OpenAIUsageHook(conn_id).iter_directory("users"))
    assert len(rows) == len({r["id"] for r in rows}) > 100
    afters = [r.params().get("after", [None])[0] for r in fake_api.requests]
    assert afters[1] == afters[2] == afters[3] == rows[49]["id"], "the same page, not the list from the start"


def test_a_wrong_key_fails_fast_with_the_admin_key_hint(fake_api, monkeypatch):
    monkeypatch.setenv("AIRFLOW_CONN_BAD", FakeOpenAIUsageAPI.connection_json(fake_api).replace(SENTINEL_KEY, "sk-admin-wrong-0000000000"))
    with pytest.raises(OpenAIUsageAuthError, match="admin"):
        list(OpenAIUsageHook("bad").iter_directory("projects"))
    assert len(fake_api.requests) == 1


def test_a_list_that_claims_more_but_gives_nothing_is_refused_not_looped(fake_api, conn_id):
    # Page 2 (the last) and page 3 both claim has_more; page 3 is empty with no last_id.
    fake_api.schedule_faults(Fault("pass"), Fault("loop"), Fault("loop"))
    with pytest.raises(OpenAIUsageResponseError, match="says has_more but is empty"):
        list(OpenAIUsageHook(conn_id).iter_directory("users"))
    assert len(fake_api.requests) == 3


def test_an_answer_without_data_is_refused(fake_api, conn_id):
    fake_api.schedule_faults(Fault("no_data"))
    with pytest.raises(OpenAIUsageResponseError, match="no 'data' array"):
        list(OpenAIUsageHook(conn_id).iter_directory("users"))


def test_an_unknown_project_is_an_api_error_naming_the_path(fake_api, conn_id):
    with pytest.raises(OpenAIUsageAPIError, match="HTTP 404") as info:
        list(OpenAIUsageHook(conn_id).iter_directory("project_api_keys", project_ids=["proj_gone"]))
    assert info.value.status == 404


def test_a_full_key_in_an_answer_is_scrubbed_and_never_repeated(fake_api, conn_id, caplog):
    fake_api.api.admin.leak_full_key = True
    hook = OpenAIUsageHook(conn_id)
    for key in ("admin_api_keys", "project_api_keys"):
        rows = list(hook.iter_directory(key))
        assert rows and rows[0]["redacted_value"] == "sk-...[redacted]", "the rows are kept, the key is not"
        assert SENTINEL_KEY not in repr(rows) and not re.search(r"sk-proj-[0-9a-f]{20}", repr(rows))
    assert SENTINEL_KEY not in caplog.text and not re.search(r"sk-proj-[0-9a-f]{20}", caplog.text)


def test_the_connection_s_own_key_is_scrubbed_even_if_it_does_not_look_like_an_openai_key(monkeypatch):
    odd = "gateway-token-not-sk-shaped-42"
    with FakeOpenAIUsageAPI(key=odd, seed=7) as api:
        monkeypatch.setenv("AIRFLOW_CONN_ODD", api.connection_json(max_retries=0))
        hook = OpenAIUsageHook("odd")
        assert [k["redacted_value"] for k in hook.iter_directory("admin_api_keys")][0] == odd[:8] + "..." + odd[-4:]
        api.api.admin.leak_full_key = True
        rows = list(hook.iter_directory("admin_api_keys"))
        assert odd not in repr(rows) and rows[0]["redacted_value"] == "sk-...[redacted]"


@settings(max_examples=8, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    key=st.sampled_from(["users", "project_users", "project_api_keys", "project_rate_limits"]),
    cap=st.integers(min_value=5, max_value=40),
    faults=st.lists(st.sampled_from(["pass", "503", "429", "drop"]), max_size=4),  # max_retries=4: five attempts per page
)
def test_any_page_size_and_transient_faults_give_the_same_rows(fake_api, conn_id, key, cap, faults):
    fake_api.reset()
    fake_api.controls.page_size_cap = cap
    fake_api.schedule_faults(
        *[Fault("pass") if f == "pass" else Fault("drop") if f == "drop" else status(int(f), retry_after=0) for f in faults]
    )
    assert list(OpenAIUsageHook(conn_id).iter_directory(key)) == served_rows(fake_api, key)
