"""The FOCUS validator wrapper without the validator: its console parsing, day combining, venv stamp
and the clear error when no Python >= 3.12 runs. Nothing is installed here; the validator itself runs
in tests/integration/test_focus_validator.py.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from airflow_provider_openai_usage.testing import focus_validator as fv

#: Lines as focus-validator 2.2.1's console outputter prints them (outputter_console._line_for_rule):
#: an icon (emoji, or [PASS]/[SKIP]/[FAIL] when stdout cannot encode it), the rule, its status, extras.
CONSOLE = """\
Loading rules...

=== Validation Results ===
Total: 5 | Pass: 2 | Fail: 1 | Skipped: 2
✅ BilledCost-C-001-M: PASS  (violations=0, 3.1ms)
[PASS] ChargeCategory-C-002-M: PASS
⏭️ CommitmentDiscountId-C-001-C: SKIPPED  (violations=0, reason=Rule skipped - column not applicable)
[SKIP] SkuId-C-004-O: SKIPPED  (reason=no SKU price list)
❌ InvoiceId-C-005-C: FAIL  (violations=3, msg=InvoiceId MUST NOT be null, got 3 nulls, 12.5ms)

--- Failures ---
InvoiceId-C-005-C: InvoiceId MUST NOT be null, got 3 nulls (violations=3)
"""


def test_the_summary_line_and_every_rule_are_parsed():
    report = fv.parse_console(CONSOLE)
    assert (report.total, report.passed, report.failed, report.skipped) == (5, 2, 1, 2)
    assert report.summary == "Total: 5 | Pass: 2 | Fail: 1 | Skipped: 2"
    assert report.output == CONSOLE
    assert set(report.with_status("PASS")) == {"BilledCost-C-001-M", "ChargeCategory-C-002-M"}
    assert set(report.with_status("SKIPPED")) == {"CommitmentDiscountId-C-001-C", "SkuId-C-004-O"}
    assert set(report.with_status("FAIL")) == {"InvoiceId-C-005-C"}
    # The rule lines agree with the summary's counts (the "--- Failures ---" section adds no rule).
    assert len(report.rules) == report.total


def test_a_skip_keeps_its_reason_and_a_failure_its_message_without_the_timing():
    rules = fv.parse_console(CONSOLE).rules
    assert rules["CommitmentDiscountId-C-001-C"] == fv.RuleResult("SKIPPED", "Rule skipped - column not applicable")
    assert rules["SkuId-C-004-O"].reason == "no SKU price list"
    # A comma inside the message stays; the validator's trailing ", 12.5ms" is timing, not message.
    assert rules["InvoiceId-C-005-C"] == fv.RuleResult("FAIL", "InvoiceId MUST NOT be null, got 3 nulls")
    assert rules["BilledCost-C-001-M"] == fv.RuleResult("PASS", "")


def test_output_without_a_summary_is_an_error_that_shows_the_output_s_tail():
    crash = "Traceback (most recent call last):\n" + "x\n" * 3000 + "FileNotFoundError: focus_validator/rules/currency_codes.csv"
    with pytest.raises(AssertionError, match="no 'Total: ... | Pass: ...' summary") as raised:
        fv.parse_console(crash)
    assert raised.value.args[0].endswith("currency_codes.csv")
    assert len(raised.value.args[0]) < 4200  # the tail, not megabytes of log


def test_every_known_defect_names_a_rule_id_the_parser_reads():
    for rule_id, why in fv.KNOWN_DEFECTS.items():
        line = f"❌ {rule_id}: FAIL  (violations=1, msg=x)"
        assert rule_id in fv.parse_console(f"Total: 1 | Pass: 0 | Fail: 1 | Skipped: 0\n{line}").rules
        assert why


@pytest.fixture
def no_python312(tmp_path, monkeypatch) -> str:
    """No pyenv, no python3.12/3.13 on PATH, and FOCUS_VALIDATOR_PYTHON naming this (3.11) interpreter."""
    if sys.version_info >= (3, 12):
        pytest.fail("these tests need the project's Python 3.11 venv (make setup) to stand for 'too old'")
    empty = tmp_path / "empty-bin"
    empty.mkdir()
    monkeypatch.setenv("PATH", str(empty))
    monkeypatch.setenv("PYENV_ROOT", str(tmp_path / "no-pyenv"))
    monkeypatch.setenv(fv.PYTHON_ENV, sys.executable)
    return sys.executable


def test_without_python_312_the_error_says_what_was_tried_and_how_to_fix_it(no_python312):
    with pytest.raises(fv.FocusValidatorUnavailable) as raised:
        fv.find_python312()
    message = str(raised.value)
    assert f"focus-validator {fv.VALIDATOR_VERSION} needs Python >= 3.12" in message
    assert f"tried: {no_python312}" in message
    assert "pyenv install 3.12" in message and fv.PYTHON_ENV in message


def test_an_interpreter_that_does_not_run_is_passed_over_and_listed(no_python312, monkeypatch, tmp_path):
    missing = str(tmp_path / "no-such-python3.12")
    monkeypatch.setenv(fv.PYTHON_ENV, missing)
    with pytest.raises(fv.FocusValidatorUnavailable, match=f"tried: {missing}\\)"):
        fv.find_python312()


def test_a_stale_venv_is_not_reused_and_nothing_is_built_without_python_312(no_python312, tmp_path):
    venv = tmp_path / "venv-focus"
    site = venv / "lib" / "site-packages"
    site.mkdir(parents=True)
    stamp = venv / ".focus-validator.json"
    stamp.write_text(json.dumps({"requirements": ["focus-validator==2.0.0"], "site_packages": str(site)}))
    with pytest.raises(fv.FocusValidatorUnavailable, match="needs Python >= 3.12"):
        fv.ensure_validator(venv)
    # Refused before removing or installing anything: the old venv is still there as it was.
    assert site.is_dir() and json.loads(stamp.read_text())["requirements"] == ["focus-validator==2.0.0"]


def test_a_venv_whose_stamp_matches_is_reused_without_looking_for_python(no_python312, tmp_path):
    venv = tmp_path / "venv-focus"
    site = venv / "lib" / "site-packages"
    site.mkdir(parents=True)
    (venv / ".focus-validator.json").write_text(json.dumps({"requirements": list(fv.REQUIREMENTS), "site_packages": str(site)}))
    assert fv.ensure_validator(venv) == site


def test_a_stamp_whose_site_packages_is_gone_is_rebuilt(no_python312, tmp_path):
    venv = tmp_path / "venv-focus"
    venv.mkdir()
    gone = tmp_path / "gone"
    (venv / ".focus-validator.json").write_text(json.dumps({"requirements": list(fv.REQUIREMENTS), "site_packages": str(gone)}))
    with pytest.raises(fv.FocusValidatorUnavailable):
        fv.ensure_validator(venv)


def _day(root: Path, date: str, name: str) -> Path:
    folder = root / f"date={date}"
    folder.mkdir(parents=True, exist_ok=True)
    return folder / name


def test_parquet_days_are_combined_in_date_order_into_one_file(tmp_path):
    root = tmp_path / "focus"
    for date, costs in [("2025-11-09", [3]), ("2025-11-07", [1, 2]), ("2025-11-08", [])]:
        pq.write_table(pa.table({"BilledCost": pa.array(costs, pa.int64())}), _day(root, date, "data.parquet"))
    pq.write_table(pa.table({"BilledCost": [99]}), _day(root, "2025-11-07", ".data.parquet.tmp.parquet"))  # a write in flight
    out = fv.combine_days(root, tmp_path)
    assert out == tmp_path / "focus-combined.parquet"
    assert pq.read_table(out).column("BilledCost").to_pylist() == [1, 2, 3]


def test_csv_days_are_combined_with_one_header(tmp_path):
    root = tmp_path / "focus"
    _day(root, "2025-11-08", "data.csv").write_text("BilledCost,ChargeCategory\n2,Usage\n")
    _day(root, "2025-11-07", "data.csv").write_text("BilledCost,ChargeCategory\n1,Usage\n")
    _day(root, "2025-11-09", "data.csv").write_text("BilledCost,ChargeCategory\n")  # an empty day
    out = fv.combine_days(root, tmp_path)
    assert out.read_text() == "BilledCost,ChargeCategory\n1,Usage\n2,Usage\n"


def test_mixed_formats_and_empty_roots_are_refused_by_name(tmp_path):
    root = tmp_path / "focus"
    with pytest.raises(FileNotFoundError, match=f"no date=\\*/ Parquet or CSV files under {root}"):
        fv.combine_days(root, tmp_path)
    _day(root, "2025-11-07", "data.csv").write_text("BilledCost\n1\n")
    pq.write_table(pa.table({"BilledCost": [2]}), _day(root, "2025-11-08", "data.parquet"))
    with pytest.raises(ValueError, match="mixes formats; validate one format at a time"):
        fv.combine_days(root, tmp_path)
