"""Pytest fixtures for DAG authors: ``fake_openai_usage_api`` and ``openai_usage_connection``.

Registered through the ``pytest11`` entry point, so installing the provider makes them available
in any project's tests.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from airflow_provider_openai_usage.testing.server import FakeOpenAIUsageAPI


@pytest.fixture
def fake_openai_usage_api() -> Iterator[FakeOpenAIUsageAPI]:
    """A fresh fake API on 127.0.0.1 for one test."""
    with FakeOpenAIUsageAPI() as api:
        yield api


@pytest.fixture
def openai_usage_connection(fake_openai_usage_api: FakeOpenAIUsageAPI, monkeypatch: pytest.MonkeyPatch) -> str:
    """Points ``openai_usage_default`` at the fake API through the environment; returns the conn id."""
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_openai_usage_api.connection_json())
    return "openai_usage_default"
