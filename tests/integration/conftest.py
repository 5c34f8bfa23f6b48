"""Everything under tests/integration starts real systems (Airflow, a scheduler, moto, the demo,
a browser, a validator): marked ``integration`` so ``pytest tests/unit`` stays a seconds-long loop."""

from __future__ import annotations

import pytest


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "/tests/integration/" in str(item.path):
            item.add_marker(pytest.mark.integration)
