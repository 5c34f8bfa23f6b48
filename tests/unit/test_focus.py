"""The FOCUS mapping: exact amounts, the rules of the table, and refusals of what it cannot map."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from decimal import Decimal

import pytest

from airflow_provider_openai_usage import focus
from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError, OpenAIUsageValidationError
from airflow_provider_openai_usage.storage import arrow_schema

NOW = 1762732800  # 2025-11-10T00:00:00Z, as tests/conftest.py
DAY = 86400
ACCOUNT = focus.BillingAccount.of("org-test", "Test Org")


def costs_row(**overrides):
    row = {
        "start_time": NOW - DAY, "end_time": NOW, "project_id": "proj_alpha", "api_key_id": None,
        "line_item": "gpt-4o-2024-08-06, input", "amount_value": Decimal("0.1234567891"), "amount_currency": "usd",
        "quantity": Decimal("12345"), "quantity_unit": "tokens",
    }
    return row | overrides


@pytest.fixture
def sixty_days(conn_id):
    """60 days of costs from the fake API over real HTTP, grouped as the FOCUS operator groups them."""
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
    from airflow_provider_openai_usage.query import UsageQuery

    hook = OpenAIUsageHook(conn_id)
    try:
        query = UsageQuery.build("costs", NOW - 60 * DAY, NOW, group_by=["project_id", "line_item"])
        return list(hook.iter_query_rows(query))
    finally:
        hook.close()


def test_daily_focus_totals_equal_costs_totals_to_the_last_decimal(sixty_days, tmp_path):
    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    assert str(focus.arrow_schema().field("BilledCost").type) == str(arrow_schema(ENDPOINTS["costs"]).field("amount_value").type)
    rows = focus.focus_rows(sixty_days, focus.FocusContext(ACCOUNT))
    assert len(rows) == len(sixty_days) > 100
    assert len({r["SubAccountId"] for r in rows}) >= 3 and len({r["SkuId"] for r in rows}) >= 5
    raw, mapped = defaultdict(Decimal), defaultdict(lambda: defaultdict(Decimal))
    for source, row in zip(sixty_days, rows, strict=True):
        raw[source["start_time"]] += source["amount_value"]
        for column in ("BilledCost", "EffectiveCost", "ListCost", "ContractedCost", "PricingCurrencyEffectiveCost"):
            mapped[column][int(row["ChargePeriodStart"].timestamp())] += row[column]
    for column, per_day in mapped.items():
        assert per_day == raw, column
    # and through Parquet: the decimals come back identical, not rounded
    pq.write_table(focus.arrow_table(rows), tmp_path / "f.parquet")
    table = pq.read_table(tmp_path / "f.parquet")
    assert pc.sum(table.column("BilledCost")).as_py() == sum(raw.values())
    assert table.column("BilledCost").to_pylist() == [r["amount_value"] for r in sixty_days]


def test_unit_price_times_quantity_is_the_list_cost(sixty_days):
    for row in focus.focus_rows(sixty_days, focus.FocusContext(ACCOUNT)):
        error = abs(row["ListUnitPrice"] * row["PricingQuantity"] - row["ListCost"])
        assert error <= row["PricingQuantity"] * Decimal("1e-28"), row
        assert row["ContractedUnitPrice"] == row["PricingCurrencyListUnitPrice"] == row["ListUnitPrice"]


def test_one_row_column_by_column():
    row = focus.focus_row(costs_row(api_key_id="key_ci"), focus.FocusContext(ACCOUNT, {"proj_alpha": "Alpha"}))
    utc = dt.timezone.utc
    assert row == row | {
        "BilledCost": Decimal("0.1234567891"), "BillingAccountId": "org-test", "BillingAccountName": "Test Org",
        "BillingCurrency": "USD", "PricingCurrency": "USD",
        "BillingPeriodStart": dt.datetime(2025, 11, 1, tzinfo=utc), "BillingPeriodEnd": dt.datetime(2025, 12, 1, tzinfo=utc),
        "ChargePeriodStart": dt.datetime(2025, 11, 9, tzinfo=utc), "ChargePeriodEnd": dt.datetime(2025, 11, 10, tzinfo=utc),
        "ChargeCategory": "Usage", "ChargeClass": None, "ChargeFrequency": "Usage-Based",
        "ChargeDescription": "gpt-4o-2024-08-06, input (Tokens)",
        "ConsumedQuantity": Decimal(12345), "ConsumedUnit": "Tokens", "PricingQuantity": Decimal(12345), "PricingUnit": "Tokens",
        "ProviderName": "OpenAI", "PublisherName": "OpenAI", "InvoiceIssuerName": "OpenAI", "InvoiceId": None,
        "ServiceName": "OpenAI API", "ServiceCategory": "AI and Machine Learning", "ServiceSubcategory": "Generative AI",
        "SkuId": "gpt-4o-2024-08-06, input", "SkuPriceId": "gpt-4o-2024-08-06, input", "SkuMeter": "gpt-4o-2024-08-06, input",
        "SkuPriceDetails": None, "CommitmentDiscountStatus": None,
        "SubAccountId": "proj_alpha", "SubAccountName": "Alpha", "SubAccountType": "Project", "x_SubAccountNameSource": "directory",
        "x_ApiKeyId": "key_ci", "x_LineItem": "gpt-4o-2024-08-06, input", "x_QuantityUnit": "tokens",
    }
    assert row["ListUnitPrice"] == Decimal("0.0000100005499473471040907250")  # amount / quantity to 28 places
    assert set(row) == set(focus.COLUMN_NAMES)


@pytest.mark.parametrize(
    ("names", "project", "expected"),
    [
        ({}, "proj_alpha", ("proj_alpha", "project_id", "Project")),  # no directory at all
        ({"proj_beta": "Beta"}, "proj_alpha", ("proj_alpha", "project_id", "Project")),  # project missing from it
        ({"proj_alpha": ""}, "proj_alpha", ("proj_alpha", "project_id", "Project")),  # unnamed project
        ({"proj_alpha": "Alpha"}, "proj_alpha", ("Alpha", "directory", "Project")),
        ({"proj_alpha": "Alpha"}, None, (None, None, None)),  # costs attributed to no project
    ],
)
def test_sub_account_name_falls_back_to_the_project_id(names, project, expected):
    row = focus.focus_row(costs_row(project_id=project), focus.FocusContext(ACCOUNT, names))
    assert (row["SubAccountName"], row["x_SubAccountNameSource"], row["SubAccountType"]) == expected
    assert row["SubAccountId"] == project


@pytest.mark.parametrize(
    ("start", "period"),
    [("2025-12-31T00:00:00", ("2025-12-01", "2026-01-01")), ("2024-02-29T00:00:00", ("2024-02-01", "2024-03-01")),
     ("2025-01-01T00:00:00", ("2025-01-01", "2025-02-01"))],
)
def test_billing_period_is_the_calendar_month(start, period):
    seconds = int(dt.datetime.fromisoformat(start).replace(tzinfo=dt.timezone.utc).timestamp())
    assert tuple(d.date().isoformat() for d in focus.billing_period(seconds)) == period


def test_units_follow_focus_unit_format():
    pattern = re.compile(r"^([0-9]+ )?[A-Za-z][A-Za-z0-9]*( [A-Za-z][A-Za-z0-9]*)*(-(Hours|Days|Months|Seconds|Minutes|Years))?$")
    for unit in [*focus.UNITS, "requests", "web_search_calls", "1000_images"]:
        assert pattern.match(focus.focus_unit(unit)), unit
    assert focus.focus_unit("web_search_calls") == "Web Search Calls"
    with pytest.raises(OpenAIUsageResponseError, match="quantity_unit='__'"):
        focus.focus_unit("__")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"amount_value": None}, r"has no amount \(amount.value=None\); FOCUS BilledCost cannot be null"),
        ({"amount_currency": "xyz"}, r"currency 'xyz', not an ISO 4217 national currency"),
        ({"amount_currency": "XAU"}, r"currency 'XAU'"),  # gold is ISO 4217 but not a national currency
        ({"amount_currency": None}, r"currency None"),
        ({"line_item": None}, r"has no line_item; .*group_by including 'line_item'"),
        ({"quantity": None}, r"quantity=None .*FOCUS requires PricingQuantity"),
        ({"quantity_unit": None}, r"quantity_unit=None"),
        ({"quantity": Decimal(0)}, r"amount 0.1234567891 for quantity 0; no unit price fits"),
        ({"quantity": Decimal(-1)}, r"for quantity -1"),
    ],
)
def test_rows_that_cannot_be_mapped_without_guessing_are_refused(overrides, message):
    good = [costs_row(project_id=f"proj_{i}") for i in range(5)]
    bad = costs_row(**overrides)
    with pytest.raises(OpenAIUsageResponseError, match=message) as raised:
        focus.focus_rows([*good, bad], focus.FocusContext(ACCOUNT))
    assert "2025-11-09" in str(raised.value) and "line_item=" in str(raised.value)  # names the row


def test_zero_amount_for_zero_quantity_is_a_zero_unit_price():
    row = focus.focus_row(costs_row(amount_value=Decimal(0), quantity=Decimal(0)), focus.FocusContext(ACCOUNT))
    assert row["ListUnitPrice"] == 0 and row["BilledCost"] == 0


@pytest.mark.parametrize("currency", ["usd", "EUR", "jpy", "chf"])
def test_national_currencies_are_upper_cased(currency):
    assert focus.focus_row(costs_row(amount_currency=currency), focus.FocusContext(ACCOUNT))["BillingCurrency"] == currency.upper()


@pytest.mark.parametrize(
    ("account_id", "name", "param"),
    [(None, "Org", "billing_account_id"), ("  ", "Org", "billing_account_id"), ("org-1", None, "billing_account_name"),
     ("org-1", "", "billing_account_name"), (42, "Org", "billing_account_id")],
)
def test_billing_account_is_required_not_guessed(account_id, name, param):
    with pytest.raises(OpenAIUsageValidationError, match=rf"{param}=.*not guessed.*organization_"):
        focus.BillingAccount.of(account_id, name)


def test_columns_are_named_as_focus_wants():
    names = list(focus.COLUMN_NAMES)
    vendor = [n for n in names if n.startswith("x_")]
    assert names == sorted(names[: len(names) - len(vendor)]) + vendor  # FOCUS columns first, then x_ ones
    for name in names:
        assert re.fullmatch(r"(x_)?([A-Z][a-z0-9]*)+", name), name
    schema = focus.arrow_schema()
    assert schema.names == names
    assert not schema.field("BilledCost").nullable and schema.field("SubAccountId").nullable


def test_arrow_table_refuses_values_that_do_not_fit():
    row = focus.focus_row(costs_row(amount_value=Decimal("1e12"), quantity=Decimal(1)), focus.FocusContext(ACCOUNT))
    with pytest.raises(OpenAIUsageResponseError, match="does not fit"):
        focus.arrow_table([row])


def test_criteria_are_claims_with_reasons():
    ids = [c.id for c in focus.APPLICABILITY]
    assert len(ids) == len(set(ids)) == 18
    assert set(focus.DECLARED_CRITERIA) == {
        "SUB_ACCOUNT_SUPPORTED", "USAGE_MEASUREMENT_SUPPORTED", "ACCOUNT_NAMING_SUPPORTED", "PUBLIC_PRICE_LIST_SUPPORTED",
        "UNIT_PRICING_SUPPORTED",
    }
    assert all(len(c.why) > 40 for c in focus.APPLICABILITY)


@pytest.mark.parametrize(("value", "text"), [("12345", "12345.0"), ("0", "0.0"), ("0E-28", "0.0"), ("0.50", "0.5"), ("1E+3", "1000.0")])
def test_csv_decimals_always_have_a_point(value, text):
    assert focus.decimal_text(Decimal(value)) == text
    assert Decimal(text) == Decimal(value)  # exact


def test_csv_table_turns_only_decimals_into_text():
    table = focus.csv_table(focus.arrow_table([focus.focus_row(costs_row(), focus.FocusContext(ACCOUNT))]))
    assert table.column("PricingQuantity").to_pylist() == ["12345.0"]
    assert table.column("BilledCost").to_pylist() == ["0.1234567891"]
    assert table.schema.field("ChargePeriodStart").type == focus.arrow_schema().field("ChargePeriodStart").type
