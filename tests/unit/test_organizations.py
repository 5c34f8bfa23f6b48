"""The organization level: ids that may become folders, listing, the single-organization check, and
how a connection's organization is found (extra, or the Costs API) and refused on mismatch."""

from __future__ import annotations

from pathlib import Path

import pytest
from conftest import DAY, FAKE_ORG, NOW, ORG_DIR
from storage_support import object_path

from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.organizations import (
    check_connection_ids,
    check_no_single_organization_days,
    check_organization_id,
    duplicate_organizations,
    landed_organizations,
    organization_folder,
    organization_root,
    single_organization_days,
)


@pytest.mark.parametrize("good", ["org-AbC123", FAKE_ORG, "org-a_b-c", "org-" + "x" * 100])
def test_organization_ids_of_openai_s_shape_are_accepted(good):
    assert check_organization_id(good) == good
    assert organization_folder(good) == f"organization={good}"


@pytest.mark.parametrize(
    "bad", ["", "org-", "AbC123", "org-../../etc", "org-a/b", "org-<script>", "org-a b", " org-a", "org-" + "x" * 101, None, 7, ["org-a"]]
)
def test_anything_else_is_refused_naming_the_value_before_it_can_become_a_folder(bad, tmp_path):
    with pytest.raises(OpenAIUsageValidationError, match=r"organization_id=.* is not an OpenAI organization id"):
        check_organization_id(bad)
    with pytest.raises(OpenAIUsageValidationError):
        organization_root(object_path(tmp_path), bad)  # type: ignore[arg-type]
    assert list(tmp_path.iterdir()) == []


def test_landed_organizations_lists_only_folders_this_provider_writes(tmp_path: Path):
    root = tmp_path / "costs"
    assert landed_organizations(object_path(root)) == []  # no dataset folder yet
    for name in ("organization=org-B", "organization=org-A", "organization=../x", "organization=", "date=2025-11-01", "_openai_usage"):
        (root / name).mkdir(parents=True)
    (root / "organization=org-file").write_text("a file, listed as a name only")
    assert landed_organizations(object_path(root)) == ["org-A", "org-B", "org-file"]
    assert single_organization_days(object_path(root)) == ["date=2025-11-01"]


def test_a_single_organization_lake_is_refused_with_the_command_that_moves_it(tmp_path: Path):
    root = tmp_path / "costs"
    check_no_single_organization_days(object_path(root), output_path=str(tmp_path))  # nothing there: fine
    (root / ORG_DIR / "date=2025-11-01").mkdir(parents=True)
    check_no_single_organization_days(object_path(root), output_path=str(tmp_path))  # the new layout: fine
    (root / "date=2025-11-02").mkdir()
    with pytest.raises(OpenAIUsageValidationError, match=r"1 days in the single-organization layout.*move-to-organization --output-path"):
        check_no_single_organization_days(object_path(root), output_path=str(tmp_path))


def test_duplicates_and_bad_connection_lists():
    assert duplicate_organizations({"a": "org-1", "b": "org-2", "c": "org-1", "d": None, "e": None}) == {"org-1": ["a", "c"]}
    assert check_connection_ids(["a", "b.c", "d-e_f"]) == ["a", "b.c", "d-e_f"]
    with pytest.raises(OpenAIUsageValidationError, match=r"names 'a' more than once"):
        check_connection_ids(["a", "b", "a"])
    with pytest.raises(OpenAIUsageValidationError, match=r"names no connection"):
        check_connection_ids([])
    with pytest.raises(OpenAIUsageValidationError, match=r"has 'a b', which is not a connection id"):
        check_connection_ids(["a b"])


# -- the hook: which organization a connection reads ---------------------------------------------------
def _connect(fake_api, monkeypatch, **extra) -> OpenAIUsageHook:
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(max_retries=1, backoff_base=0.01, **extra))
    return OpenAIUsageHook()


def test_the_extra_is_the_organization_without_any_request(fake_api, monkeypatch):
    hook = _connect(fake_api, monkeypatch)
    fake_api.clear_requests()
    assert hook.organization_id() == FAKE_ORG
    assert fake_api.requests == []


def test_without_the_extra_the_costs_api_tells_it_in_one_request_of_the_server_s_last_180_days(fake_api, monkeypatch):
    hook = _connect(fake_api, monkeypatch, organization_id=None)
    fake_api.clear_requests()
    assert hook.organization_id() == FAKE_ORG
    asked = [r for r in fake_api.requests if r.status == 200]
    assert asked and all(r.path.endswith("/organization/costs") for r in fake_api.requests)
    last = asked[-1].params()
    assert int(last["start_time"][0]) == NOW - NOW % DAY - 179 * DAY and last["limit"] == ["180"]


def test_verify_refuses_an_extra_that_names_another_organization(fake_api, monkeypatch):
    hook = _connect(fake_api, monkeypatch, organization_id="org-NotThisOne")
    assert hook.organization_id() == "org-NotThisOne"  # trusted without a request...
    with pytest.raises(OpenAIUsageValidationError, match=r"says organization_id='org-NotThisOne', but its key reads organization 'org-FakeUsage"):
        hook.organization_id(verify=True)  # ...and refused once the API is asked


def test_an_organization_without_costs_needs_the_extra(fake_api, monkeypatch):
    fake_api.controls.available_until = NOW - 400 * DAY  # nothing reported in the last 180 days
    hook = _connect(fake_api, monkeypatch, organization_id=None)
    with pytest.raises(OpenAIUsageValidationError, match=r"has no organization_id extra and the Costs API reported no organization"):
        hook.organization_id()
    assert _connect(fake_api, monkeypatch).organization_id(verify=True) == FAKE_ORG  # the extra is used when the API cannot tell


def test_an_answer_naming_a_bad_or_two_organizations_is_refused(fake_api, monkeypatch):
    hook = _connect(fake_api, monkeypatch, organization_id=None)
    original = fake_api.api.page

    def two_orgs(endpoint, query, org=None):
        page = original(endpoint, query, org)
        results = [r for b in page["data"] for r in b["results"]]
        if results:
            results[0]["organization_id"], results[-1]["organization_id"] = "org-One", "org-Two"
        return page

    fake_api.api.page = two_orgs
    with pytest.raises(OpenAIUsageResponseError, match=r"several organizations \[.*'org-One', 'org-Two'\]"):
        hook.organization_id()

    def bad_org(endpoint, query, org=None):
        page = original(endpoint, query, org)
        for b in page["data"]:
            for r in b["results"]:
                r["organization_id"] = "../../etc"
        return page

    fake_api.api.page = bad_org
    with pytest.raises(OpenAIUsageResponseError, match=r"organization_id='../../etc' is not an OpenAI organization id"):
        hook.organization_id()
