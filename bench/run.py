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
* **server**: ``app.py`` started with ``ASSISTANT_INDEX_DIR``: seconds from process start to the
  first answered ``POST /api/ask``, then the same questions over HTTP, then its peak RSS
  (``VmHWM``).

Environment: ``BENCH_SIZES``; ``BENCH_QUESTIONS`` (latency questions, default 100);
``BENCH_THROUGHPUT_CHUNKS`` (size of the indexing-throughput corpus, default 2000);
``BENCH_BUILD_BUDGET_MIN`` (default 45: a size whose index is missing and whose build is
projected to take longer is skipped, with the projection reported; ``0``: no limit).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import platform
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.distractors import (
    default_html_dir,
    distractor_dir,
    load_pages,
    parse_size,
    write_distractors,
)

if TYPE_CHECKING:
    from assistant.answer.calibration import Calibration
    from assistant.embeddings import SentenceTransformerEmbedder
    from assistant.evaluation.cases import EvalCase
    from assistant.pipeline import Assistant
    from assistant.schema import Chunk

__all__ = ["main"]

log = logging.getLogger("bench.run")

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "bench" / "data"
RESULTS = ROOT / "bench" / "results"  # backends.json, written by bench/backends.py
RESULTS_FILE = ROOT / "docs" / "benchmarks.json"
DOC = ROOT / "docs" / "benchmarks.md"
SEED_CORPUS = ROOT / "corpus"
CASES = ROOT / "eval" / "cases.jsonl"
SETS = ROOT / "eval" / "sets.toml"
DISTRACTOR_ANSWERS = ROOT / "bench" / "distractor_answers.toml"
BATCH_SIZE = 64  # ASSISTANT_EMBED_BATCH_SIZE's default
WARMUP = 5
#: the targets of issue 7 (reported, not asserted)
TARGETS = {
    "index_vs_raw_encode": 0.85,  # build chunks/s ≥ 0.85 × raw encode chunks/s
    "ask_vs_bare_seed": 1.5,  # ask p50 ≤ 1.5 × bare query p50 at the seed corpus
    "ask_vs_bare_100k": 2.0,  # … ≤ 2 × at ~100k chunks
    "rss_100k_mb": 1536.0,  # server peak RSS ≤ 1.5 GB at ~100k
}
#: the quality targets of issue 15 with distractors: (figure, bound, higher is better)
QUALITY_TARGETS = (
    ("hit@1", 0.85, True),
    ("hit@5", 0.97, True),
    ("key_fact_accuracy", 0.90, True),
    ("refusal_precision", 0.90, True),
    ("refusal_recall", 0.88, True),
    ("false_refusal_rate", 0.03, False),
)


# -- small helpers -------------------------------------------------------------------------------


def _pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    pos = q * (len(ordered) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(ordered) - 1)
    return ordered[lo] + (ordered[hi] - ordered[lo]) * (pos - lo)


def _stats(ms: Sequence[float]) -> dict[str, float]:
    return {
        "p50_ms": round(_pct(ms, 0.5), 2),
        "p95_ms": round(_pct(ms, 0.95), 2),
        "mean_ms": round(statistics.fmean(ms), 2) if ms else float("nan"),
        "n": len(ms),
    }


def _load() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


@contextlib.contextmanager
def _step(name: str, timings: dict[str, float]) -> Iterator[None]:
    t0 = time.perf_counter()
    log.info("%s …", name)
    try:
        yield
    finally:
        timings[name] = round(time.perf_counter() - t0, 1)
        log.info("%s: %.1f s", name, timings[name])


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


# -- corpora and indexes -------------------------------------------------------------------------


def corpus_for(label: str, pages_cache: Callable[[], list[Any]]) -> Path:
    """The corpus folder of a size: ``corpus/`` itself, or it plus the size's distractors.

    The combined folder holds symbolic links to the seed files (manifest included) at its top and
    to the distractor documents under ``distractors/``.
    """
    if label == "seed":
        return SEED_CORPUS
    dist = distractor_dir(label, DATA)
    stamp = write_distractors(pages_cache(), parse_size(label), dist)
    log.info("distractors %s: %s documents, %s chunks", label, stamp["documents"], stamp["chunks"])
    return link_corpus(dist, DATA / f"corpus-{label}")


def link_corpus(distractors: Path, out: Path) -> Path:
    wanted: dict[Path, Path] = {}
    for f in sorted(SEED_CORPUS.iterdir()):
        if f.is_file() and not f.name.startswith("."):
            wanted[out / f.name] = f
    for f in sorted(distractors.rglob("*.md")):
        wanted[out / "distractors" / f.relative_to(distractors)] = f
    if out.exists():
        for existing in list(out.rglob("*")):
            if (existing.is_symlink() or existing.is_file()) and existing not in wanted:
                existing.unlink()
    for link, target in wanted.items():
        if link.is_symlink() and link.resolve() == target.resolve():
            continue
        link.parent.mkdir(parents=True, exist_ok=True)
        if link.exists() or link.is_symlink():
            link.unlink()
        link.symlink_to(target.resolve())
    return out


def corpus_chunks(corpus: Path) -> list[Chunk]:
    """The chunks indexing makes of ``corpus``."""
    from assistant.chunking import chunk_documents
    from assistant.ingest import ingest

    return chunk_documents(ingest(corpus).documents)


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


def current_build(index_dir: Path) -> Path:
    build = json.loads((index_dir / "CURRENT").read_text(encoding="utf-8"))["build"]
    return index_dir / "builds" / str(build)


def ensure_index(
    corpus: Path, index_dir: Path, embedder: SentenceTransformerEmbedder
) -> dict[str, Any]:
    """Build (or update) a size's cached index; what the build did."""
    from assistant.index import build_index

    embed_times: list[float] = []

    def progress(stage: str, done: int, total: int) -> None:
        if stage == "embed":
            embed_times.append(time.perf_counter())
            if done and (done % 2560 == 0 or done == total):
                log.info("embedded %d/%d chunks", done, total)

    report = build_index(corpus, index_dir, embedder, progress=progress)
    out = {
        "build_id": report.build_id,
        "documents": report.documents,
        "chunks": report.chunks,
        "embedded": report.embedded,
        "reused": report.reused,
        "skipped_files": len(report.skipped),
        "seconds": round(report.seconds, 1),
        "embed_seconds": round(embed_times[-1] - embed_times[0], 1) if embed_times else 0.0,
    }
    if report.embedded:
        out["chunks_per_s"] = round(report.embedded / report.seconds, 1)
    return out


# -- 1. indexing throughput ----------------------------------------------------------------------


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
    embedder: SentenceTransformerEmbedder, model: Any, pages_cache: Callable[[], list[Any]]
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
    load_before = _load()
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
        "load_after": _load(),
    }


# -- 2. latency and quality, in process ----------------------------------------------------------


def latency_questions(cases: Sequence[EvalCase], n: int) -> list[str]:
    single = [c.question for c in cases if not c.history]
    return single[:n]


def bench_latency(
    assistant: Assistant, index_dir: Path, questions: Sequence[str]
) -> dict[str, Any]:
    """search, ask and a bare Chroma query, interleaved question by question."""
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

    runners: dict[str, Callable[[str], object]] = {
        "bare_query": bare,
        "search": assistant.search,
        "ask": assistant.ask,
    }
    for q in questions[:WARMUP]:
        for run in runners.values():
            run(q)
    times: dict[str, list[float]] = {name: [] for name in runners}
    names = list(runners)
    load_before = _load()
    for i, q in enumerate(questions):
        order = names[i % len(names) :] + names[: i % len(names)]  # rotate who goes first
        for name in order:
            t0 = time.perf_counter()
            runners[name](q)
            times[name].append((time.perf_counter() - t0) * 1000)
    out: dict[str, Any] = {name: _stats(ms) for name, ms in times.items()}
    bare_p50 = out["bare_query"]["p50_ms"]
    out["ask_vs_bare_p50"] = round(out["ask"]["p50_ms"] / bare_p50, 2)
    out["search_vs_bare_p50"] = round(out["search"]["p50_ms"] / bare_p50, 2)
    out["ask_vs_bare_p95"] = round(out["ask"]["p95_ms"] / out["bare_query"]["p95_ms"], 2)
    out["load_before"] = load_before
    out["load_after"] = _load()
    return out


def distractor_answers(path: Path = DISTRACTOR_ANSWERS) -> dict[str, str]:
    """Unanswerable cases that a distractor page really answers (checked by hand): case id →
    the page and why (``bench/distractor_answers.toml``)."""
    raw = tomllib.loads(path.read_text(encoding="utf-8")) if path.is_file() else {}
    return {str(c["id"]): f"{c['page']}: {c['why']}" for c in raw.get("case", [])}


def out_of_sample_calibration(embedder: SentenceTransformerEmbedder) -> Calibration:
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
    port = _free_port()
    url = f"http://127.0.0.1:{port}"
    with tempfile.TemporaryDirectory(prefix="bench-server-") as data_dir:
        env = {
            **os.environ,
            "ASSISTANT_INDEX_DIR": str(index_dir),
            "ASSISTANT_CORPUS_DIR": str(corpus),
            "ASSISTANT_DATA_DIR": data_dir,
            "ASSISTANT_PORT": str(port),
            "ASSISTANT_HOST": "127.0.0.1",
            "HF_HUB_OFFLINE": "1",
        }
        log_file = Path(data_dir) / "server.log"
        with log_file.open("wb") as server_log:
            t0 = time.perf_counter()
            proc = subprocess.Popen(
                [sys.executable, str(ROOT / "app.py")],
                cwd=ROOT,
                env=env,
                stdout=server_log,
                stderr=subprocess.STDOUT,
            )
            try:
                return _drive_server(proc, url, t0, questions, log_file)
            finally:
                proc.terminate()
                try:
                    proc.wait(timeout=20)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _drive_server(
    proc: subprocess.Popen[bytes], url: str, t0: float, questions: Sequence[str], log_file: Path
) -> dict[str, Any]:
    cold: float | None = None
    deadline = t0 + 600
    while time.perf_counter() < deadline:
        if proc.poll() is not None:
            tail = log_file.read_text(errors="replace")[-2000:]
            raise RuntimeError(f"app.py exited with {proc.returncode}: {tail}")
        try:
            reply = _post(url + "/api/ask", {"question": questions[0]}, timeout=120)
            if "answer" in reply:
                cold = time.perf_counter() - t0
                break
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    if cold is None:
        raise RuntimeError("app.py did not answer within 600 s")
    after_start = _proc_status(proc.pid)
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
    status = _proc_status(proc.pid)
    return {
        "cold_start_s": round(cold, 2),
        "rss_after_first_answer_mb": after_start.get("VmRSS"),
        "peak_rss_mb": status.get("VmHWM"),
        "rss_mb": status.get("VmRSS"),
        **{name: _stats(ms) for name, ms in times.items()},
    }


# -- a size, end to end --------------------------------------------------------------------------


def bench_size(
    label: str,
    embedder: SentenceTransformerEmbedder,
    pages_cache: Callable[[], list[Any]],
    cases: Sequence[EvalCase],
    questions: Sequence[str],
    chunks_per_s: float | None,
    calibration: Calibration,
) -> dict[str, Any]:
    from assistant.pipeline import Assistant
    from assistant.settings import Settings

    timings: dict[str, float] = {}
    entry: dict[str, Any] = {"measured_at": datetime.now(UTC).isoformat(timespec="seconds")}
    with _step(f"{label}: corpus", timings):
        corpus = corpus_for(label, pages_cache)
    index_dir = DATA / f"index-{label}"
    budget_min = float(os.environ.get("BENCH_BUILD_BUDGET_MIN", "45"))
    if label != "seed" and not (index_dir / "CURRENT").is_file() and chunks_per_s and budget_min:
        stamp = json.loads((distractor_dir(label, DATA) / ".distractors.json").read_text())
        projected = int(stamp["chunks"]) / chunks_per_s / 60
        if projected > budget_min:
            log.warning(
                "%s: build projected at %.0f min > %s: skipped", label, projected, budget_min
            )
            return {
                **entry,
                "status": "skipped",
                "distractor_chunks": stamp["chunks"],
                "projected_build_min": round(projected, 1),
                "reason": f"index not built: projected {projected:.0f} min at the measured "
                f"{chunks_per_s:.1f} chunks/s, over BENCH_BUILD_BUDGET_MIN={budget_min:g}",
            }
    with _step(f"{label}: index", timings):
        entry["build"] = ensure_index(corpus, index_dir, embedder)
    meta = json.loads((current_build(index_dir) / "meta.json").read_text(encoding="utf-8"))
    entry["chunks"] = meta["chunk_count"]
    entry["index_mb"] = round(
        sum(f.stat().st_size for f in current_build(index_dir).rglob("*") if f.is_file()) / 2**20,
        1,
    )
    settings = Settings(corpus_dir=corpus, index_dir=index_dir, embed_batch_size=BATCH_SIZE)
    assistant = Assistant.from_settings(settings, embedder=embedder)
    entry["sentences"] = assistant.index.get().units.count()
    with _step(f"{label}: latency", timings):
        entry["latency"] = bench_latency(assistant, index_dir, questions)
    with _step(f"{label}: quality", timings):
        left_out = distractor_answers() if label != "seed" else {}
        entry["quality"] = bench_quality(assistant.with_calibration(calibration), cases, left_out)
    with _step(f"{label}: server", timings):
        entry["server"] = bench_server(index_dir, corpus, questions)
    entry["status"] = "measured"
    entry["step_seconds"] = timings
    return entry


# -- the report ----------------------------------------------------------------------------------


def _f(value: Any, spec: str = ",.1f") -> str:
    if value is None:
        return "—"
    if isinstance(value, float) and value != value:
        return "—"
    return format(value, spec)


def _verdict(ok: bool | None) -> str:
    return "—" if ok is None else ("met" if ok else "**missed**")


def render(results: dict[str, Any]) -> str:
    sizes: dict[str, Any] = results.get("sizes", {})
    tp = results.get("throughput")
    lines = [
        "# Benchmarks",
        "",
        "Made by `make bench` (`bench/run.py`); numbers from "
        f"{results.get('machine', {}).get('summary', 'this machine')}. The machine is shared with "
        "other work, so each figure is measured in the same run as its baseline (interleaved "
        "where possible) and compared as a ratio; absolute numbers vary between runs. Corpus "
        "sizes: `seed` is `corpus/` alone; `10k` and `100k` add distractor documents made from "
        "Debian's python3-doc pages (`make distractors`, `bench/distractors.py`), indexed "
        "together with the guidance.",
        "",
    ]
    lines += ["## Targets", "", "| target | figure | verdict |", "|---|---|---|"]
    for row in _target_rows(results):
        lines.append("| " + " | ".join(row) + " |")
    if tp:
        b = tp["build"]
        lines += [
            "",
            "## Indexing throughput",
            "",
            f"A fresh `build_index` of `corpus/` plus distractors: {tp['chunks']:,} chunks "
            f"(mean {tp['mean_chunk_chars']:.0f} characters with title and section) and their "
            f"{tp['sentences']:,} sentences (mean {tp['mean_sentence_chars']:.0f} characters), "
            f"against raw `SentenceTransformer.encode` of the same texts (bundled MiniLM, batch "
            f"size {tp['batch_size']}, CPU), measured back to back (raw encode of chunks + "
            "sentences before and after the build, averaged).",
            "",
            "| what | seconds | chunks/s | build ÷ this |",
            "|---|---:|---:|---:|",
            f"| `build_index` (ingest, chunk, embed chunks + sentences, Chroma, BM25) | "
            f"{b['seconds']:.1f} | {tp['build_chunks_per_s']:.1f} | 1.00 |",
            f"| raw encode, chunk texts only | {tp['raw_chunks_only_s']:.1f} | "
            f"{tp['raw_chunks_only_chunks_per_s']:.1f} | {tp['ratio_vs_chunks_only']:.2f} |",
            f"| raw encode, chunks + their sentences (the same work as the build's embedding) | "
            f"{statistics.fmean(tp['raw_chunks_and_sentences_s']):.1f} | "
            f"{tp['raw_chunks_and_sentences_chunks_per_s']:.1f} | "
            f"{tp['ratio_vs_chunks_and_sentences']:.2f} |",
            f"| writing the same chunks and sentences, already embedded, into a fresh Chroma "
            f"(the build's batches) | {_f(tp.get('chroma_write_s'))} | — | — |",
            "",
            f"Of the build's {b['seconds']:.1f} s, {b['embed_seconds']:.1f} s went to the embed "
            "stage (embedding and writing to Chroma); the rest is reading, chunking, copying and "
            f"BM25. Load average before/after: {tp['load_before']} / {tp['load_after']}.",
        ]
    lines += [
        "",
        "## Latency (in process)",
        "",
        "`Assistant.search` and `Assistant.ask` against a bare Chroma query (embed the question "
        "with the same embedder, then `collection.query(n_results=5)` on the same build's "
        "`guidance` collection), each question run by all three in rotating order after "
        f"{WARMUP} warm-up questions.",
        "",
        "| size | chunks | sentences | questions | bare query p50 / p95 ms | search p50 / p95 ms "
        "| ask p50 / p95 ms | ask ÷ bare (p50) | search ÷ bare (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    skipped: list[str] = []
    for label, e in sizes.items():
        if e.get("status") != "measured":
            skipped.append(f"- **{label}**: {e.get('reason', 'not measured')}.")
            proj = _projection(sizes, label)
            if proj is not None:
                skipped.append(
                    f"  Projected, linear in chunks from {proj['from']} (not measured): "
                    f"{proj['chunks']:,} chunks, index ~{proj['index_mb']:,.0f} MB on disk, "
                    f"server peak RSS ~{proj['peak_rss_mb']:,.0f} MB."
                )
            continue
        lat = e["latency"]
        lines.append(
            f"| {label} | {e['chunks']:,} | {e['sentences']:,} | {lat['ask']['n']} | "
            f"{_f(lat['bare_query']['p50_ms'])} / {_f(lat['bare_query']['p95_ms'])} | "
            f"{_f(lat['search']['p50_ms'])} / {_f(lat['search']['p95_ms'])} | "
            f"{_f(lat['ask']['p50_ms'])} / {_f(lat['ask']['p95_ms'])} | "
            f"{lat['ask_vs_bare_p50']:.2f} | {lat['search_vs_bare_p50']:.2f} |"
        )
    lines += _render_quality(sizes)
    lines += [
        "",
        "## Server: cold start and memory",
        "",
        "`app.py` started as a subprocess with `ASSISTANT_INDEX_DIR` pointing at the size's "
        "index: seconds from process start to the first answered `POST /api/ask`; then the "
        "latency questions over HTTP (`/api/ask`, `/api/search`), then the process's peak RSS "
        "(`VmHWM` in `/proc/<pid>/status`).",
        "",
        "| size | index on disk MB | cold start s | RSS after first answer MB | peak RSS MB | "
        "HTTP ask p50 / p95 ms | HTTP search p50 / p95 ms |",
        "|---|---:|---:|---:|---:|---:|---:|",
    ]
    for label, e in sizes.items():
        if e.get("status") != "measured":
            continue
        s = e["server"]
        lines.append(
            f"| {label} | {_f(e['index_mb'])} | {_f(s['cold_start_s'], '.1f')} | "
            f"{_f(s['rss_after_first_answer_mb'])} | {_f(s['peak_rss_mb'])} | "
            f"{_f(s['http_ask']['p50_ms'])} / {_f(s['http_ask']['p95_ms'])} | "
            f"{_f(s['http_search']['p50_ms'])} / {_f(s['http_search']['p95_ms'])} |"
        )
    lines += [
        "",
        "## Index builds",
        "",
        "| size | documents | chunks | this run: embedded, s | first build: embedded, s, "
        "chunks/s | measured |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, e in sizes.items():
        if e.get("status") != "measured":
            continue
        b = e["build"]
        first = e.get("first_build") or (b if b["embedded"] else None)
        first_cell = (
            f"{first['embedded']:,}, {first['seconds']:.1f} s, {_f(first.get('chunks_per_s'))}"
            if first
            else "—"
        )
        lines.append(
            f"| {label} | {b['documents']:,} | {b['chunks']:,} | {b['embedded']:,}, "
            f"{b['seconds']:.1f} s | {first_cell} | {e['measured_at']} |"
        )
    lines.append("")
    lines.append(
        "A rerun on an unchanged corpus reuses the cached index (it embeds nothing); the first "
        "build's figures are kept (delete `bench/data/index-<size>/` to time a build again). "
        "Build figures are absolute, so they carry the machine's load at the time."
    )
    if skipped:
        lines += ["", "## Not measured", "", *skipped]
    backends = results.get("backends")
    if backends:
        lines += ["", *_render_backends(backends)]
    lines += [
        "",
        "## Reproduce",
        "",
        "```sh",
        "make bench                              # seed, 10k and 100k (BENCH_SIZES)",
        "BENCH_SIZES=seed,10k make bench         # skip the largest",
        "BENCH_BUILD_BUDGET_MIN=0 make bench     # build the 100k index however long it takes",
        "```",
        "",
    ]
    return "\n".join(lines)


def _render_quality(sizes: dict[str, Any]) -> list[str]:
    measured = {k: e for k, e in sizes.items() if e.get("status") == "measured"}
    fitted = {e["quality"].get("calibration") for e in measured.values()} - {None}
    lines = [
        "",
        "## Answer quality with distractors",
        "",
        "The evaluation set (`eval/cases.jsonl`) through `assistant.evaluation.run.evaluate`, with "
        "the distractors indexed beside the guidance. Declining is decided by the calibration "
        "`make eval` scores this set with, fitted with the guidance corpus left out"
        + (f" ({'; '.join(sorted(fitted))})" if fitted else "")
        + ": every refusal figure is out of sample.",
        "",
        "| size | hit@1 | hit@5 | MRR | hit@5 − seed | key facts | refusal precision | refusal "
        "recall | false refusals | cases with a distractor in top 5 | answers citing a "
        "distractor |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    seed_hit = measured.get("seed", {}).get("quality", {}).get("hit@5")
    for label, e in measured.items():
        q = e["quality"]
        delta = "—" if seed_hit is None else f"{q['hit@5'] - seed_hit:+.3f}"
        lines.append(
            f"| {label} | {q['hit@1']:.3f} | {q['hit@5']:.3f} | {q['mrr']:.3f} | {delta} | "
            f"{q['key_fact_accuracy']:.3f} | {_f(q.get('refusal_precision'), '.3f')} | "
            f"{q['refusal_recall']:.3f} | {q['false_refusal_rate']:.3f} | "
            f"{q['cases_with_distractor_in_top5']} / {q['cases']} | "
            f"{q['answers_citing_distractors']} |"
        )
    answered = [
        f"- {label}: {', '.join(e['quality']['answered_unanswerable'])}"
        for label, e in measured.items()
        if e["quality"].get("answered_unanswerable")
    ]
    if answered:
        lines += ["", "Unanswerable cases that were answered instead of declined:", "", *answered]
    left_out = [
        f"- {label}: {case} ({'declined' if v['refused'] else 'answered'}): {v['reason']}"
        for label, e in measured.items()
        for case, v in e["quality"].get("left_out_of_refusal", {}).items()
    ]
    if left_out:
        lines += [
            "",
            "Left out of the refusal figures: unanswerable cases that a distractor page really "
            "answers (`bench/distractor_answers.toml`, checked by hand):",
            "",
            *left_out,
        ]
    return lines


def _render_backends(b: dict[str, Any]) -> list[str]:
    versions = ", ".join(f"{k} {v}" for k, v in b.get("versions", {}).items())
    out = [
        "## Embedding backends: torch and OpenVINO",
        "",
        "`bench/backends.py`, in a separate venv with `sentence-transformers[openvino]` "
        f"({versions}): the bundled model loaded with each backend (OpenVINO exports it "
        f"locally, offline), encoding the same {b['texts']:,} chunk texts (mean "
        f"{b['mean_chars']:.0f} characters, batch size {b['batch_size']}), {b['rounds']} rounds "
        "in rotating order; speed-up against torch's median; differences against torch's "
        "normalised embeddings. `openvino` is OpenVINO's default CPU precision (bf16 on this "
        "CPU, which has avx512_bf16); `openvino-f32` sets `INFERENCE_PRECISION_HINT=f32`.",
        "",
        "| backend | seconds per round | texts/s (median) | speed-up | max abs difference "
        "| min cosine to torch | load s |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for name, r in b["backends"].items():
        secs = ", ".join(f"{x:.0f}" for x in r["seconds"])
        out.append(
            f"| {name} | {secs} | {r['texts_per_s']:.1f} | {r['speedup']:.2f} | "
            f"{_f(r.get('max_abs_diff'), '.1e')} | {_f(r.get('min_cosine_to_torch'), '.6f')} | "
            f"{_f(b.get('load_s', {}).get(name), '.1f')} |"
        )
    verdicts = []
    for name, r in b["backends"].items():
        if name == "torch":
            continue
        close = r.get("max_abs_diff") is not None and r["max_abs_diff"] <= 1e-3
        verdicts.append(
            f"`{name}`: {r['speedup']:.2f}× torch's speed over {len(r['seconds'])} rounds, largest "
            f"difference {_f(r.get('max_abs_diff'), '.1e')} ("
            + ("within" if close else "**over**")
            + " 1e-3)"
        )
    out += [
        "",
        "Adopt only if faster and within 1e-3 of torch: " + "; ".join(verdicts) + ". The rounds "
        "vary by 2-4× on this shared machine, so a speed-up under ~1.3× is noise.",
    ]
    if b.get("note"):
        out += ["", str(b["note"])]
    return out


def _target_rows(results: dict[str, Any]) -> list[list[str]]:
    sizes: dict[str, Any] = results.get("sizes", {})
    rows: list[list[str]] = []
    tp = results.get("throughput")
    if tp:
        r1, r2 = tp["ratio_vs_chunks_only"], tp["ratio_vs_chunks_and_sentences"]
        t = TARGETS["index_vs_raw_encode"]
        rows.append(
            [
                f"indexing ≥ {t} × raw encode (chunk texts only)",
                f"{r1:.2f} ×",
                _verdict(r1 >= t),
            ]
        )
        rows.append(
            [
                f"indexing ≥ {t} × raw encode (chunks + sentences, the same embedding work)",
                f"{r2:.2f} ×",
                _verdict(r2 >= t),
            ]
        )
    big = _largest(sizes)
    short = big is not None and parse_size(big) < 50_000  # the targets are for ~100k chunks
    note = f" (at {big} only: ~100k not measured)" if short else ""
    for label, limit, name in (
        ("seed", TARGETS["ask_vs_bare_seed"], "seed"),
        (big, TARGETS["ask_vs_bare_100k"], big),
    ):
        e = sizes.get(label or "")
        if not label or not e or e.get("status") != "measured":
            rows.append(
                [f"ask p50 ≤ {limit} × bare query p50 at {name or '~100k'}", "not measured", "—"]
            )
            continue
        r = e["latency"]["ask_vs_bare_p50"]
        rows.append(
            [
                f"ask p50 ≤ {limit} × bare query p50 at {label} ({e['chunks']:,} chunks)",
                f"{r:.2f} ×",
                _verdict(r <= limit) + (note if label == big else ""),
            ]
        )
    seed = sizes.get("seed", {})
    if big and sizes.get(big, {}).get("status") == "measured" and "quality" in seed:
        h0, h1 = seed["quality"]["hit@5"], sizes[big]["quality"]["hit@5"]
        rows.append(
            [
                f"hit@5 unchanged with distractors ({big})",
                f"{h1:.3f} vs {h0:.3f} seed",
                _verdict(h1 >= h0) + note,
            ]
        )
        rss = sizes[big]["server"]["peak_rss_mb"]
        rows.append(
            [
                f"server peak RSS ≤ 1.5 GB at {big}",
                f"{_f(rss)} MB",
                _verdict(rss is not None and rss <= TARGETS["rss_100k_mb"]) + note,
            ]
        )
    rows += _quality_target_rows(sizes)
    for label, e in sizes.items():
        proj = _projection(sizes, label)
        if e.get("status") == "measured" or proj is None:
            continue
        ok = proj["peak_rss_mb"] <= TARGETS["rss_100k_mb"]
        rows.append(
            [
                f"server peak RSS ≤ 1.5 GB at {label} (**projected**, not measured)",
                f"~{proj['peak_rss_mb']:,.0f} MB (linear in chunks from {proj['from']})",
                "projected " + ("met" if ok else "**miss**"),
            ]
        )
    return rows


def _quality_target_rows(sizes: dict[str, Any]) -> list[list[str]]:
    rows: list[list[str]] = []
    for label, e in sizes.items():
        if label == "seed" or e.get("status") != "measured":
            continue
        for name, bound, higher in QUALITY_TARGETS:
            value = e["quality"].get(name)
            if value is None:
                continue
            ok = value >= bound if higher else value <= bound
            sign = "≥" if higher else "≤"
            rows.append([f"{name} {sign} {bound} at {label}", f"{value:.3f}", _verdict(ok)])
    return rows


def _projection(sizes: dict[str, Any], label: str) -> dict[str, Any] | None:
    """Index size and server peak RSS of an unmeasured size, linear in chunks between the
    smallest and the largest measured sizes (a projection, labelled as one)."""
    e = sizes.get(label, {})
    if e.get("status") == "measured" or "distractor_chunks" not in e:
        return None
    measured = sorted(
        (v for v in sizes.values() if v.get("status") == "measured"), key=lambda v: v["chunks"]
    )
    if len(measured) < 2 or measured[0]["chunks"] == measured[-1]["chunks"]:
        return None
    lo, hi = measured[0], measured[-1]
    chunks = int(e["distractor_chunks"]) + int(sizes.get("seed", lo)["chunks"])
    out: dict[str, Any] = {"chunks": chunks, "from": ""}
    points = {
        "index_mb": (float(lo["index_mb"]), float(hi["index_mb"])),
        "peak_rss_mb": (float(lo["server"]["peak_rss_mb"]), float(hi["server"]["peak_rss_mb"])),
    }
    for key, (y_lo, y_hi) in points.items():
        slope = (y_hi - y_lo) / (hi["chunks"] - lo["chunks"])
        out[key] = y_hi + slope * (chunks - hi["chunks"])
    labels = [k for k, v in sizes.items() if v is lo or v is hi]
    out["from"] = " and ".join(labels)
    return out


def _largest(sizes: dict[str, Any]) -> str | None:
    measured = [k for k, v in sizes.items() if k != "seed" and v.get("status") == "measured"]
    return max(measured, key=parse_size) if measured else None


# -- main ----------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
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
    backends_file = RESULTS / "backends.json"
    if backends_file.is_file():
        results["backends"] = json.loads(backends_file.read_text(encoding="utf-8"))
    _write(results)
    return 0


def main() -> int:
    if sys.argv[1:] == ["--render"]:
        return rerender()
    from assistant.cli import prepare_runtime

    prepare_runtime()
    logging.getLogger("bench").setLevel(logging.INFO)
    started = time.perf_counter()
    labels = [s.strip() for s in os.environ.get("BENCH_SIZES", "seed,10k,100k").split(",")]
    labels = [s for s in labels if s]
    for label in labels:
        if label != "seed":
            parse_size(label)  # fail early on a bad size
    n_questions = int(os.environ.get("BENCH_QUESTIONS", "100"))

    from assistant.embeddings import SentenceTransformerEmbedder
    from assistant.evaluation.cases import load_cases

    results_file = RESULTS_FILE
    results: dict[str, Any] = {}
    if results_file.is_file():
        with contextlib.suppress(OSError, ValueError):
            results = json.loads(results_file.read_text(encoding="utf-8"))
    results.setdefault("sizes", {})
    results["machine"] = machine_info()
    backends_file = RESULTS / "backends.json"
    if backends_file.is_file():
        results["backends"] = json.loads(backends_file.read_text(encoding="utf-8"))

    pages: list[Any] = []

    def pages_cache() -> list[Any]:
        if not pages:
            html = default_html_dir()
            if html is None:
                raise SystemExit("bench: python3-doc is not installed: run `make distractors`")
            pages.extend(load_pages(html, cache=DATA / "python-doc-pages.json"))
        return pages

    embedder = SentenceTransformerEmbedder(batch_size=BATCH_SIZE)
    cases = load_cases(CASES)
    questions = latency_questions(cases, n_questions)
    timings: dict[str, float] = {}
    chunks_per_s: float | None = None
    if labels != ["seed"] and os.environ.get("BENCH_THROUGHPUT", "1") != "0":
        with _step("throughput", timings):
            model = raw_model()
            results["throughput"] = bench_throughput(embedder, model, pages_cache)
            del model
        _write(results)  # kept even if a long size is stopped part-way
        chunks_per_s = float(results["throughput"]["build_chunks_per_s"])
    elif results.get("throughput"):
        chunks_per_s = float(results["throughput"]["build_chunks_per_s"])
    with _step("calibration", timings):
        calibration = out_of_sample_calibration(embedder)
    for label in labels:
        with _step(label, timings):
            previous = results["sizes"].get(label, {})
            entry = bench_size(
                label, embedder, pages_cache, cases, questions, chunks_per_s, calibration
            )
            _keep_first_build(entry, previous)
            results["sizes"][label] = entry
        _write(results)
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
        f"bench: wrote {results_file.relative_to(ROOT)} and {DOC.relative_to(ROOT)} "
        f"in {time.perf_counter() - started:.0f} s",
        file=sys.stderr,
    )
    return 0


def _keep_first_build(entry: dict[str, Any], previous: dict[str, Any]) -> None:
    """A rerun on a cached index embeds nothing: keep the figures of the build that did."""
    build = entry.get("build")
    if not build or build.get("embedded"):
        return
    first = previous.get("first_build") or previous.get("build")
    if first and first.get("embedded") and first.get("chunks") == build.get("chunks"):
        entry["first_build"] = first


def _write(results: dict[str, Any]) -> None:
    tmp = RESULTS_FILE.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(results, indent=2, ensure_ascii=False), encoding="utf-8")
    tmp.replace(RESULTS_FILE)
    DOC.write_text(render(results), encoding="utf-8")


if __name__ == "__main__":
    sys.exit(main())
