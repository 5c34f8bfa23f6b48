"""OpenAI costs rows → FOCUS 1.2 ``CostAndUsage`` rows: one declarative table, pure functions.

FOCUS (the FinOps Foundation's cost and usage schema) is what FinOps tools read for every other
provider. ``COLUMNS`` below is the whole mapping: each FOCUS column with the costs field it comes
from and the rule that turns one into the other. The docs page (docs/focus.md) is generated from
this table, so the mapping a practitioner reads is the mapping the code runs.

Rows come in as the costs endpoint's flat rows (``bucket_rows``: ``start_time``, ``end_time``,
``project_id``, ``api_key_id``, ``line_item``, ``amount_value``, ``amount_currency``, ``quantity``,
``quantity_unit``). ``check_row`` refuses what cannot be mapped without guessing (no amount, an
unknown currency, no quantity) so a caller can check a whole day before writing any of it.
Amounts stay ``Decimal`` end to end: a day's FOCUS costs sum to the costs endpoint's total exactly.
"""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Context, Decimal, localcontext
from functools import lru_cache
from typing import TYPE_CHECKING, Any

from airflow_provider_openai_usage.endpoints import DECIMAL_PRECISION, ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.times import day_label

if TYPE_CHECKING:
    import pyarrow as pa

FOCUS_VERSION = "1.2"
DATASET = "CostAndUsage"
PROVIDER = "OpenAI"
SERVICE_NAME = "OpenAI API"
SERVICE_CATEGORY = "AI and Machine Learning"
SERVICE_SUBCATEGORY = "Generative AI"
SUB_ACCOUNT_TYPE = "Project"

_COSTS = ENDPOINTS["costs"]
#: Same scales as the raw costs partitions, so FOCUS and raw amounts compare without rounding.
COST_SCALE = next(c.scale for c in _COSTS.columns if c.name == "amount_value")
QUANTITY_SCALE = next(c.scale for c in _COSTS.columns if c.name == "quantity")
#: Unit prices are tiny (per-token prices are ~1e-7): 28 digits after the point keep 20+ significant
#: digits, and 10 remain before it.
UNIT_PRICE_SCALE = 28

#: OpenAI's ``quantity_unit`` values (listed in its spec) → FOCUS UnitFormat. Other values
#: (the spec's enum is open) are converted by ``focus_unit``: ``some_unit`` → ``Some Unit``.
UNITS: Mapping[str, str] = {
    "tokens": "Tokens",
    "1000_tokens": "1000 Tokens",
    "duration_seconds": "Seconds",
    "duration_minutes": "Minutes",
    "duration_hours": "Hours",
    "gibibyte_hours": "GiB-Hours",
    "images": "Images",
    "characters": "Characters",
}
_UNIT_WORD = re.compile(r"[A-Za-z0-9]+")


@dataclass(frozen=True)
class BillingAccount:
    """The OpenAI organization the costs belong to: FOCUS's billing account.

    The Costs API does not say which organization answered, so both come from the user (operator
    parameters or the connection's ``organization_id``/``organization_name`` extras); nothing is guessed.
    """

    id: str
    name: str

    @classmethod
    def of(cls, account_id: Any, account_name: Any) -> BillingAccount:
        return cls(account_value("billing_account_id", account_id), account_value("billing_account_name", account_name))


_ACCOUNT_HELP = {
    "billing_account_id": ("organization_id", "org-AbC123 (platform settings → Organization → Organization ID)"),
    "billing_account_name": ("organization_name", "'Acme Research' (platform settings → Organization → Organization name)"),
}


def account_value(param: str, value: Any) -> str:
    """A billing account field, refused when missing or blank: the Costs API does not report it."""
    if not isinstance(value, str) or not value.strip():
        extra, example = _ACCOUNT_HELP[param]
        raise OpenAIUsageValidationError(
            f"{param}={value!r}: FOCUS needs the OpenAI organization as the billing account and the Costs API does not "
            f"report it, so it is not guessed. Pass {param}= to the operator or set the connection extra {extra}, e.g. {example}"
        )
    return value.strip()


@dataclass(frozen=True)
class FocusContext:
    """What a row alone does not say: the billing account and, when known, project names."""

    account: BillingAccount
    #: project id → display name, from the organization directory; may be empty.
    project_names: Mapping[str, str] = field(default_factory=dict)


# -- value rules (pure functions of one costs row) ---------------------------------------------------
def focus_unit(quantity_unit: str) -> str:
    """OpenAI's unit → FOCUS UnitFormat (``tokens`` → ``Tokens``, ``gibibyte_hours`` → ``GiB-Hours``)."""
    known = UNITS.get(quantity_unit)
    if known is not None:
        return known
    words = _UNIT_WORD.findall(quantity_unit)
    if not words:
        raise OpenAIUsageResponseError(f"costs quantity_unit={quantity_unit!r} has no letters or digits to name a unit")
    return " ".join(w[:1].upper() + w[1:] for w in words)


def _utc(seconds: int) -> dt.datetime:
    return dt.datetime.fromtimestamp(seconds, dt.timezone.utc)


def billing_period(seconds: int) -> tuple[dt.datetime, dt.datetime]:
    """The calendar month (UTC) a charge starting at ``seconds`` is invoiced in: [first day, next first day)."""
    start = _utc(seconds).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    end = start.replace(year=start.year + 1, month=1) if start.month == 12 else start.replace(month=start.month + 1)
    return start, end


def unit_price(amount: Decimal, quantity: Decimal) -> Decimal:
    """amount / quantity, rounded to UNIT_PRICE_SCALE digits (FOCUS: ListUnitPrice × PricingQuantity = ListCost)."""
    if quantity == 0:
        return Decimal(0)
    with localcontext(Context(prec=2 * DECIMAL_PRECISION)):
        return (amount / quantity).quantize(Decimal(1).scaleb(-UNIT_PRICE_SCALE))


def project_name(row: Mapping[str, Any], ctx: FocusContext) -> str | None:
    project = row.get("project_id")
    if project is None:
        return None
    name = ctx.project_names.get(project)
    return name if isinstance(name, str) and name.strip() else project


def name_source(row: Mapping[str, Any], ctx: FocusContext) -> str | None:
    project = row.get("project_id")
    if project is None:
        return None
    name = ctx.project_names.get(project)
    return "directory" if isinstance(name, str) and name.strip() else "project_id"


def _amount(row: Mapping[str, Any], ctx: FocusContext) -> Decimal:
    return row["amount_value"]


def _quantity(row: Mapping[str, Any], ctx: FocusContext) -> Decimal:
    return row["quantity"]


def _unit(row: Mapping[str, Any], ctx: FocusContext) -> str:
    return focus_unit(row["quantity_unit"])


def _currency(row: Mapping[str, Any], ctx: FocusContext) -> str:
    return row["amount_currency"].upper()


def _unit_price(row: Mapping[str, Any], ctx: FocusContext) -> Decimal:
    return unit_price(row["amount_value"], row["quantity"])


def _const(value: Any) -> Callable[[Mapping[str, Any], FocusContext], Any]:
    return lambda row, ctx: value


def _if_project(value: Any) -> Callable[[Mapping[str, Any], FocusContext], Any]:
    return lambda row, ctx: None if row.get("project_id") is None else value


@dataclass(frozen=True)
class FocusColumn:
    """One FOCUS column: its type, where its value comes from, the rule, and the rule as code."""

    name: str
    #: ``cost`` / ``price`` / ``quantity`` (decimals), ``time`` (UTC timestamp) or ``string``.
    type: str
    #: The costs field (or other input) the value is read from, for the docs.
    source: str
    #: The rule in words, for the docs; says why where the choice is ours.
    rule: str
    value: Callable[[Mapping[str, Any], FocusContext], Any]
    nullable: bool = False


#: The mapping, one entry per column.
_COLUMNS: tuple[FocusColumn, ...] = (
    FocusColumn("BilledCost", "cost", "`amount.value`", "The exact decimal amount, unchanged: what OpenAI invoices for the row.", _amount),
    FocusColumn(
        "BillingAccountId", "string", "`billing_account_id` (operator) or connection extra `organization_id`",
        "The organization ID (`org-...`). Required: the Costs API does not report which organization answered, so it is never guessed.",
        lambda row, ctx: ctx.account.id,
    ),
    FocusColumn(
        "BillingAccountName", "string", "`billing_account_name` (operator) or connection extra `organization_name`",
        "The organization's display name. Required, like the ID.", lambda row, ctx: ctx.account.name,
    ),
    FocusColumn(
        "BillingCurrency", "string", "`amount.currency`",
        "Upper-cased (`usd` → `USD`); must be a national currency in ISO 4217 use (CLDR via Babel), else the day is refused.",
        _currency,
    ),
    FocusColumn(
        "BillingPeriodEnd", "time", "bucket `start_time`", "First instant of the next calendar month (UTC), exclusive.",
        lambda row, ctx: billing_period(row["start_time"])[1],
    ),
    FocusColumn(
        "BillingPeriodStart", "time", "bucket `start_time`",
        "First instant of the calendar month (UTC) of the charge: OpenAI invoices API usage per calendar month.",
        lambda row, ctx: billing_period(row["start_time"])[0],
    ),
    FocusColumn(
        "ChargeCategory", "string", "constant",
        "`Usage`: every costs row is metered API usage (the Costs API reports no purchases, taxes or credits).",
        _const("Usage"),
    ),
    FocusColumn(
        "ChargeClass", "string", "constant",
        "null: rows are never corrections of an invoiced period; OpenAI revises recent days in place and a re-run replaces the day.",
        _const(None), nullable=True,
    ),
    FocusColumn(
        "ChargeDescription", "string", "`line_item`, `quantity_unit`",
        "`<line item> (<FOCUS unit>)`, e.g. `gpt-4o-2024-08-06, input (Tokens)`.",
        lambda row, ctx: f"{row['line_item']} ({focus_unit(row['quantity_unit'])})",
    ),
    FocusColumn("ChargeFrequency", "string", "constant", "`Usage-Based`: charged per unit consumed.", _const("Usage-Based")),
    FocusColumn(
        "ChargePeriodEnd", "time", "bucket `end_time`", "The bucket's exclusive end (UTC midnight after a full day).",
        lambda row, ctx: _utc(row["end_time"]),
    ),
    FocusColumn(
        "ChargePeriodStart", "time", "bucket `start_time`", "The bucket's inclusive start (a UTC day).",
        lambda row, ctx: _utc(row["start_time"]),
    ),
    FocusColumn(
        "CommitmentDiscountStatus", "string", "none",
        "null: the Costs API reports no commitment discounts (the validator reads this column in ConsumedQuantity's rules).",
        _const(None), nullable=True,
    ),
    FocusColumn(
        "ConsumedQuantity", "quantity", "`quantity`", "The exact quantity OpenAI reports for the line item.", _quantity,
    ),
    FocusColumn("ConsumedUnit", "string", "`quantity_unit`", "OpenAI's unit in FOCUS UnitFormat (table below).", _unit),
    FocusColumn(
        "ContractedCost", "cost", "`amount.value`",
        "= BilledCost: the Costs API reports the amount at the rates applied and no separate contracted amount.", _amount,
    ),
    FocusColumn(
        "ContractedUnitPrice", "price", "`amount.value` / `quantity`", "= ListUnitPrice, since ContractedCost = ListCost.",
        _unit_price,
    ),
    FocusColumn(
        "EffectiveCost", "cost", "`amount.value`",
        "= BilledCost: usage is billed as consumed; the Costs API reports no prepaid commitments to amortize.", _amount,
    ),
    FocusColumn(
        "InvoiceId", "string", "none",
        "null: the Costs API does not report invoice IDs. FOCUS reads null as \"not on an invoice\", which holds for the open "
        "month; for closed months the ID exists at OpenAI but is not in this data, and it is not invented.",
        _const(None), nullable=True,
    ),
    FocusColumn("InvoiceIssuerName", "string", "constant", "`OpenAI`: the API is invoiced by OpenAI directly.", _const(PROVIDER)),
    FocusColumn(
        "ListCost", "cost", "`amount.value`",
        "= BilledCost: pay-as-you-go API usage is charged at the public list price. "
        "Organizations with negotiated discounts see their discounted amount here (the Costs API reports no list amount).",
        _amount,
    ),
    FocusColumn(
        "ListUnitPrice", "price", "`amount.value` / `quantity`",
        f"ListCost / PricingQuantity to {UNIT_PRICE_SCALE} decimals (0 when both are 0), so ListUnitPrice × PricingQuantity = ListCost.",
        _unit_price,
    ),
    FocusColumn(
        "PricingQuantity", "quantity", "`quantity`", "The quantity in the unit OpenAI prices it in (= ConsumedQuantity).", _quantity,
    ),
    FocusColumn("PricingUnit", "string", "`quantity_unit`", "= ConsumedUnit.", _unit),
    FocusColumn(
        "PricingCurrency", "string", "`amount.currency`", "= BillingCurrency: OpenAI prices and bills in the same currency.",
        _currency,
    ),
    FocusColumn(
        "PricingCurrencyContractedUnitPrice", "price", "`amount.value` / `quantity`",
        "= ContractedUnitPrice (pricing currency = billing currency).",
        _unit_price,
    ),
    FocusColumn(
        "PricingCurrencyEffectiveCost", "cost", "`amount.value`", "= EffectiveCost (pricing currency = billing currency).", _amount,
    ),
    FocusColumn(
        "PricingCurrencyListUnitPrice", "price", "`amount.value` / `quantity`", "= ListUnitPrice (pricing currency = billing currency).",
        _unit_price,
    ),
    FocusColumn("ProviderName", "string", "constant", "`OpenAI`.", _const(PROVIDER)),
    FocusColumn("PublisherName", "string", "constant", "`OpenAI`: OpenAI publishes the models and tools it bills.", _const(PROVIDER)),
    FocusColumn(
        "ServiceCategory", "string", "constant", f"`{SERVICE_CATEGORY}`.", _const(SERVICE_CATEGORY),
    ),
    FocusColumn(
        "ServiceName", "string", "constant",
        f"`{SERVICE_NAME}`: the Costs API covers the API platform as one service; the line item names the model or tool.",
        _const(SERVICE_NAME),
    ),
    FocusColumn(
        "ServiceSubcategory", "string", "constant", f"`{SERVICE_SUBCATEGORY}` (a FOCUS value under {SERVICE_CATEGORY}).",
        _const(SERVICE_SUBCATEGORY),
    ),
    FocusColumn(
        "SkuId", "string", "`line_item`",
        "The line item: OpenAI prices each line item (model and token kind, or tool) separately and publishes no other SKU code.",
        lambda row, ctx: row["line_item"],
    ),
    FocusColumn("SkuMeter", "string", "`line_item`", "The line item: it names what is metered.", lambda row, ctx: row["line_item"]),
    FocusColumn(
        "SkuPriceDetails", "string", "none", "null (FOCUS allows it): the Costs API carries no price-list properties.",
        _const(None), nullable=True,
    ),
    FocusColumn(
        "SkuPriceId", "string", "`line_item`", "= SkuId: one public price per line item.", lambda row, ctx: row["line_item"],
    ),
    FocusColumn(
        "SubAccountId", "string", "`project_id`", "The project ID; null for costs OpenAI attributes to no project.",
        lambda row, ctx: row.get("project_id"), nullable=True,
    ),
    FocusColumn(
        "SubAccountName", "string", "project name from the organization directory, else `project_id`",
        "The project's name from the directory snapshot; when there is none (no snapshot, a project missing from it, or an "
        "unnamed project) the project ID, because FOCUS requires a name whenever SubAccountId is set. x_SubAccountNameSource says which.",
        project_name, nullable=True,
    ),
    FocusColumn(
        "SubAccountType", "string", "constant", f"`{SUB_ACCOUNT_TYPE}` when SubAccountId is set, else null.",
        _if_project(SUB_ACCOUNT_TYPE), nullable=True,
    ),
    FocusColumn(
        "x_ApiKeyId", "string", "`api_key_id`", "The API key ID when costs are grouped by `api_key_id`, else null.",
        lambda row, ctx: row.get("api_key_id"), nullable=True,
    ),
    FocusColumn(
        "x_LineItem", "string", "`line_item`", "The raw line item, unchanged.", lambda row, ctx: row["line_item"],
    ),
    FocusColumn(
        "x_QuantityUnit", "string", "`quantity_unit`", "The raw unit, unchanged.", lambda row, ctx: row["quantity_unit"],
    ),
    FocusColumn(
        "x_SubAccountNameSource", "string", "directory",
        "`directory` or `project_id` (where SubAccountName came from); null without a project.",
        name_source,
        nullable=True,
    ),
)
#: FOCUS columns alphabetically, then vendor (``x_``) columns: FOCUS wants custom columns last.
COLUMNS: tuple[FocusColumn, ...] = tuple(sorted(_COLUMNS, key=lambda c: (c.name.startswith("x_"), c.name)))
COLUMN_NAMES: tuple[str, ...] = tuple(c.name for c in COLUMNS)


def decimal_text(value: Decimal) -> str:
    """An exact decimal as text that always has a point (``12345.0``, ``0.5``), for CSV."""
    text = format(value.normalize(), "f")
    return text if "." in text else text + ".0"


def csv_table(table: pa.Table) -> pa.Table:
    """Decimal columns as text with a decimal point: CSV has no types, and a reader that infers them
    (the FOCUS validator among them) would read a whole-number quantity column as integers, which
    FOCUS's Decimal columns must not be."""
    import pyarrow as pa

    for i, f in enumerate(table.schema):
        if pa.types.is_decimal(f.type):
            values = [None if v is None else decimal_text(v) for v in table.column(i).to_pylist()]
            table = table.set_column(i, pa.field(f.name, pa.string(), nullable=f.nullable), pa.array(values, pa.string()))
    return table


# -- applicability criteria: claims about OpenAI -----------------------------------------------------
@dataclass(frozen=True)
class Criterion:
    """A FOCUS applicability criterion (validator id) and whether OpenAI meets it, with the reason."""

    id: str
    declared: bool
    why: str


APPLICABILITY: tuple[Criterion, ...] = (
    Criterion("SUB_ACCOUNT_SUPPORTED", True,
              "An organization is divided into projects (`proj_...`) and the Costs API groups spend by `project_id`: "
              "SubAccountId/Name/Type."),
    Criterion("USAGE_MEASUREMENT_SUPPORTED", True,
              "OpenAI meters usage (tokens, images, seconds, GiB-hours) and the Costs API reports `quantity` and "
              "`quantity_unit` per line item."),
    Criterion("ACCOUNT_NAMING_SUPPORTED", True,
              "An organization has a display name (platform settings → Organization), so BillingAccountName is required and never null."),
    Criterion("PUBLIC_PRICE_LIST_SUPPORTED", True,
              "OpenAI publishes per-model, per-unit API prices (openai.com/api/pricing); each line item has a public unit price."),
    Criterion("UNIT_PRICING_SUPPORTED", True,
              "Every API charge is a unit price times a quantity (e.g. per 1M input tokens), so ListUnitPrice and the Sku columns apply."),
    Criterion("AVAILABILITY_ZONE_SUPPORTED", False, "Customers do not place anything in availability zones."),
    Criterion("REGION_SUPPORTED", False,
              "Requests go to one global endpoint; a project's data residency (Admin API `residency`) is not a deployment region and "
              "costs rows do not carry it."),
    Criterion("CAPACITY_RESERVATION_SUPPORTED", False,
              "Reserved capacity (Scale Tier) is sold by contract and the Costs API reports no reservation IDs or status to fill "
              "CapacityReservation columns with."),
    Criterion("COMMITMENT_DISCOUNT_SUPPORTED", False,
              "The Costs API reports no commitment purchases or their application to usage; EffectiveCost = BilledCost."),
    Criterion("NEGOTIATED_PRICING_SUPPORTED", False,
              "Enterprise agreements exist, but the Costs API carries only the amount charged, no contracted unit price to verify; "
              "ContractedCost = BilledCost."),
    Criterion("MULTIPLE_PRICING_CATEGORIES_SUPPORTED", False,
              "OpenAI has Standard, Batch, Flex and Priority prices, but a costs row does not state which one applied, so a "
              "PricingCategory would be a guess."),
    Criterion("MULTIPLE_SUB_ACCOUNT_TYPES_SUPPORTED", False,
              "Projects are the only sub account type (SubAccountType is still filled: `Project`)."),
    Criterion("MULTIPLE_BILLING_ACCOUNT_TYPES_SUPPORTED", False, "The organization is the only billing account type."),
    Criterion("BILLING_BASED_ON_PROVISIONED_RESOURCES_SUPPORTED", False,
              "Charges follow consumption, not provisioned resources; costs rows name no resource."),
    Criterion("RESOURCE_TYPE_ASSIGNMENT_SUPPORTED", False, "Costs rows name no resources, so there is no resource type to assign."),
    Criterion("PRICING_BILLING_CURRENCY_DIFFERENCES_SUPPORTED", False,
              "A costs row has one currency: prices and bills are in it (PricingCurrency = BillingCurrency)."),
    Criterion("VIRTUAL_CURRENCY_SUPPORTED", False, "Prepaid credits are denominated in the billing currency, not a virtual currency."),
    Criterion("TAGGING_SUPPORTED", False, "OpenAI offers no user-defined cost tags on projects or keys."),
)
DECLARED_CRITERIA: tuple[str, ...] = tuple(c.id for c in APPLICABILITY if c.declared)


# -- checks ------------------------------------------------------------------------------------------
@lru_cache(maxsize=1)
def national_currencies() -> frozenset[str]:
    """ISO 4217 codes that are legal tender somewhere today (CLDR data shipped with Babel)."""
    from babel.core import get_global
    from babel.numbers import get_territory_currencies

    today = dt.date.today()
    codes: set[str] = set()
    for territory in get_global("territory_currencies"):
        codes.update(get_territory_currencies(territory, start_date=today, end_date=today, tender=True, non_tender=False))
    return frozenset(codes)


def describe_row(row: Mapping[str, Any]) -> str:
    day = day_label(row["start_time"]) if isinstance(row.get("start_time"), int) else row.get("start_time")
    return f"costs row of {day} (project_id={row.get('project_id')!r}, line_item={row.get('line_item')!r})"


def check_row(row: Mapping[str, Any]) -> None:
    """Refuse a row the mapping would have to guess for; the message names the row and the fix."""
    amount = row.get("amount_value")
    if not isinstance(amount, Decimal):
        raise OpenAIUsageResponseError(
            f"{describe_row(row)} has no amount (amount.value={amount!r}); FOCUS BilledCost cannot be null, so nothing is written"
        )
    currency = row.get("amount_currency")
    if not isinstance(currency, str) or currency.upper() not in national_currencies():
        raise OpenAIUsageResponseError(
            f"{describe_row(row)} has currency {currency!r}, not an ISO 4217 national currency code; FOCUS BillingCurrency "
            "must be one, so nothing is written"
        )
    if row.get("line_item") is None:
        raise OpenAIUsageResponseError(
            f"{describe_row(row)} has no line_item; FOCUS needs it for SkuId and the quantity. Pull costs with "
            "group_by including 'line_item' (the FOCUS operator's default)"
        )
    quantity, unit = row.get("quantity"), row.get("quantity_unit")
    if not isinstance(quantity, Decimal) or not isinstance(unit, str) or not unit:
        raise OpenAIUsageResponseError(
            f"{describe_row(row)} has amount {amount} but quantity={quantity!r} quantity_unit={unit!r}; FOCUS requires "
            "PricingQuantity and PricingUnit on usage rows, so nothing is written (the raw costs partitions keep the row)"
        )
    if quantity < 0 or (quantity == 0 and amount != 0):
        raise OpenAIUsageResponseError(
            f"{describe_row(row)} has amount {amount} for quantity {quantity}; no unit price fits that, so nothing is written"
        )
    focus_unit(unit)


def focus_row(row: Mapping[str, Any], ctx: FocusContext) -> dict[str, Any]:
    """One FOCUS row from one checked costs row."""
    return {c.name: c.value(row, ctx) for c in COLUMNS}


def focus_rows(rows: Iterable[Mapping[str, Any]], ctx: FocusContext) -> list[dict[str, Any]]:
    """Check every row first, then map: a bad row anywhere means no row at all."""
    rows = list(rows)
    for row in rows:
        check_row(row)
    return [focus_row(row, ctx) for row in rows]


# -- Arrow -------------------------------------------------------------------------------------------
def arrow_schema() -> pa.Schema:
    import pyarrow as pa

    types = {
        "cost": pa.decimal128(DECIMAL_PRECISION, COST_SCALE),
        "price": pa.decimal128(DECIMAL_PRECISION, UNIT_PRICE_SCALE),
        "quantity": pa.decimal128(DECIMAL_PRECISION, QUANTITY_SCALE),
        "time": pa.timestamp("ms", tz="UTC"),
        "string": pa.string(),
    }
    return pa.schema([pa.field(c.name, types[c.type], nullable=c.nullable) for c in COLUMNS])


def arrow_table(rows: list[dict[str, Any]]) -> pa.Table:
    import pyarrow as pa

    schema = arrow_schema()
    try:
        return pa.Table.from_pylist(rows, schema=schema)
    except (pa.ArrowInvalid, pa.ArrowTypeError) as exc:
        raise OpenAIUsageResponseError(f"a FOCUS value does not fit its column: {exc}") from None


__all__ = [
    "APPLICABILITY", "DECLARED_CRITERIA", "Criterion", "COLUMNS", "COLUMN_NAMES", "BillingAccount", "FocusColumn", "FocusContext",
    "arrow_schema", "arrow_table",
    "check_row", "focus_row", "focus_rows", "focus_unit", "national_currencies",
]


# -- docs (docs/generate.py writes these into docs/focus.md) -----------------------------------------
_TYPE_DOCS = {
    "cost": f"Decimal ({DECIMAL_PRECISION}, {COST_SCALE})",
    "price": f"Decimal ({DECIMAL_PRECISION}, {UNIT_PRICE_SCALE})",
    "quantity": f"Decimal ({DECIMAL_PRECISION}, {QUANTITY_SCALE})",
    "time": "Timestamp (UTC)",
    "string": "String",
}


def columns_markdown() -> str:
    rows = ["| FOCUS column | type | source (costs field) | rule |", "|---|---|---|---|"]
    for c in COLUMNS:
        rows.append(f"| `{c.name}` | {_TYPE_DOCS[c.type]}{'' if c.nullable else ', not null'} | {c.source} | {c.rule} |")
    return "\n".join(rows)


def criteria_markdown() -> str:
    rows = ["| criterion | declared | why |", "|---|---|---|"]
    for c in sorted(APPLICABILITY, key=lambda c: (not c.declared, c.id)):
        rows.append(f"| `{c.id}` | {'**yes**' if c.declared else 'no'} | {c.why} |")
    return "\n".join(rows)


def units_markdown() -> str:
    rows = ["| OpenAI `quantity_unit` | FOCUS ConsumedUnit / PricingUnit |", "|---|---|"]
    rows += [f"| `{k}` | `{v}` |" for k, v in UNITS.items()]
    rows.append("| any other value | words title-cased, `_` → space (`some_unit` → `Some Unit`) |")
    return "\n".join(rows)
