"""exceptions.py: one family callers can catch, that Airflow treats as a task failure, with API details kept."""

from __future__ import annotations

import pytest
from airflow.sdk.exceptions import AirflowException

from airflow_provider_openai_usage.exceptions import (
    OpenAIUsageAPIError,
    OpenAIUsageAuthError,
    OpenAIUsageError,
    OpenAIUsageResponseError,
    OpenAIUsageValidationError,
)


@pytest.mark.parametrize("cls", [OpenAIUsageValidationError, OpenAIUsageAPIError, OpenAIUsageAuthError, OpenAIUsageResponseError])
def test_every_error_is_ours_and_an_airflow_failure(cls):
    assert issubclass(cls, OpenAIUsageError) and issubclass(cls, AirflowException)


def test_validation_errors_are_value_errors_and_auth_errors_are_api_errors():
    with pytest.raises(ValueError, match="bucket_width"):
        raise OpenAIUsageValidationError("bucket_width='2d' ...")
    assert issubclass(OpenAIUsageAuthError, OpenAIUsageAPIError)
    assert not issubclass(OpenAIUsageResponseError, OpenAIUsageAPIError)


def test_api_errors_keep_status_message_and_param():
    error = OpenAIUsageAuthError("401 from OpenAI", status=401, api_message="Missing scopes: api.usage.read", param=None)
    assert str(error) == "401 from OpenAI"
    assert (error.status, error.api_message, error.param) == (401, "Missing scopes: api.usage.read", None)
    plain = OpenAIUsageAPIError("boom")
    assert (plain.status, plain.api_message, plain.param) == (None, None, None)
