"""A page in headless Chromium (Debian's chromium and chromium-driver), through Selenium.

Used by tests/test_report_browser.py, and to take the README's screenshot the same way:

    python tests/browser.py reports/index.html docs/report.png

Chromium is a system package, not a pip one: `ensure_chromium()` installs it with apt-get when
it is missing (the tests run as root; CI's machines start without it).
"""

from __future__ import annotations

import contextlib
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Iterator

PACKAGES = ("chromium", "chromium-driver")
BINARIES = ("chromium", "chromedriver")


def ensure_chromium() -> tuple[str, str]:
    """(chromium, chromedriver) paths; installs the Debian packages when either is missing."""
    if not all(shutil.which(b) for b in BINARIES):
        if not shutil.which("apt-get"):
            raise RuntimeError(f"headless Chromium is needed: install {' and '.join(PACKAGES)} (no apt-get here)")
        install = ["apt-get", "install", "-y", "-q", "--no-install-recommends", *PACKAGES]
        env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
        # A fresh machine has no package lists yet: update only when the first try fails.
        if subprocess.run(install, env=env, capture_output=True, timeout=900).returncode != 0:
            subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900, check=True)
            done = subprocess.run(install, env=env, capture_output=True, text=True, timeout=900)
            if done.returncode != 0:
                raise RuntimeError(f"apt-get install {' '.join(PACKAGES)} failed:\n{done.stderr[-2000:]}")
    return shutil.which("chromium"), shutil.which("chromedriver")


@contextlib.contextmanager
def chromium(width: int = 1280, height: int = 1600) -> Iterator:
    """A headless Chromium driven by Selenium, console messages logged."""
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    binary, driver_path = ensure_chromium()
    options = webdriver.ChromeOptions()
    options.binary_location = binary
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", f"--window-size={width},{height}", "--hide-scrollbars"):
        options.add_argument(arg)  # --no-sandbox: Chromium refuses to sandbox as root
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def open_page(driver, page: Path) -> None:
    """Load the page and wait until every image has finished (loaded or failed)."""
    from selenium.webdriver.support.ui import WebDriverWait

    driver.get(Path(page).resolve().as_uri())
    WebDriverWait(driver, 30).until(lambda d: d.execute_script("return [...document.images].every(i => i.complete)"))


def broken_images(driver) -> list[str]:
    """The src of every image that did not load (naturalWidth 0)."""
    return driver.execute_script("return [...document.images].filter(i => !(i.naturalWidth > 0)).map(i => i.getAttribute('src'))")


def console_errors(driver) -> list[str]:
    """Console messages of level SEVERE (errors, failed loads) since the last call."""
    return [entry["message"] for entry in driver.get_log("browser") if entry["level"] == "SEVERE"]


def screenshot(page: Path, png: Path, width: int = 1280, height: int = 1500) -> None:
    with chromium(width, height) as driver:
        open_page(driver, page)
        png.parent.mkdir(parents=True, exist_ok=True)
        driver.save_screenshot(str(png))


if __name__ == "__main__":
    screenshot(Path(sys.argv[1]), Path(sys.argv[2]))
    print(f"wrote {sys.argv[2]}")
