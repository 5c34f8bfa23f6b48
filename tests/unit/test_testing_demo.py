"""The demo's parts that need no Airflow run: its report of what landed (over a folder the real
operators landed from the fake API), the "next steps" commands (pasted into a real bash), its
Airflow settings and its port choice. ``make demo`` end to end: tests/integration/test_demo.py.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shlex
import socket
import subprocess
import sys
import warnings
from collections import defaultdict
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest
from conftest import DAY, FAKE_ORG, NOW, ORG_DIR, SENTINEL_KEY

from airflow_provider_openai_usage.endpoints import ENDPOINTS
from airflow_provider_openai_usage.testing import FakeOpenAIUsageAPI, demo
from airflow_provider_openai_usage.testing.data import day_start, parse_spike

START = NOW - 3 * DAY
TODAY = dt.date(2025, 11, 10)


@pytest.fixture(scope="module")
def landed(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict]:
    """Three days of costs per project, a projects snapshot and the FOCUS export, landed once by the
    real operators from the fake API; with what the hook itself reads, to check the report against."""
    from airflow_provider_openai_usage.hooks.usage import OpenAIUsageHook
    from airflow_provider_openai_usage.operators.directory import OpenAIDirectoryOperator
    from airflow_provider_openai_usage.operators.usage import OpenAICostsOperator

    output = tmp_path_factory.mktemp("demo-output")
    ctx = {"data_interval_start": pendulum.from_timestamp(START, tz="UTC"), "data_interval_end": pendulum.from_timestamp(NOW, tz="UTC")}
    with FakeOpenAIUsageAPI(key=SENTINEL_KEY, seed=7, now=NOW) as api, pytest.MonkeyPatch.context() as mp:
        mp.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", api.connection_json(organization_name=demo.DEMO_ACCOUNT_NAME))
        costs = OpenAICostsOperator(task_id="costs", group_by=["project_id"], output_path=output.as_uri()).execute(ctx)
        OpenAIDirectoryOperator(task_id="directory", entities=["projects"], output_path=output.as_uri(), replace_history=True).execute(ctx)
        focus = demo.write_focus(output, ctx["data_interval_start"], ctx["data_interval_end"])
        hook = OpenAIUsageHook()
        per_project: dict[str, Decimal] = defaultdict(Decimal)
        for row in hook.iter_rows("costs", START, NOW, group_by=["project_id"]):
            per_project[row["project_id"]] += row["amount_value"]
        names = {p["id"]: p["name"] for p in hook.iter_directory("projects")}
    yield {"output": output, "costs": costs, "focus": focus, "per_project": dict(per_project), "names": names,
           "report": demo._report(output).splitlines()}


def _line(report: list[str], first_word: str) -> list[str]:
    return next(line.split() for line in report if line.split()[:1] == [first_word])


def test_the_report_counts_days_empty_days_rows_and_files_as_the_operator_wrote_them(landed):
    report, costs = landed["report"], landed["costs"]
    assert report[0] == f"What landed in {landed['output']} (an empty day is a file with 0 rows: that day had no usage):"
    assert report[1].split() == ["endpoint", "organization", "days", "empty", "rows", "files"]
    organization, *numbers = _line(report, "costs")[1:]
    days, empty, rows, files = map(int, numbers)
    assert organization == FAKE_ORG == costs["organization_id"]
    assert days == len(costs["days"]) == 3
    assert empty == sum(1 for d in costs["days"].values() if d["rows"] == 0) >= 1  # the fake org has a quiet day here
    assert rows == costs["rows"] > 0
    assert files == sum(len(d["files"]) for d in costs["days"].values())
    listed = {line.split()[0] for line in report[2:] if line.startswith("  ") and line.split()[0] in ENDPOINTS}
    assert listed == {"costs"}, "only what landed is listed, per organization"


def test_costs_per_project_and_total_are_the_api_s_amounts_to_the_cent(landed):
    report, per_project = landed["report"], landed["per_project"]
    assert "Costs per organization and project, 2025-11-07 to 2025-11-09:" in report
    assert f"  {FAKE_ORG}" in report
    for project, amount in per_project.items():
        assert _line(report, project)[1:] == [str(amount.quantize(demo.CENT)), "usd"], project
    total = Decimal(landed["costs"]["totals"]["amount_value"])
    assert total == sum(per_project.values())
    assert _line(report, "organization")[1:] == ["total", str(total.quantize(demo.CENT)), "usd"]
    assert _line(report, "all")[1:] == ["organizations", str(total.quantize(demo.CENT)), "usd"]


def test_top_projects_are_ranked_by_cost_and_named_from_the_directory_snapshot(landed):
    report, per_project, names = landed["report"], landed["per_project"], landed["names"]
    start = report.index("    Top five projects by cost, named from the directory snapshot of 2025-11-10:")
    ranked = sorted(per_project, key=lambda p: -per_project[p])[:5]
    block = report[start + 1 : start + 1 + len(ranked)]
    assert len(block) == len(ranked) and block[-1] != report[-1]
    for rank, (line, project) in enumerate(zip(block, ranked, strict=True), 1):
        assert line.strip().startswith(f"{rank}. {names[project]} ") and line.endswith(f"   {project}"), line
        assert f" {per_project[project].quantize(demo.CENT)} usd" in line


def test_the_focus_line_matches_the_export_and_the_costs_total(landed):
    focus, line = landed["focus"], landed["report"][-1]
    billed = Decimal(focus["BilledCost"]).quantize(demo.CENT)
    assert line == f"FOCUS 1.2 (focus/{ORG_DIR}/): 3 days, {focus['rows']} rows, BilledCost {billed} usd (docs/focus.md)"
    assert billed == Decimal(landed["costs"]["totals"]["amount_value"]).quantize(demo.CENT)


def _pasted_env(lines: list[str], home: Path) -> dict[str, str]:
    """The environment a fresh bash has after the pasted ``export`` lines."""
    script = "\n".join(lines) + "\nenv -0\n"
    out = subprocess.run(["bash", "-c", script], env={"PATH": "/usr/bin:/bin", "HOME": str(home)},
                         capture_output=True, check=True, timeout=30).stdout.decode()
    return dict(item.split("=", 1) for item in out.split("\0") if item)


def test_next_steps_name_one_port_and_every_setting_the_demo_made(tmp_path, monkeypatch):
    workdir = tmp_path / "my demo"  # a space: every path must survive shell quoting
    dags, output = workdir / "dags", workdir / "demo-output"
    text = demo.next_steps(workdir, dags, output, TODAY)
    local, real_api = text.split("Then point the same DAGs at the real API")

    serve = next(line.strip() for line in local.splitlines() if " -m airflow_provider_openai_usage.testing serve " in line)
    argv = shlex.split(serve)
    assert argv[:4] == [sys.executable, "-m", "airflow_provider_openai_usage.testing", "serve"]
    options = dict(zip(argv[4::2], argv[5::2], strict=True))
    assert options["--seed"] == str(demo.DEMO_SEED) and options["--projects"] == str(demo.DEMO_PROJECTS)
    assert options["--spike"] == f"{demo.SPIKE_PROJECT}:2025-11-09:{demo.SPIKE_EVENTS}"
    assert parse_spike(options["--spike"]) == (demo.SPIKE_PROJECT, day_start(dt.date(2025, 11, 9)), demo.SPIKE_EVENTS)

    exports = [line.strip() for line in local.splitlines() if line.strip().startswith("export ")]
    env = _pasted_env(exports, tmp_path)
    conn = json.loads(env["AIRFLOW_CONN_OPENAI_USAGE_DEFAULT"])
    assert conn["host"] == f"http://127.0.0.1:{options['--port']}/v1"  # the port the server line starts on
    assert env["PATH"].split(":")[0] == str(Path(sys.executable).parent)

    # Every setting the demo gave Airflow, as the pasted shell has it.
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES",
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN", "OPENAI_USAGE_OUTPUT_PATH", "OPENAI_USAGE_SETTLE_MINUTES"):
        monkeypatch.setenv(key, "unset by the test")  # restored afterwards
    with warnings.catch_warnings():
        demo._configure_airflow(workdir, dags, output, verbose=True)
    set_by_demo = {k: os.environ[k] for k in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES",
                                              "OPENAI_USAGE_OUTPUT_PATH", "OPENAI_USAGE_SETTLE_MINUTES")}
    assert {k: env.get(k) for k in set_by_demo} == set_by_demo
    # Airflow's default database under that AIRFLOW_HOME is the one the demo migrated.
    assert os.environ["AIRFLOW__DATABASE__SQL_ALCHEMY_CONN"] == f"sqlite:///{env['AIRFLOW_HOME']}/airflow.db"

    assert "airflow dags test openai_usage_daily 2025-11-10   # lands 2025-11-09," in local
    assert "OPENAI_USAGE_OUTPUT_PATH=s3://my-bucket/openai" in real_api and "airflow dags test openai_usage_daily 2025-11-10" in real_api
    assert text.count("airflow connections test openai_usage_default") == 1


def test_quiet_unless_verbose_and_an_own_logging_level_is_kept(tmp_path, monkeypatch):
    for key in ("AIRFLOW_HOME", "AIRFLOW__CORE__DAGS_FOLDER", "AIRFLOW__CORE__LOAD_EXAMPLES", "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN",
                "OPENAI_USAGE_OUTPUT_PATH", "OPENAI_USAGE_SETTLE_MINUTES"):
        monkeypatch.setenv(key, "unset by the test")
    monkeypatch.setenv("AIRFLOW__LOGGING__LOGGING_LEVEL", "placeholder")  # recorded, so restored afterwards
    monkeypatch.delenv("AIRFLOW__LOGGING__LOGGING_LEVEL")
    with warnings.catch_warnings():
        demo._configure_airflow(tmp_path, tmp_path / "dags", tmp_path / "out", verbose=True)
        assert "AIRFLOW__LOGGING__LOGGING_LEVEL" not in os.environ
        demo._configure_airflow(tmp_path, tmp_path / "dags", tmp_path / "out", verbose=False)
        assert os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "WARNING"
        os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] = "DEBUG"
        demo._configure_airflow(tmp_path, tmp_path / "dags", tmp_path / "out", verbose=False)
        assert os.environ["AIRFLOW__LOGGING__LOGGING_LEVEL"] == "DEBUG"
    assert (tmp_path / ".demo-airflow").is_dir()


def test_a_taken_port_8000_gives_another_free_port():
    holder = socket.socket()
    try:
        holder.bind(("127.0.0.1", 8000))
        holder.listen()
    except OSError:
        pass  # someone else holds 8000: the fallback is what is tested either way
    try:
        port = demo._free_port()
        assert port != 8000
    finally:
        holder.close()
    with socket.socket() as s:
        s.bind(("127.0.0.1", port))  # it was free, so the printed serve command can start on it


def test_a_workdir_without_dags_uses_this_clone_s_dags_and_a_bad_dags_folder_is_named(tmp_path):
    from pathlib import Path

    clone_dags = Path(demo.__file__).resolve().parents[2] / "dags"
    assert demo._dags_folder(tmp_path, None) == clone_dags
    with pytest.raises(SystemExit, match=r"no folder with the shipped DAGs .* pass --dags PATH"):
        demo._dags_folder(tmp_path, tmp_path / "nowhere")


def test_writing_focus_outside_a_dag_does_not_trip_airflow_s_task_runner_warning(fake_api, conn_id, tmp_path, caplog, capsys, monkeypatch):
    """Airflow prints the warning through its own log setup (stdout), so both channels are read."""
    import pendulum

    from airflow_provider_openai_usage.operators.focus import OpenAIFocusOperator

    end = pendulum.datetime(2025, 11, 10, tz="UTC")
    OpenAIFocusOperator(task_id="plain", output_path=(tmp_path / "plain").as_uri(), start_time=end.subtract(days=1),
                        end_time=end, billing_account_name="X").execute({})
    plain = capsys.readouterr()
    assert "cannot be called outside of the Task Runner" in plain.out + plain.err + caplog.text, "the check must see it"
    caplog.clear()
    monkeypatch.setenv("AIRFLOW_CONN_OPENAI_USAGE_DEFAULT", fake_api.connection_json(organization_name=demo.DEMO_ACCOUNT_NAME))
    summary = demo.write_focus(tmp_path, end.subtract(days=2), end)
    demo_run = capsys.readouterr()
    assert len(summary["days"]) == 2
    assert "cannot be called outside of the Task Runner" not in demo_run.out + demo_run.err + caplog.text
