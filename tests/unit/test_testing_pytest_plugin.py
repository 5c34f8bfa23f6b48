"""testing/pytest_plugin.py: the fixtures DAG authors get from installing the provider (pytest11 entry point)."""

from __future__ import annotations


def test_pytest_plugin_fixtures_point_the_default_connection_at_a_fake(fake_openai_usage_api, openai_usage_connection):
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

    assert openai_usage_connection == "openai_usage_default"
    ok, message = OpenAIUsageHook().test_connection()
    assert ok, message
    assert len(fake_openai_usage_api.requests) == 1


def test_each_test_gets_its_own_fake(fake_openai_usage_api):
    assert fake_openai_usage_api.base_url.startswith("http://127.0.0.1:")
    assert fake_openai_usage_api.requests == [], "a fresh fake has served nothing"
