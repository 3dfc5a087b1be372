"""The reid-serve page in a real browser: headless Debian chromium (chromium-driver, via Selenium) logs in, clicks a
track, sees the matches the gallery gives, and erases the track. Screenshots go under the test's tmp_path, and into
``$REID_SERVE_SCREENSHOTS`` when set (the guide's pictures: ``REID_SERVE_SCREENSHOTS=docs/guides/img``)."""

from __future__ import annotations

import os
import shutil
import socket
import threading
from pathlib import Path

import cv2
import numpy as np
import pytest

pytest.importorskip("fastapi")
uvicorn = pytest.importorskip("uvicorn")
webdriver = pytest.importorskip("selenium.webdriver")
from selenium.common.exceptions import StaleElementReferenceException  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from reid_sdk.gallery import Gallery  # noqa: E402
from reid_sdk.serve.app import create_app  # noqa: E402
from tests.serve_fixtures import ColourExtractor, build_served_gallery  # noqa: E402

CHROMIUM, DRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync", "--window-size=1400,900")
pytestmark = pytest.mark.skipif(not (CHROMIUM.exists() and DRIVER.exists()),
                                reason="needs Debian's chromium and chromium-driver (.ci/run installs them)")


@pytest.fixture()
def server(tmp_path):
    """The service on a free loopback port, run by uvicorn in a thread; yields (base URL, served gallery)."""
    served = build_served_gallery(tmp_path)
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    config = uvicorn.Config(create_app(served.settings, ColourExtractor()), log_level="warning")
    running = uvicorn.Server(config)
    thread = threading.Thread(target=running.run, kwargs={"sockets": [listener]}, daemon=True)
    thread.start()
    WebDriverWait(None, 120, poll_frequency=0.05).until(lambda _: running.started)
    yield f"http://127.0.0.1:{listener.getsockname()[1]}", served
    running.should_exit = True
    thread.join(30)
    listener.close()


@pytest.fixture()
def browser(tmp_path):
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=webdriver.ChromeService(executable_path=str(DRIVER)), options=options)
    yield driver
    driver.quit()


def _pictures_loaded(driver) -> bool:
    return driver.execute_script("return [...document.images].every((img) => img.complete && img.naturalWidth > 0)")


def _listed(driver) -> list[int]:
    """The entry ids of the listed matches, read in one script (the list may be re-rendering)."""
    return driver.execute_script("return [...document.querySelectorAll('li.match')].map((li) => +li.dataset.entry)")


def _listed_cameras(driver) -> set[str]:
    return set(driver.execute_script(
        "return [...document.querySelectorAll('li.match')].map((li) => li.textContent.split(' ')[1])"))


def _screenshot(driver, folder: Path, name: str) -> None:
    WebDriverWait(driver, 120).until(_pictures_loaded)
    driver.save_screenshot(str(folder / name))
    guide = os.environ.get("REID_SERVE_SCREENSHOTS")
    if guide:
        shutil.copy(folder / name, Path(guide) / name)


def test_log_in_click_a_track_see_its_matches_and_erase_it(server, browser, tmp_path):
    base, served = server
    wait = WebDriverWait(browser, 120, ignored_exceptions=(StaleElementReferenceException,))
    browser.get(base)
    browser.find_element(By.ID, "key").send_keys("admin.wrong")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(lambda d: d.find_element(By.ID, "login-error").text == "That key is not valid.")
    key = browser.find_element(By.ID, "key")
    key.clear()
    key.send_keys(served.admin_key)
    _screenshot(browser, tmp_path, "serve-login.png")
    browser.find_element(By.CSS_SELECTOR, "#login button").click()
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "button.track")) == 12)
    assert browser.find_element(By.ID, "who").text == "admin (admin)"

    gallery = Gallery.open(served.settings.gallery)
    own = sorted(i for i, row in gallery.rows(gallery.ids()).items() if row.camera == "c1" and row.track_id == 2)
    feature = gallery.vectors(own).mean(axis=0)
    expected = [m.entry_id for m in gallery.search(feature / np.linalg.norm(feature), k=12, exclude_camera="c1",
                                                   query_camera="c1") if m.entry_id not in own][:10]
    crop_matches = gallery.search(ColourExtractor().extract([cv2.imread(str(served.media / "c2_1_0.png"))])[0], k=10,
                                  cameras=["c1", "c2"])
    gallery.close()

    browser.find_element(By.CSS_SELECTOR, 'button.track[data-track="c1:2"]').click()
    wait.until(lambda d: len(_listed(d)) == 10)
    assert _listed(browser) == expected
    first = browser.find_element(By.CSS_SELECTOR, "li.match").text
    assert first.startswith("camera c") and "score" in first and "2026-01-01" in first
    _screenshot(browser, tmp_path, "serve-matches.png")

    browser.find_element(By.CSS_SELECTOR, '#camera-filter input[value="c3"]').click()  # search c1 and c2 only
    browser.find_element(By.CSS_SELECTOR, 'button.track[data-track="c1:2"]').click()
    wait.until(lambda d: _listed_cameras(d) == {"c2"})
    browser.find_element(By.ID, "crop").send_keys(str(served.media / "c2_1_0.png"))
    browser.find_element(By.CSS_SELECTOR, "#upload button").click()
    wait.until(lambda d: d.find_element(By.ID, "query-title").text == "Matches of c2_1_0.png"
               and len(_listed(d)) == len(crop_matches))
    assert _listed(browser) == [m.entry_id for m in crop_matches]
    browser.find_element(By.CSS_SELECTOR, 'button.track[data-track="c1:2"]').click()
    wait.until(lambda d: d.find_element(By.ID, "query-title").text == "Matches of c1:2"
               and len(_listed(d)) == 8)  # camera c2's entries

    browser.find_element(By.ID, "erase").click()
    wait.until(lambda d: d.switch_to.alert).accept()
    wait.until(lambda d: d.find_element(By.ID, "status").text == "Erased 2 entries.")
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "button.track")) == 11)
    assert not browser.find_elements(By.CSS_SELECTOR, 'button.track[data-track="c1:2"]')
    _screenshot(browser, tmp_path, "serve-erased.png")
    reopened = Gallery.open(served.settings.gallery)
    assert not set(own) & set(reopened.ids().tolist())
    reopened.close()
    assert {p.name for p in tmp_path.glob("serve-*.png")} == {"serve-login.png", "serve-matches.png",
                                                              "serve-erased.png"}
