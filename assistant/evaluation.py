"""Offline evaluation against a known-answer set: retrieval, answers, declining, latency.

No LLM judge: the gold passage is the one containing the case's ``evidence`` snippet, and a
correct answer contains every ``must`` group (any alternative of a group counts).
"""

from __future__ import annotations

import math
import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from assistant.evalset import EvalCase, normalise
from assistant.schema import Answer, Passage

__all__ = ["CaseResult", "EvalSummary", "evaluate", "has_facts", "summarise"]

HIT_AT = (1, 3, 5, 10)


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


def _gold_rank(passages: Sequence[Passage], case: EvalCase) -> int | None:
    if not case.evidence:
        return None
    ev = normalise(case.evidence)
    for p in passages:
        if ev in normalise(p.chunk.text):
            return p.rank
    return None


def evaluate(
    cases: Sequence[EvalCase],
    ask: Callable[[EvalCase], Answer],
    search: Callable[[EvalCase, int], list[Passage]],
    *,
    k: int = 10,
) -> list[CaseResult]:
    results: list[CaseResult] = []
    for case in cases:
        t0 = time.perf_counter()
        passages = search(case, k)
        t_search = (time.perf_counter() - t0) * 1000
        answer = ask(case)
        timings = dict(answer.timings_ms) or {"total": (time.perf_counter() - t0) * 1000}
        timings.setdefault("search", t_search)
        facts = has_facts(answer.answer, case.must) if case.answerable else False
        cites = answer.citations
        results.append(
            CaseResult(
                case=case,
                gold_rank=_gold_rank(passages, case),
                refused=answer.refused,
                facts_ok=facts,
                citations=len(cites),
                supporting_citations=sum(_supports(c.passage, case) for c in cites),
                answer=answer.answer,
                retrieved=[
                    f"{p.chunk.doc.title} — {p.chunk.section}: {p.chunk.text[:80]}"
                    for p in passages
                ],
                timings_ms=timings,
            )
        )
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
    for stage in ("retrieve", "answer", "total"):
        vals = [r.timings_ms[stage] for r in results if stage in r.timings_ms]
        m[f"{stage}_p50_ms"] = statistics.median(vals) if vals else 0.0
        m[f"{stage}_p95_ms"] = _pct(vals, 0.95)
    counts = {"cases": len(results), "answerable": len(ans), "unanswerable": len(unans),
              "failures": sum(r.failed for r in results)}  # fmt: skip
    return EvalSummary(m, counts)


def _mean(values: Sequence[Any]) -> float:
    return sum(float(v) for v in values) / len(values) if values else 0.0
