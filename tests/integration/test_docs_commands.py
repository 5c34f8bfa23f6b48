"""Every shell command in README.md and docs/ works when pasted, or says why it cannot run here.

A page's blocks are pasted in order into one fresh shell (``bash -euo pipefail``), as a newcomer
following the page does, with nothing from this harness: PATH is the system's (no venv), HOME is an
empty folder (so AIRFLOW_HOME is Airflow's default ``~/airflow``, not migrated, example DAGs on),
no connection is defined, and the working directory is a clone of this repository after ``make
setup`` (its tracked files and a ``.venv`` with Airflow and the provider). Everything else a page
needs (activating the venv, a connection, a migrated home, an output folder) it must set itself.
A block that starts the fake API server runs in a fresh shell of its own until the page is done.
Port 8000 in a page is replaced by a free port (the machine is shared). A block that cannot run
here (a real admin key, PyPI, a long-running scheduler) is preceded by
``<!-- not run by the tests: <reason> -->``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest


REPO = Path(__file__).resolve().parents[2]
PAGES = [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]
BLOCK = re.compile(r"^( *)```bash\n(.*?)^ *```", re.S | re.M)
NOT_RUN = re.compile(r"<!-- not run by the tests: (.+?) -->\s*$")


def blocks(page: Path) -> list[tuple[str, str | None]]:
    """(code, why it is not run or None) of every bash block of the page, in order."""
    text = page.read_text()
    found = []
    for match in BLOCK.finditer(text):
        before = text[: match.start()].rstrip().splitlines()
        reason = NOT_RUN.search(before[-1]) if before else None
        found.append((textwrap.dedent(match.group(2)), reason.group(1) if reason else None))
    return found


RUNNABLE = [page for page in PAGES if any(reason is None for _, reason in blocks(page))]


def test_every_block_runs_or_says_why_not():
    for page in PAGES:
        for code, reason in blocks(page):
            if reason is None:
                assert "sk-admin-..." not in code, f"{page.name}: a block with a placeholder key cannot run:\n{code}"
            else:
                assert len(reason) > 10, f"{page.name}: say why the block cannot run"
    assert {p.name for p in RUNNABLE} >= {"fake-api.md", "backfills.md"}


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _clone(work: Path) -> Path:
    """A clone of this repository as ``make setup`` leaves it: the tracked files and a ``.venv``."""
    files = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, text=True, check=True).stdout
    clone = work / "clone"
    for name in filter(None, files.split("\0")):
        if (REPO / name).is_file():
            (clone / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(REPO / name, clone / name)
    (clone / ".venv").symlink_to(Path(sys.prefix))  # this venv: installed from this checkout
    return clone


@pytest.fixture
def fresh_shell(tmp_path):
    """(the clone, the environment of a fresh login shell on a machine that has only the clone)."""
    home = tmp_path / "home"
    home.mkdir()
    env = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": str(home), "LANG": "C.UTF-8"}
    return _clone(tmp_path), env


@pytest.mark.parametrize("page", RUNNABLE, ids=[p.name for p in RUNNABLE])
def test_commands_work_when_pasted(page, fresh_shell):
    """The page's blocks pasted in order into one fresh shell (a server block into a shell of its own)."""
    cwd, env = fresh_shell
    port = str(_free_port())
    runnable = [code.replace("8000", port) for code, reason in blocks(page) if reason is None]
    servers = [code for code in runnable if " -m airflow_provider_openai_usage.testing serve" in code]
    script = "\n".join(code for code in runnable if code not in servers)
    started: list[subprocess.Popen] = []
    try:
        started += [_start_server(code, env, cwd) for code in servers]
        result = subprocess.run(["bash", "-euo", "pipefail", "-c", script], env=env, cwd=cwd,
                                capture_output=True, text=True, timeout=1200)
    finally:
        for server in started:
            os.killpg(server.pid, signal.SIGTERM)
            server.wait(timeout=30)
    output = result.stdout + result.stderr
    assert result.returncode == 0, f"{page.name}:\n{script}\n--- stdout\n{result.stdout[-4000:]}\n--- stderr\n{result.stderr[-4000:]}"
    assert not (cwd / "demo-output").exists(), f"{page.name} wrote into ./demo-output, the demo's folder (query.md reads it)"
    if "airflow connections test" in script:
        assert "Connection success" in output, output[-3000:]


def _start_server(code: str, env: dict, cwd: Path) -> subprocess.Popen:
    server = subprocess.Popen(["bash", "-c", code], env=env, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                              text=True, start_new_session=True)
    first = server.stdout.readline()  # readiness is the printed line, not a sleep
    assert "listening on http://127.0.0.1:" in first, first + server.stdout.read()
    return server
