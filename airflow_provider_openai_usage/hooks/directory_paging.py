"""Paging of the directory (admin API) paths, through the hook's one request path.

Unlike usage's opaque ``page`` cursor, these lists page by object id: the next page is the same
query plus ``after=<last_id>``. Every request asks for the documented maximum (``limit=100``), so
an entity costs ``ceil(objects / 100)`` requests, per project for per-project entities. The project
list is read once per reader and shared by every per-project entity (the fan-out).

Every request goes through ``OpenAIUsageHook.get_json``: auth, deadlines, retries of the failed
page within one retry budget for the whole read, error translation and secret scrubbing are the
hook's, not repeated here.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.directory import Entity, get_entity
from airflow_provider_openai_usage.directory_rows import object_row
from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)

if TYPE_CHECKING:
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook, RetryBudget

#: Parameters the reader owns: refused from callers with the reason.
PAGING_PARAMS = ("limit", "after", "before")


@dataclass(frozen=True)
class DirectoryQuery:
    """A validated ``iter_directory`` call: refused here, before any request, or read as is."""

    entity: Entity
    params: tuple[tuple[str, str], ...]
    project_ids: tuple[str, ...] | None

    @classmethod
    def build(cls, entity: str, **params: Any) -> DirectoryQuery:
        ent = get_entity(entity)
        allowed = ", ".join(ent.param_names) or "(none)"
        out: list[tuple[str, str]] = []
        project_ids: tuple[str, ...] | None = None
        for name, value in params.items():
            if name in PAGING_PARAMS:
                raise OpenAIUsageValidationError(
                    f"{name}={value!r}: the directory pages by itself (limit={ent.max_limit}, after=<last id>) so every "
                    f"object is read once with the fewest requests; leave it out. Parameters of {ent.key}: {allowed}"
                )
            if name not in ent.param_names:
                raise OpenAIUsageValidationError(f"parameter {name!r} is not accepted by entity {ent.key!r}; allowed: {allowed}")
            if value is None:
                continue
            if name == "project_ids":
                project_ids = _strings(ent, name, value)
                if len(set(project_ids)) != len(project_ids):
                    raise OpenAIUsageValidationError(f"{ent.key}: project_ids={list(project_ids)!r} repeats a project")
                continue
            spec = ent.param(name)
            if spec.kind == "bool":
                if not isinstance(value, bool):
                    raise OpenAIUsageValidationError(f"{ent.key}: {name}={value!r} must be True or False")
                out.append((name, "true" if value else "false"))
            elif spec.kind == "enum":
                if value not in spec.enum:
                    raise OpenAIUsageValidationError(f"{ent.key}: {name}={value!r} is not allowed; allowed: {', '.join(spec.enum)}")
                out.append((name, value))
            else:
                out += [(name, v) for v in _strings(ent, name, value)]
        given = {k for k, _ in out}
        for spec in ent.params:
            if spec.default is not None and spec.name not in given and spec.name not in params:
                value = spec.default
                out.append((spec.name, ("true" if value else "false") if isinstance(value, bool) else str(value)))
        return cls(ent, tuple(out), project_ids)


def _strings(entity: Entity, name: str, value: Any) -> tuple[str, ...]:
    values = [value] if isinstance(value, str) else value
    if not isinstance(values, (list, tuple)) or not values or not all(isinstance(v, str) and v.strip() for v in values):
        raise OpenAIUsageValidationError(f"{entity.key}: {name}={value!r} must be a non-empty list of non-empty strings")
    return tuple(values)


def _connection_key(hook: OpenAIUsageHook) -> tuple[str, ...]:
    """The connection's own key, refused in any answer even if it does not look like ``sk-…``."""
    key: Any = hook.settings.api_key
    if hasattr(key, "get_secret_value"):  # kept as a SecretStr so generic code cannot dump it
        key = key.get_secret_value()
    return (key,) if isinstance(key, str) and key else ()


class DirectoryReader:
    """Reads directory entities through one hook; lists the projects once for every fan-out."""

    def __init__(self, hook: OpenAIUsageHook) -> None:
        self.hook = hook
        self._projects: list[tuple[str, bool]] | None = None
        self._budget: RetryBudget | None = None
        self.requests = 0

    def iter_rows(self, entity: str, **params: Any) -> Iterator[dict[str, Any]]:
        """Validate now (before any request), then yield rows lazily."""
        return self.iter_query(DirectoryQuery.build(entity, **params))

    def iter_query(self, query: DirectoryQuery) -> Iterator[dict[str, Any]]:
        entity = query.entity
        if not entity.per_project:
            complete_projects = entity.key == "projects" and query.params == (("include_archived", "true"),)
            seen: list[tuple[str, bool]] = []
            for row in self._iter_path(entity, query.params, None):
                if complete_projects:
                    seen.append(_project_state(row))
                yield row
            if complete_projects and self._projects is None:
                self._projects = seen  # the fan-out reuses this listing instead of asking again
            return
        if query.project_ids is not None:
            targets = list(query.project_ids)
        else:
            targets = [pid for pid, archived in self.projects() if not (archived and entity.skips_archived_projects)]
        for project_id in targets:
            yield from self._iter_path(entity, query.params, project_id)

    def projects(self) -> list[tuple[str, bool]]:
        """Every project, archived ones included (their keys still appear in usage history): (id, archived)."""
        if self._projects is None:
            for _row in self.iter_rows("projects", include_archived=True):
                pass  # iter_query keeps the complete listing
        assert self._projects is not None
        return self._projects

    # -- paths ------------------------------------------------------------------------------------
    def _get(self, entity: Entity, path: str, params: list[tuple[str, str]], single: bool) -> dict[str, Any]:
        """One request through the hook's request path, sharing one retry budget for the whole read."""
        self.requests += 1
        if self._budget is None:
            self._budget = self.hook.new_retry_budget()
        answer = self.hook.get_json(path, params, what=entity.key, budget=self._budget)
        if not isinstance(answer, dict) or not (single or isinstance(answer.get("data"), list)):
            raise OpenAIUsageResponseError(f"{entity.key} {path}: the answer has no 'data' array; nothing is written")
        return answer

    def _iter_path(self, entity: Entity, params: tuple[tuple[str, str], ...], project_id: str | None) -> Iterator[dict[str, Any]]:
        path = entity.path_for(project_id)
        secrets = _connection_key(self.hook)
        if not entity.paged:
            try:
                obj = self._get(entity, path, list(params), single=True)
            except OpenAIUsageAPIError as exc:
                if entity.missing_is_empty and exc.status == 404 and not isinstance(exc, OpenAIUsageAuthError):
                    self.hook.log.info("%s: nothing configured for %s (HTTP 404)", entity.key, project_id)
                    return
                raise
            yield object_row(entity, obj, project_id, secrets=secrets)
            return
        after: str | None = None
        seen_ids: set[str] = set()
        cursors: set[str] = set()
        number = 0
        while True:
            page = self._get(entity, path, [*params, ("limit", str(entity.max_limit))] + ([("after", after)] if after else []), False)
            number += 1
            where = f"{entity.key} {path}"
            has_more = page.get("has_more")
            if not isinstance(has_more, bool):
                raise OpenAIUsageResponseError(f"{where}: page {number} has no has_more flag; refusing to guess whether more objects exist")
            # A page is checked whole before any of its rows is yielded.
            rows = [object_row(entity, obj, project_id, secrets=secrets) for obj in page["data"]]
            for row in rows:
                if row["id"] in seen_ids:
                    raise OpenAIUsageResponseError(f"{where}: object {row['id']!r} came twice; refusing to double count")
                seen_ids.add(row["id"])
            self.hook.log.info("%s: page %d, %d objects so far", where, number, len(seen_ids))
            yield from rows
            if not has_more:
                return
            last_id = page.get("last_id") or (rows[-1]["id"] if rows else None)
            if not last_id:
                raise OpenAIUsageResponseError(f"{where}: page {number} says has_more but is empty and gives no last_id")
            if last_id in cursors:
                raise OpenAIUsageResponseError(f"{where}: page {number} repeated the cursor {last_id!r}; stopping instead of looping")
            cursors.add(last_id)
            after = last_id


def _project_state(row: dict[str, Any]) -> tuple[str, bool]:
    return row["id"], row["status"] == "archived" or row["archived_at"] is not None


def iter_directory(hook: OpenAIUsageHook, entity: str, **params: Any) -> Iterator[dict[str, Any]]:
    """What ``OpenAIUsageHook.iter_directory`` returns: validated now, read lazily."""
    return DirectoryReader(hook).iter_rows(entity, **params)

