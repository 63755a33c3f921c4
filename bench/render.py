"""``docs/benchmarks.md``, rendered from the results (``docs/benchmarks.json``)."""

from __future__ import annotations

import statistics
from typing import Any

from bench.common import WARMUP
from bench.targets import fmt, projection, target_rows

__all__ = ["render"]

REPRODUCE = [
    "## Reproduce",
    "",
    "```sh",
    "make bench                              # seed, 10k and 100k (BENCH_SIZES)",
    "BENCH_SIZES=seed,10k make bench         # skip the largest",
    "BENCH_BUILD_BUDGET_MIN=0 make bench     # build the 100k index however long it takes",
    "```",
    "",
]


def render(results: dict[str, Any]) -> str:
    """The whole of ``docs/benchmarks.md``."""
    sizes: dict[str, Any] = results.get("sizes", {})
    lines = [*_intro(results), *_targets_section(results)]
    if results.get("throughput"):
        lines += _throughput_section(results["throughput"])
    lines += _latency_section(sizes)
    lines += _quality_section(sizes)
    lines += _server_section(sizes)
    lines += _builds_section(sizes)
    skipped = _not_measured(sizes)
    if skipped:
        lines += ["", "## Not measured", "", *skipped]
    backends = results.get("backends")
    if backends:
        lines += ["", *_backends_section(backends)]
    lines += ["", *REPRODUCE]
    return "\n".join(lines)


def _measured(sizes: dict[str, Any]) -> dict[str, Any]:
    return {label: e for label, e in sizes.items() if e.get("status") == "measured"}


def _intro(results: dict[str, Any]) -> list[str]:
    return [
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


def _targets_section(results: dict[str, Any]) -> list[str]:
    lines = ["## Targets", "", "| target | figure | verdict |", "|---|---|---|"]
    return lines + ["| " + " | ".join(row) + " |" for row in target_rows(results)]


def _throughput_section(tp: dict[str, Any]) -> list[str]:
    b = tp["build"]
    return [
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
        f"(the build's batches) | {fmt(tp.get('chroma_write_s'))} | — | — |",
        "",
        f"Of the build's {b['seconds']:.1f} s, {b['embed_seconds']:.1f} s went to the embed "
        "stage (embedding and writing to Chroma); the rest is reading, chunking, copying and "
        f"BM25. Load average before/after: {tp['load_before']} / {tp['load_after']}.",
    ]


def _latency_section(sizes: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Latency (in process)",
        "",
        "`Assistant.search` and `Assistant.ask` against a bare Chroma query (embed the question "
        "with the same embedder, then `collection.query(n_results=5)` on the same build's "
        "`guidance` collection), each question run by all three in rotating order after "
        f"{WARMUP} warm-up questions. Where the default backend is not torch, a fourth runs in "
        "the rotation: the bare query with the question embedded on torch (issue 20's baseline).",
        "",
        "| size | chunks | sentences | questions | bare query p50 / p95 ms | search p50 / p95 ms "
        "| ask p50 / p95 ms | ask ÷ bare (p50) | search ÷ bare (p50) | bare query on torch p50 "
        "| ask ÷ bare on torch (p50) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for label, e in _measured(sizes).items():
        lat = e["latency"]
        lines.append(
            f"| {label} | {e['chunks']:,} | {e['sentences']:,} | {lat['ask']['n']} | "
            f"{fmt(lat['bare_query']['p50_ms'])} / {fmt(lat['bare_query']['p95_ms'])} | "
            f"{fmt(lat['search']['p50_ms'])} / {fmt(lat['search']['p95_ms'])} | "
            f"{fmt(lat['ask']['p50_ms'])} / {fmt(lat['ask']['p95_ms'])} | "
            f"{lat['ask_vs_bare_p50']:.2f} | {lat['search_vs_bare_p50']:.2f} | "
            f"{fmt(lat.get('bare_torch_query', {}).get('p50_ms'))} | "
            f"{fmt(lat.get('ask_vs_bare_torch_p50'), '.2f')} |"
        )
    return lines


def _not_measured(sizes: dict[str, Any]) -> list[str]:
    """Why each size not measured was not, and its projection where there is one."""
    lines: list[str] = []
    for label, e in sizes.items():
        if e.get("status") == "measured":
            continue
        lines.append(f"- **{label}**: {e.get('reason', 'not measured')}.")
        proj = projection(sizes, label)
        if proj is not None:
            lines.append(
                f"  Projected, linear in chunks from {proj['from']} (not measured): "
                f"{proj['chunks']:,} chunks, index ~{proj['index_mb']:,.0f} MB on disk, "
                f"server peak RSS ~{proj['peak_rss_mb']:,.0f} MB."
            )
    return lines


def _server_section(sizes: dict[str, Any]) -> list[str]:
    lines = [
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
    for label, e in _measured(sizes).items():
        s = e["server"]
        lines.append(
            f"| {label} | {fmt(e['index_mb'])} | {fmt(s['cold_start_s'], '.1f')} | "
            f"{fmt(s['rss_after_first_answer_mb'])} | {fmt(s['peak_rss_mb'])} | "
            f"{fmt(s['http_ask']['p50_ms'])} / {fmt(s['http_ask']['p95_ms'])} | "
            f"{fmt(s['http_search']['p50_ms'])} / {fmt(s['http_search']['p95_ms'])} |"
        )
    return lines


def _builds_section(sizes: dict[str, Any]) -> list[str]:
    lines = [
        "",
        "## Index builds",
        "",
        "| size | documents | chunks | this run: embedded, s | first build: embedded, s, "
        "chunks/s | measured |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for label, e in _measured(sizes).items():
        b = e["build"]
        first = e.get("first_build") or (b if b["embedded"] else None)
        first_cell = (
            f"{first['embedded']:,}, {first['seconds']:.1f} s, {fmt(first.get('chunks_per_s'))}"
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
    return lines


def _quality_section(sizes: dict[str, Any]) -> list[str]:
    measured = _measured(sizes)
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
            f"{q['key_fact_accuracy']:.3f} | {fmt(q.get('refusal_precision'), '.3f')} | "
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


def _backends_section(b: dict[str, Any]) -> list[str]:
    if "variants" not in b:  # the comparison of before issue 20, kept until measured again
        return []
    versions = ", ".join(f"{k} {v}" for k, v in b.get("versions", {}).items())
    out = [
        "## Embedding backends: torch and OpenVINO, judged by the answers",
        "",
        f"`bench/backends.py` ({versions}; the CPU offers OpenVINO "
        f"{', '.join(b.get('cpu_precisions', [])) or 'nothing'}). **Build**: `build_index` of "
        f"`corpus/` plus distractors, {b['chunks']:,} chunks and {b['sentences']:,} sentences "
        f"(mean chunk {b['mean_chunk_chars']:.0f} characters, batch size {b['batch_size']}) into "
        "a fresh index; torch builds first and last. **Query**: one question embedded, "
        f"{b['questions']} questions, the variants in rotating order. **Cosine**: each variant's "
        "chunk vectors against torch's. **Answers**: every evaluation set run with the variant's "
        "embedder on indexes of its own; the most cases any figure (hit@1, hit@5, key facts, "
        "unanswerable declined, answerable declined) of any set is from torch's (net). int8 is "
        "measured without the load-time probe, which refuses it in the product.",
        "",
        "| variant | build s | build texts/s | build speed-up | query p50 / p95 ms "
        "| query speed-up (p50) | mean / min cosine to torch | most cases apart | passes |",
        "|---|---|---:|---:|---:|---:|---:|---:|---|",
    ]
    for name, r in b["variants"].items():
        builds = ", ".join(f"{x:.0f}" for x in r["build_s"])
        passes = r.get("passes")
        out.append(
            f"| {name} | {builds} | {r['build_texts_per_s']:.1f} | {r['build_speedup']:.2f}× | "
            f"{fmt(r['query']['p50_ms'], '.2f')} / {fmt(r['query']['p95_ms'], '.2f')} | "
            f"{r['query_speedup_p50']:.2f}× | {r['mean_cosine']:.6f} / {r['min_cosine']:.6f} | "
            f"{fmt(r.get('most_cases_apart'), 'd')} | "
            + ("—" if passes is None else ("yes" if passes else "**no**"))
            + " |"
        )
    out += ["", *_backend_sets(b)]
    out += [
        "",
        f"Fastest variant that passes: **{b.get('fastest_passing') or 'none'}**; "
        f"`ASSISTANT_EMBED_BACKEND=auto` took **{b.get('auto_takes')}** on this machine.",
    ]
    return out


def _backend_sets(b: dict[str, Any]) -> list[str]:
    """Each set's figures under each variant."""
    variants = {n: r for n, r in b["variants"].items() if r.get("sets")}
    if not variants:
        return []
    out = [
        "| set | variant | hit@1 | hit@5 | key facts | refusal precision | refusal recall "
        "| false refusals |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    names = ("hit@1", "hit@5", "key_fact_accuracy", "refusal_precision", "refusal_recall",
             "false_refusal_rate")  # fmt: skip
    for set_name in next(iter(variants.values()))["sets"]:
        for name, r in variants.items():
            m = r["sets"][set_name]
            cells = " | ".join(fmt(m.get(k), ".3f") for k in names)
            out.append(f"| {set_name} | {name} | {cells} |")
    return out
