"""The FinOps Foundation's FOCUS validator, installed in its own venv, run on our FOCUS files.

    python -m airflow_provider_openai_usage.testing.focus_validator <output_path>/focus
    python -m airflow_provider_openai_usage.testing.focus_validator some-day.parquet --venv .venv-focus

Why a separate venv: ``focus-validator`` 2.2.1 needs Python >= 3.12 (3.12-only f-strings) and pins
numpy 1.x, which the newest pyarrow refuses; Airflow's venv is 3.10+ with its own pins. The venv
is built once with uv (seconds) and reused while its stamp matches ``REQUIREMENTS``.

The validator reads its bundled rule files by relative path, so it runs with the venv's
site-packages as working directory, offline (``--block-download``, bundled FOCUS 1.2 rules).
A dataset of many day files is validated as one file (days concatenated), which also lets the
validator check cross-row rules (one SkuId per SkuPriceId, one ServiceCategory per ServiceName)
over the whole range.
"""

from __future__ import annotations

import argparse
import fcntl
import glob
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

VALIDATOR_VERSION = "2.2.1"
REQUIREMENTS = (f"focus-validator=={VALIDATOR_VERSION}", "pyarrow<20")
FOCUS_VERSION = "1.2"
PYTHON_ENV = "FOCUS_VALIDATOR_PYTHON"
#: Rules no dataset with rows can pass with this validator version, and why (docs/focus.md, "Validation").
KNOWN_DEFECTS = {
    "InvoiceId-C-005-C": "InvoiceId-C-004-C (must be null) and -C-005-C (must not be null) lost their conditions in the "
    "validator's model, so every dataset with rows fails one of them; this export leaves InvoiceId null",
}
_SUMMARY = re.compile(r"^Total: (\d+) \| Pass: (\d+) \| Fail: (\d+) \| Skipped: (\d+)$", re.M)
_RULE = re.compile(r"^\S+ (?P<id>[A-Za-z]+-[A-Z]-\d{3}-[MOC]): (?P<status>PASS|FAIL|SKIPPED)(?:\s+\((?P<extra>.*)\))?$")
_REASON = re.compile(r"reason=(.*?)(?:, msg=|$)")
#: The validator ends a rule's extras with its timing (", 12.5ms"): not part of the reason or message.
_TIMING = re.compile(r",\s*\d+(?:\.\d+)?ms$")


class FocusValidatorUnavailable(RuntimeError):
    """No Python >= 3.12 to run the validator, or its venv could not be built: the message says how to fix it."""


@dataclass(frozen=True)
class RuleResult:
    status: str  # PASS, FAIL or SKIPPED
    reason: str  # the validator's skip reason or failure message, "" for a pass


@dataclass
class FocusValidation:
    """What the validator reported for one file."""

    total: int
    passed: int
    failed: int
    skipped: int
    summary: str
    rules: dict[str, RuleResult] = field(default_factory=dict)
    output: str = ""

    def with_status(self, status: str) -> dict[str, RuleResult]:
        return {k: v for k, v in self.rules.items() if v.status == status}


def find_python312() -> str:
    """An interpreter >= 3.12 that actually runs (pyenv's ``python3.12`` shim may refuse to)."""
    candidates: list[str] = []
    if os.environ.get(PYTHON_ENV):
        candidates.append(os.environ[PYTHON_ENV])
    pyenv_root = os.environ.get("PYENV_ROOT") or os.path.expanduser("~/.pyenv")
    try:
        pyenv_root = subprocess.run(["pyenv", "root"], capture_output=True, text=True, timeout=30, check=True).stdout.strip() or pyenv_root
    except (OSError, subprocess.SubprocessError):
        pass
    for version in ("3.12", "3.13", "3.14"):
        candidates += sorted(glob.glob(os.path.join(pyenv_root, "versions", f"{version}.*", "bin", "python3")), reverse=True)
    candidates += [p for p in (shutil.which("python3.12"), shutil.which("python3.13")) if p]
    for candidate in candidates:
        try:
            out = subprocess.run(
                [candidate, "-c", "import sys; print(sys.version_info >= (3, 12))"], capture_output=True, text=True, timeout=30
            )
        except (OSError, subprocess.SubprocessError):
            continue
        if out.returncode == 0 and out.stdout.strip() == "True":
            return candidate
    raise FocusValidatorUnavailable(
        f"focus-validator {VALIDATOR_VERSION} needs Python >= 3.12 and none runs here (tried: {', '.join(candidates) or 'nothing found'}). "
        f"Install one (e.g. `pyenv install 3.12`) or point {PYTHON_ENV} at a python3.12 binary"
    )


def _run(cmd: Sequence[str], what: str, **kwargs: object) -> subprocess.CompletedProcess[str]:
    result = subprocess.run(list(cmd), capture_output=True, text=True, **kwargs)  # type: ignore[call-overload]
    if result.returncode != 0:
        raise FocusValidatorUnavailable(f"{what} failed ({' '.join(cmd)}):\n{result.stdout}\n{result.stderr}")
    return result


def ensure_validator(venv: Path) -> Path:
    """The validator venv at ``venv``, built on first use (uv, cached); returns its site-packages."""
    venv = venv.resolve()
    stamp = venv / ".focus-validator.json"
    venv.parent.mkdir(parents=True, exist_ok=True)
    with open(venv.parent / f"{venv.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # two test sessions never build the same venv at once
        if stamp.exists():
            recorded = json.loads(stamp.read_text())
            if recorded.get("requirements") == list(REQUIREMENTS) and Path(recorded["site_packages"]).is_dir():
                return Path(recorded["site_packages"])
        python = find_python312()
        # Built in place (console scripts hold absolute paths); the stamp, written last, marks it complete.
        shutil.rmtree(venv, ignore_errors=True)
        uv = [sys.executable, "-m", "uv"]
        try:
            _run([*uv, "venv", "-q", "--python", python, str(venv)], "creating the validator venv")
            _run([*uv, "pip", "install", "-q", "--python", str(venv / "bin" / "python"), *REQUIREMENTS], "installing focus-validator")
        except BaseException:
            shutil.rmtree(venv, ignore_errors=True)
            raise
        site = _run(
            [str(venv / "bin" / "python"), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"], "locating site-packages"
        ).stdout.strip()
        stamp.write_text(json.dumps({"requirements": list(REQUIREMENTS), "site_packages": site, "python": python}))
        return Path(site)


def parse_console(output: str) -> FocusValidation:
    match = _SUMMARY.search(output)
    if match is None:
        raise AssertionError(f"no 'Total: ... | Pass: ...' summary in the validator's output:\n{output[-4000:]}")
    total, passed, failed, skipped = map(int, match.groups())
    rules: dict[str, RuleResult] = {}
    for line in output.splitlines():
        rule = _RULE.match(line.strip())
        if rule:
            extra = rule.group("extra") or ""
            reason = _REASON.search(extra)
            msg = extra.split("msg=", 1)[1] if "msg=" in extra else ""
            text = reason.group(1) if reason else msg
            rules[rule.group("id")] = RuleResult(rule.group("status"), _TIMING.sub("", text))
    return FocusValidation(total, passed, failed, skipped, match.group(0), rules, output)


def validate_file(path: Path, criteria: Iterable[str], *, venv: Path) -> FocusValidation:
    """Run the validator on one Parquet or CSV file with the given applicability criteria."""
    site = ensure_validator(venv)
    cmd = [
        str(venv.resolve() / "bin" / "focus-validator"), "--data-file", str(Path(path).resolve()),
        "--validate-version", FOCUS_VERSION, "--block-download", "--focus-dataset", "CostAndUsage",
    ]
    criteria = list(criteria)
    if criteria:
        cmd += ["--applicability-criteria", ",".join(criteria)]
    result = subprocess.run(cmd, cwd=site, capture_output=True, text=True, timeout=600)
    report = parse_console(result.stdout + "\n" + result.stderr)
    return report


def combine_days(root: Path, dest_dir: Path) -> Path:
    """All ``date=*/`` files under a dataset root as one file of the same format (for one validator run)."""
    files = sorted(p for p in root.glob("date=*/*") if p.suffix in (".parquet", ".csv") and not p.name.startswith("."))
    if not files:
        raise FileNotFoundError(f"no date=*/ Parquet or CSV files under {root}")
    suffix = files[0].suffix
    if any(p.suffix != suffix for p in files):
        raise ValueError(f"{root} mixes formats; validate one format at a time")
    out = dest_dir / f"focus-combined{suffix}"
    if suffix == ".parquet":
        import pyarrow as pa
        import pyarrow.parquet as pq

        tables = [pq.read_table(p) for p in files]
        pq.write_table(pa.concat_tables(tables), out)
    else:
        with open(out, "w", encoding="utf-8", newline="") as fh:
            for i, p in enumerate(files):
                lines = p.read_text(encoding="utf-8").splitlines(keepends=True)
                fh.writelines(lines if i == 0 else lines[1:])
    return out


def validate_dataset(root: Path, criteria: Iterable[str], *, venv: Path) -> FocusValidation:
    """Validate every day of ``<output_path>/focus`` (local path) in one validator run."""
    with tempfile.TemporaryDirectory(prefix="focus-validate-") as tmp:
        return validate_file(combine_days(Path(root), Path(tmp)), criteria, venv=venv)


def main(argv: list[str] | None = None) -> int:
    from airflow_provider_openai_usage.focus import DECLARED_CRITERIA

    parser = argparse.ArgumentParser(prog="python -m airflow_provider_openai_usage.testing.focus_validator")
    parser.add_argument("path", type=Path, help="a FOCUS dataset root (<output_path>/focus) or one .parquet/.csv file")
    parser.add_argument("--venv", type=Path, default=Path(".venv-focus"), help="where the validator's venv lives (default .venv-focus)")
    parser.add_argument(
        "--criteria", default=",".join(DECLARED_CRITERIA), help="applicability criteria (default: the ones docs/focus.md declares)"
    )
    parser.add_argument("--show", choices=("summary", "failures", "all"), default="failures")
    args = parser.parse_args(argv)
    criteria = [c for c in args.criteria.split(",") if c]
    if args.path.is_dir():
        report = validate_dataset(args.path, criteria, venv=args.venv)
    else:
        report = validate_file(args.path, criteria, venv=args.venv)
    print(report.summary)
    shown = report.rules if args.show == "all" else report.with_status("FAIL") if args.show == "failures" else {}
    for rule_id, result in sorted(shown.items()):
        known = f"  [known validator defect: {KNOWN_DEFECTS[rule_id]}]" if rule_id in KNOWN_DEFECTS and result.status == "FAIL" else ""
        print(f"{result.status:8} {rule_id}  {result.reason}{known}")
    unexpected = set(report.with_status("FAIL")) - set(KNOWN_DEFECTS)
    return 1 if unexpected else 0


if __name__ == "__main__":
    sys.exit(main())
