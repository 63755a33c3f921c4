"""Retrieve stage: dense (Chroma) and lexical (BM25) search, fused, as a LangChain retriever."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np
from langchain_core.callbacks import CallbackManagerForRetrieverRun
from langchain_core.documents import Document
from langchain_core.retrievers import BaseRetriever
from pydantic import ConfigDict, Field

from assistant.chunking import chunk_of_unit, split_units, unit_id
from assistant.embeddings import Embedder
from assistant.index import IndexSnapshot
from assistant.schema import Chunk, Passage

__all__ = [
    "DEFAULT_CANDIDATES",
    "WINDOW_CHARS",
    "HybridRetriever",
    "SnapshotSource",
    "hybrid_search",
]

DEFAULT_K = 5
#: how many candidates each side contributes before fusion
DEFAULT_CANDIDATES = 30
#: weight of the BM25 score (scaled to the best one's) beside the mean of the two cosines: the
#: weights chosen on the guidance set; chosen on the HOWTO set instead (0.9/0.1 cosines, no
#: BM25) they scored the guidance set's hit@1 at 0.58 against 0.85 (docs/evaluation.md)
LEXICAL_WEIGHT = 0.2
#: a ranked chunk is returned with its neighbours of the same section, until the passage holds
#: about this many characters: about what the embedding model reads (MiniLM: 256 word pieces).
#: Ranking small chunks finds the sentence; returning their context holds the answer when it
#: runs on past the chunk (hit@1 0.85 → 0.88 on the guidance set, 0.58 → 0.73 on the HOWTO set)
WINDOW_CHARS = 1000


class SnapshotSource(Protocol):
    def get(self) -> IndexSnapshot: ...


def hybrid_search(
    snapshot: IndexSnapshot,
    query: str,
    query_vector: Sequence[float],
    k: int,
    *,
    candidates: int = DEFAULT_CANDIDATES,
    sentence_vectors: dict[str, np.ndarray[Any, Any]] | None = None,
) -> list[Passage]:
    """The ``k`` best passages for ``query`` (the candidates' sentence vectors, by unit id,
    are added to ``sentence_vectors`` when given, so the answer step need not fetch them again).

    Three signals are fused: the cosine of the question to the whole passage, to the passage's
    closest sentence, and the passage's BM25 score relative to the best one. Sentences matter
    because a question usually asks about one sentence of a passage; BM25 because names,
    numbers and rare words are what paraphrase keeps.

    Candidates come from the passage vectors and from BM25; their sentences are then scored
    from the stored sentence vectors. (A nearest-neighbour search over the sentences as a third
    source of candidates changed no evaluation figure, with or without 10k distractor chunks,
    and cost a second vector query per question: it was dropped.)
    """
    q = np.asarray(query_vector, dtype=np.float32)
    chunks, scores = _candidates(snapshot, query, query_vector, max(k, candidates))
    fetched = _sentence_vectors(snapshot, chunks)
    if sentence_vectors is not None:
        sentence_vectors.update(fetched)
    for uid, vec in fetched.items():
        cid = chunk_of_unit(uid)
        scores.sentence[cid] = max(float(vec @ q), scores.sentence.get(cid, -1.0))
    fused = scores.fused(chunks)
    ranked = sorted(fused, key=lambda cid: (-fused[cid], cid))
    return _passages(snapshot, chunks, ranked, fused, scores, k)


@dataclass
class _Scores:
    """Each candidate's scores by chunk id: cosine to the question, BM25, best sentence cosine."""

    dense: dict[str, float]
    lexical: dict[str, float]
    sentence: dict[str, float] = field(default_factory=dict)

    def fused(self, chunks: dict[str, Chunk]) -> dict[str, float]:
        """The mean of the passage's and its best sentence's cosines (the passage's own when
        its sentences have no vectors), plus the BM25 score relative to the best, weighted."""
        best_lex = max(self.lexical.values(), default=0.0) or 1.0
        return {
            cid: (self.dense.get(cid, 0.0) + self.sentence.get(cid, self.dense.get(cid, 0.0))) / 2
            + LEXICAL_WEIGHT * self.lexical.get(cid, 0.0) / best_lex
            for cid in chunks
        }


def _candidates(
    snapshot: IndexSnapshot, query: str, query_vector: Sequence[float], n: int
) -> tuple[dict[str, Chunk], _Scores]:
    """The ``n`` nearest chunks and the ``n`` best by BM25, by id, with their scores; those
    found only by BM25 get their cosine from their stored vector (text and vector in one
    fetch)."""
    dense = snapshot.store.query(query_vector, n)
    lexical = snapshot.lexical.search(query, n)
    chunks: dict[str, Chunk] = {c.chunk_id: c for c, _ in dense}
    scores = _Scores({c.chunk_id: s for c, s in dense}, dict(lexical))
    q = np.asarray(query_vector, dtype=np.float32)
    missing = [cid for cid in scores.lexical if cid not in chunks]
    for c, vec in snapshot.store.get_with_embeddings(missing):
        chunks[c.chunk_id] = c
        if vec is not None:
            scores.dense[c.chunk_id] = float(vec @ q)
    return chunks, scores


def _sentence_vectors(
    snapshot: IndexSnapshot, chunks: dict[str, Chunk]
) -> dict[str, np.ndarray[Any, Any]]:
    """The stored vectors of every candidate's sentences, by unit id (the ids follow from the
    text: no filter scan)."""
    unit_ids = [
        unit_id(cid, j) for cid, c in chunks.items() for j in range(len(split_units(c.text)))
    ]
    return snapshot.units.embeddings(unit_ids)


def _passages(
    snapshot: IndexSnapshot,
    chunks: dict[str, Chunk],
    ranked: list[str],
    fused: dict[str, float],
    scores: _Scores,
    k: int,
) -> list[Passage]:
    """The first ``k`` ranked chunks, each widened to its window of neighbours; a chunk
    already inside a better-ranked passage's window is skipped."""
    passages: list[Passage] = []
    taken: set[str] = set()
    windows = _Windows(snapshot, ranked[: 4 * k])
    for cid in ranked:
        if len(passages) >= k:
            break
        if cid in taken:  # already inside a better-ranked passage
            continue
        members = windows.around(chunks[cid], taken)
        taken.update(m.chunk_id for m in members)
        passages.append(
            Passage(
                chunk=_joined(chunks[cid], members),
                score=fused[cid],
                rank=len(passages) + 1,
                dense=scores.dense.get(cid),
                lexical=scores.lexical.get(cid),
                sentence=scores.sentence.get(cid),
                members=tuple(members) if len(members) > 1 else (),
            )
        )
    return passages


def _joined(chunk: Chunk, members: Sequence[Chunk]) -> Chunk:
    """The passage a reader sees: the ranked chunk's identity, the members' text."""
    if len(members) <= 1:
        return chunk
    return Chunk(
        chunk_id=chunk.chunk_id,
        doc=chunk.doc,
        section=chunk.section,
        text="\n".join(m.text for m in members),
        position=members[0].position,
    )


class _Windows:
    """Neighbours of ranked chunks, in document order (the order the build indexed them in)."""

    def __init__(self, snapshot: IndexSnapshot, ranked: Sequence[str], reach: int = 4) -> None:
        order = snapshot.lexical.positions()
        ids = snapshot.lexical.ids
        wanted: set[str] = set()
        for cid in ranked:
            at = order.get(cid)
            if at is not None:
                wanted.update(
                    ids[j] for j in range(max(0, at - reach), min(len(ids), at + reach + 1))
                )
        self.order = order
        self.ids = ids
        self.reach = reach
        self.chunks = {c.chunk_id: c for c in snapshot.store.get(sorted(wanted))} if wanted else {}

    def around(self, chunk: Chunk, taken: set[str]) -> list[Chunk]:
        """``chunk`` and its neighbours of the same document and section (none already
        ``taken`` by a better passage), the next one first, until the passage holds about
        :data:`WINDOW_CHARS` characters."""
        at = self.order.get(chunk.chunk_id)
        if at is None:
            return [chunk]
        lo = hi = at
        size = len(chunk.text)
        while size < WINDOW_CHARS:
            for j in (hi + 1, lo - 1):
                other = self.chunks.get(self.ids[j]) if 0 <= j < len(self.ids) else None
                if (
                    other is not None
                    and other.chunk_id not in taken
                    and abs(j - at) <= self.reach
                    and other.doc.doc_id == chunk.doc.doc_id
                    and other.section == chunk.section
                    and size + len(other.text) <= WINDOW_CHARS * 1.2
                ):
                    size += len(other.text)
                    lo, hi = min(lo, j), max(hi, j)
                    break
            else:
                break
        out = [self.chunks.get(self.ids[j]) for j in range(lo, hi + 1)]
        return [c if c is not None else chunk for c in out]


class HybridRetriever(BaseRetriever):
    """Hybrid dense + BM25 retriever over the serving index.

    ``k`` is a constructor field and can be overridden per call: ``retriever.invoke(q, k=3)``.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    index: Any = Field(description="an IndexSnapshot or anything with get() -> IndexSnapshot")
    embedder: Any = Field(description="an assistant.embeddings.Embedder")
    k: int = DEFAULT_K
    candidates: int = DEFAULT_CANDIDATES

    def _snapshot(self) -> IndexSnapshot:
        return self.index if isinstance(self.index, IndexSnapshot) else self.index.get()

    def search(
        self, query: str, k: int | None = None, query_vector: Sequence[float] | None = None
    ) -> list[Passage]:
        emb: Embedder = self.embedder
        vec = query_vector if query_vector is not None else emb.encode([query])[0].tolist()
        return hybrid_search(self._snapshot(), query, vec, k or self.k, candidates=self.candidates)

    def _get_relevant_documents(
        self, query: str, *, run_manager: CallbackManagerForRetrieverRun, k: int | None = None
    ) -> list[Document]:
        return [to_document(p) for p in self.search(query, k)]


def to_document(p: Passage) -> Document:
    meta: dict[str, Any] = dict(p.chunk.metadata())
    meta.update(chunk_id=p.chunk.chunk_id, rank=p.rank, score=p.score)
    if p.dense is not None:
        meta["dense_score"] = p.dense
    if p.lexical is not None:
        meta["lexical_score"] = p.lexical
    return Document(page_content=p.chunk.text, metadata=meta, id=p.chunk.chunk_id)
