"""The HTML report in a real headless Chromium: it renders, its charts exist, its script runs without a console error.

Needs Debian's `chromium` and `chromium-driver` and the `selenium` package (dev extra). Missing, the tests are skipped
on a developer's machine and fail in CI (CI=true), which installs them.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from robustprompt.evals._compare import compare
from robustprompt.evals._html import render_html
from tests.test_compare import YES, result, scored
from tests.test_report import HOSTILE

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")


def require(available: bool, what: str) -> None:
    if available:
        return
    message = f"{what} is missing: install it (apt-get install -y chromium chromium-driver; pip install selenium)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="module")
def browser(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    require(CHROMIUM.exists(), str(CHROMIUM))
    require(CHROMEDRIVER.exists(), str(CHROMEDRIVER))
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        require(False, "the selenium package")
        raise
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (
        "--headless=new",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-dev-shm-usage",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--no-first-run",
        f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}",
    ):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    # An explicit driver path: selenium then never tries to download a driver.
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_report(browser: Any, tmp_path: Path, page: str) -> list[dict[str, Any]]:
    """Load the page from a file and return the console entries it produced."""
    path = tmp_path / "report.html"
    path.write_text(page, encoding="utf-8")
    browser.get_log("browser")  # drop entries left by an earlier page
    browser.get(path.as_uri())
    entries: list[dict[str, Any]] = browser.get_log("browser")
    return entries


def errors(entries: list[dict[str, Any]]) -> list[str]:
    return [str(entry["message"]) for entry in entries if entry["level"] == "SEVERE"]


def count(browser: Any, selector: str, visible_only: bool = False) -> int:
    from selenium.webdriver.common.by import By

    found = browser.find_elements(By.CSS_SELECTOR, selector)
    return sum(1 for e in found if e.is_displayed()) if visible_only else len(found)


def regression_report() -> str:
    a = [*scored(40, wrong=set(range(4))), result("gone", YES, YES)]
    b = [*scored(40, wrong=set(range(16)), failed=frozenset({30})), result(HOSTILE, YES, YES, raw=HOSTILE)]
    return render_html(compare("demo:classify", "local:smollm2", a, "local:gemma3-270m", b))


def test_report_renders_with_charts_and_no_console_errors(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    entries = open_report(browser, tmp_path, regression_report())
    assert errors(entries) == []
    assert browser.title == "demo:classify: local:smollm2 → local:gemma3-270m"
    verdict = browser.find_element(By.ID, "verdict")
    assert verdict.is_displayed() and "B REGRESSES" in verdict.text and "accuracy fell" in verdict.text
    assert count(browser, "svg.chart") == 2
    assert count(browser, "#rate-chart rect.bar") == 6 and count(browser, "#rate-chart .whisker") == 6
    assert count(browser, "#agreement-chart rect.bar") == 1
    bar = browser.find_element(By.CSS_SELECTOR, "#rate-chart rect.bar")
    assert bar.size["height"] > 0 and bar.size["width"] > 0
    assert count(browser, "#metrics tbody tr") > 10
    # The hostile case id is shown as text, never run: no alert, no extra script or image.
    assert HOSTILE in browser.execute_script("return document.body.textContent")
    assert count(browser, "script") == 1 and count(browser, "img") == 0


def test_changed_cases_filter(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    entries = open_report(browser, tmp_path, regression_report())
    assert errors(entries) == []
    total = count(browser, "#changed tbody tr", visible_only=True)
    assert total == 13  # 12 answers lost on B and 1 failure
    Select(browser.find_element(By.ID, "kind-filter")).select_by_value("better")
    assert count(browser, "#changed tbody tr", visible_only=True) == 0
    assert browser.find_element(By.ID, "case-count").text == "0"
    Select(browser.find_element(By.ID, "kind-filter")).select_by_value("all")
    browser.find_element(By.ID, "case-filter").send_keys("failed:")
    assert count(browser, "#changed tbody tr", visible_only=True) == 1
    assert errors(browser.get_log("browser")) == []


def test_a_safe_report_without_changes_runs_its_script_cleanly(browser: Any, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By

    # Ten pairs: fewer cannot be judged (the default min pairs), and this page is about the verdict "no regression".
    same = [result(str(i), YES) for i in range(10)]
    page = render_html(compare("t", "A", same, "B", same))
    assert errors(open_report(browser, tmp_path, page)) == []
    assert "no regression" in browser.find_element(By.ID, "verdict").text
    assert count(browser, "svg.chart") == 2 and count(browser, "#rate-chart rect.bar") == 4


def test_console_errors_are_seen(browser: Any, tmp_path: Path) -> None:
    # The check above is only worth something if a failing script does show up as SEVERE.
    broken = "<!doctype html><title>x</title><script>undefinedFunction()</script>"
    assert any("undefinedFunction" in e for e in errors(open_report(browser, tmp_path, broken)))


def test_a_missing_browser_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install -y chromium chromium-driver"):
        require(False, "/usr/bin/chromium")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="apt-get install -y chromium chromium-driver"):
        require(False, "/usr/bin/chromium")
