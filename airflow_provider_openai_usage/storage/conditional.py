"""Versioned reads and conditional writes on object stores: the lock an object store does not have.

Why: a part of a day is merged from the file it replaces (read, merge, write). On a local disk an
``flock`` serializes that; an object store has no lock, so two writers merging different parts of
the same day both read version 1 and the second PUT silently drops the first one's rows. With a
precondition on the PUT (S3 ``If-Match: <etag read>``, or ``If-None-Match: *`` for "the day had no
file"), the second writer's PUT is refused (412), and it re-reads the day and merges again.

``preconditions_for`` answers which stores this provider can do that on (S3 and S3-compatible
stores through s3fs); for the others it returns None and callers refuse what would need it.
"""

from __future__ import annotations

import contextlib
import errno
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: The version of an object that does not exist ("create only": ``If-None-Match: *``).
ABSENT = ""
#: Error codes S3 answers when a precondition does not hold (409: two conditional writes raced).
_CONFLICT_CODES = ("PreconditionFailed", "ConditionalRequestConflict", "NoSuchKey")


class WriteConflict(Exception):
    """The object changed since its version was read: re-read it and try again."""


class Preconditions(Protocol):
    """What a store offers for optimistic concurrency: versions, and writes conditional on them."""

    def read(self, path: ObjectStoragePath) -> tuple[bytes | None, str]:
        """The object's bytes (None: no object) and the version they are (``ABSENT`` for none)."""

    def version(self, path: ObjectStoragePath) -> str:
        """The object's current version, ``ABSENT`` when there is none."""

    def write(self, path: ObjectStoragePath, data: bytes, expected: str | None) -> str:
        """Store ``data`` if the object is still at ``expected`` (None: unconditionally); its new version.

        Raises ``WriteConflict`` when another writer changed it first.
        """


def preconditions_for(path: ObjectStoragePath) -> Preconditions | None:
    """The store's conditional writes, or None when this provider knows of none for it."""
    fs = path.fs
    with contextlib.suppress(ImportError):
        from s3fs import S3FileSystem

        if isinstance(fs, S3FileSystem):
            return _S3(fs)
    return None


class _S3:
    """S3 through s3fs's own client (``put_object(IfMatch=..., IfNoneMatch='*')``, botocore ≥ 1.35)."""

    def __init__(self, fs: Any) -> None:
        self.fs = fs

    def _key(self, path: ObjectStoragePath) -> tuple[str, str]:
        bucket, key, _ = self.fs.split_path(path.path)
        return bucket, key

    def read(self, path: ObjectStoragePath) -> tuple[bytes | None, str]:
        from fsspec.asyn import sync

        bucket, key = self._key(path)

        async def get() -> tuple[bytes | None, str]:
            try:
                resp = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return None, ABSENT
            try:
                return await resp["Body"].read(), resp["ETag"]
            finally:
                resp["Body"].close()

        result: tuple[bytes | None, str] = sync(self.fs.loop, get)
        return result

    def version(self, path: ObjectStoragePath) -> str:
        bucket, key = self._key(path)
        try:
            return str(self.fs.call_s3("head_object", Bucket=bucket, Key=key)["ETag"])
        except FileNotFoundError:
            return ABSENT

    def write(self, path: ObjectStoragePath, data: bytes, expected: str | None) -> str:
        bucket, key = self._key(path)
        condition = {} if expected is None else {"IfNoneMatch": "*"} if expected == ABSENT else {"IfMatch": expected}
        try:
            resp = self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except OSError as exc:
            if _is_conflict(exc):
                raise WriteConflict(f"{path} changed since it was read") from None
            raise
        finally:
            self.fs.invalidate_cache(path.path)
        return str(resp["ETag"])


def _is_conflict(exc: OSError) -> bool:
    """s3fs turns a 412 into ``FileExistsError`` (If-None-Match) or ``OSError(EINVAL)`` (If-Match)."""
    if isinstance(exc, (FileExistsError, FileNotFoundError)):
        return True
    response = getattr(exc.__cause__, "response", None) or {}
    code = response.get("Error", {}).get("Code")
    return code in _CONFLICT_CODES or (exc.errno == errno.EINVAL and "precondition" in str(exc).lower())
