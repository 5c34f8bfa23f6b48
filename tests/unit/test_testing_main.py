"""``python -m airflow_provider_openai_usage.testing``: what a new user sees in the first minutes."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import requests

from airflow_provider_openai_usage.testing import DEFAULT_KEY

CLI = [sys.executable, "-m", "airflow_provider_openai_usage.testing"]


def test_serve_help_shows_the_default_key_and_port():
    result = subprocess.run([*CLI, "serve", "--help"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    help_text = " ".join(result.stdout.split())  # argparse wraps lines
    assert f"(default: {DEFAULT_KEY})" in help_text
    assert "--port PORT port on 127.0.0.1 (0: any free port) (default: 0)" in help_text


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
