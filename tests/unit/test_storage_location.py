"""storage.location: an output_path that cannot be written fails before any request, naming it and the fix."""

from __future__ import annotations

import pytest
from conftest import DAY
from storage_support import D8, ctx

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator


@pytest.mark.parametrize(
    "output_path, fragment",
    [
        ("ftp://example.com/usage", "output_path='ftp://example.com/usage': ftp:// is not a storage"),
        ("http://example.com/usage", "http:// is not a storage"),
        ("relative/path", "is relative"),
        ("file:///proc/openai-usage", "output_path='file:///proc/openai-usage' cannot be written"),
    ],
)
def test_an_output_path_that_cannot_be_written_fails_before_any_request(fake_api, conn_id, output_path, fragment):
    with pytest.raises(OpenAIUsageValidationError, match=fragment.replace("(", r"\(").replace("?", r"\?")):
        OpenAIUsageOperator(task_id="t", endpoint="completions", output_path=output_path).execute(ctx(D8, D8 + DAY))
    assert fake_api.requests == []


def test_an_output_path_under_a_file_fails_before_any_request(fake_api, conn_id, tmp_path):
    (tmp_path / "a-file").write_text("x")
    with pytest.raises(OpenAIUsageValidationError, match=r"output_path='.*a-file/usage' cannot be written \(.*\); point output_path"):
        OpenAIUsageOperator(task_id="t", endpoint="completions", output_path=str(tmp_path / "a-file" / "usage")).execute(ctx(D8, D8 + DAY))
    assert fake_api.requests == []
