"""A real browser: Debian's headless Chromium driven by Selenium against the
Procfile's Daphne, with a real bridge and worker. A client signs in, opens
/notifications/, an event is published, and the notification appears without
a reload within 2 s. The screenshot is kept in tests/artifacts/ (git-ignored).

Never skipped: without /usr/bin/chromium and /usr/bin/chromedriver this fails
(`make test` installs them, see devtools/browser.py).
"""

from __future__ import annotations

import os
import secrets
import tempfile
import time
from pathlib import Path

import pytest
from django.db import transaction

from core import events
from devtools import browser as system_browser
from tests import support

pytestmark = [pytest.mark.db, pytest.mark.slow]

FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1100,800")


@pytest.fixture
def chromium(tmp_path):
    assert not system_browser.missing(), (
        f"missing {system_browser.missing()}: apt-get install chromium chromium-driver "
        "(`make test` does it when run as root)")
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = system_browser.CHROMIUM
    for flag in FLAGS:
        options.add_argument(flag)
    profile = tempfile.mkdtemp(prefix="chromium-", dir=tmp_path)
    options.add_argument(f"--user-data-dir={profile}")
    service = Service(executable_path=system_browser.CHROMEDRIVER, log_output=str(tmp_path / "chromedriver.log"))
    driver = webdriver.Chrome(service=service, options=options)
    driver.set_page_load_timeout(30)
    try:
        yield driver
    finally:
        driver.quit()


def wait(driver, condition, timeout=10.0, what="condition"):
    from selenium.webdriver.support.ui import WebDriverWait

    return WebDriverWait(driver, timeout, poll_frequency=0.05).until(lambda d: condition(d), message=what)


def test_a_client_sees_a_notification_appear_live(tmp_path, redis_client, web_factory, make_user, chromium):
    from selenium.webdriver.common.by import By

    web = web_factory()
    bridge, worker = support.bridge(tmp_path), support.worker(tmp_path)
    try:
        bridge.wait_log(support.READY)
        worker.wait_log(support.WORKER_READY, timeout=60)
        password = secrets.token_urlsafe(12)
        client = make_user("client", password)
        with transaction.atomic():
            events.publish_event("notifications", "notification.created",
                                 {"user_id": client.pk, "title": "Welcome", "message": "Your account is ready",
                                  "kind": "account"})
        support.wait_for(lambda: client.notifications.exists(), timeout=30, what="the first notification")

        driver = chromium
        driver.get(f"{web.http}/notifications/")
        assert "/login/" in driver.current_url  # login required
        driver.find_element(By.ID, "id_username").send_keys("client")
        driver.find_element(By.ID, "id_password").send_keys(password)
        driver.find_element(By.CSS_SELECTOR, "form.login button[type=submit]").click()
        wait(driver, lambda d: d.current_url.endswith("/notifications/"), what="redirect to the page")
        wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-socket") == "live",
             what="the socket live")
        assert driver.find_element(By.ID, "unread").text == "1"
        assert [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#list .title")] == ["Welcome"]
        driver.execute_script("window.__noReload = true;")

        with transaction.atomic():
            events.publish_event("notifications", "notification.created",
                                 {"user_id": client.pk, "title": "Your cleaner is on the way",
                                  "message": "Maria accepted your job for Friday 10:00"})
        published = time.monotonic()
        wait(driver, lambda d: len(d.find_elements(By.CSS_SELECTOR, "#list .item")) == 2, timeout=2.0,
             what="the new notification within 2 s")
        appeared = time.monotonic() - published
        assert driver.execute_script("return window.__noReload === true;"), "no reload happened"
        titles = [e.text for e in driver.find_elements(By.CSS_SELECTOR, "#list .title")]
        assert titles == ["Your cleaner is on the way", "Welcome"]  # newest first
        wait(driver, lambda d: d.find_element(By.ID, "unread").text == "2", what="unread count 2")
        time.sleep(0.3)
        artifacts = Path(os.environ.get("ECLEAN_TEST_ARTIFACTS", tmp_path))
        shot = artifacts / "notifications-live.png"
        driver.save_screenshot(str(shot))
        assert shot.stat().st_size > 5_000
        print(f"notification appeared {appeared * 1000:.0f} ms after publish; screenshot {shot}")

        # Mark all read: the badge follows (the server answers the whole group).
        driver.find_element(By.ID, "mark-all").click()
        wait(driver, lambda d: d.find_element(By.ID, "unread").text == "0", what="unread count 0")
        assert not driver.find_elements(By.CSS_SELECTOR, "#list .item.unread")
        assert not client.notifications.filter(read=False).exists()

        # The visible reconnecting state, then live again after the server is back.
        web.stop()
        wait(driver, lambda d: d.find_element(By.ID, "status").text.startswith("reconnecting"), timeout=10,
             what="the reconnecting state")
        driver.save_screenshot(str(artifacts / "notifications-reconnecting.png"))
        web_factory(port=web.port)
        wait(driver, lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-socket") == "live",
             timeout=30, what="live again")
        assert len(driver.find_elements(By.CSS_SELECTOR, "#list .item")) == 2, "nothing shown twice"
    finally:
        bridge.stop()
        worker.stop()
