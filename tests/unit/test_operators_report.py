"""operators/report.py: the spend report page and the spend alerts, run as Airflow runs them.

The report: a self-contained page and PNG over what landed, gaps and partial days marked, parameters
refused at parse time. The alerts: delivered through real BaseNotifier subclasses, once per period.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import BaseNotifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from report_support import GAP, ORG, REPORT_DAY, land_with_gap, location, org_root, partition_sums

from airflow_provider_openai_usage.exceptions import OpenAIUsageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator, OpenAISpendReportOperator, report_day
from airflow_provider_openai_usage.report.landed import PARTIAL
from airflow_provider_openai_usage.report.spend import load_spend, money

DAY = REPORT_DAY
REPORT_CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10)}


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """36 days of costs and completions as the pull operator lands them, with one day never landed (GAP)."""
    return land_with_gap(tmp_path_factory)


def test_report_operator_writes_a_self_contained_page_and_png(landed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(landed, out)
    result = OpenAISpendReportOperator(task_id="report", output_path=out.as_uri(), days=14).execute(REPORT_CTX)
    page = out / "reports" / "date=2025-11-09" / "spend.html"
    assert result["report"] == f"file://{page}"
    assert result["missing_days"] == [GAP]
    html = page.read_text()
    png = (out / "reports" / "date=2025-11-09" / "spend.png").read_bytes()
    assert png.startswith(b"\x89PNG") and len(png) > 10_000
    assert "default-src 'none'" in html and "<script" not in html
    assert not re.search(r"""(src|href)\s*=\s*["'](?!#|data:)""", html), "a reference the browser would fetch"
    assert html.count("<svg") == 3
    # The gap reads as not landed, never as 0.00.
    assert re.search(rf'<tr class="missing"><td>{GAP}</td><td>missing</td>(<td class="num">n/a</td>)+</tr>', html)
    oracle = partition_sums(org_root(out, "costs"))
    window = [(DAY - dt.timedelta(days=i)).isoformat() for i in range(14)]
    total = sum((oracle.get(d, Decimal(0)) for d in window), Decimal(0))
    assert f'data-exact="{format(total, "f")}">{money(total, "usd")}</td>' in html
    assert not list(out.rglob(".*.tmp")), "temporary files left behind"


def test_partial_day_is_marked(landed: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    shutil.copytree(landed, out)
    day_dir = org_root(out, "costs") / "date=2025-11-08"
    manifest = org_root(out, "costs") / "_openai_usage" / "manifests" / "date=2025-11-08.json"
    if manifest.exists():  # one file per day: its manifest says which hours it covers
        start = int(dt.datetime(2025, 11, 8, tzinfo=dt.timezone.utc).timestamp())
        manifest.write_text(json.dumps({**json.loads(manifest.read_text()), "covered": [[start, start + 43200]]}))
    else:
        (day_dir / "part-0000-2400.parquet").rename(day_dir / "part-0000-1200.parquet")
    spend = load_spend(location(out), DAY, 30, organization_id=ORG)
    assert spend.coverage[dt.date(2025, 11, 8)] == PARTIAL
    OpenAISpendReportOperator(task_id="report", output_path=out.as_uri()).execute(REPORT_CTX)
    html = (out / "reports" / "date=2025-11-09" / "spend.html").read_text()
    assert "Only partly landed: 2025-11-08" in html


def test_bad_parameters_fail_at_parse_time() -> None:
    with pytest.raises(OpenAIUsageValidationError, match="days=0"):
        OpenAISpendReportOperator(task_id="r", output_path="file:///tmp/x", days=0)
    with pytest.raises(OpenAIUsageValidationError, match="report_date='yesterday'"):
        report_day({}, "yesterday")
    with pytest.raises(OpenAIUsageValidationError, match="set report_date"):
        report_day({}, None)
    with pytest.raises(OpenAIUsageValidationError, match="relative"):
        OpenAISpendReportOperator(task_id="r", output_path="out/x").execute(REPORT_CTX)


def test_literal_rules_are_checked_at_parse_time_and_templated_ones_at_run_time() -> None:
    with pytest.raises(OpenAIUsageValidationError, match="needs threshold"):
        OpenAISpendAlertOperator(task_id="a", output_path="file:///tmp/x", rules=[{"name": "a", "kind": "daily"}])
    OpenAISpendAlertOperator(task_id="b", output_path="file:///tmp/x", rules="{{ var.json.spend_rules }}")
    with pytest.raises(OpenAIUsageValidationError, match="not an Airflow BaseNotifier"):
        OpenAISpendAlertOperator(task_id="c", output_path="file:///tmp/x", rules=[{"name": "a", "kind": "daily", "threshold": 1}], notifiers=[print])


# -- delivery through real BaseNotifier subclasses, once per period ---------------------------------------
class Recorder(BaseNotifier):
    """A real notifier: renders its template like any other and keeps what it would have sent."""

    template_fields = ("text",)

    def __init__(self, inbox: list[str], text: str = "{{ spend_alert.message }}", fail: list[bool] | None = None) -> None:
        super().__init__()
        self.inbox, self.text, self.fail = inbox, text, fail if fail is not None else []

    def notify(self, context: Any) -> None:
        if self.fail and self.fail.pop(0):
            raise ConnectionError("receiver down")
        self.inbox.append(self.text)


@pytest.fixture
def spiky(tmp_path: Path) -> Path:
    """Landed costs where the report day reaches 100 for project p (written by the pull operator)."""
    from report_support import land

    land(tmp_path.as_uri(), "2025-11-01", "2025-11-10", endpoints=("costs",))
    return tmp_path


RULES = [{"name": "org-daily", "kind": "daily", "threshold": "0.01"}, {"name": "org-mtd", "kind": "month_to_date", "threshold": "0.01"}]
CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10), "run_id": "r"}


def alert_op(out: Path, notifiers: list[BaseNotifier], **kwargs: Any) -> OpenAISpendAlertOperator:
    return OpenAISpendAlertOperator(task_id="alerts", output_path=out.as_uri(), rules=kwargs.pop("rules", RULES), notifiers=notifiers, **kwargs)


def test_each_firing_is_sent_once_across_reruns(spiky: Path) -> None:
    a, b = [], []
    for _ in range(3):
        result = alert_op(spiky, [Recorder(a), Recorder(b, text="{{ spend_alert.project }} {{ spend_alert.amount }}")]).execute(CTX)
    assert len(a) == 2 and len(b) == 2
    assert a[0].startswith(f"OpenAI spend alert [org-daily]: organization {ORG} spent") and "reports/date=2025-11-09/spend.html" in a[0]
    assert b[0].startswith("organization ") and b[0].endswith(" USD")
    assert {e["state"] for e in result["evaluations"]} == {"fired"}
    marker = json.loads((spiky / "alerts" / "org-mtd" / f"organization={ORG}" / "_organization" / "2025-11.json").read_text())
    assert marker["delivered"] == ["test_operators_report.Recorder()", "test_operators_report.Recorder()#2"] and marker["period"] == "2025-11"
    # The next day is a new period for the daily rule, the same one for the month-to-date rule.
    alert_op(spiky, [Recorder(a), Recorder(b)], report_date="2025-11-07").execute(CTX)
    assert len(a) == 3 and "2025-11-07" in a[-1]


def test_a_failed_receiver_fails_the_task_and_only_it_is_retried(spiky: Path) -> None:
    ok, flaky = [], []
    with pytest.raises(OpenAIUsageError, match="2 alert delivery failure"):
        alert_op(spiky, [Recorder(ok), Recorder(flaky, fail=[True, True])]).execute(CTX)
    assert len(ok) == 2 and flaky == []
    alert_op(spiky, [Recorder(ok), Recorder(flaky)]).execute(CTX)  # the retry
    assert len(ok) == 2 and len(flaky) == 2


def test_fail_on_alert_fails_after_notifying(spiky: Path) -> None:
    inbox: list[str] = []
    with pytest.raises(OpenAIUsageError, match="fail_on_alert=True"):
        alert_op(spiky, [Recorder(inbox)], fail_on_alert=True).execute(CTX)
    assert len(inbox) == 2
    quiet = alert_op(spiky, [Recorder(inbox)], rules=json.dumps([{"name": "huge", "kind": "daily", "threshold": "1e9"}]), fail_on_alert=True)
    assert quiet.execute(CTX)["evaluations"][0]["state"] == "ok"


def test_a_crash_while_recording_keeps_the_previous_marker(spiky: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    inbox: list[str] = []
    op = alert_op(spiky, [Recorder(inbox)], rules=RULES[:1])
    op.execute(CTX)
    marker = spiky / "alerts" / "org-daily" / f"organization={ORG}" / "_organization" / "2025-11-09.json"
    before = marker.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError("killed while publishing")

    second = alert_op(spiky, [Recorder(inbox), Recorder(inbox)], rules=RULES[:1])
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(Exception, match="killed while publishing"):  # the task fails (a delivery failure)
        second.execute(CTX)
    monkeypatch.undo()
    assert marker.read_bytes() == before, "a half-written marker would lose or repeat alerts"
    assert not [p for p in marker.parent.iterdir() if p.name.endswith(".tmp")]
    second.execute(CTX)  # the retry sends to the new receiver once more (at least once), never to the first
    assert len(inbox) == 3


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.lists(st.tuples(st.booleans(), st.booleans()), min_size=1, max_size=5))
def test_any_mix_of_receiver_failures_and_retries_delivers_each_firing_exactly_once(spiky: Path, failures: list[tuple[bool, bool]]) -> None:
    import shutil

    shutil.rmtree(spiky / "alerts", ignore_errors=True)
    inboxes: list[list[str]] = [[], []]
    for fail_a, fail_b in [*failures, (False, False)]:  # the last retry finds both receivers up
        notifiers = [Recorder(inboxes[0], fail=[fail_a] * 2), Recorder(inboxes[1], fail=[fail_b] * 2)]
        try:
            alert_op(spiky, notifiers).execute(CTX)
        except OpenAIUsageError:
            assert fail_a or fail_b
    for inbox in inboxes:
        assert sorted(m.split("]")[0] for m in inbox) == ["OpenAI spend alert [org-daily", "OpenAI spend alert [org-mtd"]


def test_report_and_alerts_read_days_with_and_without_the_api_key_dimension(tmp_path: Path) -> None:
    """Costs grouped by api_key_id land without it before OpenAI's 2025-12-01 floor (issue #25): the
    report and the alerts read both kinds of day, and the total is the files' to the last decimal."""
    from report_support import _env

    from airflow_provider_openai_usage.endpoints import COSTS_API_KEY_FLOOR, finops_group_by
    from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator
    from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

    now = COSTS_API_KEY_FLOOR + 5 * 86400
    with (
        FakeOpenAIUsageAPI(seed=7, now=now) as api,
        _env("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json()),
    ):
        OpenAICostsOperator(task_id="c", group_by=finops_group_by("costs"), output_path=tmp_path.as_uri()).execute(
            {"data_interval_start": pendulum.from_timestamp(now - 20 * 86400), "data_interval_end": pendulum.from_timestamp(now)}
        )
    ctx = {"data_interval_start": pendulum.datetime(2025, 12, 5), "data_interval_end": pendulum.datetime(2025, 12, 6), "run_id": "r"}
    result = OpenAISpendReportOperator(task_id="report", output_path=tmp_path.as_uri(), days=14).execute(ctx)
    assert result["missing_days"] == []
    html = (tmp_path / "reports" / "date=2025-12-05" / "spend.html").read_text()
    oracle = partition_sums(org_root(tmp_path, "costs"))
    window = [(dt.date(2025, 12, 5) - dt.timedelta(days=i)).isoformat() for i in range(14)]
    total = sum((oracle.get(d, Decimal(0)) for d in window), Decimal(0))
    assert f'data-exact="{format(total, "f")}">{money(total, "usd")}</td>' in html
    inbox: list[str] = []
    rules = [{"name": "org-daily", "kind": "daily", "threshold": "0.01"}]
    alerts = OpenAISpendAlertOperator(task_id="a", output_path=tmp_path.as_uri(), rules=rules, notifiers=[Recorder(inbox)]).execute(ctx)
    assert {e["state"] for e in alerts["evaluations"]} == {"fired"} and len(inbox) == 1
