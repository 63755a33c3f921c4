"""Building an index: aside from the serving build, then switched to atomically.

The folder's layout is in :mod:`assistant.index.layout`. A build starts from a copy of the serving one, re-embeds only chunks whose text is new, deletes
chunks that are gone, and becomes visible only when ``CURRENT`` is replaced. An error or a kill at
any point before that leaves the previous build serving.

A build that was interrupted (Ctrl-C, ``kill -9``, a power cut) leaves its ``.partial`` behind;
the next build resumes it: every chunk already in it is kept, only the rest is embedded. Chunks
are written after their sentences, so a chunk that is there is whole. A ``.partial`` without
``resume.json`` (killed while copying the previous build), started for another model or store
or by the other kind of build (``--rebuild`` or not), or that cannot be opened, is deleted
instead. A build that fails with an error deletes its own.

Indexes of format 1 kept the sentence vectors in a second Chroma collection. They still serve;
the next build copies their vectors into ``sentences/`` without re-embedding anything.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.chunking import chunk_documents, split_units
from assistant.embeddings import Embedder
from assistant.errors import (
    IndexBuildError,
    IndexModelMismatchError,
    IndexNotBuiltError,
)
from assistant.ingest import corpus_files, ingest
from assistant.index.layout import (
    BUILD_CALIBRATION,
    COLLECTION,
    FORMAT,
    READABLE_FORMATS,
    BuildMeta,
    collection_names,
    read_current,
    write_atomic,
)
from assistant.index.lexical import LexicalIndex
from assistant.schema import Chunk, SkippedFile
from assistant.settings import DEFAULT_SEARCH_EF
from assistant.index.chroma import (
    STORE_IO_ERRORS,
    ChromaServer,
    ChromaStore,
    ClientAPI,
    UnitStore,
    copy_collection,
    delete_collections,
    heartbeat,
    persistent_client,
    release_client,
    server_client,
)
from assistant.index.sentences import FOLDER as SENTENCES
from assistant.index.sentences import SentenceSource, SentenceVectors, SentenceWriter

__all__ = ["WRITE_BATCH", "BuildReport", "Progress", "build_index", "check_index_dir"]

log = logging.getLogger(__name__)

RESUME_FILE = "resume.json"
#: chunks embedded and written together; the next batch is embedded while one is written
WRITE_BATCH = 512
_KEEP_OLD_BUILDS = 1  # builds kept besides the serving one, for readers still using them
#: failures writing a build (a full disk, a read-only folder): reported, the previous one serves
_WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, *STORE_IO_ERRORS)

#: progress callback: (stage, done, total); stages are "read" (files), "copy" (chunks whose
#: vectors are carried over from the previous build: its passages, when it is of format 1, then
#: its sentence vectors) and "embed" (chunks)
Progress = Callable[[str, int, int], None]


@dataclass(frozen=True)
class BuildReport:
    build_id: str
    documents: int
    chunks: int
    embedded: int  # chunks embedded in this build
    reused: int  # chunks kept from the previous build without re-embedding
    removed: int  # chunks of the previous build that are gone
    skipped: list[SkippedFile]
    seconds: float
    changed: bool  # False when the corpus was exactly as the serving build had it
    resumed: bool = False  # an interrupted build was carried on (its chunks count as reused)


def _drop_server_collections(server: ChromaServer | None, build_ids: Sequence[str]) -> None:
    """Delete the server collections of builds that failed, were killed, or were pruned."""
    if server is None or not build_ids:
        return
    try:
        client = server_client(server)
        delete_collections(client, [n for b in build_ids for n in collection_names(b, server)])
    except Exception as err:  # cleanup only: the next build tries again
        log.warning("could not delete old collections on the Chroma server: %s", err)


@contextlib.contextmanager
def _build_lock(index_dir: Path) -> Iterator[None]:
    with (index_dir / ".lock").open("a") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise IndexBuildError(
                f"another build of {index_dir} is running; wait for it to finish"
            ) from None
        try:
            yield
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def check_index_dir(index_dir: Path) -> None:
    """:class:`IndexBuildError` unless a build could be written into ``index_dir``."""
    _prepare_index_dir(index_dir)


def _prepare_index_dir(index_dir: Path) -> Path:
    try:
        (index_dir / "builds").mkdir(parents=True, exist_ok=True)
        probe = index_dir / f".write-test-{uuid.uuid4().hex}"
        probe.write_text("ok")
        probe.unlink()
    except OSError as err:
        raise IndexBuildError(
            f"cannot write to the index folder {index_dir}: {err.strerror}"
        ) from err
    return index_dir / "builds"


def build_index(
    corpus_dir: Path,
    index_dir: Path,
    embedder: Embedder,
    *,
    rebuild: bool = False,
    max_file_bytes: int = 20_000_000,
    progress: Progress | None = None,
    server: ChromaServer | None = None,
    batch: int = WRITE_BATCH,
    search_ef: int = DEFAULT_SEARCH_EF,
) -> BuildReport:
    """Index ``corpus_dir`` into ``index_dir`` and make it the serving build (its collections
    on ``server`` when given, otherwise embedded in the build folder).

    Raises :class:`IndexBuildError` (the previous build keeps serving) or
    :class:`~assistant.errors.CorpusError` when the corpus folder cannot be read at all.
    """
    started = time.perf_counter()
    builds = _prepare_index_dir(index_dir)
    with _build_lock(index_dir):
        resume = _take_resumable(builds, embedder, server, rebuild)
        try:
            previous = read_current(index_dir)
        except IndexNotBuiltError as err:  # a damaged pointer: build afresh and replace it
            log.warning("%s", err)
            previous = None
        prev_meta = _usable_previous(builds, previous, embedder, rebuild, server)

        report = ingest(
            corpus_dir,
            max_file_bytes=max_file_bytes,
            progress=_file_progress(progress, corpus_dir) if progress else None,
        )
        if not report.documents:
            raise IndexBuildError(
                f"no readable documents in {corpus_dir}"
                + (f" ({len(report.skipped)} skipped)" if report.skipped else "")
                + "; the previous index, if any, keeps serving"
            )
        chunks = chunk_documents(report.documents)
        files = {d.info.path: d.sha256 for d in report.documents}

        build_id = resume.name.removesuffix(".partial") if resume else _new_build_id()
        partial = builds / f"{build_id}.partial"
        plan = _Plan(build_id, embedder, builds, prev_meta, server, rebuild, batch, progress,
                     search_ef)  # fmt: skip
        try:
            try:
                stats = _write_build(partial, chunks, plan, resume=resume is not None)
            except _ResumeError as err:
                log.warning("cannot resume the interrupted build %s (%s): starting afresh",
                            build_id, err)  # fmt: skip
                _discard_partial(partial, server)
                # a new id: chromadb keeps the failed client of the old path in its cache
                build_id = _new_build_id()
                partial = builds / f"{build_id}.partial"
                plan = dataclasses.replace(plan, build_id=build_id)
                stats = _write_build(partial, chunks, plan, resume=False)
            meta = BuildMeta(
                build_id=build_id,
                embed_model=embedder.model_name,
                dimension=embedder.dimension,
                created=datetime.now(UTC).isoformat(timespec="seconds"),
                chunk_count=len(chunks),
                files=files,
                skipped=[asdict(s) for s in report.skipped],
                store="embedded" if server is None else "server",
            )
            write_atomic(partial / "meta.json", json.dumps(asdict(meta), indent=2))
            if previous and (builds / previous / BUILD_CALIBRATION).is_file():
                shutil.copyfile(builds / previous / BUILD_CALIBRATION, partial / BUILD_CALIBRATION)
            final = builds / build_id
            os.replace(partial, final)
            write_atomic(index_dir / "CURRENT", json.dumps({"build": build_id}))
        except _WRITE_ERRORS as err:
            _discard_partial(partial, server)
            raise IndexBuildError(
                f"building the index failed ({_reason(err)}); the previous index keeps serving"
            ) from err
        except KeyboardInterrupt:
            if (partial / RESUME_FILE).is_file():
                log.warning("interrupted: what was embedded is kept in %s; the next build "
                            "resumes from there", partial)  # fmt: skip
            else:
                _discard_partial(partial, server)
            raise
        except BaseException:
            _discard_partial(partial, server)
            raise
        _prune(builds, keep={build_id, *([previous] if previous else [])}, server=server)
    embedded, reused, removed, resumed = stats
    return BuildReport(
        build_id=build_id,
        documents=len(report.documents),
        chunks=len(chunks),
        embedded=embedded,
        reused=reused,
        removed=removed,
        skipped=report.skipped,
        seconds=time.perf_counter() - started,
        changed=prev_meta is None or embedded > 0 or removed > 0 or prev_meta.files != files,
        resumed=resumed,
    )


def _new_build_id() -> str:
    return datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]


def _usable_previous(
    builds: Path,
    previous: str | None,
    embedder: Embedder,
    rebuild: bool,
    server: ChromaServer | None,
) -> BuildMeta | None:
    if rebuild or previous is None or not (builds / previous / "meta.json").is_file():
        return None
    try:
        meta = BuildMeta.read(builds / previous)
    except (OSError, ValueError, TypeError) as err:
        log.warning("previous build %s unreadable (%s): building from scratch", previous, err)
        return None
    if meta.store != ("embedded" if server is None else "server"):
        log.info("the store changed (%s before): re-embedding everything", meta.store)
        return None
    if meta.embed_model != embedder.model_name:
        log.info("embedding model changed (%s → %s): re-embedding everything",
                 meta.embed_model, embedder.model_name)  # fmt: skip
        return None
    if meta.format not in READABLE_FORMATS:
        log.info("index format %s cannot be read: re-embedding everything", meta.format)
        return None
    return meta


def _file_progress(progress: Progress, corpus_dir: Path) -> Callable[[str], None]:
    total = len(corpus_files(corpus_dir))
    done = 0

    def on_file(_: str) -> None:
        nonlocal done
        done += 1
        progress("read", done, total)

    return on_file


@dataclass(frozen=True)
class _Plan:
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


def _resume_record(
    embedder: Embedder, server: ChromaServer | None, rebuild: bool
) -> dict[str, Any]:
    """What ``resume.json`` says of a build: a ``.partial`` is resumed only by a build that would
    write the same thing (same model, format and store), of the same kind: a ``--rebuild``
    carries on a rebuild; an update carries on an update (a rebuild's partial has less in it
    than the serving build an update starts from)."""
    return {
        "embed_model": embedder.model_name,
        "format": FORMAT,
        "store": "embedded" if server is None else f"server {server}",
        "rebuild": rebuild,
    }


def _take_resumable(
    builds: Path, embedder: Embedder, server: ChromaServer | None, rebuild: bool
) -> Path | None:
    """The newest interrupted build this one can carry on; every other ``.partial`` is deleted."""
    wanted = _resume_record(embedder, server, rebuild)
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
            _discard_partial(partial, server)
    return chosen


def _discard_partial(partial: Path, server: ChromaServer | None) -> None:
    shutil.rmtree(partial, ignore_errors=True)
    _drop_server_collections(server, [partial.name.removesuffix(".partial")])


def _open_resumed(folder: Path, names: tuple[str, str], plan: _Plan) -> ClientAPI:
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


def _open_fresh(folder: Path, names: tuple[str, str], plan: _Plan) -> ClientAPI:
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
            progress = _stage(plan.progress, "copy", prev.chunk_count)
            with _previous_client(plan) as old:
                copy_collection(old, COLLECTION, COLLECTION, into=client, progress=progress)
    else:
        client = server_client(server)
        if prev is not None:  # the chunks only: a format-1 build's sentences are read in place
            copy_collection(client, collection_names(prev.build_id, server)[0], names[0])
    record = _resume_record(plan.embedder, server, plan.rebuild)
    write_atomic(folder / RESUME_FILE, json.dumps(record))
    return client


def _write_build(
    folder: Path, chunks: Sequence[Chunk], plan: _Plan, *, resume: bool
) -> tuple[int, int, int, bool]:
    """Fill ``folder`` (and, in server mode, the build's collection on the server) with the
    Chroma collection, sentence vectors and BM25 index of ``chunks``, starting from an
    interrupted build of the same id when ``resume``, otherwise from a copy of the previous
    build."""
    names = collection_names(plan.build_id, plan.server)
    if resume:
        try:
            client = _open_resumed(folder, names, plan)
        except Exception as err:  # half-written by a kill
            raise _ResumeError(str(err)) from err
        log.info("resuming the interrupted build %s", plan.build_id)
    else:
        client = _open_fresh(folder, names, plan)
    try:
        with SentenceWriter(folder / SENTENCES, plan.embedder.dimension) as sentences:
            new, kept, gone = _fill(sentences, client, names[0], chunks, plan)
    finally:
        release_client(client)
    lexical = LexicalIndex.build([c.chunk_id for c in chunks], [c.embed_text for c in chunks])
    lexical.save(folder / "lexical")
    return len(new), len(kept), len(gone), resume


def _fill(
    sentences: SentenceWriter, client: ClientAPI, name: str, chunks: Sequence[Chunk], plan: _Plan
) -> tuple[list[Chunk], list[Chunk], list[str]]:
    """Bring the build's collection and sentence vectors to exactly ``chunks``; returns the
    chunks embedded, the chunks kept, and the ids of those deleted."""
    store = ChromaStore(client, name)
    store.set_search_ef(plan.search_ef)
    wanted = {c.chunk_id: c for c in chunks}
    existing = store.ids()
    gone = sorted(existing - wanted.keys())
    store.delete(gone)
    # chunks kept without their sentence vectors yet: copied from the previous build, or
    # (where it lacks them) embedded again like new ones
    unsure = [wanted[cid] for cid in sorted(existing & wanted.keys())
              if not sentences.has(cid)]  # fmt: skip
    if unsure:
        lacking = _copy_sentences(sentences, unsure, plan)
        store.delete(lacking)
        existing -= set(lacking)
    kept = [c for cid, c in wanted.items() if cid in existing]
    _refresh_metadata(store, kept)
    new = [c for cid, c in wanted.items() if cid not in existing]
    _embed_into(store, sentences, new, plan)
    sentences.keep_only(set(wanted))
    return new, kept, gone


class _ResumeError(Exception):
    """The interrupted build cannot be opened: it is deleted and the build starts afresh."""


def _refresh_metadata(store: ChromaStore, kept: Sequence[Chunk]) -> None:
    """Same text, new surroundings (position, manifest fields): update without re-embedding."""
    by_id = {c.chunk_id: c for c in kept}
    stale = [
        by_id[cid]
        for cid, meta in store.metadatas()
        if cid in by_id and meta != by_id[cid].metadata()
    ]
    if stale:
        store.update_metadata(stale)


def _copy_sentences(sentences: SentenceWriter, chunks: Sequence[Chunk], plan: _Plan) -> list[str]:
    """Copy the sentence vectors of ``chunks`` from the previous build (its ``sentences/``, or
    its Chroma collection if it is of format 1); returns the ids of chunks it lacks them for."""
    prev = plan.prev_meta
    pairs = [(c.chunk_id, len(split_units(c.text))) for c in chunks]
    if prev is None:
        return [cid for cid, _ in pairs]
    progress = _stage(plan.progress, "copy", len(pairs))
    if prev.format >= 2:
        source = SentenceVectors(plan.builds / prev.build_id / SENTENCES, prev.dimension)
        return sentences.copy_from(source, pairs, progress=progress)
    log.info("moving the sentence vectors of build %s out of Chroma", prev.build_id)
    with _previous_client(plan) as old:
        name = collection_names(prev.build_id, plan.server)[1]
        return sentences.copy_from(UnitStore(old, name, frozen=True), pairs, progress=progress)


def _stage(progress: Progress | None, stage: str, total: int) -> Callable[[int], None] | None:
    """``progress`` for one stage of known size, as a callback taking how many are done."""
    if progress is None:
        return None
    report = progress
    report(stage, 0, total)
    return lambda done: report(stage, done, total)


@contextlib.contextmanager
def _previous_client(plan: _Plan) -> Iterator[ClientAPI]:
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


def _embed_into(
    store: ChromaStore, sentences: SentenceWriter, chunks: Sequence[Chunk], plan: _Plan
) -> None:
    """Embed chunks (and their sentences) batch by batch, writing each batch while the next one
    is embedded; at most one batch waits in memory. A batch's sentences are written before its
    chunks, so a chunk in the store always has its sentences (what resuming relies on)."""
    total = len(chunks)
    progress = plan.progress
    if progress:
        progress("embed", 0, total)

    def write(part: Sequence[Chunk], counts: list[tuple[str, int]], vectors: Any) -> int:
        sentences.add(counts, vectors[len(part) :])
        store.add(part, vectors[: len(part)])
        return len(part)

    done = 0
    pending: Future[int] | None = None
    with ThreadPoolExecutor(max_workers=1, thread_name_prefix="index-write") as writer:
        try:
            for start in range(0, total, plan.batch):
                part = chunks[start : start + plan.batch]
                units = [[text for text, _ in split_units(c.text)] for c in part]
                counts = [(c.chunk_id, len(u)) for c, u in zip(part, units, strict=True)]
                vectors = plan.embedder.encode(
                    [c.embed_text for c in part] + [t for u in units for t in u]
                )
                if pending is not None:
                    done += pending.result()
                    if progress:
                        progress("embed", done, total)
                pending = writer.submit(write, part, counts, vectors)
            if pending is not None:
                done += pending.result()
                pending = None
                if progress:
                    progress("embed", done, total)
        finally:
            if pending is not None:  # an error or an interrupt: let the write in flight finish
                with contextlib.suppress(Exception):
                    pending.result()


def _reason(err: Exception) -> str:
    """Why a write failed, in one line (copytree's error lists every file: keep the first)."""
    problems = err.args[0] if isinstance(err, shutil.Error) and err.args else None
    if isinstance(problems, list) and problems and isinstance(problems[0], tuple):
        return str(problems[0][-1])
    return str(err)


def _prune(builds: Path, keep: set[str], server: ChromaServer | None = None) -> None:
    finished = sorted(p for p in builds.iterdir() if p.is_dir() and not p.name.endswith(".partial"))
    old = [p for p in finished if p.name not in keep]
    _drop_server_collections(server, [p.name for p in old])
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


# -- reading -------------------------------------------------------------------------------------
