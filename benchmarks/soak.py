"""`make soak`: many seeded fault schedules against paged pulls; writes docs/reliability.md.

Schedules rotate over three scenarios, each into a folder that already holds older partitions:
- ``1d``: 6 whole days, 3 buckets per page;
- ``1h``: 18:00 of one day to 06:00 two days later (parts of two days merged, one whole day), 12 per page;
- ``1m``: 23:00–01:00 across midnight (parts of two days merged), 40 per page.
A run must either succeed with files byte-identical to the fault-free run, or fail with one of the
provider's errors, leaving every day file either as it was or as the fault-free run leaves it, and no
temporary file behind. ``Retry-After`` answers are waited for for real (the fake sends 1 s); the
report counts the waits the server saw honoured.

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
    by_width: Counter = field(default_factory=Counter)
    retry_after_waits: int = 0
    retry_after_seconds: float = 0.0
    retry_after_too_early: int = 0


H = 3600


@dataclass(frozen=True)
class Scenario:
    width: str
    start: int
    end: int
    page_size: int


SCENARIOS = (
    Scenario("1d", START, NOW, 3),
    Scenario("1h", START + 18 * H, START + 2 * DAY + 6 * H, 12),
    Scenario("1m", START + 3 * DAY + 23 * H, START + 4 * DAY + 1 * H, 40),
)


class Soak:
    def __init__(self, workdir: Path, *, retry_after_cap: float = 5.0) -> None:
        from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI

        self.workdir = workdir
        self.api = FakeOpenAIUsageAPI(key=KEY, seed=21, now=NOW).start()
        os.environ["AIRFLOW_CONN_SOAK"] = self.api.connection_json(
            timeout=0.2, max_retries=3, max_retry_wait=5, backoff_base=0.001, max_retry_after=retry_after_cap
        )
        self.previous: dict[str, dict[str, str]] = {}
        self.reference: dict[str, dict[str, str]] = {}
        for scenario in SCENARIOS:
            # Older partitions: whole days at the scenario's width, with numbers OpenAI later revised.
            base = workdir / f"previous-{scenario.width}"
            self.api.controls.revisions.update({START - DAY + i * DAY: 9 for i in range(8)})
            first, last = scenario.start - scenario.start % DAY, scenario.end - scenario.end % DAY + (DAY if scenario.end % DAY else 0)
            self._operator(base, scenario).execute(self._context(first, last))
            self.api.controls.revisions.clear()
            self.previous[scenario.width] = tree(base)
            shutil.copytree(base, workdir / f"reference-{scenario.width}")
            self._operator(workdir / f"reference-{scenario.width}", scenario).execute(self._context(scenario.start, scenario.end))
            self.reference[scenario.width] = tree(workdir / f"reference-{scenario.width}")

    def _operator(self, out: Path, scenario: Scenario) -> Any:
        from airflow_provider_openai_usage.operators.usage import OpenAIUsageOperator

        return OpenAIUsageOperator(
            task_id="soak", endpoint="completions", openai_usage_conn_id="soak", group_by=["project_id", "model"],
            output_path=str(out), bucket_width=scenario.width,
        )

    @staticmethod
    def _context(start: int, end: int) -> dict:
        import pendulum

        return {"data_interval_start": pendulum.from_timestamp(start, tz="UTC"), "data_interval_end": pendulum.from_timestamp(end, tz="UTC")}

    def run(self, seeds: range, result: SoakResult | None = None) -> SoakResult:
        from airflow_provider_openai_usage.exceptions import OpenAIUsageError

        result = result or SoakResult()
        for seed in seeds:
            scenario = SCENARIOS[seed % len(SCENARIOS)]
            previous, reference = self.previous[scenario.width], self.reference[scenario.width]
            target = self.workdir / f"run-{seed}"
            shutil.copytree(self.workdir / f"previous-{scenario.width}", target)
            schedule = random_schedule(random.Random(seed))
            result.faults_injected.update(f.describe() for f in schedule if f.kind != "pass")
            self.api.faults.clear()
            self.api.clear_requests()
            self.api.controls.page_size_cap = scenario.page_size
            self.api.faults.schedule(schedule)
            error: BaseException | None = None
            try:
                self._operator(target, scenario).execute(self._context(scenario.start, scenario.end))
            except BaseException as exc:  # noqa: BLE001 - every failure is classified below
                error = exc
            result.schedules += 1
            result.by_width[scenario.width] += 1
            requests = self.api.requests
            result.requests += len(requests)
            self._count_waits(requests, result)
            files = tree(target)
            result.temp_files_left += sum(1 for name in files if is_leftover(name))
            if error is None:
                if files == reference:
                    result.identical += 1
                else:
                    result.lost_or_mixed += 1
                    result.examples.append(f"seed {seed} ({scenario.width}): succeeded with different files")
            else:
                if not isinstance(error, OpenAIUsageError) or not str(error):
                    result.unclear_errors += 1
                    result.examples.append(f"seed {seed} ({scenario.width}): {type(error).__name__}: {error}")
                consistent = all(
                    files.get(name) in (previous.get(name), reference.get(name))
                    for name in set(files) | set(reference)
                    if name.startswith("completions/date=")
                )
                if consistent:
                    result.clean_failures += 1
                else:
                    result.lost_or_mixed += 1
                    result.examples.append(f"seed {seed} ({scenario.width}): failed and left a day that is neither old nor new")
            shutil.rmtree(target)
        return result

    @staticmethod
    def _count_waits(requests: list[Any], result: SoakResult) -> None:
        """A ``Retry-After: 1`` answer must be followed by the next request at least 1 s later."""
        for answered, following in zip(requests, requests[1:]):
            if answered.fault and "retry-after=" in answered.fault:
                asked = float(answered.fault.split("retry-after=")[1])
                waited = following.at - answered.at
                result.retry_after_waits += 1
                result.retry_after_seconds += waited
                if waited < asked:
                    result.retry_after_too_early += 1

    def close(self) -> None:
        self.api.stop()


def report(result: SoakResult, seconds: float) -> str:
    return "\n".join(
        [
            "# Reliability",
            "",
            f"Generated by `python benchmarks/soak.py --schedules {result.schedules}` (`make soak` runs 1000) on "
            f"{dt.date.today().isoformat()} ({platform.platform()}, Python {platform.python_version()}), in {seconds:.0f} s.",
            "",
            "Each schedule: a seeded list of up to 8 faults (429 with and without `Retry-After`, 500/502/503/504, "
            "dropped connections, read timeouts, truncated and non-JSON bodies, interleaved with clean answers) "
            "served in order to an `OpenAIUsageOperator` pulling completions (grouped by project and model) into a "
            "folder that already holds older partitions of those days. Schedules rotate over three widths: `1d` "
            "(6 whole days, 3 buckets per page), `1h` (18:00 of one day to 06:00 two days later: parts of two days "
            "merged into their files, one whole day; 12 per page) and `1m` (23:00–01:00 across midnight: parts of "
            "two days merged; 40 per page). Retries per page: 3. `Retry-After` is honoured for real.",
            "",
            "| figure | count |",
            "|---|---|",
            f"| schedules run | {result.schedules} ({', '.join(f'{w}: {n}' for w, n in sorted(result.by_width.items()))}) |",
            f"| requests served | {result.requests} |",
            f"| succeeded, byte-identical to the fault-free run | {result.identical} |",
            f"| failed cleanly (provider error; each partition old or complete-new) | {result.clean_failures} |",
            f"| **anything lost, mixed or half-written** (must be 0) | {result.lost_or_mixed} |",
            f"| failures without a clear provider error (must be 0) | {result.unclear_errors} |",
            f"| temporary files left behind (must be 0) | {result.temp_files_left} |",
            f"| `Retry-After: 1` answers, each followed by a wait (total {result.retry_after_seconds:.0f} s) | {result.retry_after_waits} |",
            f"| next request sooner than `Retry-After` asked (must be 0) | {result.retry_after_too_early} |",
            "",
            "Faults injected: " + ", ".join(f"{k} x{v}" for k, v in sorted(result.faults_injected.items())) + ".",
            "",
            "A failed run may already have replaced the days completed before the failure with their complete new "
            "version (each day is published atomically once all its buckets arrived; a part of a day is merged into "
            "the day's file and published in the same single step); no day is ever left half written or mixed. "
            "The retry wait of a page is capped by `max_retry_wait` and logged. Kills (SIGKILL) at every publishing "
            "step are covered by `tests/integration/test_publish_crash.py`.",
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
    return 0 if result.lost_or_mixed == result.unclear_errors == result.temp_files_left == result.retry_after_too_early == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
