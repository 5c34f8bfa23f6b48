"""Landing data as one file per UTC day on any ``ObjectStoragePath``, exactly once.

- ``days``: the publishing primitive (``DayStore``): atomically replace one day's file of a dataset,
  record what it holds, recover from crashes; ``list_day_files``/``read_day_table`` for readers.
- ``usage``: usage/costs buckets → merged day files (``PartitionWriter``), identity rules, day totals.
- ``formats``: Arrow tables ↔ Parquet/JSONL/CSV bytes.
- ``location``: ``output_path`` checks.

Importing this package is cheap (pyarrow is imported inside the functions that use it).
"""

from airflow_provider_openai_usage.exceptions import OpenAIUsageStorageError
from airflow_provider_openai_usage.storage.days import (
    DayFile,
    DayStore,
    list_day_files,
    read_day_table,
)
from airflow_provider_openai_usage.storage.formats import FILE_FORMATS, check_file_format
from airflow_provider_openai_usage.storage.location import check_output_path, output_location
from airflow_provider_openai_usage.storage.usage import (
    DayResult,
    PartitionWriter,
    arrow_schema,
    day_totals,
    usage_identity,
)

__all__ = [
    "FILE_FORMATS",
    "DayFile",
    "DayResult",
    "DayStore",
    "OpenAIUsageStorageError",
    "PartitionWriter",
    "arrow_schema",
    "check_file_format",
    "check_output_path",
    "day_totals",
    "list_day_files",
    "output_location",
    "read_day_table",
    "usage_identity",
]
