"""Ingestion: read the corpus folder into :class:`~assistant.schema.SourceDocument` values.

Every supported file (plain text, Markdown, HTML, PDF, Word .docx) is turned into the same
*normalised text*, the contract with the chunker:

* headings are lines starting with ``#`` (``# `` title, ``## `` section, ``### `` …); a line
  of text that starts like one (a comment in a code block) is escaped as ``\\#``;
* list items are lines starting with ``- ``, one per line, consecutive items on consecutive lines;
* paragraphs (and lists, and headings) are separated by exactly one blank line;
* whitespace inside a line is collapsed to single spaces (non-breaking spaces included), lines
  have no leading or trailing spaces, and the text has no leading or trailing blank lines.

The words themselves are kept as they are; stripping navigation debris is the chunker's job.

A file that cannot be read is not an error: :func:`ingest` reports it as a
:class:`~assistant.schema.SkippedFile` with a reason a person can act on, and goes on.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import re
import stat
import unicodedata
import warnings
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field, replace
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

from assistant.errors import CorpusError
from assistant.schema import DocInfo, IngestReport, SkippedFile, SourceDocument

if TYPE_CHECKING:  # the parsing libraries are imported when a file of their kind is read
    from bs4 import Tag
    from docx.table import Table
    from docx.text.paragraph import Paragraph

__all__ = [
    "MANIFEST_NAME",
    "SUPPORTED_SUFFIXES",
    "UnreadableFile",
    "check_corpus_dir",
    "corpus_files",
    "ingest",
    "load_manifest",
    "normalise_markdown",
    "normalise_plain_text",
    "read_document",
    "slugify_path",
]

logger = logging.getLogger(__name__)

SUPPORTED_SUFFIXES = (".txt", ".md", ".markdown", ".html", ".htm", ".pdf", ".docx")

MANIFEST_NAME = "manifest.json"
#: files at the top of the corpus folder that document the folder rather than belong to it
_FOLDER_DOCS = frozenset({"readme.md", "readme.txt"})
_STATUSES = ("current", "historical")
_MAX_TITLE_CHARS = 120


class UnreadableFile(Exception):  # noqa: N818 - a verdict on a file, not a program error
    """One file of the corpus cannot be used; ``reason`` says why, for a person."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


# --------------------------------------------------------------------------------------------
# manifest


def load_manifest(corpus_dir: Path) -> dict[str, DocInfo]:
    """The manifest's entries keyed by path relative to ``corpus_dir`` (forward slashes).

    A missing ``manifest.json`` means no entries. A manifest that cannot be used raises
    :class:`CorpusError` naming the file and the problem.
    """
    path = Path(corpus_dir) / MANIFEST_NAME
    if not path.is_file():
        return {}
    try:
        raw = json.loads(path.read_text(encoding="utf-8-sig"))
    except json.JSONDecodeError as err:
        raise CorpusError(
            f"manifest {path} is not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})"
        ) from None
    except UnicodeDecodeError as err:
        raise CorpusError(
            f"manifest {path} is not valid UTF-8 (byte 0x{err.object[err.start]:02x} "
            f"at offset {err.start}); save it as UTF-8"
        ) from None
    except OSError as err:
        raise CorpusError(f"manifest {path} cannot be read: {err.strerror or err}") from None

    if not isinstance(raw, dict) or not isinstance(raw.get("documents"), list):
        raise CorpusError(f'manifest {path} must be a JSON object with a "documents" list')

    entries: dict[str, DocInfo] = {}
    ids: dict[str, str] = {}
    for n, item in enumerate(raw["documents"], start=1):
        where = f"manifest {path}, document #{n}"
        if not isinstance(item, dict):
            raise CorpusError(f"{where} must be a JSON object")
        values: dict[str, str] = {}
        for key in ("id", "file", "title", "source", "era", "status", "note"):
            value = item.get(key)
            if value is None:
                continue
            if not isinstance(value, str):
                raise CorpusError(f'{where}: "{key}" must be a string, not {value!r}')
            values[key] = value.strip()
        for key in ("id", "file", "title"):
            if not values.get(key):
                raise CorpusError(f'{where} has no "{key}"')
        rel = _manifest_rel(values["file"])
        if rel is None:
            raise CorpusError(
                f'{where}: "file" must be a relative path inside the corpus folder, '
                f"not {values['file']!r}"
            )
        status = values.get("status") or "current"
        if status not in _STATUSES:
            raise CorpusError(
                f'{where} ({values["id"]}): "status" must be "current" or "historical", '
                f"not {status!r}"
            )
        doc_id = values["id"]
        if doc_id in ids:
            raise CorpusError(f'{where}: id "{doc_id}" is also used for {ids[doc_id]}')
        if rel in entries:
            raise CorpusError(f"{where}: file {rel} is listed twice")
        ids[doc_id] = rel
        entries[rel] = DocInfo(
            doc_id=doc_id,
            title=values["title"],
            path=rel,
            source=values.get("source", ""),
            era=values.get("era", ""),
            status=status,
            note=values.get("note", ""),
        )
    return entries


def _manifest_rel(file: str) -> str | None:
    """The manifest's ``file`` as a clean relative path, or None if it leaves the folder."""
    parts = [p for p in file.replace("\\", "/").split("/") if p not in ("", ".")]
    if not parts or file.startswith(("/", "\\")) or ".." in parts or ":" in parts[0]:
        return None
    return "/".join(parts)


# --------------------------------------------------------------------------------------------
# the walk


def ingest(
    corpus_dir: Path,
    *,
    max_file_bytes: int = 20_000_000,
    progress: Callable[[str], None] | None = None,
) -> IngestReport:
    """Read every supported file under ``corpus_dir``; report the ones that cannot be used.

    Raises :class:`CorpusError` only when the folder itself (or its manifest) is unusable.
    """
    corpus_dir = Path(corpus_dir)
    check_corpus_dir(corpus_dir)
    manifest = load_manifest(corpus_dir)

    documents: list[SourceDocument] = []
    skipped: list[SkippedFile] = []
    by_bytes: dict[str, str] = {}  # sha256 of the bytes -> path indexed
    by_text: dict[str, str] = {}  # sha256 of the whitespace-normalised text -> path indexed
    used_ids = {info.doc_id for info in manifest.values()}
    seen: set[str] = set()

    def skip(rel: str, reason: str) -> None:
        logger.warning("skipped %s: %s", rel, reason)
        skipped.append(SkippedFile(rel, reason))

    def _read_one(rel: str, path: Path) -> None:
        suffix = PurePosixPath(rel).suffix.lower()
        if suffix not in SUPPORTED_SUFFIXES:
            skip(rel, _unsupported_reason(suffix))
            return
        try:
            data = _read_bytes(path, max_file_bytes)
            sha = hashlib.sha256(data).hexdigest()
            if sha in by_bytes:
                raise UnreadableFile(f"duplicate of {by_bytes[sha]}")
            doc = _document_from_bytes(data, sha, rel, suffix, manifest.get(rel))
            text_key = hashlib.sha256(" ".join(doc.text.split()).encode("utf-8")).hexdigest()
            if text_key in by_text:
                raise UnreadableFile(f"duplicate of {by_text[text_key]} (same text)")
        except UnreadableFile as err:
            skip(rel, err.reason)
            return
        if rel not in manifest:
            doc = replace(doc, info=replace(doc.info, doc_id=_unique_id(doc.info, used_ids)))
        used_ids.add(doc.info.doc_id)
        by_bytes[sha] = rel
        by_text[text_key] = rel
        documents.append(doc)

    for rel, path in corpus_files(corpus_dir):
        seen.add(rel)
        _read_one(rel, path)
        if progress is not None:
            progress(rel)

    for rel in sorted(set(manifest) - seen):
        logger.warning(
            "manifest %s lists %s, which is not in the corpus folder",
            corpus_dir / MANIFEST_NAME,
            rel,
        )
    logger.info(
        "ingested %d documents from %s, skipped %d files", len(documents), corpus_dir, len(skipped)
    )
    return IngestReport(documents=documents, skipped=skipped)


def check_corpus_dir(corpus_dir: Path) -> None:
    """:class:`CorpusError` unless ``corpus_dir`` is a folder (and its manifest, if any, reads)."""
    if not corpus_dir.exists():
        raise CorpusError(f"corpus folder {corpus_dir} does not exist")
    if not corpus_dir.is_dir():
        raise CorpusError(f"corpus folder {corpus_dir} is not a folder")
    load_manifest(corpus_dir)


def corpus_files(corpus_dir: Path) -> list[tuple[str, Path]]:
    """Every non-hidden file under ``corpus_dir`` except the folder's own documentation, sorted.

    Symbolic links to folders are not followed (a link cycle cannot loop the walk).
    """
    found: list[tuple[str, Path]] = []
    for top, dirs, files in os.walk(corpus_dir, followlinks=False):
        dirs[:] = sorted(d for d in dirs if not d.startswith("."))
        top_path = Path(top)
        at_top = top_path == corpus_dir
        for name in files:
            if name.startswith("."):
                continue
            if at_top and (name == MANIFEST_NAME or name.lower() in _FOLDER_DOCS):
                continue
            path = top_path / name
            found.append((path.relative_to(corpus_dir).as_posix(), path))
    found.sort(key=lambda item: item[0])
    return found


def _unsupported_reason(suffix: str) -> str:
    supported = ", ".join(SUPPORTED_SUFFIXES)
    if not suffix:
        return f"unsupported file type: no file extension (supported: {supported})"
    return f"unsupported file type {suffix} (supported: {supported})"


def _read_bytes(path: Path, max_file_bytes: int) -> bytes:
    """The file's bytes; its size is checked before it is opened."""
    try:
        st = path.stat()
        if not stat.S_ISREG(st.st_mode):
            raise UnreadableFile("not a regular file")
        if st.st_size == 0:
            raise UnreadableFile("empty file (0 bytes)")
        if st.st_size > max_file_bytes:
            raise UnreadableFile(f"{st.st_size} bytes, over the limit of {max_file_bytes} bytes")
        return path.read_bytes()
    except OSError as err:
        raise UnreadableFile(f"could not read the file: {err.strerror or err}") from None


def _unique_id(info: DocInfo, used: set[str]) -> str:
    """``info.doc_id``, or a variant of it if another document already has that id."""
    if info.doc_id not in used:
        return info.doc_id
    candidate = slugify_path(info.path, keep_suffix=True)
    n = 2
    while candidate in used:
        candidate = f"{slugify_path(info.path, keep_suffix=True)}-{n}"
        n += 1
    return candidate


def slugify_path(rel: str, *, keep_suffix: bool = False) -> str:
    """``"Guides/NHS Commissioning.txt"`` → ``"guides--nhs-commissioning"``."""
    path = PurePosixPath(rel)
    parts = list(path.parts)
    if not keep_suffix and parts:
        parts[-1] = path.stem
    slugs = []
    for part in parts:
        ascii_part = unicodedata.normalize("NFKD", part).encode("ascii", "ignore").decode()
        slug = re.sub(r"[^a-z0-9]+", "-", ascii_part.lower()).strip("-")
        slugs.append(slug or "doc")
    return "--".join(slugs) or "doc"


# --------------------------------------------------------------------------------------------
# one file


def read_document(path: Path, rel: str, info: DocInfo | None) -> SourceDocument:
    """Read one file into a :class:`SourceDocument`; raises :class:`UnreadableFile`.

    ``info`` is the manifest's entry for the file; without one, the id is derived from ``rel``
    and the title from the text.
    """
    suffix = PurePosixPath(rel).suffix.lower() or Path(path).suffix.lower()
    if suffix not in SUPPORTED_SUFFIXES:
        raise UnreadableFile(_unsupported_reason(suffix))
    try:
        data = Path(path).read_bytes()
    except OSError as err:
        raise UnreadableFile(f"could not read the file: {err.strerror or err}") from None
    if not data:
        raise UnreadableFile("empty file (0 bytes)")
    return _document_from_bytes(data, hashlib.sha256(data).hexdigest(), rel, suffix, info)


def _document_from_bytes(
    data: bytes, sha: str, rel: str, suffix: str, info: DocInfo | None
) -> SourceDocument:
    title_hint = ""
    if suffix in (".txt",):
        text = normalise_plain_text(_decode_text(data))
    elif suffix in (".md", ".markdown"):
        text = normalise_markdown(_decode_text(data))
    elif suffix in (".html", ".htm"):
        text, title_hint = _read_html(data)
    elif suffix == ".pdf":
        text = _read_pdf(data)
    elif suffix == ".docx":
        text = _read_docx(data)
    else:  # pragma: no cover - callers check the suffix first
        raise UnreadableFile(_unsupported_reason(suffix))
    if not text:
        if suffix in (".txt", ".md", ".markdown"):
            raise UnreadableFile("no text (only whitespace)")
        raise UnreadableFile(f"no text (the {suffix} file contains no readable words)")
    if info is None:
        info = DocInfo(
            doc_id=slugify_path(rel),
            title=_clip_title(title_hint) or _title_from_text(text) or PurePosixPath(rel).stem,
            path=rel,
        )
    elif info.path != rel:
        info = replace(info, path=rel)
    return SourceDocument(info=info, text=text, sha256=sha)


def _decode_text(data: bytes) -> str:
    """Strict UTF-8 (a byte-order mark is accepted); anything else is a reason to skip."""
    if data.startswith((b"\xff\xfe", b"\xfe\xff")):
        raise UnreadableFile("UTF-16 text, not UTF-8; save it as UTF-8")
    if b"\x00" in data:
        raise UnreadableFile("binary file, not text (NUL bytes)")
    bom = 3 if data.startswith(b"\xef\xbb\xbf") else 0
    try:
        return data[bom:].decode("utf-8")
    except UnicodeDecodeError as err:
        offset = err.start + bom
        raise UnreadableFile(
            f"not valid UTF-8 (byte 0x{data[offset]:02x} at offset {offset}); save it as UTF-8"
        ) from None


def _title_from_text(text: str) -> str:
    """The first heading, else the first non-empty line."""
    lines = [line for line in text.split("\n") if line.strip()]
    for line in lines:
        if line.startswith("#"):
            title = _clip_title(line.lstrip("#"))
            if title:
                return title
    for line in lines:
        title = _clip_title(line.removeprefix("- "))
        if title:
            return title
    return ""


def _clip_title(title: str) -> str:
    title = _clean_line(title)
    if len(title) <= _MAX_TITLE_CHARS:
        return title
    cut = title[: _MAX_TITLE_CHARS - 1]
    if " " in cut:
        cut = cut.rsplit(" ", 1)[0]
    return cut.rstrip(" ,;:-") + "…"


# --------------------------------------------------------------------------------------------
# normalised text


_INVISIBLE = dict.fromkeys(
    [*range(0x09), 0x0B, *range(0x0E, 0x20), 0x7F, 0x200B, 0x200C, 0x200D, 0x2060, 0xFEFF]
)


def _clean_line(line: str) -> str:
    """One line with invisible characters removed and whitespace (NBSP too) collapsed."""
    return " ".join(line.translate(_INVISIBLE).split())


_HEADING_MARK = re.compile(r"^#{1,6}\s")


def _escape_heading(line: str) -> str:
    """A text line that would read as a heading ("# a comment" in a code block) is escaped
    ("\\# a comment"); the chunker turns it back into text."""
    return "\\" + line if _HEADING_MARK.match(line) else line


@dataclass
class _Blocks:
    """Collects headings, paragraphs and lists, then renders the normalised text."""

    out: list[str] = field(default_factory=list)
    para: list[str] = field(default_factory=list)
    items: list[str] = field(default_factory=list)

    def heading(self, level: int, text: str) -> None:
        self.flush()
        text = _clean_line(text)
        if text:
            self.out.append("#" * max(1, min(level, 6)) + " " + text)

    def line(self, text: str) -> None:
        """A line of paragraph text; consecutive lines make one paragraph."""
        if self.items:
            self.flush()
        text = _escape_heading(_clean_line(text))
        if text:
            self.para.append(text)

    def item(self, text: str) -> None:
        if self.para:
            self.flush()
        text = _clean_line(text)
        if text:
            self.items.append(text)

    def continue_item(self, text: str) -> None:
        text = _clean_line(text)
        if self.items and text:
            self.items[-1] = f"{self.items[-1]} {text}"

    def paragraph(self, text: str) -> None:
        """A whole paragraph at once; explicit line breaks (``\\n``) inside it are kept."""
        self.flush()
        lines = [_escape_heading(_clean_line(line)) for line in text.splitlines()]
        joined = "\n".join(line for line in lines if line)
        if joined:
            self.out.append(joined)

    def flush(self) -> None:
        if self.para:
            self.out.append(" ".join(self.para))
            self.para = []
        if self.items:
            self.out.append("\n".join(f"- {item}" for item in self.items))
            self.items = []

    def render(self) -> str:
        self.flush()
        return "\n\n".join(self.out)


_BULLET = re.compile(
    r"^(?:[-*–—]\s+|[•·‣◦▪▫●○■□►▸➢✓✔](?:\s+|(?=\S))|\(?\d{1,3}[.)]\s+|[a-z][.)]\s+)(?P<rest>.*)$"
)
_BARE_BULLET = re.compile(r"^(?:[•·‣◦▪▫●○■□►▸➢✓✔*–—-]|\d{1,3}[.)])$")


def _is_heading_like(line: str, *, max_chars: int, max_words: int) -> bool:
    """A short line that reads as a heading rather than as a sentence."""
    words = line.split()
    if not words or len(line) > max_chars or len(words) > max_words:
        return False
    if line[-1] in ",;:" or line[0].islower() or not any(c.isalpha() for c in line):
        return False
    return not (line.endswith(".") and len(words) > 4)


def normalise_plain_text(text: str) -> str:
    """Normalised text of a plain-text document, its structure found by heuristics.

    * the first non-empty line becomes the ``# `` title if it reads like one;
    * bulleted or numbered lines become ``- `` items (a line starting with a small letter right
      after an item continues it);
    * a short line after a blank line that reads like a heading (not a sentence) and has text
      after it becomes a ``## `` heading, unless the next line is such a heading too and does not
      end with a full stop (then it is stray text, like "Source: …" above a section);
    * other consecutive lines form one paragraph.
    """
    lines = [_clean_line(line) for line in text.splitlines()]
    content = [i for i, line in enumerate(lines) if line]
    if not content:
        return ""
    first, last = content[0], content[-1]

    # pass 1: what each line is
    kinds: list[str] = []  # "blank", "bare" (a bullet alone), "item", "more" (of an item), "text"
    items: dict[int, str] = {}
    pending = False  # a bullet alone on its line: the next line is the item
    for i, line in enumerate(lines):
        bullet = _BULLET.match(line)
        previous = kinds[-1] if kinds else "blank"
        if not line:
            kinds.append("blank")
        elif _BARE_BULLET.match(line):
            kinds.append("bare")
            pending = True
            continue
        elif bullet and bullet.group("rest"):
            kinds.append("item")
            items[i] = bullet.group("rest")
        elif pending:
            kinds.append("item")
            items[i] = line
        elif previous in ("item", "more") and line[0].islower():
            kinds.append("more")
        else:
            kinds.append("text")
        pending = False

    # pass 2: which text lines are headings
    def reads_as_heading(i: int, max_chars: int, max_words: int) -> bool:
        wrapped = i + 1 < len(lines) and lines[i + 1][:1].islower()  # a sentence going on
        return (
            kinds[i] == "text"
            and i < last
            and not wrapped
            and _is_heading_like(lines[i], max_chars=max_chars, max_words=max_words)
        )

    candidate = [
        i > first and kinds[i - 1] == "blank" and reads_as_heading(i, 80, 10)
        for i in range(len(lines))
    ]
    next_content = dict(itertools.pairwise(content))

    def strong(i: int) -> bool:  # a heading candidate that is not a short sentence
        return candidate[i] and not lines[i].endswith(".")

    blocks = _Blocks()
    for i, line in enumerate(lines):
        kind = kinds[i]
        if kind == "blank":
            blocks.flush()
        elif kind == "item":
            blocks.item(items[i])
        elif kind == "more":
            blocks.continue_item(line)
        elif kind == "bare":
            continue
        elif i == first and reads_as_heading(i, 120, 16):
            blocks.heading(1, line)
        elif candidate[i] and not strong(next_content.get(i, i)):
            blocks.heading(2, line)
        else:
            blocks.line(line)
    return blocks.render()


_MD_HEADING = re.compile(r"^(#{1,6})(?:\s+(.*?))?(?:\s+#+)?\s*$")
_MD_ITEM = re.compile(r"^\s*(?:[*+-]|\d{1,9}[.)])\s+(?P<rest>.*)$")
_MD_RULE = re.compile(r"^\s{0,3}([-*_])(?:\s*\1){2,}\s*$")
_MD_SETEXT = re.compile(r"^\s{0,3}(=+|-+)\s*$")
_MD_FENCE = re.compile(r"^\s{0,3}(```|~~~)")


def normalise_markdown(text: str) -> str:
    """Normalised text of a Markdown document, by line rules (not a full Markdown parser)."""
    raw = text.splitlines()
    blocks = _Blocks()
    in_fence = False
    after_item = False
    for i, line in enumerate(raw):
        if _MD_FENCE.match(line):
            blocks.flush()
            in_fence = not in_fence
            after_item = False
            continue
        if in_fence:
            blocks.line(line)
            continue
        stripped = line.strip()
        if not stripped:
            blocks.flush()
            after_item = False
            continue
        nxt = raw[i + 1] if i + 1 < len(raw) else ""
        heading = _MD_HEADING.match(stripped)
        if heading:
            blocks.heading(len(heading.group(1)), heading.group(2) or "")
            after_item = False
            continue
        setext = _MD_SETEXT.match(nxt)
        if setext and not blocks.para and not after_item and not _MD_ITEM.match(line):
            blocks.heading(1 if setext.group(1).startswith("=") else 2, stripped)
            raw[i + 1] = ""  # the underline is consumed
            continue
        if _MD_RULE.match(line):
            blocks.flush()
            after_item = False
            continue
        item = _MD_ITEM.match(line)
        if item:
            blocks.item(item.group("rest"))
            after_item = True
            continue
        stripped = re.sub(r"^(?:>\s?)+", "", stripped)
        if after_item:  # an indented or lazy continuation of the item
            blocks.continue_item(stripped)
        else:
            blocks.line(stripped)
    return blocks.render()


# --------------------------------------------------------------------------------------------
# HTML


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


def _read_html(data: bytes) -> tuple[str, str]:
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
        title = _clean_line(title_tag.get_text(" ")) if isinstance(title_tag, Tag) else ""
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
        blocks = _Blocks()
        if title and first_h1 is None:
            blocks.heading(1, title)
        _HtmlWalker(blocks).visit(root)
        return blocks.render(), title
    except RecursionError:
        raise UnreadableFile("could not parse HTML: elements nested too deeply") from None
    except (ParserRejectedMarkup, ValueError, LookupError) as err:
        raise UnreadableFile(f"could not parse HTML: {_short(err)}") from None


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

    def __init__(self, blocks: _Blocks) -> None:
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


# --------------------------------------------------------------------------------------------
# PDF


def _read_pdf(data: bytes) -> str:
    from pypdf import PdfReader
    from pypdf.errors import FileNotDecryptedError

    # pypdf raises a wide variety of exceptions on damaged files (PdfReadError, but also
    # ValueError, KeyError, TypeError, struct.error, zlib.error…), so this one per-file
    # boundary catches Exception and turns it into a reason.
    try:
        reader = PdfReader(io.BytesIO(data), strict=False)
        if reader.is_encrypted:
            try:  # many PDFs are "encrypted" with an empty password and open in any reader
                unlocked = bool(reader.decrypt(""))
            except Exception:  # see above; e.g. a missing crypto dependency
                unlocked = False
            if not unlocked:
                raise UnreadableFile("encrypted PDF (password protected); save it unprotected")
        pages = [page.extract_text() or "" for page in reader.pages]
    except UnreadableFile:
        raise
    except FileNotDecryptedError:
        raise UnreadableFile("encrypted PDF (password protected); save it unprotected") from None
    except Exception as err:  # see above: the per-file boundary
        raise UnreadableFile(f"corrupt or truncated PDF: {_short(err)}") from None
    text = normalise_plain_text("\n\n".join(pages))
    if not text:
        raise UnreadableFile("PDF has no extractable text (scanned images?)")
    return text


# --------------------------------------------------------------------------------------------
# Word


def _read_docx(data: bytes) -> str:
    import docx

    # python-docx reports damaged packages through zipfile (BadZipFile), its own OpcError,
    # lxml syntax errors and KeyError/ValueError for missing parts, so this one per-file
    # boundary catches Exception.
    try:
        document = docx.Document(io.BytesIO(data))
        blocks = _Blocks()
        _docx_blocks(document.iter_inner_content(), blocks, depth=0)
        return blocks.render()
    except Exception as err:  # see above: the per-file boundary
        raise UnreadableFile(f"corrupt .docx (not a valid Word file): {_short(err)}") from None


_DOCX_HEADING = re.compile(r"^heading\s*(\d)$", re.IGNORECASE)


def _docx_blocks(content: Iterable[Paragraph | Table], blocks: _Blocks, *, depth: int) -> None:
    from docx.table import Table
    from docx.text.paragraph import Paragraph

    for part in content:
        if isinstance(part, Paragraph):
            _docx_paragraph(part, blocks)
        elif isinstance(part, Table) and depth < 8:
            for cell in _docx_cells(part):
                _docx_blocks(cell, blocks, depth=depth + 1)
            blocks.flush()


def _docx_cells(table: Table) -> Iterator[list[Paragraph | Table]]:
    """The contents of each distinct cell (a merged cell is listed by python-docx repeatedly)."""
    seen: set[int] = set()
    for row in table.rows:
        for cell in row.cells:
            if id(cell._tc) in seen:
                continue
            seen.add(id(cell._tc))
            yield list(cell.iter_inner_content())


def _docx_paragraph(paragraph: Paragraph, blocks: _Blocks) -> None:
    text = paragraph.text
    if not text.strip():
        return
    style = paragraph.style.name if paragraph.style is not None else ""
    style = style or ""
    heading = _DOCX_HEADING.match(style)
    ppr = paragraph._p.pPr
    numbered = ppr is not None and ppr.numPr is not None
    if style == "Title":
        blocks.heading(1, " ".join(text.split()))
    elif heading:
        blocks.heading(int(heading.group(1)) + 1, " ".join(text.split()))
    elif style.startswith("List") or numbered:
        blocks.item(" ".join(text.split()))
    else:
        blocks.paragraph(text)


def _short(err: BaseException) -> str:
    """A one-line, bounded description of a library's exception."""
    message = " ".join(str(err).split()) or type(err).__name__
    return message if len(message) <= 160 else message[:157] + "..."
