"""``python -m airflow_provider_openai_usage.testing``: what a new user sees in the first minutes.

In-process here (help, refusals, fault kinds); the server started as a child process, its printed
URL and pasted export line: tests/integration/test_testing_cli.py.
"""

from __future__ import annotations

import pytest

from airflow_provider_openai_usage.testing import DEFAULT_KEY, Fault, status
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
