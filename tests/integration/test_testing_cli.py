"""``python -m airflow_provider_openai_usage.testing serve`` as a child process, as users and scripts
start it: the printed URL answers, the printed export line works pasted into a shell, and the data
is the same whatever the child's hash seed. Moved from tests/unit (child processes start in ~0.2 s
each); the in-process parts of the command line: tests/unit/test_testing_main.py.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
import requests
from conftest import DAY, NOW

from airflow_provider_openai_usage.endpoints import ENDPOINTS

START = NOW - 10 * DAY
CLI = [sys.executable, "-m", "airflow_provider_openai_usage.testing"]


def test_serve_prints_a_connection_line_that_works_when_pasted():
    proc = subprocess.Popen([*CLI, "serve", "--key", "sk-admin-pasted", "--seed", "2"], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening on http://127.0.0.1:" in proc.stdout.readline()
        proc.stdout.readline()  # what to do with the next line
        export = proc.stdout.readline().strip()
        assert export.startswith("export AIRFLOW_CONN_OPENAI_USAGE_DEFAULT=")
        # Paste it into a shell and read the variable back: the JSON survives the quoting.
        shell = subprocess.run(["bash", "-c", f"{export}\nprintf %s \"$AIRFLOW_CONN_OPENAI_USAGE_DEFAULT\""],
                               capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=30)
        conn = json.loads(shell.stdout)
        assert conn["conn_type"] == "openai_usage" and conn["password"] == "sk-admin-pasted"
        answer = requests.get(conn["host"] + "/organization/costs", params={"start_time": 1762128000, "end_time": 1762214400},
                              headers={"Authorization": f"Bearer {conn['password']}"}, timeout=10)
        assert answer.status_code == 200
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_command_line_server_answers_on_the_printed_url():
    proc = subprocess.Popen(
        [*CLI, "serve", "--port", "0", "--key", "sk-admin-cli-test", "--seed", "3"],
        stdout=subprocess.PIPE, text=True,
    )
    try:
        line = proc.stdout.readline()
        assert "listening on http://127.0.0.1:" in line
        base_url = line.strip().rsplit(" ", 1)[1]
        assert base_url.endswith("/v1")
        response = requests.get(base_url + "/organization/costs", params={"start_time": START, "end_time": NOW},
                                headers={"Authorization": "Bearer sk-admin-cli-test"}, timeout=10)
        assert response.status_code == 200 and len(response.json()["data"]) == 7
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def _cli_answer(hash_seed: str, key: str) -> bytes:
    env = {**os.environ, "PYTHONHASHSEED": hash_seed}
    proc = subprocess.Popen(
        [*CLI, "serve", "--key", "k", "--seed", "5"],
        stdout=subprocess.PIPE, text=True, env=env,
    )
    try:
        base_url = proc.stdout.readline().strip().rsplit(" ", 1)[1]
        params = {"start_time": START, "end_time": NOW, "group_by": "project_id,model"}
        return requests.get(base_url + ENDPOINTS[key].path, params=params, headers={"Authorization": "Bearer k"}, timeout=10).content
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("key", ["completions", "embeddings"])
def test_data_is_identical_across_processes_whatever_the_hash_seed(key):
    assert _cli_answer("1", key) == _cli_answer("2", key)


def test_serve_with_two_organizations_prints_two_lines_that_work_when_pasted():
    proc = subprocess.Popen([*CLI, "serve", "--organizations", "2", "--key", "sk-admin-pasted"], stdout=subprocess.PIPE, text=True)
    try:
        assert "listening on http://127.0.0.1:" in proc.stdout.readline()
        proc.stdout.readline()  # what to do with the next lines
        exports = [proc.stdout.readline().strip() for _ in range(2)]
        shell = subprocess.run(
            ["bash", "-c", "\n".join(exports) + '\nprintf "%s\\n%s" "$AIRFLOW_CONN_OPENAI_USAGE_DEFAULT" "$AIRFLOW_CONN_OPENAI_USAGE_ORG_2"'],
            capture_output=True, text=True, env={"PATH": os.environ["PATH"]}, timeout=30,
        )
        conns = [json.loads(line) for line in shell.stdout.splitlines()]
        assert [c["password"] for c in conns] == ["sk-admin-pasted", "sk-admin-pasted-2"]
        for conn in conns:
            answer = requests.get(conn["host"] + "/organization/costs", params={"start_time": START, "end_time": NOW},
                                  headers={"Authorization": f"Bearer {conn['password']}"}, timeout=10)
            assert answer.status_code == 200
            assert {r["organization_id"] for b in answer.json()["data"] for r in b["results"]} == {conn["extra"]["organization_id"]}
        assert conns[0]["extra"]["organization_id"] != conns[1]["extra"]["organization_id"]
    finally:
        proc.terminate()
        proc.wait(timeout=10)
