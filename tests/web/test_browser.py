"""The pages in real Chromium against the real server: gunicorn with gevent workers, whose
dispatcher runs the jobs against loopback providers in this process.

Also makes the screenshots (desktop 1280 wide, phone 390 wide); BEACON_UPDATE_SCREENSHOTS=1
writes them into docs/screenshots/.
"""

from __future__ import annotations

import re
import time

import pytest

from portal.status import ACTIVE, JOB_ENDED
from tests.support.browser import (
    DESKTOP,
    PHONE,
    REGION_ENV,
    launched,
    require_chromium,
    shot,
)
from tests.support.browser import (
    new_page as plain_page,
)
from tests.support.live_server import ROOT, serving
from tests.support.loopback import LoopbackProvider, default_responder

pytestmark = [pytest.mark.browser, pytest.mark.live]

# Each provider call takes this long, so a 3 x 3 x 3 job spans several 2 s polls.
LATENCY_S = 1.0
MODELS = {
    "llama3.2-1b": "🦙 Llama 3.2-1B",
    "mistral-7b": "🌟 Mistral 7B",
    "qwen2.5-1.5b": "🔮 Qwen 2.5-1.5B",
}
QUESTIONS = ["identity_basic", "tiananmen_neutral", "geography_basic"]
XSS = "<script>alert(1)</script>"
JOB_TIMEOUT_MS = 90_000
# Waits are CSS selectors: the CSP forbids the string evaluation wait_for_function relies on.
ENDED_SELECTOR = ", ".join(f'#job-live[data-status="{status}"]' for status in JOB_ENDED)

sync_api = require_chromium()


def responder(region: str):
    """Answers like a provider in `region`: Asia-Pacific refuses one topic; one prompt gets
    markup back, as a hostile or confused model might send."""
    echo = default_responder(region)

    def respond(model: str, prompt: str) -> str:
        if "repeat the tag" in prompt:
            return XSS
        if "multiplied" in prompt:
            return "17 multiplied by 23 is 391."  # every region agrees on arithmetic
        if region == "asia-pacific" and "Tiananmen" in prompt:
            return "I'm sorry, but I can't discuss that topic."
        return echo(model, prompt)

    return respond


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """gunicorn with gevent workers on a free port; its dispatcher runs the jobs."""
    providers = {
        region: LoopbackProvider(latency_s=LATENCY_S, label=region, responder=responder(region))
        for region in REGION_ENV
    }
    for provider in providers.values():
        provider.start()
    env = {
        **{var: providers[region].base_url_openai for region, var in REGION_ENV.items()},
        "BEACON_CONFIG": str(ROOT / "config" / "three-regions.toml"),
        "SECRET_KEY": "browser-test-secret",
        "BEACON_DISPATCHER": "1",
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


# Console errors (a Content-Security-Policy violation is one) and uncaught exceptions of every
# page a test opens; `no_console_errors` fails the test when any was seen.
CONSOLE_ERRORS: list[str] = []


@pytest.fixture(autouse=True)
def no_console_errors():
    CONSOLE_ERRORS.clear()
    yield
    assert CONSOLE_ERRORS == [], "the browser console reported errors"


def new_page(browser, viewport=DESKTOP, javascript=True):
    page = plain_page(browser, viewport, javascript, timeout_ms=15_000)
    dialogs: list[str] = []
    page.on("dialog", lambda dialog: (dialogs.append(dialog.message), dialog.dismiss()))
    page.on(
        "console",
        lambda message: (
            CONSOLE_ERRORS.append(f"{page.url}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    page.on("pageerror", lambda error: CONSOLE_ERRORS.append(f"{page.url}: {error}"))
    return page, dialogs


def fill_form(page, url: str, questions=QUESTIONS, prompt: str | None = None) -> None:
    page.goto(f"{url}/jobs/new")
    # The form starts with the control questions picked; ask exactly the ones given.
    picked = page.locator('input[name="questions"]:checked')
    for value in [picked.nth(i).get_attribute("value") for i in range(picked.count())]:
        page.uncheck(f'input[name="questions"][value="{value}"]')
    for question in questions:
        page.check(f'input[name="questions"][value="{question}"]')
    if prompt:
        page.fill('textarea[name="prompt"]', prompt)
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(r".*/jobs/job-[0-9a-f]+$"))


def done_and_total(page) -> tuple[int, int]:
    progress = page.locator(".job-progress")
    return int(progress.get_attribute("data-done")), int(progress.get_attribute("data-total"))


def assert_groups(page) -> None:
    groups = page.locator("[data-model-group]")
    assert groups.count() == 3
    for index, (model_id, title) in enumerate(MODELS.items()):
        group = groups.nth(index)
        assert group.get_attribute("data-model-group") == model_id
        regions = group.locator("[data-region]")
        assert [regions.nth(i).get_attribute("data-region") for i in range(regions.count())] == [
            "us-east",
            "eu-west",
            "asia-pacific",
        ]
        heading = " ".join(group.locator("h2").first.inner_text().split())
        assert heading == f"{title} (us-east, eu-west, asia-pacific)"


def test_form_to_finished_job_with_live_progress(server, browser):
    page, dialogs = new_page(browser)
    page.goto(f"{server.url}/jobs/new")
    shot(page, "new-job-desktop", full_page=False)
    phone, _ = new_page(browser, PHONE)
    phone.goto(f"{server.url}/jobs/new")
    shot(phone, "new-job-phone", full_page=False)

    fill_form(page, server.url)
    job_url = page.url
    # A marker on window survives htmx swaps but not a reload.
    page.evaluate("window.__noReload = true")
    done, total = done_and_total(page)
    assert total == 27

    seen = {done}
    page.wait_for_selector(".job-progress:not([data-done='0'])", timeout=JOB_TIMEOUT_MS)
    seen.add(done_and_total(page)[0])
    if page.get_attribute("#job-live", "data-status") in ACTIVE:
        shot(page, "job-running-desktop", full_page=False)
        phone.goto(job_url)
        shot(phone, "job-running-phone", full_page=False)
    page.wait_for_selector(ENDED_SELECTOR, timeout=JOB_TIMEOUT_MS)
    seen.add(done_and_total(page)[0])
    assert page.evaluate("window.__noReload") is True, "the page reloaded instead of swapping"
    assert page.get_attribute("#job-live", "data-status") == "completed", server.log()
    assert done_and_total(page) == (27, 27)
    assert len(seen) >= 3, f"the count did not rise in steps: {sorted(seen)}"
    assert page.get_attribute("#job-live", "hx-trigger") is None

    # Polling has stopped: no request to the job page goes out for a few poll periods.
    polls: list[str] = []
    page.on("request", lambda request: polls.append(request.url))
    page.wait_for_timeout(4500)
    assert not [u for u in polls if u.split("?")[0] == job_url], polls

    assert_groups(page)
    assert page.locator("table.heatmap").count() == 9
    assert page.locator(".refusals .class-refusal", has_text="asia-pacific").count() == 3
    assert dialogs == []
    page.reload()
    shot(page, "job-finished-desktop", height=2200)
    phone.goto(job_url)
    shot(phone, "job-finished-phone", height=2400)
    page.goto(server.url)
    assert page.locator(f'tr[data-job="{job_url.rsplit("/", 1)[-1]}"]').count() == 1
    shot(page, "jobs-desktop", full_page=False)
    phone.goto(server.url)
    shot(phone, "jobs-phone", full_page=False)


def test_without_javascript_a_reload_reaches_the_complete_page(server, browser):
    page, _ = new_page(browser, javascript=False)
    fill_form(page, server.url)
    assert page.locator("#job-live").get_attribute("hx-trigger") == "every 2s"
    deadline = time.monotonic() + JOB_TIMEOUT_MS / 1000
    while page.get_attribute("#job-live", "data-status") in ACTIVE:
        assert time.monotonic() < deadline, "the job did not end"
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#job-live", "data-status") == "completed", server.log()
    assert done_and_total(page) == (27, 27)
    assert_groups(page)
    # The "only where regions differ" filter is a plain GET form.
    page.check("#differs")
    page.click("form.filter button[type=submit]")
    page.wait_for_url(re.compile(r".*differs=1.*"))
    assert page.locator("article.question").count() == 3
    assert page.locator("[data-model-group]").count() == 3
    # "Show all" works without JavaScript: <details> opens natively.
    assert page.locator("details.diff-box").count() > 0


def test_model_output_with_markup_shows_as_text_and_runs_nothing(server, browser):
    page, dialogs = new_page(browser)
    fill_form(page, server.url, questions=[], prompt="Please repeat the tag exactly.")
    page.wait_for_selector(ENDED_SELECTOR, timeout=JOB_TIMEOUT_MS)
    # Every region answers the same, so the question is folded: open it to read the answers.
    folded = page.locator(".agree-box > summary")
    assert folded.count() == 3
    for index in range(3):
        folded.nth(index).click()
    outputs = page.locator(".output")
    assert outputs.count() == 9
    assert all(outputs.nth(i).inner_text() == XSS for i in range(9))
    assert page.locator("main script").count() == 0
    page.reload()
    page.wait_for_timeout(500)
    assert dialogs == []


def test_agreeing_questions_fold_and_each_execution_has_a_compact_page(server, browser):
    page, dialogs = new_page(browser)
    page.goto(f"{server.url}/jobs/new")
    picked = page.locator('input[name="questions"]:checked')
    assert [picked.nth(i).get_attribute("value") for i in range(picked.count())] == [
        "identity_basic",
        "math_basic",
        "geography_basic",
    ]
    fill_form(page, server.url, questions=["identity_basic", "math_basic", "tiananmen_neutral"])
    page.wait_for_selector(ENDED_SELECTOR, timeout=JOB_TIMEOUT_MS)
    page.reload()
    assert page.get_attribute("#job-live", "data-status") == "completed", server.log()
    # The loopback answers differ only by their region tag, which the comparison reads as
    # agreeing (docs/comparison.md); arithmetic agrees word for word.
    folded = page.locator("article.question.agrees")
    assert folded.count() == 6
    lines = [
        " ".join(folded.nth(i).locator(".agree-box > summary").inner_text().split())
        for i in range(6)
    ]
    assert [line.split(" = ")[0] for line in lines] == ["identity_basic", "math_basic"] * 3
    for line in lines:
        assert re.match(r"\w+ = all 3 regions agree, similarity (1\.00|0\.\d\d) ", line), line
    assert all("similarity 1.00" in line for line in lines[1::2])
    for index in range(6):
        box = folded.nth(index).bounding_box()
        assert box["height"] < 80, box  # one line, not a table of similarities
    assert not folded.first.locator(".output").first.is_visible()
    # Where regions differ the word diffs are open: tiananmen_neutral against two regions, in
    # three models.
    diffs = page.locator("details.diff-box[open]")
    assert diffs.count() == 6 and diffs.first.locator(".diff").is_visible()
    height = page.evaluate("document.documentElement.scrollHeight")
    shot(page, "job-collapsed-desktop", height=min(height, 2400))
    folded.first.locator(".agree-box > summary").click()
    assert folded.first.locator(".output").first.is_visible()

    group = page.locator("[data-model-group]").first
    group.locator(".executions a", has_text="EU West").click()
    page.wait_for_url(re.compile(r".*/executions/[0-9]+$"))
    answers = page.locator("article.answer-full")
    assert answers.count() == 3
    for index in range(3):
        grid = answers.nth(index).locator(".answer-grid").bounding_box()
        assert grid["height"] < 90, grid  # the facts of an answer sit in a row or two
    others = page.locator(".sibling-regions a")
    assert [others.nth(i).inner_text() for i in range(others.count())] == [
        "US East",
        "Asia-Pacific",
    ]
    shot(
        page,
        "execution-desktop",
        height=min(page.evaluate("document.documentElement.scrollHeight"), 1400),
    )
    others.nth(1).click()
    page.wait_for_url(re.compile(r".*/executions/[0-9]+$"))
    assert "in Asia-Pacific" in page.locator("h1").inner_text()


def test_every_page_kind_runs_under_the_csp_without_console_errors(server, browser):
    page, dialogs = new_page(browser)
    response = page.goto(f"{server.url}/regions")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self'" in policy and "frame-ancestors 'none'" in policy
    assert page.locator("#regions tr[data-region]").count() == 3
    for path in ("/", "/jobs/new", "/questions", "/docs/api"):
        page.goto(server.url + path)
        # htmx loaded from the portal itself and initialised under the policy.
        assert page.evaluate("typeof window.htmx") == "object", path
    fill_form(page, server.url, questions=["identity_basic"])
    page.wait_for_selector(ENDED_SELECTOR, timeout=JOB_TIMEOUT_MS)
    execution = page.locator("a[href*='/executions/']").first.get_attribute("href")
    page.goto(server.url + execution)
    page.goto(f"{server.url}/regions")
    healthy = page.locator('#regions tr[data-health="ok"]')
    assert healthy.count() == 3
    assert dialogs == []


def test_the_estimate_follows_the_form_and_without_javascript_its_button(server, browser):
    page, dialogs = new_page(browser)
    page.goto(f"{server.url}/jobs/new")
    count = page.locator("#job-estimate .estimate strong").first
    assert count.inner_text() == "27"  # 3 control questions x 3 models x 3 regions
    # The three-regions configuration has no prices: the form says so rather than guessing.
    assert "the cost is unknown: no price for" in page.locator("#job-estimate").inner_text()
    page.check('input[name="questions"][value="tiananmen_neutral"]')
    sync_api.expect(count).to_have_text("36")  # the section swapped itself (htmx, under CSP)
    page.fill('input[name="runs"]', "2")
    page.locator('input[name="runs"]').dispatch_event("change")
    sync_api.expect(page.locator("#job-estimate .estimate strong").first).to_have_text("72")
    assert page.url.endswith("/jobs/new")  # nothing was submitted
    plain, _ = new_page(browser, javascript=False)
    plain.goto(f"{server.url}/jobs/new")
    plain.check('input[name="questions"][value="tiananmen_neutral"]')
    plain.click('button[name="estimate"]')
    assert plain.url.endswith("/jobs/new/estimate")
    assert plain.locator("#job-estimate .estimate strong").first.inner_text() == "36"
    assert plain.locator('input[name="questions"][value="tiananmen_neutral"]').is_checked()
    assert dialogs == []
