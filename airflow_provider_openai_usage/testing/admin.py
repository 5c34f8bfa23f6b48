"""The fake API's organization admin paths: the directory of the same seeded organization as usage.

Every project, user and API key id that the fake usage and costs carry resolves here, except the
ones ``FakeOrganization`` marks as gone (``deleted_api_keys``, ``removed_users``), as in real life.
Around them sits a realistic organization: an extra active and an archived project, well over a
hundred users (so the users list needs two pages even at ``limit=100``), memberships, service
accounts and their keys, admin keys, hard spend limits, spend alerts and per-model rate limits.

Paths, item objects and parameters are read from the directory registry; only synthetic-data
choices (names, amounts) live here. Choices where OpenAI documents nothing (docs/fake-api.md):
- a project with no hard spend limit answers ``spend_limit`` with 404 and OpenAI's error body;
- ``users`` and ``service_accounts`` of an archived project answer 400 ("Project is archived"), as
  the spec lists;
- an ``after``/``before`` id the list does not hold is a 400 (the client lost its place);
- ``api_keys`` without ``owner_project_access`` hides keys whose owner lost access, as documented.
"""

from __future__ import annotations

import hashlib
import json
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.directory import ENTITIES, Entity
from airflow_provider_openai_usage.testing.data import DEFAULT_MODELS, FakeOrganization
from airflow_provider_openai_usage.times import DAY

if TYPE_CHECKING:
    from airflow_provider_openai_usage.testing.server import FakeControls

#: 2024-01-01T00:00:00Z: the synthetic organization's history starts here (no wall clock involved).
EPOCH = 1704067200
#: Names of the usage users (data, not API facts); other users get seeded names.
KNOWN_NAMES = {"user-ada": "Ada Lovelace", "user-grace": "Grace Hopper", "user-alan": "Alan Turing", "user-linus": "Linus Torvalds"}
FIRST = ("Maya", "Noah", "Lena", "Omar", "Iris", "Theo", "Zara", "Kai", "Nina", "Ravi", "Elif", "Jon", "Sofia", "Luca", "Mina")
LAST = ("Okafor", "Schmidt", "Tanaka", "Silva", "Novak", "Haddad", "Larsen", "Moreau", "Kowalski", "Reyes", "Chen", "Ibsen")
PROJECT_NAMES = (
    "Support Assistant", "Search Ranking", "Data Labeling", "Sales Copilot", "Docs Q&A", "Fraud Review", "Voice Agent",
    "Growth Experiments", "Sandbox", "Legacy Chatbot", "Translation", "Code Review",
)
#: Directory-only projects beside the usage ones: (id, archived).
EXTRA_PROJECTS = (("proj_sandbox", False), ("proj_legacy", True))
GENERATED_USERS = 116


def _error(message: str, type_: str = "invalid_request_error", param: str | None = None, code: str | None = None) -> bytes:
    return json.dumps({"error": {"message": message, "type": type_, "param": param, "code": code}}).encode()


def _hex(*parts: object) -> str:
    return hashlib.sha256(":".join(map(str, parts)).encode()).hexdigest()


@dataclass(frozen=True)
class Directory:
    """Every object the admin paths serve: ``lists[entity][project_id or None]`` in creation order,
    ``singles[entity][project_id]`` for one-object paths."""

    lists: Mapping[str, Mapping[str | None, tuple[dict[str, Any], ...]]]
    singles: Mapping[str, Mapping[str, dict[str, Any]]]
    archived: frozenset[str]

    def objects(self, entity: str, project_id: str | None = None) -> list[dict[str, Any]]:
        if entity in self.singles:
            obj = self.singles[entity].get(project_id or "")
            return [obj] if obj is not None else []
        return [dict(o) for o in self.lists[entity].get(project_id, ())]


def _tagged(org: FakeOrganization, object_id: str) -> str:
    """A directory-only id of ``org``: as is for the first organization, ``<id>_<number>`` for the
    others (ids are unique across OpenAI's organizations, so two served together share none)."""
    return object_id if org.number == 1 else f"{object_id}_{org.number}"


@lru_cache(maxsize=32)
def build_directory(org: FakeOrganization, admin_key: str) -> Directory:
    """The seeded directory of ``org``; ``admin_key`` is the key the server accepts (listed redacted)."""
    rng = random.Random(int(_hex("directory", org.salt)[:16], 16))

    def at(days: float) -> int:
        return EPOCH + int(days * DAY)

    # -- users ------------------------------------------------------------------------------------
    users: list[dict[str, Any]] = []
    everyone = [u for u in org.users] + [f"user-{_hex(org.salt, 'user', i)[:24]}" for i in range(GENERATED_USERS)]
    for i, uid in enumerate(everyone):
        name = KNOWN_NAMES.get(uid) or f"{rng.choice(FIRST)} {rng.choice(LAST)}"
        email = name.lower().replace(" ", ".") + f"{i}@example.com"
        users.append({"object": "organization.user", "id": uid, "name": name, "email": email,
                      "role": "owner" if i == 0 else rng.choice(("reader", "reader", "owner")), "added_at": at(i * 2.5)})
    user_by_id = {u["id"]: u for u in users}
    listed_users = tuple(u for u in users if u["id"] not in org.removed_users)

    # -- projects ---------------------------------------------------------------------------------
    extra = [(_tagged(org, p), archived) for p, archived in EXTRA_PROJECTS]
    project_ids = [(p, False) for p in org.projects] + [p for p in extra if p[0] not in org.projects]
    projects = []
    for i, (pid, archived) in enumerate(project_ids):
        name = PROJECT_NAMES[i % len(PROJECT_NAMES)] + ("" if org.number == 1 else f" (org {org.number})")
        projects.append({"id": pid, "object": "organization.project", "name": name,
                         "created_at": at(i * 20), "archived_at": at(300 + i) if archived else None,
                         "status": "archived" if archived else "active"})
    archived_ids = frozenset(p for p, a in project_ids if a)

    # -- memberships, service accounts, keys --------------------------------------------------------
    members: dict[str | None, tuple[dict[str, Any], ...]] = {}
    accounts: dict[str | None, tuple[dict[str, Any], ...]] = {}
    keys: dict[str | None, tuple[dict[str, Any], ...]] = {}
    usage_keys = [k for k in org.api_keys if k not in org.deleted_api_keys]
    for p_index, (pid, _archived) in enumerate(project_ids):
        chosen = [u for u in listed_users if rng.random() < 0.3] or [listed_users[0]]
        members[pid] = tuple(
            {"object": "organization.project.user", "id": u["id"], "name": u["name"], "email": u["email"],
             "role": "owner" if j == 0 else "member", "added_at": at(p_index * 20 + j)} for j, u in enumerate(chosen)
        )
        accounts[pid] = tuple(
            {"object": "organization.project.service_account", "id": f"svc_acct_{_hex(org.salt, pid, 'sa', j)[:20]}",
             "name": f"{pid.removeprefix('proj_')}-{role}-bot", "role": role, "created_at": at(p_index * 20 + 5 + j)}
            for j, role in enumerate(("member", "owner")[: 1 + p_index % 2])
        )
        project_keys: list[dict[str, Any]] = []
        # Each usage key belongs to one project (round robin); every project also has keys of its own.
        own = [k for i, k in enumerate(usage_keys) if i % len(org.projects) == p_index] if pid in org.projects else []
        own += [f"key_{_hex(org.salt, pid, 'key', j)[:16]}" for j in range(2 + p_index % 3)]
        for j, kid in enumerate(own):
            by_account = j % 3 == 1 and accounts[pid]
            if by_account:
                sa = accounts[pid][0]
                owner: dict[str, Any] = {"type": "service_account", "service_account": {
                    "id": sa["id"], "name": sa["name"], "created_at": sa["created_at"], "role": sa["role"]}}
                access = "active"
            else:
                # A key of a user who left keeps working for usage until revoked: its owner has no access.
                removed = [u for u in org.removed_users if u in user_by_id]
                user = user_by_id[removed[0]] if (removed and j == 0 and p_index == 0) else members[pid][j % len(members[pid])]
                gone = user["id"] in org.removed_users
                owner = {"type": "user", "user": {"id": user["id"], "email": user["email"], "name": user["name"],
                                                   "created_at": user["added_at"], "role": "member"}}
                access = "inactive" if gone else "active"
            h = _hex(org.salt, kid)
            project_keys.append({
                "object": "organization.project.api_key", "redacted_value": f"sk-proj-{h[:3]}...{h[3:6]}",
                "name": f"{kid.removeprefix('key_')[:12]} key", "created_at": at(p_index * 20 + 10 + j),
                "last_used_at": None if j == 3 else at(600 + j), "id": kid, "owner_project_access": access, "owner": owner,
            })
        keys[pid] = tuple(project_keys)

    # -- admin keys -----------------------------------------------------------------------------------
    ada = user_by_id[listed_users[0]["id"]]
    admin_keys = (
        {"object": "organization.admin_api_key", "id": _tagged(org, "key_admin_main"), "name": "FinOps pipeline",
         "redacted_value": f"{admin_key[:8]}...{admin_key[-4:]}", "created_at": at(100), "expires_at": None,
         "last_used_at": at(650),
         "owner": {"type": "user", "object": "organization.user", "id": ada["id"], "name": ada["name"],
                   "created_at": ada["added_at"], "role": "owner"}},
        {"object": "organization.admin_api_key", "id": _tagged(org, "key_admin_audit"), "name": "Audit export",
         "redacted_value": "sk-admin...9f2c", "created_at": at(200), "expires_at": at(900), "last_used_at": None,
         "owner": {"type": "service_account", "object": "organization.service_account", "id": _tagged(org, "svc_acct_org_audit"),
                   "name": "audit-exporter", "created_at": at(190), "role": "member"}},
    )

    # -- spend limits, alerts, rate limits ------------------------------------------------------------
    limits: dict[str, dict[str, Any]] = {}
    alerts: dict[str | None, tuple[dict[str, Any], ...]] = {}
    rates: dict[str | None, tuple[dict[str, Any], ...]] = {}
    models = sorted({m for _k, ms in DEFAULT_MODELS.items() for m in ms})
    for p_index, (pid, archived) in enumerate(project_ids):
        # Every other project has a hard limit; the others answer 404 (nothing configured).
        if p_index % 2 == 0 and not archived:
            threshold = 100_000 * (1 + p_index)
            limits[pid] = {"object": "project.spend_limit", "threshold_amount": threshold, "currency": "USD",
                           "interval": "month", "enforcement": {"status": "enforcing" if p_index == 2 else "inactive"}}
            alerts[pid] = tuple(
                {"id": f"alert_{_hex(org.salt, pid, pct)[:12]}", "object": "project.spend_alert",
                 "threshold_amount": threshold * pct // 100, "currency": "USD", "interval": "month",
                 "notification_channel": {"type": "email", "recipients": ["finops@example.com", members[pid][0]["email"]],
                                          "subject_prefix": None if pct == 90 else f"[{pid}]"}}
                for pct in (50, 90)
            )
        rates[pid] = tuple(_rate_limit(model, i) for i, model in enumerate(models))

    return Directory(
        lists={
            "projects": {None: tuple(projects)},
            "users": {None: listed_users},
            "project_users": members,
            "project_service_accounts": accounts,
            "project_api_keys": keys,
            "admin_api_keys": {None: admin_keys},
            "project_spend_alerts": alerts,
            "project_rate_limits": rates,
        },
        singles={"project_spend_limits": limits},
        archived=archived_ids,
    )


def _rate_limit(model: str, i: int) -> dict[str, Any]:
    limit: dict[str, Any] = {"object": "project.rate_limit", "id": f"rl-{model}", "model": model,
                             "max_requests_per_1_minute": 500 * (1 + i % 4), "max_tokens_per_1_minute": 30_000 * (1 + i)}
    if "image" in model or "dall-e" in model:
        limit["max_images_per_1_minute"] = 5 + i
    if "tts" in model or "transcribe" in model or "whisper" in model:
        limit["max_audio_megabytes_per_1_minute"] = 25
    if model.startswith(("gpt-4o-2024", "o3")):
        limit["max_requests_per_1_day"] = 10_000
        limit["batch_1_day_max_input_tokens"] = 2_000_000
    return limit


class BadRequest(Exception):
    def __init__(self, message: str, param: str | None = None) -> None:
        super().__init__(message)
        self.param = param


# Which registry entity a concrete path is, plus the retrieve-one paths the SDK also offers.
_ROUTES: list[tuple[re.Pattern[str], str]] = [
    (re.compile("^/v1" + re.escape(e.path).replace(re.escape("{project_id}"), "(?P<project_id>[^/]+)") + "$"), e.key)
    for e in ENTITIES.values()
] + [
    (re.compile(r"^/v1/organization/projects/(?P<project_id>[^/]+)$"), "projects/retrieve"),
    (re.compile(r"^/v1/organization/users/(?P<user_id>[^/]+)$"), "users/retrieve"),
]
#: Query parameters a list path knows beyond the entity's own: paging. ``before`` only where the spec has it.
_BEFORE = {"project_spend_alerts", "project_rate_limits"}


class AdminAPI:
    """Request → response for the admin paths; ``handle`` is called after the key was checked."""

    def __init__(self, org: FakeOrganization, key: str, controls: FakeControls) -> None:
        self.org = org
        self.key = key
        self.controls = controls
        #: Attack knob: answers carry a full key (project keys get a full-looking key, the admin key list
        #: the server's real key) so tests prove that nothing of it can land.
        self.leak_full_key = False
        #: Field overrides by object id, applied when serving: a renamed project, a revoked key's new state.
        self.edits: dict[str, dict[str, Any]] = {}

    @property
    def directory(self) -> Directory:
        return build_directory(self.org, self.key)

    @staticmethod
    def route(path: str) -> tuple[str, dict[str, str]] | None:
        for pattern, name in _ROUTES:
            match = pattern.match(path.rstrip("/"))
            if match:
                return name, match.groupdict()
        return None

    def handle(self, route: tuple[str, dict[str, str]], query: list[tuple[str, str]]) -> tuple[int, dict[str, str], bytes]:
        name, args = route
        directory = self.directory
        project_id = args.get("project_id")
        projects = {p["id"]: p for p in directory.lists["projects"][None]}
        if project_id is not None and project_id not in projects:
            return 404, {}, _error(f"No such project: {project_id}", param="project_id", code="not_found")
        try:
            if name == "projects/retrieve":
                self._parse(None, query)
                return 200, {}, json.dumps(self._edited(projects[project_id or ""])).encode()
            if name == "users/retrieve":
                self._parse(None, query)
                found = [u for u in directory.lists["users"][None] if u["id"] == args["user_id"]]
                if not found:
                    return 404, {}, _error(f"No such user: {args['user_id']}", param="user_id", code="not_found")
                return 200, {}, json.dumps(found[0]).encode()
            entity = ENTITIES[name]
            params = self._parse(entity, query)
            if entity.skips_archived_projects and project_id in directory.archived:
                return 400, {}, _error(f"Project {project_id} is archived.", param="project_id")
            if not entity.paged:
                obj = directory.singles[entity.key].get(project_id or "")
                if obj is None:
                    return 404, {}, _error(f"No hard spend limit is set for project {project_id}.", code="not_found")
                return 200, {}, json.dumps(obj).encode()
            return 200, {}, json.dumps(self._page(entity, directory.objects(entity.key, project_id), params)).encode()
        except BadRequest as exc:
            return 400, {}, _error(str(exc), param=exc.param)

    def _parse(self, entity: Entity | None, query: list[tuple[str, str]]) -> dict[str, Any]:
        known: dict[str, str] = {}
        if entity is not None:
            known = {"limit": "scalar", "after": "scalar"} | ({"before": "scalar"} if entity.key in _BEFORE else {})
            known |= {p.name: ("list" if p.kind == "strings" else "scalar") for p in entity.params}
        out: dict[str, Any] = {}
        for raw, value in query:
            name = raw.removesuffix("[]")
            kind = known.get(name)
            if kind is None:
                raise BadRequest(f"Unrecognized request argument supplied: {raw}", raw)
            if kind == "list":
                out.setdefault(name, []).extend(v for v in value.split(",") if v)
            elif name in out:
                raise BadRequest(f"Parameter '{name}' must be given once.", name)
            else:
                out[name] = value
        if entity is None:
            return out
        low = 0 if entity.key == "project_spend_alerts" else 1
        try:
            out["limit"] = int(out.get("limit", 100 if entity.key == "project_rate_limits" else 20))
        except ValueError:
            raise BadRequest(f"Invalid 'limit': expected an integer, got {out['limit']!r}.", "limit") from None
        if not low <= out["limit"] <= entity.max_limit:
            raise BadRequest(f"Invalid 'limit': {out['limit']}. It must be between {low} and {entity.max_limit}.", "limit")
        for p in entity.params:
            if p.name in out and p.kind == "bool" and out[p.name] not in ("true", "false"):
                raise BadRequest(f"Invalid '{p.name}': expected true or false, got {out[p.name]!r}.", p.name)
            if p.name in out and p.kind == "enum" and out[p.name] not in p.enum:
                raise BadRequest(f"Invalid '{p.name}' value {out[p.name]!r}. Supported values are: {', '.join(p.enum)}.", p.name)
        return out

    def _edited(self, obj: dict[str, Any]) -> dict[str, Any]:
        return {**obj, **self.edits[obj["id"]]} if obj.get("id") in self.edits else obj

    def _page(self, entity: Entity, items: list[dict[str, Any]], params: Mapping[str, Any]) -> dict[str, Any]:
        items = [self._edited(o) for o in items]
        if entity.key == "projects" and params.get("include_archived") != "true":
            items = [p for p in items if p["status"] != "archived"]
        if entity.key == "users" and params.get("emails"):
            items = [u for u in items if u["email"] in params["emails"]]
        if entity.key == "project_api_keys":
            access = params.get("owner_project_access")
            if access != "any":
                items = [k for k in items if k["owner_project_access"] == (access or "active")]
            if self.leak_full_key and items:
                items[0] = {**items[0], "redacted_value": "sk-proj-" + _hex("leak", items[0]["id"])[:48]}
        if entity.key == "admin_api_keys" and self.leak_full_key:
            items = [{**items[0], "redacted_value": self.key}] + items[1:]
        if params.get("order") == "desc":
            items = items[::-1]
        ids = [o["id"] for o in items]
        start, end = 0, len(items)
        for cursor in ("after", "before"):
            if cursor in params:
                if params[cursor] not in ids:
                    raise BadRequest(f"Invalid '{cursor}': no object {params[cursor]!r} in this list.", cursor)
                if cursor == "after":
                    start = ids.index(params[cursor]) + 1
                else:
                    end = ids.index(params[cursor])
        size = params["limit"] if self.controls.page_size_cap is None else min(params["limit"], self.controls.page_size_cap)
        if "before" in params and "after" not in params:
            start = max(start, end - size)
        chosen = items[start : min(end, start + size)]
        return {
            "object": "list",
            "data": chosen,
            "first_id": chosen[0]["id"] if chosen else None,
            "last_id": chosen[-1]["id"] if chosen else None,
            "has_more": start + len(chosen) < end,
        }
