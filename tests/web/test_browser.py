"""The console in a real browser: Debian's Chromium, headless, driven by Selenium, against a real ``ivr serve``.

One browser for the module.  Screenshots of each page go to a folder under the test's temporary
folder (its path is printed); docs/console.md shows a few of them.
"""

from __future__ import annotations

import shutil
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import PASSWORDS, WebServer

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
pytestmark = [
    pytest.mark.slow, pytest.mark.peer,
    pytest.mark.skipif(not (CHROMIUM.exists() and DRIVER.exists()), reason="chromium and chromium-driver needed"),
]
FLAGS = ("--headless=new", "--no-sandbox", "--disable-dev-shm-usage", "--disable-gpu",
         "--disable-background-networking", "--no-first-run", "--disable-component-update", "--disable-sync",
         "--window-size=1200,900", "--autoplay-policy=no-user-gesture-required")


@pytest.fixture(scope="module")
def shots(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("screenshots")
    print(f"\nconsole screenshots: {folder}")
    return folder


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    profile = tempfile.mkdtemp(prefix="ivr-chromium-")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(DRIVER)), options=options)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def wait(driver: Any, condition: Any, timeout: float = 20.0) -> Any:
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(condition)


def saved_after(driver: Any, click: Any) -> None:
    """``click()`` a form's button and wait for the page it leads to to say saved: the notice of
    an earlier save, still on the page before the form is posted, does not count."""
    before = driver.find_element(By.TAG_NAME, "html")
    click()
    wait(driver, EC.staleness_of(before))
    wait(driver, EC.presence_of_element_located((By.ID, "saved")))


def log_in(driver: Any, server: WebServer, user: str) -> None:
    driver.delete_all_cookies()
    driver.get(server.url + "/login?lang=en")
    driver.find_element(By.ID, "username").send_keys(user)
    driver.find_element(By.ID, "password").send_keys(PASSWORDS[user])
    driver.find_element(By.ID, "login").click()
    wait(driver, EC.presence_of_element_located((By.CSS_SELECTOR, "header form[action='/logout']")))


def test_admin_sees_a_call_appear_on_the_dashboard_and_go(browser: Any, web_server: WebServer, sipp: Any,
                                                          shots: Path) -> None:
    log_in(browser, web_server, "100")
    browser.save_screenshot(str(shots / "dashboard-idle.png"))
    result: dict[str, Any] = {}
    caller = threading.Thread(target=lambda: result.update(run=sipp("long_call.xml", web_server.ivr)))
    caller.start()
    try:
        row = wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "#calls .call-id")))
        call_id = row.text
        assert browser.find_element(By.ID, "calls-up").text == "1"
        browser.save_screenshot(str(shots / "dashboard-call.png"))
    finally:
        caller.join(60)
    result["run"].check()
    assert call_id == result["run"].call_id
    wait(browser, EC.text_to_be_present_in_element((By.ID, "calls-up"), "0"))
    assert not browser.find_elements(By.CSS_SELECTOR, "#calls .call-id")


def test_deploying_a_broken_flow_shows_the_diagnostic_then_the_fixed_one_deploys(
    browser: Any, web_server: WebServer, shots: Path
) -> None:
    log_in(browser, web_server, "100")
    browser.get(web_server.url + "/flows")
    wait(browser, lambda d: d.execute_script("return document.getElementById('graph').naturalWidth") > 0)
    browser.save_screenshot(str(shots / "flows.png"))
    good = web_server.flow.read_text()
    browser.get(web_server.url + "/flows/office.ivr")
    editor = browser.find_element(By.ID, "source")
    broken = good.replace("    1 -> voicemail 201", "    1 -> voicemail_201")
    browser.execute_script("arguments[0].value = arguments[1]", editor, broken)
    browser.find_element(By.ID, "deploy").click()
    wait(browser, EC.presence_of_element_located((By.ID, "not-deployed")))
    diagnostic = browser.find_element(By.CSS_SELECTOR, "#result .diag.error").text
    assert diagnostic.startswith("office.ivr:18:10: error: "), diagnostic
    browser.save_screenshot(str(shots / "flow-error.png"))
    assert web_server.flow.read_text() == good
    browser.execute_script("arguments[0].value = arguments[1]", editor, good.replace("For Alice", "For Alice Johnson"))
    browser.find_element(By.ID, "check").click()
    wait(browser, EC.presence_of_element_located((By.ID, "ok")))
    browser.find_element(By.ID, "deploy").click()
    wait(browser, EC.presence_of_element_located((By.ID, "deployed")))
    assert browser.find_element(By.ID, "deployed").text == "Deployed and reloaded."
    assert "For Alice Johnson" in web_server.flow.read_text()


def test_the_night_switch_sends_the_next_call_to_the_night_branch(
    browser: Any, web_server: WebServer, sipp: Any, shots: Path
) -> None:
    log_in(browser, web_server, "100")
    browser.get(web_server.url + "/switches")
    browser.find_element(By.ID, "flip-night").click()
    wait(browser, EC.text_to_be_present_in_element((By.ID, "switch-night"), "on"))
    browser.save_screenshot(str(shots / "switches.png"))
    try:
        run = sipp("basic_caller_bye.xml", web_server.ivr)
        run.check()
        web_server.ivr.wait_for(lambda r: r.get("call_id") == run.call_id and r.get("event") == "ended")
        assert "closed" in web_server.ivr.steps(run.call_id)  # type: ignore[attr-defined]
        browser.get(web_server.url + "/journal?since=1h")
        wait(browser, EC.text_to_be_present_in_element((By.TAG_NAME, "main"), "closed"))
        browser.save_screenshot(str(shots / "journal.png"))
    finally:
        browser.get(web_server.url + "/switches")
        browser.find_element(By.ID, "flip-night").click()
        wait(browser, EC.text_to_be_present_in_element((By.ID, "switch-night"), "off"))


def test_a_user_sets_a_follow_me_number(browser: Any, web_server: WebServer, shots: Path) -> None:
    log_in(browser, web_server, "202")
    assert browser.current_url.endswith("/me")
    assert not browser.find_elements(By.CSS_SELECTOR, "header a[href='/flows']")  # no admin pages
    field = browser.find_element(By.ID, "follow-me")
    field.clear()
    field.send_keys("+41 79 765 43 21")
    saved_after(browser, browser.find_element(By.ID, "save").click)
    assert browser.find_element(By.ID, "follow-me").get_attribute("value") == "+41797654321"
    browser.save_screenshot(str(shots / "me.png"))
    browser.get(web_server.url + "/me?lang=de")
    assert "Follow-me-Nummern" in browser.find_element(By.TAG_NAME, "main").text
    browser.get(web_server.url + "/flows")
    assert "You may not see" in browser.page_source or "admin role" in browser.page_source


@pytest.mark.skipif(shutil.which("baresip") is None, reason="baresip (Debian baresip-core) is not installed")
def test_a_voicemail_left_by_a_baresip_call_plays_in_the_browser(
    browser: Any, web_server: WebServer, baresip: Any, tmp_path: Path, shots: Path
) -> None:
    import numpy as np
    import soundfile

    admin = web_server.client("100")
    assert admin.request("PUT", "/api/v1/switches/night", json_body={"on": True}).status == 200
    try:
        t = np.arange(10 * 8000) / 8000  # a 10 s hum: baresip hangs up when its microphone file ends
        soundfile.write(tmp_path / "mic.wav", (np.sin(2 * np.pi * 300 * t) * 3000).astype(np.int16), 8000)
        phone = baresip(tmp_path / "mic.wav")
        phone.command("dial", f"sip:+41435435570@{web_server.ivr.address}")  # type: ignore[attr-defined]
        phone.wait_event("CALL_ESTABLISHED")
        phone.wait_event("CALL_CLOSED", timeout=40)
    finally:
        admin.request("PUT", "/api/v1/switches/night", json_body={"on": False})
    log_in(browser, web_server, "100")
    browser.get(web_server.url + "/voicemail")
    player = wait(browser, EC.presence_of_element_located((By.CSS_SELECTOR, "audio[src*='/mailboxes/100/']")))
    browser.execute_script("arguments[0].preload = 'auto'; arguments[0].load()", player)
    wait(browser, lambda d: d.execute_script("return arguments[0].readyState", player) >= 1)  # WAV header read
    assert browser.execute_script("return arguments[0].duration", player) > 1.0
    browser.execute_script("arguments[0].muted = true; arguments[0].play()", player)
    wait(browser, lambda d: d.execute_script("return arguments[0].currentTime", player) > 0.2)
    browser.save_screenshot(str(shots / "voicemail.png"))
