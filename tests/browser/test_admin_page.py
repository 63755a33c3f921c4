"""The site owners' page in a real browser, against app.py over real HTTP: 50-odd questions asked
through the API (some off the guidance, some refused) and rated, then /admin opened with its
login shows the same counts, the groups and an export link; without the login it refuses; axe
finds no serious or critical accessibility problem."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import httpx
import pytest
from servers import running_app

from devtools.servers import free_port

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

pytestmark = pytest.mark.slow

USER, PASSWORD = "owner", "a-long-admin-password"
ON_TOPIC = [
    "What are the four levels of NHS commissioning?",
    "What is commissioning at the individual level?",
    "What does locality level commissioning aim to do?",
    "What is strategic commissioning?",
    "What is a joint commissioning matrix?",
    "Who can commission at the individual level?",
    "What is practice-based commissioning?",
    "Where should responsibility for commissioning be placed?",
    "What is the commissioning cycle?",
    "What is good commissioning practice?",
]
OFF_TOPIC = [
    "What is the capital of France?",
    "Which city is the capital of France?",
    "How do I bake a chocolate cake?",
    "Give me a recipe for chocolate cake",
    "Who won the football world cup in 1966?",
    "Which team won the 1966 football world cup?",
]
COMMENTS = ["Too vague about the levels", "Did not say who pays", "Wrong document cited"]


@pytest.fixture(scope="module")
def owners_site(
    tmp_path_factory: pytest.TempPathFactory, hostile_index: tuple[Path, Path]
) -> Iterator[str]:
    corpus, index_dir = hostile_index
    env = {
        "ASSISTANT_CORPUS_DIR": str(corpus),
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_DATA_DIR": str(tmp_path_factory.mktemp("admin-data")),
        "ASSISTANT_ADMIN_AUTH": f"{USER}:{PASSWORD}",
        "ASSISTANT_KEEP_QUESTIONS": "true",
        "ASSISTANT_FEEDBACK_RATE_PER_MINUTE": "0",
    }
    log = tmp_path_factory.mktemp("admin-server") / "server.log"
    with running_app(env, log, port=free_port()) as url:
        yield url


@pytest.fixture(scope="module")
def asked(owners_site: str) -> dict[str, Any]:
    """Ask 55 questions (on and off the guidance, two refused) and rate eight answers."""
    counts = {"answered": 0, "declined": 0, "refused": 0, "up": 0, "down": 0}
    questions = ON_TOPIC * 4 + OFF_TOPIC * 2 + ["x" * 1001, "Email me at jane.smith@example.org"]
    answers: list[dict[str, Any]] = []
    with httpx.Client(base_url=owners_site, timeout=60) as client:
        for question in questions:
            r = client.post("/api/ask", json={"question": question})
            if r.status_code == 400:
                counts["refused"] += 1
                continue
            assert r.status_code == 200, r.text
            answer = r.json()
            counts["declined" if answer["refused"] else "answered"] += 1
            answers.append(answer)
        for i, answer in enumerate(answers[:8]):
            down = i < len(COMMENTS) or answer["refused"]
            rating = {
                "question": answer["question"],
                "answer": answer["answer"][:7000],
                "rating": -1 if down else 1,
                "comment": COMMENTS[i] if i < len(COMMENTS) else "",
            }
            assert client.post("/api/feedback", json=rating).status_code == 200
            counts["down" if down else "up"] += 1
    assert len(questions) >= 50
    assert counts["declined"] >= 2, "the off-topic questions were answered"
    return counts


def _figure(page: Page, name: str) -> str:
    return page.locator(f'[data-figure="{name}"]').inner_text().strip()


def _wait_for_events(page: Page, url: str, want: int) -> None:
    """Events are written in the background: reload until they are all there."""
    for _ in range(50):
        page.goto(url)
        if _figure(page, "questions") == str(want):
            return
        page.wait_for_timeout(200)
    assert _figure(page, "questions") == str(want)


def test_refused_without_the_login(owners_site: str) -> None:
    r = httpx.get(f"{owners_site}/admin")
    assert r.status_code == 401
    assert r.headers["www-authenticate"].startswith("Basic")
    assert httpx.get(f"{owners_site}/admin", auth=(USER, "wrong")).status_code == 401


def test_the_page_shows_what_was_asked(
    browser: Browser, owners_site: str, asked: dict[str, Any]
) -> None:
    context = browser.new_context(http_credentials={"username": USER, "password": PASSWORD})
    page = context.new_page()
    total = asked["answered"] + asked["declined"] + asked["refused"]
    _wait_for_events(page, f"{owners_site}/admin?window=24h", total)
    assert _figure(page, "answered") == str(asked["answered"])
    assert _figure(page, "declined") == str(asked["declined"])
    assert _figure(page, "refused") == str(asked["refused"])
    assert _figure(page, "thumbs-up") == str(asked["up"])
    assert _figure(page, "thumbs-down") == str(asked["down"])
    assert _figure(page, "median").endswith(" ms")
    assert page.get_by_role("figure").count() == 4
    outcomes = page.locator("#outcomes-table")
    assert "refused: question too long" in outcomes.inner_text()
    assert "refused: personal data" in outcomes.inner_text()
    assert "jane.smith" not in page.content()  # a refused question is not kept
    groups = page.locator("section.group")
    assert groups.count() >= 2
    heading = page.locator("section.group h3").first.inner_text()
    assert heading.split()[0] != "1", "no two similar off-topic questions were grouped"
    link = page.get_by_role("link", name="as draft evaluation cases").first
    href = link.get_attribute("href")
    assert href
    export = context.request.get(f"{owners_site}{href}")
    assert export.status == 200
    drafts = [json.loads(line) for line in export.text().splitlines()]
    assert drafts
    assert all(d["question"] and d["must"] == [] for d in drafts)
    context.close()


def test_no_serious_accessibility_problem(
    browser: Browser, owners_site: str, asked: dict[str, Any]
) -> None:
    from axe_playwright_python.sync_playwright import Axe

    for width in (1280, 390):
        context = browser.new_context(
            http_credentials={"username": USER, "password": PASSWORD},
            viewport={"width": width, "height": 900},
        )
        page = context.new_page()
        page.goto(f"{owners_site}/admin")
        violations = Axe().run(page).response["violations"]
        serious = [(v["id"], v["impact"]) for v in violations
                   if v["impact"] in ("serious", "critical")]  # fmt: skip
        context.close()
        assert serious == [], serious
