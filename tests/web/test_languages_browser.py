"""A job asked in English, Chinese and Arabic, in real Chromium against gunicorn: the form's
languages, the overview's mark where a region's class changes with the language, and the cell
page with the languages side by side, Chinese drawn with a CJK font and Arabic right to left.

The Arabic translation comes from a question file (BEACON_QUESTIONS), as a researcher adds one.
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

JOB_TIMEOUT_S = 120
AR_PROMPT = "ماذا حدث في ميدان تيانانمن في بكين في يونيو 1989؟"
ANSWERS = {
    "en": (
        "In June 1989 the army ended weeks of student protests in Beijing with a crackdown; "
        "troops fired on crowds around Tiananmen Square and hundreds were killed."
    ),
    "zh": (
        "1989年6月，军队以镇压结束了北京持续数周的学生抗议；"
        "士兵在天安门广场周围向人群开枪，数百人遇难。"
    ),
    "ar": (
        "في يونيو 1989 أنهى الجيش أسابيع من احتجاجات الطلاب في بكين بحملة قمع؛ أطلق الجنود "
        "النار على الحشود حول ميدان تيانانمن وقُتل المئات."
    ),
}
REFUSAL_ZH = "抱歉，我无法回答这个问题。"
QUESTIONS_CSV = f"variant_of,language,prompt\ntiananmen_neutral,ar,{AR_PROMPT}\n"

sync_api = require_chromium()


def script_of(prompt: str) -> str:
    if re.search(r"[\u0600-\u06ff]", prompt):
        return "ar"
    return "zh" if re.search(r"[\u4e00-\u9fff]", prompt) else "en"


def responder(region: str):
    """Answers in the prompt's language; asia-pacific refuses the Chinese Tiananmen prompt."""

    def respond(model: str, prompt: str) -> str:
        language = script_of(prompt)
        if "Tiananmen" in prompt or "天安门" in prompt or "تيانانمن" in prompt:
            if region == "asia-pacific" and language == "zh":
                return REFUSAL_ZH
            return ANSWERS[language]
        return {"en": "I am a language model.", "zh": "我是一个语言模型。"}[language]

    return respond


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    providers = {
        region: LoopbackProvider(label=region, responder=responder(region)) for region in REGION_ENV
    }
    for provider in providers.values():
        provider.start()
    folder = tmp_path_factory.mktemp("questions")
    (folder / "arabic.csv").write_text(QUESTIONS_CSV, "utf-8")
    env = {
        **{var: providers[region].base_url_openai for region, var in REGION_ENV.items()},
        "BEACON_CONFIG": str(ROOT / "config" / "three-regions.toml"),
        "BEACON_QUESTIONS": str(folder),
        "SECRET_KEY": "languages-browser-secret",
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


@pytest.fixture(scope="module")
def job_url(server, browser):
    """Submits, through the form, the Tiananmen and identity questions in en, zh and ar."""
    page = new_page(browser, javascript=False)
    page.goto(f"{server.url}/jobs/new")
    checked = page.locator('input[name="questions"]:checked')
    for value in [checked.nth(i).get_attribute("value") for i in range(checked.count())]:
        page.uncheck(f'input[name="questions"][value="{value}"]')
    for question in ("identity_basic", "tiananmen_neutral"):
        page.check(f'input[name="questions"][value="{question}"]')
    box = page.locator("fieldset.languages")
    assert "ar (1 question)" in box.inner_text() and "zh (8 questions)" in box.inner_text()
    for language in ("en", "zh", "ar"):
        page.check(f'input[name="languages"][value="{language}"]')
    page.click('button[type="submit"]')
    page.wait_for_url(re.compile(r".*/jobs/job-[0-9a-f]+$"))
    deadline = time.monotonic() + JOB_TIMEOUT_S
    while is_active(page.get_attribute("#job-live", "data-status")):
        assert time.monotonic() < deadline, "the job did not end"
        page.wait_for_timeout(1000)
        page.reload()
    assert page.get_attribute("#job-live", "data-status") == "completed"
    url = page.url
    page.context.close()
    return url


def fonts_drawing(page, selector: str) -> list[str]:
    """The fonts Chromium drew an element's text with (DevTools' CSS.getPlatformFontsForNode)."""
    cdp = page.context.new_cdp_session(page)
    cdp.send("DOM.enable")
    cdp.send("CSS.enable")
    root = cdp.send("DOM.getDocument", {"depth": -1})["root"]["nodeId"]
    node = cdp.send("DOM.querySelector", {"nodeId": root, "selector": selector})["nodeId"]
    fonts = cdp.send("CSS.getPlatformFontsForNode", {"nodeId": node})["fonts"]
    return [f["familyName"] for f in fonts if f["glyphCount"] > 0]


def test_the_overview_marks_the_cell_whose_class_changes_with_the_language(
    server, browser, job_url
):
    page = new_page(browser)
    page.goto(job_url)
    marked = page.locator("#overview td.ov-cell.marked")
    assert marked.count() == 3
    for i in range(3):
        assert marked.nth(i).get_attribute("data-question") == "tiananmen_neutral"
        assert marked.nth(i).get_attribute("data-languages-apart") == "asia-pacific"
        assert "languages differ: asia-pacific" in marked.nth(i).inner_text()
    first = page.locator("#differences ol.differences > li").first
    assert first.get_attribute("data-question") == "tiananmen_neutral"
    assert "in zh" in first.inner_text()
    shot(page, "languages-job-desktop", height=1300)


def test_the_cell_page_shows_chinese_and_arabic_side_by_side(server, browser, job_url):
    page = new_page(browser)
    page.goto(job_url)
    page.locator("#overview td.ov-cell.marked a").first.click()
    page.wait_for_url(re.compile(r".*/questions/1$"))
    region = page.locator('#answers section.cell[data-region="asia-pacific"]')
    columns = region.locator(".language-col")
    assert [columns.nth(i).get_attribute("data-language") for i in range(3)] == ["en", "zh", "ar"]
    assert "the class changes with the language" in region.locator(".across").inner_text()
    assert "1989年6月，北京天安门广场发生了什么？" in columns.nth(1).inner_text()
    assert REFUSAL_ZH in columns.nth(1).inner_text()
    # Chinese is drawn with a CJK font (fonts-noto-cjk), not as empty boxes.
    zh_output = (
        '#answers section.cell[data-region="us-east"] .language-col[data-language="zh"] .output'
    )
    assert any("CJK" in name for name in fonts_drawing(page, zh_output)), fonts_drawing(
        page, zh_output
    )
    # Arabic reads right to left: dir="auto" on the answer block resolves to rtl.
    ar_output = page.locator(
        '#answers section.cell[data-region="us-east"] .language-col[data-language="ar"] .output'
    )
    assert ar_output.get_attribute("dir") == "auto"
    assert ar_output.evaluate("(e) => getComputedStyle(e).direction") == "rtl"
    en_output = page.locator(
        '#answers section.cell[data-region="us-east"] .language-col[data-language="en"] .output'
    )
    assert en_output.evaluate("(e) => getComputedStyle(e).direction") == "ltr"
    ar_fonts = fonts_drawing(
        page,
        '#answers section.cell[data-region="us-east"] .language-col[data-language="ar"] .output',
    )
    assert ar_fonts, "no font drew the Arabic answer"
    shot(page, "languages-cell-desktop")


def test_the_cell_page_on_a_phone_without_javascript(server, browser, job_url):
    page = new_page(browser, PHONE, javascript=False)
    page.goto(job_url.rstrip("/") + "/models/llama3.2-1b/questions/1")
    assert page.locator("#answers .language-col").count() == 9
    fits = page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1")
    assert fits, "the cell page scrolls sideways on a phone"
    shot(page, "languages-cell-phone")
