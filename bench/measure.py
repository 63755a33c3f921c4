"""The measurements of one size, each beside its baseline: indexing throughput, latency and
quality in process, and the server (cold start, HTTP latency, peak RSS)."""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
import tomllib
import urllib.request
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import (
    BATCH_SIZE,
    DATA,
    DISTRACTOR_ANSWERS,
    SEED_CORPUS,
    SETS,
    WARMUP,
    latency_stats,
    load_average,
)
from bench.corpora import corpus_chunks, current_build, ensure_index, link_corpus
from bench.distractors import distractor_dir, write_distractors
from devtools.servers import running_app

if TYPE_CHECKING:
    from assistant.answer.calibration import Calibration
    from assistant.embeddings import Embedder
    from assistant.evaluation.cases import EvalCase
    from assistant.pipeline import Assistant
    from assistant.schema import Chunk

__all__ = [
    "bench_latency",
    "bench_quality",
    "bench_server",
    "bench_throughput",
    "distractor_answers",
    "latency_questions",
    "out_of_sample_calibration",
    "raw_model",
    "store_seconds",
]

#: seconds app.py may take to load the index and answer /api/health
SERVER_START_TIMEOUT = 600.0


# -- 1. indexing throughput ----------------------------------------------------------------------


def store_seconds(chunks: Sequence[Chunk], vectors: Any) -> float:
    """Seconds to write ``chunks`` and their sentences, already embedded (``vectors``: chunks
    first, then sentences, as :func:`bench_throughput` encodes them), into a fresh Chroma and
    sentence file, in the build's batches: the part of a build that is neither embedding nor
    reading."""
    from assistant.chunking import split_units
    from assistant.index import WRITE_BATCH
    from assistant.index.chroma import ChromaStore, persistent_client, release_client
    from assistant.index.sentences import SentenceWriter

    chunk_vecs, unit_vecs = vectors[: len(chunks)], vectors[len(chunks) :]
    with tempfile.TemporaryDirectory(prefix="bench-store-") as tmp:
        client = persistent_client(Path(tmp) / "chroma")
        sentences = SentenceWriter(Path(tmp) / "sentences", chunk_vecs.shape[1])
        try:
            t0 = time.perf_counter()
            store = ChromaStore(client, "guidance")
            u = 0
            for start in range(0, len(chunks), WRITE_BATCH):
                part = chunks[start : start + WRITE_BATCH]
                counts = [(c.chunk_id, len(split_units(c.text))) for c in part]
                n_units = sum(n for _, n in counts)
                sentences.add(counts, unit_vecs[u : u + n_units])
                store.add(part, chunk_vecs[start : start + len(part)])
                u += n_units
            return time.perf_counter() - t0
        finally:
            sentences.close()
            release_client(client)


def raw_model() -> Any:
    """The bundled model as a bare ``SentenceTransformer`` (the baseline's encoder)."""
    from sentence_transformers import SentenceTransformer

    from assistant.embeddings import BUNDLED_MODEL, resolve_model

    location, _ = resolve_model(BUNDLED_MODEL)
    return SentenceTransformer(location, device="cpu", local_files_only=True)


def _encode(model: Any, texts: Sequence[str]) -> tuple[float, Any]:
    t0 = time.perf_counter()
    vectors = model.encode(
        list(texts), batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True
    )
    return time.perf_counter() - t0, vectors


def bench_throughput(
    embedder: Embedder, model: Any, pages_cache: Callable[[], list[Any]]
) -> dict[str, Any]:
    """build_index into a fresh index vs raw encode of the same texts, back to back."""
    target = int(os.environ.get("BENCH_THROUGHPUT_CHUNKS", "2000"))
    dist = distractor_dir(f"tp{target}", DATA)
    write_distractors(pages_cache(), target, dist, seed=7)
    corpus = link_corpus(dist, DATA / f"corpus-tp{target}")
    from assistant.chunking import split_units

    chunks = corpus_chunks(corpus)
    chunk_texts = [c.embed_text for c in chunks]
    unit_texts = [text for c in chunks for text, _ in split_units(c.text)]
    n = len(chunk_texts)
    _encode(model, chunk_texts[:64])  # warm-up
    load_before = load_average()
    # A B build B A: the raw figures bracket the build, so a change of load shows in their spread
    raw_chunks_1, _ = _encode(model, chunk_texts)
    raw_all_1, vectors = _encode(model, chunk_texts + unit_texts)
    with tempfile.TemporaryDirectory(prefix="bench-index-") as tmp:
        built = ensure_index(corpus, Path(tmp) / "index", embedder)
    raw_all_2, _ = _encode(model, chunk_texts + unit_texts)
    raw_chunks_2, _ = _encode(model, chunk_texts)
    store_s = store_seconds(chunks, vectors)
    raw_all = (raw_all_1 + raw_all_2) / 2
    raw_chunks = (raw_chunks_1 + raw_chunks_2) / 2
    build_cps = n / built["seconds"]
    return {
        "chunks": n,
        "sentences": len(unit_texts),
        "mean_chunk_chars": round(sum(map(len, chunk_texts)) / n, 1),
        "mean_sentence_chars": round(sum(map(len, unit_texts)) / max(1, len(unit_texts)), 1),
        "batch_size": BATCH_SIZE,
        "build": built,
        "build_chunks_per_s": round(build_cps, 1),
        "raw_chunks_only_s": round(raw_chunks, 1),
        "raw_chunks_only_runs_s": [round(raw_chunks_1, 1), round(raw_chunks_2, 1)],
        "chroma_write_s": round(store_s, 1),
        "raw_chunks_only_chunks_per_s": round(n / raw_chunks, 1),
        "raw_chunks_and_sentences_s": [round(raw_all_1, 1), round(raw_all_2, 1)],
        "raw_chunks_and_sentences_chunks_per_s": round(n / raw_all, 1),
        "ratio_vs_chunks_only": round(build_cps / (n / raw_chunks), 3),
        "ratio_vs_chunks_and_sentences": round(build_cps / (n / raw_all), 3),
        "load_before": load_before,
        "load_after": load_average(),
    }


# -- 2. latency and quality, in process ----------------------------------------------------------


def latency_questions(cases: Sequence[EvalCase], n: int) -> list[str]:
    single = [c.question for c in cases if not c.history]
    return single[:n]


def bench_latency(
    assistant: Assistant, index_dir: Path, questions: Sequence[str], torch_model: Any = None
) -> dict[str, Any]:
    """search, ask and a bare Chroma query, interleaved question by question; with
    ``torch_model`` (a bare ``SentenceTransformer``) also the bare query embedding on torch."""
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    # the same settings as assistant.store, so Chroma shares the already-open system
    client = chromadb.PersistentClient(
        path=str(current_build(index_dir) / "chroma"),
        settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False),
    )
    collection = client.get_collection("guidance")
    embedder = assistant.embedder

    def bare(q: str) -> None:
        vec = embedder.encode([q])
        collection.query(query_embeddings=[vec[0].tolist()], n_results=5)

    def bare_torch(q: str) -> None:
        vec = torch_model.encode([q], normalize_embeddings=True, convert_to_numpy=True)
        collection.query(query_embeddings=[vec[0].tolist()], n_results=5)

    runners: dict[str, Callable[[str], object]] = {
        "bare_query": bare,
        "search": assistant.search,
        "ask": assistant.ask,
    }
    if torch_model is not None and assistant.embedder.backend != "torch":
        runners["bare_torch_query"] = bare_torch
    for q in questions[:WARMUP]:
        for run in runners.values():
            run(q)
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    load_before = load_average()
    for i, q in enumerate(questions):
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
        for name in order:
            t0 = time.perf_counter()
            runners[name](q)
            times[name].append((time.perf_counter() - t0) * 1000)
    out: dict[str, Any] = {name: latency_stats(ms) for name, ms in times.items()}
    bare_p50 = out["bare_query"]["p50_ms"]
    out["ask_vs_bare_p50"] = round(out["ask"]["p50_ms"] / bare_p50, 2)
    out["search_vs_bare_p50"] = round(out["search"]["p50_ms"] / bare_p50, 2)
    out["ask_vs_bare_p95"] = round(out["ask"]["p95_ms"] / out["bare_query"]["p95_ms"], 2)
    if "bare_torch_query" in out:
        out["ask_vs_bare_torch_p50"] = round(
            out["ask"]["p50_ms"] / out["bare_torch_query"]["p50_ms"], 2
        )
    out["load_before"] = load_before
    out["load_after"] = load_average()
    return out


def distractor_answers(path: Path = DISTRACTOR_ANSWERS) -> dict[str, str]:
    """Unanswerable cases that a distractor page really answers (checked by hand): case id →
    the page and why (``bench/distractor_answers.toml``)."""
    raw = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {str(c["id"]): f"{c['page']}: {c['why']}" for c in raw.get("case", [])}


def out_of_sample_calibration(embedder: Embedder) -> Calibration:
    """The calibration ``make eval`` scores the guidance set with: fitted leaving the guidance
    corpus out (the other corpora's sets and every corpus's probe questions), so the quality rows
    decline with a decision fitted on none of the questions they ask."""
    from assistant.answer.calibration import Calibration
    from assistant.evaluation.cases import load_sets
    from assistant.evaluation.suite import SetRunner, leave_one_corpus_out
    from assistant.settings import Settings

    specs = load_sets(SETS)
    guidance = next(s for s in specs if s.corpus.resolve() == SEED_CORPUS.resolve())
    runner = SetRunner(DATA / "eval-index", embedder, Calibration.load(Settings().calibration_file))
    try:
        fitted = leave_one_corpus_out(guidance, specs, runner.rows, runner.probes)
    finally:
        runner.close()
    if fitted is None:
        raise SystemExit(f"bench: {SETS} names no other corpus to fit a calibration on")
    return fitted


def bench_quality(
    assistant: Assistant, cases: Sequence[EvalCase], left_out: Mapping[str, str]
) -> dict[str, Any]:
    """The evaluation set on the size's index. An unanswerable case in ``left_out`` (one a
    distractor page really answers) is listed and left out of the refusal figures."""
    from assistant.evaluation.baselines import assistant_system
    from assistant.evaluation.run import evaluate, summarise

    system = assistant_system(assistant)
    intruded = 0
    top5_distractors = 0
    cited_distractors = 0

    def search(case: EvalCase, k: int) -> list[Any]:
        nonlocal intruded, top5_distractors
        passages = system.search(case, k)
        top = [p for p in passages[:5] if p.chunk.doc.path.startswith("distractors/")]
        top5_distractors += len(top)
        intruded += bool(top)
        return passages

    def ask(case: EvalCase) -> Any:
        nonlocal cited_distractors
        answer = system.ask(case)
        cited_distractors += any(c.doc_id.startswith("distractors") for c in answer.citations)
        return answer

    results = evaluate(cases, ask, search, k=10)
    summary = summarise(results)
    refusal = summarise([r for r in results if r.case.id not in left_out]).metrics
    keep = ("hit@1", "hit@5", "hit@10", "mrr", "key_fact_accuracy", "supported_answer_rate")
    return {
        **{k: round(summary.metrics[k], 4) for k in keep},
        **{
            k: round(refusal[k], 4)
            for k in ("refusal_precision", "refusal_recall", "false_refusal_rate")
        },
        "cases": summary.counts["cases"],
        "answerable": summary.counts["answerable"],
        "calibration": assistant.calibration.fitted_on,
        "left_out_of_refusal": {
            r.case.id: {"reason": left_out[r.case.id], "refused": r.refused}
            for r in results
            if r.case.id in left_out
        },
        "cases_with_distractor_in_top5": intruded,
        "distractor_passages_in_top5": top5_distractors,
        "answers_citing_distractors": cited_distractors,
        "answered_unanswerable": sorted(
            r.case.id
            for r in results
            if not r.case.answerable and not r.refused and r.case.id not in left_out
        ),
        "misses_at_5": sorted(
            r.case.id
            for r in results
            if r.case.answerable and (r.gold_rank is None or r.gold_rank > 5)
        ),
    }


# -- 3. the server -------------------------------------------------------------------------------


def _post(url: str, body: dict[str, Any], timeout: float = 60.0) -> dict[str, Any]:
    req = urllib.request.Request(
        url, data=json.dumps(body).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(req, timeout=timeout) as resp:
        data: dict[str, Any] = json.loads(resp.read())
        return data


def _proc_status(pid: int) -> dict[str, float]:
    out: dict[str, float] = {}
    with contextlib.suppress(OSError):
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            key, _, value = line.partition(":")
            if key in ("VmHWM", "VmRSS"):
                out[key] = round(int(value.split()[0]) / 1024, 1)  # kB → MB
    return out


def bench_server(index_dir: Path, corpus: Path, questions: Sequence[str]) -> dict[str, Any]:
    """Cold start to the first answer, HTTP latency of the same questions, then peak RSS."""
    with tempfile.TemporaryDirectory(prefix="bench-server-") as data_dir:
        env = {
            # the server reads the ASSISTANT_* settings the in-process measurements read
            **{k: v for k, v in os.environ.items() if k.startswith("ASSISTANT_")},
            "ASSISTANT_INDEX_DIR": str(index_dir),
            "ASSISTANT_CORPUS_DIR": str(corpus),
            "ASSISTANT_DATA_DIR": data_dir,
            "ASSISTANT_HOST": "127.0.0.1",
        }
        log_file = Path(data_dir) / "server.log"
        with running_app(env, log_file, timeout=SERVER_START_TIMEOUT, poll=0.1) as app:
            _post(app.url + "/api/ask", {"question": questions[0]}, timeout=120)
            cold = time.perf_counter() - app.started
            after_start = _proc_status(app.process.pid)
            times = _http_latency(app.url, questions)
            status = _proc_status(app.process.pid)
    return {
        "cold_start_s": round(cold, 2),
        "rss_after_first_answer_mb": after_start.get("VmRSS"),
        "peak_rss_mb": status.get("VmHWM"),
        "rss_mb": status.get("VmRSS"),
        **{name: latency_stats(ms) for name, ms in times.items()},
    }


def _http_latency(url: str, questions: Sequence[str]) -> dict[str, list[float]]:
    """Milliseconds of ``/api/ask`` and ``/api/search`` for each question, after a warm-up."""
    for q in questions[:WARMUP]:
        _post(url + "/api/ask", {"question": q})
    times: dict[str, list[float]] = {"http_ask": [], "http_search": []}
    for q in questions:
        for name, path, body in (
            ("http_ask", "/api/ask", {"question": q}),
            ("http_search", "/api/search", {"question": q, "k": 5}),
        ):
            t = time.perf_counter()
            _post(url + path, body)
            times[name].append((time.perf_counter() - t) * 1000)
    return times
