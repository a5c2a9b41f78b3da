"""Headless Chromium from Debian's packages (`chromium`, `chromium-driver`), driven by selenium: how
the web view's browser tests and `make screenshots` open a browser.

Nothing here downloads a browser or a driver: both paths are Debian's, and selenium's own driver
manager does not run when the driver's path is given. `.ci/run` installs the two packages when
they are missing; elsewhere `missing()` says why no browser can start, and the tests skip.
"""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

CHROMIUM = Path("/usr/bin/chromium")
CHROMEDRIVER = Path("/usr/bin/chromedriver")
# Offline and quiet: no sandbox (CI runs as root), no GPU, no QUIC, no first-run, update, sync or
# background requests; a fresh profile each time.
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync")
PHONE = {"width": 390, "height": 844, "deviceScaleFactor": 2, "mobile": True}  # an iPhone 12-14's viewport


def missing() -> str | None:
    """Why no browser can be started here, in one line, or None."""
    absent = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if absent:
        return (f"{' and '.join(absent)} not installed: `apt-get install chromium chromium-driver` "
                "(.ci/run does) to run the web view's browser tests")
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed: `pip install -e .[dev]`"
    return None


@contextmanager
def chromium(width: int = 1280, height: int = 900) -> Iterator[Any]:
    """A headless Chromium (a selenium WebDriver) with a fresh profile, its console log readable
    with `get_log("browser")`; quit and its profile removed on exit."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    profile = tempfile.mkdtemp(prefix="chromium-profile-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}", f"--window-size={width},{height}"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(executable_path=str(CHROMEDRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


@contextmanager
def phone(driver: Any) -> Iterator[None]:
    """Within the block, `driver` renders pages as a phone 390 px wide would."""
    driver.execute_cdp_cmd("Emulation.setDeviceMetricsOverride", PHONE)
    try:
        yield
    finally:
        driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})
