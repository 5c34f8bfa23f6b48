"""See the spend and be told: a daily HTML spend report, and spend alerts through any notifier.

Both operators read only what the pulls landed under ``output_path`` (local or object storage);
neither calls OpenAI. Run them after the pull tasks of the same DAG run:

    pulls >> OpenAISpendReportOperator(task_id="report", output_path=OUTPUT)
          >> OpenAISpendAlertOperator(task_id="alerts", output_path=OUTPUT, rules=[...],
                                      notifiers=[SlackWebhookNotifier(text="{{ spend_alert.slack.message }}")])
"""

from __future__ import annotations

import copy
import datetime as dt
import functools
import os
import socket
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator

from airflow_provider_openai_usage.exceptions import OpenAIUsageError, OpenAIUsageValidationError
from airflow_provider_openai_usage.operators.usage import output_location
from airflow_provider_openai_usage.times import utc_date

if TYPE_CHECKING:
    from airflow.sdk import BaseNotifier, Context, ObjectStoragePath

    from airflow_provider_openai_usage.report.alerts import Evaluation, MarkerStore
    from airflow_provider_openai_usage.report.spend import Directory, OrganizationsSpend

REPORTS = "reports"
ALERTS = "alerts"
REPORT_NAME = "spend.html"
CHART_NAME = "spend.png"


def report_day(context: Mapping[str, Any], value: Any) -> dt.date:
    """The UTC day a report or alert run is about: ``value`` if given, else the run's interval start."""
    if value not in (None, ""):
        if isinstance(value, dt.datetime):
            return utc_date(value) if value.tzinfo else value.date()
        if isinstance(value, dt.date):
            return value
        try:
            return dt.date.fromisoformat(str(value).strip()[:10])
        except ValueError:
            raise OpenAIUsageValidationError(
                f"report_date={value!r} is not a date; use YYYY-MM-DD or '{{{{ data_interval_start | ds }}}}'"
            ) from None
    start = context.get("data_interval_start") or context.get("logical_date")
    if start is None:
        raise OpenAIUsageValidationError(
            "this run has no data interval (a manual trigger without a logical date); set report_date='YYYY-MM-DD'"
        )
    return utc_date(start)


def report_path(location: ObjectStoragePath, day: dt.date, name: str = REPORT_NAME) -> ObjectStoragePath:
    return location / REPORTS / f"date={day.isoformat()}" / name


def _check_days(name: str, value: Any, low: int, high: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise OpenAIUsageValidationError(f"{name}={value!r} must be an integer from {low} to {high}")
    return value


def load_directory(location: ObjectStoragePath, day: dt.date, organization_id: str | None = None) -> Directory:
    """Project names and spend limits from one organization's directory, when it has been landed."""
    from airflow_provider_openai_usage.report.names import load_directory as load

    return load(location, day, organization_id=organization_id)


def check_organization_names(value: Any) -> dict[str, str]:
    """``organization_names``: organization id → display name; ids checked, names kept as data."""
    from airflow_provider_openai_usage.organizations import check_organization_id

    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise OpenAIUsageValidationError(
            f"organization_names={value!r} must be a mapping of organization id to display name, e.g. {{'org-AbC123': 'Research'}}"
        )
    out = {}
    for org, name in value.items():
        check_organization_id(org, described_as="organization_names key")
        if not isinstance(name, str) or not name.strip():
            raise OpenAIUsageValidationError(f"organization_names[{org!r}]={name!r} must be a non-empty display name")
        out[org] = name.strip()
    return out


def organization_summary(lake: OrganizationsSpend, window: int) -> list[dict[str, Any]]:
    """Each organization's exact totals, for XCom (the report's data output): one entry per organization."""
    from airflow_provider_openai_usage.report.spend import exact

    return [
        {
            "organization_id": org,
            "organization": lake.short(org),
            "day_total": exact(spend.day_total(lake.report_day)),
            "month_to_date": exact(spend.month_to_date(None)),
            "window_total": exact(spend.window_total(window)),
            "missing_days": [d.isoformat() for d in spend.missing_days(spend.window(window))],
        }
        for org, spend in lake.spends.items()
    ]


class OpenAISpendReportOperator(BaseOperator):
    """Write ``<output_path>/reports/date=YYYY-MM-DD/spend.html`` (and ``spend.png``) from landed costs.

    One report covers every organization landed under ``output_path`` (each
    ``costs/organization=<id>/``): spend by organization, then by project within each, with exact
    per-organization and all-organization totals.

    :param output_path: where the pulls landed (``s3://...``, ``file:///...``); the report goes under it.
    :param output_conn_id: object-store connection, as for the pull operators.
    :param report_date: the UTC day the report is about (templated); default the run's
        ``data_interval_start`` day, i.e. the day the pulls of this run landed.
    :param days: how many days the daily chart and the top tables cover (default 30).
    :param top: how many models the models chart shows (default 10).
    :param organization_names: organization id → the name the report shows (``{"org-AbC": "Research"}``);
        an organization not in it is shown by its id. Names are data: escaped wherever shown.
    """

    template_fields: Sequence[str] = ("output_path", "output_conn_id", "report_date", "days")
    ui_color = "#10a37f"
    ui_fgcolor = "#ffffff"

    def __init__(
        self,
        *,
        output_path: Any,
        output_conn_id: str | None = None,
        report_date: Any = None,
        days: int = 30,
        top: int = 10,
        organization_names: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        self.report_date = report_date
        self.days = days if isinstance(days, str) else _check_days("days", days, 2, 366)
        self.top = _check_days("top", top, 1, 50)
        self.organization_names = check_organization_names(organization_names)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_openai_usage.report import charts
        from airflow_provider_openai_usage.report.html import render_html
        from airflow_provider_openai_usage.report.publish import publish_bytes
        from airflow_provider_openai_usage.report.spend import exact, load_organizations, money

        days = _check_days("days", int(self.days), 2, 366)
        location = output_location(self.output_path, self.output_conn_id or None)
        day = report_day(context, self.report_date)
        lake = load_organizations(location, day, days, names=self.organization_names, top=self.top)
        window = lake.window(days)
        for org, spend in lake.spends.items():
            self.log.info(
                "Spend report for %s, organization %s: %d of %d days landed (%s missing), %d project(s), %s on the day, "
                "%s month to date",
                day, org, len(window) - len(spend.missing_days(window)), len(window), len(spend.missing_days(window)),
                len(spend.projects), money(spend.day_total(day), spend.currency), money(spend.month_to_date(None), spend.currency),
            )
        svgs: dict[str, Any] = {}
        several = len(lake.spends) > 1
        if several:
            daily = charts.render(
                lambda s: charts.daily_chart(s, days, by="organization"), lake.by_organization(), name="daily", formats=("svg", "png")
            )
            svgs["daily"] = daily["svg"]
        for org, spend in lake.spends.items():
            salt = f"-{org}" if several else ""  # one organization: the same bytes as before the organization level
            own = charts.render(lambda s: charts.daily_chart(s, days), spend, name=f"daily{salt}", formats=("svg", "png"))
            if not several:
                daily = own
            one = {
                "daily": own["svg"],
                "month": charts.render(charts.month_chart, spend, name=f"month{salt}")["svg"],
                "models": charts.render(charts.models_chart, spend, name=f"models{salt}")["svg"],
            }
            if several:
                svgs[org] = one
            else:
                svgs = one
        html = render_html(lake, svgs, window=days, source=location.as_uri())
        page, png = report_path(location, day), report_path(location, day, CHART_NAME)
        publish_bytes(png, daily["png"])
        publish_bytes(page, html.encode())
        self.log.info("Wrote %s and %s", page.as_uri(), png.as_uri())
        total = lake.day_total(day)
        return {
            "report": page.as_uri(),
            "chart": png.as_uri(),
            "date": day.isoformat(),
            "currency": lake.currency,
            "day_total": exact(total),
            "month_to_date": exact(lake.month_to_date()),
            "missing_days": [d.isoformat() for d in lake.missing_days(window)],
            "organizations": organization_summary(lake, days),
        }


class OpenAISpendAlertOperator(BaseOperator):
    """Evaluate spend rules for the run's day and notify through any Airflow notifier, once per period.

    Every rule is evaluated for each organization landed under ``output_path`` (or only the one its
    ``organization`` names), each organization on its own spend, limits and markers.

    :param rules: a list of rule mappings (see :mod:`airflow_provider_openai_usage.report.alerts`),
        or a template rendering to one (JSON text is accepted). Literal rules are checked at parse time.
    :param notifiers: notifiers (any ``BaseNotifier``: ``SlackWebhookNotifier``, ``SmtpNotifier``...);
        each firing is sent to each, with ``spend_alert`` (``message``, ``project``, ``amount``,
        ``threshold``, ``report_url``...; escaped as ``slack.*``, ``html.*``, ``header.*``) added to the template context.
    :param output_path: where the pulls landed; markers go to ``<output_path>/alerts/``.
    :param output_conn_id: object-store connection.
    :param report_date: the UTC day to evaluate (templated); default the run's ``data_interval_start`` day.
    :param report_url: the link put in messages (templated); default the report's own location
        (``<output_path>/reports/date=.../spend.html``). Set it to where people can open it (https).
    :param fail_on_alert: fail the task when any rule fired (after notifying). Default False: an alert
        tells people, it does not stop the pipeline.
    :param organization_names: organization id → the name messages use (default: the id).
    """

    template_fields: Sequence[str] = ("rules", "output_path", "output_conn_id", "report_date", "report_url")
    template_fields_renderers = {"rules": "json"}
    ui_color = "#f0ad4e"

    def __init__(
        self,
        *,
        rules: Any,
        notifiers: BaseNotifier | Sequence[BaseNotifier] = (),
        output_path: Any,
        output_conn_id: str | None = None,
        report_date: Any = None,
        report_url: str | None = None,
        fail_on_alert: bool = False,
        organization_names: Mapping[str, str] | None = None,
        **kwargs: Any,
    ) -> None:
        from airflow.sdk import BaseNotifier

        from airflow_provider_openai_usage.report.alerts import parse_rules
        from airflow_provider_openai_usage.task_range import is_templated

        super().__init__(**kwargs)
        if not is_templated(rules):
            parse_rules(rules)  # a typo fails at DAG parse time, not at 2 a.m.
        notifiers = [notifiers] if isinstance(notifiers, BaseNotifier) else list(notifiers)
        for i, n in enumerate(notifiers):
            if not isinstance(n, BaseNotifier):
                raise OpenAIUsageValidationError(
                    f"notifiers[{i}]={n!r} is not an Airflow BaseNotifier (e.g. SlackWebhookNotifier, SmtpNotifier)"
                )
        self.rules = rules
        self.notifiers = notifiers
        self.output_path = output_path
        self.output_conn_id = output_conn_id
        self.report_date = report_date
        self.report_url = report_url
        self.fail_on_alert = fail_on_alert
        self.organization_names = check_organization_names(organization_names)

    def execute(self, context: Context) -> dict[str, Any]:
        from airflow_provider_openai_usage.report.alerts import Evaluator, MarkerStore, parse_rules, unknown_organizations
        from airflow_provider_openai_usage.report.spend import exact, load_organizations

        rules = parse_rules(self.rules)
        location = output_location(self.output_path, self.output_conn_id or None)
        day = report_day(context, self.report_date)
        history = max(max(r.history_days for r in rules), 2)
        lake = load_organizations(location, day, history, names=self.organization_names, with_models=False)
        url = self.report_url or report_path(location, day).as_uri()
        markers = MarkerStore(location / ALERTS)
        evaluations = []
        for org, spend in lake.spends.items():
            mine = [r for r in rules if r.applies_to(org)]
            if not mine:
                continue
            pinned = markers.pins(mine, org or None)
            evaluator = Evaluator(spend, url, pinned=pinned, organization=lake.label(org) if org else "")
            evaluations += evaluator.run(mine)
            for rule in mine:
                if rule.name in evaluator.pins and rule.name not in pinned:
                    markers.pin(rule, evaluator.pins[rule.name], org or None)
        evaluations += unknown_organizations(rules, lake, day, location.as_uri())
        fired, failures, summary, rule_errors = [], [], [], []
        for ev in evaluations:
            state = "error" if ev.error else "fired" if ev.fired else ("not evaluated" if ev.threshold is None else "ok")
            if ev.error:
                rule_errors.append(f"rule {ev.rule.name}: {ev.detail}")
            self.log.info(
                "rule %s (%s) for %s of %s, %s: amount %s, threshold %s -> %s%s",
                ev.rule.name, ev.rule.kind, ev.label, ev.organization_id, ev.period, exact(ev.amount), exact(ev.threshold), state,
                f" ({ev.detail})" if ev.detail else "",
            )
            entry: dict[str, Any] = {"rule": ev.rule.name, "organization_id": ev.organization_id, "project": ev.project,
                                     "period": ev.period, "state": state, "amount": exact(ev.amount), "threshold": exact(ev.threshold)}
            if ev.fired:
                fired.append(ev)
                entry["sent_to"], errors = self._deliver(ev, markers, context, lake.currency, url)
                failures += errors
            summary.append(entry)
        self.log.info("%d evaluation(s), %d fired, %d delivery failure(s)", len(evaluations), len(fired), len(failures))
        if failures:
            also = f". Also {len(rule_errors)} rule error(s): {'; '.join(rule_errors)}" if rule_errors else ""
            raise OpenAIUsageError(
                f"{len(failures)} alert delivery failure(s): {'; '.join(failures)}. Delivered ones are recorded and "
                f"will not be sent again on retry{also}"
            )
        if rule_errors:
            raise OpenAIUsageError(
                f"{len(rule_errors)} rule(s) could not be evaluated as written (the other rules were, and their alerts "
                f"sent): {'; '.join(rule_errors)}"
            )
        if fired and self.fail_on_alert:
            raise OpenAIUsageError(f"{len(fired)} spend rule(s) fired (fail_on_alert=True): " + "; ".join(ev.message for ev in fired))
        return {"date": day.isoformat(), "evaluations": summary}

    def _deliver(self, ev: Evaluation, markers: MarkerStore, context: Context, currency: str, url: str) -> tuple[list[str], list[str]]:
        """Send one firing to each notifier that has not had it; record each success at once."""
        from airflow_provider_openai_usage.report.alerts import notifier_identity
        from airflow_provider_openai_usage.report.escaping import plain_escape_for, template_fields

        errors = []
        ti = context.get("ti")
        # Who claims a send: the task instance (its retry takes its claim over), else this process.
        owner = "/".join(str(getattr(ti, a, "")) for a in ("dag_id", "task_id", "run_id", "map_index")) if ti else (
            f"{self.task_id}@{socket.gethostname()}:{os.getpid()}"
        )
        extra = {"run_id": context.get("run_id"), "sent_by_task": self.task_id}
        seen: dict[str, int] = {}
        for notifier in self.notifiers:
            key = notifier_identity(notifier)
            seen[key] = seen.get(key, 0) + 1
            if seen[key] > 1:  # two notifiers alike in class and destination: told apart by their order
                key = f"{key}#{seen[key]}"
            # A copy: notifiers render their templates in place, and each firing needs its own text.
            one = copy.copy(notifier)
            fields = template_fields(ev.as_context(currency, url), plain_escape_for(notifier))
            alert_context = {**context, "spend_alert": fields}
            try:
                sent = markers.send_once(ev, key, owner, functools.partial(one, alert_context), extra)
            except Exception as exc:  # noqa: BLE001 - one failing receiver must not stop the others
                errors.append(f"{ev.rule.name} for {ev.label} of {ev.organization_id} via {key}: {type(exc).__name__}: {exc}")
                self.log.error("  %s: sending to %s failed: %s", ev.rule.name, key, exc)
                continue
            if sent:
                self.log.info("  %s: sent to %s", ev.rule.name, key)
            else:
                self.log.info("  %s: already sent to %s (marker %s)", ev.rule.name, key, markers.path(ev).as_uri())
        delivered = markers.delivered(ev)
        if not self.notifiers:
            self.log.warning("  %s fired but no notifiers are configured: %s", ev.rule.name, ev.message)
        return delivered, errors
