"""The fake OpenAI usage API, shipped so users can test their own DAGs without a key or network.

    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI
    with FakeOpenAIUsageAPI(seed=1) as api:
        os.environ["AIRFLOW_CONN_OPENAI_USAGE_DEFAULT"] = api.connection_json()

Importing this package does not import Airflow.
"""

from airflow_provider_openai_usage.testing.data import FakeOrganization
from airflow_provider_openai_usage.testing.faults import Fault, status
from airflow_provider_openai_usage.testing.server import (
    DEFAULT_KEY,
    FakeControls,
    FakeOpenAIUsageAPI,
    LoggedRequest,
    fake_organizations,
)

__all__ = [
    "DEFAULT_KEY",
    "Fault",
    "FakeControls",
    "FakeOpenAIUsageAPI",
    "FakeOrganization",
    "LoggedRequest",
    "fake_organizations",
    "status",
]
