"""Move a lake written before the organization level into ``<dataset>/organization=<id>/``.

Releases before the organization level wrote ``<dataset>/date=YYYY-MM-DD/`` and
``<dataset>/_openai_usage/`` directly under each dataset folder; this release writes them one level
down, under ``organization=<id>`` (``organizations.py``). The writers refuse a dataset folder that
still holds the old layout (``check_no_single_organization_days``) and name
``airflow openai-usage move-to-organization``, which calls :func:`move_to_organization`.

Why a move and not a reader that understands both layouts: a reader of ``<dataset>/`` globbing
``organization=*`` would miss the old days, and one that also read ``date=*`` would count a day
twice once an organization's folder holds it too. One layout per dataset keeps every reader simple.

What moves, for every dataset folder (each endpoint, ``focus``, every ``directory/<entity>``): its
``date=*`` folders and its ``_openai_usage`` control folder (manifests: their ``file`` entries are
names relative to the day folder, so they still match after the move). Alert markers move too
(``alerts/<rule>/<scope>/`` to ``alerts/<rule>/organization=<id>/<scope>/``), so an alert that
fired before the move does not fire again after it. Reports (one per day for every organization)
stay where they are, and so do Delta and Iceberg tables (``delta/``, ``iceberg/``).

On a local disk each folder is renamed (``os.rename``: atomic per day). On an object store there is
no rename: each object is copied, then the original deleted, so a move cut short leaves some days
in both places. Re-running finishes it: a day whose files are already in the organization's folder,
byte for byte, is only deleted from the old place. A day in both places with different bytes is
never overwritten: the whole move is refused before anything moves, naming that day.
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.organizations import ORGANIZATION_LEVEL, check_organization_id, organization_folder

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

CONTROL_DIR = "_openai_usage"
#: Top-level folders that are not day-file datasets: reports (one per day for all organizations),
#: alert markers (moved on their own terms), rollups, and Delta/Iceberg tables, whose logs name
#: their ``date=`` part files by path: moving those folders would break the tables (a table holds
#: its organization in a column, not a folder).
NOT_DATASETS = ("reports", "alerts", "rollups", "delta", "iceberg")
#: A folder holding one of these is a table, never moved (a safety net beside ``NOT_DATASETS``).
TABLE_MARKERS = ("_delta_log", "metadata")
#: Datasets nest at most this deep under ``output_path`` (``directory/<entity>``).
MAX_DEPTH = 2
ALERTS = "alerts"
HASH_CHUNK = 1 << 20


@dataclass
class DatasetMove:
    """What moves in one dataset folder: its single-organization day folders and control folder."""

    dataset: str
    days: list[str] = field(default_factory=list)
    control: bool = False
    #: Days already (byte-identical) in the organization's folder: a move cut short, finished now.
    finished: list[str] = field(default_factory=list)

    @property
    def entries(self) -> list[str]:
        return [f"date={d}" for d in self.days] + ([CONTROL_DIR] if self.control else [])

    def as_dict(self) -> dict[str, Any]:
        return {"dataset": self.dataset, "days": self.days, "control": self.control, "finished": self.finished}


@dataclass
class MovePlan:
    """Every dataset (and alert rule) with something to move, and where it goes."""

    organization_id: str
    datasets: list[DatasetMove] = field(default_factory=list)
    #: ``alerts/<rule>`` folders with markers written before the organization level: rule → scopes.
    alerts: dict[str, list[str]] = field(default_factory=dict)

    @property
    def empty(self) -> bool:
        return not self.datasets and not self.alerts

    def as_dict(self) -> dict[str, Any]:
        return {
            "organization_id": self.organization_id,
            "datasets": [d.as_dict() for d in self.datasets],
            "alerts": self.alerts,
        }


def legacy_datasets(location: ObjectStoragePath) -> list[str]:
    """Dataset folders (paths under ``location``) that hold ``date=*`` or ``_openai_usage`` directly."""
    from airflow_provider_openai_usage.status import subfolders

    found: list[str] = []

    def walk(folder: ObjectStoragePath, prefix: str, depth: int) -> None:
        children = subfolders(folder)
        names = {c.name for c in children}
        if names & set(TABLE_MARKERS):
            return
        if prefix and (CONTROL_DIR in names or any(n.startswith("date=") for n in names)):
            found.append(prefix.rstrip("/"))
            return
        if depth >= MAX_DEPTH:
            return
        for child in children:
            name = child.name
            if name.startswith(("_", ".", "date=", f"{ORGANIZATION_LEVEL}=")) or (depth == 0 and name in NOT_DATASETS):
                continue
            walk(child, f"{prefix}{name}/", depth + 1)

    walk(location, "", 0)
    return found


def _files(fs: Any, folder: str) -> dict[str, str]:
    """Relative path → full path of every file under ``folder`` (fsspec paths)."""
    base = folder.rstrip("/")
    try:
        found = fs.find(base)
    except FileNotFoundError:
        return {}
    return {p[len(base) + 1:]: p for p in found if p.startswith(base + "/")}


def _same_bytes(fs: Any, a: str, b: str) -> bool:
    try:
        if fs.size(a) != fs.size(b):
            return False
    except FileNotFoundError:
        return False
    return _sha256(fs, a) == _sha256(fs, b)


def _sha256(fs: Any, path: str) -> str:
    digest = hashlib.sha256()
    with fs.open(path, "rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _entry_state(fs: Any, source: str, target: str) -> str:
    """``free`` (nothing there yet), ``done`` (every source file is at the target, same bytes) or
    ``conflict`` (the target holds a file of the same name with other bytes)."""
    target_files = _files(fs, target)
    if not target_files:
        return "free"
    for rel, path in _files(fs, source).items():
        other = target_files.get(rel)
        if other is not None and not _same_bytes(fs, path, other):
            return "conflict"
    return "done" if set(_files(fs, source)) <= set(target_files) else "partial"


def plan_move(location: ObjectStoragePath, organization_id: str) -> MovePlan:
    """What :func:`move_to_organization` would move; refuses (before anything moves) a day that is in
    both layouts with different bytes."""
    org = check_organization_id(organization_id, described_as="--organization-id")
    fs = location.fs
    plan = MovePlan(org)
    conflicts: list[str] = []
    for dataset in legacy_datasets(location):
        root = location / dataset
        target = root / organization_folder(org)
        move = DatasetMove(dataset)
        for child in sorted(c.name for c in root.iterdir() if c.is_dir()):
            if child.startswith("date="):
                state = _entry_state(fs, (root / child).path, (target / child).path)
                if state == "conflict":
                    conflicts.append(f"{dataset}: {child} is both in {dataset}/{child} and, with other bytes, in "
                                     f"{dataset}/{organization_folder(org)}/{child}")
                    continue
                move.days.append(child.removeprefix("date="))
                if state == "done":
                    move.finished.append(child.removeprefix("date="))
            elif child == CONTROL_DIR:
                move.control = True
        if move.days or move.control:
            plan.datasets.append(move)
    if conflicts:
        raise OpenAIUsageValidationError(
            f"{location.as_uri()} already has days in both layouts, with different contents; nothing was moved. "
            f"{'; '.join(conflicts)}. Keep one copy of each such day (delete the other folder), then run the move again"
        )
    plan.alerts = _legacy_alerts(location)
    return plan


def _legacy_alerts(location: ObjectStoragePath) -> dict[str, list[str]]:
    """``alerts/<rule>/`` children written before the organization level (not ``organization=*``)."""
    root = location / ALERTS
    out: dict[str, list[str]] = {}
    try:
        rules = sorted((r for r in root.iterdir() if r.is_dir()), key=lambda r: r.name)
    except (FileNotFoundError, NotADirectoryError):
        return out
    for rule in rules:
        scopes = sorted(c.name for c in rule.iterdir() if not c.name.startswith(f"{ORGANIZATION_LEVEL}=") and not c.name.endswith(".lock"))
        if scopes:
            out[rule.name] = scopes
    return out


def _move_entry(location: ObjectStoragePath, source: ObjectStoragePath, target: ObjectStoragePath) -> None:
    """One folder (or file) from ``source`` to ``target``: a rename locally, copy then delete elsewhere."""
    from airflow_provider_openai_usage.report.publish import is_local

    fs = location.fs
    if is_local(location):
        if not os.path.exists(target.path):
            os.makedirs(os.path.dirname(target.path), exist_ok=True)
            os.rename(source.path, target.path)
            return
        if os.path.isfile(source.path):
            if _same_bytes(fs, source.path, target.path):
                os.unlink(source.path)
                return
            raise OpenAIUsageValidationError(f"{target.as_uri()} exists with other bytes than {source.as_uri()}; nothing overwritten")
        for name in sorted(os.listdir(source.path)):
            _move_entry(location, source / name, target / name)
        os.rmdir(source.path)
        return
    if fs.isfile(source.path):
        files = {"": source.path}
    else:
        files = _files(fs, source.path)
    for rel, path in sorted(files.items()):
        dest = f"{target.path.rstrip('/')}/{rel}" if rel else target.path
        if fs.exists(dest):
            if not _same_bytes(fs, path, dest):
                raise OpenAIUsageValidationError(f"{dest} exists with other bytes than {path}; nothing overwritten")
        else:
            fs.copy(path, dest)
        fs.rm(path)
    if not fs.isfile(source.path):
        try:
            fs.rm(source.path, recursive=True)  # folder markers some stores keep
        except FileNotFoundError:
            pass


def move_to_organization(location: ObjectStoragePath, organization_id: str, *, dry_run: bool = False) -> MovePlan:
    """Move every single-organization dataset folder (and alert marker) under ``location`` into
    ``organization=<organization_id>``; the plan of what moved (or, with ``dry_run``, would move).

    Days move before the control folder: a move cut short leaves days without manifests in the new
    place for a moment (``verify`` says ``unrecorded``), never a manifest claiming a day that is gone.
    """
    plan = plan_move(location, organization_id)
    if dry_run:
        return plan
    level = organization_folder(plan.organization_id)
    for move in plan.datasets:
        root = location / move.dataset
        for entry in move.entries:
            _move_entry(location, root / entry, root / level / entry)
    for rule, scopes in plan.alerts.items():
        root = location / ALERTS / rule
        for scope in scopes:
            _move_entry(location, root / scope, root / level / scope)
    return plan
