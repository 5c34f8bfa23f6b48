"""`make soak`: many seeded fault schedules against a paged multi-day pull; writes docs/reliability.md.

For every schedule the operator pulls 6 days (3 buckets per page, so 2+ pages) into a folder that
already holds older partitions. A run must either succeed with files byte-identical to the
fault-free run, or fail with one of the provider's errors, leaving every partition either as it was
or complete and identical to the fault-free one, and no temporary file behind.

    python benchmarks/soak.py --schedules 1000
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import platform
import random
import shutil
import sys
import tempfile
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
NOW = 1762732800
DAY = 86400
START = NOW - 6 * DAY
KEY = "sk-admin-fake-soak-key"


def tree(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def is_leftover(name: str) -> bool:
    """A temporary file or pending manifest (only ``_openai_usage/tmp`` may hold them, and only mid-run)."""
    base = Path(name).name
    return base.startswith(".") or base.endswith(".tmp") or base.startswith("pending.")


def random_schedule(rng: random.Random) -> list[Any]:
    from airflow_provider_openai_usage.testing import Fault, status

    menu = [
        lambda: status(429, retry_after=1), lambda: status(429), lambda: status(500), lambda: status(502),
        lambda: status(503), lambda: status(504), lambda: Fault("drop"), lambda: Fault("truncate"),
        lambda: Fault("garbage"), lambda: Fault("slow", delay=0.3), lambda: Fault("pass"), lambda: Fault("pass"),
    ]
    return [rng.choice(menu)() for _ in range(rng.randint(0, 8))]


@dataclass
class SoakResult:
    schedules: int = 0
    identical: int = 0
    clean_failures: int = 0
    lost_or_mixed: int = 0
    unclear_errors: int = 0
    temp_files_left: int = 0
    faults_injected: Counter = field(default_factory=Counter)
    requests: int = 0
    examples: list[str] = field(default_factory=list)


class Soak:
    def __init__(self, workdir: Path) -> None:
        from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

        self.workdir = workdir
        self.api = FakeOpenAIUsageAPI(key=KEY, seed=21, now=NOW).start()
        os.environ["AIRFLOW_CONN_SOAK"] = self.api.connection_json(
            timeout=0.2, max_retries=3, max_retry_wait=5, backoff_base=0.001, max_retry_after=0.001
        )
        self.reference = self._pull_into(workdir / "reference")
        self.api.controls.revisions.update({START + i * DAY: 9 for i in range(6)})
        self.previous = self._pull_into(workdir / "previous")
        self.api.controls.revisions.clear()
        self.api.controls.page_size_cap = 3

    def _operator(self, out: Path) -> Any:
        from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

        return OpenAIUsageOperator(
            task_id="soak", endpoint="completions", openai_usage_conn_id="soak", group_by=["project_id", "model"], output_path=str(out)
        )

    def _context(self) -> dict:
        import pendulum

        return {"data_interval_start": pendulum.from_timestamp(START, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}

    def _pull_into(self, out: Path) -> dict[str, str]:
        self._operator(out).execute(self._context())
        return tree(out)

    def run(self, seeds: range, result: SoakResult | None = None) -> SoakResult:
        from airflow_provider_openai_usage.exceptions import OpenAIUsageError

        result = result or SoakResult()
        for seed in seeds:
            target = self.workdir / f"run-{seed}"
            shutil.copytree(self.workdir / "previous", target)
            schedule = random_schedule(random.Random(seed))
            result.faults_injected.update(f.describe() for f in schedule if f.kind != "pass")
            self.api.faults.clear()
            self.api.clear_requests()
            self.api.faults.schedule(schedule)
            error: BaseException | None = None
            try:
                self._operator(target).execute(self._context())
            except BaseException as exc:  # noqa: BLE001 - every failure is classified below
                error = exc
            result.schedules += 1
            result.requests += len(self.api.requests)
            files = tree(target)
            result.temp_files_left += sum(1 for name in files if is_leftover(name))
            if error is None:
                if files == self.reference:
                    result.identical += 1
                else:
                    result.lost_or_mixed += 1
                    result.examples.append(f"seed {seed}: succeeded with different files")
            else:
                if not isinstance(error, OpenAIUsageError) or not str(error):
                    result.unclear_errors += 1
                    result.examples.append(f"seed {seed}: {type(error).__name__}: {error}")
                consistent = files.keys() == self.previous.keys() and all(
                    files[name] in (self.previous[name], self.reference[name]) for name in files
                )
                if consistent:
                    result.clean_failures += 1
                else:
                    result.lost_or_mixed += 1
                    result.examples.append(f"seed {seed}: failed and left a partition that is neither old nor new")
            shutil.rmtree(target)
        return result

    def close(self) -> None:
        self.api.stop()


def report(result: SoakResult, seconds: float) -> str:
    return "\n".join(
        [
            "# Reliability",
            "",
            f"Generated by `make soak` on {dt.date.today().isoformat()} ({platform.platform()}, Python {platform.python_version()}), "
            f"in {seconds:.0f} s.",
            "",
            "Each schedule: a seeded list of up to 8 faults (429 with and without `Retry-After`, 500/502/503/504, "
            "dropped connections, read timeouts, truncated and non-JSON bodies, interleaved with clean answers) "
            "served in order to an `OpenAIUsageOperator` pulling 6 days of completions in pages of 3 buckets into "
            "a folder that already holds older partitions of those days. Retries per page: 3.",
            "",
            "| figure | count |",
            "|---|---|",
            f"| schedules run | {result.schedules} |",
            f"| requests served | {result.requests} |",
            f"| succeeded, byte-identical to the fault-free run | {result.identical} |",
            f"| failed cleanly (provider error; each partition old or complete-new) | {result.clean_failures} |",
            f"| **anything lost, mixed or half-written** (must be 0) | {result.lost_or_mixed} |",
            f"| failures without a clear provider error (must be 0) | {result.unclear_errors} |",
            f"| temporary files left behind (must be 0) | {result.temp_files_left} |",
            "",
            "Faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(result.faults_injected.items())) + ".",
            "",
            "A failed run may already have replaced the days completed before the failure with their complete new "
            "version (each day is published atomically once all its buckets arrived); no day is ever left half "
            "written or mixed. The retry wait of a page is capped by `max_retry_wait` and logged.",
            "",
            *(["Examples of problems:", *[f"- {e}" for e in result.examples[:20]], ""] if result.examples else []),
        ]
    )


#: docs/reliability.md keeps everything from this line on when `make soak` rewrites the page.
HAND_WRITTEN = "<!-- Sections below are written by hand"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--schedules", type=int, default=1000)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as home:
        os.environ.setdefault("AIRFLOW_HOME", home)
        os.environ.setdefault("AIRFLOW__CORE__LOAD_EXAMPLES", "False")
        os.environ.setdefault("AIRFLOW__LOGGING__LOGGING_LEVEL", "ERROR")
        started = time.monotonic()
        soak = Soak(Path(home) / "soak")
        try:
            result = soak.run(range(args.schedules))
        finally:
            soak.close()
        text = report(result, time.monotonic() - started)
    # Sections below the marker are written by hand (production-shaped runs): keep them.
    page = REPO / "docs" / "reliability.md"
    _, marker, hand_written = page.read_text().partition(HAND_WRITTEN) if page.exists() else ("", "", "")
    page.write_text(text.rstrip("\n") + "\n\n" + marker + hand_written if marker else text)
    print(text)
    print(json.dumps({"lost_or_mixed": result.lost_or_mixed, "unclear": result.unclear_errors}))
    return 0 if result.lost_or_mixed == result.unclear_errors == result.temp_files_left == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
