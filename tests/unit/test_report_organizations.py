"""Several OpenAI organizations in one lake (issue #29): the report shows spend by organization, then
project, with exact per-organization and all-organization totals; alert rules target one
organization or each; markers keep two organizations' alerts apart; names stay inert everywhere.

Both organizations are landed by the real pull operator from two fake APIs with different seeds (so
different spend) and the same project ids (``proj_alpha``...), the case that must never merge.
"""

from __future__ import annotations

import datetime as dt
import html as html_lib
import json
import re
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import BaseNotifier
from report_support import ORG, ORG_B, land, location, org_root, partition_sums, snapshot_directory

from airflow_provider_openai_usage.exceptions import OpenAIUsageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator, OpenAISpendReportOperator
from airflow_provider_openai_usage.report.alerts import SpendRule
from airflow_provider_openai_usage.report.fired import fired_alerts
from airflow_provider_openai_usage.report.spend import load_organizations, money

DAY = dt.date(2025, 11, 9)
CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10), "run_id": "r"}
HOSTILE = "<script>alert(1)</script> <!channel> =cmd|' /C calc'!A0 $\\frac{x}{y}$"


@pytest.fixture(scope="module")
def two_orgs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("two-orgs")
    land(root.as_uri(), "2025-10-27", "2025-11-10", seed=7, organization_id=ORG)
    land(root.as_uri(), "2025-10-27", "2025-11-10", seed=21, organization_id=ORG_B)
    snapshot_directory(root.as_uri(), "2025-11-10", seed=7, organization_id=ORG)
    snapshot_directory(root.as_uri(), "2025-11-10", seed=21, organization_id=ORG_B)
    return root


@pytest.fixture()
def lake(two_orgs: Path, tmp_path: Path) -> Path:
    out = tmp_path / "lake"
    shutil.copytree(two_orgs, out)
    return out


def _window_sum(oracle: dict[str, Decimal], days: int) -> Decimal:
    wanted = {(DAY - dt.timedelta(days=i)).isoformat() for i in range(days)}
    return sum((v for d, v in oracle.items() if d in wanted), Decimal(0))


def _mtd(oracle: dict[str, Decimal]) -> Decimal:
    return sum((v for d, v in oracle.items() if "2025-11-01" <= d <= DAY.isoformat()), Decimal(0))


def test_each_organization_is_read_from_its_own_folder_and_the_sums_are_exact(lake: Path) -> None:
    spends = load_organizations(location(lake), DAY, 14)
    assert spends.organizations == sorted([ORG, ORG_B])
    oracles = {org: partition_sums(org_root(lake, "costs", org)) for org in (ORG, ORG_B)}
    assert oracles[ORG] != oracles[ORG_B], "the two organizations must differ for this test to tell them apart"
    for org, oracle in oracles.items():
        assert spends.spends[org].day_total(DAY) == oracle[DAY.isoformat()]
        assert spends.spends[org].month_to_date(None) == _mtd(oracle)
    assert spends.day_total(DAY) == oracles[ORG][DAY.isoformat()] + oracles[ORG_B][DAY.isoformat()]
    assert spends.month_to_date() == _mtd(oracles[ORG]) + _mtd(oracles[ORG_B])
    assert spends.window_total(14) == _window_sum(oracles[ORG], 14) + _window_sum(oracles[ORG_B], 14)
    # The same project id in both organizations is two projects, each with its own organization's spend.
    shared = set(spends.spends[ORG].projects) & set(spends.spends[ORG_B].projects)
    assert shared
    for project in shared:
        for org in (ORG, ORG_B):
            own = partition_sums(org_root(lake, "costs", org), project)
            assert spends.spends[org].month_to_date(project) == _mtd(own)


def test_the_report_shows_spend_by_organization_then_project_exact_to_the_last_decimal(lake: Path) -> None:
    names = {ORG: "Research", ORG_B: "Production"}
    result = OpenAISpendReportOperator(task_id="report", output_path=lake.as_uri(), days=14, organization_names=names).execute(CTX)
    page = (lake / "reports" / "date=2025-11-09" / "spend.html").read_text()
    oracles = {org: partition_sums(org_root(lake, "costs", org)) for org in (ORG, ORG_B)}
    table = page.split('id="org-table"', 1)[1].split("</table>", 1)[0]
    for org, oracle in oracles.items():
        row = re.search(rf'<tr data-organization="{org}">(.*?)</tr>', table)
        assert row is not None, org
        assert f"{names[org]} ({org})" in row.group(1)
        day, mtd, window = oracle[DAY.isoformat()], _mtd(oracle), _window_sum(oracle, 14)
        assert f'data-exact="{format(day, "f")}">{money(day, "usd")}<' in row.group(1)
        assert f'data-exact="{format(mtd, "f")}">{money(mtd, "usd")}<' in row.group(1)
        assert f'data-exact="{format(window, "f")}">{money(window, "usd")}<' in row.group(1)
        # Its own section, its projects' tables, ids ending in its id.
        assert f'id="organization-{org}"' in page and f'id="daily-table-{org}"' in page and f'id="month-table-{org}"' in page
    total = oracles[ORG][DAY.isoformat()] + oracles[ORG_B][DAY.isoformat()]
    all_mtd = _mtd(oracles[ORG]) + _mtd(oracles[ORG_B])
    total_row = table.split('<tr class="total">', 1)[1]
    assert f'data-exact="{format(total, "f")}">{money(total, "usd")}<' in total_row
    assert f'data-exact="{format(all_mtd, "f")}">{money(all_mtd, "usd")}<' in total_row
    assert f'id="day-total">{money(total, "usd")}<' in page
    # One chart stacked by organization, then three per organization.
    assert page.count("<svg") == 1 + 2 * 3 and 'id="chart-daily"' in page
    # The data output (XCom) has an organization column, exact.
    by_org = {o["organization_id"]: o for o in result["organizations"]}
    assert set(by_org) == {ORG, ORG_B} and by_org[ORG_B]["organization"] == "Production"
    assert Decimal(by_org[ORG]["day_total"]) == oracles[ORG][DAY.isoformat()]
    assert Decimal(by_org[ORG_B]["month_to_date"]) == _mtd(oracles[ORG_B])
    assert Decimal(result["day_total"]) == total and Decimal(result["month_to_date"]) == all_mtd


def test_a_hostile_organization_name_stays_inert_in_the_page_and_the_chart(lake: Path) -> None:
    OpenAISpendReportOperator(task_id="report", output_path=lake.as_uri(), days=7, organization_names={ORG_B: HOSTILE}).execute(CTX)
    page = (lake / "reports" / "date=2025-11-09" / "spend.html").read_text()
    assert "<script" not in page and "<!channel>" not in page
    assert "&lt;script&gt;alert(1)&lt;/script&gt; &lt;!channel&gt; =cmd|" in page  # shown as text, in its section heading
    assert re.search(r'<h2 class="organization-heading">Organization &lt;script&gt;', page)


def test_organization_names_are_checked_at_parse_time() -> None:
    with pytest.raises(OpenAIUsageValidationError, match="organization_names key='acme' is not an OpenAI organization id"):
        OpenAISpendReportOperator(task_id="r", output_path="file:///x", organization_names={"acme": "Acme"})
    with pytest.raises(OpenAIUsageValidationError, match="must be a non-empty display name"):
        OpenAISpendReportOperator(task_id="r", output_path="file:///x", organization_names={ORG: " "})


def test_a_lake_in_both_layouts_is_refused_with_the_move_command(lake: Path) -> None:
    shutil.copytree(org_root(lake, "costs", ORG) / "date=2025-11-08", lake / "costs" / "date=2025-11-08")
    with pytest.raises(OpenAIUsageValidationError, match="airflow openai-usage move-to-organization --output-path"):
        OpenAISpendReportOperator(task_id="r", output_path=lake.as_uri()).execute(CTX)


def test_a_lake_still_in_the_single_organization_layout_is_read_as_one_organization(lake: Path, tmp_path: Path) -> None:
    old = tmp_path / "old"
    for dataset in ("costs", "completions"):
        shutil.copytree(org_root(lake, dataset, ORG), old / dataset)
    result = OpenAISpendReportOperator(task_id="r", output_path=old.as_uri(), days=7).execute(CTX)
    assert Decimal(result["day_total"]) == partition_sums(org_root(lake, "costs", ORG))[DAY.isoformat()]
    assert [o["organization_id"] for o in result["organizations"]] == [""]


def test_the_monthly_rollup_is_exact_per_organization_and_across(lake: Path) -> None:
    from airflow_provider_openai_usage.report.rollup import month_rollup

    rollup = month_rollup(location(lake), "2025-11")
    assert set(rollup["by_organization"]) == {ORG, ORG_B}
    for org in (ORG, ORG_B):
        oracle = partition_sums(org_root(lake, "costs", org))
        november = sum((v for d, v in oracle.items() if d.startswith("2025-11")), Decimal(0))
        assert Decimal(rollup["by_organization"][org]["total"]) == november
    assert Decimal(rollup["total"]) == sum((Decimal(r["total"]) for r in rollup["by_organization"].values()), Decimal(0))


class Inbox(BaseNotifier):
    template_fields = ("text",)

    def __init__(self, inbox: list[dict[str, Any]], text: str = "{{ spend_alert.message }}") -> None:
        super().__init__()
        self.inbox, self.text = inbox, text

    def notify(self, context: Any) -> None:
        self.inbox.append({**context["spend_alert"], "rendered": self.text})


def alerts(lake: Path, rules: list[dict[str, Any]], inbox: list[dict[str, Any]], **kw: Any) -> dict[str, Any]:
    return OpenAISpendAlertOperator(task_id="alerts", output_path=lake.as_uri(), rules=rules, notifiers=[Inbox(inbox)], **kw).execute(CTX)


def test_a_rule_for_every_organization_fires_once_per_organization_and_never_twice(lake: Path) -> None:
    inbox: list[dict[str, Any]] = []
    rules = [{"name": "daily-any", "kind": "daily", "threshold": "0.01"}]
    for _ in range(3):
        result = alerts(lake, rules, inbox)
    assert sorted(a["organization_id"] for a in inbox) == sorted([ORG, ORG_B])
    assert {e["organization_id"] for e in result["evaluations"]} == {ORG, ORG_B}
    for a in inbox:
        assert f"organization {a['organization_id']} spent" in a["message"]
        own = partition_sums(org_root(lake, "costs", a["organization_id"]))[DAY.isoformat()]
        assert Decimal(a["amount_exact"]) == own
    markers = sorted(p.relative_to(lake / "alerts").as_posix() for p in (lake / "alerts").rglob("*.json"))
    assert markers == [f"daily-any/organization={org}/_organization/2025-11-09.json" for org in sorted([ORG, ORG_B])]
    fired = fired_alerts(location(lake), DAY)
    assert [(f["rule"], f["organization_id"]) for f in fired] == [("daily-any", org) for org in sorted([ORG, ORG_B])]


def test_a_rule_for_one_organization_fires_only_for_it(lake: Path) -> None:
    inbox: list[dict[str, Any]] = []
    rules = [
        {"name": "b-only", "kind": "daily", "threshold": "0.01", "organization": ORG_B},
        {"name": "b-projects", "kind": "month_to_date", "project": "*", "threshold": "0.01", "organization": ORG_B},
    ]
    result = alerts(lake, rules, inbox, organization_names={ORG_B: "Production"})
    assert inbox and {a["organization_id"] for a in inbox} == {ORG_B}
    assert {e["organization_id"] for e in result["evaluations"]} == {ORG_B}
    project_alert = next(a for a in inbox if a["rule"] == "b-projects")
    assert "of organization Production (" in project_alert["message"] and project_alert["organization"].startswith("Production")
    # The same project id in the other organization got no marker: (organization, project) is the key.
    assert not (lake / "alerts" / "b-projects" / f"organization={ORG}").exists()
    own = partition_sums(org_root(lake, "costs", ORG_B), project_alert["project_id"])
    assert Decimal(project_alert["amount_exact"]) == _mtd(own)


def test_a_rule_naming_an_organization_with_nothing_landed_is_an_error_not_a_silent_ok(lake: Path) -> None:
    inbox: list[dict[str, Any]] = []
    rules = [{"name": "typo", "kind": "daily", "threshold": "0.01", "organization": "org-NotLandedHere"},
             {"name": "fine", "kind": "daily", "threshold": "0.01", "organization": ORG}]
    with pytest.raises(OpenAIUsageError, match="organization 'org-NotLandedHere' has nothing landed"):
        alerts(lake, rules, inbox)
    assert [a["organization_id"] for a in inbox] == [ORG]  # the other rule was still evaluated and sent


def test_the_organization_field_of_a_rule_is_checked() -> None:
    assert SpendRule.from_mapping({"name": "r", "kind": "daily", "threshold": "1"}).organization == "*"
    with pytest.raises(OpenAIUsageValidationError, match=r"rule 'r': organization='../x' is not an OpenAI organization id"):
        SpendRule.from_mapping({"name": "r", "kind": "daily", "threshold": "1", "organization": "../x"})


def test_hostile_names_stay_inert_in_slack_mail_headers_and_the_spend_view(lake: Path) -> None:
    from airflow_provider_openai_usage.plugins.spend_app import alerts_table
    from airflow_provider_openai_usage.report.alerts import Evaluation
    from airflow_provider_openai_usage.report.escaping import template_fields

    rule = SpendRule.from_mapping({"name": "r", "kind": "daily", "threshold": "1"})
    ev = Evaluation(rule, "proj_alpha", "2025-11-09", Decimal(2), Decimal(1), True, "", f"{HOSTILE}\r\nBcc: x@evil",
                    message=f"OpenAI spend alert [r]: organization {HOSTILE}", organization_id=ORG, organization=f"{HOSTILE}\r\nX: y")
    fields = template_fields(ev.as_context("usd", None))
    assert "<!channel>" not in fields["slack"]["organization"] and "&lt;script&gt;" in fields["slack"]["organization"]
    assert "<script>" not in fields["html"]["organization"] and "\r" not in fields["header"]["organization"]
    assert "\n" not in fields["header"]["project"]
    inbox: list[dict[str, Any]] = []
    alerts(lake, [{"name": "any", "kind": "daily", "threshold": "0.01"}], inbox, organization_names={ORG: HOSTILE})
    table = alerts_table(fired_alerts(location(lake), DAY))
    assert "<script>" not in table and html_lib.escape(HOSTILE, quote=True) in table
    marker = json.loads(next((lake / "alerts" / "any" / f"organization={ORG}").rglob("*.json")).read_text())
    assert marker["organization"] == f"{HOSTILE} ({ORG})" and marker["organization_id"] == ORG
