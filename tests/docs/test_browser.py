"""The demo in a real browser: headless Chromium posts through the form and sees the message.

Starts ``python -m examples.messages --port 0`` against the session's server
(a scratch database) exactly as ``./dev demo`` does, then drives
``/usr/bin/chromium`` through ``/usr/bin/chromedriver`` with Selenium: open
the board, post two messages through the form, and find each at the top of
the list after the redirect. Missing Chromium fails the test with the
install command; it is never skipped.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

import pytest

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"
TIMEOUT = 60.0
CHROME_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--no-proxy-server", "--window-size=1024,768",
)


def _pump(stream: IO[str], lines: queue.Queue[str | None]) -> None:
    for line in stream:
        lines.put(line)
    lines.put(None)


@pytest.fixture
def demo_url(scratch_uri: Callable[[str], str]) -> Iterator[str]:
    """The URL of a running ``python -m examples.messages`` on a free port; stopped after."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-m", "examples.messages", "--port", "0",
         "--mongodb-uri", scratch_uri("browser")],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    assert proc.stdout is not None
    lines: queue.Queue[str | None] = queue.Queue()
    threading.Thread(target=_pump, args=(proc.stdout, lines), daemon=True).start()
    output: list[str] = []
    deadline = time.monotonic() + TIMEOUT
    try:
        while not (match := re.search(r"running at (http://127\.0\.0\.1:\d+/)", "".join(output))):
            try:
                line = lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"the demo did not start in {TIMEOUT:.0f}s:\n{''.join(output)}")
            if line is None:
                pytest.fail(f"the demo exited early:\n{''.join(output)}")
            output.append(line)
        yield match[1]
    finally:
        proc.terminate()
        try:
            proc.wait(30)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        while (line := lines.get(timeout=10)) is not None:
            output.append(line)
    log = "".join(output)
    assert "BlockingCallWarning" not in log, f"the demo blocked its loop:\n{log}"
    assert "Traceback" not in log, log


@pytest.fixture
def browser(tmp_path: Path) -> Iterator[object]:
    """Headless Chromium via chromedriver, with a fresh profile; quit after."""
    missing = [p for p in (CHROMIUM, CHROMEDRIVER) if not shutil.which(p)]
    if missing:
        pytest.fail(f"{' and '.join(missing)} not found. ./dev test installs them where it can "
                    "(root or password-less sudo, with apt-get); here it could not. Install them "
                    "with `sudo apt-get install -y chromium chromium-driver`, "
                    "then re-run ./dev test")
    try:
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service
    except ImportError:
        pytest.fail("selenium is not installed: run ./dev test, or pip install -e '.[test]'")

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in (*CHROME_FLAGS, f"--user-data-dir={tmp_path / 'profile'}"):
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(TIMEOUT)
    try:
        yield driver
    finally:
        driver.quit()


# The newest message, read in one script call: no element handle outlives the document it came
# from, so a navigation between two WebDriver commands cannot strand one (Chromium then answers
# "Node with given id does not belong to the document", which Selenium does not map to a stale
# element).
NEWEST_JS = """
const li = document.querySelector("ol.messages > li");
if (!li) return null;
const text = (selector) => li.querySelector(selector).innerText.trim();
return [text(".meta strong"), text(".text")];
"""


def test_post_through_the_form_and_see_it_first(demo_url: str, browser: object) -> None:
    from selenium.common.exceptions import WebDriverException
    from selenium.webdriver.common.by import By
    from selenium.webdriver.remote.webdriver import WebDriver
    from selenium.webdriver.support.ui import WebDriverWait

    assert isinstance(browser, WebDriver)
    browser.get(demo_url)
    assert "Message board" in browser.title
    assert "No messages yet" in browser.find_element(By.TAG_NAME, "main").text
    redirected = WebDriverWait(browser, TIMEOUT, ignored_exceptions=(WebDriverException,))

    for author in ("ann", "bo"):
        text = f"hello from {author} {uuid.uuid4().hex[:8]}"
        browser.execute_script("window.motorpatchFormPage = true")  # only this document has it
        form = browser.find_element(By.CSS_SELECTOR, 'form[method="post"]')
        form.find_element(By.NAME, "author").send_keys(author)
        form.find_element(By.NAME, "text").send_keys(text)
        form.find_element(By.CSS_SELECTOR, 'button[type="submit"]').click()
        # post/redirect/get: the page the form was on goes away, the board loads again. Asked of
        # the window, not of an element handle: Chromium answers a handle into a document being
        # replaced with "Node with given id does not belong to the document", which Selenium
        # does not map to a stale element (it failed staleness_of in a clean-clone CI run); a
        # script run while the navigation swaps documents may fail the same way, and is retried.
        redirected.until(lambda b: b.execute_script(
            "return !window.motorpatchFormPage && document.readyState === 'complete'"))
        assert browser.current_url == demo_url
        assert browser.execute_script(NEWEST_JS) == [author, text]
        # back on the board page, with an empty form
        assert browser.find_element(By.NAME, "text").get_attribute("value") == ""

    items = browser.find_elements(By.CSS_SELECTOR, "ol.messages > li .meta strong")
    assert [i.text for i in items] == ["bo", "ann"]
