"""The spend numbers a report shows and alert rules test, computed once from the landed partitions.

Costs are summed in Arrow (``Table.group_by(...).aggregate``) as exact ``decimal128`` values; the
results are small (days x projects) and come back as Python ``Decimal``. Rounding happens only
where a number is displayed (:func:`money`). Days that were never landed stay absent from
``daily`` and are marked ``missing`` in ``coverage``: a gap is not a zero.

Each organization is read from its own folder (``costs/organization=<id>/``) into its own
:class:`Spend`, with its own directory (names, limits): project ids of two organizations are never
merged, even when they are spelled alike. :class:`OrganizationsSpend` holds them side by side and
sums across them (exactly) for the all-organization figures.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import ROUND_HALF_UP, Decimal
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.report.landed import COMPLETE, MISSING, PARTIAL, day_range, read_landed

if TYPE_CHECKING:
    from airflow.sdk import ObjectStoragePath

ZERO = Decimal(0)
CENT = Decimal("0.01")
#: How a missing project id is shown (costs not attributed to a project, e.g. organization-level).
NO_PROJECT = "(no project)"


def percent_change(before: Decimal | None, today: Decimal | None) -> Decimal | None:
    """``today`` against ``before`` in percent; None when either is unknown or ``before`` is zero."""
    if before is None or today is None or before == ZERO:
        return None
    return (today - before) / before * 100


def money(value: Decimal | None, currency: str) -> str:
    """``1,234.57 USD``: rounded half up to cents, only for display."""
    if value is None:
        return "n/a"
    return f"{value.quantize(CENT, rounding=ROUND_HALF_UP):,} {currency.upper()}"


def exact(value: Decimal | None) -> str | None:
    """The exact value as plain text without trailing zeros (``10.4106258675``), for logs, XCom, markers."""
    if value is None:
        return None
    text = format(value, "f")
    return text.rstrip("0").rstrip(".") if "." in text else text


#: The owner shown for a key the directory snapshot does not list (revoked, or its owner left).
UNKNOWN_OWNER = "owner unknown (key not in the directory snapshot)"


@dataclass(frozen=True)
class Directory:
    """What the organization directory knows about projects: names and OpenAI spend limits."""

    names: Mapping[str, str] = field(default_factory=dict)
    limits: Mapping[str, Decimal] = field(default_factory=dict)
    #: api_key_id -> (the key's name, its owner: a user's or service account's name and e-mail).
    keys: Mapping[str, tuple[str, str]] = field(default_factory=dict)

    def label(self, project_id: str) -> str:
        name = self.names.get(project_id)
        return f"{name} ({project_id})" if name and name != project_id else project_id

    def short(self, project_id: str) -> str:
        return self.names.get(project_id) or project_id


@dataclass
class ModelSpend:
    model: str
    cost: Decimal
    input_tokens: int | None = None
    output_tokens: int | None = None
    requests: int | None = None


@dataclass
class Spend:
    """Daily spend per project over ``days`` (oldest first), ending at ``report_day``."""

    report_day: dt.date
    days: list[dt.date]
    coverage: dict[dt.date, str]
    currency: str
    #: day -> project -> amount, only for days that were landed (complete or partial).
    daily: dict[dt.date, dict[str, Decimal]]
    line_items: list[tuple[str, Decimal]]
    models: list[ModelSpend]
    directory: Directory = field(default_factory=Directory)
    #: Amounts left out because they were in another currency than ``currency`` (per currency).
    other_currencies: dict[str, Decimal] = field(default_factory=dict)
    #: (api_key_id or None, cost) over the window, biggest first; None: days pulled without the key
    #: (before OpenAI's API-key floor, or a pull not grouped by api_key_id).
    by_key: list[tuple[str | None, Decimal]] = field(default_factory=list)
    #: Whose spend this is (``costs/organization=<id>``); None: a lake read without the organization level.
    organization_id: str | None = None

    # -- derived ------------------------------------------------------------------------------------
    @property
    def projects(self) -> list[str]:
        """Every project with spend in the range, biggest first."""
        totals: dict[str, Decimal] = {}
        for per_project in self.daily.values():
            for project, amount in per_project.items():
                totals[project] = totals.get(project, ZERO) + amount
        return sorted(totals, key=lambda p: (-totals[p], p))

    def day_total(self, day: dt.date) -> Decimal | None:
        if self.coverage.get(day, MISSING) == MISSING:
            return None
        return sum(self.daily.get(day, {}).values(), ZERO)

    def project_day(self, project: str | None, day: dt.date) -> Decimal | None:
        """A project's (or, for ``None``, the organization's) spend on a day; ``None`` if not landed."""
        if project is None:
            return self.day_total(day)
        if self.coverage.get(day, MISSING) == MISSING:
            return None
        return self.daily.get(day, {}).get(project, ZERO)

    def month_days(self) -> list[dt.date]:
        return [d for d in self.days if d.year == self.report_day.year and d.month == self.report_day.month]

    def month_to_date(self, project: str | None) -> Decimal:
        """Spend from the first of the report day's month through the report day (landed days only)."""
        return sum((self.project_day(project, d) or ZERO for d in self.month_days()), ZERO)

    def month_end_forecast(self) -> Decimal | None:
        """The month's spend at its run rate so far: month to date / landed days of the month x its
        days. None before a day of the month has landed (no rate to extend)."""
        import calendar

        landed = [d for d in self.month_days() if self.coverage.get(d, MISSING) != MISSING]
        if not landed:
            return None
        days_in_month = calendar.monthrange(self.report_day.year, self.report_day.month)[1]
        return self.month_to_date(None) / len(landed) * days_in_month

    def day_change(self) -> Decimal | None:
        """The report day against the day before, in percent (None: either not landed, or nothing the day before)."""
        return percent_change(self.day_total(self.report_day - dt.timedelta(days=1)), self.day_total(self.report_day))

    def by_owner(self) -> list[tuple[str, Decimal]]:
        """The window's cost per API-key owner (from the directory), biggest first: the drill-down by user."""
        totals: dict[str, Decimal] = {}
        for key, amount in self.by_key:
            owner = self.directory.keys.get(key, ("", UNKNOWN_OWNER))[1] if key else "no key recorded"
            totals[owner] = totals.get(owner, ZERO) + amount
        return sorted(totals.items(), key=lambda r: (-r[1], r[0]))

    def missing_days(self, days: list[dt.date]) -> list[dt.date]:
        return [d for d in days if self.coverage.get(d, MISSING) == MISSING]

    def window(self, n: int) -> list[dt.date]:
        return self.days[-n:]

    def window_total(self, n: int) -> Decimal:
        return sum((self.day_total(d) or ZERO for d in self.window(n)), ZERO)

    def movers(self, limit: int = 5) -> list[tuple[str, Decimal, Decimal, Decimal]]:
        """(project, day before, report day, change), biggest absolute change first; both days landed."""
        before = self.report_day - dt.timedelta(days=1)
        if self.day_total(before) is None or self.day_total(self.report_day) is None:
            return []
        rows = []
        for project in set(self.daily.get(before, {})) | set(self.daily.get(self.report_day, {})):
            a, b = self.project_day(project, before) or ZERO, self.project_day(project, self.report_day) or ZERO
            if a != b:
                rows.append((project, a, b, b - a))
        rows.sort(key=lambda r: (-abs(r[3]), r[0]))
        return rows[:limit]

    def month_rows(self) -> list[tuple[str, Decimal, Decimal | None]]:
        """(project, month to date, spend limit or None) for every project with spend or a limit."""
        projects = [p for p in self.projects if any(p in self.daily.get(d, {}) for d in self.month_days())]
        projects += sorted(p for p in self.directory.limits if p not in projects)
        return [(p, self.month_to_date(p), self.directory.limits.get(p)) for p in projects]


def load_spend(
    location: ObjectStoragePath,
    report_day: dt.date,
    days: int,
    directory: Directory | None = None,
    *,
    with_models: bool = True,
    top: int = 10,
    organization_id: str | None = None,
    currency: str | None = None,
) -> Spend:
    """Read ``days`` days ending at ``report_day`` (and the month to date) of one organization
    (``costs/organization=<id>``; the ``costs`` folder itself when None) from ``location``.

    ``currency``: the one to sum (others are set aside in ``other_currencies``); default the one
    most of the amounts are in."""
    import pyarrow.compute as pc

    first = min(report_day - dt.timedelta(days=days - 1), report_day.replace(day=1))
    all_days = day_range(first, report_day)
    costs = read_landed(
        location, "costs", all_days, ["project_id", "line_item", "amount_value", "amount_currency", "api_key_id"], organization_id
    )
    table = costs.table.set_column(
        costs.table.schema.get_field_index("project_id"),
        "project_id",
        pc.fill_null(costs.table.column("project_id"), NO_PROJECT),
    )
    currency, others = _main_currency(table, currency)
    if others:
        table = table.filter(pc.equal(table.column("amount_currency"), currency))
    daily: dict[dt.date, dict[str, Decimal]] = {d: {} for d in costs.reported_days}
    by_day = table.group_by(["date", "project_id"]).aggregate([("amount_value", "sum")])
    for row in by_day.to_pylist():
        daily[dt.date.fromisoformat(row["date"])][row["project_id"]] = row["amount_value_sum"]

    in_window = table.filter(pc.greater_equal(table.column("date"), (report_day - dt.timedelta(days=days - 1)).isoformat()))
    items = in_window.group_by("line_item").aggregate([("amount_value", "sum")]).to_pylist()
    line_items = sorted(((r["line_item"] or "(none)", r["amount_value_sum"]) for r in items), key=lambda r: (-r[1], r[0]))
    models = _model_spend(location, in_window, report_day, days, top, organization_id) if with_models else []
    keys = in_window.group_by("api_key_id").aggregate([("amount_value", "sum")]).to_pylist()
    by_key = sorted(((r["api_key_id"], r["amount_value_sum"]) for r in keys), key=lambda r: (-r[1], r[0] or ""))
    return Spend(
        report_day=report_day,
        days=all_days,
        coverage=costs.coverage,
        currency=currency,
        daily=daily,
        line_items=line_items,
        models=models,
        directory=directory or Directory(),
        other_currencies=others,
        by_key=by_key,
        organization_id=organization_id,
    )


def _main_currency(table: Any, wanted: str | None = None) -> tuple[str, dict[str, Decimal]]:
    """The currency most of the amounts are in (or ``wanted``); OpenAI bills in ``usd``."""
    grouped = table.group_by("amount_currency").aggregate([("amount_value", "sum")]).to_pylist()
    sums = {r["amount_currency"]: r["amount_value_sum"] for r in grouped}
    sums = {(k or "usd"): v for k, v in sums.items()}
    if wanted is not None:
        return wanted, {c: v for c, v in sums.items() if c != wanted}
    if not sums:
        return "usd", {}
    main = max(sums, key=lambda c: (sums[c], c))
    return main, {c: v for c, v in sums.items() if c != main}


def _model_spend(
    location: ObjectStoragePath, costs: Any, report_day: dt.date, days: int, top: int, organization_id: str | None = None
) -> list[ModelSpend]:
    """Cost per model (from ``"<model>, input|output"`` line items) beside its tokens (completions)."""
    import pyarrow.compute as pc

    items = costs.column("line_item")
    is_model = pc.fill_null(pc.match_substring(items, ", "), False)
    model_costs = costs.filter(is_model)
    models = pc.list_element(pc.split_pattern(model_costs.column("line_item"), ", ", max_splits=1), 0)
    per_model = model_costs.append_column("model", models).group_by("model").aggregate([("amount_value", "sum")]).to_pylist()
    ranked = sorted((ModelSpend(r["model"], r["amount_value_sum"]) for r in per_model), key=lambda m: (-m.cost, m.model))[:top]
    if not ranked:
        return []
    usage = read_landed(
        location, "completions", day_range(report_day - dt.timedelta(days=days - 1), report_day),
        ["model", "input_tokens", "output_tokens", "num_model_requests"], organization_id,
    ).table
    tokens = {
        r["model"]: r
        for r in usage.group_by("model")
        .aggregate([("input_tokens", "sum"), ("output_tokens", "sum"), ("num_model_requests", "sum")])
        .to_pylist()
    }
    for m in ranked:
        t = tokens.get(m.model)
        if t is not None:
            m.input_tokens, m.output_tokens, m.requests = t["input_tokens_sum"], t["output_tokens_sum"], t["num_model_requests_sum"]
    return ranked


def organization_label(organization_id: str, names: Mapping[str, str] | None = None) -> str:
    """``Display name (org-...)`` when a name is given for the id, else the id."""
    name = (names or {}).get(organization_id)
    return f"{name} ({organization_id})" if name and name != organization_id else organization_id


@dataclass
class OrganizationsSpend:
    """The spend of every organization of a lake, each its own :class:`Spend`, and their sums.

    All-organization figures are exact sums of the organizations' own. A day is ``missing`` for the
    lake only when no organization landed it, ``partial`` when some did not (or landed it in part):
    a total over a day one organization has not landed yet is shown, and marked, not hidden.
    """

    report_day: dt.date
    currency: str
    spends: dict[str, Spend]
    names: Mapping[str, str] = field(default_factory=dict)

    @property
    def organizations(self) -> list[str]:
        return list(self.spends)

    def label(self, organization_id: str) -> str:
        return organization_label(organization_id, self.names)

    def short(self, organization_id: str) -> str:
        return self.names.get(organization_id) or organization_id

    @property
    def days(self) -> list[dt.date]:
        first = next(iter(self.spends.values()), None)
        return first.days if first is not None else []

    def window(self, n: int) -> list[dt.date]:
        return self.days[-n:]

    @property
    def coverage(self) -> dict[dt.date, str]:
        out = {}
        for day in self.days:
            states = {s.coverage.get(day, MISSING) for s in self.spends.values()}
            out[day] = MISSING if states <= {MISSING} else COMPLETE if states == {COMPLETE} else PARTIAL
        return out

    def missing_days(self, days: list[dt.date]) -> list[dt.date]:
        coverage = self.coverage
        return [d for d in days if coverage.get(d, MISSING) == MISSING]

    def day_total(self, day: dt.date) -> Decimal | None:
        totals = [t for t in (s.day_total(day) for s in self.spends.values()) if t is not None]
        return sum(totals, ZERO) if totals else None

    def month_to_date(self) -> Decimal:
        return sum((s.month_to_date(None) for s in self.spends.values()), ZERO)

    def window_total(self, n: int) -> Decimal:
        return sum((s.window_total(n) for s in self.spends.values()), ZERO)

    def month_end_forecast(self) -> Decimal | None:
        """The sum of the organizations' own run-rate forecasts (each over the days it has landed)."""
        forecasts = [f for f in (s.month_end_forecast() for s in self.spends.values()) if f is not None]
        return sum(forecasts, ZERO) if forecasts else None

    def day_change(self) -> Decimal | None:
        """Every organization's report day against the day before, in percent (as ``Spend.day_change``)."""
        return percent_change(self.day_total(self.report_day - dt.timedelta(days=1)), self.day_total(self.report_day))

    @property
    def other_currencies(self) -> dict[str, Decimal]:
        out: dict[str, Decimal] = {}
        for s in self.spends.values():
            for c, v in s.other_currencies.items():
                out[c] = out.get(c, ZERO) + v
        return out

    def by_organization(self) -> Spend:
        """The lake as one :class:`Spend` whose "projects" are the organizations (named by ``names``):
        what the daily chart stacks when there are several."""
        daily: dict[dt.date, dict[str, Decimal]] = {}
        for org, spend in self.spends.items():
            for day, per_project in spend.daily.items():
                daily.setdefault(day, {})[org] = sum(per_project.values(), ZERO)
        return Spend(
            report_day=self.report_day, days=self.days, coverage=self.coverage, currency=self.currency, daily=daily,
            line_items=[], models=[], directory=Directory(names={o: self.short(o) for o in self.spends}),
        )


#: How the report names the one organization of a lake still in the single-organization layout.
SINGLE_ORGANIZATION = ""


def landed_organizations_of(location: ObjectStoragePath) -> list[str]:
    """The organizations a report covers: those with costs or a directory snapshot under ``location``.

    A lake written before the organization level (``costs/date=...`` directly, nothing under
    ``organization=``) is read as it is, as one organization (``SINGLE_ORGANIZATION``): an upgrade
    does not break its report. A costs folder holding both layouts is refused, as the writers
    refuse it: its old days belong to no organization until ``airflow openai-usage
    move-to-organization`` says whose they are, and summing them beside the new ones could count
    a day twice.
    """
    from airflow_provider_openai_usage.organizations import (
        check_no_single_organization_days,
        landed_organizations,
        single_organization_days,
    )

    found = set(landed_organizations(location / "costs"))
    if single_organization_days(location / "costs"):
        if found:
            check_no_single_organization_days(location / "costs", output_path=location.as_uri())
        return [SINGLE_ORGANIZATION]
    for entity in ("projects", "project_spend_limits"):
        found |= set(landed_organizations(location / "directory" / entity))
    return sorted(found)


def load_organizations(
    location: ObjectStoragePath,
    report_day: dt.date,
    days: int,
    *,
    names: Mapping[str, str] | None = None,
    with_models: bool = True,
    top: int = 10,
    organizations: list[str] | None = None,
) -> OrganizationsSpend:
    """Every organization's :class:`Spend` (costs, completions, its own directory) for the report day.

    All organizations are summed in one currency: the one most of the lake's amounts are in. Amounts
    of an organization in another currency are set aside (``other_currencies``), never converted.
    """
    from airflow_provider_openai_usage.report.names import load_directory

    orgs = organizations if organizations is not None else landed_organizations_of(location)
    if not orgs:  # nothing landed yet: one empty lake, every day shown as not landed (a gap, not a zero)
        empty = load_spend(location, report_day, days, Directory(), with_models=False)
        return OrganizationsSpend(report_day, "usd", {SINGLE_ORGANIZATION: empty})
    spends = {
        org: load_spend(location, report_day, days, load_directory(location, report_day, organization_id=org or None),
                        with_models=with_models, top=top, organization_id=org or None)
        for org in orgs
    }
    currencies: dict[str, Decimal] = {}
    for s in spends.values():
        currencies[s.currency] = currencies.get(s.currency, ZERO) + s.window_total(len(s.days))
    currency = max(currencies, key=lambda c: (currencies[c], c)) if currencies else "usd"
    for org, s in list(spends.items()):
        if s.currency != currency:  # rare: read again, summing the lake's currency
            spends[org] = load_spend(location, report_day, days, s.directory, with_models=with_models, top=top,
                                     organization_id=org or None, currency=currency)
    return OrganizationsSpend(report_day=report_day, currency=currency, spends=spends, names=dict(names or {}))
