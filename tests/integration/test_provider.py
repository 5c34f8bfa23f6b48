"""Airflow discovers the provider (CLI, providers manager, the API server's connection form) and imports stay cheap."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest


def airflow_cli(*args: str) -> str:
    result = subprocess.run([sys.executable, "-m", "airflow", *args], capture_output=True, text=True, env=os.environ.copy(), timeout=120)
    assert result.returncode == 0, result.stderr
    return result.stdout


def test_airflow_providers_list_shows_the_package():
    out = airflow_cli("providers", "list", "--output", "json")
    # Other installed providers (celery) print warnings on stdout before the JSON: read from its start.
    rows = {row["package_name"]: row for row in json.loads(out[out.index("[{"):])}
    assert rows["airflow-provider-openai-usage"]["version"] == "0.1.0"


def test_providers_manager_registers_the_connection_type():
    from airflow.sdk.providers_manager_runtime import ProvidersManagerTaskRuntime

    hooks = ProvidersManagerTaskRuntime().hooks
    assert hooks["openai_usage"].hook_class_name == "airflow_provider_openai_usage.hooks.usage.OpenAIUsageHook"
    assert hooks["openai_usage"].connection_testable


def test_the_connection_form_shows_admin_key_base_url_and_extras(airflow_db, monkeypatch):
    monkeypatch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "True")
    from airflow.api_fastapi.app import create_app
    from fastapi.testclient import TestClient

    client = TestClient(create_app())
    response = client.get("/ui/connections/hook_meta")
    assert response.status_code == 200, response.text
    meta = next(m for m in response.json() if m["connection_type"] == "openai_usage")
    standard = meta["standard_fields"]
    assert standard["password"]["title"] == "Admin API key"
    assert standard["host"]["title"] == "Base URL" and "api.openai.com" in standard["host"]["placeholder"]
    assert standard["login"]["hidden"] and standard["port"]["hidden"]
    assert {"timeout", "max_retries", "max_retry_wait"} <= set(meta["extra_fields"])


HEAVY = ("pyarrow", "pandas", "requests", "tenacity", "s3fs", "boto3", "botocore")


def loaded_heavy(statement: str) -> set[str]:
    code = f"import sys; {statement}; print(sorted(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=os.environ.copy())
    assert out.returncode == 0, out.stderr
    return set(json.loads(out.stdout.strip().splitlines()[-1].replace("'", '"')))


@pytest.mark.parametrize("module", ["airflow_provider_openai_usage.operators.usage", "airflow_provider_openai_usage.sensors.usage"])
def test_operator_and_sensor_modules_import_nothing_heavy_beyond_airflow_itself(module):
    baseline = loaded_heavy("import airflow.sdk")
    assert "pyarrow" not in baseline
    assert loaded_heavy(f"import {module}") - baseline == set()


def test_importing_the_focus_mapping_stays_cheap():
    code = "import sys, airflow_provider_openai_usage.focus; print(sorted(m for m in ('pyarrow', 'babel', 'pandas') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_importing_the_report_operators_stays_cheap():
    code = (
        "import sys; import airflow_provider_openai_usage.operators.report, airflow_provider_openai_usage.report.alerts; "
        "heavy = [m for m in ('matplotlib', 'duckdb', 'jinja2.environment_x') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"


def test_importing_the_directory_registry_stays_cheap():
    code = (
        "import sys, airflow_provider_openai_usage.directory; "
        "print(sorted(m for m in ('airflow', 'pyarrow', 'requests') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]"


def test_no_runtime_module_imports_the_starlette_test_client():
    # Its import warns on every run; Airflow's own dag.test path imports it (svcs), ours must not.
    modules = ["operators.usage", "sensors.usage", "hooks.usage", "triggers.usage", "testing", "testing.demo", "storage", "query"]
    code = "; ".join(f"import airflow_provider_openai_usage.{m}" for m in modules)
    code += "; import sys; print(sorted(m for m in sys.modules if m.startswith(('starlette', 'fastapi.testclient', 'httpx'))))"
    result = subprocess.run([sys.executable, "-c", code],
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "starlette.testclient" not in result.stdout and "fastapi.testclient" not in result.stdout, result.stdout


def test_the_fake_api_and_the_time_rules_import_no_airflow():
    # The pytest plugin loads the fake API before tests/conftest.py points AIRFLOW_HOME at a temp dir:
    # an Airflow import here would configure Airflow from ~/airflow.
    code = (
        "import sys, airflow_provider_openai_usage.testing.pytest_plugin, airflow_provider_openai_usage.times; "
        "print(sorted(m for m in ('airflow', 'pyarrow') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip().splitlines()[-1] == "[]"
