"""storage/usage.py on days of real size: a 1m day of 72,000 rows spans two Parquet row groups.

Here rather than in tests/unit: the fake API generates the whole grouped minute day three times
(~5 s), which is what keeps the unit loop within a minute on a busy 2-core machine.
"""

from __future__ import annotations

from storage_support import D8, H, day, files, write

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from conftest import ORG_DIR

DAY = 86400


def test_a_day_bigger_than_a_row_group_streams_to_the_bytes_of_the_same_day_merged_from_two_halves(fake_api, conn_id, tmp_path):
    """The streamed path (row groups encoded mid-day from chunks built bucket by bucket) and the merged path
    (the old half read back, the new half appended, encoded in one call) must give the same file."""
    from airflow_provider_openai_usage.storage.formats import ROW_GROUP_ROWS

    fake_api.controls.dense_groups = 50  # 1,440 minutes x 50 groups = 72,000 rows: two row groups
    dims = [d.name for d in ENDPOINTS["completions"].dimensions]
    write(tmp_path / "whole", D8, D8 + DAY, group_by=dims, bucket_width="1m")
    for start, end in ((D8 + 12 * H, D8 + DAY), (D8, D8 + 12 * H)):
        write(tmp_path / "halves", start, end, group_by=dims, bucket_width="1m")
    whole = tmp_path / "whole" / "completions" / ORG_DIR / f"date={day(D8)}" / "data.parquet"
    import pyarrow.parquet as pq

    assert pq.read_metadata(whole).num_rows > ROW_GROUP_ROWS, "the day must span more than one row group to mean anything"
    assert files(tmp_path / "halves" / "completions" / ORG_DIR / f"date={day(D8)}") == files(tmp_path / "whole" / "completions" / ORG_DIR / f"date={day(D8)}")
