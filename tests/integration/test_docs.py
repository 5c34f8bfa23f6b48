"""Docs must not rot: every Python snippet runs against the fake API, generated tables are current."""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

DOCS = Path(__file__).resolve().parents[2] / "docs"
README = DOCS.parent / "README.md"
SNIPPET = re.compile(r"^( *)```python\n(.*?)^ *```", re.S | re.M)


def snippets() -> list[tuple[str, int, str]]:
    found = []
    for page in [README, *sorted(DOCS.glob("*.md"))]:
        for i, (indent, code) in enumerate(SNIPPET.findall(page.read_text())):
            found.append((page.name, i, textwrap.dedent(code) if indent else code))
    return found


def land_demo_output(root: Path) -> None:
    """What query.md reads: ``./demo-output`` as ``make demo`` leaves it (two weeks, empty days included)."""
    from conftest import DAY, NOW

    from airflow_provider_openai_usage.operators.usage import OpenAICompletionsUsageOperator, OpenAICostsOperator

    for cls, group_by in ((OpenAICostsOperator, ["project_id", "line_item"]), (OpenAICompletionsUsageOperator, ["project_id", "model"])):
        cls(task_id="land", start_time=NOW - 14 * DAY, end_time=NOW, group_by=group_by, output_path=str(root)).execute({})
        for table_format in ("delta", "iceberg"):  # the tables make demo lands beside the files
            cls(task_id="land", start_time=NOW - 14 * DAY, end_time=NOW, group_by=group_by, output_path=str(root),
                table_format=table_format).execute({})


@pytest.mark.parametrize(("page", "index", "code"), snippets(), ids=[f"{p}#{i}" for p, i, _ in snippets()])
def test_python_snippets_run_against_the_fake_api(page, index, code, conn_id, monkeypatch, tmp_path):
    if page == "query.md":
        land_demo_output(tmp_path / "demo-output")
        monkeypatch.chdir(tmp_path)
    exec(compile(code, f"{page}#{index}", "exec"), {"__name__": f"docs_{index}"})


def test_every_page_is_linked_from_the_index():
    index = (DOCS / "index.md").read_text()
    for page in DOCS.glob("*.md"):
        if page.name != "index.md":
            assert f"({page.name})" in index, page.name


def test_generated_tables_are_current():
    result = subprocess.run([sys.executable, str(DOCS / "generate.py"), "--check"], capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "`organization.usage.file_searches.result`" in (DOCS / "hook.md").read_text()
    assert "decimal128(38, 18)" in (DOCS / "data-layout.md").read_text()
