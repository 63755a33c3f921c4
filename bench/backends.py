"""Embedding backends judged by the answers: torch against OpenVINO at each precision.

``make bench`` runs it (``python -m bench.backends`` alone; ``BENCH_BACKENDS=0`` keeps the last
results). For each variant (torch; OpenVINO f32, bf16 and int8, each where the CPU has it), all
in the project's venv with the assistant's own embedders:

* **build**: ``build_index`` of ``corpus/`` plus ``BENCH_BACKEND_CHUNKS`` (default 1000) distractor
  chunks into a fresh index; chunks/s and texts/s (the build embeds each chunk and its sentences).
  Torch builds first and last (A B C D A), so a change of load shows in its two figures;
* **query**: milliseconds to embed one question (the evaluation's single-turn questions), the
  variants in rotating order question by question, after a warm-up;
* **agreement**: cosine of each variant's vectors to torch's on the build's chunk texts;
* **answers**: every evaluation set (``eval/sets.toml``) run with the variant's embedder (its own
  indexes, declining fitted leaving each corpus out, as ``make eval``), and for each figure
  (hit@1, hit@5, key facts, refusals) how many cases differ from torch's.

A variant **passes** when its mean cosine to torch is at least 0.999 and no figure of any set is
more than one case from torch's (net: e.g. one more hit@1 and one fewer elsewhere is within). The
fastest passing variant is the one ``ASSISTANT_EMBED_BACKEND=auto`` should take here; the run
records which one ``auto`` does take. int8 is measured without the load-time probe that refuses
it in the product (its vectors fall below the bar).
"""

from __future__ import annotations

import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from importlib import metadata
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    BATCH_SIZE,
    CASES,
    DATA,
    MODEL_CACHE,
    SETS,
    WARMUP,
    latency_stats,
    load_average,
)
from bench.corpora import corpus_chunks, link_corpus
from bench.distractors import distractor_dir, write_distractors

if TYPE_CHECKING:
    import numpy as np

    from assistant.embeddings import Embedder
    from assistant.evaluation.suite import SuiteRun

__all__ = ["VARIANTS", "answer_differences", "bench_backends", "load_variant", "main"]

log = logging.getLogger("bench.backends")

VARIANTS = ("torch", "openvino-f32", "openvino-bf16", "openvino-int8")
MIN_COSINE = 0.999
#: a figure of a variant may differ from torch's by this many cases and still pass
MAX_CASES_APART = 1


def load_variant(name: str) -> Embedder | None:
    """The bundled model on the variant's backend; None where the CPU lacks its precision."""
    from assistant.embeddings import (
        BUNDLED_MODEL,
        SentenceTransformerEmbedder,
        resolve_model,
        split_backend,
    )
    from assistant.embeddings.runtime import OpenVINOEmbedder, cpu_precisions

    if name == "torch":
        return SentenceTransformerEmbedder(batch_size=BATCH_SIZE)
    _, precision = split_backend(name)
    if precision not in cpu_precisions():
        return None
    location, sha = resolve_model(BUNDLED_MODEL)
    return OpenVINOEmbedder(
        BUNDLED_MODEL, Path(location), precision=precision, batch_size=BATCH_SIZE,
        cache_dir=MODEL_CACHE, weights_sha256=sha or "", verify=False,
    )  # fmt: skip


def _build(corpus: Path, embedder: Embedder) -> dict[str, float]:
    from assistant.index import build_index

    with tempfile.TemporaryDirectory(prefix="bench-backend-") as tmp:
        report = build_index(corpus, Path(tmp) / "index", embedder)
    return {"seconds": report.seconds, "chunks": report.chunks}


def _query_latency(
    embedders: dict[str, Embedder], questions: Sequence[str]
) -> dict[str, dict[str, float]]:
    for q in questions[:WARMUP]:
        for emb in embedders.values():
            emb.encode([q])
    names = list(embedders)
    times: dict[str, list[float]] = {n: [] for n in names}
    for i, q in enumerate(questions):
        for name in names[i % len(names) :] + names[: i % len(names)]:
            t0 = time.perf_counter()
            embedders[name].encode([q])
            times[name].append((time.perf_counter() - t0) * 1000)
    return {n: latency_stats(ms) for n, ms in times.items()}


def _cosines(vectors: np.ndarray[Any, Any], torch: np.ndarray[Any, Any]) -> dict[str, float]:
    import numpy as np

    cos = np.sum(vectors * torch, axis=1)
    return {"mean_cosine": round(float(cos.mean()), 7), "min_cosine": round(float(cos.min()), 7),
            "max_abs_diff": float(np.max(np.abs(vectors - torch)))}  # fmt: skip


def _evaluate(embedder: Embedder, name: str) -> SuiteRun:
    """Every set of the registry with this embedder, on indexes of its own."""
    from assistant.evaluation.suite import run_suite
    from assistant.settings import Settings

    settings = Settings(index_dir=DATA / f"eval-index-{name}", embed_batch_size=BATCH_SIZE)
    return run_suite(settings, registry=SETS, baselines=False, embedder=embedder)


#: per case: the outcome each figure counts (None: the case does not count for it)
_OUTCOMES: dict[str, Callable[[Any], bool | None]] = {
    "hit@1": lambda r: r.gold_rank == 1 if r.case.answerable else None,
    "hit@5": lambda r: (r.gold_rank or 99) <= 5 if r.case.answerable else None,
    "key facts": lambda r: r.facts_ok and not r.refused if r.case.answerable else None,
    "declined unanswerable": lambda r: None if r.case.answerable else r.refused,
    "declined answerable": lambda r: r.refused if r.case.answerable else None,
}


_METRICS = ("hit@1", "hit@5", "key_fact_accuracy", "refusal_precision", "refusal_recall",
            "false_refusal_rate")  # fmt: skip


def _set_figures(suite: SuiteRun) -> dict[str, dict[str, Any]]:
    """Per set: the count of each outcome and which cases had it."""
    out: dict[str, dict[str, Any]] = {}
    for spec, run in suite.runs:
        results = run.system("assistant").results
        figures: dict[str, Any] = {}
        for fig, outcome in _OUTCOMES.items():
            yes = sorted(f"{i}:{r.case.id}" for i, r in enumerate(results) if outcome(r))
            figures[fig] = {"count": len(yes), "cases": yes}
        metrics = run.system("assistant").summary.metrics
        figures["metrics"] = {k: round(metrics[k], 4) for k in _METRICS if k in metrics}
        figures["cases"] = len(results)
        out[spec.name] = figures
    return out


def answer_differences(
    torch: dict[str, dict[str, Any]], other: dict[str, dict[str, Any]]
) -> dict[str, dict[str, dict[str, int]]]:
    """Per set and figure: the net difference in cases from torch's count, and how many cases
    changed outcome either way."""
    out: dict[str, dict[str, dict[str, int]]] = {}
    for name, figs in torch.items():
        out[name] = {}
        for fig in _OUTCOMES:
            a, b = set(figs[fig]["cases"]), set(other[name][fig]["cases"])
            out[name][fig] = {"net": len(b) - len(a), "changed": len(a ^ b)}
    return out


def _build_corpus(pages_cache: Callable[[], list[Any]]) -> Path:
    """``corpus/`` beside ``BENCH_BACKEND_CHUNKS`` distractor chunks (the throughput corpus)."""
    target = int(os.environ.get("BENCH_BACKEND_CHUNKS", "1000"))
    dist = distractor_dir(f"tp{target}", DATA)
    write_distractors(pages_cache(), target, dist, seed=7)
    return link_corpus(dist, DATA / f"corpus-tp{target}")


def _load_variants() -> tuple[dict[str, Embedder], dict[str, float]]:
    """Each variant the CPU can run, and the seconds its load took (an export included)."""
    from assistant.embeddings.runtime import BackendUnavailableError

    embedders: dict[str, Embedder] = {}
    load_s: dict[str, float] = {}
    for name in VARIANTS:
        t0 = time.perf_counter()
        try:
            emb = load_variant(name)
        except BackendUnavailableError as err:  # e.g. int8 without NNCF installed
            log.warning("%s not measured: %s", name, err)
            continue
        if emb is not None:
            embedders[name] = emb
            load_s[name] = round(time.perf_counter() - t0, 2)
    return embedders, load_s


def _judge_by_answers(embedders: dict[str, Embedder], rows: dict[str, dict[str, Any]]) -> None:
    """Each variant's evaluation figures, how far they are from torch's, and its verdict."""
    figures = {}
    for name, emb in embedders.items():
        t0 = time.perf_counter()
        figures[name] = _set_figures(_evaluate(emb, name))
        rows[name]["eval_s"] = round(time.perf_counter() - t0, 1)
        rows[name]["sets"] = {s: f["metrics"] for s, f in figures[name].items()}
        log.info("evaluation with %s: %.0f s", name, rows[name]["eval_s"])
    for name in embedders:
        diff = answer_differences(figures["torch"], figures[name])
        worst = max(abs(d["net"]) for figs in diff.values() for d in figs.values())
        rows[name]["answer_differences"] = diff
        rows[name]["most_cases_apart"] = worst
        rows[name]["passes"] = bool(
            worst <= MAX_CASES_APART and rows[name]["mean_cosine"] >= MIN_COSINE
        )


def bench_backends(
    pages_cache: Callable[[], list[Any]], questions: Sequence[str], *, answers: bool = True
) -> dict[str, Any]:
    """Every variant's build, query, agreement and answer figures; see the module."""

    from assistant.chunking import split_units
    from assistant.embeddings import make_embedder
    from assistant.embeddings.runtime import cpu_precisions

    corpus = _build_corpus(pages_cache)
    chunks = corpus_chunks(corpus)
    chunk_texts = [c.embed_text for c in chunks]
    n_units = sum(len(split_units(c.text)) for c in chunks)

    embedders, load_s = _load_variants()
    load_before = load_average()
    builds: dict[str, list[float]] = {n: [] for n in embedders}
    for name in [*embedders, "torch"]:  # A B C D A
        seconds = _build(corpus, embedders[name])["seconds"]
        builds[name].append(seconds)
        log.info("build with %s: %.1f s", name, seconds)
    query = _query_latency(embedders, questions)
    vectors = {n: e.encode(chunk_texts) for n, e in embedders.items()}
    rows: dict[str, dict[str, Any]] = {}
    torch_build = statistics.fmean(builds["torch"])
    for name, emb in embedders.items():
        seconds = statistics.fmean(builds[name])
        rows[name] = {
            "load_s": load_s[name],
            "build_s": [round(s, 1) for s in builds[name]],
            "build_chunks_per_s": round(len(chunks) / seconds, 1),
            "build_texts_per_s": round((len(chunks) + n_units) / seconds, 1),
            "build_speedup": round(torch_build / seconds, 2),
            "query": query[name],
            "query_speedup_p50": round(query["torch"]["p50_ms"] / query[name]["p50_ms"], 2),
            **_cosines(vectors[name], vectors["torch"]),
        }
        if hasattr(emb, "probe_cosine"):
            rows[name]["probe_cosine"] = round(float(emb.probe_cosine), 7)
    if answers:
        _judge_by_answers(embedders, rows)
    passing = [n for n in rows if rows[n].get("passes")]
    fastest = max(passing, key=lambda n: rows[n]["build_speedup"]) if passing else None
    auto = make_embedder(batch_size=BATCH_SIZE, cache_dir=MODEL_CACHE).backend
    return {
        "chunks": len(chunks),
        "sentences": n_units,
        "mean_chunk_chars": round(sum(map(len, chunk_texts)) / len(chunk_texts), 1),
        "questions": len(questions),
        "batch_size": BATCH_SIZE,
        "cpu_precisions": sorted(cpu_precisions()),
        "versions": {p: metadata.version(p) for p in ("torch", "openvino", "sentence-transformers")}
        | ({"nncf": metadata.version("nncf")} if _installed("nncf") else {}),
        "load_before": load_before,
        "load_after": load_average(),
        "variants": rows,
        "fastest_passing": fastest,
        "auto_takes": auto,
    }


def _installed(package: str) -> bool:
    try:
        metadata.version(package)
    except metadata.PackageNotFoundError:
        return False
    return True


def main() -> int:
    """Run the backend comparison alone and print it (``make bench`` stores it)."""
    import json

    from assistant.cli import prepare_runtime
    from assistant.evaluation.cases import load_cases
    from bench.measure import latency_questions
    from bench.run import DistractorPages

    prepare_runtime()
    logging.getLogger("bench").setLevel(logging.INFO)
    questions = latency_questions(load_cases(CASES), 100)
    print(json.dumps(bench_backends(DistractorPages(), questions), indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
