"""One error family, so callers can catch ours without catching Airflow's or requests'.

Every error derives from ``AirflowException`` so Airflow marks tasks failed with our message.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException


class OpenAIUsageError(AirflowException):
    """Base class of every error this provider raises."""


class OpenAIUsageValidationError(OpenAIUsageError, ValueError):
    """A parameter was refused before any request: the message names it, its value and the allowed ones."""


class OpenAIUsageAPIError(OpenAIUsageError):
    """OpenAI answered with an error status (after retries, for retryable ones).

    ``status`` is the HTTP status, ``api_message`` and ``param`` come from OpenAI's error body
    (``{"error": {"message", "param"}}``), already scrubbed of secrets like the message itself.
    """

    def __init__(self, message: str, *, status: int | None = None, api_message: str | None = None, param: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.api_message = api_message
        self.param = param


class OpenAIUsageAuthError(OpenAIUsageAPIError):
    """401/403: never retried, since a key does not gain scopes by waiting."""


class OpenAIUsageResponseError(OpenAIUsageError):
    """The response cannot be trusted (wrong object, bucket out of range, cursor loop): nothing is written."""


class OpenAIUsageStorageError(OpenAIUsageError):
    """A day cannot be written as asked (it holds other rows, another format, files changed by hand).

    Raised before anything of that day is written; the message says what differs and what to do.
    """
