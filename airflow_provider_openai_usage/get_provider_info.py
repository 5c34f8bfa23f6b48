"""What Airflow learns about this package (entry point ``apache_airflow_provider``).

Connection form fields are declared here rather than through the hook's
``get_ui_field_behaviour``/``get_connection_form_widgets``: since Airflow 3.2 those methods are
deprecated and silently ignored on installs without the FAB provider. The fields themselves are
declared in ``connection.py``, next to the code that reads them.
"""

from __future__ import annotations

from typing import Any

from airflow_provider_openai_usage import __version__
from airflow_provider_openai_usage.connection import CONN_TYPE, conn_fields

PACKAGE = "airflow_provider_openai_usage"

def get_provider_info() -> dict[str, Any]:
    return {
        "package-name": "airflow-provider-openai-usage",
        "name": "OpenAI Usage",
        "description": "Pulls OpenAI's organization Usage and Costs API into partitioned object storage.",
        "versions": [__version__],
        "integrations": [
            {
                "integration-name": "OpenAI Usage",
                "external-doc-url": "https://platform.openai.com/docs/api-reference/usage",
                "tags": ["service"],
            }
        ],
        "hooks": [{"integration-name": "OpenAI Usage", "python-modules": [f"{PACKAGE}.hooks.usage"]}],
        "operators": [
            {
                "integration-name": "OpenAI Usage",
                "python-modules": [f"{PACKAGE}.operators.{name}" for name in ("usage", "directory", "focus", "report")],
            }
        ],
        "sensors": [{"integration-name": "OpenAI Usage", "python-modules": [f"{PACKAGE}.sensors.usage"]}],
        "triggers": [{"integration-name": "OpenAI Usage", "python-modules": [f"{PACKAGE}.triggers.usage"]}],
        # `airflow openai-usage status|verify` (Airflow's CLI calls the function when it builds its parser).
        "cli": [f"{PACKAGE}.cli.get_cli_commands"],
        # The "Spend" view of the Airflow UI (a FastAPI app on the api-server, behind Airflow's auth).
        "plugins": [{"name": "openai_usage_spend", "plugin-class": f"{PACKAGE}.plugins.spend.OpenAIUsageSpendPlugin"}],
        "connection-types": [
            {
                "connection-type": CONN_TYPE,
                "hook-class-name": f"{PACKAGE}.hooks.usage.OpenAIUsageHook",
                "hook-name": "OpenAI Usage",
                "ui-field-behaviour": {
                    "hidden-fields": ["schema", "port", "login"],
                    "relabeling": {"password": "Admin API key", "host": "Base URL"},
                    "placeholders": {
                        "password": "sk-admin-... (an organization admin key with api.usage.read)",
                        "host": "https://api.openai.com/v1 (leave empty for OpenAI)",
                    },
                },
                "conn-fields": conn_fields(),
            }
        ],
    }
