"""Resuming an interrupted build, and what a build works from (:class:`Plan`).

A build writes into ``builds/<id>.partial`` and marks it resumable (``resume.json``) once the copy
of the previous build is whole. The next build carries on the newest ``.partial`` written for the
same model, format and store by the same kind of build (:func:`take_resumable`); every other one
is deleted, with its collections on a Chroma server (:func:`discard_partial`). A ``.partial``
that cannot be opened raises :class:`ResumeError`: the caller deletes it and starts afresh.
"""

from __future__ import annotations

import contextlib
import json
import logging
import shutil
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from assistant.embeddings import Embedder
from assistant.index.chroma import (
    ChromaServer,
    ChromaStore,
    ClientAPI,
    copy_collection,
    delete_collections,
    persistent_client,
    release_client,
    server_client,
)
from assistant.index.layout import COLLECTION, FORMAT, BuildMeta, collection_names, write_atomic
from assistant.settings import DEFAULT_SEARCH_EF

__all__ = [
    "RESUME_FILE",
    "Plan",
    "Progress",
    "ResumeError",
    "discard_partial",
    "drop_server_collections",
    "open_fresh",
    "open_resumed",
    "previous_client",
    "resume_record",
    "stage_progress",
    "take_resumable",
]

log = logging.getLogger(__name__)

RESUME_FILE = "resume.json"

#: progress callback: (stage, done, total); stages are "read" (files), "copy" (chunks whose
#: vectors are carried over from the previous build: its passages, when it is of format 1, then
#: its sentence vectors) and "embed" (chunks)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class Plan:
    """What a build works from, besides its folder and chunks."""

    build_id: str
    embedder: Embedder
    builds: Path
    prev_meta: BuildMeta | None
    server: ChromaServer | None
    rebuild: bool
    batch: int
    progress: Progress | None
    search_ef: int = DEFAULT_SEARCH_EF


def resume_record(embedder: Embedder, server: ChromaServer | None, rebuild: bool) -> dict[str, Any]:
    """What ``resume.json`` says of a build: a ``.partial`` is resumed only by a build that would
    write the same thing (same model, format and store), of the same kind: a ``--rebuild``
    carries on a rebuild; an update carries on an update (a rebuild's partial has less in it
    than the serving build an update starts from)."""
    return {
        "embed_model": embedder.model_name,
        "embed_backend": embedder.backend,
        "format": FORMAT,
        "store": "embedded" if server is None else f"server {server}",
        "rebuild": rebuild,
    }


def take_resumable(
    builds: Path, embedder: Embedder, server: ChromaServer | None, rebuild: bool
) -> Path | None:
    """The newest interrupted build this one can carry on; every other ``.partial`` is deleted."""
    wanted = resume_record(embedder, server, rebuild)
    chosen: Path | None = None
    for partial in sorted(builds.glob("*.partial"), reverse=True):
        try:
            record = json.loads((partial / RESUME_FILE).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            record = None
        fits = isinstance(record, dict) and all(record.get(k) == v for k, v in wanted.items())
        if chosen is None and fits:
            chosen = partial
        else:
            discard_partial(partial, server)
    return chosen


def discard_partial(partial: Path, server: ChromaServer | None) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    drop_server_collections(server, [partial.name.removesuffix(".partial")])


def open_resumed(folder: Path, names: tuple[str, str], plan: Plan) -> ClientAPI:
    """The interrupted build's store, checked to open and answer; raises if it cannot."""
    server = plan.server
    client = persistent_client(folder / "chroma") if server is None else server_client(server)
    probe = [1.0] + [0.0] * (plan.embedder.dimension - 1)
    try:
        store = ChromaStore(client, names[0])
        if store.count():
            store.query(probe, 1)
    except BaseException:
        release_client(client)
        raise
    return client


def open_fresh(folder: Path, names: tuple[str, str], plan: Plan) -> ClientAPI:
    """A new build's store: a copy of the previous build's, or empty; marked resumable once
    the copy is whole."""
    folder.mkdir(parents=True)
    prev, server = plan.prev_meta, plan.server
    if server is None:
        if prev is not None and prev.format >= 2:
            shutil.copytree(plan.builds / prev.build_id / "chroma", folder / "chroma")
        client = persistent_client(folder / "chroma")
        if prev is not None and prev.format < 2:
            # the chunks only: a copied sentence collection, once deleted, would leave its
            # files behind (chromadb does not remove a deleted collection's folder)
            progress = stage_progress(plan.progress, "copy", prev.chunk_count)
            with previous_client(plan) as old:
                copy_collection(old, COLLECTION, COLLECTION, into=client, progress=progress)
    else:
        client = server_client(server)
        if prev is not None:  # the chunks only: a format-1 build's sentences are read in place
            copy_collection(client, collection_names(prev.build_id, server)[0], names[0])
    record = resume_record(plan.embedder, server, plan.rebuild)
    write_atomic(folder / RESUME_FILE, json.dumps(record))
    return client


class ResumeError(Exception):
    """The interrupted build cannot be opened: it is deleted and the build starts afresh."""


def drop_server_collections(server: ChromaServer | None, build_ids: Sequence[str]) -> None:
    """Delete the server collections of builds that failed, were killed, or were pruned."""
    if server is None or not build_ids:
        return
    try:
        client = server_client(server)
        delete_collections(client, [n for b in build_ids for n in collection_names(b, server)])
    except Exception as err:  # cleanup only: the next build tries again
        log.warning("could not delete old collections on the Chroma server: %s", err)


def stage_progress(
    progress: Progress | None, stage: str, total: int
) -> Callable[[int], None] | None:
    """``progress`` for one stage of known size, as a callback taking how many are done."""
    if progress is None:
        return None
    report = progress
    report(stage, 0, total)
    return lambda done: report(stage, done, total)


@contextlib.contextmanager
def previous_client(plan: Plan) -> Iterator[ClientAPI]:
    """A client of the previous build's store (read only: its own folder, or the server)."""
    assert plan.prev_meta is not None
    if plan.server is not None:
        client = server_client(plan.server)
    else:
        client = persistent_client(plan.builds / plan.prev_meta.build_id / "chroma")
    try:
        yield client
    finally:
        release_client(client)
