"""``python -m airflow_provider_openai_usage.testing``: what a new user sees in the first minutes.

In-process here (help, refusals, fault kinds); the server started as a child process, its printed
URL and pasted export line: tests/integration/test_testing_cli.py.
"""

from __future__ import annotations

import json
import shlex

import pytest
import requests

from airflow_provider_openai_usage.testing import DEFAULT_KEY, Fault, FakeOpenAIUsageAPI, status
from airflow_provider_openai_usage.testing import __main__ as cli
from airflow_provider_openai_usage.testing.__main__ import FAULT_KINDS, _faults, main


def test_serve_help_shows_the_default_key_and_port(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["serve", "--help"])
    assert exited.value.code == 0
    help_text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines
    assert f"(default: {DEFAULT_KEY})" in help_text
    assert "--port PORT port on 127.0.0.1 (0: any free port) (default: 0)" in help_text
    assert "--spike PROJECT:YYYY-MM-DD:EVENTS" in help_text
    # The live API's floor and limit are settings (issue #25), defaulting to what OpenAI answers.
    assert "ranges starting earlier; -1: never (default: 1764547200)" in help_text
    assert "more gets OpenAI's 400 (default: 180)" in help_text


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["serve", "--fault-rate", "1.5"], "--fault-rate=1.5: must be between 0 and 1"),
        (["serve", "--projects", "0"], "argument --projects: invalid choice: 0"),
        (["serve", "--organizations", "0"], "--organizations=0: serve at least 1"),
        (["serve", "--organizations", "2", "--fault-organization", "3"], "--fault-organization=3: choose 1..2 (--organizations)"),
        ([], "the following arguments are required: command"),
    ],
)
def test_bad_arguments_are_refused_with_the_value_before_a_server_starts(capsys, argv, fragment):
    with pytest.raises(SystemExit) as exited:
        main(argv)
    assert exited.value.code == 2
    assert fragment in capsys.readouterr().err


def test_fault_kinds_become_the_faults_a_bad_day_brings():
    assert _faults("429,drop, 503", retry_after=7) == [status(429, retry_after=7), Fault("drop"), status(503)]
    assert len(_faults(",".join(FAULT_KINDS), retry_after=1)) == len(FAULT_KINDS)
    for bad in ("", "429,teapot", " , "):
        with pytest.raises(SystemExit, match=f"--fault-kinds={bad!r}: choose from 429,500"):
            _faults(bad, retry_after=1)

    assert _faults("429,drop", retry_after=2, key="sk-admin-x") == [status(429, retry_after=2, key="sk-admin-x"), Fault("drop", key="sk-admin-x")]


def _serve_once(monkeypatch, capsys, argv: list[str], probe=None) -> list[str]:
    """``main(["serve", ...])`` with the serve loop replaced by: start, print the ready lines, run
    ``probe(api)`` on the running server, stop. Returns the printed lines."""

    def serve_once(api: FakeOpenAIUsageAPI, on_ready) -> None:
        with api:
            on_ready(api)
            if probe is not None:
                probe(api)

    monkeypatch.setattr(cli, "serve_forever", serve_once)
    assert main(["serve", *argv]) == 0
    return capsys.readouterr().out.splitlines()


def _exported(line: str) -> tuple[str, dict]:
    name, _, value = line.strip().removeprefix("export ").partition("=")
    (unquoted,) = shlex.split(value)  # the line pasted into a shell: one word
    return name, json.loads(unquoted)


def test_one_organization_prints_the_lines_it_always_printed(monkeypatch, capsys):
    lines = _serve_once(monkeypatch, capsys, ["--seed", "2"])
    base_url = lines[0].rsplit(" ", 1)[1]
    assert lines[1:] == [
        "Point Airflow at it (paste into the shell that runs airflow; Ctrl-C here stops the server):",
        f"  export AIRFLOW_CONN_OPENAI_USAGE_DEFAULT='{json.dumps({'conn_type': 'openai_usage', 'host': base_url, 'password': DEFAULT_KEY})}'",
    ]


def test_several_organizations_print_one_export_line_each_with_its_organization_id(monkeypatch, capsys):
    answers: dict[str, set[str]] = {}

    def probe(api: FakeOpenAIUsageAPI) -> None:
        for key in api.organizations:
            page = requests.get(api.base_url + "/organization/costs", params={"start_time": 1762128000, "end_time": 1762732800},
                                headers={"Authorization": f"Bearer {key}"}, timeout=10).json()
            answers[key] = {r["organization_id"] for b in page["data"] for r in b["results"]}

    lines = _serve_once(monkeypatch, capsys, ["--organizations", "3", "--key", "sk-admin-cli", "--now", "1762732800"], probe)
    assert lines[0].startswith("fake OpenAI usage API listening on http://127.0.0.1:") and len(lines) == 5
    exported = [_exported(line) for line in lines[2:]]
    assert [name for name, _ in exported] == [
        "AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", "AIRFLOW_CONN_OPENAI_USAGE_ORG_2", "AIRFLOW_CONN_OPENAI_USAGE_ORG_3",
    ]
    assert [conn["password"] for _, conn in exported] == ["sk-admin-cli", "sk-admin-cli-2", "sk-admin-cli-3"]
    ids = [conn["extra"]["organization_id"] for _, conn in exported]
    assert len(set(ids)) == 3 and ids[0] == "org-FakeUsage7Fk3bQz9Mn2Lp5"
    assert [answers[conn["password"]] for _, conn in exported] == [{i} for i in ids], "each line reaches its own organization"
    assert {cli.conn_id_of(n) for n in (1, 2)} == {"openai_usage_default", "openai_usage_org_2"}


def test_the_fault_rate_can_hit_one_organization_only(monkeypatch, capsys):
    statuses: dict[str, list[int]] = {}

    def probe(api: FakeOpenAIUsageAPI) -> None:
        for key in api.organizations:
            statuses[key] = [
                requests.get(api.base_url + "/organization/costs", params={"start_time": 1762128000},
                             headers={"Authorization": f"Bearer {key}"}, timeout=10).status_code
                for _ in range(4)
            ]

    _serve_once(monkeypatch, capsys, ["--organizations", "2", "--fault-rate", "1", "--fault-kinds", "503", "--fault-organization", "2"], probe)
    assert statuses == {DEFAULT_KEY: [200] * 4, f"{DEFAULT_KEY}-2": [503] * 4}


def test_a_spike_goes_to_the_organization_holding_its_project(monkeypatch, capsys):
    spikes: dict[str, object] = {}

    def probe(api: FakeOpenAIUsageAPI) -> None:
        spikes.update({o.organization_id: o.spike for o in api.organizations.values()})

    _serve_once(monkeypatch, capsys, ["--organizations", "2", "--spike", "proj_beta_2:2025-11-09:40"], probe)
    assert list(spikes.values()) == [None, ("proj_beta_2", 1762646400, 40)]
    _serve_once(monkeypatch, capsys, ["--spike", "proj_beta:2025-11-09:40"], probe)
    assert spikes["org-FakeUsage7Fk3bQz9Mn2Lp5"] == ("proj_beta", 1762646400, 40), "one organization: as always"
