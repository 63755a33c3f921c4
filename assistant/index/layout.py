"""The index folder on disk: its layout, a build's metadata and the pointer to the serving build.

Layout under the index folder::

    CURRENT                  {"build": "<id>"}: the build that serves; replaced atomically
    .lock                    held while a build runs (one build at a time)
    builds/<id>/meta.json    embedding model, files and their hashes, counts
    builds/<id>/chroma/      the Chroma collection (embedded mode)
    builds/<id>/lexical/     the BM25 index over the same chunks
    builds/<id>/sentences/   the chunks' sentence vectors (see :mod:`assistant.index.sentences`)
    builds/<id>.partial/     a build in progress (its resume.json: what it was started for)
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import IndexNotBuiltError
from assistant.index.chroma import ChromaServer

__all__ = [
    "BUILD_CALIBRATION",
    "COLLECTION",
    "FORMAT",
    "READABLE_FORMATS",
    "UNITS_COLLECTION",
    "BuildMeta",
    "collection_names",
    "read_current",
    "write_atomic",
]

#: 2: sentence vectors in ``sentences/``; 1: in a second Chroma collection (still readable)
FORMAT = 2
READABLE_FORMATS = (1, 2)
#: a calibration fitted for this index's documents (``assistant calibrate --corpus``): carried
#: over from build to build of the same index folder
BUILD_CALIBRATION = "calibration.json"
COLLECTION = "guidance"
UNITS_COLLECTION = "guidance-units"  # format 1 only


@dataclass(frozen=True)
class BuildMeta:
    build_id: str
    embed_model: str
    dimension: int
    created: str
    chunk_count: int
    files: dict[str, str]  # path in the corpus → sha256 of its bytes
    skipped: list[dict[str, str]] = field(default_factory=list)
    format: int = FORMAT
    store: str = "embedded"  # or "server": the collections live on a Chroma server
    #: how the model ran ("torch", "openvino-bf16", ...): questions are embedded the same way
    embed_backend: str = "torch"

    @classmethod
    def read(cls, folder: Path) -> BuildMeta:
        raw = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return cls(**raw)


def collection_names(build_id: str, server: ChromaServer | None) -> tuple[str, str]:
    """The chunk collection of a build and the sentence collection builds of format 1 had:
    fixed names in the build's own embedded store; on a Chroma server, named after the build so
    builds can sit side by side."""
    if server is None:
        return COLLECTION, UNITS_COLLECTION
    return f"{COLLECTION}-{build_id}", f"{UNITS_COLLECTION}-{build_id}"


def read_current(index_dir: Path) -> str | None:
    try:
        raw = json.loads((index_dir / "CURRENT").read_text(encoding="utf-8"))
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as err:
        raise IndexNotBuiltError(
            f"the index in {index_dir} is damaged ({index_dir / 'CURRENT'}: {err}); "
            "rebuild it with `assistant index --rebuild`"
        ) from err
    build = raw.get("build") if isinstance(raw, dict) else None
    return str(build) if build else None


def write_atomic(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex}.tmp")
    with tmp.open("w", encoding="utf-8") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    dir_fd = os.open(path.parent, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)
