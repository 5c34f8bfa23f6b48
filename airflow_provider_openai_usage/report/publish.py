"""Publish a small file under an ObjectStoragePath in one step (report pages, charts, alert markers).

Locally the bytes go to a temporary file in the destination folder and are renamed over the
destination (``os.replace`` is atomic), with the mode any file of the process gets, as day files
do; on object stores one PUT makes the object appear whole or
not at all. A reader never sees half a page or half a marker.
"""

from __future__ import annotations

import os
import uuid
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath


def is_local(path: ObjectStoragePath) -> bool:
    return getattr(path, "protocol", "file") in ("file", "local", "")


def publish_bytes(dest: ObjectStoragePath, data: bytes) -> None:
    if is_local(dest):
        dest.parent.mkdir(parents=True, exist_ok=True)
        # Not mkstemp (always 0600): 0o666 minus the umask, the mode every day file gets (one rule).
        tmp = os.path.join(dest.parent.path, f".{dest.name}.{uuid.uuid4().hex}.tmp")
        fd = os.open(tmp, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o666)
        try:
            with os.fdopen(fd, "wb") as fh:
                fh.write(data)
            os.replace(tmp, dest.path)
        except BaseException:
            os.unlink(tmp)
            raise
    else:
        dest.fs.pipe_file(dest.path, data)


def read_bytes_if_exists(path: ObjectStoragePath) -> bytes | None:
    try:
        with path.open("rb") as fh:
            return fh.read()
    except FileNotFoundError:
        return None
