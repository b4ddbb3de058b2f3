"""Debian's headless Chromium driven by Selenium, for the pages the project writes (report, viewer).

Without Chromium the tests that use it fail, with the command that installs it: they are the only
check that the pages really work.
"""

from __future__ import annotations

from pathlib import Path

import pytest

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
"""Screenshots the tests keep (git-ignored)."""

WEBGL = ("--use-angle=swiftshader", "--enable-unsafe-swiftshader")
"""WebGL2 through SwiftShader, the CPU implementation Chromium ships: no GPU needed."""


def chromium(*arguments: str, window: str = "1280,2400"):
    """A headless Chromium WebDriver that keeps the page's console log; the caller quits it."""
    missing = [path for path in (CHROMIUM, CHROMEDRIVER) if not Path(path).exists()]
    if missing:
        pytest.fail(
            f"{', '.join(missing)} missing: the page tests need Debian's Chromium; install it with "
            "`sh scripts/system-packages.sh` (README's test command runs it)",
            pytrace=False,
        )
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--disable-dev-shm-usage",
        f"--window-size={window}",
        "--mute-audio",
        "--disable-background-networking",
        "--disable-component-update",
        *arguments,
    ):
        options.add_argument(argument)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    return driver
