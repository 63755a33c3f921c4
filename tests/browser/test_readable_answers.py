"""Readable answers in chromium, on the chat page and in the widget: one marker for a run of
sentences from one source, markers that open and show their source, and a copy button that puts
the answer with its numbered sources on the clipboard (the API's ``display.copy``)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from conftest import Site
from playwright.sync_api import expect

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.slow

#: answered with two sentences of one passage (A10 - Four Levels Of NHS Commissioning)
QUESTION = "What is Specialised Commissioning?"
FIRST, LAST = "hosted by Leicestershire and Rutland County PCT.", "antenatal screening."
TIMEOUT = 90_000  # ms: the first answer of a session loads the models on a busy machine


@pytest.fixture(scope="module")
def api_answer(site: Site) -> dict[str, Any]:
    """The API's answer to :data:`QUESTION` (the extractive answerer is deterministic)."""
    response = httpx.post(f"{site.app}/api/ask", json={"question": QUESTION}, timeout=120)
    response.raise_for_status()
    body: dict[str, Any] = response.json()
    # the answer text keeps a marker after each sentence
    assert f"{FIRST} [1]" in body["answer"], body["answer"]
    assert f"{LAST} [1]" in body["answer"], body["answer"]
    return body


@pytest.fixture
def clip_page(browser: Browser) -> Iterator[Page]:
    """A page whose context may read and write the clipboard."""
    context = browser.new_context(
        viewport={"width": 1280, "height": 900}, permissions=["clipboard-read", "clipboard-write"]
    )
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def _clipboard(page: Page) -> str:
    return str(page.evaluate("() => navigator.clipboard.readText()"))


def _page_answer(page: Page, site: Site) -> Locator:
    """Ask :data:`QUESTION` on the chat page; the finished answer message."""
    page.goto(site.app + "/")
    box = page.get_by_label("Your question")
    box.fill(QUESTION)
    box.press("Enter")
    answer = page.locator('[data-testid="bot"]').first
    expect(answer.get_by_role("button", name="Copy answer with sources")).to_be_visible(
        timeout=TIMEOUT
    )  # only the finished answer has it
    return answer


def _widget_answer(page: Page, site: Site) -> Locator:
    page.goto(site.allowed_host + "/index.html")
    page.get_by_role("button", name="Open Commissioning guidance chat").click()
    panel = page.get_by_role("dialog", name="Commissioning guidance")
    panel.get_by_label("Your question").fill(QUESTION)
    panel.get_by_role("button", name="Send").click()
    answer = panel.locator(".caw-answer").first
    expect(answer).to_be_visible(timeout=TIMEOUT)
    return answer


def test_page_shows_one_marker_for_sentences_from_one_source(
    clip_page: Page, site: Site, api_answer: dict[str, Any]
) -> None:
    answer = _page_answer(clip_page, site)
    text = answer.inner_text()
    assert FIRST in text
    assert LAST in text
    assert f"{FIRST} [1]" not in text  # no marker after the first sentence
    assert f"{LAST} [1]" in text
    expect(answer.locator("a.cite-ref")).to_have_count(1)


def test_page_marker_opens_and_scrolls_to_its_highlighted_source(
    clip_page: Page, site: Site, api_answer: dict[str, Any]
) -> None:
    answer = _page_answer(clip_page, site)
    key = api_answer["display"]["key"]
    source = clip_page.locator(f"#src-{key}-1")
    expect(source).to_have_count(0)  # the Sources block is closed
    answer.locator("a.cite-ref").click()
    expect(source).to_be_visible()
    expect(source).to_be_in_viewport()
    expect(source).to_be_focused()
    expect(source).to_have_class("source-head source-target")
    sources = clip_page.locator('[data-testid="bot"]').nth(1)
    expect(sources.locator("mark").first).to_contain_text("Specialised Commissioning")


def test_page_copy_button_copies_the_answer_with_numbered_sources(
    clip_page: Page, site: Site, api_answer: dict[str, Any]
) -> None:
    answer = _page_answer(clip_page, site)
    answer.get_by_role("button", name="Copy answer with sources").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    copied = _clipboard(clip_page)
    assert copied == api_answer["display"]["copy"]
    assert f"{LAST} [1]\n\nNote: this answer cites historical guidance" in copied
    assert "\n\nSources:\n[1] A10 - Four Levels Of NHS Commissioning — " in copied
    assert copied.count("[1]") == 3  # the answer's one marker, the notice's, the source's


def test_widget_shows_one_marker_and_opens_its_source(clip_page: Page, site: Site) -> None:
    answer = _widget_answer(clip_page, site)
    text = answer.locator(".caw-answer-text")
    expect(text).to_contain_text(f"{LAST} [1]")
    expect(text).not_to_contain_text(f"{FIRST} [1]")
    markers = text.locator("a.caw-ref")
    expect(markers).to_have_count(1)
    sources = answer.locator("details.caw-sources")
    expect(sources.locator(".caw-passage")).to_be_hidden()  # closed
    markers.click()
    source = sources.locator('li[data-n="1"]')
    expect(source).to_be_visible()
    expect(source).to_be_in_viewport()
    expect(source).to_be_focused()
    expect(source).to_have_class("caw-source caw-source-target")
    expect(source.locator("mark").first).to_contain_text("Specialised Commissioning")


def test_widget_copy_button_copies_the_answer_with_numbered_sources(
    clip_page: Page, site: Site, api_answer: dict[str, Any]
) -> None:
    answer = _widget_answer(clip_page, site)
    answer.get_by_role("button", name="Copy answer with sources").click()
    expect(answer.get_by_role("button", name="Copied")).to_be_visible()
    assert _clipboard(clip_page) == api_answer["display"]["copy"]
