"""landed_costs: regrouping landed costs rows exactly, and the coverage rule."""

from __future__ import annotations

from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_openai_usage.endpoints import get_endpoint
from airflow_provider_openai_usage.landed_costs import amounts_total, plain_decimal, regroup, whole_day_covered

COSTS = get_endpoint("costs")
DAY = 86400


def row(project: str, key: str | None, item: str, amount: str, quantity: str | None = "1", **more) -> dict:
    base = {c.name: None for c in COSTS.columns}
    return base | {
        "start_time": 0, "end_time": DAY, "project_id": project, "api_key_id": key, "line_item": item,
        "amount_value": Decimal(amount), "amount_currency": "usd", "quantity": None if quantity is None else Decimal(quantity),
        "quantity_unit": "tokens",
    } | more


def test_summing_over_the_key_is_exact_beyond_the_default_decimal_context():
    """decimal(38, 18) amounts: 20 integer digits and 18 places, more than Python's default 28 digits."""
    big = "12345678901234567890.123456789012345678"
    merged = regroup(COSTS, [row("p", "k1", "gpt", big), row("p", "k2", "gpt", "0.000000000000000001")], ["api_key_id"])
    assert merged == [row("p", None, "gpt", "12345678901234567890.123456789012345679", "2")]


def test_rows_differing_in_a_kept_column_stay_apart_and_order_is_first_seen():
    rows = [row("p2", "k", "a", "1"), row("p1", "k", "a", "2"), row("p2", "j", "a", "3"), row("p1", "k", "b", "4")]
    merged = regroup(COSTS, rows, ["api_key_id"])
    assert [(r["project_id"], r["line_item"], r["amount_value"]) for r in merged] == [
        ("p2", "a", Decimal(4)), ("p1", "a", Decimal(2)), ("p1", "b", Decimal(4)),
    ]


def test_a_null_metric_stays_null_so_the_focus_check_refuses_it_as_it_refuses_the_apis_row():
    merged = regroup(COSTS, [row("p", "k1", "a", "1", None), row("p", "k2", "a", "2")], ["api_key_id"])
    assert merged[0]["quantity"] is None and merged[0]["amount_value"] == Decimal(3)


def test_user_email_goes_with_user_id():
    rows = [row("p", None, "a", "1", user_id="u1", user_email="a@x"), row("p", None, "a", "2", user_id="u2", user_email="b@x")]
    merged = regroup(COSTS, rows, ["user_id"])
    assert len(merged) == 1 and merged[0]["user_email"] is None and merged[0]["amount_value"] == Decimal(3)


@given(st.lists(st.tuples(st.sampled_from(["p1", "p2"]), st.sampled_from(["k1", "k2", None]), st.decimals(
    min_value=Decimal(0), max_value=Decimal(10) ** 6, places=18, allow_nan=False, allow_infinity=False)), max_size=30))
def test_regrouping_keeps_every_amount(values):
    rows = [row(p, k, "a", str(v)) for p, k, v in values]
    merged = regroup(COSTS, rows, ["api_key_id"])
    assert amounts_total(merged) == amounts_total(rows)
    assert len(merged) == len({p for p, _, _ in values})


@pytest.mark.parametrize(
    ("value", "plain"),
    [("1.500000000000000000", "1.5"), ("2.000", "2"), ("100.000", "100"), ("0E-18", "0"), ("0.000000000000000001", "0.000000000000000001")],
)
def test_plain_decimal_strips_trailing_zeros_without_an_exponent(value, plain):
    reduced = plain_decimal(Decimal(value))
    assert format(reduced, "f") == plain and reduced == Decimal(value) and reduced.as_tuple().exponent <= 0


@pytest.mark.parametrize(
    ("covered", "whole"),
    [([[0, DAY]], True), ([[0, 3600], [3600, DAY]], True), ([[3600, DAY], [0, 3600]], True), ([[0, 3600], [7200, DAY]], False),
     ([[0, DAY - 60]], False), ([], False), ([[-DAY, 2 * DAY]], True)],
)
def test_whole_day_covered(covered, whole):
    assert whole_day_covered(covered, 0, DAY) is whole
