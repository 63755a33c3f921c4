"""Screenshots for the README: ``python -m devtools.screenshots`` (``make screenshots``).

Starts ``app.py`` over the repo's index (``index/``, or one built from ``corpus/`` in a
temporary folder when ``index/`` has none) with a fresh feedback database, asks a few questions
through the API (some off the guidance) and rates some answers, then saves PNGs with Debian's
chromium at 1280 and 390 px wide into ``docs/screenshots/``:

- ``chat-<width>.png``: the chat page after an answer;
- ``widget-<width>.png``: the widget, open after an answer, on a static host page of its own origin;
- ``admin-<width>.png``: the site owners' page (the whole page).

A step that fails (the chat page's or the widget's look changed, say) is reported and the
others go on; the exit status is 1 if any failed.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx

from devtools.servers import REPO, free_port, running_app, static_site

if TYPE_CHECKING:
    from playwright.sync_api import Browser, Page

__all__ = ["OUT", "WIDTHS", "main"]

OUT = REPO / "docs" / "screenshots"
WIDTHS = (1280, 390)
ADMIN = ("owner", "screenshots-only")
QUESTIONS = [
    "What are the four levels of NHS commissioning?",
    "How many CCGs manage most of the NHS commissioning budget?",
    "What is strategic commissioning?",
    "What is practice-based commissioning?",
    "What does locality level commissioning aim to do?",
    "What is the capital of France?",
    "Which city is the capital of France?",
    "How do I bake a chocolate cake?",
]
CHAT_QUESTION = "How many CCGs manage most of the NHS commissioning budget?"
HOST_PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Team intranet</title>
<style>body {{ font: 16px/1.5 system-ui, sans-serif; margin: 2rem; color: #222; }}</style></head>
<body><h1>Team intranet</h1><p>News, rotas and guidance for the commissioning team.</p>
<script src="{app}/widget.js" data-title="Commissioning guidance" defer></script>
</body></html>
"""
TIMEOUT = 60_000  # ms


def _index_dir(scratch: Path) -> Path:
    """The repo's index, or one built from corpus/ under ``scratch``."""
    if (REPO / "index" / "CURRENT").exists():
        return REPO / "index"
    from assistant.embeddings import make_embedder
    from assistant.index import build_index

    index_dir = scratch / "index"
    print("screenshots: building an index of corpus/ (about a minute)", file=sys.stderr)
    build_index(REPO / "corpus", index_dir, make_embedder())
    return index_dir


def _ask_and_rate(app: str) -> None:
    """Questions through the API, and a few ratings, for the site owners' page to show."""
    with httpx.Client(base_url=app, timeout=120) as client:
        answers = [client.post("/api/ask", json={"question": q}).json() for q in QUESTIONS]
        for i, answer in enumerate(answers[:5]):
            up = i % 2 == 0
            rating = {
                "question": answer["question"],
                "answer": answer["answer"][:7000],
                "rating": 1 if up else -1,
                "comment": "" if up else "Too general: which level pays?",
            }
            client.post("/api/feedback", json=rating)


def _chat(page: Page, app: str) -> None:
    page.goto(app + "/")
    box = page.get_by_label("Your question")
    box.fill(CHAT_QUESTION)
    box.press("Enter")
    page.locator('[data-testid="bot"]').first.wait_for(timeout=TIMEOUT)
    page.get_by_role("button", name="Ask").wait_for(timeout=TIMEOUT)  # the answer is complete
    page.wait_for_timeout(500)


def _widget(page: Page, host: str) -> None:
    page.goto(host + "/")
    page.get_by_role("button", name="Open Commissioning guidance chat").click()
    panel = page.get_by_role("dialog", name="Commissioning guidance")
    panel.get_by_label("Your question").fill(CHAT_QUESTION)
    panel.get_by_label("Your question").press("Enter")
    panel.locator(".caw-answer, .caw-declined, .caw-error").first.wait_for(timeout=TIMEOUT)
    page.wait_for_timeout(800)


def _admin(page: Page, app: str) -> None:
    page.goto(app + "/admin?window=7d")


def _shoot(browser: Browser, app: str, host: str, out: Path) -> list[str]:
    """Every screenshot at every width; the names of those that failed."""
    steps: dict[str, tuple[Callable[[Page], None], bool]] = {
        "chat": (lambda p: _chat(p, app), False),
        "widget": (lambda p: _widget(p, host), False),
        "admin": (lambda p: _admin(p, app), True),
    }
    failed: list[str] = []
    for width in WIDTHS:
        for name, (show, full) in steps.items():
            context = browser.new_context(
                viewport={"width": width, "height": 900 if width > 600 else 844},
                http_credentials={"username": ADMIN[0], "password": ADMIN[1]},
            )
            page = context.new_page()
            page.set_default_timeout(TIMEOUT)
            target = out / f"{name}-{width}.png"
            try:
                show(page)
                page.screenshot(path=str(target), full_page=full)
                print(f"screenshots: {target.relative_to(REPO)}", file=sys.stderr)
            except Exception as err:  # one broken step: report it, take the others
                failed.append(f"{target.name} ({type(err).__name__}: {str(err)[:200]})")
            finally:
                context.close()
    return failed


def main(argv: list[str] | None = None) -> int:
    """Start the app, ask and rate, take the screenshots; 0 if all were taken."""
    parser = argparse.ArgumentParser(prog="python -m devtools.screenshots", description=__doc__)
    parser.add_argument("--out", type=Path, default=OUT, help="folder of the PNGs")
    out = parser.parse_args(argv).out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        print("screenshots: install chromium first (make chromium)", file=sys.stderr)
        return 2
    with tempfile.TemporaryDirectory(prefix="screenshots-") as tmp:
        scratch = Path(tmp)
        (scratch / "host").mkdir()
        host_port, app_port = free_port(), free_port()
        app = f"http://127.0.0.1:{app_port}"
        (scratch / "host" / "index.html").write_text(HOST_PAGE.format(app=app), encoding="utf-8")
        env = {
            "ASSISTANT_CORPUS_DIR": str(REPO / "corpus"),
            "ASSISTANT_INDEX_DIR": str(_index_dir(scratch)),
            "ASSISTANT_DATA_DIR": str(scratch / "data"),
            "ASSISTANT_CORS_ORIGINS": f"http://127.0.0.1:{host_port}",
            "ASSISTANT_ADMIN_AUTH": ":".join(ADMIN),
            "ASSISTANT_KEEP_QUESTIONS": "true",
        }
        with (
            running_app(env, scratch / "server.log", port=app_port),
            static_site(scratch / "host", port=host_port) as host,
            sync_playwright() as p,
        ):
            _ask_and_rate(app)
            browser = p.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
            failed = _shoot(browser, app, host, out)
            browser.close()
    for line in failed:
        print(f"screenshots: failed: {line}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
