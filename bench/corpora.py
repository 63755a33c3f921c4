"""The corpora and indexes of the bench sizes: ``corpus/`` linked beside a size's distractors,
and the size's index built (or reused) under ``bench/data/``."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from bench.common import DATA, SEED_CORPUS
from bench.distractors import distractor_dir, parse_size, write_distractors

if TYPE_CHECKING:
    from assistant.embeddings import Embedder
    from assistant.schema import Chunk

__all__ = ["corpus_chunks", "corpus_for", "current_build", "ensure_index", "link_corpus"]

log = logging.getLogger("bench.run")


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


def current_build(index_dir: Path) -> Path:
    build = json.loads((index_dir / "CURRENT").read_text(encoding="utf-8"))["build"]
    return index_dir / "builds" / str(build)


def ensure_index(corpus: Path, index_dir: Path, embedder: Embedder) -> dict[str, Any]:
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
