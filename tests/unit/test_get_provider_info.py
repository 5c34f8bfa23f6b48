"""get_provider_info: everything it lists imports, and its connection type is the hook's."""

from __future__ import annotations

from airflow_provider_openai_usage.get_provider_info import get_provider_info


def test_every_listed_module_and_hook_class_imports():
    import importlib

    info = get_provider_info()
    for kind in ("hooks", "operators", "sensors", "triggers"):
        for entry in info[kind]:
            for module in entry["python-modules"]:
                importlib.import_module(module)
    (conn,) = info["connection-types"]
    module, name = conn["hook-class-name"].rsplit(".", 1)
    hook = getattr(importlib.import_module(module), name)
    assert hook.conn_type == conn["connection-type"] == "openai_usage"
    assert hook.default_conn_name == "openai_usage_default"


def test_the_cli_entry_names_a_function_returning_the_command_group():
    import importlib

    (entry,) = get_provider_info()["cli"]
    module, name = entry.rsplit(".", 1)
    (group,) = getattr(importlib.import_module(module), name)()
    assert group.name == "openai-usage"
