"""The staff chat page in Debian's chromium: answers, sources, follow-ups, declining, feedback,
escaping, new chat, and no request leaving the server."""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest
from conftest import HOSTILE_QUESTION, Site, no_xss

from assistant.serve.ui import EXAMPLES

if TYPE_CHECKING:
    from playwright.sync_api import Locator, Page

pytestmark = pytest.mark.slow

ANSWER_TIMEOUT = 30_000


def _open(page: Page, site: Site) -> None:
    page.goto(site.app + "/")
    page.get_by_label("Your question").wait_for()


def ask_page(page: Page, question: str) -> Locator:
    """Type the question, press Enter, wait for the finished answer; return the last bot message."""
    bots = page.locator('[data-testid="bot"]')
    before = bots.count()
    box = page.get_by_label("Your question")
    box.fill(question)
    box.press("Enter")
    page.wait_for_function(
        "n => document.querySelectorAll('[data-testid=\"bot\"]').length > n",
        arg=before,
        timeout=ANSWER_TIMEOUT,
    )
    # streaming ends when the Ask button is back (the stop button shows while it streams)
    page.get_by_role("button", name="Ask").wait_for(timeout=ANSWER_TIMEOUT)
    page.wait_for_timeout(300)
    return bots.last


def _last_answer_text(page: Page) -> str:
    return page.locator('[data-testid="bot"]').last.inner_text()


def test_first_load_offers_example_questions_and_labelled_controls(page: Page, site: Site) -> None:
    _open(page, site)
    for example in EXAMPLES:
        assert page.get_by_text(example, exact=True).is_visible()
    assert page.get_by_role("button", name="New chat").is_visible()
    assert page.get_by_role("button", name="Ask").is_visible()
    assert "2013" in page.locator("body").inner_text()  # the page says how old the guidance is


def test_an_answer_has_citation_markers_and_a_sources_block(page: Page, site: Site) -> None:
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    _open(page, site)
    ask_page(page, "How many CCGs manage most of the NHS commissioning budget?")
    answer = page.locator('[data-testid="bot"]').first.inner_text()
    assert "209" in answer
    assert "[1]" in answer
    page.get_by_text("Sources (").last.click()
    sources = page.locator('[data-testid="bot"]').last
    assert "NHS Commissioning" in sources.inner_text()
    assert "historical guidance" in sources.inner_text()  # how old the source is
    marked = sources.locator("mark")
    assert marked.count() >= 1
    assert "209 clinical commissioning groups" in " ".join(marked.all_inner_texts())
    # nothing is fetched from anywhere but the server (no CDN, no web fonts, no telemetry)
    assert {urlsplit(u).netloc for u in requests if u.startswith("http")} == {
        urlsplit(site.app).netloc
    }


def test_a_follow_up_uses_the_previous_turn(page: Page, site: Site) -> None:
    _open(page, site)
    ask_page(page, "What is Specialised Commissioning?")
    ask_page(page, "Who hosts it?")
    answers = page.locator('[data-testid="bot"]').all_inner_texts()
    follow_up = answers[-2]  # the last message is its Sources block
    assert "Leicestershire" in follow_up
    assert "[1]" in follow_up


def test_a_declined_answer_looks_different_and_offers_the_closest_passages(
    page: Page, site: Site
) -> None:
    _open(page, site)
    ask_page(page, "What is the boiling point of water at the top of Mount Everest?")
    declined = page.locator(".declined")
    assert declined.count() == 1
    assert "Not covered by the guidance" in declined.inner_text()
    assert declined.evaluate("e => getComputedStyle(e).borderLeftStyle") == "solid"
    closest = page.get_by_text("Closest passages")
    closest.click()
    assert "commission" in _last_answer_text(page).lower()


def test_markup_in_a_document_is_shown_as_text_and_never_runs(page: Page, site: Site) -> None:
    _open(page, site)
    ask_page(page, HOSTILE_QUESTION)
    page.get_by_text("Sources (").last.click()
    conversation = page.get_by_role("log")
    text = conversation.inner_text()
    assert "<script>" in text
    assert 'onerror="window.__xss' in text
    assert "javascript:window.__xss" in text
    assert conversation.locator("mark").count() >= 1  # our own markup does render
    assert conversation.locator("img[src='x'], script, a[href^='javascript']").count() == 0
    page.wait_for_timeout(500)
    no_xss(page)


def test_thumbs_down_with_a_comment_is_stored(page: Page, site: Site) -> None:
    _open(page, site)
    question = "Is procurement the same as commissioning?"
    ask_page(page, question)
    page.get_by_role("button", name="Dislike").last.click()
    page.get_by_text("your rating is saved").wait_for()
    comment = page.get_by_label("Comment on this answer (optional)")
    comment.fill("Too long, and it should say who does procurement.")
    page.get_by_role("button", name="Send comment").click()
    page.get_by_text("your comment is saved").wait_for()
    db = site.data_dir / "feedback.sqlite3"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT question, answer, rating, comment FROM feedback WHERE question = ?", (question,)
        ).fetchall()
        columns = [r[1] for r in conn.execute("PRAGMA table_info(feedback)")]
    assert len(rows) == 1
    _, answer, rating, stored_comment = rows[0]
    assert rating == -1
    assert "procurement" in answer.lower()
    assert "\\[" not in answer  # stored as the reader saw it, not as Markdown
    assert stored_comment == "Too long, and it should say who does procurement."
    assert not any("ip" in c.lower().split("_") for c in columns)  # no IP address kept


def test_new_chat_starts_again(page: Page, site: Site) -> None:
    _open(page, site)
    ask_page(page, "What is Specialised Commissioning?")
    assert page.locator('[data-testid="bot"]').count() >= 1
    page.get_by_role("button", name="New chat").click()
    page.wait_for_function("() => document.querySelectorAll('[data-testid=\"bot\"]').length == 0")
    assert page.get_by_text(EXAMPLES[0], exact=True).is_visible()
    # the conversation is gone for the assistant too: a bare follow-up has nothing to follow
    ask_page(page, "What is the capital of France?")
    assert page.locator(".declined").count() == 1


# -- pii: personal data ---------------------------------------------------------------------------


def test_personal_data_stays_out_of_the_conversation(page: Page, site: Site) -> None:
    _open(page, site)
    box = page.get_by_label("Your question")
    question = "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919: who pays for her care?"
    box.fill(question)
    box.press("Enter")
    page.get_by_text("seems to contain personal data (date of birth and NHS number)").wait_for()
    assert "rephrase" in page.locator("body").inner_text()
    assert box.input_value() == question  # still in the box, to be rephrased
    assert page.locator('[data-testid="user"]').count() == 0  # never entered the conversation
    assert page.locator('[data-testid="bot"]').count() == 0
    box.fill("")
    ask_page(page, "How many CCGs manage most of the NHS commissioning budget?")
    assert "209" in page.locator('[data-testid="bot"]').first.inner_text()
    assert page.locator('[data-testid="user"]').count() == 1  # only the question answered
    assert "943" not in page.locator("body").inner_text()
