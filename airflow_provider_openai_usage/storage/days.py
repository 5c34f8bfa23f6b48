"""One file per UTC day of a dataset, replaced in one atomic step: the publishing primitive.

Layout under a dataset root (``<output_path>/<endpoint>``, ``<output_path>/focus``, ...)::

    date=YYYY-MM-DD/data.<parquet|jsonl|csv>          the day: exactly one file, nothing else
    _openai_usage/manifests/date=YYYY-MM-DD.json      what that file holds (identity, windows, sha256)
    _openai_usage/tmp/                                 temporary files and pending manifests

Why this shape: readers (Spark, DuckDB, Athena, pyarrow.dataset) list a partition folder and read
every file in it. With one file per day, replaced by ``os.replace`` locally or by a single PUT on an
object store, a reader sees the old day or the new day, never a mix, and a crash at any instant
leaves the day as it was or as the run leaves it. Temporary files never sit in a partition folder.

Publishing a day, in order (each step is a named fault point, see ``fault_point``):

1. ``temp-written``: the new file is complete in a temporary file (outside every partition folder);
2. ``pending-written``: its manifest (with the new file's sha256) is stored as *pending*;
3. ``data-published``: the day file is replaced (the commit point for readers);
4. ``manifest-published``: the manifest is replaced;
5. ``pending-removed``: the pending manifest is removed (on a local disk 4 and 5 are one rename:
   the pending manifest becomes the day's manifest).

Many days are published as one batch (``stage`` each, then ``commit`` them together): their files
are made durable together, then each day's steps run in day order under the dataset's lock.

A crash between 3 and 4 leaves a manifest that does not describe the day file; the next run finds
the pending manifest whose sha256 matches the file and finishes the job (``prepare``). Leftover
temporary files are removed by the next run; on local disks a temp is locked while its writer
lives, so a concurrent writer's temp is never taken for a leftover.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import re
import signal
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageStorageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.storage.conditional import ABSENT, Preconditions, WriteConflict, preconditions_for
from airflow_provider_openai_usage.storage.formats import canonical_json, check_file_format, encode_table, read_table

if TYPE_CHECKING:
    import pyarrow as pa
    from airflow.sdk import ObjectStoragePath

log = logging.getLogger(__name__)

CONTROL_DIR = "_openai_usage"
MANIFEST_VERSION = 1
DATE_RE = re.compile(r"^date=(\d{4}-\d{2}-\d{2})$")
DATA_RE = re.compile(r"^data\.(parquet|jsonl|csv)$")
PENDING_RE = re.compile(r"^pending\.(\d{4}-\d{2}-\d{2})\.([0-9a-f]+(?:-\d+)?)\.json$")
#: Environment variable naming a publishing step at which the process SIGKILLs itself (crash tests).
FAULT_ENV = "OPENAI_USAGE_TEST_KILL_AT"
PUBLISH_STEPS = ("temp-written", "pending-written", "data-published", "manifest-published", "pending-removed")
LOCAL_TEMP_PREFIX = "openai-usage-"
#: Environment variable ``step=<folder>``: at that step the process creates ``<folder>/<pid>.reached``
#: and waits until ``<folder>/go`` exists (the first time only): tests hold writers at a known point.
PAUSE_ENV = "OPENAI_USAGE_TEST_PAUSE_AT"
#: A merge whose conditional write lost to another writer is read, merged and written again this often.
MERGE_ATTEMPTS = 20
#: An empty temp younger than this may belong to a writer between creating and locking it.
FRESH_EMPTY_TEMP_SECONDS = 60


_reached: dict[str, int] = {}
_reached_lock = threading.Lock()


def fault_point(step: str) -> None:
    """Crash tests name a step in ``OPENAI_USAGE_TEST_KILL_AT`` (``step`` or ``step@n`` for its n-th
    time in this process); the process dies there, as from ``kill -9``. Unset: one dict lookup."""
    wanted = os.environ.get(FAULT_ENV)
    if not wanted:
        return
    name, _, nth = wanted.partition("@")
    if name != step:
        return
    with _reached_lock:  # days are published on several threads: count each arrival once
        _reached[step] = _reached.get(step, 0) + 1
        reached = _reached[step]
    if reached == int(nth or 1):
        os.kill(os.getpid(), signal.SIGKILL)


_paused: set[str] = set()


def pause_point(step: str) -> None:
    """Tests name a step in ``OPENAI_USAGE_TEST_PAUSE_AT`` to hold this process there until released
    (so two writers are provably between reading and writing a day at once). Unset: one lookup."""
    wanted = os.environ.get(PAUSE_ENV)
    if not wanted:
        return
    name, _, folder = wanted.partition("=")
    with _reached_lock:
        if name != step or step in _paused:
            return
        _paused.add(step)
    open(os.path.join(folder, f"{os.getpid()}.reached"), "w").close()
    released = threading.Event()
    while not os.path.exists(os.path.join(folder, "go")):
        released.wait(0.05)  # the condition is a file the test creates; this only paces the check


def data_name(file_format: str) -> str:
    return f"data.{file_format}"


def is_local(path: ObjectStoragePath) -> bool:
    return getattr(path, "protocol", "file") in ("file", "local", "")


@dataclass
class DayFile:
    """The current file of one day and what its manifest says it holds."""

    date: str
    path: ObjectStoragePath
    file_format: str
    rows: int = 0
    sha256: str = ""
    identity: dict[str, Any] = field(default_factory=dict)
    #: ``[[start, end], ...]`` Unix seconds the file's rows were pulled for (merged, sorted).
    covered: list[list[int]] = field(default_factory=list)
    totals: dict[str, Any] = field(default_factory=dict)
    #: The file's bytes, when they were read to verify the manifest.
    data: bytes | None = None
    #: The object's version (S3 ETag) the bytes are, where the store has conditional writes.
    version: str | None = None

    @property
    def name(self) -> str:
        return f"date={self.date}/{self.path.name}"


def list_day_files(root: ObjectStoragePath) -> dict[str, ObjectStoragePath]:
    """date → the day's data file, sorted by date: what a reader should read (nothing else)."""
    return {date: root / f"date={date}" / name for date, name in _day_file_names(root).items()}


def _day_file_names(root: ObjectStoragePath) -> dict[str, str]:
    """date → the name of the day's data file (one listing; plain ``os.scandir`` on a local disk)."""
    out: dict[str, str] = {}
    if is_local(root):
        try:
            with os.scandir(root.path) as entries:
                folders = sorted((e.name, e.path) for e in entries if DATE_RE.match(e.name) and e.is_dir())
        except (FileNotFoundError, NotADirectoryError):
            return out
        listed = [(name, f"file://{path}", os.listdir(path)) for name, path in folders]
    else:
        # An object store has no folders: a prefix "exists" only while some object is under it, so
        # another writer removing its last temp between two calls turns the root into "not a
        # directory". Either way nothing is there to list.
        try:
            if not root.exists():
                return out
            listed = [
                (folder.name, str(folder), [p.name for p in folder.iterdir()])
                for folder in sorted(root.iterdir(), key=lambda p: p.name)
                if DATE_RE.match(folder.name) and folder.is_dir()
            ]
        except (FileNotFoundError, NotADirectoryError):
            return out
    for name, where, children in listed:
        files = sorted(c for c in children if DATA_RE.match(c))
        if len(files) > 1:
            raise OpenAIUsageStorageError(
                f"{where}: holds {', '.join(files)}; a day has one file. Remove the files this provider did not write"
            )
        if files:
            out[DATE_RE.match(name).group(1)] = files[0]  # type: ignore[union-attr]
    return out


def read_day_table(path: ObjectStoragePath, schema: pa.Schema | None = None) -> pa.Table:
    """A day file as a typed table (text formats need the dataset's schema)."""
    match = DATA_RE.match(path.name)
    if not match:
        raise ValueError(f"{path} is not a day file (data.parquet, data.jsonl or data.csv)")
    return read_table(path.read_bytes(), match.group(1), schema)


class DayStore:
    """Atomically replace whole day files of one dataset, and tell what each day currently holds."""

    def __init__(self, root: ObjectStoragePath, file_format: str = "parquet", *, described_as: str | None = None) -> None:
        self.root = root
        #: How errors name the location the user gave (e.g. ``output_path='s3://bucket/openai'``).
        self.described_as = described_as or f"output_path={_uri(root)!r}"
        self.file_format = check_file_format(file_format)
        self.control = root / CONTROL_DIR
        self.local = is_local(root)
        self._prepared = False
        #: Conditional writes of an object store (None on a local disk, which has ``flock``).
        self.preconditions: Preconditions | None = None if self.local else preconditions_for(root)
        #: date → format of each day's file, from one listing; kept current by replace_day.
        self._formats: dict[str, str] | None = None

    # -- paths ---------------------------------------------------------------------------------------
    def day_dir(self, date: str) -> ObjectStoragePath:
        return self.root / f"date={date}"

    def day_path(self, date: str) -> ObjectStoragePath:
        return self.day_dir(date) / data_name(self.file_format)

    def manifest_path(self, date: str) -> ObjectStoragePath:
        return self.control / "manifests" / f"date={date}.json"

    @property
    def tmp_dir(self) -> ObjectStoragePath:
        return self.control / "tmp"

    # -- before the first request ---------------------------------------------------------------------
    def prepare(self) -> None:
        """Probe that the root can be written, then finish or clean what a crashed run left.

        Run before any API request, so a path that cannot be written fails before OpenAI is asked.
        """
        self._probe()
        self._recover()
        self._prepared = True

    def _probe(self) -> None:
        target = self.tmp_dir / f"probe.{uuid.uuid4().hex}.tmp"
        try:
            if self.local:
                os.makedirs(self.tmp_dir.path, exist_ok=True)
                with _locked_temp(target.path):
                    pass
            else:
                target.write_bytes(b"")
                with contextlib.suppress(FileNotFoundError):  # a concurrent writer's clean-up may have taken it
                    target.unlink()
        except Exception as exc:  # noqa: BLE001 - any failure to write means the same thing to the user
            reason = getattr(exc, "strerror", None) or str(exc) or type(exc).__name__
            raise OpenAIUsageValidationError(
                f"{self.described_as} cannot be written ({type(exc).__name__}: {reason}); point output_path at a folder "
                "or bucket this worker may create files in (and set output_conn_id for object stores)"
            ) from None

    def _recover(self) -> None:
        """Pending manifests whose file was published are finished; every other leftover is removed."""
        if self.local:
            self._remove_stale_local_temps(self.tmp_dir.path)
        else:  # only object-store writers stage in the OS temp folder
            self._remove_stale_local_temps(tempfile.gettempdir(), prefix=LOCAL_TEMP_PREFIX)
        try:
            entries = list(self.tmp_dir.iterdir()) if self.tmp_dir.exists() else []
        except (FileNotFoundError, NotADirectoryError):  # an object-store prefix can vanish between two calls
            entries = []
        pending = [(m.group(1), entry) for entry in entries for m in [PENDING_RE.match(entry.name)] if m]
        for entry in entries:
            if not self.local and entry.name.endswith(".tmp"):
                with contextlib.suppress(FileNotFoundError):
                    entry.unlink()  # object stores get no data temps; a stray probe or manifest temp
        if pending:
            with self.dataset_lock():  # never while another writer of this dataset is between publishing steps
                for date, entry in pending:
                    self._resolve_pending(date, entry)

    def _resolve_pending(self, date: str, pending_path: ObjectStoragePath) -> None:
        token = PENDING_RE.match(pending_path.name).group(2)  # type: ignore[union-attr]
        if self.local and _is_locked(os.path.join(self.tmp_dir.path, f"{token}.tmp")):
            return  # its writer is alive and has not published yet
        try:
            pending = json.loads(pending_path.read_bytes())
        except (ValueError, FileNotFoundError):
            pending = None
        if pending is not None:
            day = self.day_dir(date) / pending.get("file", "")
            data, version = self._read_versioned(day)
            if data is not None and hashlib.sha256(data).hexdigest() == pending.get("sha256"):
                current = self._read_manifest(date)
                if current is None or current.get("sha256") != pending["sha256"]:
                    log.info("%s: finishing the publication of date=%s that a crashed run left half done", self.root, date)
                    self._write_manifest(date, _manifest_bytes(pending), data_version=version)
        with contextlib.suppress(FileNotFoundError):
            pending_path.unlink()

    def _remove_stale_local_temps(self, folder: str, prefix: str = "") -> None:
        try:
            names = os.listdir(folder)
        except FileNotFoundError:
            return
        for name in names:
            if not (name.startswith(prefix) and name.endswith(".tmp")):
                continue
            path = os.path.join(folder, name)
            if _is_locked(path, remove_if_free=True):
                continue  # a live writer's temp
            log.info("removed %s left by a crashed run", path)

    # -- what a day holds -----------------------------------------------------------------------------
    def existing_formats(self) -> dict[str, str]:
        """date → format of the file each day holds now (one listing of the dataset, then kept current)."""
        if self._formats is None:
            self._formats = {date: name.split(".", 1)[1] for date, name in _day_file_names(self.root).items()}
        return dict(self._formats)

    def current_day(self, date: str, *, read_data: bool = True) -> DayFile | None:
        """The day's file and its verified manifest; None when the day has no file in this format.

        The manifest is trusted only if its sha256 matches the file; otherwise (a file changed by hand)
        Parquet's own metadata is used, and a text file's identity is unknown (empty).
        """
        path = self.day_path(date)
        data, version = self._read_versioned(path)
        if data is None:
            return None
        digest = hashlib.sha256(data).hexdigest()
        manifest = self._read_manifest(date)
        if manifest is None or manifest.get("sha256") != digest:
            # On an object store another writer may be between publishing the file and its manifest:
            # its pending manifest describes the file until then.
            manifest = self._pending_manifest(date, digest) or self._manifest_from_file(data) or {}
        return DayFile(
            date=date,
            path=path,
            file_format=self.file_format,
            rows=int(manifest.get("rows", 0)),
            sha256=digest,
            identity=dict(manifest.get("identity", {})),
            covered=[list(w) for w in manifest.get("covered", [])],
            totals=dict(manifest.get("totals", {})),
            data=data if read_data else None,
            version=version,
        )

    def expected_version(self, current: DayFile | None) -> str | None:
        """The precondition a day merged from ``current`` is written under (None: none needed or possible)."""
        if self.preconditions is None:
            return None
        return current.version if current is not None and current.version is not None else ABSENT

    def check_merges_possible(self, what: str) -> None:
        """A part of a day is merged from the file it replaces: refuse where concurrent merges could
        silently drop each other's rows (an object store this provider has no conditional writes for)."""
        if self.local or self.preconditions is not None:
            return
        raise OpenAIUsageStorageError(
            f"{what}: {self.described_as} is an object store this provider has no conditional writes for, so two "
            "runs merging parts of the same day at once could silently lose one run's rows; nothing was written. "
            "Pull whole UTC days (start and end the range at 00:00 UTC), or write to S3 or a local disk"
        )

    def _read_versioned(self, path: ObjectStoragePath) -> tuple[bytes | None, str | None]:
        if self.preconditions is None:
            return _read_or_none(path), None
        data, version = self.preconditions.read(path)
        return data, version

    def _pending_manifest(self, date: str, digest: str) -> dict[str, Any] | None:
        """A pending manifest of ``date`` that describes the file with this sha256 (object stores only)."""
        if self.local:
            return None
        try:
            entries = list(self.tmp_dir.iterdir()) if self.tmp_dir.exists() else []
        except (FileNotFoundError, NotADirectoryError):
            return None
        for entry in entries:
            match = PENDING_RE.match(entry.name)
            if not match or match.group(1) != date:
                continue
            raw = _read_or_none(entry)
            try:
                value = json.loads(raw) if raw is not None else None
            except ValueError:
                continue
            if isinstance(value, dict) and value.get("sha256") == digest:
                return value
        return None

    def _read_manifest(self, date: str) -> dict[str, Any] | None:
        raw = _read_or_none(self.manifest_path(date))
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _manifest_from_file(self, data: bytes) -> dict[str, Any] | None:
        if self.file_format != "parquet":
            return None
        import pyarrow as pa
        import pyarrow.parquet as pq

        from airflow_provider_openai_usage.storage.formats import METADATA_KEY

        meta = pq.read_metadata(pa.BufferReader(data)).metadata or {}
        raw = meta.get(METADATA_KEY.encode())
        if raw is None:
            return None
        value = json.loads(raw)
        return value if isinstance(value, dict) else None

    # -- replacing a day ----------------------------------------------------------------------------
    def replace_day(
        self,
        date: str,
        table: pa.Table,
        identity: Mapping[str, Any],
        *,
        covered: list[list[int]] | None = None,
        totals: Mapping[str, Any] | None = None,
    ) -> DayFile:
        """Make ``table`` the day's content in one atomic step (see the module docstring)."""
        record = self.day_record(date, table.num_rows, identity, covered=covered, totals=totals)
        staged = self.stage(date, encode_table(table, self.file_format, metadata=file_metadata(record)), record)
        return self.commit([staged])[0]

    def day_record(
        self,
        date: str,
        rows: int,
        identity: Mapping[str, Any],
        *,
        covered: list[list[int]] | None = None,
        totals: Mapping[str, Any] | None = None,
    ) -> dict[str, Any]:
        """What the day's manifest will say (its sha256 is added when the file is staged)."""
        if not DATE_RE.match(f"date={date}"):
            raise ValueError(f"date={date!r} is not YYYY-MM-DD")
        if self._formats is None:
            self.existing_formats()
        assert self._formats is not None
        held = self._formats.get(date, self.file_format)  # no copy of every day's entry per day
        if held != self.file_format:
            raise OpenAIUsageStorageError(
                f"{self.day_dir(date)} holds a {held} file and this run writes {self.file_format}; a day holds one "
                "file, and switching formats cannot be one atomic step. Write to a separate output_path, or delete "
                "the dataset's old partitions first"
            )
        ident = dict(identity)
        ident.setdefault("format", self.file_format)
        return {
            "manifest_version": MANIFEST_VERSION,
            "date": date,
            "file": data_name(self.file_format),
            "rows": rows,
            "identity": ident,
            "covered": covered or [],
            "totals": dict(totals or {}),
        }

    def stage(self, date: str, data: Any, record: dict[str, Any], *, expected: str | None = None) -> StagedDay:
        """The day's new file, complete in a locked temporary file outside every partition folder.

        Nothing is published yet and nothing is durable yet: ``commit`` does both, for many days at
        once. Safe to call from several threads (each day its own temp). Encoded in memory, so the
        file is hashed without reading it back. ``expected``: the version of the day file this one was
        merged from (``expected_version``); its publication is refused if the day changed since.
        """
        record = {**record, "sha256": hashlib.sha256(data).hexdigest()}
        token = new_token()
        if self.local:
            path = os.path.join(self.root.path, CONTROL_DIR, "tmp", f"{token}.tmp")
        else:
            path = os.path.join(tempfile.gettempdir(), f"{LOCAL_TEMP_PREFIX}{token}.tmp")
        fd = _open_locked_temp(path, make_parents=self.local)
        staged = StagedDay(date, token, record, path, fd, expected=expected)
        try:
            _write_all(fd, data)
        except BaseException:
            staged.close()
            raise
        return staged

    def commit(self, days: Sequence[StagedDay | Callable[[], StagedDay]], published: list[DayFile] | None = None) -> list[DayFile]:
        """Publish staged days in the order given, each in one atomic step; returns what each day now holds.

        On a local disk the new files are made durable together first (one ``fsync`` per file, issued
        at once so the filesystem commits them in one journal transaction, instead of one commit per
        day), then every day's publishing steps run one after the other under the dataset's lock: a
        crash leaves every earlier day published and no later one (``published``, if given, gets each
        day as it is published: after a failure it tells how far the batch got). A callable is staged only once
        the lock is held (a day merged from the file it replaces must not change under the merge).
        The temps are removed whatever happens.
        """
        if not days:
            return []
        try:
            if self.local:
                _fsync_all([d.fd for d in days if isinstance(d, StagedDay)])
            out = published if published is not None else []
            with self.dataset_lock():
                for item in days:
                    out.append(self._publish(item) if isinstance(item, StagedDay) else self._publish_merged(item))
            return out
        finally:
            for item in days:
                if isinstance(item, StagedDay):
                    item.close()

    def _publish_merged(self, stage: Callable[[], StagedDay]) -> DayFile:
        """Stage a day merged from the file it replaces, and publish it. Locally the dataset lock keeps
        the file still meanwhile; on an object store the write is conditional on the version merged
        from, and a merge that lost to another writer is read, merged and written again."""
        for _ in range(MERGE_ATTEMPTS):
            staged = stage()
            try:
                if self.local:
                    os.fsync(staged.fd)
                pause_point("merge-staged")
                return self._publish(staged)
            except WriteConflict:
                log.info("%s: date=%s changed while it was merged (another writer); merging again", self.root, staged.date)
            finally:
                staged.close()
        raise OpenAIUsageStorageError(
            f"{self.described_as}: date={staged.date} changed under {MERGE_ATTEMPTS} merges in a row (other writers keep "
            "replacing it); nothing of this run's part of that day was written. Retry the task"
        )

    def _publish(self, staged: StagedDay) -> DayFile:
        date, record = staged.date, staged.record
        fault_point("temp-written")
        if self.local:
            self._publish_local(staged)
        else:
            self._publish_remote(staged)
        log.debug("%s: wrote date=%s (%d rows)", self.root, date, record["rows"])
        return DayFile(
            date, self.day_path(date), self.file_format, record["rows"], record["sha256"], record["identity"],
            record["covered"], record["totals"],
        )

    def _publish_local(self, staged: StagedDay) -> None:
        """The publishing steps on a local disk, with plain ``os`` calls on path strings (no fsspec per file).

        The pending manifest is written in place (not renamed): while the data temp is locked a
        concurrent recovery leaves it alone, and one torn by a crash is unreadable and removed. Once
        the data file is in place, the pending manifest itself is renamed to be the day's manifest:
        one step publishes the manifest and removes the pending record. Folders are created only when
        a call finds them missing.
        """
        date = staged.date
        control = os.path.join(self.root.path, CONTROL_DIR)
        pending = os.path.join(control, "tmp", f"pending.{date}.{staged.token}.json")
        pending_fd = os.open(pending, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        try:
            _write_all(pending_fd, _manifest_bytes(staged.record))
        finally:
            os.close(pending_fd)
        fault_point("pending-written")
        try:
            _replace(staged.path, os.path.join(self.root.path, f"date={date}", data_name(self.file_format)))
        except BaseException:
            os.unlink(pending)  # not published: nothing for a later run to finish
            raise
        self._data_published(date)
        _replace(pending, os.path.join(control, "manifests", f"date={date}.json"))
        fault_point("manifest-published")
        fault_point("pending-removed")

    def _publish_remote(self, staged: StagedDay) -> None:
        """The publishing steps on an object store: the file is uploaded from its local temp (one PUT)."""
        date = staged.date
        pending = self.tmp_dir / f"pending.{date}.{staged.token}.json"
        pending.write_bytes(_manifest_bytes(staged.record))
        fault_point("pending-written")
        dest = self.day_path(date)
        version: str | None = None
        try:
            if self.preconditions is None:
                if staged.expected is not None:  # check_merges_possible refuses this before any request
                    self.check_merges_possible(f"date={date}")
                dest.fs.put_file(staged.path, dest.path)
            else:
                version = self.preconditions.write(dest, _read_fd(staged.fd), staged.expected)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                pending.unlink()  # not published: nothing for a later run to finish
            raise
        self._data_published(date)
        self._write_manifest(date, _manifest_bytes(staged.record), data_version=version)
        fault_point("manifest-published")
        with contextlib.suppress(FileNotFoundError):
            pending.unlink()
        fault_point("pending-removed")

    def _data_published(self, date: str) -> None:
        """The day's data file is in place (the manifest not yet): remember its format for this run."""
        if self._formats is not None:
            self._formats[date] = self.file_format
        fault_point("data-published")

    def _write_manifest(self, date: str, data: bytes, *, data_version: str | None = None) -> None:
        """Manifests: atomic too (rename locally, one PUT remotely).

        With conditional writes a manifest is written only while the day file is still the one it
        describes (``data_version``), conditional on the manifest read before that check: of two
        writers racing, the one whose file was replaced leaves the manifest to the later one.
        """
        if not self.local:
            if self.preconditions is None or data_version is None:
                self.manifest_path(date).write_bytes(data)
                return
            path = self.manifest_path(date)
            for _ in range(MERGE_ATTEMPTS):
                held = self.preconditions.version(path)
                if self.preconditions.version(self.day_path(date)) != data_version:
                    return  # a later writer replaced the file; its manifest is its own to write
                try:
                    self.preconditions.write(path, data, held)
                    return
                except WriteConflict:
                    continue
            raise OpenAIUsageStorageError(f"{path}: other writers kept replacing it; retry the task")
        control = os.path.join(self.root.path, CONTROL_DIR)
        tmp = os.path.join(control, "tmp", f"{new_token()}.tmp")
        with _locked_temp(tmp, make_parents=True) as fd:
            _write_all(fd, data)
            _replace(tmp, os.path.join(control, "manifests", f"date={date}.json"))

    @contextlib.contextmanager
    def dataset_lock(self) -> Iterator[None]:
        """Serialize publishing (and recovery) between writers of this dataset on the same disk.

        Held while a batch of days is published (milliseconds per day), and while a day that is
        merged from the file it replaces is read, merged and published. Object stores have no cheap
        lock: there a merge is published by a conditional write instead (``_publish_merged``).
        """
        if not self.local:
            yield
            return
        import fcntl

        path = os.path.join(self.root.path, CONTROL_DIR, "lock")
        try:
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        except FileNotFoundError:
            os.makedirs(os.path.dirname(path), exist_ok=True)
            fd = os.open(path, os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)


@dataclass
class StagedDay:
    """A day's new file in its locked temp (``DayStore.stage``), waiting for ``DayStore.commit``."""

    date: str
    token: str
    record: dict[str, Any]
    path: str
    fd: int
    #: The day file's version this one was merged from (None: replace whatever is there).
    expected: str | None = None
    closed: bool = False

    def close(self) -> None:
        """Remove the temp (if it was not published) and release its lock. Idempotent."""
        if self.closed:
            return
        self.closed = True
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        os.close(self.fd)


def file_metadata(record: Mapping[str, Any]) -> dict[str, Any]:
    """What a Parquet day file carries about itself in its own metadata (readable by any reader)."""
    return {k: record[k] for k in ("identity", "covered")}


def _fsync_all(fds: Sequence[int]) -> None:
    """Make many files durable at once: concurrent fsyncs share the filesystem's journal commits."""
    if len(fds) <= 1:
        for fd in fds:
            os.fsync(fd)
        return
    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(min(8, len(fds)), thread_name_prefix="openai-usage-fsync") as pool:
        list(pool.map(os.fsync, fds))


def _read_fd(fd: int) -> bytes:
    """A staged temp's bytes (read from its start without moving the writer's offset)."""
    size = os.fstat(fd).st_size
    parts, at = [], 0
    while at < size:
        chunk = os.pread(fd, size - at, at)
        if not chunk:
            break
        parts.append(chunk)
        at += len(chunk)
    return b"".join(parts)


def _write_all(fd: int, data: Any) -> None:
    """``os.write`` until every byte of ``data`` (bytes or a buffer) is written."""
    view = memoryview(data).cast("B")
    while view:
        view = view[os.write(fd, view) :]


def _replace(src: str, dest: str) -> None:
    """``os.replace``, creating ``dest``'s folder only when it is missing (no ``mkdir`` per file)."""
    try:
        os.replace(src, dest)
    except FileNotFoundError:
        os.makedirs(os.path.dirname(dest), exist_ok=True)
        os.replace(src, dest)


def new_token() -> str:
    """A temp's unique name: random, and the writer's pid (so a clean-up can tell a dead writer's empty temp)."""
    return f"{uuid.uuid4().hex[:16]}-{os.getpid()}"


_TOKEN_PID = re.compile(r"-(\d+)(?:\.[a-z]+)?\.tmp$")


def _writer_may_live(path: str) -> bool:
    """False only when the temp's name carries a pid and no such process exists."""
    match = _TOKEN_PID.search(path)
    if match is None:
        return True
    pid = int(match.group(1))
    if pid == os.getpid():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _open_locked_temp(path: str, *, make_parents: bool = False) -> int:
    """Create ``path`` exclusively and take an flock on it; the caller removes it and closes the fd.

    Every temporary file is locked by its writer, so a concurrent run's clean-up (``_is_locked``)
    removes only temps whose writer died (the kernel drops a dead process's locks).
    Mode 0o666 & ~umask: a published file gets the mode any file of this process gets (0644 under 022).
    """
    import fcntl

    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    except FileNotFoundError:
        if not make_parents:
            raise
        os.makedirs(os.path.dirname(path), exist_ok=True)
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o666)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
    except BaseException:
        os.close(fd)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        raise
    return fd


@contextlib.contextmanager
def _locked_temp(path: str, *, make_parents: bool = False) -> Iterator[int]:
    """``_open_locked_temp`` for the length of a ``with`` block; the temp is removed at the end."""
    fd = _open_locked_temp(path, make_parents=make_parents)
    try:
        yield fd
    finally:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        os.close(fd)


def _is_locked(path: str, *, remove_if_free: bool = False) -> bool:
    """Whether a live writer holds ``path``'s lock; a free (dead writer's) temp is removed if asked."""
    import fcntl

    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return False
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                return True
            raise
        info = os.fstat(fd)
        if info.st_size == 0 and time.time() - info.st_mtime < FRESH_EMPTY_TEMP_SECONDS and _writer_may_live(path):
            return True  # just created, maybe not locked yet by a live writer: leave it to a later run
        if remove_if_free:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
        return False
    finally:
        os.close(fd)


def _uri(path: ObjectStoragePath) -> str:
    return path.as_uri() if hasattr(path, "as_uri") else str(path)


def _manifest_bytes(record: Mapping[str, Any]) -> bytes:
    return (canonical_json(record) + "\n").encode()


def _read_or_none(path: ObjectStoragePath) -> bytes | None:
    try:
        return path.read_bytes()
    except (FileNotFoundError, IsADirectoryError):
        return None
    except OSError as exc:
        if getattr(exc, "errno", None) == errno.ENOENT:
            return None
        raise
