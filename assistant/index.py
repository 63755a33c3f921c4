"""The index on disk: building it aside, switching to it atomically, opening it for queries.

Layout under the index folder::

    CURRENT                  {"build": "<id>"}: the build that serves; replaced atomically
    .lock                    held while a build runs (one build at a time)
    builds/<id>/meta.json    embedding model, files and their hashes, counts
    builds/<id>/chroma/      the Chroma collection (embedded mode)
    builds/<id>/lexical/     the BM25 index over the same chunks
    builds/<id>.partial/     a build in progress; removed if it never finished

A build starts from a copy of the serving one, re-embeds only chunks whose text is new, deletes
chunks that are gone, and becomes visible only when ``CURRENT`` is replaced. An error or a kill at
any point before that leaves the previous build serving.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import shutil
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from assistant.chunking import chunk_documents, split_units, unit_id
from assistant.embeddings import Embedder
from assistant.errors import (
    IndexBuildError,
    IndexModelMismatchError,
    IndexNotBuiltError,
)
from assistant.ingest import corpus_files, ingest
from assistant.lexical import LexicalIndex
from assistant.schema import Chunk, SkippedFile
from assistant.store import (
    STORE_IO_ERRORS,
    ChromaServer,
    ChromaStore,
    UnitStore,
    copy_collection,
    delete_collections,
    heartbeat,
    persistent_client,
    release_client,
    server_client,
)

__all__ = ["BuildMeta", "BuildReport", "IndexHandle", "IndexSnapshot", "build_index", "open_index"]

log = logging.getLogger(__name__)

FORMAT = 1
COLLECTION = "guidance"
UNITS_COLLECTION = "guidance-units"
_KEEP_OLD_BUILDS = 1  # builds kept besides the serving one, for readers still using them
#: failures writing a build (a full disk, a read-only folder): reported, the previous one serves
_WRITE_ERRORS: tuple[type[Exception], ...] = (OSError, *STORE_IO_ERRORS)

#: progress callback: (stage, done, total); stages are "read" and "embed"
Progress = Callable[[str, int, int], None]


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

    @classmethod
    def read(cls, folder: Path) -> BuildMeta:
        raw = json.loads((folder / "meta.json").read_text(encoding="utf-8"))
        return cls(**raw)


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


def collection_names(build_id: str, server: ChromaServer | None) -> tuple[str, str]:
    """The chunk and sentence collections of a build: fixed names in the build's own embedded
    store; on a Chroma server, named after the build so builds can sit side by side."""
    if server is None:
        return COLLECTION, UNITS_COLLECTION
    return f"{COLLECTION}-{build_id}", f"{UNITS_COLLECTION}-{build_id}"


def _drop_server_collections(server: ChromaServer | None, build_ids: Sequence[str]) -> None:
    """Delete the server collections of builds that failed, were killed, or were pruned."""
    if server is None or not build_ids:
        return
    try:
        client = server_client(server)
        delete_collections(client, [n for b in build_ids for n in collection_names(b, server)])
    except Exception as err:  # cleanup only: the next build tries again
        log.warning("could not delete old collections on the Chroma server: %s", err)


def _read_current(index_dir: Path) -> str | None:
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


def _write_atomic(path: Path, text: str) -> None:
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
) -> BuildReport:
    """Index ``corpus_dir`` into ``index_dir`` and make it the serving build (its collections
    on ``server`` when given, otherwise embedded in the build folder).

    Raises :class:`IndexBuildError` (the previous build keeps serving) or
    :class:`~assistant.errors.CorpusError` when the corpus folder cannot be read at all.
    """
    started = time.perf_counter()
    builds = _prepare_index_dir(index_dir)
    with _build_lock(index_dir):
        stale_builds = sorted(builds.glob("*.partial"))
        _drop_server_collections(server, [p.name.removesuffix(".partial") for p in stale_builds])
        for stale in stale_builds:
            shutil.rmtree(stale, ignore_errors=True)
        try:
            previous = _read_current(index_dir)
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

        build_id = datetime.now(UTC).strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:8]
        partial = builds / f"{build_id}.partial"
        try:
            stats = _write_build(
                partial, build_id, chunks, embedder, builds, prev_meta, progress, server
            )
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
            _write_atomic(partial / "meta.json", json.dumps(asdict(meta), indent=2))
            final = builds / build_id
            os.replace(partial, final)
            _write_atomic(index_dir / "CURRENT", json.dumps({"build": build_id}))
        except _WRITE_ERRORS as err:
            shutil.rmtree(partial, ignore_errors=True)
            _drop_server_collections(server, [build_id])
            raise IndexBuildError(
                f"building the index failed ({_reason(err)}); the previous index keeps serving"
            ) from err
        except BaseException:
            shutil.rmtree(partial, ignore_errors=True)
            _drop_server_collections(server, [build_id])
            raise
        _prune(builds, keep={build_id, *([previous] if previous else [])}, server=server)
    embedded, reused, removed = stats
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
    )


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
    if meta.embed_model != embedder.model_name or meta.format != FORMAT:
        log.info("embedding model changed (%s → %s): re-embedding everything",
                 meta.embed_model, embedder.model_name)  # fmt: skip
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
    folder: Path,
    build_id: str,
    chunks: Sequence[Chunk],
    embedder: Embedder,
    builds: Path,
    prev_meta: BuildMeta | None,
    progress: Progress | None,
    server: ChromaServer | None = None,
) -> tuple[int, int, int]:
    """Fill ``folder`` (and, in server mode, the build's collections on the server) with the
    Chroma collections and BM25 index of ``chunks``, starting from a copy of the previous build."""
    folder.mkdir(parents=True)
    names = collection_names(build_id, server)
    if server is None:
        if prev_meta is not None:
            shutil.copytree(builds / prev_meta.build_id / "chroma", folder / "chroma")
        client = persistent_client(folder / "chroma")
    else:
        client = server_client(server)
        if prev_meta is not None:
            before = collection_names(prev_meta.build_id, server)
            for source, target in zip(before, names, strict=True):
                copy_collection(client, source, target)
    try:
        store = ChromaStore(client, names[0])
        units = UnitStore(client, names[1])
        wanted = {c.chunk_id: c for c in chunks}
        existing = store.ids()
        gone = sorted(existing - wanted.keys())
        store.delete(gone)
        units.delete_for_chunks(gone)
        kept = [c for cid, c in wanted.items() if cid in existing]
        _refresh_metadata(store, kept)
        new = [c for cid, c in wanted.items() if cid not in existing]
        _embed_into(store, units, new, embedder, progress)
    finally:
        release_client(client)
    lexical = LexicalIndex.build([c.chunk_id for c in chunks], [c.embed_text for c in chunks])
    lexical.save(folder / "lexical")
    return len(new), len(kept), len(gone)


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


def _embed_into(
    store: ChromaStore,
    units: UnitStore,
    chunks: Sequence[Chunk],
    embedder: Embedder,
    progress: Progress | None,
) -> None:
    """Embed chunks (and their sentences) in batches, writing each batch before the next."""
    batch = 256
    total = len(chunks)
    if progress:
        progress("embed", 0, total)
    for start in range(0, total, batch):
        part = chunks[start : start + batch]
        unit_rows = [
            (unit_id(c.chunk_id, j), c.chunk_id, text)
            for c in part
            for j, (text, _) in enumerate(split_units(c.text))
        ]
        vectors = embedder.encode([c.embed_text for c in part] + [u[2] for u in unit_rows])
        units.add(
            [u[0] for u in unit_rows], [u[1] for u in unit_rows], [u[2] for u in unit_rows],
            vectors[len(part):],
        )  # fmt: skip
        store.add(part, vectors[: len(part)])  # chunks last: a chunk present means its units are
        if progress:
            progress("embed", start + len(part), total)


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


class IndexSnapshot:
    """One finished build, opened for queries."""

    def __init__(self, folder: Path, meta: BuildMeta, server: ChromaServer | None = None) -> None:
        self.folder = folder
        self.meta = meta
        self.server = server
        if server is None:
            self._client = persistent_client(folder / "chroma")
        else:
            self._client = server_client(server)
        chunk_names, unit_names = collection_names(meta.build_id, server)
        self.store = ChromaStore(self._client, chunk_names)
        self.units = UnitStore(self._client, unit_names)
        self.lexical = LexicalIndex.load(folder / "lexical")

    @property
    def build_id(self) -> str:
        return self.meta.build_id

    def describe(self) -> dict[str, Any]:
        """What a health check shows of the serving build (in server mode, only when the Chroma
        server answers: :class:`StoreUnavailableError` otherwise)."""
        if self.server is not None:
            heartbeat(self._client, self.server)
        return {
            "build": self.build_id,
            "chunks": self.meta.chunk_count,
            "embed_model": self.meta.embed_model,
            "created": self.meta.created,
            "store": "embedded" if self.server is None else f"chroma server {self.server}",
        }

    def close(self) -> None:
        release_client(self._client)


def open_index(
    index_dir: Path, embed_model: str, server: ChromaServer | None = None
) -> IndexSnapshot:
    build = _read_current(index_dir)
    if build is None:
        raise IndexNotBuiltError(
            f"no index in {index_dir} yet: build it with `assistant index` (or `make run`)"
        )
    folder = index_dir / "builds" / build
    try:
        meta = BuildMeta.read(folder)
    except (OSError, ValueError, TypeError) as err:
        raise IndexNotBuiltError(
            f"the index in {index_dir} is damaged ({err}); "
            "rebuild it with `assistant index --rebuild`"
        ) from err
    if meta.embed_model != embed_model:
        raise IndexModelMismatchError(
            f"the index in {index_dir} was built with embedding model {meta.embed_model!r} but "
            f"{embed_model!r} is configured (ASSISTANT_EMBED_MODEL); rebuild with "
            "`assistant index --rebuild` or configure the model the index was built with"
        )
    wanted = "embedded" if server is None else "server"
    if meta.store != wanted:
        where = "a Chroma server" if meta.store == "server" else "the index folder"
        raise IndexNotBuiltError(
            f"the index in {index_dir} keeps its vectors in {where}, but "
            + ("no Chroma server is configured (ASSISTANT_CHROMA_HOST)" if server is None
               else f"the Chroma server {server} is configured")
            + "; rebuild it with `assistant index` under the current settings"
        )  # fmt: skip
    return IndexSnapshot(folder, meta, server)


class IndexHandle:
    """The serving build, re-opened when a new build becomes current (no restart needed).

    The snapshot it replaces stays open for requests still using it, and is closed when the
    next build replaces its successor.
    """

    def __init__(
        self, index_dir: Path, embed_model: str, server: ChromaServer | None = None
    ) -> None:
        self.index_dir = index_dir
        self.embed_model = embed_model
        self.server = server
        self._snapshot: IndexSnapshot | None = None
        self._retired: IndexSnapshot | None = None
        self._lock = threading.Lock()

    def get(self) -> IndexSnapshot:
        current = _read_current(self.index_dir)
        snap = self._snapshot
        if snap is not None and current == snap.build_id:
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or current != snap.build_id:
                fresh = open_index(self.index_dir, self.embed_model, self.server)
                if self._retired is not None:
                    self._retired.close()
                self._retired, self._snapshot = snap, fresh
                snap = fresh
            return snap

    def info(self) -> dict[str, Any]:
        return self.get().describe()
