"""Greetings, prompts, the directory and the Pikett number in a real browser (Debian's Chromium, headless, Selenium)
against a real ``ivr serve``: a user uploads a greeting and plays it back, an admin uploads a
prompt, and an admin adds, renames and removes a directory entry and sees ``ivr check``'s error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .conftest import WebServer
from .test_browser import EC, By, browser, log_in, pytestmark, saved_after, shots, wait  # noqa: F401 (fixtures)
from .test_uploads import wav

__all__ = ["pytestmark"]


def upload(driver: Any, file_input_id: str, button_id: str, path: Path) -> None:
    driver.find_element(By.ID, file_input_id).send_keys(str(path))
    driver.find_element(By.ID, button_id).click()


def test_a_user_uploads_a_greeting_and_plays_it_in_the_browser(
    browser: Any, web_server: WebServer, tmp_path: Path, shots: Path  # noqa: F811
) -> None:
    (tmp_path / "away.wav").write_bytes(wav(seconds=0.2, rate=16000, channels=1))
    (tmp_path / "notes.txt").write_text("not audio")
    log_in(browser, web_server, "202")
    browser.get(web_server.url + "/greetings")
    assert not browser.find_elements(By.ID, "file-201-busy")  # only their own mailbox
    upload(browser, "file-202-temporary", "upload-202-temporary", tmp_path / "notes.txt")
    error = wait(browser, EC.presence_of_element_located((By.ID, "error")))
    assert error.text == "not a WAV file (expected a RIFF/WAVE header)"
    saved_after(browser, lambda: upload(browser, "file-202-temporary", "upload-202-temporary", tmp_path / "away.wav"))
    player = browser.find_element(By.ID, "play-202-temporary")
    browser.execute_script("arguments[0].preload = 'auto'; arguments[0].load()", player)
    wait(browser, lambda d: d.execute_script("return arguments[0].readyState", player) >= 1)
    assert abs(browser.execute_script("return arguments[0].duration", player) - 0.2) < 0.02
    browser.execute_script("arguments[0].muted = true; arguments[0].play()", player)
    wait(browser, lambda d: d.execute_script("return arguments[0].currentTime", player) > 0.05)
    browser.save_screenshot(str(shots / "greetings.png"))
    saved_after(browser, browser.find_element(By.ID, "remove-202-temporary").click)
    assert not browser.find_elements(By.ID, "play-202-temporary")
    browser.get(web_server.url + "/greetings?lang=de")
    assert "Vorübergehend" in browser.find_element(By.TAG_NAME, "main").text


def test_an_admin_uploads_a_prompt_recording(browser: Any, web_server: WebServer, tmp_path: Path,  # noqa: F811
                                             shots: Path) -> None:  # noqa: F811
    (tmp_path / "bye.wav").write_bytes(wav(seconds=0.2, rate=8000, channels=1))
    log_in(browser, web_server, "100")
    browser.get(web_server.url + "/prompts")
    browser.find_element(By.CSS_SELECTOR, "#prompt-lang option[value=fr]").click()
    browser.find_element(By.ID, "prompt-id").send_keys("voicemail.leave.saved_goodbye")
    saved_after(browser, lambda: upload(browser, "prompt-file", "prompt-upload", tmp_path / "bye.wav"))
    ids = [e.text for e in browser.find_elements(By.CSS_SELECTOR, ".prompt-id")]
    assert "voicemail.leave.saved_goodbye" in ids
    assert (web_server.prompts / "fr" / "voicemail.leave.saved_goodbye.wav").is_file()
    browser.save_screenshot(str(shots / "prompts.png"))
    saved_after(browser, browser.find_element(By.ID, "remove-fr-voicemail.leave.saved_goodbye").click)
    assert not (web_server.prompts / "fr" / "voicemail.leave.saved_goodbye.wav").exists()


def test_an_admin_adds_renames_and_removes_a_directory_entry(browser: Any, directory_server: WebServer,  # noqa: F811
                                                             shots: Path) -> None:  # noqa: F811
    csv = directory_server.flow.parent / "staff.csv"
    log_in(browser, directory_server, "100")
    browser.get(directory_server.url + "/directory")
    lines = len(csv.read_text().splitlines())
    new = "staff-new"
    browser.find_element(By.ID, f"{new}-first_name").send_keys("Erika")
    browser.find_element(By.ID, f"{new}-last_name").send_keys("Graf")
    browser.find_element(By.ID, f"{new}-extension").send_keys("299")
    browser.find_element(By.ID, f"{new}-save").click()
    error = wait(browser, EC.presence_of_element_located((By.ID, "error")))
    assert error.text.startswith(f"staff.csv:{lines + 1}:1: error: Erika Graf: extension 299 is not in ivr.toml")
    browser.save_screenshot(str(shots / "directory-error.png"))
    browser.find_element(By.ID, f"{new}-first_name").send_keys("Erika")
    browser.find_element(By.ID, f"{new}-last_name").send_keys("Graf")
    browser.find_element(By.ID, f"{new}-extension").send_keys("202")
    saved_after(browser, browser.find_element(By.ID, f"{new}-save").click)
    line = lines + 1
    assert csv.read_text().splitlines()[-1].startswith("Erika Graf,Erika,Graf,202")
    last = browser.find_element(By.ID, f"staff-{line}-last_name")
    last.clear()
    last.send_keys("Graf-Huber")
    display = browser.find_element(By.ID, f"staff-{line}-display_name")
    display.clear()
    display.send_keys("Erika Graf-Huber")
    saved_after(browser, browser.find_element(By.ID, f"staff-{line}-save").click)
    assert csv.read_text().splitlines()[-1].startswith("Erika Graf-Huber,Erika,Graf-Huber,202")
    browser.save_screenshot(str(shots / "directory.png"))
    saved_after(browser, browser.find_element(By.ID, f"staff-{line}-remove").click)
    assert "Erika" not in csv.read_text()
    assert not browser.find_elements(By.ID, f"staff-{line}-save")


def test_a_user_goes_on_call_with_a_pikett_number(browser: Any, web_server: WebServer) -> None:  # noqa: F811
    log_in(browser, web_server, "201")
    field = browser.find_element(By.ID, "pikett")
    field.clear()
    field.send_keys("+41 79 700 12 01")
    saved_after(browser, browser.find_element(By.ID, "save-pikett").click)
    assert browser.find_element(By.ID, "pikett").get_attribute("value") == "+41797001201"
    assert web_server.client("201").get("/api/v1/extensions/201/pikett").json()["pikett"] == "+41797001201"
    saved_after(browser, browser.find_element(By.ID, "reset-pikett").click)
    assert browser.find_element(By.ID, "pikett").get_attribute("value") == ""
    browser.get(web_server.url + "/me?lang=de")
    assert "Pikett-Nummer" in browser.find_element(By.TAG_NAME, "main").text
