"""API objects → typed rows: the spec's own examples parse, wrong types and full keys are refused."""

from __future__ import annotations

import logging

import json

import pytest

from airflow_provider_openai_usage.directory import ENTITIES, ENTITY_KEYS
from airflow_provider_openai_usage.directory_rows import arrow_schema, object_row, rows_table
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError


def spec_example(admin_spec: dict, key: str) -> dict:
    """The spec's own example object of the entity (x-oaiMeta.example, or the path's response example)."""
    entity = ENTITIES[key]
    schema = admin_spec["components"]["schemas"][entity.schema]
    if "x-oaiMeta" in schema:
        return json.loads(schema["x-oaiMeta"]["example"])
    return json.loads(admin_spec["paths"][entity.path]["get"]["x-oaiMeta"]["examples"]["response"])


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_the_spec_s_example_of_every_entity_becomes_a_row(admin_spec, key):
    entity = ENTITIES[key]
    example = spec_example(admin_spec, key)
    row = object_row(entity, example, "proj_abc" if entity.per_project else None)
    assert tuple(row) == entity.column_names
    assert row["id"] == example.get("id", "proj_abc")
    if "name" in row:
        assert row["name"] == example.get("name")
    table = rows_table(entity, [row])
    assert table.schema == arrow_schema(entity) and table.num_rows == 1


def test_owner_columns_read_a_user_or_a_service_account(admin_spec):
    entity = ENTITIES["project_api_keys"]
    user_owned = spec_example(admin_spec, "project_api_keys")
    row = object_row(entity, user_owned, "proj_abc")
    assert (row["owner_type"], row["owner_id"], row["owner_email"]) == ("user", "user_abc", "user@example.com")
    sa_owned = {
        **user_owned,
        "owner": {"type": "service_account", "service_account": {"id": "svc_acct_1", "name": "bot", "created_at": 1, "role": "member"}},
    }
    row = object_row(entity, sa_owned, "proj_abc")
    assert (row["owner_type"], row["owner_id"], row["owner_name"], row["owner_email"]) == ("service_account", "svc_acct_1", "bot", None)


def test_spend_alert_recipients_are_a_typed_list(admin_spec):
    entity = ENTITIES["project_spend_alerts"]
    row = object_row(entity, spec_example(admin_spec, "project_spend_alerts"), "proj_abc")
    assert row["notification_recipients"] == ["finance@example.com"]
    assert str(arrow_schema(entity).field("notification_recipients").type) == "list<item: string>"
    assert str(arrow_schema(entity).field("created_at" if "created_at" in entity.column_names else "threshold_amount").type) == "int64"


def test_timestamps_are_utc_timestamps_in_arrow_and_unix_seconds_in_rows():
    entity = ENTITIES["projects"]
    row = object_row(
        entity,
        {"object": "organization.project", "id": "proj_1", "name": "A", "created_at": 1711471533, "archived_at": None, "status": "active"},
    )
    assert row["created_at"] == 1711471533
    table = rows_table(entity, [row])
    assert str(table.schema.field("created_at").type) == "timestamp[ms, tz=UTC]"
    assert table.column("created_at")[0].as_py().isoformat() == "2024-03-26T16:45:33+00:00"
    assert not table.schema.field("id").nullable


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"object": "organization.user"}, "is not 'organization.project'"),
        ({"name": 7}, "name=7 .* is not a string"),
        ({"created_at": "2024-01-01"}, "is not a timestamp"),
        ({"created_at": True}, "is not a timestamp"),
        ({"created_at": 2**64}, "is not a timestamp"),
        ({"id": None}, "has no id"),
        ({"id": ""}, "has no id"),
    ],
)
def test_objects_of_the_wrong_shape_are_refused(change, match):
    obj = {"object": "organization.project", "id": "proj_1", "name": "A", "created_at": 1, "archived_at": None, "status": "active"}
    with pytest.raises(OpenAIUsageResponseError, match=match):
        object_row(ENTITIES["projects"], {**obj, **change})
    with pytest.raises(OpenAIUsageResponseError, match="expected an object"):
        object_row(ENTITIES["projects"], ["proj_1"])


FULL = "sk-proj-" + "A1b2C3d4" * 6
SECRET = "sk-admin-SENTINEL-test-key-0123456789abcdef"


@pytest.mark.parametrize(
    ("where", "value"),
    [
        ("redacted_value", FULL),
        ("name", f"copied {FULL} here"),
        ("redacted_value", SECRET),
        ("owner.user.name", SECRET),
        ("name", "sk-legacyKEYwithoutDashes0123456789abcdefghij"),
    ],
)
def test_a_full_key_anywhere_in_an_object_is_scrubbed_without_repeating_it(where, value, caplog):
    obj = {
        "object": "organization.project.api_key",
        "redacted_value": "sk-abc...def",
        "name": "k",
        "created_at": 1,
        "last_used_at": None,
        "id": "key_1",
        "owner_project_access": "active",
        "owner": {"type": "user", "user": {"id": "user_1", "email": "a@b.c", "name": "A", "created_at": 1, "role": "owner"}},
    }
    node = obj
    *parents, last = where.split(".")
    for part in parents:
        node = node[part]
    node[last] = value
    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_usage.directory_rows"):
        row = object_row(ENTITIES["project_api_keys"], obj, "proj_1", secrets=(SECRET,))
    assert value not in repr(row) and "A1b2C3d4A1b2C3d4" not in repr(row) and "0123456789abcdef" not in repr(row)
    assert "sk-...[redacted]" in repr(row) and row["id"] == "key_1", "scrubbed, not refused (#26 item 12)"
    (warning,) = [r.getMessage() for r in caplog.records]
    assert where in warning and "'key_1'" in warning and value not in warning and "0123456789abcdef" not in warning


@pytest.mark.parametrize("redacted", ["sk-abc...def", "sk-admin...cdef", "sk-proj-****abcd", "sk-svcacct-...xyz9"])
def test_redacted_values_pass(redacted):
    obj = {
        "object": "organization.admin_api_key",
        "id": "key_1",
        "name": None,
        "redacted_value": redacted,
        "created_at": 1,
        "expires_at": None,
        "owner": {"type": "user", "id": "user_1", "name": "A", "created_at": 1, "role": "owner"},
    }
    assert object_row(ENTITIES["admin_api_keys"], obj, secrets=(SECRET,))["redacted_value"] == redacted


def test_the_connection_s_own_key_is_scrubbed_even_when_it_does_not_look_like_one():
    odd = "custom-gateway-token-42"
    obj = {"object": "organization.user", "id": "user_1", "name": f"x {odd}", "email": None, "role": None, "added_at": 1}
    assert object_row(ENTITIES["users"], obj, secrets=(odd,))["name"] == "x sk-...[redacted]"


def test_a_full_key_in_an_id_is_scrubbed_and_a_name_shaped_like_a_key_is_kept(caplog):
    """#26 item 12: the warning never repeats a key that sits in an id, and a member naming a key
    ``sk-proj-backend-prod-service-key`` cannot block the snapshot (nor lose the name)."""
    obj = {"object": "organization.user", "id": FULL, "name": "sk-proj-backend-prod-service-key", "email": None,
           "role": None, "added_at": 1}
    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_usage.directory_rows"):
        row = object_row(ENTITIES["users"], obj)
    assert row["id"] == "sk-...[redacted]" and row["name"] == "sk-proj-backend-prod-service-key"
    assert FULL not in caplog.text and "A1b2C3d4A1b2" not in caplog.text and "'id'" not in caplog.text.split("field(s)")[0]
