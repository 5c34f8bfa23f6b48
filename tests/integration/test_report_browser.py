"""The spend report in a real browser: Debian's headless Chromium driven by selenium (chromedriver).

The page must open from a file:// URL with no console error and no request but its own, show its
three charts at the size they were drawn (and not blank), and print the partitions' sums.
"""

from __future__ import annotations

import datetime as dt
import io
import json
import shutil
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path

import pendulum
import pytest
from report_support import land, org_root, partition_sums, snapshot_directory

from airflow_provider_openai_usage.operators.report import OpenAISpendReportOperator
from airflow_provider_openai_usage.report import charts
from airflow_provider_openai_usage.report.spend import money

CHROMIUM, CHROMEDRIVER = "/usr/bin/chromium", "/usr/bin/chromedriver"
GAP = "2025-11-03"
WINDOW = 30
CTX = {"data_interval_start": pendulum.datetime(2025, 11, 9), "data_interval_end": pendulum.datetime(2025, 11, 10)}


@pytest.fixture(scope="module")
def browser() -> Iterator[object]:
    if not (Path(CHROMIUM).exists() and Path(CHROMEDRIVER).exists()):
        pytest.fail("Debian's chromium and chromium-driver are required: run `make system` as root (scripts/system-packages), or apt-get install -y chromium chromium-driver")
    from selenium import webdriver
    from selenium.webdriver.chrome.options import Options
    from selenium.webdriver.chrome.service import Service

    options = Options()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,900",
                "--force-device-scale-factor=1", "--no-first-run", "--disable-background-networking"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    try:
        yield driver
    finally:
        driver.quit()


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report")
    land(out.as_uri(), "2025-10-05", "2025-11-10")
    shutil.rmtree(org_root(out, "costs") / f"date={GAP}")
    snapshot_directory(out.as_uri(), "2025-11-10")  # the daily DAG's snapshot_directory runs before the report
    OpenAISpendReportOperator(task_id="report", output_path=out.as_uri(), days=WINDOW).execute(CTX)
    return out


def _requests(driver) -> list[str]:
    urls = []
    for entry in driver.get_log("performance"):
        message = json.loads(entry["message"])["message"]
        if message["method"] == "Network.requestWillBeSent":
            urls.append(message["params"]["request"]["url"])
    return urls


def test_report_renders_offline_with_charts_and_the_partition_sums(browser, report: Path, tmp_path: Path) -> None:
    from PIL import Image
    from selenium.webdriver.common.by import By

    page = report / "reports" / "date=2025-11-09" / "spend.html"
    url = page.as_uri()
    browser.get_log("performance"), browser.get_log("browser")  # start from empty logs
    browser.get(url)
    assert browser.execute_script("return document.readyState") == "complete"

    # Screenshot of the whole page (kept with the test's files for a human to look at).
    height = browser.execute_script("return document.documentElement.scrollHeight")
    browser.set_window_size(1200, height + 150)
    assert browser.save_screenshot(str(tmp_path / "report.png"))

    console = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "WARNING")]
    assert console == [], console
    assert _requests(browser) == [url], "the page fetched something besides itself"

    # Three charts, at the size matplotlib drew them (inches * 96 CSS px), and not blank.
    figures = {f.get_attribute("id"): f.find_element(By.TAG_NAME, "svg") for f in browser.find_elements(By.CSS_SELECTOR, "figure")}
    assert set(figures) == {"chart-daily", "chart-month", "chart-models"}
    sizes = {"chart-daily": charts.DAILY_SIZE, "chart-month": charts.MONTH_SIZE, "chart-models": charts.MODELS_SIZE}
    for name, svg in figures.items():
        width, height = sizes[name][0] * 96, sizes[name][1] * 96
        assert abs(svg.size["width"] - width) <= 1 and abs(svg.size["height"] - height) <= 1, (name, svg.size)
        image = Image.open(io.BytesIO(svg.screenshot_as_png)).convert("RGB")
        colors = image.getcolors(maxcolors=1 << 20)
        assert colors is not None and len(colors) > 20, f"{name} looks blank"
        white = max(count for count, rgb in colors if rgb == (255, 255, 255))
        assert white < 0.97 * image.width * image.height, f"{name} is nearly empty"

    # The tables print the partitions' sums: per day, the window, the month to date.
    oracle = partition_sums(org_root(report, "costs"))
    rows = browser.find_elements(By.CSS_SELECTOR, "#daily-table tbody tr")
    days_seen = 0
    for row in rows:
        cells = row.find_elements(By.TAG_NAME, "td")
        day, total = cells[0].text, cells[-1]
        if day == "total":
            window = [(dt.date(2025, 11, 9) - dt.timedelta(days=i)).isoformat() for i in range(WINDOW)]
            expected = sum((oracle.get(d, Decimal(0)) for d in window), Decimal(0))
            assert Decimal(total.get_attribute("data-exact")) == expected and total.text == money(expected, "usd")
            continue
        days_seen += 1
        if day == GAP:
            assert cells[1].text == "missing" and total.text == "n/a" and total.get_attribute("data-exact") is None
        else:
            assert Decimal(total.get_attribute("data-exact")) == oracle[day], day
            assert total.text == money(oracle[day], "usd")
    assert days_seen == WINDOW
    mtd = sum((v for k, v in oracle.items() if "2025-11-01" <= k <= "2025-11-09"), Decimal(0))
    assert browser.find_element(By.ID, "mtd-total").text == money(mtd, "usd")
    month_total = browser.find_element(By.CSS_SELECTOR, "#month-table tr.total td.num")
    assert Decimal(month_total.get_attribute("data-exact")) == mtd
    assert "Not landed (shown as gaps, not zeros): 2025-11-03" in browser.find_element(By.TAG_NAME, "body").text


def test_report_names_projects_and_shows_limits_from_the_landed_directory(browser, report: Path) -> None:
    """Names and spend limits come from what OpenAIDirectoryOperator landed, read back without our code."""
    import pyarrow.parquet as pq
    from selenium.webdriver.common.by import By

    projects = pq.read_table(org_root(report, "directory/projects") / "date=2025-11-10" / "data.parquet").to_pylist()
    limits = pq.read_table(org_root(report, "directory/project_spend_limits") / "date=2025-11-10" / "data.parquet").to_pylist()
    assert projects and limits, "the fake organization has projects and at least one spend limit"
    browser.get((report / "reports" / "date=2025-11-09" / "spend.html").as_uri())
    body = browser.find_element(By.TAG_NAME, "body").text
    assert "No spend limits known" not in body
    month = {r.find_elements(By.TAG_NAME, "td")[0].text: r for r in browser.find_elements(By.CSS_SELECTOR, "#month-table tbody tr")}
    for project in projects:
        if project["name"] and any(f"({project['id']})" in label for label in month):
            assert f"{project['name']} ({project['id']})" in month, (project, list(month))
    named = [label for label in month if "(" in label]
    assert named, f"no project in the month table carries its directory name: {list(month)}"
    names = {p["id"]: p["name"] for p in projects}
    shown = 0
    for limit in limits:  # the API's threshold_amount is in cents (spec: "The hard spend limit amount, in cents")
        label = f"{names[limit['project_id']]} ({limit['project_id']})" if names.get(limit["project_id"]) else limit["project_id"]
        if label in month:
            expected = money(Decimal(limit["threshold_amount"]) / 100, limit["currency"].lower())
            assert month[label].find_elements(By.TAG_NAME, "td")[2].text == expected, (label, expected)
            shown += 1
    assert shown, "no project shows the spend limit its directory snapshot holds"
