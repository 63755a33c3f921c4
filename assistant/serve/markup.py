"""The chat page's own markup: text escaped for Markdown, answers with linked markers, the copy
button, and the script and styles in the page's ``<head>`` that make them work.

Everything from a document, a question or an answer passes through :func:`md_text`, which
escapes HTML and the Markdown that could make links, images or code. The answer's markers are
links to the sources (``#src-<key>-<n>``, the ids of the Sources block's headings); the copy
button is followed by the text it copies in a hidden span, since the page's sanitiser keeps no
data attributes. :func:`plain_text` removes both again for the history and ratings.
"""

from __future__ import annotations

import html
import re
from collections.abc import Sequence
from pathlib import Path

from assistant.schema import Answer
from assistant.serve.display import Block, copy_text, render_blocks

__all__ = ["ANSWERS_HEAD", "COPY_LABEL", "blocks_markdown", "copy_button", "md_text", "plain_text"]

# Markdown that could turn text into links, images, code, emphasis, headings or tables. A lone
# "[1]" stays as it is (screen readers read the message's source, backslashes and all); only a
# "]" that could close a link, image or reference definition is escaped. Maths is switched off.
_MD_SPECIAL = re.compile(r"([\\`*_#|~]|\](?=[(\[:]))")
# What a Markdown renderer would turn into a link by itself: "https://…", "www.…", "a@b.org".
_AUTOLINK = re.compile(r"(?<=[A-Za-z])(:)(?=//)|(?<=\bwww)(\.)|(@)(?=[A-Za-z0-9])")
_COPY_BUTTON = re.compile(
    r'\s*<button[^>]*class="copy-answer".*?</button>(<span class="copy-text">[^<]*</span>)?',
    re.DOTALL,
)
COPY_LABEL = "Copy answer with sources"

_STYLE = """
.source-target { outline: 3px solid #1d4ed8; outline-offset: 2px; scroll-margin-top: 1em; }
a.cite-ref { font-weight: 600; text-decoration: underline; }
.copy-text { display: none; }
button.copy-answer { margin-top: 0.25em; padding: 0.2em 0.6em; border: 1px solid #374151;
                     border-radius: 4px; background: #ffffff; color: #111827; cursor: pointer; }
"""

#: The answers' markers and copy buttons at work (static/page.js) and their look.
ANSWERS_HEAD = (
    f"<style>{_STYLE}</style>\n<script>\n"
    + (Path(__file__).parent / "static" / "page.js").read_text(encoding="utf-8")
    + "</script>"
)


def md_text(text: str) -> str:
    """``text`` for a Markdown message, shown exactly as written: no HTML, links or formatting."""
    escaped = _MD_SPECIAL.sub(r"\\\1", html.escape(text, quote=False))
    return _AUTOLINK.sub(lambda m: "\\" + m.group(0), escaped)


def plain_text(markdown: str) -> str:
    """The text a reader sees in one of our messages (inverse of :func:`md_text`, tags removed)."""
    text = _COPY_BUTTON.sub("", markdown)
    text = re.sub(r"<[^>]+>", "", text)
    text = re.sub(r"\\([\\`*_#|~\]:.@])", r"\1", text)
    return html.unescape(text)


def _markers(cite: Sequence[int], key: str) -> str:
    """Each marker a link to its source in the Sources block (:data:`ANSWERS_HEAD` opens it)."""
    return "".join(f'<a class="cite-ref" href="#src-{key}-{n}">[{n}]</a>' for n in cite)


def blocks_markdown(blocks: Sequence[Block], key: str) -> str:
    """The answer's paragraphs and lists as Markdown, one linked marker per run."""
    return render_blocks(blocks, md_text, lambda cite: _markers(cite, key))


def copy_button(answer: Answer) -> str:
    """A button that copies the answer with its numbered sources as plain text
    (:func:`~assistant.serve.display.copy_text`), which follows it in a hidden span (the page's
    sanitiser keeps no data attributes); :data:`ANSWERS_HEAD` does the copying."""
    text = md_text(copy_text(answer)).replace("\n", "&#10;")
    return (
        f'<button type="button" class="copy-answer">{COPY_LABEL}</button>'
        f'<span class="copy-text">{text}</span>'
    )
