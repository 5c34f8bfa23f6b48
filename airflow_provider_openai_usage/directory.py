"""The directory registry: every per-entity fact of OpenAI's organization admin API, once.

Usage and costs rows carry ids only (``proj_…``, ``user-…``, ``key_…``); these entities name them.
Hook paging (``hooks/directory_paging.py``), the rows and their Parquet schema
(``directory_rows.py``), the operator, the fake API (``testing/admin.py``) and the docs all read
these entries; none of them may hard-code a path, a parameter or a column. Adding an entity is one
entry here.

Facts come from OpenAI's official OpenAPI spec (github.com/openai/openai-openapi, kept as facts in ``tests/data/openai_spec/admin.json``):
``paths./organization/...`` for paths and parameters, ``components.schemas`` for the columns.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Literal

DirectoryColumnType = Literal["string", "int64", "bool", "timestamp", "strings"]
ParamKind = Literal["bool", "strings", "enum"]

#: Where a column's value comes from when the API object does not carry it: the project the
#: fan-out asked about (``project_spend_limits`` objects have no id and no project field).
FROM_PROJECT = "@project_id"
#: The API's documented maximum page size on every list path (``limit`` 1–100).
MAX_LIMIT = 100


@dataclass(frozen=True)
class DirectoryColumn:
    """One output column and where the API object holds it.

    ``sources`` are paths inside the object; the first one present wins (an API key's owner is a
    ``user`` *or* a ``service_account``). Timestamps are Unix seconds in rows and ``timestamp`` in
    Parquet; ``strings`` is a list of strings (Parquet ``list<string>``).
    """

    name: str
    type: DirectoryColumnType
    sources: tuple[tuple[str, ...], ...] = ()
    description: str = ""

    @property
    def paths(self) -> tuple[tuple[str, ...], ...]:
        return self.sources or ((self.name,),)


@dataclass(frozen=True)
class DirectoryParam:
    """A query parameter a caller may pass, and what the directory sends when they pass nothing."""

    name: str
    kind: ParamKind
    enum: tuple[str, ...] = ()
    #: Sent when the caller leaves the parameter out; chosen so a snapshot is complete.
    default: Any = None
    description: str = ""


@dataclass(frozen=True)
class Entity:
    key: str
    title: str
    #: The API path; ``{project_id}`` marks a per-project path read once per project (fan-out).
    path: str
    #: The ``object`` every item carries (the spec's const).
    object: str
    #: ``components.schemas`` names: the item, and the list answer (None: the path answers one object).
    schema: str
    list_schema: str | None
    columns: tuple[DirectoryColumn, ...]
    params: tuple[DirectoryParam, ...] = ()
    #: The usage/costs dimensions whose ids this entity names (docs and join recipes).
    names: tuple[str, ...] = ()
    #: The spec documents "400 when project is archived" for this path: archived projects are skipped.
    skips_archived_projects: bool = False
    #: A 404 means "nothing configured" (no hard spend limit), not an error: the project gets no row.
    missing_is_empty: bool = False
    #: The official SDK call that reads the same path (docs; tests call it).
    sdk_call: str = ""

    @property
    def per_project(self) -> bool:
        return "{project_id}" in self.path

    @property
    def paged(self) -> bool:
        return self.list_schema is not None

    @property
    def max_limit(self) -> int:
        return MAX_LIMIT

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(c.name for c in self.columns)

    @property
    def param_names(self) -> tuple[str, ...]:
        """What ``iter_directory(entity, **params)`` accepts: the API's filters, plus the fan-out's."""
        return tuple(p.name for p in self.params) + (("project_ids",) if self.per_project else ())

    def param(self, name: str) -> DirectoryParam:
        return next(p for p in self.params if p.name == name)

    def path_for(self, project_id: str | None = None) -> str:
        if self.per_project:
            if not project_id:
                raise ValueError(f"{self.key} is read per project; a project id is required")
            return self.path.replace("{project_id}", project_id)
        return self.path


def _s(name: str, *sources: tuple[str, ...], description: str = "") -> DirectoryColumn:
    return DirectoryColumn(name, "string", sources, description)


def _i(name: str, *sources: tuple[str, ...], description: str = "") -> DirectoryColumn:
    return DirectoryColumn(name, "int64", sources, description)


def _t(name: str, *sources: tuple[str, ...], description: str = "") -> DirectoryColumn:
    return DirectoryColumn(name, "timestamp", sources, description)


PROJECT_ID = _s("project_id", (FROM_PROJECT,), description="the project this row was read for (fan-out)")
ORDER = DirectoryParam("order", "enum", ("asc", "desc"), description="order by creation time; a snapshot holds all either way")

_ENTITY_LIST: tuple[Entity, ...] = (
    Entity(
        key="projects",
        title="Projects",
        path="/organization/projects",
        object="organization.project",
        schema="Project",
        list_schema="ProjectListResponse",
        columns=(
            _s("id"), _s("name"), _s("status", description="`active` or `archived`"), _t("created_at"), _t("archived_at"),
            _s("external_key_id"), _s("residency"),
        ),
        params=(
            DirectoryParam(
                "include_archived", "bool", default=True,
                description="archived projects still carry usage history, so the directory asks for them by default",
            ),
        ),
        names=("project_id",),
        sdk_call="client.admin.organization.projects.list()",
    ),
    Entity(
        key="users",
        title="Users",
        path="/organization/users",
        object="organization.user",
        schema="User",
        list_schema="UserListResponse",
        columns=(_s("id"), _s("name"), _s("email"), _s("role", description="`owner` or `reader`"), _t("added_at")),
        params=(DirectoryParam("emails", "strings", description="only the users with these email addresses"),),
        names=("user_id",),
        sdk_call="client.admin.organization.users.list()",
    ),
    Entity(
        key="project_users",
        title="ProjectUsers",
        path="/organization/projects/{project_id}/users",
        object="organization.project.user",
        schema="ProjectUser",
        list_schema="ProjectUserListResponse",
        columns=(PROJECT_ID, _s("id"), _s("name"), _s("email"), _s("role", description="`owner` or `member`"), _t("added_at")),
        names=("project_id", "user_id"),
        skips_archived_projects=True,
        sdk_call="client.admin.organization.projects.users.list(project_id)",
    ),
    Entity(
        key="project_api_keys",
        title="ProjectApiKeys",
        path="/organization/projects/{project_id}/api_keys",
        object="organization.project.api_key",
        schema="ProjectApiKey",
        list_schema="ProjectApiKeyListResponse",
        columns=(
            PROJECT_ID, _s("id"), _s("name"), _s("redacted_value", description="the only form of a key ever stored"),
            _t("created_at"), _t("last_used_at"), _s("owner_project_access"),
            _s("owner_type", ("owner", "type"), description="`user` or `service_account`"),
            _s("owner_id", ("owner", "user", "id"), ("owner", "service_account", "id")),
            _s("owner_name", ("owner", "user", "name"), ("owner", "service_account", "name")),
            _s("owner_email", ("owner", "user", "email"), description="users only"),
            _s("owner_role", ("owner", "user", "role"), ("owner", "service_account", "role")),
        ),
        params=(
            DirectoryParam(
                "owner_project_access", "enum", ("active", "inactive", "any"), default="any",
                description="left out, OpenAI hides keys whose owner lost access; their usage still needs an owner, so `any` is sent",
            ),
        ),
        names=("api_key_id",),
        sdk_call="client.admin.organization.projects.api_keys.list(project_id)",
    ),
    Entity(
        key="project_service_accounts",
        title="ProjectServiceAccounts",
        path="/organization/projects/{project_id}/service_accounts",
        object="organization.project.service_account",
        schema="ProjectServiceAccount",
        list_schema="ProjectServiceAccountListResponse",
        columns=(PROJECT_ID, _s("id"), _s("name"), _s("role", description="`owner`, `member` or `none`"), _t("created_at")),
        skips_archived_projects=True,
        sdk_call="client.admin.organization.projects.service_accounts.list(project_id)",
    ),
    Entity(
        key="admin_api_keys",
        title="AdminApiKeys",
        path="/organization/admin_api_keys",
        object="organization.admin_api_key",
        schema="AdminApiKey",
        list_schema="ApiKeyList",
        columns=(
            _s("id"), _s("name"), _s("redacted_value", description="the only form of a key ever stored"), _t("created_at"),
            _t("expires_at"), _t("last_used_at"), _s("owner_type", ("owner", "type")), _s("owner_id", ("owner", "id")),
            _s("owner_name", ("owner", "name")), _s("owner_role", ("owner", "role")),
        ),
        params=(ORDER,),
        sdk_call="client.admin.organization.admin_api_keys.list()",
    ),
    Entity(
        key="project_spend_limits",
        title="ProjectSpendLimits",
        path="/organization/projects/{project_id}/spend_limit",
        object="project.spend_limit",
        schema="ProjectSpendLimitResource",
        list_schema=None,
        columns=(
            PROJECT_ID,
            _s(
                "id",
                (FROM_PROJECT,),
                description="the API's object has no id; a project has at most one hard limit, so its id is the project's",
            ),
            _i("threshold_amount", description="in cents"), _s("currency"), _s("interval"),
            _s("enforcement_status", ("enforcement", "status"), description="`inactive` or `enforcing`"),
        ),
        names=("project_id",),
        missing_is_empty=True,
        sdk_call="client.admin.organization.projects.spend_limit.retrieve(project_id)",
    ),
    Entity(
        key="project_spend_alerts",
        title="ProjectSpendAlerts",
        path="/organization/projects/{project_id}/spend_alerts",
        object="project.spend_alert",
        schema="ProjectSpendAlert",
        list_schema="ProjectSpendAlertListResource",
        columns=(
            PROJECT_ID, _s("id"), _i("threshold_amount", description="in cents"), _s("currency"), _s("interval"),
            _s("notification_type", ("notification_channel", "type")),
            DirectoryColumn("notification_recipients", "strings", (("notification_channel", "recipients"),)),
            _s("notification_subject_prefix", ("notification_channel", "subject_prefix")),
        ),
        params=(ORDER,),
        sdk_call="client.admin.organization.projects.spend_alerts.list(project_id)",
    ),
    Entity(
        key="project_rate_limits",
        title="ProjectRateLimits",
        path="/organization/projects/{project_id}/rate_limits",
        object="project.rate_limit",
        schema="ProjectRateLimit",
        list_schema="ProjectRateLimitListResponse",
        columns=(
            PROJECT_ID, _s("id"), _s("model"), _i("max_requests_per_1_minute"), _i("max_tokens_per_1_minute"),
            _i("max_images_per_1_minute"), _i("max_audio_megabytes_per_1_minute"), _i("max_requests_per_1_day"),
            _i("batch_1_day_max_input_tokens"),
        ),
        sdk_call="client.admin.organization.projects.rate_limits.list_rate_limits(project_id)",
    ),
)

ENTITIES: Mapping[str, Entity] = MappingProxyType({e.key: e for e in _ENTITY_LIST})
ENTITY_KEYS: tuple[str, ...] = tuple(ENTITIES)


def get_entity(key: Any) -> Entity:
    """Look an entity up, failing with the list of valid keys (a teaching error)."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    try:
        return ENTITIES[key]
    except (KeyError, TypeError):
        raise OpenAIUsageValidationError(
            f"entity={key!r} is not an OpenAI directory entity; allowed: {', '.join(ENTITY_KEYS)}"
        ) from None


def resolve_entities(entities: Any) -> tuple[str, ...]:
    """``None``, ``"all"`` or a list of keys → the keys in registry order, checked (DAG-parse time)."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    if isinstance(entities, str):
        text = entities.strip()
        if text.startswith("["):
            # A Jinja-rendered list ("['projects', 'users']") arrives as its text.
            import ast

            try:
                entities = ast.literal_eval(text)
            except (ValueError, SyntaxError):
                raise OpenAIUsageValidationError(
                    f"entities={text!r} is not a list of entity keys; allowed: {', '.join(ENTITY_KEYS)}"
                ) from None
        else:
            entities = [e.strip() for e in text.split(",") if e.strip()] or [text]
    if entities is None or entities == "all" or entities == ["all"]:
        return ENTITY_KEYS
    if not isinstance(entities, (list, tuple)) or not entities:
        raise OpenAIUsageValidationError(
            f"entities={entities!r} must be 'all' or a non-empty list of entity keys; allowed: {', '.join(ENTITY_KEYS)}"
        )
    for key in entities:
        get_entity(key)
    if len(set(entities)) != len(entities):
        raise OpenAIUsageValidationError(f"entities={list(entities)!r} repeats an entity")
    return tuple(k for k in ENTITY_KEYS if k in entities)
