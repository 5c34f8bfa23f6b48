"""The test layout mirrors the package: each module ``a/b.py`` has ``tests/unit/test_a_b.py``.

Exempt: package ``__init__`` modules that hold no code (a docstring, ``__version__``, or re-exports
of their modules, tested through those). A module whose tests still live elsewhere is listed in ``TESTED_ELSEWHERE``
with the file that holds them, until they move.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "airflow_provider_openai_usage"
UNIT = REPO / "tests" / "unit"
#: Empty: every module has its own test file (storage/'s tests moved out of test_storage.py into test_storage_<module>.py).
TESTED_ELSEWHERE: dict[str, str] = {}


def _holds_code(path: Path) -> bool:
    """Anything beyond a docstring, imports and dunder constants (``__all__``, ``__version__``)."""
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            continue
        if isinstance(node, ast.Import | ast.ImportFrom):
            continue
        names = [getattr(t, "id", "") for t in node.targets] if isinstance(node, ast.Assign) else []
        if names and all(n.startswith("__") and n.endswith("__") for n in names):
            continue
        return True
    return False


def expected_test_file(module: Path) -> str:
    """``hooks/usage.py`` → ``test_hooks_usage.py``; ``testing/__main__.py`` → ``test_testing_main.py``;
    ``storage/__init__.py`` → ``test_storage.py``."""
    parts = [p for p in module.relative_to(PACKAGE).with_suffix("").parts if p != "__init__"]
    return "test_" + "_".join(p.strip("_") for p in parts) + ".py"


def test_every_module_has_its_unit_test_file():
    missing = []
    for module in sorted(PACKAGE.rglob("*.py")):
        rel = module.relative_to(PACKAGE).as_posix()
        if module.name == "__init__.py" and not _holds_code(module):
            continue
        test_file = TESTED_ELSEWHERE.get(rel) if not (UNIT / expected_test_file(module)).exists() else expected_test_file(module)
        if test_file is None or not (UNIT / test_file).exists():
            missing.append(f"{rel} -> tests/unit/{expected_test_file(module)}")
    assert missing == []


def test_the_exemptions_are_still_needed_and_real():
    for rel, test_file in TESTED_ELSEWHERE.items():
        module = PACKAGE / rel
        assert module.exists(), f"{rel} is gone: drop it from TESTED_ELSEWHERE"
        assert not (UNIT / expected_test_file(module)).exists(), f"{rel} has its own test file now: drop it from TESTED_ELSEWHERE"
        assert (UNIT / test_file).exists()


def test_the_name_mapping():
    assert expected_test_file(PACKAGE / "hooks" / "usage.py") == "test_hooks_usage.py"
    assert expected_test_file(PACKAGE / "testing" / "__main__.py") == "test_testing_main.py"
    assert expected_test_file(PACKAGE / "storage" / "__init__.py") == "test_storage.py"
    assert expected_test_file(PACKAGE / "get_provider_info.py") == "test_get_provider_info.py"
    assert not _holds_code(PACKAGE / "__init__.py") and not _holds_code(PACKAGE / "hooks" / "__init__.py")
    assert _holds_code(PACKAGE / "testing" / "server.py")
