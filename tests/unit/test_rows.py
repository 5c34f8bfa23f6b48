"""rows.py: results become typed columns; nothing unknown is dropped; values that cannot be usage are refused."""

from __future__ import annotations

import csv
import hashlib
import json
import logging
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest
from conftest import DAY, NOW, ORG_DIR
from hypothesis import given
from hypothesis import strategies as st

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.exceptions import OpenAIUsageResponseError
from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator
from airflow_provider_openai_usage.rows import (
    bucket_columns,
    bucket_rows,
    canonical_json,
    json_safe,
    unknown_fields_warning,
)
from airflow_provider_openai_usage.testing import Fault

COSTS, COMPLETIONS, SESSIONS = ENDPOINTS["costs"], ENDPOINTS["completions"], ENDPOINTS["code_interpreter_sessions"]


def cost(value, currency="usd", **fields) -> dict:
    return {"object": COSTS.result_object, "amount": {"value": value, "currency": currency}, **fields}


def rows(endpoint, *results) -> list[dict]:
    return list(bucket_rows(endpoint, {"start_time": 0, "end_time": 86400, "results": list(results)}))


# -- nothing dropped: the extra column ---------------------------------------------------------------
def test_known_fields_leave_extra_null():
    (row,) = rows(COSTS, cost(Decimal("1.5"), line_item="x", project_id="p"))
    assert row["extra"] is None and list(row)[-1] == "extra"


def test_unknown_top_level_and_nested_fields_land_in_extra_as_canonical_json():
    result = cost(Decimal("1.50"), project_id="p", zeta={"b": [1, Decimal("2.25")], "a": None}, alpha="x")
    result["amount"]["exchange_rate"] = Decimal("0.9100")
    (row,) = rows(COSTS, result)
    assert row["extra"] == '{"alpha":"x","amount":{"exchange_rate":0.9100},"zeta":{"a":null,"b":[1,2.25]}}'
    assert row["amount_value"] == Decimal("1.50") and row["project_id"] == "p"


def test_extra_is_per_row_and_null_where_a_row_has_nothing_unknown():
    out = rows(COSTS, cost(Decimal(1), project_id="a"), cost(Decimal(2), project_id="b", new_field=7))
    assert [r["extra"] for r in out] == [None, '{"new_field":7}']


def test_a_legacy_spelling_sent_beside_todays_is_kept_in_extra():
    (renamed,) = rows(SESSIONS, {"object": SESSIONS.result_object, "sessions": 4, "project_id": None})
    assert renamed["num_sessions"] == 4 and renamed["extra"] is None
    (both,) = rows(SESSIONS, {"object": SESSIONS.result_object, "sessions": 4, "num_sessions": 5, "project_id": None})
    assert both["num_sessions"] == 5 and both["extra"] == '{"sessions":4}'


def test_a_nested_field_of_the_wrong_shape_is_refused():
    with pytest.raises(OpenAIUsageResponseError, match=r"costs: result field 'amount' is int \(5\), expected an object"):
        rows(COSTS, {"object": COSTS.result_object, "amount": 5})


@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text() | st.decimals(allow_nan=False, allow_infinity=False),
        lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(), children, max_size=4),
        max_leaves=20,
    )
)
def test_canonical_json_is_valid_sorted_and_exact(value):
    text = canonical_json(value)
    back = json.loads(text, parse_float=Decimal)
    assert canonical_json(back) == text
    assert json.dumps(json.loads(text), sort_keys=True, separators=(",", ":"), ensure_ascii=False) == json.dumps(
        json.loads(text), separators=(",", ":"), ensure_ascii=False
    ), "keys are sorted at every level"


def test_json_safe_keeps_decimals_exact_as_strings():
    assert json_safe(Decimal("0.1000000000000000000000000001")) == "0.1000000000000000000000000001"
    assert json_safe(3) == 3 and json_safe(None) is None


# -- one warning per run -----------------------------------------------------------------------------
def test_one_warning_per_run_names_every_unknown_field_and_the_remedy(caplog):
    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_usage.rows"), unknown_fields_warning():
        for _ in range(3):
            rows(COSTS, cost(Decimal(1), new_b=1), cost(Decimal(2), new_a=2))
        rows(COMPLETIONS, {"object": COMPLETIONS.result_object, "input_tokens": 1, "fresh": True})
        assert caplog.records == [], "nothing is logged before the run ends"
    messages = [r.getMessage() for r in caplog.records]
    assert len(messages) == 2
    assert messages[0].startswith("completions:") and "'fresh'" in messages[0]
    assert "costs:" in messages[1] and "'new_a', 'new_b'" in messages[1]
    assert all("'extra' column" in m and "newer airflow-provider-openai-usage release types them" in m for m in messages)


def test_a_run_with_only_known_fields_warns_nothing(caplog):
    with caplog.at_level(logging.WARNING), unknown_fields_warning():
        rows(COSTS, cost(Decimal(1)))
    assert caplog.records == []


def test_unknown_fields_from_a_newer_api_are_kept_and_missing_ones_become_null(fake_api, conn_id, caplog):
    """The fake's `drift` fault: an unknown field on every result, optional fields left out."""
    hook = OpenAIUsageHook(conn_id)
    fake_api.schedule_faults(Fault("drift"), Fault("drift"))
    with caplog.at_level(logging.WARNING), unknown_fields_warning():
        out = list(hook.iter_rows("completions", NOW - 5 * DAY, NOW, group_by=["service_tier"]))
        out += list(hook.iter_rows("completions", NOW - 5 * DAY, NOW, group_by=["service_tier"]))
    assert out and all(r["extra"] == '{"drift_field":"responses"}' for r in out)
    assert all(r["service_tier"] is None and r["input_image_tokens"] is None for r in out)
    assert [r.getMessage().count("'drift_field'") for r in caplog.records] == [1]


# -- values that cannot be usage ---------------------------------------------------------------------
@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "nan", "1_000", " 1", "0x10", "", float("nan"), float("inf"), Decimal("NaN"), Decimal("-Infinity"), True])
def test_amounts_that_are_not_finite_json_numbers_are_refused(value):
    with pytest.raises(OpenAIUsageResponseError, match=r"amount_value=.* (is not a number|is not a finite number)"):
        rows(COSTS, cost(value))


def test_json_nan_and_infinity_literals_are_refused_through_the_hook_parsing():
    page = json.loads('{"v": NaN, "w": Infinity}', parse_float=Decimal)
    for literal in page.values():
        with pytest.raises(OpenAIUsageResponseError, match="not a finite number"):
            rows(COSTS, cost(literal))
    with pytest.raises(OpenAIUsageResponseError, match="quantity=.*not a finite number"):
        rows(COSTS, {**cost(Decimal(1)), "quantity": "Infinity"})


@pytest.mark.parametrize("value", [Decimal("NaN"), Decimal("Infinity"), float("nan"), 1.5, "7", 2**63, -(2**63) - 1])
def test_integers_must_be_finite_whole_and_fit_int64(value):
    with pytest.raises(OpenAIUsageResponseError, match=r"input_tokens=.*(not an integer|not a finite number|does not fit a 64-bit)"):
        rows(COMPLETIONS, {"object": COMPLETIONS.result_object, "input_tokens": value})


def test_the_int64_bounds_themselves_are_accepted():
    out = rows(COMPLETIONS, *({"object": COMPLETIONS.result_object, "input_tokens": v, "model": str(v)} for v in (2**63 - 1, -(2**63))))
    assert sorted(r["input_tokens"] for r in out) == [-(2**63), 2**63 - 1]


def test_valid_amounts_in_every_spelling_are_exact():
    out = rows(COSTS, cost("0.1000000000000000000000000001", project_id="a"), cost(Decimal("2E+3"), project_id="b"), cost(7, project_id="c"))
    assert [r["amount_value"] for r in out] == [Decimal("0.1000000000000000000000000001"), Decimal("2E+3"), Decimal(7)]


# -- duplicates inside a bucket ----------------------------------------------------------------------
def test_a_result_repeated_identically_inside_a_bucket_is_refused():
    same = cost(Decimal("1.25"), project_id="proj_a", line_item="gpt-4o, input")
    with pytest.raises(OpenAIUsageResponseError, match=r"costs: bucket 0–86400 holds the same result twice .*'proj_a'.*count that usage double"):
        rows(COSTS, same, cost(Decimal(9), project_id="proj_b"), dict(same))


def test_same_group_with_different_values_is_kept_not_summed_away():
    """Two results for one group that differ (e.g. per currency) are both real: neither is dropped."""
    out = rows(COSTS, cost(Decimal(1), "usd", project_id="p"), cost(Decimal(1), "eur", project_id="p"))
    assert sorted(r["amount_currency"] for r in out) == ["eur", "usd"]
    extra = rows(COSTS, cost(Decimal(1), project_id="p", note="a"), cost(Decimal(1), project_id="p", note="b"))
    assert len(extra) == 2, "results differing only in an unknown field are different results"


def test_duplicate_check_sees_the_typed_values():
    """"1.0" and 1.00 are the same amount: the same result sent in two spellings is still a duplicate."""
    with pytest.raises(OpenAIUsageResponseError, match="same result twice"):
        rows(COSTS, cost("1.0", project_id="p"), cost(Decimal("1.00"), project_id="p"))


def test_bucket_columns_keep_registry_order():
    n, columns = bucket_columns(COSTS, {"start_time": 0, "end_time": 86400, "results": [cost(Decimal(1))]})
    assert n == 1 and tuple(columns) == COSTS.column_names


# -- end to end: an unknown field lands in every format, byte-identically ----------------------------
def _ctx(start: int, end: int) -> dict:
    return {"data_interval_start": pendulum.from_timestamp(start, tz="UTC"), "data_interval_end": pendulum.from_timestamp(end, tz="UTC")}


def _digests(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def _extras(path: Path, file_format: str) -> list:
    if file_format == "parquet":
        import pyarrow.parquet as pq

        table = pq.read_table(path)
        assert str(table.schema.field("extra").type) == "string"
        return table.column("extra").to_pylist()
    if file_format == "jsonl":
        return [json.loads(line)["extra"] for line in path.read_text().splitlines()]
    with path.open(newline="") as fh:
        return [row["extra"] for row in csv.DictReader(fh)]


@pytest.mark.parametrize("file_format", ["parquet", "jsonl", "csv"])
def test_an_unknown_field_lands_in_extra_in_every_format_and_the_day_reruns_byte_identically(fake_api, conn_id, tmp_path, caplog, file_format):
    fake_api.controls.unknown_result_fields = {"billing_region": "eu", "discount": {"rate": Decimal("0.05"), "code": "X"}}
    start = NOW - 3 * DAY
    expected = '{"billing_region":"eu","discount":{"code":"X","rate":0.05}}'

    def run() -> dict:
        op = OpenAIUsageOperator(task_id="t", endpoint="costs", output_path=str(tmp_path), group_by=["project_id", "line_item"], file_format=file_format)
        return op.execute(_ctx(start, NOW))

    with caplog.at_level(logging.WARNING, logger="airflow_provider_openai_usage.rows"):
        summary = run()
    extras = []
    for date, info in summary["days"].items():
        extras += _extras(tmp_path / "costs" / ORG_DIR / f"date={date}" / info["files"][0], file_format)
    assert summary["rows"] > 0 and extras == [expected] * summary["rows"]
    warnings = [r.getMessage() for r in caplog.records if "does not type" in r.getMessage()]
    assert len(warnings) == 1 and "'billing_region', 'discount'" in warnings[0]
    first = _digests(tmp_path)
    fake_api.controls.unknown_result_fields = {"discount": {"code": "X", "rate": Decimal("0.05")}, "billing_region": "eu"}
    run()
    assert _digests(tmp_path) == first, "same data in another key order: the same bytes"


# -- values never coerced (#26 items 2 and 4) --------------------------------------------------------
@pytest.mark.parametrize("value", [{"x": 1}, True, 840, Decimal("1.5"), ["a"]])
def test_a_non_string_in_a_string_column_is_refused_naming_the_column(value):
    with pytest.raises(OpenAIUsageResponseError, match=r"project_id=.* is not a string"):
        rows(COMPLETIONS, {"object": COMPLETIONS.result_object, "input_tokens": 1, "project_id": value})
    with pytest.raises(OpenAIUsageResponseError, match=r"amount_currency=.* is not a string"):
        rows(COSTS, cost(Decimal("1"), currency=value))


@pytest.mark.parametrize("result", [{"object": COSTS.result_object, "line_item": "x"}, {"object": COSTS.result_object, "amount": {"currency": "usd"}}])
def test_a_costs_result_without_an_amount_is_refused(result):
    with pytest.raises(OpenAIUsageResponseError, match=r"amount\.value"):
        rows(COSTS, result)


def test_a_result_nested_hundreds_of_levels_deep_is_refused_clearly_not_with_a_recursion_error():
    deep: object = "bottom"
    for _ in range(400):
        deep = {"d": deep}
    with pytest.raises(OpenAIUsageResponseError, match=r"nested deeper than"):
        rows(COMPLETIONS, {"object": COMPLETIONS.result_object, "input_tokens": 1, "odd": deep})
