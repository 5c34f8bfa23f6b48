"""The Spend view's plugin class (``plugins/spend.py``): what Airflow reads from it. The app's pages
are in test_plugins_spend_app.py; the real api-server, its login and the browser in
tests/integration/test_spend_view_browser.py."""

from __future__ import annotations

from airflow_provider_openai_usage.plugins.spend import URL_PREFIX, LazySpendApp, OpenAIUsageSpendPlugin


def test_the_plugin_mounts_a_lazy_app_and_one_nav_entry() -> None:
    (app,) = OpenAIUsageSpendPlugin.fastapi_apps
    (view,) = OpenAIUsageSpendPlugin.external_views
    assert isinstance(app["app"], LazySpendApp) and app["url_prefix"] == URL_PREFIX
    assert view["name"] == "Spend" and view["href"] == f"{URL_PREFIX}/" and view["destination"] == "nav"


def test_the_module_imports_nothing_heavy() -> None:
    import subprocess
    import sys

    code = "import sys, airflow_provider_openai_usage.plugins.spend; print([m for m in ('fastapi', 'pyarrow') if m in sys.modules])"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip().splitlines()[-1] == "[]", out.stdout + out.stderr
