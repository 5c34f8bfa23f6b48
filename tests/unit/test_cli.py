"""``airflow openai-usage status|verify`` (``cli.py``): the table, JSON, exit codes and bad input,
on a lake the real operators landed (the lake of test_status.py, damaged the same way)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest
from report_support import ORG, ORG_B
from test_status import damaged, lake, two_orgs  # noqa: F401 - the shared landed lake fixtures

from airflow_provider_openai_usage.cli import (
    EXIT_BAD_INPUT,
    EXIT_FINDINGS,
    EXIT_OK,
    get_cli_commands,
    run_status,
    run_verify,
    status_command,
)


def args(root: Path, **kw) -> argparse.Namespace:
    values = {
        "output_path": root.as_uri(), "output_conn_id": None, "dataset": None, "since": None, "through": "2025-11-08", "output": "table",
        "organization_id": None,
    }
    return argparse.Namespace(**{**values, **kw})


def test_the_commands_are_a_group_airflow_can_register() -> None:
    (group,) = get_cli_commands()
    assert group.name == "openai-usage"
    assert [c.name for c in group.subcommands] == ["status", "verify", "move-to-organization"]


def test_status_prints_one_row_per_dataset_and_exits_0_when_nothing_is_missing(lake: Path) -> None:  # noqa: F811
    out = io.StringIO()
    code = run_status(args(lake, dataset=["costs", "completions"]), out)
    lines = out.getvalue().splitlines()
    assert code == EXIT_OK, out.getvalue()
    assert lines[0].split()[:6] == ["dataset", "organization", "landed", "partial", "missing", "restated"]
    assert lines[1].split()[:5] == ["costs", ORG, "6", "-", "-"]
    # completions' 11-09 (a part) is past --through; restated is read from Airflow's (empty) record
    assert lines[2].split()[:5] == ["completions", ORG, "6", "-", "-"]


def test_status_exits_1_and_names_the_missing_days(damaged: Path) -> None:  # noqa: F811
    out = io.StringIO()
    assert run_status(args(damaged, dataset=["costs"]), out) == EXIT_FINDINGS
    assert "1: 2025-11-05" in out.getvalue().splitlines()[1]


def test_status_has_a_row_per_organization_and_filters_by_organization(two_orgs: Path) -> None:  # noqa: F811
    out = io.StringIO()
    assert run_status(args(two_orgs, dataset=["costs"], output="json"), out) == EXIT_OK
    rows = json.loads(out.getvalue())
    assert [(r["dataset"], r["organization_id"], len(r["landed"])) for r in rows] == [("costs", ORG, 6), ("costs", ORG_B, 3)]
    out = io.StringIO()
    assert run_status(args(two_orgs, organization_id=[ORG_B]), out) == EXIT_OK
    lines = out.getvalue().splitlines()
    assert [line.split()[:3] for line in lines[1:] if line.startswith("costs")] == [["costs", ORG_B, "3"]]
    assert not any(line.startswith("completions") for line in lines)
    # Through a day the second organization has not landed: exit 1, on its row only.
    out = io.StringIO()
    assert run_status(args(two_orgs, dataset=["costs"], through="2025-11-09"), out) == EXIT_FINDINGS
    rows_text = [line for line in out.getvalue().splitlines()[1:] if line.startswith("costs")]
    assert len(rows_text) == 2 and all("1: 2025-11-09" in line for line in rows_text)


def test_a_malformed_organization_filter_exits_2(lake: Path, capsys) -> None:  # noqa: F811
    with pytest.raises(SystemExit) as exit_:
        status_command(args(lake, organization_id=["acme/../x"]))
    assert exit_.value.code == EXIT_BAD_INPUT and "--organization-id='acme/../x' is not an OpenAI organization id" in capsys.readouterr().err


def test_status_as_json(damaged: Path) -> None:  # noqa: F811
    out = io.StringIO()
    run_status(args(damaged, output="json", through="2025-11-09"), out)
    by_name = {d["dataset"]: d for d in json.loads(out.getvalue())}
    assert by_name["costs"]["missing"] == ["2025-11-05", "2025-11-09"]
    assert by_name["completions"]["partial"] == ["2025-11-09"]


def test_verify_exits_1_and_lists_each_problem(damaged: Path) -> None:  # noqa: F811
    out = io.StringIO()
    assert run_verify(args(damaged), out) == EXIT_FINDINGS
    text = out.getvalue()
    assert f"missing     costs  {ORG}  2025-11-05" in text and f"differs     costs  {ORG}  2025-11-07" in text
    assert f"unrecorded  completions  {ORG}  2025-11-04" in text
    assert text.splitlines()[-1] == "14 day files checked, 3 problem(s)"


def test_verify_exits_0_on_an_intact_lake(lake: Path) -> None:  # noqa: F811
    out = io.StringIO()
    assert run_verify(args(lake, output="json"), out) == EXIT_OK
    assert json.loads(out.getvalue()) == {"checked": 15, "problems": []}


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"through": "yesterday"}, "--through='yesterday' is not a UTC day"),
        ({"since": "2025-11-09", "through": "2025-11-01"}, "--since=2025-11-09 is after --through=2025-11-01"),
        ({"dataset": ["costs", "nope"]}, "['nope'] are not under"),
        ({"output_path": "openai_usage://x"}, "output_path"),
    ],
)
def test_bad_input_exits_2_with_the_fix(lake: Path, capsys, change: dict, message: str) -> None:  # noqa: F811
    with pytest.raises(SystemExit) as exit_:
        status_command(args(lake, **change))
    assert exit_.value.code == EXIT_BAD_INPUT
    assert message in capsys.readouterr().err
