"""The `openai_usage` connection: extras declared once, read and validated once, the key never shown."""

from __future__ import annotations

import copy
import dataclasses
import json
import pickle
import socket

import pytest
from conftest import DAY, NOW, SENTINEL_KEY

from airflow_provider_openai_usage.connection import CONNECTION_EXTRAS, TEXT_EXTRAS, ConnectionSettings, SecretStr, conn_fields
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.get_provider_info import get_provider_info
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook

START = NOW - 10 * DAY


def use_connection(monkeypatch, conn_id: str, **conn) -> OpenAIUsageHook:
    monkeypatch.setenv(f"AIRFLOW_CONN_{conn_id.upper()}", json.dumps({"conn_type": "openai_usage", **conn}))
    return OpenAIUsageHook(conn_id)


def test_plain_http_is_refused_for_non_loopback_hosts(monkeypatch):
    hook = use_connection(monkeypatch, "remote", host="http://api.openai.com/v1", password=SENTINEL_KEY)
    with pytest.raises(OpenAIUsageValidationError, match="plain http to a non-loopback host") as info:
        list(hook.iter_rows("costs", START, NOW))
    assert SENTINEL_KEY not in str(info.value)


def test_empty_host_means_openai_and_uri_form_works(fake_api, monkeypatch):
    assert use_connection(monkeypatch, "defaults", password=SENTINEL_KEY).settings.base_url == "https://api.openai.com/v1"
    monkeypatch.setenv("AIRFLOW_CONN_URI", f"openai-usage://:{SENTINEL_KEY}@127.0.0.1:{fake_api.port}/v1?max_retries=1")
    hook = OpenAIUsageHook("uri")
    assert hook.settings.base_url == f"http://127.0.0.1:{fake_api.port}/v1" and hook.settings.max_retries == 1
    assert len(list(hook.iter_buckets("costs", START, NOW))) == 10


def test_missing_key_is_explained(monkeypatch):
    hook = use_connection(monkeypatch, "nokey")
    with pytest.raises(OpenAIUsageValidationError, match="'nokey' has no password; put the admin API key there"):
        list(hook.iter_rows("costs", START, NOW))


@pytest.mark.parametrize(
    ("bad_key", "what"),
    [
        (SENTINEL_KEY[:20] + "\n" + SENTINEL_KEY[20:], "a newline at position 21"),
        (SENTINEL_KEY[:20] + "\r\nX-Injected: 1", "a carriage return at position 21"),
        (SENTINEL_KEY[:10] + " " + SENTINEL_KEY[10:], "a space at position 11"),
        (SENTINEL_KEY + "\u00e9", "a non-ASCII character"),
        (SENTINEL_KEY[:5] + "\x00" + SENTINEL_KEY[5:], "a control character"),
    ],
)
def test_a_key_that_cannot_be_a_header_is_refused_without_showing_it(fake_api, monkeypatch, bad_key, what):
    hook = use_connection(monkeypatch, "badkey", host=fake_api.base_url, password=bad_key)
    with pytest.raises(OpenAIUsageValidationError, match=f"'badkey': the admin key \\(password\\) has {what}") as info:
        list(hook.iter_rows("costs", START, NOW))
    ok, message = OpenAIUsageHook("badkey").test_connection()
    assert not ok and what in message
    for text in (str(info.value), repr(info.value), message):
        assert SENTINEL_KEY[:12] not in text and SENTINEL_KEY[-12:] not in text
    assert fake_api.requests == [], "nothing may be sent with a key that is not a header value"


def test_surrounding_whitespace_of_a_pasted_key_is_dropped(fake_api, monkeypatch):
    hook = use_connection(monkeypatch, "pasted", host=fake_api.base_url, password=f"  {SENTINEL_KEY}\n")
    assert len(list(hook.iter_buckets("costs", START, NOW))) == 10


def test_settings_dump_without_the_key(fake_api, conn_id):
    settings = OpenAIUsageHook(conn_id).settings
    dumped = dataclasses.asdict(settings)
    assert dumped["base_url"] == fake_api.base_url and dumped["timeout"] == 120
    texts = [repr(settings), str(settings), repr(dumped), str(dumped), f"{settings.api_key}", str(copy.deepcopy(settings))]
    assert all(SENTINEL_KEY not in t for t in texts)
    assert settings.api_key.get_secret_value() == SENTINEL_KEY
    with pytest.raises(TypeError, match="not picklable"):
        pickle.dumps(settings)
    with pytest.raises(TypeError):
        json.dumps(dumped)


def test_secret_str_compares_by_value_and_is_falsy_when_empty():
    assert SecretStr("a") == SecretStr("a") != SecretStr("b")
    assert not SecretStr("") and SecretStr("x")


def test_defaults_come_from_the_declaration(monkeypatch):
    settings = use_connection(monkeypatch, "plain", password=SENTINEL_KEY).settings
    for name, spec in CONNECTION_EXTRAS.items():
        assert getattr(settings, name) == spec.default, name
    bare = ConnectionSettings(base_url="https://x", api_key=SecretStr("k"))
    assert bare.max_total_retry_wait == CONNECTION_EXTRAS["max_total_retry_wait"].default


def test_every_extra_is_read_including_the_legacy_prefixed_spelling(monkeypatch):
    extra = {"timeout": "7", "max_retries": 2, "max_retry_wait": 9.5, "max_total_retry_wait": 30,
             "extra__openai_usage__backoff_base": 0.25, "max_retry_after": 4}
    settings = use_connection(monkeypatch, "tuned", password=SENTINEL_KEY, extra=extra).settings
    assert (settings.timeout, settings.max_retries, settings.max_retry_wait, settings.max_total_retry_wait) == (7.0, 2, 9.5, 30.0)
    assert (settings.backoff_base, settings.max_retry_after) == (0.25, 4.0)
    assert isinstance(settings.max_retries, int)


@pytest.mark.parametrize(
    ("extra", "fragment"),
    [
        ({"timeout": "soon"}, r"extra timeout='soon', which is not a number"),
        ({"max_retries": 2.5}, r"extra max_retries=2.5, which is not an integer"),
        ({"max_retries": True}, r"extra max_retries=True, which is not an integer"),
        ({"max_retry_wait": -1}, r"extra max_retry_wait=-1; it must be a finite number >= 0"),
        ({"timeout": 0}, r"extra timeout=0; it must be a finite number >= 0.1"),
        ({"max_total_retry_wait": "nan"}, r"extra max_total_retry_wait='nan'; it must be a finite number"),
        ({"backoff_base": "inf"}, r"extra backoff_base='inf'; it must be a finite number"),
    ],
)
def test_bad_extras_name_the_extra_and_its_value(monkeypatch, fake_api, extra, fragment):
    hook = use_connection(monkeypatch, "badextra", host=fake_api.base_url, password=SENTINEL_KEY, extra=extra)
    with pytest.raises(OpenAIUsageValidationError, match=f"connection 'badextra' has {fragment}") as info:
        list(hook.iter_rows("costs", START, NOW))
    assert SENTINEL_KEY not in str(info.value) and fake_api.requests == []


def test_the_ui_form_shows_every_declared_extra_but_the_hidden_ones():
    (conn,) = get_provider_info()["connection-types"]
    fields = conn["conn-fields"]
    assert fields == conn_fields()
    assert set(fields) == {name for name, spec in CONNECTION_EXTRAS.items() if spec.in_ui} | set(TEXT_EXTRAS)
    assert fields["organization_id"]["schema"] == {"type": ["string", "null"]}
    assert {"timeout", "max_retries", "max_retry_wait", "max_total_retry_wait"} <= set(fields)
    assert "backoff_base" not in fields and "max_retry_after" not in fields
    assert {"backoff_base", "max_retry_after"} <= set(CONNECTION_EXTRAS)
    assert fields["max_retries"]["schema"] == {"type": ["integer", "null"], "minimum": 0, "default": 6}
    assert fields["timeout"]["schema"]["default"] == 60


def test_every_extra_is_documented():
    from pathlib import Path

    page = (Path(__file__).resolve().parents[2] / "docs" / "connection.md").read_text()
    for name in [*CONNECTION_EXTRAS, *TEXT_EXTRAS]:
        assert f"`{name}`" in page, name


def test_organization_extras_are_read_as_text_and_refused_when_not_text(monkeypatch, fake_api):
    hook = use_connection(monkeypatch, "org", host=fake_api.base_url, password=SENTINEL_KEY,
                          extra={"organization_id": " org-abc ", "organization_name": "Acme"})
    assert (hook.settings.organization_id, hook.settings.organization_name) == ("org-abc", "Acme")
    hook = use_connection(monkeypatch, "orgbad", host=fake_api.base_url, password=SENTINEL_KEY, extra={"organization_id": 42})
    with pytest.raises(OpenAIUsageValidationError, match=r"connection 'orgbad' has extra organization_id=42, which is not text"):
        hook.settings  # noqa: B018 - reading the settings validates them
    assert fake_api.requests == []


def test_an_extra_the_provider_does_not_read_is_named_in_a_warning(fake_api, monkeypatch, capsys):
    hook = use_connection(monkeypatch, "typo", host=fake_api.base_url, password=SENTINEL_KEY,
                          extra={"max_retry": 3, "extra__openai_usage__timeout": 9, "timeout": 8})
    assert hook.settings.timeout == 8 and hook.settings.max_retries == CONNECTION_EXTRAS["max_retries"].default
    captured = capsys.readouterr()
    warnings = [line for line in (captured.out + captured.err).splitlines() if "does not read" in line]
    assert len(warnings) == 1 and "'typo' has extras this provider does not read: max_retry (known: timeout" in warnings[0]
    assert SENTINEL_KEY not in captured.out + captured.err


def test_a_port_out_of_range_is_refused_with_the_host(monkeypatch):
    hook = use_connection(monkeypatch, "badport", host="http://127.0.0.1:99999/v1", password=SENTINEL_KEY)
    with pytest.raises(OpenAIUsageValidationError, match=r"host 'http://127.0.0.1:99999/v1' has a port that is not a number from 1"):
        list(hook.iter_rows("costs", START, NOW))
    ok, message = hook.test_connection()
    assert not ok and "has a port" in message


def test_a_host_requests_cannot_parse_fails_with_our_error_and_no_request(monkeypatch):
    from airflow_provider_openai_usage.exceptions import OpenAIUsageAPIError

    hook = use_connection(monkeypatch, "badhost", host="https://exa mple..com/v1", password=SENTINEL_KEY)
    with pytest.raises(OpenAIUsageAPIError, match=r"costs: the request could not be sent: InvalidURL: .*invalid character") as info:
        list(hook.iter_rows("costs", START, NOW))
    assert SENTINEL_KEY not in str(info.value)


def test_an_underscore_uri_scheme_is_refused_naming_the_fix_and_never_the_key(monkeypatch):
    """Airflow 3 cannot split ``openai_usage://``: the whole URI, key included, lands in ``schema``."""
    monkeypatch.setenv("AIRFLOW_CONN_UNDERSCORE", f"openai_usage://:{SENTINEL_KEY}@")
    with pytest.raises(OpenAIUsageValidationError, match="write `openai-usage://:<admin key>@`") as info:
        list(OpenAIUsageHook("underscore").iter_rows("costs", START, NOW))
    assert SENTINEL_KEY not in str(info.value) and SENTINEL_KEY[-12:] not in str(info.value)


def test_a_base_url_without_v1_gets_a_404_that_says_so(fake_api, monkeypatch):
    hook = use_connection(monkeypatch, "nov1", host=f"http://127.0.0.1:{fake_api.port}", password=SENTINEL_KEY,
                          extra={"max_retries": 0})
    with pytest.raises(Exception, match=rf"HTTP 404: Invalid URL .*does not end in /v1: OpenAI's API is under http://127.0.0.1:{fake_api.port}/v1"):
        list(hook.iter_rows("costs", START, NOW))
    ok, message = hook.test_connection()
    assert not ok and "does not end in /v1" in message


def test_an_unreachable_api_is_named_and_the_connection_test_answers_after_one_retry(fake_api, monkeypatch):
    from airflow_provider_openai_usage.testing import status

    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        closed = s.getsockname()[1]
    hook = use_connection(monkeypatch, "down", host=f"http://127.0.0.1:{closed}/v1", password=SENTINEL_KEY,
                          extra={"max_retries": 2, "backoff_base": 0.01})
    with pytest.raises(Exception, match=rf"giving up after 3 attempts on /organization/costs: connection failed \(ConnectionError\) to http://127.0.0.1:{closed}/v1"):
        list(hook.iter_rows("costs", START, NOW))
    # The Test button: one retry, whatever max_retries the tasks use (counted on a server that fails).
    slow = use_connection(monkeypatch, "flaky", host=fake_api.base_url, password=SENTINEL_KEY, extra={"max_retries": 6})
    fake_api.schedule_faults(*[status(503)] * 6)
    ok, message = slow.test_connection()
    assert not ok and "giving up after 2 attempts" in message and len(fake_api.requests) == 2
    assert slow.settings.max_retries == 6, "the tasks keep their own retries"
