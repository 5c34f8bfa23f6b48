"""``airflow openai-usage move-to-organization`` (``organization_move.py``): a lake written before the
organization level moves under ``organization=<id>`` byte for byte, its manifests still match
(``verify`` passes), alert markers move with it (an alert sent before is not sent again), a second
run moves nothing, and a day in both layouts with other bytes is refused before anything moves."""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import shutil
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import BaseNotifier
from report_support import ORG, land, location, snapshot_directory

from airflow_provider_openai_usage.cli import EXIT_BAD_INPUT, EXIT_OK, get_cli_commands, move_command, run_move, run_status, run_verify
from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.organization_move import legacy_datasets, move_to_organization
from airflow_provider_openai_usage.organizations import check_no_single_organization_days, single_organization_days

LEVEL = f"organization={ORG}"
CTX = {"data_interval_start": pendulum.datetime(2025, 11, 8), "data_interval_end": pendulum.datetime(2025, 11, 9), "run_id": "r"}


class Inbox(BaseNotifier):
    def __init__(self, inbox: list[str]) -> None:
        super().__init__()
        self.inbox = inbox

    def notify(self, context: Any) -> None:
        self.inbox.append(context["spend_alert"]["message"])


def _alert(root: Path, inbox: list[str]) -> None:
    from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator

    rules = [{"name": "mtd", "kind": "month_to_date", "threshold": "0.01"}]
    OpenAISpendAlertOperator(task_id="alerts", output_path=root.as_uri(), rules=rules, notifiers=[Inbox(inbox)]).execute(CTX)


def _up(folder: Path) -> None:
    """``<x>/organization=<id>/*`` back to ``<x>/*``: the layout of a release before the level."""
    for child in list(folder.iterdir()):
        child.rename(folder.parent / child.name)
    folder.rmdir()


@pytest.fixture(scope="module")
def single_org_lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, int]:
    """Costs, completions and a directory snapshot, and one alert already sent, all in the old layout."""
    root = tmp_path_factory.mktemp("single-org")
    land(root.as_uri(), "2025-11-03", "2025-11-09")
    snapshot_directory(root.as_uri(), "2025-11-09")
    inbox: list[str] = []
    _alert(root, inbox)
    assert len(inbox) == 1
    for folder in [*root.glob(f"*/{LEVEL}"), *root.glob(f"directory/*/{LEVEL}"), *root.glob(f"alerts/*/{LEVEL}")]:
        _up(folder)
    assert not list(root.rglob(LEVEL))
    return root, len(inbox)


@pytest.fixture()
def lake(single_org_lake: tuple[Path, int], tmp_path: Path) -> Path:
    root = tmp_path / "lake"
    shutil.copytree(single_org_lake[0], root)
    return root


def digests(root: Path) -> dict[str, str]:
    """Every file's sha256 by its path, the organization level left out (what must not change)."""
    return {
        p.relative_to(root).as_posix().replace(f"/{LEVEL}", ""): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*") if p.is_file() and not p.name.endswith(".lock")
    }


def move_args(root: Path, **kw: Any) -> argparse.Namespace:
    return argparse.Namespace(**{"output_path": root.as_uri(), "output_conn_id": None, "organization_id": ORG, "dry_run": False,
                                 "output": "table", **kw})


def test_a_single_organization_lake_moves_byte_for_byte_and_verify_passes_after(lake: Path) -> None:
    assert legacy_datasets(location(lake)) == ["completions", "costs", "directory/project_spend_limits", "directory/projects"]
    before = digests(lake)
    reports_before = sorted(p.relative_to(lake).as_posix() for p in (lake / "reports").rglob("*")) if (lake / "reports").exists() else []
    out = io.StringIO()
    assert run_move(move_args(lake), out) == EXIT_OK
    text = out.getvalue()
    assert f"moved costs: 6 day(s) and _openai_usage -> costs/{LEVEL}/" in text and f"alerts/mtd/{LEVEL}/" in text
    assert digests(lake) == before, "a file changed, appeared or was lost in the move"
    for dataset in ("costs", "completions", "directory/projects"):
        assert single_organization_days(location(lake) / dataset) == []
        assert not (lake / dataset / "_openai_usage").exists() and (lake / dataset / LEVEL / "_openai_usage" / "manifests").is_dir()
    verify = io.StringIO()
    verify_args = argparse.Namespace(output_path=lake.as_uri(), output_conn_id=None, dataset=None, organization_id=None, output="json")
    assert run_verify(verify_args, verify) == EXIT_OK, verify.getvalue()
    assert json.loads(verify.getvalue()) == {"checked": 6 + 6 + 1 + 1, "problems": []}
    status = io.StringIO()
    run_status(argparse.Namespace(**{**vars(verify_args), "since": None, "through": "2025-11-08"}), status)
    assert {(r["dataset"], r["organization_id"]) for r in json.loads(status.getvalue())} == {
        ("completions", ORG), ("costs", ORG), ("directory/project_spend_limits", ORG), ("directory/projects", ORG),
    }
    assert reports_before == []  # (reports are one per day for every organization: never moved)


def test_the_moved_markers_keep_an_alert_that_was_sent_from_being_sent_again(lake: Path) -> None:
    move_to_organization(location(lake), ORG)
    inbox: list[str] = []
    _alert(lake, inbox)
    assert inbox == [], "the alert sent before the move was sent again"


def test_a_second_run_moves_nothing_and_a_dry_run_moves_nothing(lake: Path) -> None:
    before = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*"))
    dry = io.StringIO()
    assert run_move(move_args(lake, dry_run=True), dry) == EXIT_OK
    assert "would move costs: 6 day(s)" in dry.getvalue()
    assert sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*")) == before
    run_move(move_args(lake), io.StringIO())
    moved = digests(lake)
    again = io.StringIO()
    assert run_move(move_args(lake), again) == EXIT_OK
    assert again.getvalue().startswith("nothing to move under") and digests(lake) == moved


def test_a_move_cut_short_on_a_local_disk_is_finished_by_the_next_run(lake: Path) -> None:
    """A day already moved (and its copy still in the old place, as a copy-then-delete leaves it)."""
    before = digests(lake)
    day = lake / "costs" / "date=2025-11-05"
    shutil.copytree(day, lake / "costs" / LEVEL / "date=2025-11-05")
    plan = move_to_organization(location(lake), ORG)
    costs = next(m for m in plan.datasets if m.dataset == "costs")
    assert costs.finished == ["2025-11-05"] and not day.exists()
    assert digests(lake) == before


def test_a_day_in_both_layouts_with_other_bytes_is_refused_naming_it_and_nothing_moves(lake: Path, capsys) -> None:
    other = lake / "costs" / LEVEL / "date=2025-11-07" / "data.parquet"
    other.parent.mkdir(parents=True)
    other.write_bytes(b"written by a writer of this release")
    before = sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*"))
    with pytest.raises(SystemExit) as exit_:
        move_command(move_args(lake))
    assert exit_.value.code == EXIT_BAD_INPUT
    err = capsys.readouterr().err
    assert "costs: date=2025-11-07 is both in costs/date=2025-11-07" in err and "nothing was moved" in err
    assert sorted(p.relative_to(lake).as_posix() for p in lake.rglob("*")) == before


def test_a_malformed_organization_id_exits_2_before_anything_moves(lake: Path, capsys) -> None:
    with pytest.raises(SystemExit) as exit_:
        move_command(move_args(lake, organization_id="../../etc"))
    assert exit_.value.code == EXIT_BAD_INPUT
    assert "--organization-id='../../etc' is not an OpenAI organization id" in capsys.readouterr().err
    assert (lake / "costs" / "date=2025-11-05").is_dir()


def test_the_writers_refusal_names_this_command_with_flags_it_takes(lake: Path) -> None:
    (group,) = get_cli_commands()
    move = next(c for c in group.subcommands if c.name == "move-to-organization")
    flags = {flag for arg in move.args for flag in arg.flags}
    assert {"--output-path", "--organization-id", "--output-conn-id", "--dry-run"} <= flags
    assert "not atomic" in move.help.lower()
    with pytest.raises(OpenAIUsageValidationError) as refused:
        check_no_single_organization_days(location(lake) / "costs", output_path=lake.as_uri())
    assert f"airflow openai-usage move-to-organization --output-path {lake.as_uri()} --organization-id <org id>" in str(refused.value)


def test_delta_and_iceberg_tables_and_reports_are_never_moved(lake: Path) -> None:
    table = lake / "delta" / "costs"
    (table / "_delta_log").mkdir(parents=True)
    (table / "date=2025-11-09").mkdir()
    (table / "date=2025-11-09" / "part-0.parquet").write_bytes(b"a Delta part file, named by its log")
    (lake / "reports" / "date=2025-11-09").mkdir(parents=True)
    (lake / "reports" / "date=2025-11-09" / "spend.html").write_text("<html></html>")
    assert "delta/costs" not in legacy_datasets(location(lake)) and "reports" not in legacy_datasets(location(lake))
    move_to_organization(location(lake), ORG)
    assert (table / "date=2025-11-09" / "part-0.parquet").exists() and not (table / LEVEL).exists()
    assert (lake / "reports" / "date=2025-11-09" / "spend.html").exists()
