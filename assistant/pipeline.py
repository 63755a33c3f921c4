"""The assistant: one object composed of the pipeline's parts; every shell calls this.

ingest → chunk → embed/store (:mod:`assistant.index`) → retrieve (:mod:`assistant.retrieval`)
→ answer (:mod:`assistant.answer.extractive`) → cite (:class:`~assistant.schema.Citation`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from assistant.answer.calibration import Calibration
from assistant.answer.extractive import AnswerDraft, ExtractiveAnswerer, split_question
from assistant.answer.generative import GenerativeAnswerer, answer_messages
from assistant.answer.probes import ProbeStats, bank_sample, measure
from assistant.conversation import clean_question, contextual_question, follow_up_candidates
from assistant.embeddings import Embedder
from assistant.errors import LLMError
from assistant.index import (
    BUILD_CALIBRATION,
    BuildReport,
    IndexHandle,
    IndexSnapshot,
    Progress,
    build_index,
    built_backend,
)
from assistant.index.chroma import ChromaServer
from assistant.privacy import screen_turns
from assistant.retrieval import HybridRetriever, SnapshotSource, hybrid_search
from assistant.schema import Answer, Citation, Passage, Turn
from assistant.settings import Settings

if TYPE_CHECKING:
    from langchain_core.language_models import BaseChatModel

__all__ = ["DECLINE_TEXT", "Assistant", "chroma_server", "stage_timings"]

log = logging.getLogger(__name__)

DECLINE_TEXT = (
    "The guidance here does not cover this question, so I can't answer it from these documents."
)


class Assistant:
    """Answers questions from the serving index, citing the passages used."""

    def __init__(
        self,
        index: SnapshotSource,
        embedder: Embedder,
        *,
        calibration: Calibration,
        top_k: int = 5,
        max_question_chars: int = 1000,
        log_questions: bool = False,
        llm: BaseChatModel | None = None,
        llm_timeout: float = 60.0,
        build_calibration: bool = False,
        pii_check: str = "block",
    ) -> None:
        self.index = index
        #: a calibration stored with the serving build (``assistant calibrate --corpus``), when
        #: there is one, decides instead of ``calibration``
        self.build_calibration = build_calibration
        self._build_calibrations: dict[str, Calibration | None] = {}
        self.embedder = embedder
        self.calibration = calibration
        self.top_k = top_k
        self.max_question_chars = max_question_chars
        self.log_questions = log_questions
        self.pii_check = pii_check  # the personal-data guard: block, redact or off
        self.retriever = HybridRetriever(index=index, embedder=embedder, k=top_k)
        self.answerer = ExtractiveAnswerer(embedder)
        #: writes answers with a chat model when one is configured (None: extractive answers)
        self.generator = (
            GenerativeAnswerer(llm, embedder, timeout=llm_timeout) if llm is not None else None
        )
        self._probe_stats: dict[str, ProbeStats] = {}
        self._probe_lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings, embedder: Embedder | None = None) -> Assistant:
        from assistant.answer.llm import chat_model
        from assistant.embeddings import embedder_from

        # questions are embedded as the serving build was, unless the settings name a backend
        emb = embedder or embedder_from(settings, backend=built_backend(settings.index_dir))
        handle = IndexHandle.of(settings.index_dir, emb, chroma_server(settings))
        handle.get()  # fail now, with a clear message, if there is no usable index
        return cls(
            handle,
            emb,
            calibration=Calibration.load(settings.calibration_file),
            top_k=settings.top_k,
            max_question_chars=settings.max_question_chars,
            log_questions=settings.log_questions,
            llm=chat_model(settings),
            llm_timeout=settings.llm_timeout,
            build_calibration=settings.calibration_file is None,
            pii_check=settings.pii_check,
        )

    def with_llm(self, llm: BaseChatModel | None, llm_timeout: float = 60.0) -> Assistant:
        """The same assistant (index, embedder, calibration) answering with ``llm``."""
        return Assistant(
            self.index, self.embedder, calibration=self.calibration, top_k=self.top_k,
            max_question_chars=self.max_question_chars, log_questions=self.log_questions,
            llm=llm, llm_timeout=llm_timeout, pii_check=self.pii_check,
        )  # fmt: skip

    def with_calibration(self, calibration: Calibration) -> Assistant:
        """The same assistant deciding to answer or decline with ``calibration``."""
        twin = self.with_llm(None)
        twin.calibration = calibration
        twin.build_calibration = False
        twin.generator = self.generator
        twin._probe_stats = self._probe_stats  # the same index: the same probe figures
        return twin

    def close(self) -> None:
        """Release the index (an assistant serving from an index folder)."""
        if isinstance(self.index, IndexHandle):
            self.index.close()

    # -- the two questions a user can ask --------------------------------------------------

    def search(self, question: str, k: int | None = None) -> list[Passage]:
        query = clean_question(question, self.max_question_chars)
        query = screen_turns(query, (), self.pii_check)[0]  # personal data: refused or masked
        return self.retriever.search(query, k or self.top_k)

    def ask(self, question: str, history: Sequence[Turn] = ()) -> Answer:
        if self.generator is not None:
            for item in self.ask_stream(question, history):
                if isinstance(item, Answer):
                    return item
        t0 = time.perf_counter()
        query = clean_question(question, self.max_question_chars)
        query, history = screen_turns(query, history, self.pii_check)  # before any log or search
        ev = self._evidence(query, history)
        passages, draft, t1, confidence = ev.passages, ev.draft, ev.retrieved, ev.confidence
        search_query = ev.search_query
        refused = not draft.citations or confidence < self.calibration_for(ev.snapshot).threshold
        t2 = time.perf_counter()
        self._log_outcome(query, refused, t2 - t0, "extractive")
        partial = not refused and bool(draft.uncovered)
        if refused:
            text, citations, notices = DECLINE_TEXT, [], []
        else:
            citations = draft.citations
            notices = _age_notices(citations)
            if partial:
                notices.insert(0, _partial_notice(draft.uncovered))
            text = "\n\n".join([draft.text, *notices])
        return Answer(
            question=query,
            answer=text,
            refused=refused,
            citations=citations,
            passages=passages,
            notices=notices,
            timings_ms=stage_timings(t0, t1, t2),
            search_query=search_query,
            confidence=confidence,
            partial=partial,
        )

    def _log_outcome(self, query: str, refused: bool, seconds: float, mode: str) -> None:
        """One log line per question; its text only when ASSISTANT_LOG_QUESTIONS allows it."""
        log.info(
            "%s %s in %.0f ms (%s)",
            "declined" if refused else "answered",
            repr(query) if self.log_questions else f"a question of {len(query)} characters",
            seconds * 1000,
            mode,
        )

    def ask_stream(self, question: str, history: Sequence[Turn] = ()) -> Iterator[str | Answer]:
        """Answer with the chat model: the reply's text as it is written, then (last) the final
        verified :class:`Answer`.

        The final answer can differ from the streamed text (unsupported sentences removed,
        markers renumbered, notes added): show it in place of what was streamed. The calibrated
        decision comes first: a question the guidance does not answer is declined without
        calling the model. If the model fails, or nothing it says can be verified, the answer is
        the extractive one, with a note. Without a chat model, yields the extractive answer.
        """
        gen = self.generator
        if gen is None:
            yield self.ask(question, history)
            return
        t0 = time.perf_counter()
        query = clean_question(question, self.max_question_chars)
        query, history = screen_turns(query, history, self.pii_check)  # before any log or search
        condensed = gen.condense(query, history, contextual_question(query, history))
        tc = time.perf_counter()
        asked = _Streamed(query, t0, tc, self._evidence(query, history, condensed=condensed))
        ev = asked.evidence
        if not ev.draft.citations or ev.confidence < self.calibration_for(ev.snapshot).threshold:
            yield self._streamed(asked, DECLINE_TEXT, [], [], "generative")
            return
        given = ev.passages[: gen.max_passages]
        pieces: list[str] = []
        try:
            for piece in gen.stream(answer_messages(ev.search_query, given)):
                pieces.append(piece)
                yield piece
        except LLMError as err:
            log.warning("generating the answer failed: %s", err)
            yield self._fallback(asked, str(err))
            return
        yield self._verified(asked, gen, "".join(pieces), given)

    def _streamed(
        self, asked: _Streamed, text: str, citations: list[Citation], notices: list[str], mode: str
    ) -> Answer:
        """The final answer to a streamed question (declined when nothing is cited)."""
        t0, tc, ev = asked.started, asked.condensed, asked.evidence
        t2 = time.perf_counter()
        self._log_outcome(asked.query, not citations, t2 - t0, mode)
        timings = {"condense": (tc - t0) * 1000, **stage_timings(tc, ev.retrieved, t2)}
        timings["total"] = (t2 - t0) * 1000
        return Answer(
            question=asked.query, answer=text, refused=not citations, citations=citations,
            passages=ev.passages, notices=notices, timings_ms=timings, mode=mode,
            search_query=ev.search_query, confidence=ev.confidence,
        )  # fmt: skip

    def _fallback(self, asked: _Streamed, why: str) -> Answer:
        """The extractive answer in place of the model's, with a note saying ``why``."""
        draft = asked.evidence.draft
        notices = [*_age_notices(draft.citations), f"Note: {why}, so this answer quotes the "
                   "guidance directly."]  # fmt: skip
        text = "\n\n".join([draft.text, *notices])
        return self._streamed(asked, text, draft.citations, notices, "extractive-fallback")

    def _verified(
        self, asked: _Streamed, gen: GenerativeAnswerer, reply: str, given: list[Passage]
    ) -> Answer:
        """The model's ``reply`` with only what the ``given`` passages support, or the
        extractive answer when none of it is; declined when the model declined."""
        verified = gen.verify(
            reply, given, asked.evidence.search_query, stored=self.index.get().units.embeddings
        )
        if verified.declined:
            return self._streamed(asked, DECLINE_TEXT, [], [], "generative")
        if not verified.citations:
            return self._fallback(
                asked, "no sentence of the generated answer could be verified in the passages"
            )
        notices = _age_notices(verified.citations)
        if verified.removed:
            notices.append(
                f"Note: {len(verified.removed)} sentence(s) of the generated answer were left "
                "out because the passages they cite do not support them."
            )
        text = "\n\n".join([verified.text, *notices])
        return self._streamed(asked, text, verified.citations, notices, "generative")

    def features(self, question: str, history: Sequence[Turn] = ()) -> dict[str, float]:
        """The evidence features the decision to decline reads (for calibration): relative to
        the index's probe questions, as a probe-normalised calibration reads them."""
        query = clean_question(question, self.max_question_chars)
        ev = self._evidence(query, history)
        return self.probe_stats(ev.snapshot).normalise(ev.draft.features)

    def search_query(self, question: str, history: Sequence[Turn] = ()) -> str:
        """The question as it is searched: on its own, or with the questions before it when
        they find better evidence for it."""
        return self._evidence(
            clean_question(question, self.max_question_chars), history
        ).search_query

    def probe_stats(self, snapshot: IndexSnapshot) -> ProbeStats:
        """How the build scores the probe questions (measured once per build, stored with it)."""
        stats = self._probe_stats.get(snapshot.build_id)
        if stats is not None:
            return stats
        with self._probe_lock:
            stats = self._probe_stats.get(snapshot.build_id) or ProbeStats.load(snapshot.folder)
            if stats is None:
                stats = measure(
                    lambda q: self._draft(q, snapshot=snapshot)[1].features, bank_sample()
                )
                try:
                    stats.save(snapshot.folder)
                except OSError as err:  # a read-only index: measured again by the next process
                    log.warning("could not store the probe figures with the build: %s", err)
            self._probe_stats[snapshot.build_id] = stats
            return stats

    def calibration_for(self, snapshot: IndexSnapshot) -> Calibration:
        """The calibration deciding for ``snapshot``: its own, if it has one and the assistant
        uses build calibrations; otherwise the assistant's."""
        if not self.build_calibration:
            return self.calibration
        if snapshot.build_id not in self._build_calibrations:
            path = snapshot.folder / BUILD_CALIBRATION
            self._build_calibrations[snapshot.build_id] = (
                Calibration.load(path) if path.is_file() else None
            )
        return self._build_calibrations[snapshot.build_id] or self.calibration

    def store_calibration(self, calibration: Calibration) -> Path:
        """Store ``calibration`` with the serving build (later builds carry it over)."""
        snapshot = self.index.get()
        path = snapshot.folder / BUILD_CALIBRATION
        calibration.save(path)
        self._build_calibrations[snapshot.build_id] = calibration
        return path

    def confidence(self, features: Mapping[str, float], snapshot: IndexSnapshot) -> float:
        """The calibrated probability that the documents answer a question with ``features``."""
        calibration = self.calibration_for(snapshot)
        if calibration.probe_normalised:
            features = self.probe_stats(snapshot).normalise(features)
        return calibration.probability(features)

    def _on_topic(self, features: Mapping[str, float], snapshot: IndexSnapshot) -> bool:
        """Whether a question, searched on its own, comes closer to some sentence of the
        documents than the probe questions do on average: one that does not is off-topic
        here, whatever came before it."""
        stats = self.probe_stats(snapshot)
        return stats.normalise(features).get("max_sentence", 0.0) > 0.0

    def _evidence(self, query: str, history: Sequence[Turn], *, condensed: str = "") -> _Evidence:
        """The question searched on its own and, when it finds no answer on its own and there
        are earlier turns, with them. The context is kept only when it finds better evidence
        *for this question*: a more confident answer whose passages still mention the things
        the question names. A question that is off-topic on its own (it comes no closer to
        the documents than the probe questions do) is never searched with context, so it is
        declined whatever came before."""
        snapshot = self.index.get()
        texts = [query, *follow_up_candidates(query, history)]
        if condensed and condensed not in texts:
            texts.append(condensed)
        alone: _Evidence | None = None
        best: _Evidence | None = None
        for text in texts:
            passages, draft, retrieved = self._draft(text, snapshot=snapshot, own=query)
            conf = self.confidence(draft.features, snapshot)
            found = _Evidence(text, passages, draft, retrieved, conf, snapshot)
            if alone is None:
                alone = best = found
                if conf >= self.calibration_for(snapshot).threshold:
                    break  # answered on its own: no context needed
                if not self._on_topic(draft.features, snapshot):
                    break  # off-topic on its own: no context makes it answerable
            elif best is not None and conf > best.confidence and found.covers(alone):
                best = found
        assert best is not None
        return self._partly(best, snapshot, query)

    def _partly(self, found: _Evidence, snapshot: IndexSnapshot, query: str) -> _Evidence:
        """A question asking several things, some of which name what no passage mentions: the
        decision to answer is taken on the parts the documents speak to, and the answer says
        which parts they do not cover."""
        uncovered = found.draft.uncovered
        covered = [p for p in split_question(query) if p not in uncovered]
        if not uncovered or not covered:
            return found
        text = "? ".join(covered) + "?"
        passages, draft, retrieved = self._draft(text, snapshot=snapshot)
        conf = self.confidence(draft.features, snapshot)
        draft = replace(draft, uncovered=list(uncovered))
        return _Evidence(found.search_query, passages, draft, retrieved, conf, snapshot)

    def _draft(
        self, search_query: str, *, snapshot: IndexSnapshot | None = None, own: str = ""
    ) -> tuple[list[Passage], AnswerDraft, float]:
        """Retrieve for the question (and for each part of a question that asks several
        things), then draft the answer. ``own`` is the user's question when ``search_query``
        adds earlier turns to it: the answer is judged on its terms. Returns the passages, the
        draft, and when retrieval ended."""
        snapshot = snapshot or self.index.get()
        own = own if own != search_query else ""
        parts = split_question(own or search_query)
        vectors = self.embedder.encode([search_query, *parts])
        vector = vectors[0].tolist()
        candidates = self.retriever.candidates
        # one snapshot for the whole question, even if a new build becomes current meanwhile
        seen: dict[str, np.ndarray[Any, Any]] = {}  # sentence vectors retrieval fetched
        passages = hybrid_search(snapshot, search_query, vector, self.top_k,
                                 candidates=candidates, sentence_vectors=seen)  # fmt: skip
        part_queries: list[tuple[str, list[float]]] = []
        extra: list[Passage] = []
        for part, vec in zip(parts, vectors[1:], strict=True):
            part_queries.append((part, vec.tolist()))
            extra.extend(hybrid_search(snapshot, part, vec.tolist(), 1, candidates=candidates,
                                       sentence_vectors=seen))  # fmt: skip
        retrieved = time.perf_counter()

        def sentence_vectors(ids: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
            found = {i: seen[i] for i in ids if i in seen}
            rest = [i for i in ids if i not in found]
            return {**found, **snapshot.units.embeddings(rest)} if rest else found

        draft = self.answerer.draft(
            search_query,
            vector,
            passages,
            snapshot.lexical,
            sentence_vectors,
            parts=part_queries,
            extra=extra,
            own=own,
        )
        return passages, draft, retrieved

    def build(
        self, corpus_dir: Path, *, rebuild: bool = False, max_file_bytes: int = 20_000_000,
        progress: Progress | None = None,
    ) -> BuildReport:  # fmt: skip
        """Re-index ``corpus_dir`` into this assistant's index folder (served on the next
        question)."""
        if not isinstance(self.index, IndexHandle):
            raise TypeError("build() needs an assistant serving from an index folder")
        return build_index(
            corpus_dir, self.index.index_dir, self.embedder,
            rebuild=rebuild, max_file_bytes=max_file_bytes, progress=progress,
            server=self.index.server,
        )  # fmt: skip


def chroma_server(settings: Settings) -> ChromaServer | None:
    """The Chroma server the settings name (ASSISTANT_CHROMA_HOST/PORT), or None: embedded."""
    where = settings.chroma_server()
    return ChromaServer(*where) if where else None


#: features measured on the user's own question, whatever context is searched with it: the
#: share of the things it names (names, numbers, code) that the cited passages mention. (Also
#: requiring its other words to be there as often as alone lost follow-ups whose words are
#: generic, "How often does that happen?": follow-ups answered 0.72 against 0.81.)
_OWN_EVIDENCE = ("specific_found",)


@dataclass(frozen=True)
class _Evidence:
    """What one way of searching a question found, and how confidently it answers it."""

    search_query: str
    passages: list[Passage]
    draft: AnswerDraft
    retrieved: float  # perf_counter when retrieval ended
    confidence: float
    snapshot: IndexSnapshot

    def covers(self, alone: _Evidence) -> bool:
        """Whether the passages this search cites hold the question's own terms, and the things
        it names, at least as well as searching it ``alone`` does: context may help find the
        passage a follow-up is about, not lend a previous topic's evidence to another one."""
        mine, theirs = self.draft.features, alone.draft.features
        return all(mine.get(f, 0.0) >= theirs.get(f, 0.0) for f in _OWN_EVIDENCE)


@dataclass(frozen=True)
class _Streamed:
    """A question being answered by the chat model, and when its stages ended."""

    query: str
    started: float  # perf_counter readings
    condensed: float
    evidence: _Evidence


def stage_timings(start: float, retrieved: float, answered: float) -> dict[str, float]:
    """Milliseconds spent retrieving, answering, and in all (from ``perf_counter`` readings)."""
    return {
        "retrieve": (retrieved - start) * 1000,
        "answer": (answered - retrieved) * 1000,
        "total": (answered - start) * 1000,
    }


def _partial_notice(parts: Sequence[str]) -> str:
    """What a partial answer says it leaves out."""
    asked = "; ".join(f"“{p.rstrip('?')}?”" for p in parts)
    return f"Note: the documents do not cover part of this question: {asked}"


def _age_notices(citations: Sequence[Citation]) -> list[str]:
    """How old the cited guidance is, and what has changed since, once per document and note."""
    old = {c.doc_id: c for c in citations if c.status == "historical"}
    if not old:
        return []
    which = "; ".join(f"[{c.n}] {c.title}" + (f", {c.era}" if c.era else "") for c in old.values())
    notes = " ".join(dict.fromkeys(c.note for c in old.values() if c.note))
    return [f"Note: this answer cites historical guidance ({which}). {notes}".rstrip()]
