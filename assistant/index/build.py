"""Building an index: aside from the serving build, then switched to atomically.

The folder's layout is in :mod:`assistant.index.layout`. A build starts from a copy of the
serving one, re-embeds only chunks whose text is new, deletes chunks that are gone, and becomes
visible only when ``CURRENT`` is replaced. An error or a kill at any point before that leaves the
previous build serving. Resuming an interrupted build is in :mod:`assistant.index.resume`.

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
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.chunking import chunk_documents, split_units
from assistant.embeddings import Embedder
from assistant.errors import (
    IndexBuildError,
    IndexNotBuiltError,
)
from assistant.index.chroma import (
    STORE_IO_ERRORS,
    ChromaServer,
    ChromaStore,
    ClientAPI,
    UnitStore,
    release_client,
)
from assistant.index.layout import (
    BUILD_CALIBRATION,
    READABLE_FORMATS,
    BuildMeta,
    collection_names,
    read_current,
    write_atomic,
)
from assistant.index.lexical import LexicalIndex
from assistant.index.resume import (
    RESUME_FILE,
    Plan,
    Progress,
    ResumeError,
    discard_partial,
    drop_server_collections,
    open_fresh,
    open_resumed,
    previous_client,
    stage_progress,
    take_resumable,
)
from assistant.index.sentences import FOLDER as SENTENCES
from assistant.index.sentences import SentenceVectors, SentenceWriter
from assistant.ingest import corpus_files, ingest
from assistant.schema import Chunk, IngestReport, SkippedFile
from assistant.settings import DEFAULT_SEARCH_EF

__all__ = ["WRITE_BATCH", "BuildReport", "Progress", "build_index", "check_index_dir"]

log = logging.getLogger(__name__)

#: chunks embedded and written together; the next batch is embedded while one is written
WRITE_BATCH = 512
_KEEP_OLD_BUILDS = 1  # builds kept besides the serving one, for readers still using them
#: failures writing a build (a full disk, a read-only folder): reported, the previous one serves
_WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, *STORE_IO_ERRORS)


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
        resume = take_resumable(builds, embedder, server, rebuild)
        previous = _serving_build(index_dir)
        prev_meta = _usable_previous(builds, previous, embedder, rebuild, server)
        report, chunks = _read_corpus(corpus_dir, max_file_bytes, progress)
        build_id = resume.name.removesuffix(".partial") if resume else _new_build_id()
        plan = Plan(build_id, embedder, builds, prev_meta, server, rebuild, batch, progress,
                    search_ef)  # fmt: skip
        build_id, stats = _build_and_switch(
            index_dir, plan, chunks, report, previous, resume=resume is not None
        )
        _prune(builds, keep={build_id, *([previous] if previous else [])}, server=server)
    embedded, reused, removed, resumed = stats
    files = _file_hashes(report)
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


def _serving_build(index_dir: Path) -> str | None:
    """The id of the serving build; None if there is none (or its pointer is damaged: the build
    is made afresh and replaces it)."""
    try:
        return read_current(index_dir)
    except IndexNotBuiltError as err:
        log.warning("%s", err)
        return None


def _read_corpus(
    corpus_dir: Path, max_file_bytes: int, progress: Progress | None
) -> tuple[IngestReport, list[Chunk]]:
    """The corpus read and chunked; :class:`IndexBuildError` if no document can be read."""
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
    return report, chunk_documents(report.documents)


def _file_hashes(report: IngestReport) -> dict[str, str]:
    return {d.info.path: d.sha256 for d in report.documents}


def _build_and_switch(
    index_dir: Path,
    plan: Plan,
    chunks: Sequence[Chunk],
    report: IngestReport,
    previous: str | None,
    *,
    resume: bool,
) -> tuple[str, tuple[int, int, int, bool]]:
    """Write the build aside (resuming ``plan.build_id``'s ``.partial`` when ``resume``, or
    afresh under a new id if that cannot be opened), then switch to it; returns the id it got
    and its counts. On an error its ``.partial`` is deleted; on an interrupt it is kept if it
    can be resumed."""
    partial = plan.builds / f"{plan.build_id}.partial"
    try:
        try:
            stats = _write_build(partial, chunks, plan, resume=resume)
        except ResumeError as err:
            log.warning("cannot resume the interrupted build %s (%s): starting afresh",
                        plan.build_id, err)  # fmt: skip
            discard_partial(partial, plan.server)
            # a new id: chromadb keeps the failed client of the old path in its cache
            plan = dataclasses.replace(plan, build_id=_new_build_id())
            partial = plan.builds / f"{plan.build_id}.partial"
            stats = _write_build(partial, chunks, plan, resume=False)
        _switch_to(index_dir, partial, _build_meta(plan, len(chunks), report), previous)
    except _WRITE_ERRORS as err:
        discard_partial(partial, plan.server)
        raise IndexBuildError(
            f"building the index failed ({_reason(err)}); the previous index keeps serving"
        ) from err
    except KeyboardInterrupt:
        if (partial / RESUME_FILE).is_file():
            log.warning("interrupted: what was embedded is kept in %s; the next build "
                        "resumes from there", partial)  # fmt: skip
        else:
            discard_partial(partial, plan.server)
        raise
    except BaseException:
        discard_partial(partial, plan.server)
        raise
    return plan.build_id, stats


def _build_meta(plan: Plan, chunk_count: int, report: IngestReport) -> BuildMeta:
    return BuildMeta(
        build_id=plan.build_id,
        embed_model=plan.embedder.model_name,
        embed_backend=plan.embedder.backend,
        dimension=plan.embedder.dimension,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        chunk_count=chunk_count,
        files=_file_hashes(report),
        skipped=[asdict(s) for s in report.skipped],
        store="embedded" if plan.server is None else "server",
    )


def _switch_to(index_dir: Path, partial: Path, meta: BuildMeta, previous: str | None) -> None:
    """Make the written build the serving one: its ``meta.json`` (with the serving build's
    calibration), the folder renamed to its id, then ``CURRENT`` replaced."""
    builds = partial.parent
    write_atomic(partial / "meta.json", json.dumps(asdict(meta), indent=2))
    if previous and (builds / previous / BUILD_CALIBRATION).is_file():
        shutil.copyfile(builds / previous / BUILD_CALIBRATION, partial / BUILD_CALIBRATION)
    os.replace(partial, builds / meta.build_id)
    write_atomic(index_dir / "CURRENT", json.dumps({"build": meta.build_id}))


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
    if meta.embed_backend != embedder.backend:
        log.info("embedding backend changed (%s → %s): re-embedding everything",
                 meta.embed_backend, embedder.backend)  # fmt: skip
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


def _write_build(
    folder: Path, chunks: Sequence[Chunk], plan: Plan, *, resume: bool
) -> tuple[int, int, int, bool]:
    """Fill ``folder`` (and, in server mode, the build's collection on the server) with the
    Chroma collection, sentence vectors and BM25 index of ``chunks``, starting from an
    interrupted build of the same id when ``resume``, otherwise from a copy of the previous
    build."""
    names = collection_names(plan.build_id, plan.server)
    if resume:
        try:
            client = open_resumed(folder, names, plan)
        except Exception as err:  # half-written by a kill
            raise ResumeError(str(err)) from err
        log.info("resuming the interrupted build %s", plan.build_id)
    else:
        client = open_fresh(folder, names, plan)
    try:
        with SentenceWriter(folder / SENTENCES, plan.embedder.dimension) as sentences:
            new, kept, gone = _fill(sentences, client, names[0], chunks, plan)
    finally:
        release_client(client)
    lexical = LexicalIndex.build([c.chunk_id for c in chunks], [c.embed_text for c in chunks])
    lexical.save(folder / "lexical")
    return len(new), len(kept), len(gone), resume


def _fill(
    sentences: SentenceWriter, client: ClientAPI, name: str, chunks: Sequence[Chunk], plan: Plan
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


def _copy_sentences(sentences: SentenceWriter, chunks: Sequence[Chunk], plan: Plan) -> list[str]:
    """Copy the sentence vectors of ``chunks`` from the previous build (its ``sentences/``, or
    its Chroma collection if it is of format 1); returns the ids of chunks it lacks them for."""
    prev = plan.prev_meta
    pairs = [(c.chunk_id, len(split_units(c.text))) for c in chunks]
    if prev is None:
        return [cid for cid, _ in pairs]
    progress = stage_progress(plan.progress, "copy", len(pairs))
    if prev.format >= 2:
        source = SentenceVectors(plan.builds / prev.build_id / SENTENCES, prev.dimension)
        return sentences.copy_from(source, pairs, progress=progress)
    log.info("moving the sentence vectors of build %s out of Chroma", prev.build_id)
    with previous_client(plan) as old:
        name = collection_names(prev.build_id, plan.server)[1]
        return sentences.copy_from(UnitStore(old, name, frozen=True), pairs, progress=progress)


def _embed_into(
    store: ChromaStore, sentences: SentenceWriter, chunks: Sequence[Chunk], plan: Plan
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
    drop_server_collections(server, [p.name for p in old])
    for p in old:
        shutil.rmtree(p, ignore_errors=True)


# -- reading -------------------------------------------------------------------------------------
