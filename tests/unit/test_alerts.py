"""Spend alert rules: parameters refused with a fix, semantics on known numbers, once per period."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal
from pathlib import Path
from typing import Any

import pendulum
import pytest
from airflow.sdk import BaseNotifier
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from airflow_provider_openai_usage.exceptions import OpenAIUsageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.report import OpenAISpendAlertOperator
from airflow_provider_openai_usage.report.alerts import Evaluator, parse_rules
from airflow_provider_openai_usage.report.landed import COMPLETE, MISSING, day_range
from airflow_provider_openai_usage.report.spend import Directory, Spend

DAY = dt.date(2025, 11, 9)
D = Decimal


def spend(daily: dict[str, dict[str, str]], *, missing: tuple[str, ...] = (), directory: Directory | None = None) -> Spend:
    """A Spend over 2025-10-20..2025-11-09: days not in ``daily`` are landed and empty."""
    days = day_range(dt.date(2025, 10, 20), DAY)
    coverage = {d: (MISSING if d.isoformat() in missing else COMPLETE) for d in days}
    per_day = {d: {p: D(v) for p, v in daily.get(d.isoformat(), {}).items()} for d in days if coverage[d] != MISSING}
    return Spend(DAY, days, coverage, "usd", per_day, [], [], directory or Directory())


def evaluate(rules: list[dict], s: Spend) -> dict[tuple[str, str | None], Any]:
    return {(e.rule.name, e.project): e for e in Evaluator(s, "https://reports.example/spend.html").run(parse_rules(rules))}


@pytest.mark.parametrize(
    ("rules", "match"),
    [
        ([], "non-empty list"),
        ({"name": "a", "kind": "daily"}, "non-empty list"),
        ("[{", "not JSON"),
        ([{"kind": "daily", "threshold": 1}], r"rules\[0\].name=None"),
        ([{"name": "a/b", "kind": "daily", "threshold": 1}], "letters, digits"),
        ([{"name": "a", "kind": "weekly", "threshold": 1}], "kind='weekly' is not one of"),
        ([{"name": "a", "kind": "daily"}], "needs threshold"),
        ([{"name": "a", "kind": "daily", "threshold": "ten"}], "threshold='ten' is not a number"),
        ([{"name": "a", "kind": "daily", "threshold": -1}], "finite number >= 0"),
        ([{"name": "a", "kind": "daily", "threshold": "NaN"}], "finite number"),
        ([{"name": "a", "kind": "daily", "threshold": 1, "percent": 80}], r"\['percent'\] do not apply"),
        ([{"name": "a", "kind": "limit_percent", "percent": 80}], "spend limits are per project"),
        ([{"name": "a", "kind": "limit_percent", "project": "*", "percent": 0}], "percent=0 must be above 0"),
        ([{"name": "a", "kind": "anomaly", "factor": 1}], "factor=1 must be above 1"),
        ([{"name": "a", "kind": "anomaly", "trailing_days": 2}], "trailing_days=2 must be an integer from 3"),
        ([{"name": "a", "kind": "anomaly", "project": ""}], "project='' must be"),
        ([{"name": "a", "kind": "daily", "threshold": 1}, {"name": "a", "kind": "daily", "threshold": 2}], "repeated: \\['a'\\]"),
    ],
)
def test_bad_rules_are_refused_with_the_parameter_and_a_fix(rules: Any, match: str) -> None:
    with pytest.raises(OpenAIUsageValidationError, match=match):
        parse_rules(rules)


def test_literal_rules_are_checked_at_parse_time_and_templated_ones_at_run_time() -> None:
    with pytest.raises(OpenAIUsageValidationError, match="needs threshold"):
        OpenAISpendAlertOperator(task_id="a", output_path="file:///tmp/x", rules=[{"name": "a", "kind": "daily"}])
    OpenAISpendAlertOperator(task_id="b", output_path="file:///tmp/x", rules="{{ var.json.spend_rules }}")
    with pytest.raises(OpenAIUsageValidationError, match="not an Airflow BaseNotifier"):
        OpenAISpendAlertOperator(task_id="c", output_path="file:///tmp/x", rules=[{"name": "a", "kind": "daily", "threshold": 1}], notifiers=[print])


def test_daily_threshold_fires_when_reached_and_not_below() -> None:
    s = spend({"2025-11-09": {"proj_a": "60", "proj_b": "40"}})
    out = evaluate(
        [{"name": "org", "kind": "daily", "threshold": "100"}, {"name": "org-hi", "kind": "daily", "threshold": "100.01"},
         {"name": "each", "kind": "daily", "project": "*", "threshold": "50"}], s,
    )
    assert out["org", None].fired and out["org", None].amount == D(100)
    assert not out["org-hi", None].fired
    assert out["each", "proj_a"].fired and not out["each", "proj_b"].fired
    message = out["org", None].message
    assert "[org]" in message and "100.00 USD" in message and "https://reports.example/spend.html" in message


def test_a_day_that_has_not_landed_is_not_evaluated_as_zero() -> None:
    s = spend({}, missing=("2025-11-09",))
    ev = evaluate([{"name": "org", "kind": "daily", "threshold": "0"}], s)["org", None]
    assert not ev.fired and ev.amount is None and "has not landed" in ev.detail


def test_month_to_date_sums_the_month_only_and_names_missing_days() -> None:
    s = spend({"2025-10-31": {"p": "500"}, "2025-11-01": {"p": "30"}, "2025-11-09": {"p": "20"}}, missing=("2025-11-05",))
    ev = evaluate([{"name": "mtd", "kind": "month_to_date", "project": "p", "threshold": "50"}], s)["mtd", "p"]
    assert ev.fired and ev.amount == D(50) and ev.period == "2025-11"
    assert "1 day(s) of the month not landed" in ev.detail


def test_limit_percent_uses_the_directory_and_project_names() -> None:
    directory = Directory({"proj_a": "Search", "proj_b": "Chat"}, {"proj_a": D(100), "proj_b": D(1000)})
    s = spend({"2025-11-02": {"proj_a": "79.99", "proj_b": "800"}}, directory=directory)
    out = evaluate(
        [{"name": "l80", "kind": "limit_percent", "project": "*", "percent": 80},
         {"name": "chat", "kind": "limit_percent", "project": "Chat", "percent": "80"},
         {"name": "nolimit", "kind": "limit_percent", "project": "proj_zzz", "percent": 50}], s,
    )
    assert not out["l80", "proj_a"].fired and out["l80", "proj_b"].fired
    assert out["l80", "proj_b"].threshold == D(800)
    assert out["chat", "proj_b"].fired and "Chat (proj_b)" in out["chat", "proj_b"].message
    assert not out["nolimit", "proj_zzz"].fired and "no spend limit" in out["nolimit", "proj_zzz"].detail
    typo = evaluate([{"name": "typo", "kind": "daily", "project": "Serch", "threshold": "1"}], s)["typo", "Serch"]
    assert not typo.fired and "check the project id or name" in typo.detail


def test_anomaly_against_trailing_median_with_a_minimum_amount() -> None:
    history = {f"2025-11-0{i}": {"big": "10", "tiny": "0.01"} for i in range(1, 9)}
    s = spend({**history, "2025-11-09": {"big": "31", "tiny": "0.50"}})
    out = evaluate([{"name": "spike", "kind": "anomaly", "project": "*", "factor": 3, "trailing_days": 7, "min_amount": "5"}], s)
    assert out["spike", "big"].fired and out["spike", "big"].threshold == D(30)
    assert not out["spike", "tiny"].fired  # 50x its median, but under min_amount: nobody is paged
    calm = evaluate([{"name": "spike", "kind": "anomaly", "project": "big", "factor": "3.2", "trailing_days": 7}], s)
    assert not calm["spike", "big"].fired


def test_anomaly_needs_enough_landed_history() -> None:
    missing = tuple(f"2025-11-0{i}" for i in range(1, 8))
    s = spend({"2025-11-08": {"p": "1"}, "2025-11-09": {"p": "100"}}, missing=missing)
    ev = evaluate([{"name": "spike", "kind": "anomaly", "project": "p", "trailing_days": 7}], s)["spike", "p"]
    assert not ev.fired and "only 1 of the 7 days" in ev.detail


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
    assert a[0].startswith("OpenAI spend alert [org-daily]: the organization spent") and "reports/date=2025-11-09/spend.html" in a[0]
    assert b[0].startswith("organization ") and b[0].endswith(" USD")
    assert {e["state"] for e in result["evaluations"]} == {"fired"}
    marker = json.loads((spiky / "alerts" / "org-mtd" / "_organization" / "2025-11.json").read_text())
    assert marker["delivered"] == ["0:Recorder", "1:Recorder"] and marker["period"] == "2025-11"
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
    marker = spiky / "alerts" / "org-daily" / "_organization" / "2025-11-09.json"
    before = marker.read_bytes()

    def boom(src: str, dst: str) -> None:
        raise OSError("killed while publishing")

    second = alert_op(spiky, [Recorder(inbox), Recorder(inbox)], rules=RULES[:1])
    monkeypatch.setattr(os, "replace", boom)
    with pytest.raises(OSError, match="killed"):
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
