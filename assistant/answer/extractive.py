"""Answer stage (no LLM): pick the sentences of the retrieved passages that answer the question.

Each passage is cut into units (sentences; list items stay whole). A unit's score mixes its
embedding similarity to the question, how much of the question's rarer words it holds, and the
rank of its passage. The best units are kept (list questions keep the whole list), near-duplicates
dropped, and they are ordered by passage, then by place in the passage, each followed by the
marker of its passage. Whether to answer at all is a calibrated decision
(:mod:`assistant.answer.calibration`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np

from assistant.chunking import split_units, unit_id
from assistant.embeddings import Embedder
from assistant.index.lexical import LexicalIndex, specific_terms, tokenize
from assistant.schema import Citation, Passage

__all__ = ["AnswerDraft", "ExtractiveAnswerer", "Unit", "passage_units", "split_question"]

#: text addressed to an AI rather than to a reader ("ignore your instructions", "system:"): it is
#: data in a document, never an answer, so it is not quoted (the Sources still show the passage)
INSTRUCTION_LIKE = re.compile(
    r"\b(?:ignore|disregard|forget|override)\b.{0,40}?\b(?:instructions?|prompts?|rules)\b"
    r"|\b(?:system|developer|jailbreak)\s+(?:prompt|mode|message)\b"
    r"|\byou are now\b"
    r"|\b(?:reveal|print|show|repeat|output)\b.{0,30}?\b(?:hidden|secret|system)\s+"
    r"(?:prompt|instructions?)\b"
    r"|^\s*(?:system|assistant|user)\s*:",
    re.IGNORECASE,
)
#: a sentence that opens like this carries on from the one before it
_CONTINUES = re.compile(r"^(Their|They|These|This|Those|It|Its|Such|He|She)\b")
_LIST_CUES = re.compile(
    r"\b(what are|which are|list|name the|stages?|steps?|levels?|elements?|functions?|roles?|"
    r"things|ways|activities|responsibilities|services|who (sits|is on|are)|main|key)\b",
    re.IGNORECASE,
)

#: units closer than this say the same thing
DUPLICATE_COSINE = 0.92
#: embeddings of indexed units by unit id (the index's copy, so answering embeds nothing)
UnitVectors = Callable[[list[str]], dict[str, np.ndarray[Any, Any]]]


@dataclass(frozen=True)
class Unit:
    passage: int  # index into the passages list
    position: int  # order within the passage
    text: str
    list_id: int | None  # units of the same list share an id
    key: str  # unit id in the index


@dataclass(frozen=True)
class AnswerDraft:
    text: str
    citations: list[Citation]
    features: dict[str, float]  # evidence strength, for the calibrated decision to answer
    #: parts of a question asking several things that no passage found speaks to
    uncovered: list[str] = field(default_factory=list)


class ExtractiveAnswerer:
    def __init__(
        self,
        embedder: Embedder,
        *,
        passages_used: int = 3,
        max_units: int = 3,
        keep_ratio: float = 0.85,
        max_list_items: int = 8,
        weights: tuple[float, float, float] = (0.4, 0.2, 0.4),
        min_gain: float = 0.3,
        gain_floor: float = 0.65,
    ) -> None:
        self.embedder = embedder
        self.passages_used = passages_used
        self.max_units = max_units
        self.keep_ratio = keep_ratio
        self.max_list_items = max_list_items
        self.weights = weights
        self.min_gain = min_gain
        self.gain_floor = gain_floor

    def _unit_vectors(self, units: Sequence[Unit], stored: UnitVectors) -> np.ndarray[Any, Any]:
        """The units' embeddings as indexed; any the index lacks are embedded now."""
        found = stored([u.key for u in units])
        todo = [u.text for u in units if u.key not in found]
        fresh = dict(zip(todo, self.embedder.encode(todo), strict=True)) if todo else {}
        return np.stack([found[u.key] if u.key in found else fresh[u.text] for u in units])

    def draft(
        self,
        question: str,
        query_vector: Sequence[float],
        passages: Sequence[Passage],
        lexical: LexicalIndex,
        stored: UnitVectors = lambda ids: {},
        *,
        parts: Sequence[tuple[str, Sequence[float]]] = (),
        extra: Sequence[Passage] = (),
        own: str = "",
    ) -> AnswerDraft:
        """The answer to ``question`` from the best ``passages``. ``parts`` are the separate
        questions of a question that asks several things (with their vectors), ``extra`` the
        best passage for each part; every part gets the sentence that answers it best. ``own``
        is the user's own question when ``question`` is it with earlier turns prepended: its
        terms (when it has any) are the ones the passages must hold."""
        evidence = list(passages)
        used = self._passages_used(passages, extra)
        units = [u for i, p in enumerate(used) for u in passage_units(i, p)]
        asked = own if own and tokenize(own) else question
        q_terms, q_mass = _weighted_terms(asked, lexical)
        features = _no_evidence(evidence)
        if not units:
            return AnswerDraft("", [], features)

        tokens = [set(tokenize(u.text)) for u in units]  # tokenized once, used throughout
        pool = _Pool(units, self._unit_vectors(units, stored), tokens, _rank_prior(used))
        cos = pool.vectors @ np.asarray(query_vector, dtype=np.float32)
        scores = self._scores(pool, cos, q_terms, q_mass)
        best = int(np.argmax(scores))
        features["best_unit_cos"] = float(cos[best])
        features["top_coverage"] = _coverage(q_terms, q_mass, used[0].chunk.embed_text)

        gain = _CoverageGain(q_terms, q_mass, [toks & q_terms.keys() for toks in tokens])
        picked = self._select(question, units, scores, best, gain)
        uncovered = self._answer_parts(parts, pool, used, lexical, picked)
        chosen = self._dedupe(picked, pool.vectors)
        cited = set().union(
            *(set(tokenize(used[units[i].passage].chunk.embed_text)) for i in chosen)
        )
        features.update(_evidence_features(asked, q_terms, q_mass, evidence, cited))
        said = " ".join(units[i].text for i in chosen)
        features.update(_answer_features(question, q_terms, q_mass, said, used))
        draft = self._compose(chosen, units, used, features)
        return replace(draft, uncovered=uncovered) if uncovered else draft

    def _passages_used(
        self, passages: Sequence[Passage], extra: Sequence[Passage]
    ) -> list[Passage]:
        """The best ``passages_used`` passages, then each part's best passage not among them."""
        used = list(passages[: self.passages_used])
        seen = {p.chunk.chunk_id for p in used}
        for p in extra:
            if p.chunk.chunk_id not in seen:
                seen.add(p.chunk.chunk_id)
                used.append(p)
        return used

    def _scores(
        self, pool: _Pool, cos: np.ndarray[Any, Any], terms: dict[str, float], mass: float
    ) -> list[float]:
        """Each unit's score: its cosine to the question, its share of the question's weighted
        terms, and its passage's rank, mixed by ``weights``."""
        wc, wl, wp = self.weights
        return [
            wc * float(c) + wl * _covered(terms, mass, toks) + wp * pool.prior[u.passage]
            for u, c, toks in zip(pool.units, cos, pool.tokens, strict=True)
        ]

    def _answer_parts(
        self,
        parts: Sequence[tuple[str, Sequence[float]]],
        pool: _Pool,
        used: list[Passage],
        lexical: LexicalIndex,
        picked: list[int],
    ) -> list[str]:
        """Add to ``picked`` the unit that best answers each part of a many-part question;
        the parts naming things no passage used mentions are returned (uncovered) instead."""
        uncovered: list[str] = []
        used_tokens = set().union(*(set(tokenize(p.chunk.embed_text)) for p in used))
        for part, part_vector in parts:
            p_terms, p_mass = _weighted_terms(part, lexical)
            p_cos = pool.vectors @ np.asarray(part_vector, dtype=np.float32)
            top = int(np.argmax(self._scores(pool, p_cos, p_terms, p_mass)))
            named = specific_terms(part)
            if named and not any(t in used_tokens for t in named):
                uncovered.append(part)  # it names things no passage found mentions
            elif top not in picked:
                picked.append(top)
        return uncovered

    def _select(
        self,
        question: str,
        units: list[Unit],
        scores: list[float],
        best: int,
        gain: _CoverageGain,
    ) -> list[int]:
        """The best unit, the units nearly as good or covering a part of the question the others
        leave out, what continues them, and whole lists where a list is asked for or introduced.
        """
        ranked = sorted(range(len(units)), key=lambda i: -scores[i])
        chosen = [best]
        gain.take(best)
        floor = scores[best] * self.keep_ratio
        for i in ranked[1:]:
            if len(chosen) >= self.max_units or scores[i] < floor * self.gain_floor:
                break
            if scores[i] >= floor or gain.of(i) >= self.min_gain:
                chosen.append(i)
                gain.take(i)
        wants_list = bool(_LIST_CUES.search(question))
        out: list[int] = []
        for i in chosen:
            prev = i - 1  # a sentence leaning on the one before ("They …") comes with it
            if (
                units[i].list_id is None
                and _CONTINUES.match(units[i].text)
                and prev >= 0
                and units[prev].passage == units[i].passage
            ):
                out.append(prev)
            out.append(i)
            nxt = i + 1
            same = nxt < len(units) and units[nxt].passage == units[i].passage
            if not same:
                continue
            if units[i].text.endswith(":") and units[nxt].list_id is not None:
                out.extend(self._list(units, i, units[nxt].list_id))
            elif _CONTINUES.match(units[nxt].text):
                out.append(nxt)
                if units[nxt].text.endswith(":") and nxt + 1 < len(units):
                    out.extend(self._list(units, nxt, units[nxt + 1].list_id))
        top = units[best]
        if wants_list and top.list_id is not None:
            out = [
                i for i in out if units[i].list_id != top.list_id or units[i].passage != top.passage
            ]
            out.extend(self._list(units, best, top.list_id))
        return list(dict.fromkeys(out))

    def _list(self, units: list[Unit], near: int, list_id: int | None) -> list[int]:
        """The items of a list (up to ``max_list_items``), after the sentence that leads into
        it when that sentence ends with a colon."""
        if list_id is None:
            return []
        passage = units[near].passage
        items = [i for i, u in enumerate(units) if u.passage == passage and u.list_id == list_id]
        lead = items[0] - 1 if items else -1
        lead_in = (
            [lead]
            if lead >= 0
            and units[lead].passage == passage
            and units[lead].list_id is None
            and units[lead].text.endswith(":")
            else []
        )
        return lead_in + items[: self.max_list_items]

    @staticmethod
    def _dedupe(chosen: list[int], vectors: np.ndarray[Any, Any]) -> list[int]:
        """Drop a unit that says what a better one already said (e.g. the same sentence in two
        documents)."""
        kept: list[int] = []
        for i in chosen:
            if all(float(vectors[i] @ vectors[j]) <= DUPLICATE_COSINE for j in kept):
                kept.append(i)
        return kept

    def _compose(
        self, chosen: list[int], units: list[Unit], used: list[Passage], features: dict[str, float]
    ) -> AnswerDraft:
        order = sorted(chosen, key=lambda i: (units[i].passage, units[i].position))
        numbers: dict[int, int] = {}
        quotes: dict[int, list[str]] = {}
        lines: list[str] = []
        for i in order:
            u = units[i]
            n = numbers.setdefault(u.passage, len(numbers) + 1)
            quotes.setdefault(u.passage, []).append(u.text)
            text = u.text
            if u.list_id is None and not text.endswith((".", "?", "!", ":", ";")):
                text += "."  # prose reads as sentences; list items keep their own ending
            lines.append(("- " if u.list_id is not None else "") + f"{text} [{n}]")
        answer = join_lines(lines)
        citations = []
        for pidx, n in numbers.items():
            c = used[pidx].chunk
            citations.append(
                Citation(
                    n=n,
                    chunk_id=c.chunk_id,
                    doc_id=c.doc.doc_id,
                    title=c.doc.title,
                    section=c.section,
                    quote=quote_span(c.text, quotes[pidx]),
                    quotes=quotes[pidx],
                    passage=c.text,
                    era=c.doc.era,
                    status=c.doc.status,
                    source=c.doc.source,
                    note=c.doc.note,
                )
            )
        return AnswerDraft(answer, citations, features)


_NUMBER = re.compile(r"\b\d[\d,.]*\b")
_ASKS_NUMBER = re.compile(
    r"\bhow (many|much|long|far|often)\b|\bwhat (number|percentage|proportion|share)\b", re.I
)
_ASKS_DATE = re.compile(
    r"^\W*when\s+(is|was|does|did|do|are|were|will|should|can|could|has|have|had)\b"
    r"|\b(what|which) (year|date|month)\b",
    re.I,
)
#: the question asks about the present; the guidance describes past arrangements
_ASKS_PRESENT = re.compile(
    r"\b(current(ly)?|at the moment|right now|nowadays|today|this (year|month|week)|latest|"
    r"at present|presently|in post)\b",
    re.I,
)
_HAS_QUANTITY = re.compile(
    r"\d|\b(one|two|three|four|five|six|seven|eight|nine|ten|dozen|hundred|thousand|annual\w*|"
    r"yearly|monthly|weekly|daily|decade|most|all|few|several)\b",
    re.I,
)
_HAS_DATE = re.compile(
    r"\b(1[89]|20)\d\d\b|\b(annual\w*|year|month|before|after|until|since)\b", re.I
)


def passage_units(index: int, passage: Passage) -> list[Unit]:
    """The units of a passage (of each chunk it is made of, with that chunk's unit ids), in
    order; text addressed to an AI is left out."""
    units: list[Unit] = []
    lists = 0
    for chunk in passage.parts:
        seen = 0
        for j, (text, lid) in enumerate(split_units(chunk.text)):
            if lid is not None:
                seen = max(seen, lid)
            if INSTRUCTION_LIKE.search(text):
                continue
            number = None if lid is None else lists + lid
            units.append(Unit(index, len(units), text, number, unit_id(chunk.chunk_id, j)))
        lists += seen
    return units


@dataclass(frozen=True)
class _Pool:
    """The units of the passages used, with what scoring them needs (worked out once)."""

    units: list[Unit]
    vectors: np.ndarray[Any, Any]
    tokens: list[set[str]]
    prior: list[float]  # by passage: how it ranked


def _weighted_terms(text: str, lexical: LexicalIndex) -> tuple[dict[str, float], float]:
    """The words of ``text`` with their IDF weights, and the weights' sum (1 when none)."""
    terms = {t: lexical.idf(t) for t in set(tokenize(text))}
    return terms, sum(terms.values()) or 1.0


def _no_evidence(evidence: Sequence[Passage]) -> dict[str, float]:
    """The features before any unit is scored: only the best passage's dense score is known."""
    return {
        "top_dense": max((p.dense or 0.0 for p in evidence), default=0.0),
        "best_unit_cos": 0.0,
        "top_coverage": 0.0,
        "answer_coverage": 0.0,
        "answer_type": 0.0,
        "numbers_found": 0.0,
    }


def _answer_features(
    question: str, q_terms: dict[str, float], q_mass: float, said: str, used: Sequence[Passage]
) -> dict[str, float]:
    """How much of the question the answer ``said`` covers, whether it is the kind of answer
    asked for (a quantity, a date), and whether the question's numbers are in the passages."""
    context = " ".join(p.chunk.text for p in used)
    return {
        "answer_coverage": _coverage(q_terms, q_mass, said),
        "answer_type": float(_answer_type_ok(question, said)),
        "numbers_found": float(all(n in context for n in _NUMBER.findall(question))),
    }


def _evidence_features(
    question: str,
    q_terms: dict[str, float],
    q_mass: float,
    passages: Sequence[Passage],
    cited: set[str],
) -> dict[str, float]:
    """Evidence that does not depend on the corpus's vocabulary or size: how much of the
    question (and of the things it names) the cited passages mention, how far the best passage
    stands out from the rest, and whether lexical and dense retrieval agree on it."""
    specific = specific_terms(question)
    dense = [p.dense or 0.0 for p in passages[:5]]
    lexical = [p.lexical or 0.0 for p in passages[:5]]
    return {
        "cited_coverage": _covered(q_terms, q_mass, cited),
        "specific_found": (sum(t in cited for t in specific) / len(specific) if specific else 1.0),
        "specific_missing": float(sum(t not in cited for t in specific)),
        "max_sentence": max((p.sentence or 0.0 for p in passages), default=0.0),
        "dense_margin": dense[0] - float(np.mean(dense[1:])) if len(dense) > 1 else 0.0,
        "lexical_share": lexical[0] / max(lexical) if lexical and max(lexical) > 0 else 0.0,
    }


def _rank_prior(used: Sequence[Passage]) -> list[float]:
    """How each passage ranked: 1 for the best, 1/2 for the second, … (reciprocal rank: needs
    no scale, so it means the same whatever retrieval's scores are)."""
    return [1.0 / (i + 1) for i in range(len(used))]


def _answer_type_ok(question: str, said: str) -> bool:
    """A question asking how many (or when) is answered only by a sentence with a quantity
    (or a date) in it."""
    if _ASKS_NUMBER.search(question) and not _HAS_QUANTITY.search(said):
        return False
    return not (_ASKS_DATE.search(question) and not _HAS_DATE.search(said))


#: words that open a question
_QUESTION_WORDS = (
    "how", "what", "who", "whom", "which", "when", "where", "why", "is", "are", "does", "do",
    "did", "can", "could", "should", "would", "will",
)  # fmt: skip
_PART_SPLIT = re.compile(
    rf"\?\s+(?=\S)|,?\s+and\s+(?=(?:{'|'.join(_QUESTION_WORDS)})\b)|;\s+", re.IGNORECASE
)


def split_question(question: str) -> list[str]:
    """The separate questions of one that asks several ("How far ahead …, and how often …?");
    empty when it asks one thing."""
    parts = [p.strip(" ,;?") for p in _PART_SPLIT.split(question)]
    parts = [p for p in parts if len(tokenize(p)) >= 2]
    return parts if len(parts) >= 2 else []


class _CoverageGain:
    """How much of the question's (IDF-weighted) vocabulary a unit adds to what is chosen."""

    def __init__(self, q_terms: dict[str, float], q_mass: float, terms: list[set[str]]) -> None:
        self.q_terms = q_terms
        self.q_mass = q_mass
        self.terms = terms
        self.covered: set[str] = set()

    def of(self, i: int) -> float:
        return sum(self.q_terms[t] for t in self.terms[i] - self.covered) / self.q_mass

    def take(self, i: int) -> None:
        self.covered |= self.terms[i]


def _coverage(q_terms: dict[str, float], q_mass: float, text: str) -> float:
    return _covered(q_terms, q_mass, set(tokenize(text)))


def _covered(q_terms: dict[str, float], q_mass: float, have: set[str]) -> float:
    """Share of the question's IDF mass among the tokens ``have``."""
    if not q_terms:
        return 0.0
    return sum(w for t, w in q_terms.items() if t in have) / q_mass


def quote_span(passage: str, quoted: list[str]) -> str:
    """The stretch of ``passage`` from the first quoted unit to the last, verbatim."""
    start, end, cursor = -1, -1, 0
    for q in quoted:
        at = passage.find(q, cursor)
        if at < 0:
            at = passage.find(q)
        if at < 0:
            continue
        start = at if start < 0 else min(start, at)
        end = max(end, at + len(q))
        cursor = at + len(q)
    return passage[start:end] if start >= 0 else " ".join(quoted)


def join_lines(lines: list[str]) -> str:
    """Sentences run on as prose; list items each on a line of their own."""
    out = ""
    for line in lines:
        if not out:
            out = line
        elif line.startswith("- ") or out.splitlines()[-1].startswith("- "):
            out += "\n" + line
        else:
            out += " " + line
    return out
