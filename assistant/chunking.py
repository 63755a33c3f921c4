"""Chunk stage: structured text of a document → passages (:class:`~assistant.schema.Chunk`).

Splits on headings first, then paragraphs and bullet lists (a list stays with the sentence that
introduces it), and only a block longer than ``max_chars`` is split further, by LangChain's
recursive splitter on list items, then sentences. Navigation debris is dropped. Each chunk
carries its document and its nearest heading; its id is a hash of what is embedded, so indexing
the same text twice gives the same ids.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.schema import Chunk, SourceDocument

__all__ = [
    "DEBRIS_PATTERNS",
    "DEFAULT_MAX_CHARS",
    "chunk_document",
    "chunk_documents",
    "chunk_of_unit",
    "is_debris",
    "parse_unit_id",
    "split_units",
    "unit_id",
]

DEFAULT_MAX_CHARS = 1200
#: paragraphs shorter than this are merged with their neighbours of the same section
DEFAULT_MIN_CHARS = 120
#: a paragraph opening with a short label ("Individual level - …", "Communities. …") names its topic
_RUN_IN = re.compile(r"^([A-Z][\w’'/ -]{2,40}?)(?: - | – |\. (?=[A-Z(]))")

#: whole lines that are navigation or page furniture, not guidance
DEBRIS_PATTERNS: tuple[str, ...] = (
    r"click here\b.*",
    r"take (the )?exam",
    r"page( \d+)? of( \d+)?( -)? completed",
    r"this ends the course\b.*",
    r"you can now continue to the exam\.?",
    r"can you think of a useful website\?",
    r"useful websites",
    r"find out more",
    r"please see the following for more information:?",
    r"more information on .* can be found here\.?",
    r"back to top",
    r"-* ?did you know\?? ?-*",
)
_DEBRIS = re.compile(r"^\s*(?:" + "|".join(DEBRIS_PATTERNS) + r")\s*$", re.IGNORECASE)
#: headings that label a call-out box rather than start a new topic: the section stays as it was
_CALLOUTS = re.compile(r"^(did you know\??|good practice tips?|note|tip)$", re.IGNORECASE)
#: shorter blocks are navigation labels ("Good Practice Tips"), not guidance
_MIN_BLOCK_CHARS = 25
_HEADING = re.compile(r"^(#{1,6})\s+(.*)$")
#: a text line that starts like a heading, escaped by ingestion ("\\# a comment in code")
_ESCAPED_HEADING = re.compile(r"^\\(?=#)", re.MULTILINE)


def is_debris(line: str) -> bool:
    return bool(_DEBRIS.match(line.strip().lstrip("#-").strip()))


@dataclass
class _Block:
    section: str
    text: str
    is_list: bool = False


def _paragraph(section: str, lines: list[str]) -> _Block:
    """A paragraph; one that opens with a short run-in label gets it as a sub-section."""
    text = " ".join(lines)
    label = _RUN_IN.match(text)
    sub = label.group(1).strip() if label and len(label.group(1).split()) <= 4 else ""
    if sub:
        section = f"{section} › {sub}" if section else sub
    return _Block(section, text)


def _blocks(text: str) -> list[_Block]:
    """Paragraphs and lists of the normalised text, each with its nearest heading."""
    blocks: list[_Block] = []
    section = ""
    para: list[str] = []
    items: list[str] = []

    def flush() -> None:
        nonlocal para, items
        if para:
            blocks.append(_paragraph(section, para))
        if items:
            blocks.append(_Block(section, "\n".join(f"- {i}" for i in items), is_list=True))
        para, items = [], []

    for raw in text.splitlines():
        line = raw.strip()
        if not line or is_debris(line):
            if not line:
                flush()
            continue
        heading = _HEADING.match(line)
        if heading:
            flush()
            level, title = len(heading.group(1)), heading.group(2).strip()
            if level > 1 and title and not _CALLOUTS.match(title):
                section = title.rstrip(".")
            continue
        if line.startswith("- ") and len(line) > 2:
            if para:  # a list directly after a paragraph line: keep them apart but adjacent
                blocks.append(_paragraph(section, para))
                para = []
            items.append(line[2:].strip())
        else:
            if items:
                flush()
            para.append(line)
    flush()
    return [b for b in blocks if len(b.text.strip(" -")) >= _MIN_BLOCK_CHARS]


def _group(blocks: Sequence[_Block], max_chars: int, min_chars: int) -> list[tuple[str, str]]:
    """Join consecutive blocks of a section: a list joins its introduction, short ones merge."""
    groups: list[tuple[str, list[str]]] = []
    for b in blocks:
        if groups and groups[-1][0] == b.section:
            current = "\n".join(groups[-1][1])
            joins_list = b.is_list and current.rstrip().endswith((":", "?", "following"))
            small = len(current) < min_chars
            if (joins_list or small) and len(current) + len(b.text) + 1 <= max_chars:
                groups[-1][1].append(b.text)
                continue
        groups.append((b.section, [b.text]))
    return [(s, "\n".join(parts)) for s, parts in groups]


def _split_long(text: str, max_chars: int) -> list[str]:
    """A block over ``max_chars``: a list is cut between whole items (its introduction stays with
    the first piece), prose by LangChain's recursive splitter at sentence ends, then clauses."""
    if len(text) <= max_chars:
        return [text]
    lines = text.split("\n")
    if any(line.startswith("- ") for line in lines):
        pieces: list[str] = []
        for line in lines:
            parts = _split_prose(line, max_chars) if len(line) > max_chars else [line]
            for part in parts:
                if pieces and len(pieces[-1]) + 1 + len(part) <= max_chars:
                    pieces[-1] += "\n" + part
                else:
                    pieces.append(part)
        return pieces
    return _split_prose(text, max_chars)


def _split_prose(text: str, max_chars: int) -> list[str]:
    splitter = RecursiveCharacterTextSplitter(
        chunk_size=max_chars,
        chunk_overlap=0,
        separators=["\n", ". ", "; ", ", ", " "],
        keep_separator="end",
    )
    return [p.strip() for p in splitter.split_text(text) if p.strip()]


def chunk_document(
    doc: SourceDocument, *, max_chars: int = DEFAULT_MAX_CHARS, min_chars: int = DEFAULT_MIN_CHARS
) -> list[Chunk]:
    chunks: list[Chunk] = []
    seen: dict[str, int] = {}
    for section, text in _group(_blocks(doc.text), max_chars, min_chars):
        for piece in _split_long(text, max_chars):
            piece = _ESCAPED_HEADING.sub("", piece)
            position = len(chunks)
            base = Chunk(chunk_id="", doc=doc.info, section=section, text=piece, position=position)
            digest = hashlib.sha256(f"{doc.info.doc_id}\x00{base.embed_text}".encode()).hexdigest()
            occurrence = seen.get(digest, 0)
            seen[digest] = occurrence + 1
            chunk_id = f"{doc.info.doc_id}:{digest[:16]}" + (f"-{occurrence}" if occurrence else "")
            chunks.append(
                Chunk(
                    chunk_id=chunk_id, doc=doc.info, section=section, text=piece, position=position
                )
            )
    return chunks


def chunk_documents(docs: Iterable[SourceDocument], **options: int) -> list[Chunk]:
    return [c for d in docs for c in chunk_document(d, **options)]


_SENTENCE_END = re.compile(r"(?<=[.!?])[\"”’)]?\s+(?=[A-Z0-9‘“\"(])")


def split_units(text: str) -> list[tuple[str, int | None]]:
    """Sentences of a passage's paragraphs and its whole list items, in order.

    Each unit comes with the number of the list it belongs to (None for a sentence of prose).
    Units are embedded too: a question usually asks about one sentence of a passage.
    """
    units: list[tuple[str, int | None]] = []
    list_id = 0
    in_list = False
    for raw in text.splitlines():
        line = raw.strip()
        if not line:
            continue
        if line.startswith("- "):
            if not in_list:
                list_id += 1
                in_list = True
            units.append((line[2:].strip(), list_id))
            continue
        in_list = False
        units.extend((s.strip(), None) for s in _SENTENCE_END.split(line) if s.strip())
    return units


def unit_id(chunk_id: str, position: int) -> str:
    return f"{chunk_id}#{position}"


def parse_unit_id(uid: str) -> tuple[str, int | None]:
    """The chunk id and position inside a unit id (the inverse of :func:`unit_id`); the
    position is None when the id has none."""
    chunk_id, sep, position = uid.rpartition("#")
    if not sep:
        return uid, None
    return chunk_id, int(position) if position.isdigit() else None


def chunk_of_unit(uid: str) -> str:
    """The chunk id inside a unit id."""
    return parse_unit_id(uid)[0]
