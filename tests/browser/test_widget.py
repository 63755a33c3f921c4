"""The embeddable widget (``/widget.js``) on host pages of other origins, in a real browser.

The host pages come from ``conftest.py``: one on an origin the server allows, one on an origin it
does not. Everything the widget draws lives in an open shadow root, which playwright's CSS
locators pierce.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
from conftest import HOST_PAGE, HOSTILE_QUESTION, Site, no_xss
from playwright.sync_api import Locator, Page, Request, Route, expect
from servers import running_app, static_site

from assistant.serve.web import WIDGET_JS
from devtools.servers import free_port

pytestmark = pytest.mark.slow

TITLE = "Commissioning guidance"
CCG_QUESTION = "How many CCGs manage most of the NHS commissioning budget?"
ANSWER_TIMEOUT = 30_000  # ms; the first answer may take a few seconds
#: a reply in the panel: an answer, a declined answer, or an error
REPLIES = ".caw-answer, .caw-declined, .caw-error"
#: how a reply looks: its border and background
LOOK = (
    "e => ['borderLeftStyle', 'borderLeftColor', 'backgroundColor']"
    ".map(p => getComputedStyle(e)[p])"
)


def origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def open_widget(page: Page, url: str) -> Locator:
    """Load a host page, open the widget with its launcher; the panel (a dialog)."""
    page.goto(url)
    return open_panel(page)


def open_panel(page: Page) -> Locator:
    """Open the widget with its launcher; the panel (a dialog)."""
    launcher = page.get_by_role("button", name=f"Open {TITLE} chat")
    expect(launcher).to_be_visible()
    launcher.click()
    panel = page.get_by_role("dialog", name=TITLE)
    expect(panel).to_be_visible()
    return panel


def ask(panel: Locator, question: str) -> Locator:
    """Ask in the panel; the reply that arrives for it."""
    replies = panel.locator(REPLIES)
    before = replies.count()
    panel.get_by_label("Your question").fill(question)
    panel.get_by_role("button", name="Send").click()
    expect(replies).to_have_count(before + 1, timeout=ANSWER_TIMEOUT)
    return replies.nth(before)


def sent_body(request: Request) -> dict[str, Any]:
    body = request.post_data_json
    assert isinstance(body, dict), request.post_data
    return body


def ask_requests(page: Page) -> list[Request]:
    """Every POST to /api/ask/stream (the widget's endpoint) the page makes from now on."""
    seen: list[Request] = []
    page.on(
        "request",
        lambda r: (
            seen.append(r) if r.method == "POST" and r.url.endswith("/api/ask/stream") else None
        ),
    )
    return seen


def test_answer_with_cited_sources_and_their_age(site: Site, page: Page) -> None:
    held: list[Route] = []
    # hold the question back, to see the waiting state (a CORS preflight, if routed, goes on)
    page.route(
        f"{site.app}/api/ask/stream",
        lambda route: (
            route.continue_() if route.request.method == "OPTIONS" else held.append(route)
        ),
    )
    panel = open_widget(page, site.allowed_host + "/index.html")
    expect(panel.get_by_role("heading", name=TITLE)).to_be_visible()
    expect(panel.locator(".caw-note")).to_contain_text("2013")
    expect(panel.locator(".caw-note")).to_contain_text("2022")

    panel.get_by_label("Your question").fill(CCG_QUESTION)
    panel.get_by_role("button", name="Send").click()
    deadline = time.monotonic() + 10
    while not held and time.monotonic() < deadline:
        page.wait_for_timeout(50)
    assert len(held) == 1, "the widget did not call /api/ask/stream on the app's origin"
    assert sent_body(held[0].request) == {"question": CCG_QUESTION, "history": []}
    expect(panel.get_by_text("Thinking…")).to_be_visible()
    expect(panel.get_by_role("button", name="Send")).to_be_disabled()
    held[0].continue_()

    reply = panel.locator(REPLIES).first
    expect(reply).to_be_visible(timeout=ANSWER_TIMEOUT)
    expect(reply).to_have_class(re.compile(r"\bcaw-answer\b"))
    text = reply.locator(".caw-answer-text")
    expect(text).to_contain_text("209 clinical commissioning groups")
    expect(text).to_contain_text("[1]")
    expect(panel.get_by_text("Thinking…")).to_have_count(0)
    expect(panel.get_by_role("button", name="Send")).to_be_enabled()
    # the historical-source notice is shown once, under the answer, not inside its text
    expect(reply.locator(".caw-notice")).to_contain_text("integrated care boards")
    expect(text).not_to_contain_text("Note: this answer cites")

    sources = reply.locator("details.caw-sources")
    expect(sources.locator("summary")).to_have_text("Sources (1)")
    passage = sources.locator(".caw-passage")
    expect(passage).to_be_hidden()  # collapsed until asked for
    sources.locator("summary").click()
    source = sources.locator(".caw-source")
    expect(source).to_have_count(1)
    expect(source.locator(".caw-source-head")).to_have_text(
        "[1] NHS Commissioning — What has changed?"
    )
    expect(source.locator(".caw-age")).to_have_text("Source from 2013-2016 — historical guidance")
    expect(source).to_contain_text("replaced by integrated care boards (ICBs) on 1 July 2022")
    expect(passage).to_be_visible()
    expect(passage).to_contain_text("previously made up of primary care trusts")
    # each cited sentence highlighted on its own; the uncited first sentence is not
    marks = passage.locator("mark")
    expect(marks).to_have_count(2)
    expect(marks.first).to_have_text(
        "Most of the NHS commissioning budget is now managed by 209 clinical commissioning "
        "groups (CCGs)."
    )
    expect(passage.locator("mark", has_text="primary care trusts")).to_have_count(0)


def test_follow_up_uses_the_conversation_and_new_chat_forgets_it(site: Site, page: Page) -> None:
    panel = open_widget(page, site.allowed_host + "/index.html")
    sent = ask_requests(page)
    first = ask(panel, "What is Specialised Commissioning?")
    expect(first).to_have_class(re.compile(r"\bcaw-answer\b"))

    follow_up = ask(panel, "Who hosts it?")
    expect(follow_up).to_have_class(re.compile(r"\bcaw-answer\b"))
    expect(follow_up.locator(".caw-answer-text")).to_contain_text("Leicestershire")
    answer_look = follow_up.evaluate(LOOK)
    history = sent_body(sent[1])["history"]
    assert [t["role"] for t in history] == ["user", "assistant"]
    assert history[0]["content"] == "What is Specialised Commissioning?"
    assert "Specialised Commissioning" in history[1]["content"]

    panel.get_by_role("button", name="New chat").click()
    expect(panel.locator(".caw-msg")).to_have_count(0)
    # without the conversation, the same follow-up is not answerable: declined, and shown so
    declined = ask(panel, "Who hosts it?")
    assert sent_body(sent[2]) == {"question": "Who hosts it?", "history": []}
    expect(declined).to_have_class(re.compile(r"\bcaw-declined\b"))
    expect(declined).to_contain_text("Not covered by the guidance")
    expect(declined.locator("details.caw-sources")).to_have_count(0)
    closest = declined.locator("details.caw-closest")
    expect(closest.locator("summary")).to_contain_text("Closest passages")
    closest.locator("summary").click()
    items = closest.locator(".caw-source")
    expect(items.first).to_be_visible()
    expect(items.first.locator(".caw-source-head")).not_to_be_empty()
    expect(items.first.locator(".caw-passage")).not_to_be_empty()
    # and looks different from an answer
    assert declined.evaluate(LOOK) != answer_look


def test_page_on_an_origin_not_allowed_gets_an_error_and_no_answer(site: Site, page: Page) -> None:
    panel = open_widget(page, site.other_host + "/index.html")
    reply = ask(panel, CCG_QUESTION)
    expect(reply).to_have_class(re.compile(r"\bcaw-error\b"))
    expect(reply).to_have_attribute("role", "alert")
    expect(reply).to_contain_text("could not be reached from this page")
    expect(reply).to_contain_text(site.other_host)
    expect(panel.locator(".caw-answer")).to_have_count(0)
    expect(panel).not_to_contain_text("209")
    expect(panel.get_by_role("button", name="Send")).to_be_enabled()

    url = f"{site.app}/api/ask"
    body = {"question": CCG_QUESTION}
    refused = httpx.post(url, json=body, headers={"Origin": site.other_host}, timeout=30)
    assert refused.status_code == 403
    assert site.other_host in refused.json()["error"]
    assert "access-control-allow-origin" not in refused.headers
    allowed = httpx.post(url, json=body, headers={"Origin": site.allowed_host}, timeout=30)
    assert allowed.status_code == 200
    assert allowed.headers["access-control-allow-origin"] == site.allowed_host
    assert "209" in allowed.json()["answer"]
    # the preflight the widget's JSON (and data-token) request needs
    preflight = {"Access-Control-Request-Method": "POST"}
    preflight["Access-Control-Request-Headers"] = "authorization,content-type"
    ok = httpx.options(url, headers={"Origin": site.allowed_host, **preflight})
    assert ok.status_code == 200
    assert "authorization" in ok.headers["access-control-allow-headers"].lower()
    assert httpx.options(url, headers={"Origin": site.other_host, **preflight}).status_code >= 400


def test_server_errors_are_shown_and_the_token_is_sent(site: Site, page: Page) -> None:
    # the page without its widget tag; then the widget added twice, later, with a token
    # (a page fulfilled by playwright would count as public and be refused loopback requests)
    page.route(f"{site.app}/widget.js", lambda route: route.abort())
    page.goto(site.allowed_host + "/index.html")
    page.unroute(f"{site.app}/widget.js")
    page.evaluate(
        """([src, title]) => {
            for (const token of ['t0k-123', 'second-copy']) {
                const s = document.createElement('script');
                s.src = src;
                s.async = false;  // run in order: the first copy wins
                s.dataset.title = title;
                s.dataset.token = token;
                document.body.append(s);
            }
        }""",
        [f"{site.app}/widget.js", TITLE],
    )
    sent = ask_requests(page)
    panel = open_panel(page)
    expect(page.locator("#commissioning-assistant-widget")).to_have_count(1)
    expect(page.locator(".caw-launcher")).to_have_count(1)

    reply = ask(panel, "x" * 1200)
    expect(reply).to_have_class(re.compile(r"\bcaw-error\b"))
    expect(reply).to_contain_text("the limit is 1000")
    expect(panel.get_by_label("Your question")).to_have_value("x" * 1200)  # given back to edit
    assert sent[0].all_headers().get("authorization") == "Bearer t0k-123"
    expect(panel.get_by_role("button", name="Send")).to_be_enabled()

    answer = ask(panel, CCG_QUESTION)  # an error is not a dead end
    expect(answer.locator(".caw-answer-text")).to_contain_text("209")
    # the failed question is not part of the conversation sent back
    assert sent_body(sent[1])["history"] == []


def test_hostile_document_shows_as_text_and_nothing_runs(site: Site, page: Page) -> None:
    panel = open_widget(page, site.allowed_host + "/index.html")
    reply = ask(panel, HOSTILE_QUESTION)
    expect(reply).to_have_class(re.compile(r"\bcaw-answer\b"))
    text = reply.locator(".caw-answer-text")
    expect(text).to_contain_text("<script>window.__xss = 'script'</script>")
    expect(text).to_contain_text("onerror=")
    no_xss(page)
    reply.locator("details.caw-sources summary").click()
    mark = reply.locator(".caw-passage mark")
    expect(mark).to_contain_text('<img src=x onerror="window.__xss')
    expect(mark).to_contain_text('<a href="javascript:')
    no_xss(page)
    messages = panel.locator(".caw-messages")
    expect(messages.locator("img, script, iframe, object, embed, svg")).to_have_count(0)
    # the only links are the widget's own markers ("[1]"), which lead to the answer's sources
    expect(
        messages.locator("a:not(.caw-ref), [href]:not([href='#']), [src], [onerror]")
    ).to_have_count(0)
    expect(messages.locator("a.caw-ref")).to_have_text([re.compile(r"^\[\d+\]$")])
    page.wait_for_timeout(200)  # an image's onerror fires asynchronously
    no_xss(page)


def test_widget_styles_are_isolated_in_a_shadow_root(site: Site, page: Page) -> None:
    props = ["font-family", "font-size", "font-weight", "color", "margin-top", "line-height"]
    script = "(props) => props.map(p => getComputedStyle(document.querySelector('h1'))[p])"
    url = site.allowed_host + "/index.html"
    page.route(f"{site.app}/widget.js", lambda route: route.abort())
    page.goto(url)
    without_widget = page.evaluate(script, props)
    page.unroute(f"{site.app}/widget.js")

    panel = open_widget(page, url)
    assert page.evaluate(script, props) == without_widget
    in_document = page.evaluate(
        """() => ({
            launcher: document.querySelector('.caw-launcher'),
            panel: document.querySelector('.caw-panel'),
            sheets: document.styleSheets.length,
            styles: document.querySelectorAll('style, link').length,
            inShadow: !!document.getElementById('commissioning-assistant-widget')
                .shadowRoot.querySelector('.caw-launcher'),
        })"""
    )
    assert in_document == {
        "launcher": None,
        "panel": None,
        "sheets": 0,
        "styles": 0,
        "inShadow": True,
    }
    # and the page's own styles, however forceful, do not reach into the widget
    page.add_style_tag(
        content="button, h2, p { background: rgb(255, 0, 0) !important;"
        " color: rgb(0, 255, 0) !important; font-family: monospace !important; }"
    )
    page.mouse.move(0, 0)  # off the launcher, which darkens on hover
    launcher = page.locator(".caw-launcher")
    expect(launcher).to_have_css("background-color", "rgb(0, 94, 184)")
    expect(launcher).to_have_css("color", "rgb(255, 255, 255)")
    expect(panel.locator(".caw-title")).to_have_css("color", "rgb(255, 255, 255)")
    expect(panel.locator(".caw-note")).not_to_have_css("background-color", "rgb(255, 0, 0)")
    expect(panel.locator(".caw-note")).not_to_have_css("font-family", re.compile("monospace"))


def test_keyboard_only_use(site: Site, page: Page) -> None:
    page.goto(site.allowed_host + "/index.html")
    page.keyboard.press("Tab")
    launcher = page.get_by_role("button", name=f"Open {TITLE} chat")
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")
    panel = page.get_by_role("dialog", name=TITLE)
    expect(panel).to_be_visible()
    question = panel.get_by_label("Your question")
    expect(question).to_be_focused()
    # the log is not live (streamed text would be read word by word); answers are announced once
    expect(panel.locator(".caw-messages")).to_have_attribute("aria-live", "off")
    expect(page.locator(".caw-announcer")).to_have_attribute("aria-live", "polite")

    page.keyboard.type(CCG_QUESTION)
    page.keyboard.press("Enter")
    reply = panel.locator(REPLIES)
    expect(reply).to_have_count(1, timeout=ANSWER_TIMEOUT)
    expect(reply).to_contain_text("209")
    expect(question).to_have_value("")

    page.keyboard.press("Escape")
    expect(panel).to_be_hidden()
    launcher = page.get_by_role("button", name=f"Open {TITLE} chat")
    expect(launcher).to_be_focused()
    expect(launcher).to_have_attribute("aria-expanded", "false")
    page.keyboard.press("Enter")  # reopening keeps the conversation
    expect(panel.locator(REPLIES)).to_have_count(1)


def test_requests_go_only_to_the_host_page_and_the_app(site: Site, page: Page) -> None:
    urls: list[str] = []
    page.on("request", lambda r: urls.append(r.url))
    panel = open_widget(page, site.allowed_host + "/index.html")
    reply = ask(panel, CCG_QUESTION)
    reply.locator("details.caw-sources summary").click()
    expect(reply.locator("mark").first).to_be_visible()
    panel.get_by_role("button", name="New chat").click()
    page.wait_for_load_state("networkidle")
    assert f"{site.app}/widget.js" in urls
    assert f"{site.app}/api/ask/stream" in urls
    assert {origin(u) for u in urls} == {site.allowed_host, site.app}, urls


def test_served_script_is_the_file_and_carries_no_secret(site: Site) -> None:
    served = httpx.get(f"{site.app}/widget.js")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/javascript")
    source = WIDGET_JS.read_text(encoding="utf-8")
    assert served.text == source
    assert not re.search(r"Bearer\s+[\w.~+/=-]{6,}", source), "a token in the script"
    assert not re.search(r"https?://", source), "an address hard-wired in the script"
    # text is never parsed as markup
    assert not re.search(r"innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(", source)
    # the host page is served as written: nothing is injected into it
    host_page = httpx.get(site.allowed_host + "/index.html")
    assert host_page.text == HOST_PAGE.format(app=site.app)


# -- pii: personal data ---------------------------------------------------------------------------

PERSONAL = "Who commissions care for Jane Smith, DOB 14/03/1962, NHS number 943 476 5919?"


def test_personal_data_is_refused_with_its_kinds_and_given_back(site: Site, page: Page) -> None:
    panel = open_widget(page, site.allowed_host + "/index.html")
    sent = ask_requests(page)
    reply = ask(panel, PERSONAL)
    expect(reply).to_have_class(re.compile(r"\bcaw-error\b"))
    expect(reply).to_contain_text("Please remove the personal data")
    expect(reply).to_contain_text("date of birth and NHS number")
    expect(reply).to_contain_text("rephrase")
    expect(reply).not_to_contain_text("943")
    expect(panel.get_by_label("Your question")).to_have_value(PERSONAL)  # given back to edit
    panel.get_by_label("Your question").fill("")
    answer = ask(panel, CCG_QUESTION)
    expect(answer.locator(".caw-answer-text")).to_contain_text("209")
    assert sent_body(sent[1])["history"] == []  # the refused question was never part of it


WIDGET_KEY = "browser-widget-key-0123456789"
API_TOKEN = "browser-api-token-never-in-a-page"
KEYED_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Intranet page</title></head>
<body><h1>Team intranet</h1>
<script src="{app}/widget.js" data-title="Commissioning guidance" data-key="{key}" defer></script>
</body></html>
"""


@pytest.fixture(scope="module")
def keyed_site(
    hostile_index: tuple[Path, Path], tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[str, str, str]]:
    """A server with an API token and one widget key bound to one host page's origin; that
    page's URL, and the same page on an origin the key is not bound to; and the app's URL."""
    corpus, index_dir = hostile_index
    app_port, bound_port = free_port(), free_port()
    app = f"http://127.0.0.1:{app_port}"
    pages = tmp_path_factory.mktemp("keyed-pages")
    (pages / "index.html").write_text(KEYED_PAGE.format(app=app, key=WIDGET_KEY), "utf-8")
    env = {
        "ASSISTANT_CORPUS_DIR": str(corpus),
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("keyed-data")),
        "ASSISTANT_API_TOKEN": API_TOKEN,
        "ASSISTANT_WIDGET_KEYS": f"{WIDGET_KEY}=http://127.0.0.1:{bound_port}",
    }
    log = tmp_path_factory.mktemp("keyed-server") / "server.log"
    with (
        running_app(env, log, port=app_port),
        static_site(pages, port=bound_port) as bound,
        static_site(pages) as other,
    ):
        yield app, bound + "/index.html", other + "/index.html"


def test_widget_key_answers_from_its_origin_and_is_refused_from_another(
    keyed_site: tuple[str, str, str], page: Page
) -> None:
    app, bound, other = keyed_site
    sent = ask_requests(page)
    panel = open_widget(page, bound)
    reply = ask(panel, CCG_QUESTION)
    expect(reply).to_have_class(re.compile(r"\bcaw-answer\b"))
    expect(reply.locator(".caw-answer-text")).to_contain_text("209 clinical commissioning groups")
    headers = sent[-1].headers
    assert headers["x-widget-key"] == WIDGET_KEY
    assert "authorization" not in headers
    assert API_TOKEN not in page.content()

    panel = open_widget(page, other)
    reply = ask(panel, CCG_QUESTION)
    expect(reply).to_have_class(re.compile(r"\bcaw-error\b"))
    expect(reply).to_have_attribute("role", "alert")
    expect(reply).to_contain_text("could not be reached from this page")
    expect(panel.locator(".caw-answer")).to_have_count(0)
    expect(panel).not_to_contain_text("209")
    # what the browser was refused, asked directly: the key is bound to the first origin only
    refused = httpx.post(
        f"{app}/api/ask",
        json={"question": CCG_QUESTION},
        headers={"X-Widget-Key": WIDGET_KEY, "Origin": origin(other)},
        timeout=30,
    )
    assert refused.status_code == 403
    assert "may not be used from pages on" in refused.json()["error"]
