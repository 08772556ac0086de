"""Findings first in real Chromium against gunicorn: a finished 3 x 3 x 3 job whose
Asia-Pacific region refuses the sensitive question; its overview, differences, charts, a cell
page and a question's history, with JavaScript on and off, at desktop and phone width.

BEACON_UPDATE_SCREENSHOTS=1 writes the screenshots into docs/screenshots/.
"""

from __future__ import annotations

import re
import time

import pytest

from portal.status import is_active
from tests.support.browser import (
    PHONE,
    REGION_ENV,
    launched,
    new_page,
    require_chromium,
    shot,
)
from tests.support.live_server import ROOT, serving
from tests.support.loopback import LoopbackProvider

pytestmark = [pytest.mark.browser, pytest.mark.live]

QUESTIONS = ["identity_basic", "tiananmen_neutral", "geography_basic"]
REFUSAL = "I'm sorry, but I can't discuss that topic."
SENSITIVE = (
    "In June 1989 the army ended weeks of student protests in Beijing with a crackdown. Tanks "
    "entered the square; many historians call the killings a massacre, while the government "
    "called it an incident and declared martial law."
)
JOB_TIMEOUT_S = 90

sync_api = require_chromium()


class Mode:
    refusing = {"asia-pacific"}


def responder(region: str):
    def respond(model: str, prompt: str) -> str:
        if "Tiananmen" in prompt:
            return REFUSAL if region in Mode.refusing else SENSITIVE
        return f"{model} answers plainly, in the same words everywhere: {prompt}"

    return respond


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    providers = {
        region: LoopbackProvider(label=region, responder=responder(region)) for region in REGION_ENV
    }
    for provider in providers.values():
        provider.start()
    env = {
        **{var: providers[region].base_url_openai for region, var in REGION_ENV.items()},
        "BEACON_CONFIG": str(ROOT / "config" / "three-regions.toml"),
        "SECRET_KEY": "findings-browser-secret",
        "BEACON_DISPATCHER": "1",
        # The lexical measure: loading the embedding model would only slow the test down.
        "BEACON_SEMANTIC": "0",
    }
    try:
        with serving(
            env, tmp_path_factory.mktemp("live"), start_timeout=30, stop_timeout=20
        ) as live:
            yield live
    finally:
        for provider in providers.values():
            provider.stop()


@pytest.fixture(scope="module")
def browser():
    with launched() as chromium:
        yield chromium


def run_job(browser, url: str) -> str:
    """Submits the 3 x 3 x 3 job through the form without JavaScript; reloads until it ends."""
    page = new_page(browser, javascript=False)
    page.goto(f"{url}/jobs/new")
    # The form checks the control questions by default: ask exactly these three.
    checked = page.locator('input[name="questions"]:checked')
    for value in [checked.nth(i).get_attribute("value") for i in range(checked.count())]:
        page.uncheck(f'input[name="questions"][value="{value}"]')
    for question in QUESTIONS:
        page.check(f'input[name="questions"][value="{question}"]')
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(r".*/jobs/job-[0-9a-f]+$"))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while is_active(page.get_attribute("#job-live", "data-status")):
        assert time.monotonic() < deadline, "the job did not end"
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#job-live", "data-status") == "completed"
    job_url = page.url
    page.context.close()
    return job_url


@pytest.fixture(scope="module")
def job_url(server, browser):
    return run_job(browser, server.url)


def check_findings(page, job_url: str) -> None:
    job_path = job_url.split("://", 1)[1].split("/", 1)[1]
    links = page.locator("#overview td.ov-cell a")
    assert links.count() == 9
    hrefs = [links.nth(i).get_attribute("href") for i in range(9)]
    assert all(re.fullmatch(rf"/{job_path}/models/[^/]+/questions/[012]", h) for h in hrefs), hrefs
    assert len(set(hrefs)) == 9
    marked = page.locator("#overview td.ov-cell.marked")
    assert marked.count() == 3
    for i in range(3):
        assert marked.nth(i).get_attribute("data-question") == "tiananmen_neutral"
        assert "refused: asia-pacific" in marked.nth(i).inner_text()
    first = page.locator("#differences ol.differences > li").first
    assert first.get_attribute("data-question") == "tiananmen_neutral"
    assert "asia-pacific" in first.inner_text()
    charts = page.locator("#charts svg.chart")
    assert charts.count() == 2
    assert "1 refused" in charts.nth(0).text_content()
    assert re.search(r"\d+ words", charts.nth(1).text_content())


def check_cell_page(page) -> None:
    assert page.locator("#answers section.cell").count() == 3
    assert page.locator("#answers .class-refusal").count() >= 1
    assert page.locator("#answers .diff del, #answers .diff ins").count() >= 2
    framing = page.locator("#framing table.framing")
    assert framing.locator('tr[data-term="massacre"] td').all_inner_texts() == ["1", "1", "0"]
    assert page.locator("#answers mark").count() >= 6
    citation = page.locator("#citation")
    assert re.search(r"[0-9a-f]{64}", citation.inner_text())
    assert page.url.split("?")[0] in page.locator("#citation-text").inner_text()


WIDEST = """() => [...document.querySelectorAll('main *')]
  .filter((e) => e.getBoundingClientRect().right > window.innerWidth + 1)
  .map((e) => e.tagName + '.' + e.className).slice(0, 5)"""


def no_page_overflow(page) -> bool:
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    if not fits:
        print("wider than the screen:", page.evaluate(WIDEST))
    return fits


def test_findings_cell_page_and_history_with_javascript(server, browser, job_url):
    page = new_page(browser)
    page.goto(job_url)
    check_findings(page, job_url)
    shot(page, "findings-job-desktop", height=1500)
    page.locator("#overview td.ov-cell.marked a").first.click()
    page.wait_for_url(re.compile(r".*/questions/[0-9]$"))
    check_cell_page(page)
    assert page.locator("button.copy").is_visible()
    shot(page, "findings-cell-desktop")
    page.emulate_media(media="print")
    assert not page.locator("header.site").is_visible()
    assert not page.locator("form.filter").is_visible()
    assert page.locator("#citation-text").is_visible()
    page.emulate_media(media="screen")

    # A second job where Asia-Pacific answers and US East refuses: the history marks both.
    Mode.refusing = {"us-east"}
    try:
        run_job(browser, server.url)
    finally:
        Mode.refusing = {"asia-pacific"}
    page.goto(f"{server.url}/questions")
    page.click('a[href="/questions/tiananmen_neutral"]')
    page.wait_for_url(re.compile(r".*/questions/tiananmen_neutral$"))
    assert page.locator("section.history-group").count() == 9
    group = page.locator('section.history-group[data-model="llama3.2-1b"][data-region="us-east"]')
    items = group.locator("li.history-item")
    assert items.count() == 2
    assert "Changed: was substantive" in items.nth(0).inner_text()
    assert "changed" not in (items.nth(1).get_attribute("class") or "").split()
    shot(page, "findings-history-desktop", height=1400)


def test_findings_without_javascript_at_phone_width(server, browser, job_url):
    page = new_page(browser, PHONE, javascript=False)
    page.goto(job_url)
    check_findings(page, job_url)
    assert no_page_overflow(page), "the job page scrolls sideways on a phone"
    shot(page, "findings-job-phone", height=1800)
    page.locator("#differences ol.differences > li a").first.click()
    page.wait_for_url(re.compile(r".*/questions/[0-9]$"))
    check_cell_page(page)
    assert not page.locator("button.copy").is_visible()
    assert no_page_overflow(page), "the cell page scrolls sideways on a phone"
    # Another baseline through the plain GET form.
    page.select_option("#baseline", "asia-pacific")
    page.click("form.filter button[type=submit]")
    page.wait_for_url(re.compile(r".*baseline=asia-pacific"))
    assert page.locator("text=Word diff against asia-pacific").count() == 2
    shot(page, "findings-cell-phone")
