"""Browser tests: Debian's chromium driven by playwright, against app.py over real HTTP.

One server for the whole browser session, over an index of the real corpus plus a hostile
document (markup that must show as text and never run). Two host pages on their own loopback
origins embed the widget: one the server allows, one it does not. A failing test leaves a
screenshot in ``test-reports/screenshots/``, next to the JUnit report `make test` writes.
"""

from __future__ import annotations

import re
import shutil
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from servers import running_app

from assistant.index import build_index
from devtools.servers import REPO, free_port, static_site

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

    from assistant.embeddings import Embedder

pytestmark = pytest.mark.slow

SCREENSHOTS = REPO / "test-reports" / "screenshots"

#: a corpus document full of markup; asking about "the zebra register" retrieves it
HOSTILE_DOC = """Zebra register of escaping checks

The zebra register records three hostile snippets: \
<script>window.__xss = 'script'</script> and <img src=x onerror="window.__xss = 'img'"> and \
<a href="javascript:window.__xss = 'link'">a javascript: link</a>.
"""
HOSTILE_QUESTION = "What does the zebra register record?"
HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Intranet page</title></head>
<body><h1>Team intranet</h1><p>Some page content.</p>
<script src="{app}/widget.js" data-title="Commissioning guidance" defer></script>
</body></html>
"""


@dataclass(frozen=True)
class Site:
    app: str  # the assistant: chat page, API, widget.js
    allowed_host: str  # a page on another origin that ASSISTANT_CORS_ORIGINS lists
    other_host: str  # a page on an origin it does not list
    data_dir: Path


@pytest.fixture(scope="session")
def hostile_index(
    tmp_path_factory: pytest.TempPathFactory, real_embedder: Embedder
) -> tuple[Path, Path]:
    corpus = tmp_path_factory.mktemp("browser-corpus")
    for f in (REPO / "corpus").iterdir():
        shutil.copy(f, corpus / f.name)
    (corpus / "zebra-register.txt").write_text(HOSTILE_DOC, encoding="utf-8")
    index_dir = tmp_path_factory.mktemp("browser-index")
    build_index(corpus, index_dir, real_embedder)
    return corpus, index_dir


@pytest.fixture(scope="session")
def site(
    tmp_path_factory: pytest.TempPathFactory, hostile_index: tuple[Path, Path]
) -> Iterator[Site]:
    corpus, index_dir = hostile_index
    data_dir = tmp_path_factory.mktemp("browser-data")
    app_port, allowed_port = free_port(), free_port()
    app = f"http://127.0.0.1:{app_port}"
    pages = tmp_path_factory.mktemp("host-pages")
    (pages / "index.html").write_text(HOST_PAGE.format(app=app), encoding="utf-8")
    env = {
        "ASSISTANT_CORPUS_DIR": str(corpus),
        "ASSISTANT_INDEX_DIR": str(index_dir),
        "ASSISTANT_DATA_DIR": str(data_dir),
        "ASSISTANT_CORS_ORIGINS": f"http://127.0.0.1:{allowed_port}",
    }
    log = tmp_path_factory.mktemp("browser-server") / "server.log"
    with (
        running_app(env, log, port=app_port),
        static_site(pages, port=allowed_port) as allowed_host,
        static_site(pages) as other_host,
    ):
        yield Site(app, allowed_host, other_host, data_dir)


# module scope, not session: playwright's sync API runs an event loop on the main thread while it
# is open, and async tests after the browser tests (pytest-asyncio) need that thread's loop free
@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    from playwright.sync_api import sync_playwright

    executable = shutil.which("chromium") or shutil.which("chromium-browser")
    if executable is None:
        pytest.fail("Debian's chromium is not installed: run `make chromium` (make test does)")
    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=executable, args=["--no-sandbox"])
        yield b
        b.close()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if report.when == "call":
        item.stash[_FAILED] = report.failed
    return report


_FAILED = pytest.StashKey[bool]()


@pytest.fixture
def page(browser: Browser, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A fresh browser context; records page errors; a screenshot when the test fails."""
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    pg = context.new_page()
    errors: list[str] = []
    pg.on("pageerror", lambda exc: errors.append(str(exc)))
    pg.set_default_timeout(30_000)
    yield pg
    if request.node.stash.get(_FAILED, False):
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        name = re.sub(r"[^A-Za-z0-9_.-]+", "_", request.node.nodeid)[-150:]
        pg.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)
    context.close()


def no_xss(page: Page) -> None:
    """Nothing from the hostile document ran."""
    assert page.evaluate("() => window.__xss === undefined"), "markup from a document ran"
