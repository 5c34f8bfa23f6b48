"""scripts/system-packages: `make test` installs what the tests start when it can, and otherwise stops
at once with the exact command, before any test runs.

The script is run for real with stand-ins for ``id``, ``dpkg-query`` and ``apt-get`` first on PATH
(a fresh Debian machine is what CI is; these cover root and non-root without changing this one).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parents[2] / "scripts" / "system-packages"
PACKAGES = ["postgresql", "redis-server", "chromium", "chromium-driver", "fonts-liberation"]


def stand_ins(tmp_path: Path, *, uid: int, installed: set[str]) -> tuple[dict[str, str], Path]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    log = tmp_path / "apt.log"
    scripts = {
        "id": f'#!/bin/sh\necho {uid}\n',
        "dpkg-query": '#!/bin/sh\nfor pkg; do :; done\n' + "".join(  # the package is the last argument
            f'[ "$pkg" = {p} ] && {{ echo "install ok installed"; exit 0; }}\n' for p in sorted(installed)
        ) + "exit 1\n",
        "apt-get": f'#!/bin/sh\necho "$@" >> {log}\n',
    }
    for name, text in scripts.items():
        (bin_dir / name).write_text(text)
        (bin_dir / name).chmod(0o755)
    return {"PATH": f"{bin_dir}:/usr/bin:/bin", "HOME": str(tmp_path)}, log


def run(env: dict[str, str], mode: str) -> subprocess.CompletedProcess:
    return subprocess.run(["bash", str(SCRIPT), mode], env=env, capture_output=True, text=True, timeout=60)


def test_root_installs_exactly_the_missing_packages_with_apt_get(tmp_path):
    env, log = stand_ins(tmp_path, uid=0, installed={"postgresql"})
    result = run(env, "install")
    assert result.returncode == 0, result.stderr
    lines = log.read_text().splitlines()
    assert lines[0].endswith("update -q")
    assert lines[1].endswith("install -y -q --no-install-recommends " + " ".join(p for p in PACKAGES if p != "postgresql"))


def test_not_root_stops_at_once_with_the_exact_command(tmp_path):
    env, log = stand_ins(tmp_path, uid=1000, installed=set())
    result = run(env, "install")
    assert result.returncode == 1 and not log.exists()
    assert f"apt-get update && apt-get install -y --no-install-recommends {' '.join(PACKAGES)}" in result.stderr


@pytest.mark.parametrize("uid", [0, 1000])
def test_nothing_to_do_when_everything_is_installed(tmp_path, uid):
    env, log = stand_ins(tmp_path, uid=uid, installed=set(PACKAGES))
    assert run(env, "install").returncode == 0 and not log.exists()


def test_check_never_installs(tmp_path):
    env, log = stand_ins(tmp_path, uid=0, installed=set())
    result = run(env, "check")
    assert result.returncode == 1 and not log.exists() and "missing: " + " ".join(PACKAGES) in result.stderr


def test_the_makefile_installs_before_the_tests_and_ci_only_calls_make_test():
    repo = SCRIPT.parents[1]
    makefile = (repo / "Makefile").read_text()
    for target in ("test", "e2e-prod", "bench"):
        line = next(line for line in makefile.splitlines() if line.startswith(f"{target}:"))
        assert line.split(":", 1)[1].split()[0] == "system", line
    ci = (repo / ".ci" / "run").read_text()
    assert "make test" in ci and "apt-get" not in ci
