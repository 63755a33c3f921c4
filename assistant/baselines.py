"""The systems :mod:`assistant.evaluation` compares: the assistant and two baselines.

Both baselines run on the same cases with the same embedding model as the assistant, and search a
follow-up question the way the assistant does (with the previous user question prepended when the
question leans on it, :func:`~assistant.pipeline.standalone_question`). Neither can decline:
its "answer" is its top passage, verbatim, cited once, so its key-fact and citation metrics say
how far plain retrieval gets, and its refusal metrics mean nothing.

* ``langchain-tutorial``: the LangChain RAG tutorial's pipeline. The corpus files as plain text
  (no structure), ``RecursiveCharacterTextSplitter(chunk_size=1000, chunk_overlap=200)``, an
  in-memory Chroma collection through ``langchain_chroma.Chroma``, ``similarity_search``.
* ``bm25``: BM25 alone (:class:`~assistant.lexical.LexicalIndex`) over the assistant's own chunks.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path, PurePosixPath

from langchain_chroma import Chroma
from langchain_core.documents import Document
from langchain_core.embeddings import Embeddings
from langchain_text_splitters import RecursiveCharacterTextSplitter

from assistant.chunking import chunk_documents
from assistant.embeddings import Embedder
from assistant.evalset import EvalCase
from assistant.evaluation import System
from assistant.ingest import ingest
from assistant.lexical import LexicalIndex
from assistant.pipeline import Assistant, clean_question, stage_timings, standalone_question
from assistant.schema import Answer, Chunk, Citation, DocInfo, Passage, SourceDocument
from assistant.store import ephemeral_client, release_client

__all__ = [
    "BM25Baseline",
    "LangChainTutorial",
    "assistant_system",
    "open_baselines",
    "search_query",
    "tutorial_documents",
]

log = logging.getLogger(__name__)

#: the tutorial's splitter settings
TUTORIAL_CHUNK_SIZE = 1000
TUTORIAL_CHUNK_OVERLAP = 200
#: files the tutorial reads as they are; other formats go in as the text ingestion extracted
_PLAIN_SUFFIXES = frozenset({".txt", ".md", ".markdown"})

Ranker = Callable[[str, int], list[Passage]]


def search_query(case: EvalCase, max_question_chars: int) -> str:
    """What every system searches for a case: a follow-up with the question it follows."""
    return standalone_question(clean_question(case.question, max_question_chars), case.history)


def assistant_system(assistant: Assistant) -> System:
    """The assistant: answers with ``ask`` (history included), ranks with its retriever."""

    def ask(case: EvalCase) -> Answer:
        return assistant.ask(case.question, case.history)

    def search(case: EvalCase, k: int) -> list[Passage]:
        return assistant.retriever.search(assistant.search_query(case.question, case.history), k)

    return System(
        name="assistant",
        description="hybrid retrieval (passage and sentence cosine, BM25), extractive cited "
        "answer, calibrated declining",
        ask=ask,
        search=search,
    )


def _top_passage_system(
    name: str, description: str, rank: Ranker, *, k: int, max_question_chars: int
) -> System:
    """A baseline whose answer is its top passage, cited once; it never declines."""

    def search(case: EvalCase, n: int) -> list[Passage]:
        return rank(search_query(case, max_question_chars), n)

    def ask(case: EvalCase) -> Answer:
        t0 = time.perf_counter()
        query = search_query(case, max_question_chars)
        passages = rank(query, k)  # the same ranking as search(), so its top passage is rank 1
        t1 = time.perf_counter()
        citations = [_cite(passages[0].chunk)] if passages else []
        text = f"{passages[0].chunk.text} [1]" if passages else ""
        t2 = time.perf_counter()
        return Answer(
            question=case.question,
            answer=text,
            refused=False,
            citations=citations,
            passages=passages,
            timings_ms=stage_timings(t0, t1, t2),
            mode="top-passage",
            search_query=query,
        )

    return System(name, description, ask=ask, search=search, declines=False)


def _cite(chunk: Chunk) -> Citation:
    d = chunk.doc
    return Citation(
        n=1, chunk_id=chunk.chunk_id, doc_id=d.doc_id, title=d.title, section=chunk.section,
        quote=chunk.text, passage=chunk.text, era=d.era, status=d.status, source=d.source,
        note=d.note, quotes=[chunk.text],
    )  # fmt: skip


# -- langchain-tutorial ---------------------------------------------------------------------------


class _AsEmbeddings(Embeddings):
    """An :class:`~assistant.embeddings.Embedder` as a LangChain ``Embeddings``."""

    def __init__(self, embedder: Embedder) -> None:
        self._embedder = embedder

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [[float(x) for x in row] for row in self._embedder.encode(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self._embedder.encode([text])[0]]


def _as_embeddings(embedder: Embedder | Embeddings) -> Embeddings:
    return embedder if isinstance(embedder, Embeddings) else _AsEmbeddings(embedder)


def tutorial_documents(corpus_dir: Path, docs: Sequence[SourceDocument]) -> list[Document]:
    """The corpus as the tutorial loads it: each text file's contents as they are on disk.

    ``docs`` (from :func:`~assistant.ingest.ingest`) says which files are usable and what they
    are called; a file that is not plain text (PDF, HTML, Word) goes in as its extracted text.
    """
    out: list[Document] = []
    for doc in docs:
        text = doc.text
        if PurePosixPath(doc.info.path).suffix.lower() in _PLAIN_SUFFIXES:
            try:
                text = (corpus_dir / doc.info.path).read_text(
                    encoding="utf-8-sig", errors="replace"
                )
            except OSError as err:
                log.warning("tutorial baseline reads %s as ingested: %s", doc.info.path, err)
        meta = {"source": str(corpus_dir / doc.info.path), "doc_id": doc.info.doc_id}
        out.append(Document(page_content=text, metadata=meta))
    return out


class LangChainTutorial:
    """The LangChain RAG tutorial's retrieval: recursive splitter, in-memory Chroma."""

    def __init__(
        self, documents: Sequence[Document], embeddings: Embeddings, docs: Sequence[DocInfo]
    ) -> None:
        splitter = RecursiveCharacterTextSplitter(
            chunk_size=TUTORIAL_CHUNK_SIZE, chunk_overlap=TUTORIAL_CHUNK_OVERLAP
        )
        splits = splitter.split_documents(list(documents))
        info = {d.doc_id: d for d in docs}
        self.chunks: dict[str, Chunk] = {}
        position: dict[str, int] = {}
        for split in splits:
            doc_id = str(split.metadata["doc_id"])
            n = position.get(doc_id, 0)
            position[doc_id] = n + 1
            chunk_id = f"{doc_id}:split-{n}"
            self.chunks[chunk_id] = Chunk(chunk_id, info[doc_id], "", split.page_content, n)
        self._client = ephemeral_client()  # Chroma in memory, as in the tutorial
        self._store = Chroma(
            collection_name=f"eval-tutorial-{uuid.uuid4().hex[:12]}",
            embedding_function=embeddings,
            client=self._client,
        )
        if splits:
            self._store.add_documents(splits, ids=list(self.chunks))
        log.info("tutorial baseline: %d splits of %d documents", len(splits), len(documents))

    def search(self, query: str, k: int) -> list[Passage]:
        if not self.chunks:
            return []
        hits = self._store.similarity_search_with_score(query, k=min(k, len(self.chunks)))
        return [
            # Chroma's default space is squared L2; for unit vectors that is 2 - 2·cosine
            Passage(chunk=self.chunks[str(d.id)], score=1.0 - dist / 2, rank=i, dense=1 - dist / 2)
            for i, (d, dist) in enumerate(hits, start=1)
        ]

    def close(self) -> None:
        try:
            self._store.delete_collection()
        finally:
            release_client(self._client)


# -- bm25 -----------------------------------------------------------------------------------------


class BM25Baseline:
    """BM25 alone over the assistant's chunks (title, section and text, as the index has them)."""

    def __init__(self, chunks: Sequence[Chunk]) -> None:
        self.chunks = {c.chunk_id: c for c in chunks}
        self._index = LexicalIndex.build(list(self.chunks), [c.embed_text for c in chunks])

    def search(self, query: str, k: int) -> list[Passage]:
        return [
            Passage(chunk=self.chunks[cid], score=score, rank=i, lexical=score)
            for i, (cid, score) in enumerate(self._index.search(query, k), start=1)
        ]


@contextmanager
def open_baselines(
    corpus_dir: Path,
    embedder: Embedder | Embeddings,
    *,
    k: int = 10,
    max_question_chars: int = 1000,
    max_file_bytes: int = 20_000_000,
) -> Iterator[list[System]]:
    """The two baselines over ``corpus_dir``, ready to evaluate; released on exit.

    ``k`` is the number of passages the evaluation ranks: a baseline answers with the first of
    the same ``k``.
    """
    report = ingest(corpus_dir, max_file_bytes=max_file_bytes)
    tutorial = LangChainTutorial(
        tutorial_documents(corpus_dir, report.documents),
        _as_embeddings(embedder),
        [d.info for d in report.documents],
    )
    try:
        bm25 = BM25Baseline(chunk_documents(report.documents))
        yield [
            _top_passage_system(
                "langchain-tutorial",
                f"LangChain tutorial: raw files, RecursiveCharacterTextSplitter("
                f"{TUTORIAL_CHUNK_SIZE}, {TUTORIAL_CHUNK_OVERLAP}), in-memory Chroma "
                "similarity_search; answer = top passage, never declines",
                tutorial.search,
                k=k,
                max_question_chars=max_question_chars,
            ),
            _top_passage_system(
                "bm25",
                "BM25 (bm25s, stemmed) alone over the assistant's chunks; answer = top passage, "
                "never declines",
                bm25.search,
                k=k,
                max_question_chars=max_question_chars,
            ),
        ]
    finally:
        tutorial.close()
