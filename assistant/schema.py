"""The typed values passed between the pipeline's stages.

ingest → :class:`SourceDocument` → chunk → :class:`Chunk` → embed/store → retrieve →
:class:`Passage` → answer → :class:`Answer` with :class:`Citation`.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

__all__ = [
    "MAX_TURNS",
    "MAX_TURN_CHARS",
    "Answer",
    "Chunk",
    "Citation",
    "DocInfo",
    "IngestReport",
    "Passage",
    "SkippedFile",
    "SourceDocument",
    "Turn",
]


@dataclass(frozen=True)
class DocInfo:
    """What the manifest says about one document (defaults for files it does not list)."""

    doc_id: str
    title: str
    path: str  # relative to the corpus folder, with forward slashes
    source: str = ""  # where the document came from
    era: str = ""  # how old it is, in words ("2013-2016", "before 2013")
    status: str = "current"  # "current" or "historical"
    note: str = ""  # what a reader should know (e.g. what replaced these arrangements)

    @property
    def historical(self) -> bool:
        return self.status == "historical"


@dataclass(frozen=True)
class SourceDocument:
    """One readable file of the corpus, as structured plain text.

    ``text`` is normalised: headings are lines starting with ``#`` (``##`` … by level),
    list items are lines starting with ``- ``, paragraphs are separated by a blank line.
    """

    info: DocInfo
    text: str
    sha256: str  # of the file's bytes


@dataclass(frozen=True)
class SkippedFile:
    path: str
    reason: str


@dataclass(frozen=True)
class IngestReport:
    documents: list[SourceDocument]
    skipped: list[SkippedFile]


@dataclass(frozen=True)
class Chunk:
    """A passage of one document: the unit that is embedded, indexed and cited."""

    chunk_id: str  # derived from the content and its place, so re-indexing is idempotent
    doc: DocInfo
    section: str  # nearest heading above the passage ("" if none)
    text: str  # the passage as a reader sees it
    position: int  # order of the passage within its document

    @property
    def embed_text(self) -> str:
        """What is embedded and indexed lexically: title and section give the passage its
        context."""
        head = self.doc.title if not self.section else f"{self.doc.title} — {self.section}"
        return f"{head}\n\n{self.text}"

    def metadata(self) -> dict[str, str | int]:
        return {
            "doc_id": self.doc.doc_id,
            "title": self.doc.title,
            "path": self.doc.path,
            "source": self.doc.source,
            "era": self.doc.era,
            "status": self.doc.status,
            "note": self.doc.note,
            "section": self.section,
            "position": self.position,
        }

    @classmethod
    def from_metadata(cls, chunk_id: str, text: str, meta: dict[str, Any]) -> Chunk:
        doc = DocInfo(
            doc_id=str(meta["doc_id"]),
            title=str(meta["title"]),
            path=str(meta.get("path", "")),
            source=str(meta.get("source", "")),
            era=str(meta.get("era", "")),
            status=str(meta.get("status", "current")),
            note=str(meta.get("note", "")),
        )
        return cls(
            chunk_id=chunk_id,
            doc=doc,
            section=str(meta.get("section", "")),
            text=text,
            position=int(meta.get("position", 0)),
        )


@dataclass(frozen=True)
class Passage:
    """A retrieved chunk with its scores (higher is better)."""

    chunk: Chunk
    score: float  # fused score used for ranking
    rank: int  # 1-based
    dense: float | None = None  # cosine similarity to the question, if retrieved densely
    lexical: float | None = None  # BM25 score, if retrieved lexically
    sentence: float | None = None  # cosine similarity of its closest sentence to the question
    #: the chunks the passage is made of, in document order: the chunk retrieval ranked and its
    #: neighbours of the same section (empty: the chunk alone)
    members: tuple[Chunk, ...] = ()

    @property
    def parts(self) -> tuple[Chunk, ...]:
        return self.members or (self.chunk,)


#: earlier turns a request may carry, and the longest turn (the widget and page send far less);
#: also the longest question and answer a feedback row keeps
MAX_TURNS = 50
MAX_TURN_CHARS = 8_000


@dataclass(frozen=True)
class Turn:
    """One earlier turn of a conversation."""

    role: str  # "user" or "assistant"
    content: str


@dataclass(frozen=True)
class Citation:
    n: int
    chunk_id: str
    doc_id: str
    title: str
    section: str
    quote: str  # the cited text, verbatim from the passage (first to last cited sentence)
    passage: str  # the whole passage it comes from
    era: str = ""
    status: str = "current"
    source: str = ""
    note: str = ""  # what the manifest says a reader should know about this document's age
    quotes: list[str] = field(default_factory=list)  # each cited sentence, for highlighting
    #: verification found the cited passage supports what the answer says with it (generated
    #: answers are checked sentence by sentence; extractive ones quote the passage itself)
    supported: bool = True


@dataclass(frozen=True)
class Answer:
    question: str
    answer: str
    refused: bool
    citations: list[Citation]
    passages: list[Passage] = field(default_factory=list)  # what was retrieved, best first
    notices: list[str] = field(default_factory=list)  # e.g. "this source is historical"
    timings_ms: dict[str, float] = field(default_factory=dict)
    mode: str = "extractive"
    search_query: str = ""  # the question as searched (differs from ``question`` for follow-ups)
    confidence: float = 0.0  # calibrated probability that the guidance answers the question
    #: the question asks several things and the documents answer only some of them (the
    #: answer says which part they do not cover)
    partial: bool = False

    def to_json(self) -> dict[str, Any]:
        return {
            "question": self.question,
            "answer": self.answer,
            "refused": self.refused,
            "partial": self.partial,
            "mode": self.mode,
            "confidence": round(self.confidence, 4),
            "search_query": self.search_query,
            "citations": [asdict(c) for c in self.citations],
            "closest": [] if not self.refused else [passage_json(p) for p in self.passages[:3]],
            "notices": list(self.notices),
            "timings_ms": {k: round(v, 1) for k, v in self.timings_ms.items()},
        }


def passage_json(p: Passage) -> dict[str, Any]:
    c = p.chunk
    return {
        "rank": p.rank,
        "chunk_id": c.chunk_id,
        "doc_id": c.doc.doc_id,
        "title": c.doc.title,
        "section": c.section,
        "era": c.doc.era,
        "status": c.doc.status,
        "text": c.text,
        "score": round(p.score, 6),
    }
