"""Indexes as older versions wrote them, made from a current build (for upgrade tests)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from assistant.chunking import unit_id
from assistant.index.chroma import ClientAPI
from assistant.index.sentences import FOLDER, SentenceVectors


def to_format_1(build: Path, client: ClientAPI, units_collection: str) -> int:
    """Turn a finished build into one of format 1, whose sentence vectors lived in a second
    Chroma collection (``units_collection`` on ``client``); returns how many were moved."""
    meta = json.loads((build / "meta.json").read_text(encoding="utf-8"))
    vectors = SentenceVectors(build / FOLDER, int(meta["dimension"]))
    collection = client.get_or_create_collection(
        units_collection, metadata={"hnsw:space": "cosine"}
    )
    moved = 0
    for chunk_id in sorted(vectors.chunks()):
        rows = vectors.of_chunk(chunk_id)
        assert rows is not None
        if not len(rows):
            continue
        collection.add(
            ids=[unit_id(chunk_id, j) for j in range(len(rows))],
            embeddings=rows,
            documents=[""] * len(rows),
            metadatas=[{"chunk_id": chunk_id}] * len(rows),
        )
        moved += len(rows)
    shutil.rmtree(build / FOLDER)
    meta["format"] = 1
    (build / "meta.json").write_text(json.dumps(meta), encoding="utf-8")
    return moved
