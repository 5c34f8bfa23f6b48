"""Spend alert rules: plain parameters in, evaluations out, and a marker per rule and period.

A rule is a mapping a DAG author can write literally or template (``"{{ var.json.spend_rules }}"``):

- ``{"name": "org-daily", "kind": "daily", "threshold": "250"}``: one day's spend reaches 250;
- ``{"name": "mtd", "kind": "month_to_date", "project": "*", "threshold": "5000"}``: each project;
- ``{"name": "limit-80", "kind": "limit_percent", "project": "*", "percent": 80}``: month to date
  reaches 80 % of the project's OpenAI spend limit (from the organization directory);
- ``{"name": "spike", "kind": "anomaly", "project": "*", "factor": 3, "trailing_days": 14,
  "min_amount": "20"}``: a day's spend is over 3x the median of the 14 days before, and at least 20.

``project`` is a project id, a project name (from the directory; resolved once and pinned, see
``Evaluator._resolve``), ``"*"`` for each project
separately, or absent for the whole organization.

``organization`` is an organization id (``org-...``) to watch only that organization, or ``"*"``
(the default) to evaluate the rule for every organization of the lake, each on its own: a
threshold of 250 fires for each organization reaching 250, never for two organizations' sum.
A project of a rule is looked up in each organization's own directory: ``(organization,
project)`` is the key, as two organizations may have projects of the same id or name. Amounts are exact decimals (give them as strings
to keep them exact). A rule fires when the amount *reaches* its threshold (``>=``).

Periods: ``daily`` and ``anomaly`` rules fire at most once per UTC day, ``month_to_date`` and
``limit_percent`` at most once per month. Whether a firing was delivered is recorded in a marker
object under ``<output_path>/alerts/<rule>/organization=<id>/`` (see :class:`MarkerStore` for why there).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import statistics
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from decimal import Decimal, InvalidOperation
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from airflow_provider_openai_usage.exceptions import OpenAIUsageValidationError
from airflow_provider_openai_usage.organizations import check_organization_id, organization_folder
from airflow_provider_openai_usage.report.spend import Spend, exact, money
from airflow_provider_openai_usage.storage.days import pause_point

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

KINDS = ("daily", "month_to_date", "limit_percent", "anomaly")
MONTHLY_KINDS = ("month_to_date", "limit_percent")
EACH_PROJECT = "*"
#: A rule's ``organization`` default: evaluated for each organization of the lake, separately.
EACH_ORGANIZATION = "*"
ORGANIZATION = "organization"
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,99}$")
#: Which keys each kind needs and accepts (besides name, kind, project).
REQUIRED = {"daily": ("threshold",), "month_to_date": ("threshold",), "limit_percent": ("percent",), "anomaly": ()}
ALLOWED = {
    "daily": ("threshold",),
    "month_to_date": ("threshold",),
    "limit_percent": ("percent",),
    "anomaly": ("factor", "trailing_days", "min_amount"),
}
#: An anomaly needs at least this many landed days before the day to compare against.
MIN_HISTORY = 3


@dataclass(frozen=True)
class SpendRule:
    name: str
    kind: str
    project: str | None = None
    threshold: Decimal | None = None
    percent: Decimal | None = None
    factor: Decimal = Decimal(3)
    trailing_days: int = 14
    min_amount: Decimal = Decimal(0)
    organization: str = EACH_ORGANIZATION

    def applies_to(self, organization_id: str) -> bool:
        return self.organization in (EACH_ORGANIZATION, organization_id)

    @classmethod
    def from_mapping(cls, raw: Any, index: int = 0) -> SpendRule:
        """Validate one rule; errors name the rule, the parameter, the value and the fix."""
        where = f"rules[{index}]"
        if not isinstance(raw, Mapping):
            raise OpenAIUsageValidationError(
                f"{where}={raw!r} must be a mapping such as {{'name': 'daily-org', 'kind': 'daily', 'threshold': '100'}}"
            )
        name = raw.get("name")
        if not isinstance(name, str) or not NAME_RE.match(name):
            raise OpenAIUsageValidationError(
                f"{where}.name={name!r} must be 1-100 letters, digits, '_', '.' or '-' (it names the rule's marker objects)"
            )
        where = f"rule {name!r}"
        kind = raw.get("kind")
        if kind not in KINDS:
            raise OpenAIUsageValidationError(f"{where}: kind={kind!r} is not one of {', '.join(KINDS)}")
        unknown = set(raw) - {"name", "kind", "project", "organization", *ALLOWED[kind]}
        if unknown:
            raise OpenAIUsageValidationError(
                f"{where}: {sorted(unknown)} do not apply to kind={kind!r}; it takes {['project', 'organization', *ALLOWED[kind]]}"
            )
        organization = raw.get("organization", EACH_ORGANIZATION)
        if organization is None:
            organization = EACH_ORGANIZATION
        if organization != EACH_ORGANIZATION:
            organization = check_organization_id(
                organization.strip() if isinstance(organization, str) else organization, described_as=f"{where}: organization"
            )
        for key in REQUIRED[kind]:
            if raw.get(key) is None:
                raise OpenAIUsageValidationError(f"{where}: kind={kind!r} needs {key}, e.g. {key}={'80' if key == 'percent' else '100.00'}")
        project = raw.get("project")
        if project is not None and (not isinstance(project, str) or not project.strip()):
            raise OpenAIUsageValidationError(
                f"{where}: project={project!r} must be a project id or name, '*' for each project, or left out for the organization"
            )
        if kind == "limit_percent" and project is None:
            raise OpenAIUsageValidationError(
                f"{where}: spend limits are per project; set project to a project id or name, or '*' for each project"
            )
        kwargs: dict[str, Any] = {
            "name": name, "kind": kind, "project": project.strip() if project else None, "organization": organization,
        }
        for key in ("threshold", "percent", "factor", "min_amount"):
            if raw.get(key) is not None:
                kwargs[key] = _decimal(raw[key], f"{where}: {key}")
        if "trailing_days" in raw:
            days = raw["trailing_days"]
            if isinstance(days, bool) or not isinstance(days, int) or not MIN_HISTORY <= days <= 90:
                raise OpenAIUsageValidationError(f"{where}: trailing_days={days!r} must be an integer from {MIN_HISTORY} to 90")
            kwargs["trailing_days"] = days
        rule = cls(**kwargs)
        if rule.kind == "anomaly" and rule.factor <= 1:
            raise OpenAIUsageValidationError(
                f"{where}: factor={raw.get('factor')!r} must be above 1 (3 means three times the trailing median)"
            )
        if rule.kind == "limit_percent" and rule.percent is not None and rule.percent <= 0:
            raise OpenAIUsageValidationError(f"{where}: percent={raw.get('percent')!r} must be above 0 (80 means 80 % of the spend limit)")
        return rule

    def period(self, day: dt.date) -> str:
        return day.strftime("%Y-%m") if self.kind in MONTHLY_KINDS else day.isoformat()

    @property
    def history_days(self) -> int:
        return self.trailing_days + 1 if self.kind == "anomaly" else 1


def _decimal(value: Any, where: str) -> Decimal:
    if isinstance(value, bool) or not isinstance(value, (int, str, Decimal, float)):
        raise OpenAIUsageValidationError(f"{where}={value!r} must be a number, e.g. '100.00'")
    try:
        number = Decimal(str(value).strip())
    except InvalidOperation:
        raise OpenAIUsageValidationError(f"{where}={value!r} is not a number; write it like '100.00'") from None
    if not number.is_finite() or number < 0:
        raise OpenAIUsageValidationError(f"{where}={value!r} must be a finite number >= 0")
    return number


def parse_rules(rules: Any) -> list[SpendRule]:
    """Rules from a list of mappings, or a JSON string of one (what a rendered template gives)."""
    if isinstance(rules, str):
        try:
            rules = json.loads(rules)
        except json.JSONDecodeError as exc:
            raise OpenAIUsageValidationError(f"rules={rules[:80]!r} is a string but not JSON ({exc}); pass a list of mappings") from None
    if isinstance(rules, Mapping) or not isinstance(rules, Sequence) or not rules:
        raise OpenAIUsageValidationError(
            f"rules={rules!r} must be a non-empty list of rule mappings, "
            "e.g. [{'name': 'daily-org', 'kind': 'daily', 'threshold': '100'}]"
        )
    parsed = [SpendRule.from_mapping(r, i) for i, r in enumerate(rules)]
    names = [r.name for r in parsed]
    duplicates = sorted({n for n in names if names.count(n) > 1})
    if duplicates:
        raise OpenAIUsageValidationError(f"rule names must be unique (they name the markers); repeated: {duplicates}")
    return parsed


@dataclass
class Evaluation:
    """One rule tested for one scope (a project or the organization) of one organization on the report day."""

    rule: SpendRule
    project: str | None
    period: str
    amount: Decimal | None
    threshold: Decimal | None
    fired: bool
    detail: str
    label: str = ORGANIZATION
    message: str = ""
    #: The rule could not be evaluated as written (a project name naming no project, or two).
    error: bool = False
    #: Whose spend was tested (None: a lake read without the organization level).
    organization_id: str | None = None
    #: The organization as messages name it: ``Display name (org-...)`` or its id.
    organization: str = ""

    def as_context(self, currency: str, report_url: str | None) -> dict[str, Any]:
        """What notifier templates see as ``{{ spend_alert.<key> }}``."""
        return {
            "rule": self.rule.name,
            "kind": self.rule.kind,
            "organization_id": self.organization_id,
            "organization": self.organization or self.organization_id,
            "project_id": self.project,
            "project": self.label,
            "period": self.period,
            "amount": money(self.amount, currency),
            "threshold": money(self.threshold, currency),
            "amount_exact": exact(self.amount),
            "threshold_exact": exact(self.threshold),
            "currency": currency.upper(),
            "detail": self.detail,
            "message": self.message,
            "report_url": report_url,
        }


@dataclass
class Evaluator:
    spend: Spend
    report_url: str | None = None
    evaluations: list[Evaluation] = field(default_factory=list)
    #: rule name → the project id its project *name* resolved to when first evaluated (``MarkerStore.pins``).
    pinned: Mapping[str, str] = field(default_factory=dict)
    #: The same for this run: what to record for rules that name a project by name.
    pins: dict[str, str] = field(default_factory=dict)
    #: The organization as messages name it (``OrganizationsSpend.label``); default its id.
    organization: str = ""

    @property
    def organization_id(self) -> str | None:
        return self.spend.organization_id

    def run(self, rules: Iterable[SpendRule]) -> list[Evaluation]:
        for rule in rules:
            if rule.project is not None and rule.project != EACH_PROJECT:
                project, problem = self._resolve(rule)
                if problem is not None:
                    label = self.spend.directory.label(project)
                    self.evaluations.append(
                        Evaluation(rule, project, rule.period(self.spend.report_day), None, None, False, problem, label, error=True,
                                   organization_id=self.organization_id, organization=self._organization())
                    )
                    continue
                self.evaluations.append(self._evaluate(rule, project))
                continue
            for scope in self._scopes(rule):
                self.evaluations.append(self._evaluate(rule, scope))
        return self.evaluations

    def _resolve(self, rule: SpendRule) -> tuple[str, str | None]:
        """The project id a rule means, or the reason it cannot be known (then the rule is an error).

        Why strict: a name that matches nothing (renamed, a typo) would evaluate an unknown project at
        0 spend and report "ok" every day; a name two projects share, or one another project took
        after a rename, would watch the wrong project. So a name is resolved once, pinned to its id
        (``pins``), and a later run whose directory says otherwise is an error, not a silent switch.
        """
        directory, wanted = self.spend.directory, rule.project
        assert wanted is not None
        if wanted in directory.names:
            return wanted, None  # an id
        matches = sorted(pid for pid, name in directory.names.items() if name == wanted)
        fix = "name the project by its id in the rule"
        if len(matches) > 1:
            return wanted, f"error: project {wanted!r} names {len(matches)} projects ({', '.join(matches)}); {fix}"
        if not matches:
            with_spend = {p for per_day in self.spend.daily.values() for p in per_day}
            if wanted in with_spend or wanted.startswith("proj_"):
                return wanted, None  # an id the directory does not list
            return wanted, f"error: project {wanted!r} names no project in the directory (renamed, or a typo?); {fix}"
        first = self.pinned.get(rule.name)
        if first is not None and first != matches[0]:
            return wanted, (
                f"error: project {wanted!r} named {first} when the rule was first evaluated, and now names {matches[0]} "
                f"(renamed, and another project took the name?); {fix} ({first} or {matches[0]})"
            )
        self.pins[rule.name] = matches[0]
        return matches[0], None

    def _scopes(self, rule: SpendRule) -> list[str | None]:
        directory = self.spend.directory
        if rule.project is None:
            return [None]
        if rule.project == EACH_PROJECT:
            if rule.kind == "limit_percent":
                return list(sorted(directory.limits))
            month = self.spend.month_days() if rule.kind in MONTHLY_KINDS else self.spend.days
            return list(sorted({p for d in month for p in self.spend.daily.get(d, {})}))
        raise AssertionError("a named project is resolved by _resolve")

    def _evaluate(self, rule: SpendRule, project: str | None) -> Evaluation:
        spend, day = self.spend, self.spend.report_day
        cur = spend.currency
        label = spend.directory.label(project) if project else ORGANIZATION
        ev = Evaluation(rule, project, rule.period(day), None, None, False, "", label,
                        organization_id=self.organization_id, organization=self._organization())
        missing: list[dt.date] = []
        if rule.kind in ("daily", "anomaly"):
            ev.amount = spend.project_day(project, day)
            if ev.amount is None:
                ev.detail = f"not evaluated: {day} has not landed"
                return ev
        else:
            ev.amount = spend.month_to_date(project)
            missing = spend.missing_days(spend.month_days())
        if rule.kind in ("daily", "month_to_date"):
            ev.threshold = rule.threshold
        elif rule.kind == "limit_percent":
            limit = spend.directory.limits.get(project) if project else None
            if limit is None:
                ev.detail = "not evaluated: no spend limit known for this project"
                return ev
            assert rule.percent is not None
            ev.threshold = limit * rule.percent / 100
        else:
            history = [spend.project_day(project, day - dt.timedelta(days=i)) for i in range(1, rule.trailing_days + 1)]
            landed = [h for h in history if h is not None]
            if len(landed) < MIN_HISTORY:
                ev.detail = f"not evaluated: only {len(landed)} of the {rule.trailing_days} days before have landed (need {MIN_HISTORY})"
                return ev
            median = statistics.median(landed)
            ev.threshold = max(median * rule.factor, rule.min_amount)
            ev.detail = f"trailing median {money(median, cur)} over {len(landed)} landed days"
        assert ev.threshold is not None and ev.amount is not None
        ev.fired = ev.amount >= ev.threshold and (rule.kind != "anomaly" or ev.amount > 0)
        if rule.kind in MONTHLY_KINDS and missing:
            ev.detail = (ev.detail + "; " if ev.detail else "") + f"{len(missing)} day(s) of the month not landed"
        known = {p for per_day in spend.daily.values() for p in per_day} | set(spend.directory.names)
        if project is not None and project not in known:
            note = f"no spend and no directory entry for {project!r}: check the project id or name"
            ev.detail = (ev.detail + "; " if ev.detail else "") + note
        ev.message = self._message(ev)
        return ev

    def _organization(self) -> str:
        return self.organization or self.organization_id or ""

    def _message(self, ev: Evaluation) -> str:
        cur, rule = self.spend.currency, ev.rule
        org = self._organization()
        if ev.project:
            who = f"project {ev.label} of organization {org}" if org else f"project {ev.label}"
        else:
            who = f"organization {org}" if org else "the organization"
        amount, threshold = money(ev.amount, cur), money(ev.threshold, cur)
        if rule.kind == "daily":
            what = f"{who} spent {amount} on {ev.period}, reaching the daily threshold of {threshold}"
        elif rule.kind == "month_to_date":
            what = f"{who} has spent {amount} in {ev.period} (month to date), reaching the threshold of {threshold}"
        elif rule.kind == "limit_percent":
            what = f"{who} has spent {amount} in {ev.period} (month to date), {rule.percent}% of its spend limit is {threshold}"
        else:
            what = f"{who} spent {amount} on {ev.period}, over {rule.factor}x its {ev.detail} (threshold {threshold})"
        link = f" Report: {self.report_url}" if self.report_url else ""
        return f"OpenAI spend alert [{rule.name}]: {what}.{link}"


def unknown_organizations(rules: Iterable[SpendRule], lake: Any, day: dt.date, where: str) -> list[Evaluation]:
    """An error for each rule naming an organization the lake has no data of: a typo (or a missing
    pull) would otherwise watch nothing and say "ok" every day."""
    out = []
    for rule in rules:
        if rule.organization != EACH_ORGANIZATION and rule.organization not in lake.spends:
            landed = [o for o in lake.spends if o]
            detail = (
                f"error: organization {rule.organization!r} has nothing landed under {where} "
                f"(it holds {', '.join(landed) or 'no organization'}); check the id or its pulls"
            )
            out.append(Evaluation(rule, rule.project, rule.period(day), None, None, False, detail, error=True,
                                  organization_id=rule.organization, organization=rule.organization))
    return out


#: Attributes that say *where* a notifier delivers (besides any ``*conn_id``): its identity in markers.
DESTINATION_ATTRIBUTES = ("to", "cc", "bcc", "recipients", "channel", "channels", "channel_id", "webhook_endpoint")


def notifier_identity(notifier: object) -> str:
    """A notifier as markers know it: its class and where it delivers (connections, recipients).

    Why not its position in the list (or its class alone): after the list is edited, a receiver that
    never got an alert would be taken for one that did, and a moved one would get it twice. Its text
    templates are left out on purpose: rewording a message must not send it again.
    """
    cls = type(notifier)
    where = {
        name: value
        for name, value in sorted(vars(notifier).items())
        if (name.endswith("conn_id") or name in DESTINATION_ATTRIBUTES)
        and (value is None or isinstance(value, (str, int, bool, list, tuple)))
    }
    spelled = ", ".join(f"{name}={json.dumps(value, default=str)}" for name, value in where.items())
    return f"{cls.__module__}.{cls.__qualname__}({spelled})"


#: How long a claimed send holds off other tasks (a notifier call takes seconds; a killed task's claim lapses).
CLAIM_SECONDS = 300
#: How often a task waiting for another task's claimed send looks at the marker again.
CLAIM_POLL_SECONDS = 0.5


class MarkerStore:
    """``<output_path>/alerts/<rule>/organization=<id>/<scope>/<period>.json``: which notifiers got a firing.

    The organization is part of every marker's path: the same rule firing for two organizations
    (for a project id both have, even) is two markers, never one alert sent for the other.

    Why here and not in XCom or a Variable: XCom of a task is deleted when the task is cleared or
    re-run, which is exactly when a second send must not happen; a Variable is global, writable by
    anyone in the UI, and outlives the data it talks about. The output location is where the data
    and the report live, it survives a metadata database reset, and each marker is written
    atomically (:func:`publish_bytes`). A marker is updated after each notifier that succeeded, so a
    retry re-sends only to the notifiers that failed. A crash between a send and its marker
    write re-sends that one message on retry: at least once, never lost.
    """

    def __init__(self, root: ObjectStoragePath) -> None:
        self.root = root

    def rule_root(self, rule: SpendRule, organization_id: str | None) -> ObjectStoragePath:
        """``alerts/<rule>/organization=<id>`` (``alerts/<rule>`` for a lake without the organization level)."""
        root = self.root / rule.name
        return root if not organization_id else root / organization_folder(organization_id)

    def path(self, ev: Evaluation) -> ObjectStoragePath:
        scope = quote(ev.project, safe="") if ev.project else f"_{ORGANIZATION}"
        return self.rule_root(ev.rule, ev.organization_id) / scope / f"{ev.period}.json"

    def pins(self, rules: Iterable[SpendRule], organization_id: str | None = None) -> dict[str, str]:
        """rule name → the project id its project name was pinned to in one organization
        (``<rule>/organization=<id>/_project.json``)."""
        from airflow_provider_openai_usage.report.publish import read_bytes_if_exists

        out = {}
        for rule in rules:
            if rule.project is None or rule.project == EACH_PROJECT:
                continue
            data = read_bytes_if_exists(self.rule_root(rule, organization_id) / "_project.json")
            if data:
                pinned = json.loads(data)
                if pinned.get("project") == rule.project:  # the rule was edited to another name: pin again
                    out[rule.name] = pinned["project_id"]
        return out

    def pin(self, rule: SpendRule, project_id: str, organization_id: str | None = None) -> None:
        from airflow_provider_openai_usage.report.publish import publish_bytes

        body = {"rule": rule.name, "project": rule.project, "project_id": project_id, "organization_id": organization_id}
        publish_bytes(self.rule_root(rule, organization_id) / "_project.json", json.dumps(body, indent=2, sort_keys=True).encode())

    def delivered(self, ev: Evaluation) -> list[str]:
        from airflow_provider_openai_usage.report.publish import read_bytes_if_exists

        data = read_bytes_if_exists(self.path(ev))
        return list(json.loads(data)["delivered"]) if data else []

    def record(self, ev: Evaluation, delivered: Sequence[str], extra: Mapping[str, Any]) -> None:
        from airflow_provider_openai_usage.report.publish import publish_bytes

        publish_bytes(self.path(ev), _dumps(self._body(ev, delivered, extra)))

    def _body(self, ev: Evaluation, delivered: Sequence[str], extra: Mapping[str, Any]) -> dict[str, Any]:
        return {
            "rule": asdict(ev.rule) | {k: format(v, "f") for k, v in asdict(ev.rule).items() if isinstance(v, Decimal)},
            "organization_id": ev.organization_id,
            "organization": ev.organization or ev.organization_id,
            "project": ev.project,
            "period": ev.period,
            "amount": exact(ev.amount),
            "threshold": exact(ev.threshold),
            "message": ev.message,
            "delivered": list(delivered),
            **extra,
        }

    def send_once(self, ev: Evaluation, key: str, owner: str, send: Callable[[], None], extra: Mapping[str, Any]) -> bool:
        """Send ``ev`` to the notifier ``key`` unless the marker says it got it; True if sent now.

        Two alert tasks for the same day at once must not both send (#26): on a local disk the marker
        is read, the alert sent and the marker written under an ``flock``; on an object store with
        conditional writes (S3) the task first *claims* the send in the marker (a write conditional on
        the marker it read), so of two tasks one claims and the other waits until the marker says
        delivered. A claim is ``owner``'s (the task instance: its retry takes it over) and lapses after
        ``CLAIM_SECONDS`` (a task killed mid-send: the alert is sent again, never lost).
        """
        path = self.path(ev)
        from airflow_provider_openai_usage.report.publish import is_local

        if is_local(path):
            return self._send_locked(ev, key, send, extra)
        from airflow_provider_openai_usage.storage.conditional import preconditions_for

        pre = preconditions_for(path)
        if pre is None:  # no lock to be had: at least once, as before
            delivered = self.delivered(ev)
            if key in delivered:
                return False
            send()
            self.record(ev, [*delivered, key], extra)
            return True
        return self._send_claimed(pre, ev, key, owner, send, extra)

    def _send_locked(self, ev: Evaluation, key: str, send: Callable[[], None], extra: Mapping[str, Any]) -> bool:
        import fcntl
        import os

        path = self.path(ev)
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(f"{path.path}.lock", os.O_CREAT | os.O_RDWR, 0o666)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            delivered = self.delivered(ev)
            if key in delivered:
                return False
            pause_point("alert-marker-read")
            send()
            self.record(ev, [*delivered, key], extra)
            return True
        finally:
            os.close(fd)

    def _send_claimed(
        self, pre: Any, ev: Evaluation, key: str, owner: str, send: Callable[[], None], extra: Mapping[str, Any]
    ) -> bool:
        from airflow_provider_openai_usage.storage.conditional import WriteConflict

        path, pause = self.path(ev), threading.Event()
        deadline = time.monotonic() + 2 * CLAIM_SECONDS
        while True:
            data, version = pre.read(path)
            body = json.loads(data) if data else {}
            delivered, sending = list(body.get("delivered", [])), dict(body.get("sending", {}))
            if key in delivered:
                return False
            claim = sending.get(key)
            if claim and claim.get("owner") != owner and claim.get("until", 0) > time.time() and time.monotonic() < deadline:
                pause.wait(CLAIM_POLL_SECONDS)  # another task is sending it: wait for its marker
                continue
            pause_point("alert-marker-read")
            sending[key] = {"owner": owner, "until": time.time() + CLAIM_SECONDS}
            try:
                pre.write(path, _dumps({**self._body(ev, delivered, extra), "sending": sending}), version)
            except WriteConflict:
                continue
            break
        try:
            send()
        except BaseException:
            self._settle(pre, ev, key, extra, sent=False)
            raise
        self._settle(pre, ev, key, extra, sent=True)
        return True

    def _settle(self, pre: Any, ev: Evaluation, key: str, extra: Mapping[str, Any], *, sent: bool) -> None:
        """Drop the claim; record ``key`` as delivered if it was sent (conditional, retried on conflict)."""
        from airflow_provider_openai_usage.storage.conditional import WriteConflict

        path = self.path(ev)
        while True:
            data, version = pre.read(path)
            body = json.loads(data) if data else {}
            delivered = list(body.get("delivered", []))
            if sent and key not in delivered:
                delivered.append(key)
            sending = {k: v for k, v in body.get("sending", {}).items() if k != key}
            out = self._body(ev, delivered, extra) | ({"sending": sending} if sending else {})
            try:
                pre.write(path, _dumps(out), version)
                return
            except WriteConflict:
                continue


def _dumps(body: Mapping[str, Any]) -> bytes:
    return json.dumps(body, indent=2, sort_keys=True).encode()
