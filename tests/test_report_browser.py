"""The study page in a real browser: headless Chromium (tests/browser.py installs Debian's
chromium and chromium-driver when they are missing; the tests run as root).

The page is built by the report stage's code from the repository's committed outputs, then
opened from disk: every image must load (naturalWidth > 0), every experiment's section and
every claim's row must be there, and the console must stay free of errors. A control page with
a missing image shows that the checks can fail.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from browser import broken_images, chromium, console_errors, open_page
from configs import ROOT, compose
from reprodl import claims
from reprodl.report import EXPERIMENTS, Inputs, git_state, write_report

pytestmark = pytest.mark.browser


@pytest.fixture(scope="module")
def driver():
    with chromium() as d:
        yield d


@pytest.fixture(scope="module")
def page(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("page") / "reports"
    inputs = Inputs(metrics=ROOT / "metrics", timings=ROOT / "timings", reports=ROOT / "reports", plots=ROOT / "plots", seeds=ROOT / "seeds" / "seeds.json")
    write_report(compose().model_dump(mode="json"), inputs, git=git_state(ROOT), html_path=out / "index.html", md_path=out / "index.md")
    return out / "index.html"


def test_every_image_loads_and_the_console_is_clean(driver, page):
    console_errors(driver)  # drop what an earlier page logged
    open_page(driver, page)
    n_images = driver.execute_script("return document.images.length")
    assert n_images > 0
    assert broken_images(driver) == []
    assert console_errors(driver) == []


def test_every_experiment_and_claim_is_on_the_page(driver, page):
    open_page(driver, page)
    for exp in EXPERIMENTS:
        heading = driver.execute_script(f"const s = document.getElementById('{exp.key}'); return s && s.querySelector('h2').textContent")
        assert heading == exp.title
    rows = driver.execute_script("return [...document.querySelectorAll('tr[data-claim]')].map(r => [r.dataset.claim, r.dataset.status, r.offsetHeight])")
    assert [r[0] for r in rows] == [c.id for c in claims.CLAIMS]
    assert all(status in (claims.HOLDS, claims.FAILS, claims.NOT_RUN) for _, status, _ in rows)
    assert all(height > 0 for _, _, height in rows), "every claim row is rendered"


def test_the_checks_catch_a_missing_image_and_its_console_error(driver, tmp_path):
    control = tmp_path / "control.html"
    control.write_text('<!DOCTYPE html><html><body><img src="no-such-figure.png"></body></html>')
    console_errors(driver)
    open_page(driver, control)
    assert broken_images(driver) == ["no-such-figure.png"]
    assert any("no-such-figure.png" in message for message in console_errors(driver))
