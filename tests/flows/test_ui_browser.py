"""What an operator sees in the Prefect UI, in a real browser: the deployments, the custom-run form,
a night started from that form, its run page and every artifact it made.

Drives Debian's chromium through its chromedriver (selenium; no browser download). Skipped,
saying why, where either is missing: ``make browser-deps`` installs both when run as root, and
``make test`` (what CI runs) depends on it. A real server and worker run a real (tiny) nightly run
on the bundled sample, started from the form. Screenshots go to test-artifacts/ (ui-*.png, whole
pages); docs/ui.md says what each shows.
"""

from __future__ import annotations

import json
import shutil
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml

from deployments.serve import PREFECT_FILE, LocalPrefect
from flows.params import REPO_ROOT
from powercast.serving.publish import read_forecasts

pytestmark = [pytest.mark.browser, pytest.mark.prefect_server]

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
WINDOW_WIDTH, WINDOW_HEIGHT = 1400, 1400
MAX_SCREENSHOT_HEIGHT = 8000
CHROMIUM_FLAGS = (
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    f"--window-size={WINDOW_WIDTH},{WINDOW_HEIGHT}",
)
WAIT_S = 60
# The deployment page lists a new run only after the server has scheduled it and the page has
# polled again: under a loaded CI machine that took longer than WAIT_S once.
NEW_RUN_WAIT_S = 180
RUN_TIMEOUT_S = 240
METER = "sceaux_household"
# The second bold text of a report line ("**meter**: served by ... **model**"): the older UI renders
# bold as a div with a class, the newer as <strong>.
BOLD_SECOND = "(.//strong | .//*[contains(@class, 'markdown-renderer__text--strong')])[2]"
# The night's training on top of the tiny set-up (conftest's tiny_training): a year of readings (the
# bundled sample), each tiny network fitted once, in well under a minute on a busy 2-core machine
# (the pages are what this test is about).
TINY_NIGHT = {
    "prepare": {"split": {"mode": "trailing", "val_days": 7}},
    "train": {"ensemble_members": 1, "refit_on_validation": False, "cpu_threads": 1},
}


def _missing_browser() -> str | None:
    for path, package in ((CHROMIUM, "chromium"), (CHROMEDRIVER, "chromium-driver")):
        if not Path(path).is_file() and shutil.which(Path(path).name) is None:
            return f"{path} not found: install Debian's {package} (`make browser-deps` as root, or apt-get install it)"
    return None


@pytest.fixture()
def browser(tmp_path: Path) -> Iterator[Any]:
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


def _toml(sections: dict[str, Any], prefix: str = "") -> str:
    """Return ``sections`` as TOML (values JSON-encoded: numbers, strings, booleans and lists read the same)."""
    scalars = [f"{key} = {json.dumps(value)}" for key, value in sections.items() if not isinstance(value, dict)]
    text = (f"[{prefix}]\n" if prefix and scalars else "") + "".join(f"{line}\n" for line in scalars)
    for key, value in sections.items():
        if isinstance(value, dict):
            text += _toml(value, f"{prefix}.{key}" if prefix else key)
    return text


@pytest.fixture()
def tiny_config_file(tmp_path: Path, tiny_training: dict[str, Any]) -> Path:
    """A configuration file with the tiny training set-up (the form keeps it: its fields are left empty)."""
    from powercast.core.settings import TRAINING_SETTINGS

    sections: dict[str, Any] = json.loads(json.dumps(TINY_NIGHT))
    for key in TRAINING_SETTINGS:
        section, name = key.split(".")
        if name in tiny_training:
            sections.setdefault(section, {})[name] = tiny_training[name]
    path = tmp_path / "powercast.toml"
    path.write_text(_toml(sections), encoding="utf-8")
    return path


class Page:
    """The browser on the Prefect UI, with the waits and whole-page screenshots the test needs."""

    def __init__(self, driver: Any, ui_url: str, artifacts_dir: Path) -> None:
        from selenium.webdriver.support.ui import WebDriverWait

        self.driver, self.ui_url, self.artifacts_dir = driver, ui_url, artifacts_dir
        self.wait = WebDriverWait(driver, WAIT_S)

    def open(self, path: str, ready_xpath: str) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ready

        self.driver.get(f"{self.ui_url}{path}")
        return self.wait.until(ready.visibility_of_element_located((By.XPATH, ready_xpath)))

    def click(self, xpath: str) -> None:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ready

        self.wait.until(ready.element_to_be_clickable((By.XPATH, xpath))).click()

    def find(self, xpath: str, wait_s: float = WAIT_S) -> Any:
        from selenium.webdriver.common.by import By
        from selenium.webdriver.support import expected_conditions as ready
        from selenium.webdriver.support.ui import WebDriverWait

        wait = self.wait if wait_s == WAIT_S else WebDriverWait(self.driver, wait_s)
        return wait.until(ready.presence_of_element_located((By.XPATH, xpath)))

    def text(self) -> str:
        return str(self.driver.find_element("tag name", "body").text)

    def fits_the_window(self) -> bool:
        """Return whether the page needs no horizontal scrolling."""
        return bool(self.driver.execute_script(
            "return document.documentElement.scrollWidth <= document.documentElement.clientWidth"
        ))

    def screenshot(self, name: str) -> Path:
        """Save the whole page (the window grown to its height) as test-artifacts/<name>."""
        # The UI scrolls inside its own containers, not the document: take the tallest of them.
        height = self.driver.execute_script(
            "return Math.max(...Array.from(document.querySelectorAll('*'), element => element.scrollHeight))"
        )
        self.driver.set_window_size(WINDOW_WIDTH, min(max(int(height), WINDOW_HEIGHT), MAX_SCREENSHOT_HEIGHT))
        self.driver.execute_script("document.querySelectorAll('*').forEach(element => { element.scrollTop = 0; })")
        time.sleep(0.5)  # let the page lay itself out at the new size
        path = self.artifacts_dir / name
        self.driver.save_screenshot(str(path))
        self.driver.set_window_size(WINDOW_WIDTH, WINDOW_HEIGHT)
        return path


def field_input(page: Page, title: str, kind: str = "*[self::input or self::textarea]") -> Any:
    """Return the input of the form field titled ``title`` (the UI labels optional fields 'Title (Optional)')."""
    return page.find(f"//label[starts-with(normalize-space(), '{title}')]/following::{kind}[1]")


def wait_for_terminal_state(api: httpx.Client, flow_run_id: str) -> dict[str, Any]:
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while time.monotonic() < deadline:
        flow_run = api.get(f"/flow_runs/{flow_run_id}").json()
        if flow_run["state_type"] in {"COMPLETED", "FAILED", "CRASHED", "CANCELLED"}:
            return flow_run
        time.sleep(2)
    pytest.fail(f"flow run {flow_run_id} did not finish within {RUN_TIMEOUT_S} s")


def test_an_operator_starts_a_night_from_the_form_and_reads_its_story(
    browser: Any, prefect_worker: LocalPrefect, artifacts_dir: Path, tiny_config_file: Path, tmp_path: Path
) -> None:
    page = Page(browser, prefect_worker.ui_url, artifacts_dir)
    root = tmp_path / "root"
    run_name = f"browser-{uuid.uuid4().hex[:8]}"
    try:
        flow_run_id = _start_a_night_from_the_form(page, run_name, root, tiny_config_file)
        with httpx.Client(base_url=prefect_worker.api_url, timeout=30) as api:
            flow_run = wait_for_terminal_state(api, flow_run_id)
            made_by_the_run = {"artifacts": {"flow_run_id": {"any_": [flow_run_id]}}}
            artifacts = api.post("/artifacts/filter", json=made_by_the_run).json()
        assert flow_run["state_type"] == "COMPLETED", flow_run["state"]["message"]
        # The form sent what was typed and the concrete defaults, no empty setting (None) at all.
        assert flow_run["parameters"]["params"] == {
            "root": str(root), "config_file": str(tiny_config_file), "lock_timeout_s": 42, "meters": [],
            "force_retrain": False, "dry_run": False, "use_sample": True,
        }
        served = read_forecasts(str(root))["model_version"].iloc[0]
        _read_the_finished_run(page, flow_run_id)
        _read_every_artifact(page, artifacts, served)
    except Exception:
        page.screenshot("ui-failure.png")
        raise


def _start_a_night_from_the_form(page: Page, run_name: str, root: Path, config_file: Path) -> str:
    """Open the deployments, fill nightly-manual's custom-run form, submit it; return the new run's id."""
    from selenium.webdriver.common.keys import Keys

    expected = [deployment["name"] for deployment in yaml.safe_load(PREFECT_FILE.read_text())["deployments"]]
    nightly_manual = "//a[contains(@href, '/deployments/deployment/') and normalize-space()='nightly-manual']"
    page.open("/deployments", nightly_manual)
    ready = "//tr[.//a[normalize-space()='nightly-manual']]//*[normalize-space()='Ready']"
    deadline = time.monotonic() + WAIT_S
    while not page.driver.find_elements("xpath", ready) and time.monotonic() < deadline:
        time.sleep(3)  # the deployments are Ready once the worker polls the pool; the list does not refresh
        page.open("/deployments", nightly_manual)
    names = [
        link.text.strip()
        for link in page.driver.find_elements("xpath", "//a[contains(@href, '/deployments/deployment/')]")
        if link.text.strip()
    ]
    page.screenshot("ui-1-deployments.png")
    assert sorted(names) == sorted(expected) and len(set(names)) == len(names) == 5, names

    page.click(nightly_manual)
    page.click("//button[normalize-space()='Run']")
    page.click("//button[normalize-space()='Custom run']")
    page.find("//label[starts-with(normalize-space(), 'Use the bundled sample')]")
    # The breadcrumb names the flow it runs.
    page.wait.until(lambda driver: "Deployments\nnightly-manual\nRun" in page.text())
    form = page.text()
    assert "Property is type" not in form and "\nstr\nNone\n" not in form  # no type switch anywhere
    assert f"else var/ in the folder the deployment runs in: {REPO_ROOT / 'var'}" in form  # what empty means

    for title, value in (("Run Name", run_name), ("Data root", str(root)), ("Configuration file", str(config_file))):
        typed = field_input(page, title)
        typed.send_keys(Keys.CONTROL, "a")
        typed.send_keys(value)
    timeout = field_input(page, "Lock timeout (s)", "input[@type='number']")
    timeout.send_keys(Keys.CONTROL, "a")
    timeout.send_keys("42")
    page.click("//label[starts-with(normalize-space(), 'Use the bundled sample')]/following::label[@role='switch'][1]")
    page.screenshot("ui-2-custom-run-form.png")
    page.click("//button[@type='submit' and normalize-space()='Submit']")
    # The UI returns to the deployment page, which lists the new run by its name.
    run_link = page.find(f"//a[normalize-space()='{run_name}']", wait_s=NEW_RUN_WAIT_S)
    return str(run_link.get_attribute("href")).rstrip("/").rsplit("/", 1)[-1]


def _read_the_finished_run(page: Page, flow_run_id: str) -> None:
    """The run page and its Artifacts tab: every artifact belongs to the flow run, none to a task run."""
    page.open(f"/runs/flow-run/{flow_run_id}", "//*[normalize-space()='Completed']")
    time.sleep(2)  # the run graph is a canvas: nothing in the page says when it is drawn
    page.screenshot("ui-3-finished-run.png")
    page.click("//li[contains(@class, 'p-tab') and normalize-space()='Artifacts']")
    page.find("//*[normalize-space()='report-nightly']")
    tab = page.text()
    page.screenshot("ui-4-run-artifacts.png")
    # The tab's last two sections: the flow run's artifacts, then the task runs' (none).
    flow_run_section = tab[tab.rindex("\nFlow run\n"): tab.rindex("\nTask runs\n")]
    for key in ("report-nightly", "leaderboard-nightly", "nightly-forecast-plot-0", f"nightly-curves-{METER}"):
        assert key.replace("_", "-") in flow_run_section, flow_run_section
    assert tab.endswith("\nTask runs\nNone"), tab[-200:]


def _read_every_artifact(page: Page, artifacts: list[dict[str, Any]], served: str) -> None:
    """Open each artifact: the report names the served model, the leaderboard starts with the winner,
    the images render inside their artifact; no page scrolls sideways."""
    by_key = {artifact["key"]: artifact for artifact in artifacts}
    images = {"nightly-forecast-plot-0", f"nightly-curves-{METER.replace('_', '-')}"}
    assert set(by_key) == {"report-nightly", "leaderboard-nightly", *images}
    for key, artifact in sorted(by_key.items()):
        path = f"/artifacts/artifact/{artifact['id']}"
        if key.startswith("report-"):
            page.open(path, "//h1[starts-with(normalize-space(), 'nightly run')]")
            header = page.find(f"//li[starts-with(normalize-space(), '{METER}: served by')]")
            assert header.find_element("xpath", BOLD_SECOND).text == served
            assert "file://" not in page.driver.page_source
        elif key.startswith("leaderboard-"):
            page.open(path, "//table//tbody/tr")
            _assert_the_winner_leads(page)
        else:
            image = page.open(path, "//img[starts-with(@src, 'data:image/png;base64,')]")
            page.wait.until(lambda driver: driver.execute_script("return arguments[0].naturalWidth > 0", image))
            box = page.driver.execute_script(
                "const r = arguments[0].getBoundingClientRect(), p = arguments[0].closest('.artifact-data-markdown, "
                ".prose') || arguments[0].parentElement; const q = p.getBoundingClientRect(); "
                "return [r.width, r.right, q.right];",
                image,
            )
            assert box[0] > 300 and box[1] <= box[2] + 1, box  # drawn, and inside its artifact
            assert "Image URL" not in page.text()
        assert page.fits_the_window(), key
        page.screenshot(f"ui-5-artifact-{key}.png")
    # The UI's default entry point ("/") opens the newer UI: the report reads the same there.
    header = f"//li[starts-with(normalize-space(), '{METER}: served by')]"
    page.open(f"/v2/artifacts/artifact/{by_key['report-nightly']['id']}", header)
    assert page.find(header).find_element("xpath", BOLD_SECOND).text == served
    assert page.fits_the_window()
    page.screenshot("ui-6-report-in-the-v2-ui.png")


def _assert_the_winner_leads(page: Page) -> None:
    headers = [cell.text.strip() for cell in page.driver.find_elements("xpath", "//table//thead//th")]
    rows = [
        [cell.text.strip() for cell in row.find_elements("xpath", "./td")]
        for row in page.driver.find_elements("xpath", "//table//tbody/tr")
    ]
    column = {name: headers.index(name) for name in ("rank", "verdict", "val MAE kW")}
    assert rows[0][column["rank"]] == "1" and rows[0][column["verdict"]].startswith("★ winner"), rows[0]
    assert not any("winner" in row[column["verdict"]] for row in rows[1:])
    maes = [float(row[column["val MAE kW"]]) for row in rows]
    assert maes[0] == min(maes) and maes == sorted(maes)
