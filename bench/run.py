"""``make bench``: the assistant at scale, each figure beside a baseline measured in the same run.

Writes ``docs/benchmarks.json`` (the figures, committed, so a run on another machine keeps the sizes
it does not measure) and ``docs/benchmarks.md`` (rendered from it). Sizes come from ``BENCH_SIZES``
(default ``seed,10k,100k``): ``seed`` is ``corpus/`` alone, ``<n>k`` is ``corpus/`` plus about
``n`` thousand chunks of distractors (:mod:`bench.distractors`) indexed together. A size's index
is built once into ``bench/data/index-<size>/`` and reused (an unchanged corpus is not
re-embedded). Results of sizes not run this time are kept from the previous run, with their date.

What is measured (the machine is shared: compare a figure with its baseline, not across runs):

* **indexing**: chunks/s of :func:`assistant.index.build_index` into a fresh index, against raw
  ``SentenceTransformer.encode`` of the same chunk texts (same model and batch size), alone and
  with every sentence of each chunk (which the build embeds too);
* **latency**: ``Assistant.search`` and ``Assistant.ask`` against a bare Chroma query (embed the
  question, ``collection.query(n_results=5)`` on the same build), interleaved question by
  question after a warm-up;
* **quality**: hit@1, hit@5, MRR, key facts and refusal figures of the evaluation set with the
  distractors indexed, against the seed index; how often distractors reach the top 5 or get
  cited. Declining is decided by a calibration fitted with the guidance corpus left out (as
  ``make eval`` does), and an unanswerable case that a distractor page really answers
  (``bench/distractor_answers.toml``, checked by hand) is listed and left out of the refusal
  figures;
* **backends** (:mod:`bench.backends`, first): torch and OpenVINO at each precision, judged by
  build and query speed against torch and by the evaluation's answers; everything after it
  embeds with the default backend (``ASSISTANT_EMBED_BACKEND=auto``), and the latency rows add
  a bare query embedded on torch, the baseline issue 20 holds ``ask`` against;
* **server**: ``app.py`` started with ``ASSISTANT_INDEX_DIR``: seconds from process start to the
  first answered ``POST /api/ask``, then the same questions over HTTP, then its peak RSS
  (``VmHWM``).

Environment: ``BENCH_SIZES``; ``BENCH_QUESTIONS`` (latency questions, default 100);
``BENCH_THROUGHPUT_CHUNKS`` (size of the indexing-throughput corpus, default 2000);
``BENCH_BACKENDS`` (``0``: keep the last backend comparison); ``BENCH_BACKEND_CHUNKS``
(distractor chunks of its build corpus, default 1000); ``BENCH_BUILD_BUDGET_MIN`` (default 45:
a size whose index is missing and whose build is projected to take longer is skipped, with the
projection reported; ``0``: no limit).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import platform
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.backends import bench_backends
from bench.common import BATCH_SIZE, CASES, DATA, DOC, MODEL_CACHE, RESULTS_FILE, ROOT, step
from bench.corpora import corpus_for, current_build, ensure_index
from bench.distractors import default_html_dir, distractor_dir, load_pages, parse_size
from bench.measure import (
    bench_latency,
    bench_quality,
    bench_server,
    bench_throughput,
    distractor_answers,
    latency_questions,
    out_of_sample_calibration,
    raw_model,
)
from bench.render import render

if TYPE_CHECKING:
    from assistant.answer.calibration import Calibration
    from assistant.embeddings import Embedder
    from assistant.evaluation.cases import EvalCase

__all__ = ["bench_size", "main", "rerender"]

log = logging.getLogger("bench.run")


# -- a size, end to end --------------------------------------------------------------------------


def bench_size(
    label: str,
    embedder: Embedder,
    pages_cache: Callable[[], list[Any]],
    cases: Sequence[EvalCase],
    questions: Sequence[str],
    chunks_per_s: float | None,
    calibration: Calibration,
    torch_model: Any = None,
) -> dict[str, Any]:
    """Every measurement of one size; a size whose build would take too long is skipped."""
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    timings: dict[str, float] = {}
    entry: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with step(f"{label}: corpus", timings):
        corpus = corpus_for(label, pages_cache)
    index_dir = DATA / f"index-{label}"
    skipped = _over_build_budget(label, index_dir, chunks_per_s)
    if skipped is not None:
        return {**entry, **skipped}
    with step(f"{label}: index", timings):
        entry["build"] = ensure_index(corpus, index_dir, embedder)
    entry.update(_index_figures(index_dir))
    settings = Settings(corpus_dir=corpus, index_dir=index_dir, embed_batch_size=BATCH_SIZE)
    assistant = Assistant.from_settings(settings, embedder=embedder)
    entry["sentences"] = assistant.index.get().units.count()
    with step(f"{label}: latency", timings):
        entry["latency"] = bench_latency(assistant, index_dir, questions, torch_model)
    with step(f"{label}: quality", timings):
        left_out = distractor_answers() if label != "seed" else {}
        entry["quality"] = bench_quality(assistant.with_calibration(calibration), cases, left_out)
    with step(f"{label}: server", timings):
        entry["server"] = bench_server(index_dir, corpus, questions)
    entry["status"] = "measured"
    entry["step_seconds"] = timings
    return entry


def _over_build_budget(
    label: str, index_dir: Path, chunks_per_s: float | None
) -> dict[str, Any] | None:
    """The skipped entry of a size whose index is not built and whose build is projected (from
    the measured throughput) to take longer than ``BENCH_BUILD_BUDGET_MIN``; else None."""
    budget_min = float(os.environ.get("BENCH_BUILD_BUDGET_MIN", "45"))
    if label == "seed" or (index_dir / "CURRENT").is_file() or not chunks_per_s or not budget_min:
        return None
    stamp = json.loads((distractor_dir(label, DATA) / ".distractors.json").read_text())
    projected = int(stamp["chunks"]) / chunks_per_s / 60
    if projected <= budget_min:
        return None
    log.warning("%s: build projected at %.0f min > %s: skipped", label, projected, budget_min)
    return {
        "status": "skipped",
        "distractor_chunks": stamp["chunks"],
        "projected_build_min": round(projected, 1),
        "reason": f"index not built: projected {projected:.0f} min at the measured "
        f"{chunks_per_s:.1f} chunks/s, over BENCH_BUILD_BUDGET_MIN={budget_min:g}",
    }


def _index_figures(index_dir: Path) -> dict[str, Any]:
    """The chunk count and the size on disk (MB) of the index's current build."""
    build = current_build(index_dir)
    meta = json.loads((build / "meta.json").read_text(encoding="utf-8"))
    size = sum(f.stat().st_size for f in build.rglob("*") if f.is_file())
    return {"chunks": meta["chunk_count"], "index_mb": round(size / 2**20, 1)}


# -- main ----------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """The machine and library versions the figures were measured with."""
    import chromadb
    import sentence_transformers
    import torch

    info = {
        "cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "sentence_transformers": sentence_transformers.__version__,
        "chromadb": chromadb.__version__,
        "mem_gb": round(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30, 1),
    }
    info["summary"] = (
        f"{info['cpus']} shared CPUs ({info['torch_threads']} torch threads), "
        f"{info['mem_gb']} GB RAM, Python {info['python']}, torch {info['torch']}, "
        f"sentence-transformers {info['sentence_transformers']}, chromadb {info['chromadb']}"
    )
    return info


def rerender() -> int:
    """Write docs/benchmarks.md again from the stored results (and backends.json), measuring
    nothing."""
    results = json.loads(RESULTS_FILE.read_text(encoding="utf-8"))
    _write(results)
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(
        prog="python -m bench.run",
        description="Scale benchmarks (sizes from BENCH_SIZES) written to docs/benchmarks.md.",
    )
    parser.add_argument(
        "--render", action="store_true", help="rewrite docs/benchmarks.md, measuring nothing"
    )
    if parser.parse_args().render:
        return rerender()
    from assistant.cli import prepare_runtime

    prepare_runtime()
    logging.getLogger("bench").setLevel(logging.INFO)
    started = time.perf_counter()
    labels = _sizes_to_measure()
    n_questions = int(os.environ.get("BENCH_QUESTIONS", "100"))

    from assistant.embeddings import make_embedder
    from assistant.evaluation.cases import load_cases

    results = _previous_results()
    results["machine"] = machine_info()
    pages_cache = DistractorPages()
    embedder = make_embedder(batch_size=BATCH_SIZE, cache_dir=MODEL_CACHE)  # the default backend
    cases = load_cases(CASES)
    questions = latency_questions(cases, n_questions)
    timings: dict[str, float] = {}
    if os.environ.get("BENCH_BACKENDS", "1") != "0":
        with step("backends", timings):
            results["backends"] = bench_backends(pages_cache, questions)
        _write(results)
    chunks_per_s = _throughput(results, labels, embedder, pages_cache, timings)
    torch_model = raw_model()  # the bare torch query the latency rows are held against
    with step("calibration", timings):
        calibration = out_of_sample_calibration(embedder)
    for label in labels:
        with step(label, timings):
            previous = results["sizes"].get(label, {})
            entry = bench_size(
                label, embedder, pages_cache, cases, questions, chunks_per_s, calibration,
                torch_model,
            )  # fmt: skip
            _keep_first_build(entry, previous)
            results["sizes"][label] = entry
        _write(results)
    _finish(results, labels, started, timings)
    return 0


def _sizes_to_measure() -> list[str]:
    """``BENCH_SIZES``, checked (a bad size fails before anything is measured)."""
    labels = [s.strip() for s in os.environ.get("BENCH_SIZES", "seed,10k,100k").split(",")]
    labels = [s for s in labels if s]
    for label in labels:
        if label != "seed":
            parse_size(label)  # fail early on a bad size
    return labels


def _previous_results() -> dict[str, Any]:
    """The stored results (the sizes not measured this time keep them), or none."""
    results: dict[str, Any] = {}
    if RESULTS_FILE.is_file():
        with contextlib.suppress(OSError, ValueError):
            results = json.loads(RESULTS_FILE.read_text(encoding="utf-8"))
    results.setdefault("sizes", {})
    return results


class DistractorPages:
    """The python3-doc pages the distractors are made of, read once, when first needed."""

    def __init__(self) -> None:
        self.pages: list[Any] = []

    def __call__(self) -> list[Any]:
        if not self.pages:
            html = default_html_dir()
            if html is None:
                raise SystemExit("bench: python3-doc is not installed: run `make distractors`")
            self.pages.extend(load_pages(html, cache=DATA / "python-doc-pages.json"))
        return self.pages


def _throughput(
    results: dict[str, Any],
    labels: Sequence[str],
    embedder: Embedder,
    pages_cache: Callable[[], list[Any]],
    timings: dict[str, float],
) -> float | None:
    """The build's chunks/s: measured now (unless only the seed is run or ``BENCH_THROUGHPUT``
    is ``0``), else the last measurement's, if any."""
    if list(labels) != ["seed"] and os.environ.get("BENCH_THROUGHPUT", "1") != "0":
        with step("throughput", timings):
            model = raw_model()
            results["throughput"] = bench_throughput(embedder, model, pages_cache)
            del model
        _write(results)  # kept even if a long size is stopped part-way
    if results.get("throughput"):
        return float(results["throughput"]["build_chunks_per_s"])
    return None


def _finish(
    results: dict[str, Any], labels: list[str], started: float, timings: dict[str, float]
) -> None:
    """The sizes in order (seed first, then by size), the run's record, written."""
    order = {
        k: i
        for i, k in enumerate(
            ["seed", *sorted((k for k in results["sizes"] if k != "seed"), key=parse_size)]
        )
    }
    results["sizes"] = dict(sorted(results["sizes"].items(), key=lambda kv: order[kv[0]]))
    results["last_run"] = {
        "sizes": labels,
        "seconds": round(time.perf_counter() - started, 1),
        "steps": timings,
        "finished": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    _write(results)
    print(
        f"bench: wrote {RESULTS_FILE.relative_to(ROOT)} and {DOC.relative_to(ROOT)} "
        f"in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )


def _keep_first_build(entry: dict[str, Any], previous: dict[str, Any]) -> None:
    """A rerun on a cached index embeds nothing: keep the figures of the build that did."""
    build = entry.get("build")
    if not build or build.get("embedded"):
        return
    first = previous.get("first_build") or previous.get("build")
    if first and first.get("embedded") and first.get("chunks") == build.get("chunks"):
        entry["first_build"] = first


def _write(results: dict[str, Any]) -> None:
    """docs/benchmarks.json (atomically) and docs/benchmarks.md rendered from it."""
    tmp = RESULTS_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(RESULTS_FILE)
    DOC.write_text(render(results), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
