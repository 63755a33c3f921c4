"""WCAG 2.2 AA on the chat page and the widget, in Debian's chromium: axe-core (the WCAG 2.0-2.2
A and AA rules) after an answer, the keyboard (Tab order, Enter sends, Escape closes the widget,
a visible focus ring, no trap), reflow at 320 px and at 200 % zoom, and the finished answer
announced once through a polite live region."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from axe_playwright_python.sync_playwright import Axe
from conftest import Site
from playwright.sync_api import expect
from test_chat_ui import ask_page
from test_widget import CCG_QUESTION, TITLE, ask, open_widget

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Locator, Page

pytestmark = pytest.mark.slow

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22aa"]
ANSWER_TIMEOUT = 90_000  # ms; the first answer of a session on a busy machine is slow
#: the chat page's live region, which holds the last finished answer
CHAT_LIVE = "#answer-announcer"
#: the widget's live region (inside its shadow root; playwright's CSS locators pierce it)
WIDGET_LIVE = ".caw-announcer"

# The relative luminance of a CSS rgb()/rgba() colour and the contrast of the focus ring against
# the background behind it, computed in the page (WCAG 2.x formulas).
FOCUS_RING = """() => {
  let e = document.activeElement;
  while (e && e.shadowRoot && e.shadowRoot.activeElement) e = e.shadowRoot.activeElement;
  if (!e || e === document.body) return null;
  const lum = c => {
    const m = c.match(/[\\d.]+/g);
    if (!m || (m.length > 3 && Number(m[3]) === 0)) return null;
    const ch = m.slice(0, 3).map(v => {
      v = Number(v) / 255;
      return v <= 0.03928 ? v / 12.92 : Math.pow((v + 0.055) / 1.055, 2.4);
    });
    return 0.2126 * ch[0] + 0.7152 * ch[1] + 0.0722 * ch[2];
  };
  const ratio = (a, b) => (Math.max(a, b) + 0.05) / (Math.min(a, b) + 0.05);
  let bg = 1, p = e.parentElement || (e.getRootNode() && e.getRootNode().host);
  while (p) {
    const l = lum(getComputedStyle(p).backgroundColor);
    if (l !== null) { bg = l; break; }
    p = p.parentElement || (p.getRootNode() && p.getRootNode().host) || null;
  }
  const s = getComputedStyle(e);
  const colours = [];
  if (s.outlineStyle !== 'none' && parseFloat(s.outlineWidth) >= 2) colours.push(s.outlineColor);
  const shadow = s.boxShadow.match(/rgba?\\([^)]*\\)/g);
  if (shadow && /\\b[2-9]px|\\d\\dpx/.test(s.boxShadow)) colours.push(...shadow);
  const best = Math.max(0, ...colours.map(lum).filter(l => l !== null).map(l => ratio(l, bg)));
  const label = e.labels && e.labels.length ? e.labels[0].textContent : '';
  const name = e.getAttribute('aria-label') || label || e.textContent || '';
  return {tag: e.tagName, name: name.trim().slice(0, 40), contrast: best};
}"""


@pytest.fixture(scope="module", autouse=True)
def warm(site: Site) -> None:
    """One answer before the tests, so the first one in a browser does not wait for the models."""
    httpx.post(
        f"{site.app}/api/ask", json={"question": CCG_QUESTION}, timeout=180
    ).raise_for_status()


def axe_violations(page: Page) -> list[dict[str, Any]]:
    """axe-core's violations of the WCAG 2.0-2.2 A/AA rules on the page as it is now."""
    options = {"runOnly": {"type": "tag", "values": WCAG_TAGS}, "resultTypes": ["violations"]}
    results = Axe().run(page, options=options)
    violations: list[dict[str, Any]] = results.response["violations"]
    return violations


def describe(violations: list[dict[str, Any]]) -> str:
    """One line per violation: rule, impact, and the first few offending elements."""
    lines = []
    for v in violations:
        targets = [str(n["target"]) for n in v["nodes"][:4]]
        lines.append(f"{v['id']} ({v['impact']}, {len(v['nodes'])} nodes): {' '.join(targets)}")
    return "\n".join(lines) or "none"


def assert_no_serious(violations: list[dict[str, Any]]) -> None:
    serious = [v for v in violations if v["impact"] in ("serious", "critical")]
    assert not serious, "axe: serious or critical violations\n" + describe(violations)


def _open_chat(page: Page, site: Site) -> None:
    page.goto(site.app + "/")
    page.get_by_label("Your question").wait_for()


def _chat_answered(page: Page, site: Site) -> Locator:
    _open_chat(page, site)
    return ask_page(page, CCG_QUESTION)


# -- axe -------------------------------------------------------------------------------------------


def test_chat_page_after_an_answer_has_no_serious_axe_violation(page: Page, site: Site) -> None:
    _chat_answered(page, site)
    page.get_by_text("Sources (").last.click()
    violations = axe_violations(page)
    print("chat page:", describe(violations))
    assert_no_serious(violations)


def test_widget_after_an_answer_has_no_serious_axe_violation(page: Page, site: Site) -> None:
    panel = open_widget(page, site.allowed_host + "/index.html")
    reply = ask(panel, CCG_QUESTION)
    reply.locator("summary").first.click()
    violations = axe_violations(page)
    print("widget:", describe(violations))
    assert_no_serious(violations)


# -- keyboard --------------------------------------------------------------------------------------


def _tab_through(page: Page, presses: int) -> list[dict[str, Any] | None]:
    """Press Tab ``presses`` times; what had focus after each press, with its ring's contrast."""
    seen = []
    for _ in range(presses):
        page.keyboard.press("Tab")
        seen.append(page.evaluate(FOCUS_RING))
    return seen


def _assert_visible_rings(seen: list[dict[str, Any] | None]) -> None:
    faint = [s for s in seen if s is not None and s["contrast"] < 3]
    assert not faint, f"focus rings under 3:1 (or none): {faint}"


def _one_round(seen: list[dict[str, Any] | None], *in_order: str) -> list[str]:
    """The names focused in one round of Tab, from the page's start to where focus leaves it for
    the browser (None: no keyboard trap), checked to hold ``in_order`` in that order."""
    assert None in seen, f"focus never left the page (a keyboard trap?): {seen}"
    start = seen.index(None) + 1
    rest = seen[start:]
    assert None in rest, f"Tab did not come round again: {seen}"
    names = [str(s["name"]) for s in rest[: rest.index(None)] if s is not None]
    where = []
    for wanted in in_order:
        found = [i for i, n in enumerate(names) if n.startswith(wanted)]
        assert found, f"{wanted!r} never had focus: {names}"
        where.append(found[0])
    assert where == sorted(where), f"Tab order: {names}"
    return names


def test_chat_page_keyboard(page: Page, site: Site) -> None:
    _open_chat(page, site)
    box = page.get_by_label("Your question")
    expect(box).to_be_focused()  # the question box first
    box.fill(CCG_QUESTION)
    box.press("Enter")  # Enter sends
    expect(page.locator('[data-testid="bot"]').first).to_contain_text("209", timeout=ANSWER_TIMEOUT)
    page.get_by_role("button", name="Ask").wait_for(timeout=ANSWER_TIMEOUT)
    # the box is given back (editable) in a step of its own after the Ask button returns: Tab
    # skips it while it is disabled, so the round starts once the page is idle again
    expect(box).to_be_editable(timeout=ANSWER_TIMEOUT)
    seen = _tab_through(page, 40)
    # the page's order: New chat, the conversation's controls, the question box, Ask, the footer
    _one_round(seen, "New chat", "Sources (1)", "Your question", "Ask")
    _assert_visible_rings(seen)


def test_widget_keyboard(page: Page, site: Site) -> None:
    page.goto(site.allowed_host + "/index.html")
    launcher = page.get_by_role("button", name=f"Open {TITLE} chat")
    expect(launcher).to_be_visible()
    launcher.focus()
    page.keyboard.press("Enter")
    panel = page.get_by_role("dialog", name=TITLE)
    expect(panel).to_be_visible()
    question = panel.get_by_label("Your question")
    expect(question).to_be_focused()
    page.keyboard.type(CCG_QUESTION)
    page.keyboard.press("Enter")  # Enter sends
    expect(panel.locator(".caw-answer")).to_have_count(1, timeout=ANSWER_TIMEOUT)
    question.focus()
    seen = _tab_through(page, 24)
    _one_round(seen, "Close", "New chat", "Close chat", "Conversation", "Sources", "Your question",
               "Send")  # fmt: skip
    _assert_visible_rings(seen)
    question.focus()
    page.keyboard.press("Escape")  # Escape closes, from wherever focus is in the panel
    expect(panel).to_be_hidden()
    expect(page.get_by_role("button", name=f"Open {TITLE} chat")).to_be_focused()


# -- reflow ----------------------------------------------------------------------------------------

NO_SIDEWAYS_SCROLL = """() => {
  const d = document.documentElement;
  return {scroll: d.scrollWidth, width: d.clientWidth};
}"""
#: elements wider than the viewport or cut off on either side (the widget's, in its shadow root)
CUT_OFF = """sel => {
  const root = document.querySelector('#commissioning-assistant-widget');
  const scope = sel === 'widget' ? root.shadowRoot : document;
  const w = document.documentElement.clientWidth;
  const out = [];
  scope.querySelectorAll(sel === 'widget' ? '.caw-panel, .caw-panel *, .caw-launcher'
                                          : 'button, textarea, input, h1, [role=log]')
    .forEach(e => {
      const r = e.getBoundingClientRect();
      if (r.width && (r.left < -1 || r.right > w + 1)) out.push(e.className || e.tagName);
    });
  return out;
}"""


@pytest.fixture(params=["320px", "200% zoom"])
def narrow(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A page 320 CSS px wide: a 320 px viewport, or 640 px at 200 % zoom (device scale 2)."""
    if request.param == "320px":
        context = browser.new_context(viewport={"width": 320, "height": 640})
    else:
        context = browser.new_context(viewport={"width": 640, "height": 450}, device_scale_factor=2)
        # 200 % zoom of a 1280 x 900 window: 640 x 450 CSS pixels
    page = context.new_page()
    page.set_default_timeout(30_000)
    yield page
    context.close()


def test_chat_page_reflows(narrow: Page, site: Site) -> None:
    _chat_answered(narrow, site)
    size = narrow.evaluate(NO_SIDEWAYS_SCROLL)
    assert size["scroll"] <= size["width"], f"the page scrolls sideways: {size}"
    cut = narrow.evaluate(CUT_OFF, "page")
    assert not cut, f"cut off: {cut}"


def test_widget_reflows(narrow: Page, site: Site) -> None:
    panel = open_widget(narrow, site.allowed_host + "/index.html")
    ask(panel, CCG_QUESTION)
    size = narrow.evaluate(NO_SIDEWAYS_SCROLL)
    assert size["scroll"] <= size["width"], f"the page scrolls sideways: {size}"
    cut = narrow.evaluate(CUT_OFF, "widget")
    assert not cut, f"cut off: {cut}"
    box = panel.bounding_box()
    viewport = narrow.viewport_size
    assert box is not None
    assert viewport is not None
    assert box["y"] >= 0, box
    assert box["y"] + box["height"] <= viewport["height"], box
    expect(panel.get_by_label("Your question")).to_be_in_viewport()
    expect(panel.get_by_role("button", name="Close chat")).to_be_in_viewport()


# -- live region -----------------------------------------------------------------------------------

#: what each live region held as it changed: [which region, its text]; the widget's regions are
#: in its shadow root
RECORD_LIVE = """() => {
  window.__live = [];
  const LIVE = '[aria-live]:not([aria-live="off"]), [role="status"], [role="alert"], '
             + '[role="log"]:not([aria-live="off"])';
  const record = ms => ms.forEach(m => {
    let e = m.target.nodeType === 1 ? m.target : m.target.parentElement;
    const region = e && e.closest(LIVE);
    if (region) window.__live.push([region.id || region.className, region.textContent]);
  });
  const widget = document.querySelector('#commissioning-assistant-widget');
  for (const root of [document.body, widget && widget.shadowRoot]) {
    if (root) new MutationObserver(record)
      .observe(root, {childList: true, subtree: true, characterData: true});
  }
}"""
ANSWER_TEXT = "209 clinical commissioning groups"


def _assert_announced_once(page: Page, region: Locator) -> None:
    """``region`` is polite and holds the finished answer, set once; no other live region ever
    held the answer (the streamed tokens are not read out one by one)."""
    expect(region).to_have_attribute("aria-live", "polite")
    expect(region).to_contain_text(ANSWER_TEXT)
    name = region.evaluate("e => e.id || e.className")
    changes: list[list[str]] = page.evaluate("() => window.__live")
    texts = [text for which, text in changes if which == name and text.strip()]
    assert len(texts) == 1, f"the answer region changed {len(texts)} times: {texts}"
    others = [which for which, text in changes if which != name and ANSWER_TEXT in text]
    assert not others, f"the answer was also read out, as it streamed, from: {set(others)}"


def test_chat_page_announces_the_finished_answer_once(page: Page, site: Site) -> None:
    _open_chat(page, site)
    page.evaluate(RECORD_LIVE)
    ask_page(page, CCG_QUESTION)
    region = page.locator(CHAT_LIVE)
    _assert_announced_once(page, region)
    said = region.inner_text()
    assert "[1]" in said  # the answer as shown, citation markers and all
    assert "Copy answer" not in said  # but not its buttons


def test_widget_announces_the_finished_answer_once(page: Page, site: Site) -> None:
    panel = open_widget(page, site.allowed_host + "/index.html")
    page.evaluate(RECORD_LIVE)
    ask(panel, CCG_QUESTION)
    _assert_announced_once(page, page.locator(WIDGET_LIVE))
