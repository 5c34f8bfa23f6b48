"""The organization as a dimension of every dataset: its id, its level in the layout, its checks.

One lake holds several OpenAI organizations side by side. Every dataset folder gains one level,
``organization=<organization id>``, between the dataset and its days::

    <output_path>/<dataset>/organization=org-abc/date=YYYY-MM-DD/data.parquet

so two organizations never write the same file, a reader globbing ``<dataset>/organization=*/``
sees every organization once, and each organization's folder is exactly the single-organization
layout of earlier releases (the same ``DayStore``, manifests and rules). The level is named
``organization`` and not ``organization_id`` because costs files already hold an
``organization_id`` column (OpenAI sends it); a hive key of the same name would clash with it in
Spark ("duplicate column"). Every file also holds ``organization_id`` itself, so a file read
without hive partitioning still says whose it is.

An organization id becomes a path segment: it is checked against OpenAI's shape (``org-`` and
letters, digits, ``_`` or ``-``) before it is used anywhere, so no name can climb out of its folder.
Nothing heavy is imported here: DAG files import the operators, which import this module.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: The hive key of the organization level (``<dataset>/organization=<id>/date=.../``).
ORGANIZATION_LEVEL = "organization"
#: The column every landed row carries (costs: as OpenAI sends it; other datasets: the connection's).
ORGANIZATION_COLUMN = "organization_id"
#: OpenAI organization ids: ``org-`` then 24 letters and digits today; a little wider, never a path.
_ORGANIZATION_ID = re.compile(r"org-[A-Za-z0-9_-]{1,100}")


def check_organization_id(value: Any, *, described_as: str = "organization_id") -> str:
    """``value`` if it has the shape of an OpenAI organization id, else an error naming it and the fix."""
    if isinstance(value, str) and _ORGANIZATION_ID.fullmatch(value):
        return value
    raise OpenAIUsageValidationError(
        f"{described_as}={value!r} is not an OpenAI organization id: it must look like org-AbC123... "
        "(`org-` then letters, digits, `_` or `-`); copy it from https://platform.openai.com/settings/organization/general"
    )


def organization_folder(organization_id: str) -> str:
    """The layout level of one organization: ``organization=<id>`` (the id checked first)."""
    return f"{ORGANIZATION_LEVEL}={check_organization_id(organization_id)}"


def organization_root(dataset_root: ObjectStoragePath, organization_id: str) -> ObjectStoragePath:
    """Where one organization's days of a dataset live: ``<dataset_root>/organization=<id>``."""
    return dataset_root / organization_folder(organization_id)


def landed_organizations(dataset_root: ObjectStoragePath) -> list[str]:
    """The organization ids that have a folder under a dataset (sorted; one LIST call).

    Folders whose name is not a valid ``organization=<id>`` are ignored: a reader never follows a
    name it did not write.
    """
    prefix = f"{ORGANIZATION_LEVEL}="
    try:
        if not dataset_root.exists():
            return []
        names = [p.name for p in dataset_root.iterdir()]
    except FileNotFoundError:
        return []
    found = []
    for name in names:
        if name.startswith(prefix) and _ORGANIZATION_ID.fullmatch(name[len(prefix):]):
            found.append(name[len(prefix):])
    return sorted(set(found))


def single_organization_days(dataset_root: ObjectStoragePath) -> list[str]:
    """``date=`` folders directly under a dataset: a lake written before the organization level.

    Writers refuse to add an organization level beside them (a reader of ``<dataset>/`` would see
    two layouts); ``airflow openai-usage move-to-organization`` moves them (docs/data-layout.md).
    """
    try:
        if not dataset_root.exists():
            return []
        return sorted(p.name for p in dataset_root.iterdir() if p.name.startswith("date="))
    except FileNotFoundError:
        return []


def check_no_single_organization_days(dataset_root: ObjectStoragePath, *, output_path: Any) -> None:
    """Refuse, before any request, a dataset folder that still holds the single-organization layout."""
    legacy = single_organization_days(dataset_root)
    if legacy:
        raise OpenAIUsageValidationError(
            f"{dataset_root.as_uri()} holds {len(legacy)} days in the single-organization layout "
            f"({legacy[0]} ... {legacy[-1]}, written before the organization level); this release writes "
            f"<dataset>/organization=<id>/date=.../. Move them once with "
            f"`airflow openai-usage move-to-organization --output-path {output_path} --organization-id <org id>` "
            "(docs/data-layout.md, \"Moving a single-organization lake\"), or write to a new output_path"
        )


def duplicate_organizations(organizations: Mapping[str, str | None]) -> dict[str, list[str]]:
    """Organization id → the connection ids naming it, for every id named by more than one connection."""
    by_org: dict[str, list[str]] = {}
    for conn_id, org in organizations.items():
        if org:
            by_org.setdefault(org, []).append(conn_id)
    return {org: sorted(conns) for org, conns in sorted(by_org.items()) if len(conns) > 1}


def check_connection_ids(conn_ids: Iterable[Any], *, described_as: str = "OPENAI_USAGE_CONN_IDS") -> list[str]:
    """A non-empty list of distinct connection ids (the same connection twice would land an organization twice)."""
    ids = list(conn_ids)
    if not ids:
        raise OpenAIUsageValidationError(f"{described_as} names no connection; give one or more openai_usage connection ids")
    bad = [c for c in ids if not isinstance(c, str) or not re.fullmatch(r"[A-Za-z0-9_.-]{1,250}", c)]
    if bad:
        raise OpenAIUsageValidationError(
            f"{described_as} has {bad[0]!r}, which is not a connection id (letters, digits, `_`, `.` or `-`)"
        )
    twice = sorted({c for c in ids if ids.count(c) > 1})
    if twice:
        raise OpenAIUsageValidationError(
            f"{described_as} names {', '.join(repr(c) for c in twice)} more than once; each organization is landed once: "
            "list every connection one time"
        )
    return ids


def configured_organizations(conn_ids: Iterable[str]) -> dict[str, str | None]:
    """Each connection's ``organization_id`` extra (None: unset, or the connection cannot be read): no request.

    A connection that cannot be read is that organization's problem (its own tasks fail on it), not
    a reason to stop the others.
    """
    from airflow.sdk import BaseHook

    from airflow_provider_openai_usage.connection import read_settings

    found: dict[str, str | None] = {}
    for conn_id in conn_ids:
        try:
            found[conn_id] = read_settings(conn_id, BaseHook.get_connection(conn_id)).organization_id
        except Exception:  # noqa: BLE001 - missing or invalid: left to the connection's own tasks to report
            found[conn_id] = None
    return found


def check_distinct_organizations(conn_ids: Iterable[str]) -> dict[str, str | None]:
    """Refuse, before any request, two connections that name the same organization: it would land twice.

    (Two connections of one organization without the extra are found by ``OpenAIUsageHook.organization_id``
    at run time; they land the same files under the same ``organization=`` folder, once.)
    """
    found = configured_organizations(conn_ids)
    twice = duplicate_organizations(found)
    if twice:
        named = "; ".join(f"{org} by {', '.join(repr(c) for c in conns)}" for org, conns in twice.items())
        raise OpenAIUsageValidationError(
            f"the same organization is configured more than once ({named}); each organization is landed once. "
            "Keep one connection per organization in OPENAI_USAGE_CONN_IDS"
        )
    return found
