"""The gallery in a real headless browser (Debian's chromium + chromium-driver through selenium): opened from a
file:// URL, from a copy of the folder, no console errors, every image decoded, the filters and sorting work."""

from __future__ import annotations

import shutil
import time

import pytest

from runner.report import write_report

from .conftest import METHODS, NAMES, TASKS

CHROMIUM, CHROMEDRIVER = shutil.which("chromium"), shutil.which("chromedriver")


@pytest.fixture(scope="module")
def browser():
    if CHROMIUM is None or CHROMEDRIVER is None:
        pytest.skip(
            "headless browser test needs Debian's chromium and chromium-driver "
            "(apt-get install -y chromium chromium-driver; .ci/run installs them)"
        )
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium is in the test extra")
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for arg in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--window-size=1200,800"):
        options.add_argument(arg)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=options)
    yield driver
    driver.quit()


def load(driver, path) -> None:
    driver.get(path.resolve().as_uri())
    for _ in range(100):  # until every image has finished loading (or failed)
        if driver.execute_script(
            "return document.readyState === 'complete' && [...document.images].every(i => i.complete)"
        ):
            return
        time.sleep(0.05)
    raise AssertionError("images did not finish loading")


def loaded_images(driver) -> tuple[int, int]:
    return driver.execute_script(
        "const im = [...document.images]; return [im.length, im.filter(i => i.naturalWidth > 0).length];"
    )


def test_gallery_in_headless_chromium(browser, synthetic_sweep, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import Select

    out = tmp_path / "report"
    write_report(synthetic_sweep, out)
    page = out / "gallery" / "index.html"
    assert "http" not in page.read_text().split("<body>")[0]  # nothing fetched from elsewhere

    load(browser, page)
    errors = [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")]
    assert errors == []
    items = len(TASKS) * len(NAMES)
    recons = len(METHODS) * items - 1  # the failed image has no restoration
    assert loaded_images(browser) == [2 * items + recons] * 2  # ground truth + measurement + each restoration
    assert len(browser.find_elements(By.CSS_SELECTOR, ".row")) == items

    Select(browser.find_element(By.ID, "task")).select_by_value("demo_tiny_adm / box_inpaint")
    rows = browser.find_elements(By.CSS_SELECTOR, ".row")
    assert len(rows) == len(NAMES) and {r.get_attribute("data-task") for r in rows} == {"box_inpaint"}
    # sort by DPS's PSNR, descending: the hand-written values grow with the image index
    sort = Select(browser.find_element(By.ID, "sort"))
    value = next(o.get_attribute("value") for o in sort.options if o.text == "PSNR of DPS")
    sort.select_by_value(value)
    names = [r.find_element(By.TAG_NAME, "b").text for r in browser.find_elements(By.CSS_SELECTOR, ".row")]
    assert names == NAMES[::-1]
    # hiding a method removes its column
    before = len(browser.find_elements(By.CSS_SELECTOR, "figure"))
    browser.find_element(By.CSS_SELECTOR, "input.method[value='t0m1']").click()
    assert len(browser.find_elements(By.CSS_SELECTOR, "figure")) == before - len(NAMES)
    assert browser.find_element(By.ID, "count").text == f"{len(NAMES)} images"

    copy = tmp_path / "elsewhere" / "gallery"  # the folder works on its own
    shutil.copytree(out / "gallery", copy)
    shutil.rmtree(out)
    load(browser, copy / "index.html")
    assert loaded_images(browser) == [2 * items + recons] * 2
    assert [e for e in browser.get_log("browser") if e["level"] in ("SEVERE", "ERROR")] == []
