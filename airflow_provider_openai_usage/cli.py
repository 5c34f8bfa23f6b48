"""``airflow openai-usage status|verify|move-to-organization``: the landing status and a re-hash of
landed files per dataset and organization, for cron and CI checks, and the one-time move of a lake
written before the organization level. Registered the provider way (``cli`` in ``get_provider_info``): Airflow's CLI
calls ``get_cli_commands`` when it builds its parser, so this module's top level stays cheap and
the commands import what they use.

Exit codes: 0 all good; 1 days are missing (``status``) or files differ from their manifests
(``verify``); 2 bad input (a clear message, nothing read; for ``move-to-organization`` also a day
in both layouts with different bytes: nothing moved).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any, TextIO

if TYPE_CHECKING:
    from airflow.cli.cli_config import CLICommand

    from airflow_provider_openai_usage.status import DatasetStatus, Problem

EXIT_OK, EXIT_FINDINGS, EXIT_BAD_INPUT = 0, 1, 2
#: At most this many days are spelled out per cell; the rest are counted.
SHOW_DAYS = 5
MOVE_HELP = (
    "Move a lake written before the organization level (<dataset>/date=... and <dataset>/_openai_usage) into "
    "<dataset>/organization=<id>/, for every dataset and the alert markers. Local disks: renames. Object stores: "
    "copy then delete, NOT atomic; if it is cut short, run it again to finish. Refused (exit 2, nothing moved) "
    "when a day is in both layouts with different bytes"
)


def get_cli_commands() -> list[CLICommand]:
    """The ``openai-usage`` command group (called by Airflow's CLI parser)."""
    from airflow.cli.cli_config import ActionCommand, Arg, GroupCommand

    output_path = Arg(("--output-path",), help="the operators' output_path: s3://..., gs://..., file:///... or a folder", required=True)
    conn = Arg(("--output-conn-id",), help="connection for the object store (e.g. an aws connection)", default=None)
    dataset = Arg(("--dataset",), help="a dataset under output_path (costs, directory/projects, focus); repeat for more; default all",
                  action="append", default=None)
    fmt = Arg(("--output", "-o"), help="table (default) or json", choices=("table", "json"), default="table")
    since = Arg(("--since",), help="first UTC day to check, YYYY-MM-DD (default: each dataset's first landed day)", default=None)
    through = Arg(("--through",), help="last UTC day to check, YYYY-MM-DD (default: yesterday, UTC)", default=None)
    organization = Arg(("--organization-id",), help="only this organization (org-...); repeat for more; default all",
                       action="append", default=None, dest="organization_id")
    move_org = Arg(("--organization-id",), help="the organization (org-...) the single-organization lake belongs to",
                   required=True, dest="organization_id")
    dry_run = Arg(("--dry-run",), help="print what would move, move nothing", action="store_true", default=False)
    return [
        GroupCommand(
            name="openai-usage",
            help="Landing status and integrity of the OpenAI usage lake",
            subcommands=(
                ActionCommand(
                    name="status",
                    help="Days landed, partial, missing and restated per dataset and organization; exit 1 when days are "
                    "missing",
                    func=status_command,
                    args=(output_path, conn, dataset, organization, since, through, fmt),
                ),
                ActionCommand(
                    name="verify",
                    help="Re-hash landed files against their manifests; exit 1 when any differs or is missing",
                    func=verify_command,
                    args=(output_path, conn, dataset, organization, fmt),
                ),
                ActionCommand(
                    name="move-to-organization",
                    help=MOVE_HELP,
                    description=MOVE_HELP,
                    func=move_command,
                    args=(output_path, conn, move_org, dry_run, fmt),
                ),
            ),
        )
    ]


def _days_cell(days: Sequence[str] | None) -> str:
    if days is None:
        return "unknown"
    if not days:
        return "-"
    shown = ", ".join(days[:SHOW_DAYS])
    return f"{len(days)}: {shown}" + (f" (+{len(days) - SHOW_DAYS})" if len(days) > SHOW_DAYS else "")


def status_rows(statuses: Sequence[DatasetStatus]) -> list[list[str]]:
    """The status table (header first), as the CLI prints it."""
    rows = [["dataset", "organization", "landed", "partial", "missing", "restated", "last landed day", "last landed run"]]
    for s in statuses:
        run = "unknown" if s.restated is None else "-"
        if s.last_run is not None:
            run = f"{s.last_run.dag_id} {s.last_run.run_id} {s.last_run.task_id}"
        rows.append(
            [s.dataset, s.organization_id or NO_ORGANIZATION, str(len(s.landed)), _days_cell(s.partial), _days_cell(s.missing),
             _days_cell(s.restated), s.last_landed_day or "-", run]
        )
    return rows


#: How the table shows a dataset still in the single-organization layout.
NO_ORGANIZATION = "(not moved)"


def _print_table(rows: list[list[str]], out: TextIO) -> None:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    for row in rows:
        out.write("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True)).rstrip() + "\n")


def _location(args: argparse.Namespace) -> Any:
    from airflow_provider_openai_usage.storage import output_location

    return output_location(args.output_path, args.output_conn_id or None)


def run_status(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from airflow_provider_openai_usage.operators.usage import asset_base
    from airflow_provider_openai_usage.status import (
        check_datasets,
        check_organizations,
        find_datasets,
        lake_status,
        landing_events,
        parse_day,
    )

    since, through = parse_day(args.since, "--since"), parse_day(args.through, "--through")
    organizations = check_organizations(getattr(args, "organization_id", None))
    if since is not None and through is not None and since > through:
        raise ValueError(f"--since={args.since} is after --through={args.through}; give since <= through")
    location = _location(args)
    datasets = args.dataset or find_datasets(location)
    if args.dataset:
        check_datasets(location, args.dataset)
    base = asset_base(args.output_path)
    events = landing_events(base, datasets) if base else None
    statuses = lake_status(location, datasets=datasets, since=since, through=through, events=events, organizations=organizations)
    if args.output == "json":
        json.dump([s.as_dict() for s in statuses], out, indent=2)
        out.write("\n")
    elif not statuses:
        out.write(f"no dataset under {location.as_uri()} (nothing landed there yet)\n")
    else:
        _print_table(status_rows(statuses), out)
        if events is None:
            out.write("restated and last landed run: unknown (Airflow's metadata database could not be read here)\n")
    return EXIT_FINDINGS if any(s.missing for s in statuses) or not statuses else EXIT_OK


def run_verify(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    from airflow_provider_openai_usage.status import check_datasets, check_organizations, verify_lake

    organizations = check_organizations(getattr(args, "organization_id", None))
    location = _location(args)
    if args.dataset:
        check_datasets(location, args.dataset)
    checked, problems = verify_lake(location, args.dataset, organizations)
    if args.output == "json":
        json.dump({"checked": checked, "problems": [p.as_dict() for p in problems]}, out, indent=2)
        out.write("\n")
    else:
        _print_problems(checked, problems, out)
    return EXIT_FINDINGS if problems else EXIT_OK


def _print_problems(checked: int, problems: Sequence[Problem], out: TextIO) -> None:
    for p in problems:
        out.write(f"{p.kind:<10}  {p.dataset}  {p.organization_id or NO_ORGANIZATION}  {p.day}  {p.detail}\n")
    out.write(f"{checked} day files checked, {len(problems)} problem(s)\n")


def run_move(args: argparse.Namespace, out: TextIO = sys.stdout) -> int:
    """Move the single-organization datasets of ``--output-path`` under ``--organization-id``."""
    from airflow_provider_openai_usage.organization_move import move_to_organization
    from airflow_provider_openai_usage.organizations import check_organization_id, organization_folder

    org = check_organization_id(args.organization_id, described_as="--organization-id")
    location = _location(args)
    plan = move_to_organization(location, org, dry_run=args.dry_run)
    if getattr(args, "output", "table") == "json":
        json.dump({**plan.as_dict(), "dry_run": args.dry_run}, out, indent=2)
        out.write("\n")
        return EXIT_OK
    verb = "would move" if args.dry_run else "moved"
    level = organization_folder(org)
    for move in plan.datasets:
        what = f"{len(move.days)} day(s)" + (" and _openai_usage" if move.control else "")
        done = f" ({len(move.finished)} already copied by an earlier run)" if move.finished else ""
        out.write(f"{verb} {move.dataset}: {what} -> {move.dataset}/{level}/{done}\n")
    for rule, scopes in plan.alerts.items():
        out.write(f"{verb} alerts/{rule}: {len(scopes)} marker folder(s) -> alerts/{rule}/{level}/\n")
    if plan.empty:
        out.write(f"nothing to move under {location.as_uri()}: no dataset there is in the single-organization layout\n")
    return EXIT_OK


def _guarded(run: Any, args: argparse.Namespace) -> None:
    """Bad input exits 2 with its message (no traceback); findings exit 1."""
    from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError

    try:
        code = run(args)
    except (OpenAIUsageValidationError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
    sys.exit(code)


def status_command(args: argparse.Namespace) -> None:
    _guarded(run_status, args)


def verify_command(args: argparse.Namespace) -> None:
    _guarded(run_verify, args)


def move_command(args: argparse.Namespace) -> None:
    _guarded(run_move, args)
