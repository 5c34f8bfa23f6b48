"""The "Spend" entry of the Airflow 3 UI: an external view backed by a FastAPI app of this plugin.

Airflow lists the plugin through the provider info (``plugins``), mounts ``fastapi_apps`` on the
api-server under ``/openai-usage`` and shows ``external_views`` in its navigation; the view is
the app's page in an iframe of the UI, so the browser sends the UI's session cookie with it.

Every component that loads plugins (scheduler, workers, the dag processor) imports this module,
so it imports nothing heavy: the FastAPI app is built on its first request
(``spend_app.build_app``), inside the api-server.
"""

from __future__ import annotations

from typing import Any

from airflow.plugins_manager import AirflowPlugin

URL_PREFIX = "/openai-usage"


class LazySpendApp:
    """An ASGI app that builds the real one (FastAPI, Airflow's auth dependencies) when first called."""

    def __init__(self) -> None:
        self._app: Any = None

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if self._app is None:
            from airflow_provider_openai_usage.plugins.spend_app import build_app

            self._app = build_app()
        await self._app(scope, receive, send)

    def __str__(self) -> str:  # how Airflow's /plugins endpoint names the app
        return f"{__name__}.LazySpendApp"


class OpenAIUsageSpendPlugin(AirflowPlugin):
    """The Spend view: the latest spend report of a lake and its landing status, behind Airflow's auth."""

    name = "openai_usage_spend"
    fastapi_apps = [{"app": LazySpendApp(), "url_prefix": URL_PREFIX, "name": "OpenAI usage: spend"}]
    external_views = [
        {
            "name": "Spend",
            "href": f"{URL_PREFIX}/",
            "url_route": "openai-usage-spend",
            "destination": "nav",
            "nav_top_level": True,  # its own entry in the UI's navigation, beside Dags and Assets
        }
    ]
