"""Probe questions: how an index scores questions it cannot answer, measured on the index itself.

Scores depend on the corpus: a question about Python scores higher against Python's
documentation than against commissioning guidance, whether or not the documents answer it. So
the evidence features the decision to decline uses are expressed relative to the index's own
distribution: each build is asked a fixed sample of the packaged bank of questions that
organisations' documents seldom answer (``data/unanswerable_bank.jsonl``: off-topic ones, and
near-misses from 28 professional fields), and the mean and spread of every feature over them
are stored with the build (``probes.json``). A feature then reads "how far above what an
unanswerable question gets here".
"""

from __future__ import annotations

import json
import logging
import random
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

__all__ = [
    "NORMALISED",
    "PROBE_FILE",
    "BankQuestion",
    "ProbeStats",
    "bank",
    "bank_sample",
    "measure",
]

log = logging.getLogger(__name__)

PROBE_FILE = "probes.json"
#: questions of the bank asked of every build (a fixed, seeded sample of the whole bank)
SAMPLE_SIZE = 160
_SEED = 15
#: features measured on a continuous scale that moves with the corpus: expressed relative to
#: the probes' distribution (the others are shares or flags that mean the same anywhere)
NORMALISED = (
    "top_dense",
    "best_unit_cos",
    "max_sentence",
    "top_coverage",
    "answer_coverage",
    "cited_coverage",
    "dense_margin",
)
#: a spread below this is treated as this (a feature nearly constant over the probes)
_MIN_SPREAD = 0.05
_VERSION = 1


@dataclass(frozen=True)
class BankQuestion:
    question: str
    kind: str  # "off-topic" or "near-miss"
    domain: str


@lru_cache(maxsize=1)
def bank() -> tuple[BankQuestion, ...]:
    """The packaged bank of questions documents seldom answer."""
    raw = resources.files("assistant").joinpath("data/unanswerable_bank.jsonl").read_text("utf-8")
    return tuple(
        BankQuestion(str(d["question"]), str(d["kind"]), str(d["domain"]))
        for d in (json.loads(line) for line in raw.splitlines() if line.strip())
    )


def bank_sample(size: int = SAMPLE_SIZE) -> list[BankQuestion]:
    """A fixed sample of the bank (the same on every build, so builds compare)."""
    questions = list(bank())
    random.Random(_SEED).shuffle(questions)
    return questions[:size]


@dataclass(frozen=True)
class ProbeStats:
    """Mean and spread of each feature over the probe questions, on one build."""

    mean: dict[str, float]
    spread: dict[str, float]
    probes: int
    version: int = _VERSION

    def normalise(self, features: Mapping[str, float]) -> dict[str, float]:
        """``features`` with each :data:`NORMALISED` one as (value - probe mean) / spread."""
        out = dict(features)
        for name in NORMALISED:
            if name in out and name in self.mean:
                out[name] = (out[name] - self.mean[name]) / self.spread[name]
        return out

    def save(self, folder: Path) -> None:
        (folder / PROBE_FILE).write_text(json.dumps(asdict(self), indent=1), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> ProbeStats | None:
        """The stats stored with a build, or None (an older build, or unreadable)."""
        try:
            raw = json.loads((folder / PROBE_FILE).read_text(encoding="utf-8"))
            stats = cls(**raw)
        except (OSError, ValueError, TypeError):
            return None
        return stats if stats.version == _VERSION else None


def measure(
    features: Callable[[str], Mapping[str, float]], questions: Sequence[BankQuestion]
) -> ProbeStats:
    """Ask every probe question (``features`` runs the pipeline on one) and summarise."""
    rows = [features(q.question) for q in questions]
    mean: dict[str, float] = {}
    spread: dict[str, float] = {}
    for name in NORMALISED:
        values = [float(r.get(name, 0.0)) for r in rows]
        m = sum(values) / len(values) if values else 0.0
        sd = (sum((v - m) ** 2 for v in values) / len(values)) ** 0.5 if values else 0.0
        mean[name] = m
        spread[name] = max(sd, _MIN_SPREAD)
    return ProbeStats(mean, spread, len(rows))
