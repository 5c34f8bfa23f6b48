"""``output_path`` → an ``ObjectStoragePath``, refused early when no filesystem could write there.

``check_output_path`` only looks at the text (usable at DAG parse time, no I/O); the writability
probe runs at the start of a run, before any API request (``DayStore.prepare``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

#: Schemes that name a writable object store or disk (through fsspec/Airflow's ObjectStoragePath).
WRITABLE_SCHEMES = ("file", "s3", "s3a", "gs", "gcs", "abfs", "abfss", "az", "adl", "hdfs", "webhdfs", "oss")
_FIX = "use s3://bucket/prefix, gs://bucket/prefix, abfs://container/prefix or an absolute local path (file:///data/openai)"


def check_output_path(output_path: Any) -> str:
    """The URL ``output_path`` stands for, or an error naming the value and the fix (no I/O)."""
    if not isinstance(output_path, str) or not output_path.strip():
        raise OpenAIUsageValidationError(f"output_path={output_path!r} must be a URL: {_FIX}")
    url = output_path.strip()
    if "://" not in url:
        if not url.startswith("/"):
            raise OpenAIUsageValidationError(f"output_path={output_path!r} is relative; {_FIX}")
        url = "file://" + url
    scheme = url.split("://", 1)[0].lower()
    if scheme not in WRITABLE_SCHEMES:
        raise OpenAIUsageValidationError(
            f"output_path={output_path!r}: {scheme}:// is not a storage this provider can write partitions to "
            f"(allowed: {', '.join(s + '://' for s in WRITABLE_SCHEMES)}); {_FIX}"
        )
    return url.rstrip("/")


def output_location(output_path: Any, output_conn_id: str | None) -> ObjectStoragePath:
    from airflow.sdk import ObjectStoragePath

    if isinstance(output_path, ObjectStoragePath):
        check_output_path(output_path.as_uri())
        return output_path if output_conn_id is None else ObjectStoragePath(output_path.as_uri(), conn_id=output_conn_id)
    url = check_output_path(output_path)
    try:
        return ObjectStoragePath(url, conn_id=output_conn_id)
    except ValueError as exc:  # e.g. "No filesystem registered for scheme gs" without the provider installed
        raise OpenAIUsageValidationError(
            f"output_path={output_path!r} cannot be opened: {exc}; install the provider for that store or {_FIX}"
        ) from None
