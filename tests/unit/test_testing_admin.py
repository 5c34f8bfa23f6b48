"""The fake API's admin paths answer like OpenAI's: spec-valid, paged by id, same organization as usage.

Two independent judges: OpenAI's official spec (jsonschema over every answer) and the official
``openai`` SDK with strict response validation (its pydantic types must parse every answer).
"""

from __future__ import annotations

import json

import pytest
import requests
from conftest import DAY, NOW, SENTINEL_KEY

from airflow_provider_openai_usage.directory import ENTITIES, ENTITY_KEYS
from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI


def get(api: FakeOpenAIUsageAPI, path: str, params=(), token: str | None = SENTINEL_KEY) -> requests.Response:
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    return requests.get(api.base_url + path, params=list(params), headers=headers, timeout=10)


def ok(response: requests.Response) -> dict:
    assert response.status_code == 200, response.text
    return response.json()


def every_item(api: FakeOpenAIUsageAPI, path: str, params=(), token: str = SENTINEL_KEY) -> list[dict]:
    items, after = [], None
    while True:
        page = ok(get(api, path, [*params, ("limit", 100)] + ([("after", after)] if after else []), token))
        items += page["data"]
        if not page["has_more"]:
            return items
        after = page["last_id"]


def project_ids(api: FakeOpenAIUsageAPI, token: str = SENTINEL_KEY) -> list[str]:
    return [p["id"] for p in every_item(api, "/organization/projects", [("include_archived", "true")], token)]


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_every_answer_of_every_admin_path_is_valid_against_the_official_spec(fake_api, admin_spec_validator, key):
    entity = ENTITIES[key]
    fake_api.controls.page_size_cap = 2  # several pages, each validated
    answered = 0
    for pid in project_ids(fake_api) if entity.per_project else [None]:
        path = entity.path_for(pid)
        if not entity.paged:
            response = get(fake_api, path)
            if response.status_code == 404:
                admin_spec_validator(response.json(), "ErrorResponse")
                continue
            admin_spec_validator(ok(response), entity.list_schema or entity.schema)
            answered += 1
            continue
        after = None
        while True:
            response = get(fake_api, path, [("limit", 100)] + ([("after", after)] if after else []))
            if response.status_code == 400 and entity.skips_archived_projects:
                admin_spec_validator(response.json(), "ErrorResponse")
                assert "archived" in response.json()["error"]["message"]
                break
            page = ok(response)
            admin_spec_validator(page, entity.list_schema)
            assert len(page["data"]) <= 2
            answered += len(page["data"])
            if not page["has_more"]:
                break
            after = page["last_id"]
    assert answered, f"{key}: the seeded organization has objects for every entity"


def test_retrieve_paths_and_errors_are_valid_against_the_spec(fake_api, admin_spec_validator):
    admin_spec_validator(ok(get(fake_api, "/organization/projects/proj_alpha")), "Project")
    admin_spec_validator(ok(get(fake_api, "/organization/users/user-ada")), "User")
    for path in ("/organization/projects/proj_nope", "/organization/users/user-linus", "/organization/projects/proj_nope/api_keys"):
        response = get(fake_api, path)
        assert response.status_code == 404
        admin_spec_validator(response.json(), "ErrorResponse")
    for params in ([("limit", 0)], [("limit", 101)], [("limit", "x")], [("page", "abc")], [("after", "user-unknown")]):
        response = get(fake_api, "/organization/users", params)
        assert response.status_code == 400, params
        admin_spec_validator(response.json(), "ErrorResponse")
    assert get(fake_api, "/organization/projects", token=None).status_code == 401
    assert get(fake_api, "/organization/projects", token="sk-proj-fake-project-key").status_code == 401


def _usage_ids(api: FakeOpenAIUsageAPI, token: str = SENTINEL_KEY) -> dict[str, set[str]]:
    found: dict[str, set[str]] = {"project_id": set(), "user_id": set(), "api_key_id": set()}
    for key in ("completions", "costs"):
        endpoint = ENDPOINTS[key]
        # Costs by api_key_id only from 2025-12-01 (issue #25): before it, as the operators pull them, without the key.
        groups = [
            g for g in ("project_id", "user_id", "api_key_id")
            if g in endpoint.group_by and endpoint.group_by_floors.get(g, 0) <= NOW - 30 * DAY
        ]
        params = [("start_time", NOW - 30 * DAY), ("end_time", NOW), ("limit", 31)] + [("group_by[]", g) for g in groups]
        for bucket in ok(get(api, endpoint.path, params, token))["data"]:
            for result in bucket["results"]:
                for g in groups:
                    found[g].add(result[g])
    return found


def test_every_usage_and_costs_id_resolves_except_deleted_keys_and_removed_users(fake_api):
    used = _usage_ids(fake_api)
    assert all(used.values())
    projects = set(project_ids(fake_api))
    users = {u["id"] for u in every_item(fake_api, "/organization/users")}
    keys = {
        k["id"] for p in projects for k in every_item(fake_api, f"/organization/projects/{p}/api_keys", [("owner_project_access", "any")])
    }
    org = fake_api.organization
    assert used["project_id"] <= projects
    assert used["user_id"] - users == set(org.removed_users)
    assert used["api_key_id"] - keys == set(org.deleted_api_keys)
    assert len(users) > 100, "more users than one page holds at the maximum limit"


def test_keys_of_owners_without_access_are_hidden_unless_asked_for(fake_api):
    path = "/organization/projects/proj_alpha/api_keys"
    default = {k["id"] for k in every_item(fake_api, path)}
    everything = every_item(fake_api, path, [("owner_project_access", "any")])
    inactive = {k["id"] for k in every_item(fake_api, path, [("owner_project_access", "inactive")])}
    assert inactive and inactive == {k["id"] for k in everything if k["owner_project_access"] == "inactive"}
    assert default == {k["id"] for k in everything} - inactive
    owners = {
        k["owner"]["type"]
        for p in project_ids(fake_api)
        for k in every_item(fake_api, f"/organization/projects/{p}/api_keys", [("owner_project_access", "any")])
    }
    assert owners == {"user", "service_account"}


def test_paging_by_after_before_and_order(fake_api):
    everyone = [u["id"] for u in every_item(fake_api, "/organization/users")]
    first = ok(get(fake_api, "/organization/users", [("limit", 100)]))
    assert first["has_more"] and len(first["data"]) == 100 and first["last_id"] == everyone[99]
    assert ok(get(fake_api, "/organization/users"))["data"] == first["data"][:20], "the default limit is 20"
    alerts = "/organization/projects/proj_alpha/spend_alerts"
    ids = [a["id"] for a in every_item(fake_api, alerts)]
    assert [a["id"] for a in ok(get(fake_api, alerts, [("order", "desc")]))["data"]] == ids[::-1]
    assert [a["id"] for a in ok(get(fake_api, alerts, [("before", ids[-1])]))["data"]] == ids[:-1]
    assert ok(get(fake_api, "/organization/projects"))["data"] == [
        p for p in every_item(fake_api, "/organization/projects", [("include_archived", "true")]) if p["status"] == "active"
    ]
    ada = ok(get(fake_api, "/organization/users/user-ada"))
    assert [u["id"] for u in ok(get(fake_api, "/organization/users", [("emails[]", ada["email"])]))["data"]] == ["user-ada"]


def test_the_directory_is_the_same_for_the_same_seed_and_differs_by_seed():
    def snapshot(seed: int) -> str:
        with FakeOpenAIUsageAPI(key=SENTINEL_KEY, seed=seed, now=NOW) as api:
            return json.dumps([every_item(api, "/organization/users"), every_item(api, "/organization/projects/proj_beta/api_keys")])

    assert snapshot(3) == snapshot(3) != snapshot(4)


def test_the_admin_key_is_listed_only_redacted_unless_a_test_asks_for_a_leak(fake_api):
    keys = every_item(fake_api, "/organization/admin_api_keys")
    assert SENTINEL_KEY not in json.dumps(keys)
    assert keys[0]["redacted_value"] == SENTINEL_KEY[:8] + "..." + SENTINEL_KEY[-4:]
    fake_api.api.admin.leak_full_key = True
    assert SENTINEL_KEY in json.dumps(every_item(fake_api, "/organization/admin_api_keys"))


# -- the official SDK, strict ---------------------------------------------------------------------
def _sdk(api: FakeOpenAIUsageAPI, token: str = SENTINEL_KEY):
    from openai import OpenAI

    return OpenAI(api_key="unused", admin_api_key=token, base_url=api.base_url, max_retries=0, _strict_response_validation=True)


def _sdk_items(client, key: str, project_id: str | None) -> list:
    org = client.admin.organization
    calls = {
        "projects": lambda: org.projects.list(include_archived=True, limit=100),
        "users": lambda: org.users.list(limit=100),
        "project_users": lambda: org.projects.users.list(project_id, limit=100),
        "project_api_keys": lambda: org.projects.api_keys.list(project_id, limit=100, owner_project_access="any"),
        "project_service_accounts": lambda: org.projects.service_accounts.list(project_id, limit=100),
        "admin_api_keys": lambda: org.admin_api_keys.list(limit=100),
        "project_spend_limits": lambda: [org.projects.spend_limit.retrieve(project_id)],
        "project_spend_alerts": lambda: org.projects.spend_alerts.list(project_id, limit=100),
        "project_rate_limits": lambda: org.projects.rate_limits.list_rate_limits(project_id, limit=100),
    }
    return list(calls[key]())  # a SyncCursorPage iterates every page, following `after`


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_the_official_sdk_parses_every_answer_with_strict_types(fake_api, key):
    import openai

    entity = ENTITIES[key]
    assert entity.sdk_call.startswith("client.admin.organization.")
    fake_api.controls.page_size_cap = 3  # the SDK pages too
    client = _sdk(fake_api)
    archived = {p.id for p in client.admin.organization.projects.list(include_archived=True) if p.status == "archived"}
    parsed = 0
    for pid in project_ids(fake_api) if entity.per_project else [None]:
        if entity.skips_archived_projects and pid in archived:
            with pytest.raises(openai.BadRequestError):
                _sdk_items(client, key, pid)
            continue
        try:
            items = _sdk_items(client, key, pid)
        except openai.NotFoundError:
            assert entity.missing_is_empty
            continue
        for item in items:
            assert item.object == entity.object
            raw = item.model_dump(mode="json", exclude_unset=True)
            expected = [o for o in fake_api.api.admin.directory.objects(key, pid) if o.get("id", pid) == raw.get("id", pid)]
            assert expected and raw == expected[0], "the SDK sees exactly what the fake serves"
        parsed += len(items)
    assert parsed


def test_the_sdk_would_refuse_a_wrong_shape_so_strictness_is_real(fake_api):
    import openai

    from airflow_provider_openai_usage.testing.faults import Fault

    fake_api.schedule_faults(Fault("no_data", path="/organization/projects"))
    with pytest.raises(openai.APIResponseValidationError):
        list(_sdk(fake_api).admin.organization.projects.list())


# -- several organizations: one directory per admin key (issue #29) ---------------------------------------
SECOND_KEY = SENTINEL_KEY + "-2"


@pytest.fixture
def two_orgs():
    with FakeOpenAIUsageAPI(key=SENTINEL_KEY, seed=7, now=NOW, organization_count=2) as api:
        yield api


def _directory_ids(api: FakeOpenAIUsageAPI, token: str) -> set[str]:
    projects = project_ids(api, token)
    ids = set(projects) | {u["id"] for u in every_item(api, "/organization/users", (), token)}
    ids |= {k["id"] for k in every_item(api, "/organization/admin_api_keys", (), token)}
    for p in projects:
        ids |= {k["id"] for k in every_item(api, f"/organization/projects/{p}/api_keys", [("owner_project_access", "any")], token)}
    return ids


def test_each_key_reads_its_own_organizations_directory_and_they_share_no_id(two_orgs):
    second = two_orgs.organizations[SECOND_KEY]
    ours, theirs = _directory_ids(two_orgs, SENTINEL_KEY), _directory_ids(two_orgs, SECOND_KEY)
    assert ours and theirs and not ours & theirs
    names = [{p["name"] for p in every_item(two_orgs, "/organization/projects", [("include_archived", "true")], t)} for t in two_orgs.organizations]
    assert not names[0] & names[1], "a report of both organizations tells their projects apart by name"
    # Every id the second organization's usage carries resolves in its own directory, as for the first.
    used = _usage_ids(two_orgs, SECOND_KEY)
    assert all(used.values()) and used["project_id"] <= set(project_ids(two_orgs, SECOND_KEY)) <= theirs
    users = {u["id"] for u in every_item(two_orgs, "/organization/users", (), SECOND_KEY)}
    assert used["user_id"] - users == set(second.removed_users)
    assert get(two_orgs, "/organization/users/user-ada", token=SECOND_KEY).status_code == 404
    assert ok(get(two_orgs, "/organization/users/user-ada-2", token=SECOND_KEY))["id"] == "user-ada-2"
    keys = every_item(two_orgs, "/organization/admin_api_keys", (), SECOND_KEY)
    assert keys[0]["redacted_value"] == SECOND_KEY[:8] + "..." + SECOND_KEY[-4:] and SECOND_KEY not in json.dumps(keys)


def test_directory_edits_and_leaks_stay_in_their_organization(two_orgs):
    two_orgs.admin_for(SECOND_KEY).edits["proj_alpha_2"] = {"name": "Renamed"}
    two_orgs.admin_for(SECOND_KEY).leak_full_key = True
    assert ok(get(two_orgs, "/organization/projects/proj_alpha_2", token=SECOND_KEY))["name"] == "Renamed"
    assert SECOND_KEY in json.dumps(every_item(two_orgs, "/organization/admin_api_keys", (), SECOND_KEY))
    assert SENTINEL_KEY not in json.dumps(every_item(two_orgs, "/organization/admin_api_keys"))
    assert two_orgs.admin_for(SENTINEL_KEY) is two_orgs.api.admin
    assert get(two_orgs, "/organization/projects/proj_alpha_2").status_code == 404, "another organization's project"


def test_the_official_sdk_reads_the_second_organizations_directory_with_strict_types(two_orgs):
    client = _sdk(two_orgs, SECOND_KEY)
    projects = list(client.admin.organization.projects.list(include_archived=True, limit=100))
    assert [p.id for p in projects] == project_ids(two_orgs, SECOND_KEY)
    assert {p.id for p in projects} == set(two_orgs.organizations[SECOND_KEY].projects) | {"proj_sandbox_2", "proj_legacy_2"}
    members = list(client.admin.organization.projects.users.list("proj_beta_2", limit=100))
    assert members and all(m.object == "organization.project.user" for m in members)
