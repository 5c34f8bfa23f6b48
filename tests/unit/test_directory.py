"""The directory registry says what OpenAI's official admin spec says: paths, objects, parameters, columns."""

from __future__ import annotations

import pytest

from airflow_provider_openai_usage.directory import ENTITIES, ENTITY_KEYS, FROM_PROJECT, MAX_LIMIT, get_entity, resolve_entities
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

PINNED = (
    "projects",
    "users",
    "project_users",
    "project_api_keys",
    "project_service_accounts",
    "admin_api_keys",
    "project_spend_limits",
    "project_spend_alerts",
    "project_rate_limits",
)
SPEC_TYPES = {"string": {"string"}, "int64": {"integer"}, "timestamp": {"integer"}, "bool": {"boolean"}, "strings": {"array"}}


def _resolve(spec: dict, node: dict) -> dict:
    while "$ref" in node:
        node = spec["components"]["schemas"][node["$ref"].rsplit("/", 1)[1]]
    return node


def _types(spec: dict, node: dict) -> set[str]:
    """The JSON types a schema node allows (through $ref and anyOf), `null` left out."""
    node = _resolve(spec, node)
    if "anyOf" in node:
        return set().union(*(_types(spec, n) for n in node["anyOf"]))
    found = node.get("type")
    return ({found} if isinstance(found, str) else set(found or ())) - {"null"}


def _property(spec: dict, schema: dict, path: tuple[str, ...]) -> dict:
    node = _resolve(spec, schema)
    for part in path:
        node = _resolve(spec, node)
        if "anyOf" in node:
            node = next(n for n in node["anyOf"] if "properties" in _resolve(spec, n))
            node = _resolve(spec, node)
        node = node["properties"][part]
    return node


def test_the_pinned_entity_keys_in_order():
    assert ENTITY_KEYS == PINNED


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_path_object_and_answer_schema_match_the_spec(admin_spec, key):
    entity = ENTITIES[key]
    operation = admin_spec["paths"][entity.path]["get"]
    answer = operation["responses"]["200"]["content"]["application/json"]["schema"]["$ref"].rsplit("/", 1)[1]
    item = admin_spec["components"]["schemas"][entity.schema]
    assert _property(admin_spec, item, ("object",))["enum"] == [entity.object]
    if entity.paged:
        assert answer == entity.list_schema
        assert admin_spec["components"]["schemas"][answer]["properties"]["data"]["items"]["$ref"].endswith("/" + entity.schema)
        names = {p["name"] for p in operation["parameters"]}
        assert {"limit", "after"} <= names, "the reader pages with limit and after"
    else:
        assert answer == entity.schema
    assert entity.per_project == ("{project_id}" in entity.path)


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_every_parameter_is_the_spec_s_with_its_enum(admin_spec, key):
    entity = ENTITIES[key]
    documented = {p["name"]: p for p in admin_spec["paths"][entity.path]["get"]["parameters"]}
    for param in entity.params:
        assert param.name in documented, param.name
        schema = documented[param.name]["schema"]
        if param.kind == "enum":
            assert tuple(schema["enum"]) == param.enum
        elif param.kind == "bool":
            assert schema["type"] == "boolean"
        else:
            assert schema["type"] == "array" and schema["items"]["type"] == "string"


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_every_column_reads_a_field_the_spec_defines_with_a_matching_type(admin_spec, key):
    entity = ENTITIES[key]
    item = admin_spec["components"]["schemas"][entity.schema]
    for column in entity.columns:
        for path in column.paths:
            if path == (FROM_PROJECT,):
                assert entity.per_project, column.name
                continue
            node = _property(admin_spec, item, path)
            assert _types(admin_spec, node) <= SPEC_TYPES[column.type], (column.name, path)
            if column.type == "timestamp":
                assert "unixtime" in str(node), (column.name, "timestamps are the spec's unixtime integers")


@pytest.mark.parametrize("key", ENTITY_KEYS)
def test_rows_lead_with_project_then_id_and_name_where_the_api_has_one(admin_spec, key):
    entity = ENTITIES[key]
    names = list(entity.column_names)
    if entity.per_project:
        assert names[0] == "project_id"
        names = names[1:]
    assert names[0] == "id"
    item = _resolve(admin_spec, admin_spec["components"]["schemas"][entity.schema])
    assert ("name" in item["properties"]) == ("name" in names)
    assert len(set(entity.column_names)) == len(entity.column_names)


def test_paging_limit_is_the_documented_maximum(admin_spec):
    for entity in ENTITIES.values():
        assert entity.max_limit == MAX_LIMIT == 100
    assert "between 1 and 100" in admin_spec["paths"]["/organization/projects"]["get"]["parameters"][0]["description"]


def test_the_paths_that_refuse_archived_projects_are_skipped_for_them(admin_spec):
    refusing = {
        e.key
        for e in ENTITIES.values()
        if "archived" in str(admin_spec["paths"][e.path]["get"]["responses"].get("400", {}).get("description", ""))
    }
    assert refusing == {e.key for e in ENTITIES.values() if e.skips_archived_projects} == {"project_users", "project_service_accounts"}


def test_unknown_entities_are_refused_with_the_allowed_list():
    with pytest.raises(OpenAIUsageValidationError, match="entity='project' is not .*allowed: projects, users, project_users"):
        get_entity("project")
    with pytest.raises(OpenAIUsageValidationError, match="allowed: projects"):
        get_entity(["projects"])


@pytest.mark.parametrize(
    ("given", "expected"),
    [
        (None, ENTITY_KEYS),
        ("all", ENTITY_KEYS),
        ("users", ("users",)),
        (["project_api_keys", "projects"], ("projects", "project_api_keys")),
        ("['users', 'projects']", ("projects", "users")),
        ("users, projects", ("projects", "users")),
    ],
)
def test_entities_resolve_to_registry_order(given, expected):
    assert resolve_entities(given) == expected


@pytest.mark.parametrize(
    ("given", "match"),
    [
        ([], "non-empty list"),
        (["users", "users"], "repeats"),
        (["userz"], "allowed: projects"),
        (3, "non-empty list"),
        ("[users", "not a list"),
    ],
)
def test_bad_entity_lists_are_refused(given, match):
    with pytest.raises(OpenAIUsageValidationError, match=match):
        resolve_entities(given)
