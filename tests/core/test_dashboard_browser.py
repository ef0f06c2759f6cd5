"""The dashboard in a real browser (headless Chromium driven by selenium): log in, the
overview's tables fill, a failed task's traceback and a worker's log open.

Set EMBER_DASHBOARD_SCREENSHOT=PATH to save the overview as a PNG (docs/img/dashboard.png
is made that way).
"""

from __future__ import annotations

import os
import re
import shutil
import sys
import tempfile
from types import SimpleNamespace
from typing import Any, Callable, Iterator

import httpx
import pytest

import ember
from ember.job_submission import JobSubmissionClient
from tests.conftest import assert_no_leaked_processes, wait_for

webdriver = pytest.importorskip("selenium.webdriver")
from selenium.webdriver.chrome.options import Options  # noqa: E402 (after the skip)
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402

pytestmark = [pytest.mark.timeout(180),
              pytest.mark.skipif(not (shutil.which("chromium") and shutil.which("chromedriver")),
                                 reason="needs Debian's chromium and chromium-driver")]

CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
                  "--disable-component-update", "--disable-sync", "--no-first-run",
                  "--window-size=1400,900"]


@ember.remote
def add(x: int, y: int) -> int:
    return x + y


@ember.remote(max_retries=0)
def explode(tag: str) -> None:
    raise ValueError(f"dashboard-boom {tag}")


@ember.remote
class Talker:
    def say(self, line: str) -> str:
        print(line, flush=True)
        return line


@pytest.fixture(scope="module")
def cluster() -> Iterator[SimpleNamespace]:
    if ember.is_initialized():
        ember.shutdown()
    info = ember.init(num_cpus=2, object_store_memory=64 << 20, dashboard_port=0)
    with open(os.path.join(info["session_dir"], "token")) as f:
        token = f.read().strip()
    assert ember.get([add.remote(i, i) for i in range(5)], timeout=60) == [0, 2, 4, 6, 8]
    with pytest.raises(ValueError, match="dashboard-boom"):
        ember.get(explode.remote("first"), timeout=60)
    talker = Talker.remote()
    assert ember.get(talker.say.remote("hello-from-the-actor-log"), timeout=60)
    yield SimpleNamespace(url=info.dashboard_url, token=token, talker=talker)
    ember.shutdown()
    assert_no_leaked_processes()


@pytest.fixture(scope="module")
def browser(cluster: SimpleNamespace) -> Iterator[Any]:
    """Chromium, closed before the cluster's teardown checks that no process is left."""
    profile = tempfile.mkdtemp(prefix="ember-chromium-")
    options = Options()
    options.binary_location = shutil.which("chromium")
    for flag in [*CHROMIUM_FLAGS, f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(shutil.which("chromedriver")), options=options)
    driver.set_page_load_timeout(30)
    yield driver
    driver.quit()
    shutil.rmtree(profile, ignore_errors=True)


def _page_until(browser: Any, url: str, ready: Callable[[], Any], what: str, timeout_s: float = 30) -> Any:
    """Load ``url`` until ``ready()`` holds (task events reach the head about once a second)."""
    def attempt() -> Any:
        browser.get(url)
        return ready()
    return wait_for(attempt, timeout_s=timeout_s, what=what, interval_s=0.3)


def _log_in(browser: Any, cluster: SimpleNamespace) -> None:
    browser.get(cluster.url + "/")
    assert "log in" in browser.title
    browser.find_element(By.ID, "token").send_keys(cluster.token)
    browser.find_element(By.ID, "login-button").click()
    wait_for(lambda: browser.find_elements(By.ID, "nodes"), what="the overview after logging in")


def _rows(browser: Any, table_id: str) -> list[Any]:
    return [r for r in browser.find_elements(By.CSS_SELECTOR, f"#{table_id} tbody tr")
            if not r.find_elements(By.CSS_SELECTOR, "td.muted")]


def test_the_overview_loads_and_its_tables_fill(browser: Any, cluster: SimpleNamespace) -> None:
    _log_in(browser, cluster)
    (node,) = _rows(browser, "nodes")
    assert "(head)" in node.text and "ALIVE" in node.text and "%" in node.text
    _page_until(browser, cluster.url + "/", lambda: "FINISHED" in browser.find_element(
        By.ID, "task-summary").text, "finished tasks in the overview's summary")
    shot = os.environ.get("EMBER_DASHBOARD_SCREENSHOT")
    if shot:
        browser.save_screenshot(shot)


def test_a_failed_tasks_traceback_opens(browser: Any, cluster: SimpleNamespace) -> None:
    _page_until(browser, cluster.url + "/tasks?state=FAILED", lambda: _rows(browser, "tasks"),
                "the failed task in the tasks table")
    row = _rows(browser, "tasks")[0]
    assert "explode" in row.text and "FAILED" in row.text
    row.find_element(By.TAG_NAME, "a").click()
    traceback = wait_for(lambda: browser.find_elements(By.ID, "traceback"), what="the traceback")[0]
    assert "ValueError" in traceback.text and "dashboard-boom first" in traceback.text
    assert "ember debug replay" in browser.find_element(By.ID, "replay").text


def test_the_tasks_table_pages_and_filters(browser: Any, cluster: SimpleNamespace) -> None:
    _page_until(browser, cluster.url + "/tasks?name=add&limit=2", lambda: len(_rows(browser, "tasks")) == 2,
                "a page of two add tasks")
    assert browser.find_element(By.ID, "pager-range").text == "1-2 of 5"
    browser.find_element(By.LINK_TEXT, "next").click()
    wait_for(lambda: browser.find_element(By.ID, "pager-range").text == "3-4 of 5", what="page two")
    assert all("add" in r.text for r in _rows(browser, "tasks"))


def test_a_workers_log_opens_and_searches(browser: Any, cluster: SimpleNamespace) -> None:
    _page_until(browser, cluster.url + "/actors?class_name=Talker", lambda: _rows(browser, "actors"),
                "the actor in the actors table")
    _rows(browser, "actors")[0].find_element(By.TAG_NAME, "a").click()
    wait_for(lambda: browser.find_elements(By.LINK_TEXT, "This actor's log"), what="the actor's page")
    log_url = browser.find_element(By.LINK_TEXT, "This actor's log").get_attribute("href")
    _page_until(browser, log_url, lambda: "hello-from-the-actor-log" in browser.find_element(
        By.ID, "log").text, "the actor's line in its worker's log")
    search = browser.find_element(By.ID, "log-search")
    search.send_keys("from-the-actor")
    search.submit()
    wait_for(lambda: browser.find_elements(By.CSS_SELECTOR, "#log mark"), what="the search hit marked")
    assert browser.find_element(By.CSS_SELECTOR, "#log mark").text == "from-the-actor"


def test_every_page_renders_and_a_bad_filter_is_a_400_that_says_why(cluster: SimpleNamespace) -> None:
    headers = {"authorization": f"Bearer {cluster.token}"}
    for path in ("/", "/jobs", "/tasks", "/actors", "/objects", "/placement_groups", "/logs", "/serve",
                 "/train", "/metrics", "/tasks/00ff", "/actors/00ff", "/logs/view?filename=nope.log",
                 "/api/jobs", "/api/actors", "/api/objects", "/api/workers", "/api/placement_groups"):
        r = httpx.get(cluster.url + path, headers=headers, timeout=30)
        assert r.status_code == 200, (path, r.status_code, r.text[-500:])
    followed = httpx.get(cluster.url + "/logs/view", params={"filename": "x.log", "refresh": 2}, headers=headers)
    assert '<meta http-equiv="refresh" content="2">' in followed.text
    bad = httpx.get(cluster.url + "/tasks", params={"state": "SLEEPING"}, headers=headers)
    assert bad.status_code == 400 and "SLEEPING" in bad.text and "RUNNING" in bad.text
    bad = httpx.get(cluster.url + "/api/tasks", params={"job_id": "not-hex"}, headers=headers)
    assert bad.status_code == 400 and "hex" in bad.json()["error"]
    bad = httpx.get(cluster.url + "/api/tasks", params={"limit": "many"}, headers=headers)
    assert bad.status_code == 400 and "limit" in bad.json()["error"]


def test_a_submitted_job_and_its_log_are_on_the_jobs_page(cluster: SimpleNamespace) -> None:
    headers = {"authorization": f"Bearer {cluster.token}"}
    head = next(n for n in ember.nodes() if n["IsHead"])
    client = JobSubmissionClient(f"127.0.0.1:{head['NodeManagerPort']}")
    sid = client.submit_job(entrypoint=f"{sys.executable} -c \"print('job-output-line')\"")
    wait_for(lambda: str(client.get_job_status(sid)).endswith("SUCCEEDED"), timeout_s=60,
             what="the submitted job to succeed")
    page = httpx.get(cluster.url + "/jobs", headers=headers).text
    row = re.search(r'<table id="submitted-jobs">.*?</table>', page, re.S).group(0)
    assert sid in row and "SUCCEEDED" in row
    log_href = re.search(r'href="(/logs/view\?[^"]*job-driver[^"]*)"', row).group(1).replace("&amp;", "&")
    assert "job-output-line" in httpx.get(cluster.url + log_href, headers=headers).text
