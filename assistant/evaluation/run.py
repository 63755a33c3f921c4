"""Offline evaluation against a known-answer set: retrieval, answers, declining, latency.

No LLM judge: the gold passage is the one containing the case's ``evidence`` snippet, and a
correct answer contains every ``must`` group (any alternative of a group counts).

:func:`run_systems` evaluates several :class:`System` values (the assistant and the baselines of
:mod:`assistant.evaluation.baselines`) on the same cases; :mod:`assistant.evaluation.report`
renders the result.
(The thumbs-down answers the chat page stores become draft cases in
:func:`assistant.records.drafts.feedback_drafts`.)
"""

from __future__ import annotations

import logging
import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from typing import Any

from assistant.errors import InputError
from assistant.evaluation.cases import Conversation, EvalCase, normalise
from assistant.schema import Answer, Passage, Turn

__all__ = [
    "CaseResult",
    "EvalRun",
    "EvalSummary",
    "Progress",
    "System",
    "SystemRun",
    "evaluate",
    "has_facts",
    "hit_rate",
    "run_systems",
    "summarise",
]

log = logging.getLogger(__name__)

HIT_AT = (1, 3, 5, 10)
#: conversation turns that change the topic: a new question, an off-topic or out-of-scope one
SWITCH_KINDS = ("switch", "off-topic", "out-of-scope")


def has_facts(text: str, must: Sequence[Sequence[str]]) -> bool:
    norm = normalise(text)
    return all(any(normalise(alt) in norm for alt in group) for group in must)


def _supports(passage_text: str, case: EvalCase) -> bool:
    """A passage supports the answer if it holds the evidence or one of the key facts."""
    norm = normalise(passage_text)
    if case.evidence and normalise(case.evidence) in norm:
        return True
    return any(any(normalise(a) in norm for a in group) for group in case.must)


@dataclass
class CaseResult:
    case: EvalCase
    gold_rank: int | None  # 1-based rank of the first passage holding the evidence
    refused: bool
    facts_ok: bool
    citations: int
    supporting_citations: int
    answer: str
    retrieved: list[str]  # "title — section: text[:80]" of the ranked passages
    timings_ms: dict[str, float] = field(default_factory=dict)
    searched: str = ""  # what the system searched for the question (its follow-up handling)
    partial: bool = False  # the answer said the documents cover only part of the question

    @property
    def supported(self) -> bool:
        """Correct, not declined, and at least one citation to a passage that supports it."""
        return (
            self.case.answerable
            and not self.refused
            and self.facts_ok
            and (self.supporting_citations > 0)
        )

    @property
    def failed(self) -> bool:
        if not self.case.answerable:
            return not self.refused
        return not self.supported or self.gold_rank != 1

    @property
    def own_topic_or_declined(self) -> bool:
        """Declined, or answered with the key facts and a citation that supports them: a
        question after a change of topic is not answered from the previous topic."""
        return self.refused or self.supported

    @property
    def why(self) -> str:
        """What went wrong, in a few words ("" if the case passed)."""
        if not self.failed:
            return ""
        if not self.case.answerable:
            return "answered an unanswerable question"
        reasons = []
        if self.refused:
            reasons.append("declined")
        elif not self.facts_ok:
            reasons.append("key facts missing")
        elif not self.supporting_citations:
            reasons.append("no citation supports it")
        if self.gold_rank is None:
            reasons.append("evidence not retrieved" if self.case.evidence else "no evidence given")
        elif self.gold_rank != 1:
            reasons.append(f"evidence at rank {self.gold_rank}")
        return "; ".join(reasons)

    def to_json(self) -> dict[str, Any]:
        c = self.case
        return {
            "id": c.id,
            "question": c.question,
            "history": [{"role": t.role, "content": t.content} for t in c.history],
            "answerable": c.answerable,
            "tags": list(c.tags),
            "gold_rank": self.gold_rank,
            "refused": self.refused,
            "facts_ok": self.facts_ok,
            "citations": self.citations,
            "supporting_citations": self.supporting_citations,
            "supported": self.supported,
            "failed": self.failed,
            "why": self.why,
            "answer": self.answer,
            "kind": c.kind,
            "searched": self.searched,
            "partial": self.partial,
            "retrieved": list(self.retrieved),
            "timings_ms": {k: round(v, 2) for k, v in self.timings_ms.items()},
        }


def _gold_rank(passages: Sequence[Passage], case: EvalCase) -> int | None:
    if not case.evidence:
        return None
    ev = normalise(case.evidence)
    for p in passages:
        if ev in normalise(p.chunk.text):
            return p.rank
    return None


def _run_case(
    case: EvalCase,
    ask: Callable[[EvalCase], Answer],
    search: Callable[[EvalCase, int], list[Passage]],
    k: int,
) -> CaseResult:
    t0 = time.perf_counter()
    try:
        passages = search(case, k)
        t_search = (time.perf_counter() - t0) * 1000
        answer = ask(case)
    except InputError as err:  # e.g. a question over the length limit: name the case
        raise InputError(f"case {case.id}: {err}") from err
    timings = dict(answer.timings_ms) or {"total": (time.perf_counter() - t0) * 1000}
    timings.setdefault("search", t_search)
    cites = answer.citations
    return CaseResult(
        case=case,
        gold_rank=_gold_rank(passages, case),
        refused=answer.refused,
        facts_ok=has_facts(answer.answer, case.must) if case.answerable else False,
        citations=len(cites),
        supporting_citations=sum(_supports(c.passage, case) for c in cites),
        answer=answer.answer,
        retrieved=[
            f"{p.chunk.doc.title} — {p.chunk.section}: {p.chunk.text[:80]}" for p in passages
        ],
        timings_ms=timings,
        searched=answer.search_query,
        partial=answer.partial,
    )


def evaluate(
    cases: Sequence[EvalCase] | Sequence[Conversation],
    ask: Callable[[EvalCase], Answer],
    search: Callable[[EvalCase, int], list[Passage]],
    *,
    k: int = 10,
    progress: Callable[[int], None] | None = None,
) -> list[CaseResult]:
    """Run every case: ``search`` ranks ``k`` passages (retrieval metrics), ``ask`` answers.

    A :class:`Conversation` is run turn by turn: each turn is asked with the conversation so far
    as its history (the questions asked and the answers this system gave), and scored as a
    case of its own. ``progress`` is called with the number of cases (or conversations) done.
    """
    results: list[CaseResult] = []
    for done, item in enumerate(cases, start=1):
        if isinstance(item, Conversation):
            history: list[Turn] = []
            for turn in item.turns:
                result = _run_case(replace(turn, history=list(history)), ask, search, k)
                results.append(result)
                history += [Turn("user", turn.question), Turn("assistant", result.answer)]
        elif isinstance(item, EvalCase):
            results.append(_run_case(item, ask, search, k))
        if progress is not None:
            progress(done)
    return results


@dataclass(frozen=True)
class EvalSummary:
    metrics: dict[str, float]
    counts: dict[str, int]


def _pct(values: list[float], q: float) -> float:
    if not values:
        return 0.0
    ordered = sorted(values)
    idx = min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))
    return ordered[idx]


def summarise(results: Sequence[CaseResult]) -> EvalSummary:
    ans = [r for r in results if r.case.answerable]
    unans = [r for r in results if not r.case.answerable]
    m: dict[str, float] = {}
    for n in HIT_AT:
        m[f"hit@{n}"] = _mean([r.gold_rank is not None and r.gold_rank <= n for r in ans])
    m["mrr"] = _mean([1.0 / r.gold_rank if r.gold_rank else 0.0 for r in ans])
    m["ndcg@10"] = _mean(
        [
            1.0 / math.log2(r.gold_rank + 1) if r.gold_rank and r.gold_rank <= 10 else 0.0
            for r in ans
        ]
    )
    m["key_fact_accuracy"] = _mean([r.facts_ok and not r.refused for r in ans])
    total_cites = sum(r.citations for r in ans)
    m["citation_precision"] = (
        sum(r.supporting_citations for r in ans) / total_cites if total_cites else 0.0
    )
    m["supported_answer_rate"] = _mean([r.supported for r in ans])
    refused = [r for r in results if r.refused]
    m["refusal_precision"] = _mean([not r.case.answerable for r in refused]) if refused else 1.0
    m["refusal_recall"] = _mean([r.refused for r in unans]) if unans else 1.0
    m["false_refusal_rate"] = _mean([r.refused for r in ans])
    turns = [r for r in results if r.case.kind]
    if turns:  # a conversation set: how follow-ups and changes of topic fare
        follow = [r for r in turns if r.case.kind == "follow-up" and r.case.answerable]
        m["follow_ups_answered"] = _mean([r.supported for r in follow])
        switches = [r for r in turns if r.case.kind in SWITCH_KINDS]
        m["switches_own_topic_or_declined"] = _mean(
            [r.own_topic_or_declined if r.case.answerable else r.refused for r in switches]
        )
    for stage in ("retrieve", "answer", "total"):
        vals = [r.timings_ms[stage] for r in results if stage in r.timings_ms]
        m[f"{stage}_p50_ms"] = statistics.median(vals) if vals else 0.0
        m[f"{stage}_p95_ms"] = _pct(vals, 0.95)
    counts = {"cases": len(results), "answerable": len(ans), "unanswerable": len(unans),
              "failures": sum(r.failed for r in results)}  # fmt: skip
    return EvalSummary(m, counts)


def _mean(values: Sequence[Any]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0


def hit_rate(results: Sequence[CaseResult], n: int) -> float:
    """Share of answerable cases whose evidence is among the first ``n`` passages."""
    return _mean(
        [r.gold_rank is not None and r.gold_rank <= n for r in results if r.case.answerable]
    )


# -- several systems on one set -----------------------------------------------------------------

#: progress of a run: (system name, cases done, cases in the set)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class System:
    """Something that answers a case and ranks passages for it: the assistant or a baseline."""

    name: str
    description: str  # one line for the report: what it is, and how its answers are made
    ask: Callable[[EvalCase], Answer]
    search: Callable[[EvalCase, int], list[Passage]]
    declines: bool = True  # False: it never declines, so its refusal metrics mean nothing


@dataclass
class SystemRun:
    name: str
    description: str
    declines: bool
    results: list[CaseResult]
    summary: EvalSummary
    seconds: float

    @property
    def refusals(self) -> int:
        return sum(r.refused for r in self.results)

    @property
    def failures(self) -> list[CaseResult]:
        return [r for r in self.results if r.failed]

    def hit_curve(self, max_k: int) -> list[float]:
        """hit@1 … hit@max_k."""
        return [hit_rate(self.results, n) for n in range(1, max_k + 1)]

    def to_json(self, *, k: int, cases: bool = True) -> dict[str, Any]:
        out: dict[str, Any] = {
            "description": self.description,
            "declines": self.declines,
            "metrics": {m: round(v, 4) for m, v in self.summary.metrics.items()},
            "counts": {**self.summary.counts, "refused": self.refusals},
            "hit_curve": [round(v, 4) for v in self.hit_curve(k)],
            "seconds": round(self.seconds, 2),
        }
        if cases:
            out["results"] = [r.to_json() for r in self.results]
        return out


@dataclass
class EvalRun:
    """Every system's results on one case set."""

    case_set: str
    date: str  # ISO 8601, UTC
    k: int  # passages ranked for the retrieval metrics
    runs: list[SystemRun]
    seconds: float
    notes: list[str] = field(default_factory=list)  # how the run was made, for the report

    @property
    def cases(self) -> int:
        return len(self.runs[0].results) if self.runs else 0

    def system(self, name: str) -> SystemRun:
        for run in self.runs:
            if run.name == name:
                return run
        raise KeyError(name)

    def to_json(self, *, cases: bool = True) -> dict[str, Any]:
        """The summary of every system; with ``cases``, each case's result too."""
        return {
            "set": self.case_set,
            "date": self.date,
            "k": self.k,
            "cases": self.cases,
            "seconds": round(self.seconds, 2),
            "notes": list(self.notes),
            "systems": {r.name: r.to_json(k=self.k, cases=cases) for r in self.runs},
        }


def run_systems(
    cases: Sequence[EvalCase] | Sequence[Conversation],
    systems: Sequence[System],
    *,
    k: int = 10,
    case_set: str = "",
    progress: Progress | None = None,
    notes: Sequence[str] = (),
) -> EvalRun:
    """Evaluate each system on the same cases, one system after the other. ``notes`` say how
    the run was made (e.g. which calibration decided to decline), for the report."""
    if k < 1:
        raise InputError(f"k must be at least 1, not {k}")
    date = datetime.now(UTC).isoformat(timespec="seconds")
    t_all = time.perf_counter()
    runs: list[SystemRun] = []
    for system in systems:
        t0 = time.perf_counter()

        def done(n: int, name: str = system.name) -> None:
            if progress is not None:
                progress(name, n, len(cases))

        done(0)
        results = evaluate(cases, system.ask, system.search, k=k, progress=done)
        runs.append(
            SystemRun(
                name=system.name,
                description=system.description,
                declines=system.declines,
                results=results,
                summary=summarise(results),
                seconds=time.perf_counter() - t0,
            )
        )
        log.info("evaluated %s on %d cases", system.name, len(cases))
    return EvalRun(case_set, date, k, runs, time.perf_counter() - t_all, notes=list(notes))
