"""HTML pages to normalised text: page furniture (navigation, sidebars, permalinks) dropped,
the page's own title kept."""

from __future__ import annotations

import re
import warnings
from typing import TYPE_CHECKING

from assistant.ingest.text import Blocks, UnreadableFile, clean_line, short_error

if TYPE_CHECKING:  # BeautifulSoup is imported when an HTML file is read
    from bs4 import Tag

__all__ = ["read_html"]


_HTML_DROP = tuple(
    [
        "script",
        "style",
        "noscript",
        "template",
        "nav",
        "footer",
        "form",
        "iframe",
        "object",
        "embed",
        "svg",
        "canvas",
        "select",
        "button",
        "input",
        "textarea",
        "head",
    ]
)
_HTML_DROP_ROLES = frozenset({"navigation", "contentinfo", "search", "banner"})
#: classes documentation generators (Sphinx, MkDocs, DocBook, Docusaurus) give to page furniture:
#: tables of contents, breadcrumbs, sidebars, previous/next bars, "edit this page" links
_HTML_DROP_CLASSES = frozenset(
    {
        "toc", "toctree-wrapper", "sphinxsidebar", "related", "breadcrumb", "breadcrumbs",
        "navheader", "navfooter", "md-sidebar", "md-header", "md-footer", "md-source",
        "skip-link", "edit-this-page", "pagination-nav", "theme-doc-toc-mobile",
    }
)  # fmt: skip
_HTML_BLOCKS = frozenset(
    [
        "address",
        "article",
        "aside",
        "blockquote",
        "body",
        "caption",
        "center",
        "dd",
        "details",
        "dialog",
        "div",
        "dl",
        "dt",
        "fieldset",
        "figcaption",
        "figure",
        "header",
        "hgroup",
        "hr",
        "html",
        "legend",
        "main",
        "ol",
        "p",
        "pre",
        "section",
        "summary",
        "table",
        "tbody",
        "td",
        "tfoot",
        "th",
        "thead",
        "tr",
        "ul",
    ]
)
_HTML_HEADINGS = {f"h{n}": n for n in range(1, 7)}
#: characters str.splitlines() breaks at: in HTML text they are spaces (only <br> breaks a line)
_LINE_BREAKS = dict.fromkeys(map(ord, "\r\n\x0b\x0c\x1c\x1d\x1e\x85\u2028\u2029"), " ")


def read_html(data: bytes) -> tuple[str, str]:
    """(normalised text, title) of an HTML page. Text is taken as text; no markup survives."""
    from bs4 import BeautifulSoup, FeatureNotFound, Tag, XMLParsedAsHTMLWarning
    from bs4.exceptions import ParserRejectedMarkup

    if b"\x00" in data[:4096] and not data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableFile("binary file, not text (NUL bytes)")
    try:
        with warnings.catch_warnings():  # XHTML pages (DocBook's) are HTML as far as we care
            warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
            try:
                soup = BeautifulSoup(data, "lxml")
            except FeatureNotFound:  # no lxml: the standard library's parser will do
                soup = BeautifulSoup(data, "html.parser")
        title_tag = soup.find("title")
        title = clean_line(title_tag.get_text(" ")) if isinstance(title_tag, Tag) else ""
        for tag in soup.find_all(True):
            if tag.decomposed:
                continue
            role = str(tag.get("role") or "").lower()
            hidden = tag.has_attr("hidden") or str(tag.get("aria-hidden") or "") == "true"
            furniture = {str(c).lower() for c in tag.get("class") or []} & _HTML_DROP_CLASSES
            if (
                role in _HTML_DROP_ROLES
                or hidden
                or furniture
                or (tag.name == "header" and tag.find("nav"))
            ):
                tag.decompose()
        for tag in soup.find_all(list(_HTML_DROP)):
            if not tag.decomposed:
                tag.decompose()
        for tag in soup.find_all("a"):  # permalink signs after headings ("¶", "#", "§")
            if not tag.decomposed and _is_permalink(tag):
                tag.decompose()
        root = _main_content(soup)
        first_h1 = root.find("h1")
        if isinstance(first_h1, Tag) and _inline_text(first_h1):
            title = _inline_text(first_h1)  # the page's own heading, not the site's <title>
        else:
            title = _page_title(title)
        blocks = Blocks()
        if title and first_h1 is None:
            blocks.heading(1, title)
        _HtmlWalker(blocks).visit(root)
        return blocks.render(), title
    except RecursionError:
        raise UnreadableFile("could not parse HTML: elements nested too deeply") from None
    except (ParserRejectedMarkup, ValueError, LookupError) as err:
        raise UnreadableFile(f"could not parse HTML: {short_error(err)}") from None


#: text of a heading's permalink anchor in pages from documentation generators (Sphinx, MkDocs,
#: Docusaurus, GitHub's Markdown): it is not part of the heading
_PERMALINK_SIGNS = frozenset({"¶", "#", "§", "🔗", "⚓", "⚓︎", "link", "permalink"})
#: separators between a page's own title and the site's name in <title>
_TITLE_SEPARATOR = re.compile(r"\s+(?:[—–|·»:]|-{1,2})\s+")


def _is_permalink(tag: Tag) -> bool:
    """An in-page link whose text is only a permalink sign (or that is marked as one)."""
    href = str(tag.get("href") or "")
    classes = {str(c).lower() for c in tag.get("class") or []}
    if classes & {"headerlink", "anchor-link", "anchorjs-link", "hash-link", "permalink"}:
        return True
    text = " ".join(tag.get_text(" ").split()).lower()
    return href.startswith("#") and (text in _PERMALINK_SIGNS or (not text and not tag.find("img")))


def _main_content(soup: Tag) -> Tag:
    """The page's main content (``<main>``, ``role="main"``, or a lone ``<article>``): sidebars,
    breadcrumbs and footers of documentation sites lie outside it. The body if there is none."""
    from bs4 import Tag

    for found in (soup.find("main"), soup.find(True, attrs={"role": "main"})):
        if isinstance(found, Tag) and found.get_text(strip=True):
            return found
    articles = soup.find_all("article")
    if len(articles) == 1 and articles[0].get_text(strip=True):
        return articles[0]
    body = soup.find("body")
    return body if isinstance(body, Tag) else soup


def _page_title(title: str) -> str:
    """A ``<title>`` without the site's name: "Sorting HOW TO — Python 3.11 documentation" →
    "Sorting HOW TO" (the first part, when the title is made of parts joined by a dash or bar)."""
    parts = [p for p in _TITLE_SEPARATOR.split(title) if p.strip()]
    return parts[0].strip() if len(parts) > 1 else title


class _HtmlWalker:
    """Turns the element tree into blocks: headings, list items, paragraphs."""

    def __init__(self, blocks: Blocks) -> None:
        self.blocks = blocks
        self.buf: list[str] = []
        self.kinds: list[str] = ["para"]  # "para" or "item": what the buffered text becomes
        self.pre = 0

    def flush(self) -> None:
        text = "".join(self.buf)
        self.buf = []
        if not text.strip():
            return
        if self.kinds[-1] == "item":
            self.blocks.item(" ".join(text.split()))
        else:
            self.blocks.paragraph(text)

    def visit(self, root: Tag) -> None:
        """Walk the tree with an explicit stack: deeply nested pages cannot overflow Python's."""
        from bs4.element import NavigableString, PreformattedString, Tag

        # ("node", element) visits an element; ("end", name) closes a block element
        stack: list[tuple[str, object]] = [("node", child) for child in reversed(root.contents)]
        while stack:
            action, value = stack.pop()
            if action == "end":
                self.flush()
                if value in ("li", "ul", "ol", "dl", "table"):
                    self.kinds.pop()
                self.pre -= value == "pre"
                continue
            if isinstance(value, PreformattedString):  # comments, CDATA, doctype…
                continue
            if isinstance(value, NavigableString):
                text = str(value)
                self.buf.append(text if self.pre else text.translate(_LINE_BREAKS))
                continue
            if not isinstance(value, Tag):
                continue
            name = value.name
            if name == "br":
                self.buf.append("\n")
                continue
            if name in _HTML_HEADINGS:
                self.flush()
                self.blocks.heading(_HTML_HEADINGS[name], _inline_text(value))
                continue
            if name == "li" or name in _HTML_BLOCKS:
                self.flush()
                if name == "li":
                    self.kinds.append("item")
                elif name in ("ul", "ol", "dl", "table"):
                    self.kinds.append("para")
                self.pre += name == "pre"
                stack.append(("end", name))
            stack.extend(("node", child) for child in reversed(value.contents))


def _inline_text(tag: Tag) -> str:
    """The text of an element on one line (inline markup inside words does not split them)."""
    from bs4.element import NavigableString, PreformattedString, Tag

    parts: list[str] = []
    for element in tag.descendants:
        if isinstance(element, Tag) and element.name == "br":
            parts.append(" ")
        elif isinstance(element, NavigableString) and not isinstance(element, PreformattedString):
            parts.append(str(element))
    return " ".join("".join(parts).split())
