"""What every bench module shares: the paths, the batch size, and the small statistics."""

from __future__ import annotations

import contextlib
import logging
import os
import statistics
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

__all__ = [
    "BATCH_SIZE",
    "CASES",
    "DATA",
    "DISTRACTOR_ANSWERS",
    "DOC",
    "MODEL_CACHE",
    "RESULTS_FILE",
    "ROOT",
    "SEED_CORPUS",
    "SETS",
    "WARMUP",
    "latency_stats",
    "load_average",
    "percentile",
    "step",
]

log = logging.getLogger("bench.run")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
#: the OpenVINO exports the bench's embedders use (the project's default cache folder)
MODEL_CACHE = ROOT / ".cache" / "models"
RESULTS_FILE = ROOT / "docs" / "benchmarks.json"
DOC = ROOT / "docs" / "benchmarks.md"
SEED_CORPUS = ROOT / "corpus"
CASES = ROOT / "eval" / "cases.jsonl"
SETS = ROOT / "eval" / "sets.toml"
DISTRACTOR_ANSWERS = ROOT / "bench" / "distractor_answers.toml"
BATCH_SIZE = 64  # ASSISTANT_EMBED_BATCH_SIZE's default
WARMUP = 5


def percentile(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def latency_stats(ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(percentile(ms, 0.5), 2),
        "p95_ms": round(percentile(ms, 0.95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
        "n": len(ms),
    }


def load_average() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def step(name: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("%s …", name)
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("%s: %.1f s", name, timings[name])
