"""The Prefect UI in a real browser: find a deployment, fill its custom-run form, start the run.

Drives Debian's chromium through its chromedriver (selenium; no browser download). Skipped,
saying why, where either is missing: ``make browser-deps`` installs both when run as root, and
``make test`` (what CI runs) depends on it. Screenshots go to test-artifacts/.
"""

from __future__ import annotations

import shutil
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from deployments.serve import LocalPrefect

pytestmark = [pytest.mark.browser, pytest.mark.prefect_server]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--window-size=1400,1400",
)
WAIT_S = 60


def _missing_browser() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file() and shutil.which(Path(path).name) is None:
            return f"{path} not found: install Debian's {package} (`make browser-deps` as root, or apt-get install it)"
    return None


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[object]:
    """A headless chromium with a fresh profile, driven through chromedriver."""
    missing = _missing_browser()
    if missing:
        pytest.skip(missing)
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM if Path(CHROMIUM).is_file() else str(shutil.which("chromium"))
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={tmp_path / 'chromium-profile'}"):
        options.add_argument(flag)
    driver_path = CHROMEDRIVER if Path(CHROMEDRIVER).is_file() else str(shutil.which("chromedriver"))
    driver = webdriver.Chrome(service=Service(driver_path), options=options)
    try:
        yield driver
    finally:
        driver.quit()


def test_custom_run_started_from_the_ui_form_reaches_the_api(
    browser: object, prefect_server: LocalPrefect, artifacts_dir: Path
) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support import expected_conditions as ready
    from selenium.webdriver.support.ui import WebDriverWait

    driver = browser
    wait = WebDriverWait(driver, WAIT_S)
    run_name = f"browser-{uuid.uuid4().hex[:8]}"

    def field_input(label: str, input_type: str) -> object:
        return wait.until(
            ready.element_to_be_clickable(
                (
                    By.XPATH,
                    f"//label[starts-with(normalize-space(), '{label}')]/following::input[@type='{input_type}'][1]",
                )
            )
        )

    try:
        driver.get(f"{prefect_server.ui_url}/deployments")
        deployment_link = "//a[contains(@href, '/deployments/deployment/') and normalize-space()='forecast']"
        wait.until(ready.element_to_be_clickable((By.XPATH, deployment_link))).click()
        wait.until(ready.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Run']"))).click()
        wait.until(ready.element_to_be_clickable((By.XPATH, "//button[normalize-space()='Custom run']"))).click()
        wait.until(ready.url_contains("/run"))

        name_input = field_input("Run Name", "text")
        name_input.send_keys(Keys.CONTROL, "a")
        name_input.send_keys(run_name)
        timeout_input = field_input("Lock timeout (s)", "number")
        timeout_input.send_keys(Keys.CONTROL, "a")
        timeout_input.send_keys("42")
        dry_run = driver.find_element(
            By.XPATH, "//label[starts-with(normalize-space(), 'Dry run')]/following::input[@type='checkbox'][1]"
        )
        driver.execute_script("arguments[0].click();", dry_run)
        driver.save_screenshot(str(artifacts_dir / "ui-custom-run-form.png"))
        driver.find_element(By.XPATH, "//button[@type='submit' and normalize-space()='Submit']").click()
        # The UI returns to the deployment page, which lists the new run by its name.
        wait.until(ready.visibility_of_element_located((By.XPATH, f"//a[normalize-space()='{run_name}']")))
        driver.save_screenshot(str(artifacts_dir / "ui-custom-run-started.png"))
    except Exception:
        driver.save_screenshot(str(artifacts_dir / "ui-custom-run-failure.png"))
        raise

    with httpx.Client(base_url=prefect_server.api_url, timeout=30) as api:
        runs = api.post("/flow_runs/filter", json={"flow_runs": {"name": {"any_": [run_name]}}}).json()
        deployment = api.get("/deployments/name/forecast/forecast").json()
        for run in runs:
            api.delete(f"/flow_runs/{run['id']}")
    assert len(runs) == 1
    assert runs[0]["deployment_id"] == deployment["id"]
    assert runs[0]["parameters"]["params"]["lock_timeout_s"] == 42
    assert runs[0]["parameters"]["params"]["dry_run"] is True
