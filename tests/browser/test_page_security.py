"""The chat page and the widget under the server's Content-Security-Policy, in Debian's chromium:
they work with no CSP violation, the page does not show inside another site's frame, and an
image in the user's own question is shown as text, never loaded."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from conftest import Site
from test_chat_ui import ask_page
from test_widget import CCG_QUESTION, ask, open_widget, origin

from devtools.servers import free_port, static_site

if TYPE_CHECKING:
    from playwright.sync_api import ConsoleMessage, Page

pytestmark = pytest.mark.slow

FRAME_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Another site</title></head>
<body><h1>Another site</h1><iframe id="chat" src="{app}/" width="800" height="600"></iframe>
</body></html>
"""


def _csp_messages(page: Page) -> list[str]:
    messages: list[str] = []

    def record(msg: ConsoleMessage) -> None:
        if "Content Security Policy" in msg.text or "Content-Security-Policy" in msg.text:
            messages.append(msg.text)

    page.on("console", record)
    return messages


def test_the_chat_page_works_under_the_csp(page: Page, site: Site) -> None:
    violations = _csp_messages(page)
    page.goto(site.app + "/")
    page.get_by_label("Your question").wait_for()
    ask_page(page, "How many CCGs manage most of the NHS commissioning budget?")
    answer = page.locator('[data-testid="bot"]').first.inner_text()
    assert "209" in answer
    page.get_by_text("Sources (").last.click()
    page.wait_for_timeout(300)
    assert violations == []


def test_the_widget_works_under_the_csp(page: Page, site: Site) -> None:
    violations = _csp_messages(page)
    reply = ask(open_widget(page, site.allowed_host + "/"), CCG_QUESTION)
    assert "209" in reply.inner_text()
    assert violations == []


def test_the_chat_page_does_not_show_in_another_sites_frame(
    page: Page, site: Site, tmp_path: Path
) -> None:
    (tmp_path / "frame.html").write_text(FRAME_PAGE.format(app=site.app), encoding="utf-8")
    refused: list[str] = []
    page.on("console", lambda m: refused.append(m.text) if "frame" in m.text else None)
    with static_site(tmp_path) as other:
        page.goto(other + "/frame.html")
        page.wait_for_timeout(2000)
        chat = page.frame_locator("#chat")
        assert chat.get_by_label("Your question").count() == 0
    assert any("frame-ancestors" in text for text in refused), refused


def test_an_image_in_the_question_is_shown_as_text_and_never_loaded(page: Page, site: Site) -> None:
    tracker = f"http://127.0.0.1:{free_port()}/pixel.png"
    requests: list[str] = []
    page.on("request", lambda r: requests.append(r.url))
    page.goto(site.app + "/")
    page.get_by_label("Your question").wait_for()
    question = f"What is ![pixel]({tracker}) commissioning?"
    ask_page(page, question)
    user = page.locator('[data-testid="user"]').first
    assert user.locator("img").count() == 0
    assert f"![pixel]({tracker})" in user.inner_text()
    assert tracker not in requests


def test_the_widget_marks_only_this_answers_citation_numbers(page: Page, site: Site) -> None:
    """Document text like "[ref][1]" or "[7]" stays text; the answer's own "[1]" is a marker."""
    answer = {
        "question": "q",
        "answer": "Budgets are set yearly, see [ref][1] and table [7]. Funds are pooled [1].",
        "refused": False,
        "notices": [],
        "citations": [
            {"n": 1, "title": "Guide", "section": "", "passage": "Funds are pooled.",
             "quote": "Funds are pooled.", "quotes": ["Funds are pooled."], "era": "2013",
             "status": "current", "note": ""},
        ],
        "closest": [],
    }  # fmt: skip
    body = json.dumps({"type": "answer", "answer": answer}) + "\n"
    page.route(
        "**/api/ask/stream",
        lambda route: route.fulfill(
            status=200,
            body=body,
            headers={
                "Content-Type": "application/x-ndjson",
                "Access-Control-Allow-Origin": origin(site.allowed_host),
            },
        ),
    )
    reply = ask(open_widget(page, site.allowed_host + "/"), "How are funds pooled?")
    markers = reply.locator(".caw-answer-text .caw-ref")
    assert markers.all_inner_texts() == ["[1]"]
    assert "see [ref][1] and table [7]" in reply.inner_text()
