"""Which UTC days of which dataset are landed, partial, missing or restated, and do the landed files
still match their manifests: the one answer the CLI (``airflow openai-usage status|verify``) and
the Spend view in the Airflow UI both read.

Two records are read and never written here:

- **the lake**: each dataset's day files (``storage.days.list_day_files``) and their manifests
  (``_openai_usage/manifests/date=YYYY-MM-DD.json``: sha256, rows, the UTC windows covered);
- **Airflow's asset events**: the operators emit one event per landed day with the day as its
  partition key (docs/ui.md). A day with more than one event was landed again (``restated``);
  the newest event names the run and task instance that landed last. Outside Airflow (or before
  its database is set up) those two columns are unknown, never guessed.

A dataset is a folder whose organizations each hold ``_openai_usage/`` (the writers' control
folder) under ``<dataset>/organization=<id>/``: one dataset per endpoint, ``focus``, and one per
organization-directory entity (``directory/<entity>``). Its name is its path under ``output_path``,
which is also the tail of its Asset URI. Every status and problem is about one (dataset,
organization): two organizations of one lake are never summed into one row. A dataset still in the
single-organization layout (``_openai_usage/`` directly under it, before
``airflow openai-usage move-to-organization``) is shown as one row with no organization.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.organizations import (
    ORGANIZATION_LEVEL,
    check_organization_id,
    landed_organizations,
    organization_root,
)

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

CONTROL_DIR = "_openai_usage"
#: Folders under ``output_path`` that are not datasets (reports and alert markers are per lake, and
#: alert markers have ``organization=`` folders of their own).
NOT_DATASETS = ("reports", "alerts", "rollups")
#: Datasets nest at most this deep under ``output_path`` (``directory/<entity>``).
MAX_DEPTH = 2
LANDED, PARTIAL, MISSING = "landed", "partial", "missing"
DAY_SECONDS = 86400
HASH_CHUNK = 1 << 20


@dataclass(frozen=True)
class Landing:
    """One asset event of a dataset: which task instance landed which day, and when."""

    day: str
    dag_id: str | None
    run_id: str | None
    task_id: str | None
    map_index: int | None
    timestamp: dt.datetime

    def as_dict(self) -> dict[str, Any]:
        return {
            "day": self.day, "dag_id": self.dag_id, "run_id": self.run_id, "task_id": self.task_id,
            "map_index": self.map_index, "timestamp": self.timestamp.isoformat(),
        }


#: dataset name → day → its landing events (oldest first); None: Airflow's record was not available.
Events = Mapping[str, Mapping[str, Sequence[Landing]]]


@dataclass
class DatasetStatus:
    """The landing status of one dataset of one organization over ``[first, through]``."""

    dataset: str
    first: str | None
    through: str
    #: The organization whose folder this is (None: a dataset still in the single-organization layout).
    organization_id: str | None = None
    landed: list[str] = field(default_factory=list)
    partial: list[str] = field(default_factory=list)
    missing: list[str] = field(default_factory=list)
    #: Days landed more than once (None: Airflow's asset events were not available).
    restated: list[str] | None = None
    last_landed_day: str | None = None
    last_run: Landing | None = None

    @property
    def complete(self) -> bool:
        return not self.missing

    def as_dict(self) -> dict[str, Any]:
        return {
            "dataset": self.dataset, "organization_id": self.organization_id, "first": self.first, "through": self.through,
            "landed": self.landed,
            "partial": self.partial, "missing": self.missing, "restated": self.restated,
            "last_landed_day": self.last_landed_day, "last_run": None if self.last_run is None else self.last_run.as_dict(),
        }


@dataclass(frozen=True)
class Problem:
    """A landed file that does not match its manifest: ``differs``, ``missing`` or ``unrecorded``."""

    dataset: str
    day: str
    kind: str
    detail: str
    organization_id: str | None = None

    def as_dict(self) -> dict[str, str | None]:
        return {"dataset": self.dataset, "organization_id": self.organization_id, "day": self.day, "kind": self.kind,
                "detail": self.detail}


def yesterday_utc(now: dt.datetime | None = None) -> dt.date:
    """The last whole UTC day: what a daily run should have landed by now."""
    moment = now or dt.datetime.now(dt.timezone.utc)
    return moment.astimezone(dt.timezone.utc).date() - dt.timedelta(days=1)


def parse_day(value: str | dt.date | None, name: str) -> dt.date | None:
    """``YYYY-MM-DD`` → a date, with an error naming the parameter and the fix."""
    if value is None or isinstance(value, dt.date):
        return value
    try:
        return dt.date.fromisoformat(value)
    except ValueError:
        raise OpenAIUsageValidationError(f"{name}={value!r} is not a UTC day; give it as YYYY-MM-DD, e.g. 2025-11-09") from None


def subfolders(folder: ObjectStoragePath) -> list[ObjectStoragePath]:
    """The folders directly under ``folder``, by name (none when it is missing or a file)."""
    try:
        return sorted((c for c in folder.iterdir() if c.is_dir()), key=lambda c: c.name)
    except (FileNotFoundError, NotADirectoryError):
        return []


def find_datasets(location: ObjectStoragePath) -> list[str]:
    """Names (paths under ``location``) of every dataset a writer of this provider keeps there: a
    folder with ``organization=<id>`` folders (or, before the organization level, ``_openai_usage/``)."""
    found: list[str] = []

    def walk(folder: ObjectStoragePath, prefix: str, depth: int) -> None:
        children = subfolders(folder)
        names = {c.name for c in children}
        if prefix and (CONTROL_DIR in names or landed_organizations(folder)):
            found.append(prefix.rstrip("/"))
            return
        if depth >= MAX_DEPTH:
            return
        for child in children:
            if child.name.startswith(("_", ".", "date=", f"{ORGANIZATION_LEVEL}=")) or (depth == 0 and child.name in NOT_DATASETS):
                continue
            walk(child, f"{prefix}{child.name}/", depth + 1)

    walk(location, "", 0)
    return found


def dataset_organizations(location: ObjectStoragePath, dataset: str) -> list[str | None]:
    """The organizations of one dataset (sorted), or ``[None]`` for a single-organization-layout one.

    A dataset holding both layouts at once (a writer of an older release ran after the move) lists
    both, so ``status`` shows the stray days instead of hiding them.
    """
    root = location / dataset
    orgs: list[str | None] = list(landed_organizations(root))
    try:
        legacy = (root / CONTROL_DIR).exists() or any(p.name.startswith("date=") for p in root.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        legacy = False
    return [None, *orgs] if legacy else orgs


def dataset_root(location: ObjectStoragePath, dataset: str, organization_id: str | None) -> ObjectStoragePath:
    """Where one organization's days of ``dataset`` are (the dataset folder itself for ``None``)."""
    root = location / dataset
    return root if organization_id is None else organization_root(root, organization_id)


def check_organizations(values: Sequence[str] | None) -> list[str] | None:
    """``--organization-id`` values, each checked to be an organization id (a typo exits 2)."""
    if not values:
        return None
    return [check_organization_id(v, described_as="--organization-id") for v in values]


#: An asset event's partition key: the day, optionally with the organization before it
#: (``org-x|2025-11-09``, ``organization=org-x/date=2025-11-09``...).
_EVENT_KEY = re.compile(r"^(?:.*?(org-[A-Za-z0-9_-]+)\W+)?(?:date=)?(\d{4}-\d{2}-\d{2})$")


def organization_events(
    events: Mapping[str, Sequence[Landing]] | None, organization_id: str | None, organizations: int
) -> dict[str, list[Landing]] | None:
    """The landing events of one organization's days, from a dataset's events keyed by partition key.

    A key naming an organization belongs to it; a bare day belongs to the dataset's only
    organization. With several organizations and bare-day keys, whose landing it was is unknown:
    None (shown as unknown, never guessed).
    """
    if events is None:
        return None
    out: dict[str, list[Landing]] = {}
    for key, landings in events.items():
        match = _EVENT_KEY.match(key)
        if not match:
            continue
        owner, day = match.group(1), match.group(2)
        if owner is None and organizations > 1 and organization_id is not None:
            return None
        if owner is not None and owner != organization_id:
            continue
        out.setdefault(day, []).extend(landings)
    return out


def _manifest(root: ObjectStoragePath, day: str) -> dict[str, Any] | None:
    from airflow_provider_openai_usage.storage import DayStore

    path = DayStore(root).manifest_path(day)
    try:
        value = json.loads(path.read_bytes())
    except (FileNotFoundError, ValueError):
        return None
    return value if isinstance(value, dict) else None


def _covers_whole_day(day: str, manifest: Mapping[str, Any] | None) -> bool:
    """The manifest's ``covered`` windows (Unix seconds) span the whole UTC day; a day without them
    was written whole (the writers record every window they pull)."""
    covered = (manifest or {}).get("covered") or []
    if not covered:
        return True
    start = int(dt.datetime.fromisoformat(day).replace(tzinfo=dt.timezone.utc).timestamp())
    reached = start
    for a, b in sorted((int(a), int(b)) for a, b in covered):
        if a > reached:
            return False
        reached = max(reached, b)
    return reached >= start + DAY_SECONDS


def _days(first: dt.date, last: dt.date) -> Iterable[str]:
    for i in range((last - first).days + 1):
        yield (first + dt.timedelta(days=i)).isoformat()


def dataset_status(
    location: ObjectStoragePath,
    dataset: str,
    *,
    since: dt.date | None = None,
    through: dt.date | None = None,
    events: Mapping[str, Sequence[Landing]] | None = None,
    organization_id: str | None = None,
) -> DatasetStatus:
    """The status of one dataset from its first landed day (or ``since``) to ``through``.

    Default ``through``: yesterday (UTC), or the last landed day when that is later (a directory
    snapshot is dated by its run's interval end, today). ``events``: the dataset's landing events
    per day, from ``landing_events`` (``organization_events`` for one organization).
    ``organization_id``: whose folder (``<dataset>/organization=<id>``); None: the dataset folder."""
    from airflow_provider_openai_usage.storage import list_day_files

    root = dataset_root(location, dataset, organization_id)
    files = list_day_files(root)
    last = through or max([yesterday_utc(), *(dt.date.fromisoformat(d) for d in files)])
    first = since or (dt.date.fromisoformat(min(files)) if files else None)
    status = DatasetStatus(
        dataset=dataset, first=None if first is None else first.isoformat(), through=last.isoformat(),
        organization_id=organization_id,
    )
    status.last_landed_day = max(files) if files else None
    if first is not None:
        for day in _days(first, last):
            if day not in files:
                status.missing.append(day)
            elif _covers_whole_day(day, _manifest(root, day)):
                status.landed.append(day)
            else:
                status.partial.append(day)
    if events is not None:
        status.restated = sorted(day for day, landings in events.items() if len(landings) > 1)
        newest = [landing for landings in events.values() for landing in landings]
        status.last_run = max(newest, key=lambda e: e.timestamp) if newest else None
    return status


def lake_status(
    location: ObjectStoragePath,
    *,
    datasets: Sequence[str] | None = None,
    since: dt.date | None = None,
    through: dt.date | None = None,
    events: Events | None = None,
    organizations: Sequence[str] | None = None,
) -> list[DatasetStatus]:
    """``dataset_status`` of every (dataset, organization) under ``location`` (or the named datasets,
    or only the named organizations), by dataset then organization."""
    names = list(datasets) if datasets else find_datasets(location)
    out = []
    for name in names:
        orgs = dataset_organizations(location, name)
        for org in orgs:
            if organizations and org not in organizations:
                continue
            per_org = organization_events(None if events is None else events.get(name, {}), org, len(orgs))
            out.append(dataset_status(location, name, since=since, through=through, events=per_org, organization_id=org))
    return out


def _sha256(path: ObjectStoragePath) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(HASH_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def verify_dataset(location: ObjectStoragePath, dataset: str, organization_id: str | None = None) -> list[Problem]:
    """Re-hash every day file of a dataset against its manifest.

    ``differs``: the file's sha256 is not the manifest's (changed after it was written);
    ``missing``: a manifest names a file that is not there; ``unrecorded``: a day file no manifest
    describes. A writer publishing right now can show a day as ``differs`` for milliseconds (the
    file is replaced before its manifest); run it again to tell.
    """
    from airflow_provider_openai_usage.storage import DayStore, list_day_files

    root = dataset_root(location, dataset, organization_id)
    files = list_day_files(root)
    manifests_dir = DayStore(root).manifest_path("2000-01-01").parent
    recorded: dict[str, dict[str, Any]] = {}
    try:
        entries = list(manifests_dir.iterdir())
    except (FileNotFoundError, NotADirectoryError):
        entries = []
    for entry in entries:
        name = entry.name
        if name.startswith("date=") and name.endswith(".json"):
            day = name.removeprefix("date=").removesuffix(".json")
            manifest = _manifest(root, day)
            recorded[day] = manifest if manifest is not None else {}
    problems = []
    for day in sorted(set(files) | set(recorded)):
        manifest = recorded.get(day)
        if day not in files:
            expected = (manifest or {}).get("file", "data.*")
            problems.append(
                Problem(dataset, day, "missing", f"the manifest names date={day}/{expected}; it is not there", organization_id)
            )
        elif manifest is None:
            problems.append(Problem(dataset, day, "unrecorded", f"date={day}/{files[day].name} has no manifest", organization_id))
        else:
            actual = _sha256(files[day])
            if manifest.get("sha256") != actual:
                problems.append(
                    Problem(
                        dataset, day, "differs",
                        f"date={day}/{files[day].name} has sha256 {actual}, its manifest says {manifest.get('sha256')}",
                        organization_id,
                    )
                )
    return problems


def verify_lake(
    location: ObjectStoragePath, datasets: Sequence[str] | None = None, organizations: Sequence[str] | None = None
) -> tuple[int, list[Problem]]:
    """(how many day files were checked, every problem found) over every (dataset, organization) of
    the lake, or of the named datasets and organizations."""
    from airflow_provider_openai_usage.storage import list_day_files

    names = list(datasets) if datasets else find_datasets(location)
    scopes = [(n, o) for n in names for o in dataset_organizations(location, n) if not organizations or o in organizations]
    checked = sum(len(list_day_files(dataset_root(location, n, o))) for n, o in scopes)
    return checked, [p for n, o in scopes for p in verify_dataset(location, n, o)]


def check_datasets(location: ObjectStoragePath, datasets: Sequence[str]) -> None:
    """Every named dataset exists under ``location``: a typo is an error, not an all-missing table."""
    known = find_datasets(location)
    unknown = [d for d in datasets if d not in known]
    if unknown:
        raise OpenAIUsageValidationError(
            f"dataset(s) {unknown} are not under {location.as_uri()}; it holds {known or 'no dataset'}. "
            "Name datasets as they are under output_path (costs, completions, directory/projects, focus)"
        )


def landing_events(asset_base: str, datasets: Sequence[str]) -> Events | None:
    """Each dataset's landing events per day from Airflow's metadata database (asset events with a
    partition key on ``<asset_base>/<dataset>``); None when that database cannot be read here."""
    try:
        from airflow.models.asset import AssetEvent, AssetModel
        from airflow.utils.session import create_session
        from sqlalchemy import select
        from sqlalchemy.exc import SQLAlchemyError
    except ImportError:  # pragma: no cover - Airflow is a dependency; a broken install says so elsewhere
        return None
    uris = {f"{asset_base}/{name}": name for name in datasets}
    out: dict[str, dict[str, list[Landing]]] = {name: {} for name in datasets}
    try:
        with create_session() as session:
            rows = session.execute(
                select(
                    AssetModel.uri, AssetEvent.partition_key, AssetEvent.source_dag_id, AssetEvent.source_run_id,
                    AssetEvent.source_task_id, AssetEvent.source_map_index, AssetEvent.timestamp,
                )
                .join(AssetModel, AssetModel.id == AssetEvent.asset_id)
                .where(AssetModel.uri.in_(list(uris)), AssetEvent.partition_key.is_not(None))
                .order_by(AssetEvent.timestamp, AssetEvent.id)
            ).all()
    except SQLAlchemyError:
        return None
    for uri, key, dag_id, run_id, task_id, map_index, timestamp in rows:
        assert key is not None  # selected where not null
        out[uris[uri]].setdefault(key, []).append(Landing(key, dag_id, run_id, task_id, map_index, timestamp))
    return out
