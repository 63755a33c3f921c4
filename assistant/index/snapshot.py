"""The serving build opened for queries, re-opened when a new build becomes current."""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

from assistant.errors import IndexModelMismatchError, IndexNotBuiltError
from assistant.index.chroma import (
    ChromaServer,
    ChromaStore,
    UnitStore,
    heartbeat,
    persistent_client,
    release_client,
    server_client,
)
from assistant.index.layout import READABLE_FORMATS, BuildMeta, collection_names, read_current
from assistant.index.lexical import LexicalIndex
from assistant.index.sentences import FOLDER as SENTENCES
from assistant.index.sentences import SentenceSource, SentenceVectors

if TYPE_CHECKING:
    from assistant.embeddings import Embedder

__all__ = ["IndexHandle", "IndexSnapshot", "built_backend", "open_index"]

log = logging.getLogger(__name__)


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
        self.store = ChromaStore(self._client, chunk_names, frozen=True)
        self.units: SentenceSource = (
            SentenceVectors(folder / SENTENCES, meta.dimension)
            if meta.format >= 2
            else UnitStore(self._client, unit_names, frozen=True)  # until the next build
        )
        self.lexical = LexicalIndex.load(folder / "lexical")
        if meta.format >= 2 and meta.chunk_count and not self.units.count():
            log.warning("build %s has no sentence vectors (%s is missing or damaged): answers "
                        "embed sentences as they go, slower; rebuild with `assistant index "
                        "--rebuild`", meta.build_id, folder / SENTENCES)  # fmt: skip

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
            "embed_backend": self.meta.embed_backend,
            "created": self.meta.created,
            "store": "embedded" if self.server is None else f"chroma server {self.server}",
        }

    def close(self) -> None:
        release_client(self._client)


def built_backend(index_dir: Path) -> str | None:
    """The embedding backend the serving build of ``index_dir`` was embedded with (None: no
    readable build yet)."""
    try:
        build = read_current(index_dir)
        return BuildMeta.read(index_dir / "builds" / build).embed_backend if build else None
    except (IndexNotBuiltError, OSError, ValueError, TypeError):
        return None


def open_index(
    index_dir: Path,
    embed_model: str,
    server: ChromaServer | None = None,
    *,
    embed_backend: str = "torch",
) -> IndexSnapshot:
    build = read_current(index_dir)
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
    if meta.embed_backend != embed_backend:
        raise IndexModelMismatchError(
            f"the index in {index_dir} was embedded with the {meta.embed_backend} backend but "
            f"questions would be embedded with {embed_backend} (ASSISTANT_EMBED_BACKEND, "
            "ASSISTANT_EMBED_PRECISION); rebuild with `assistant index` or configure "
            f"ASSISTANT_EMBED_BACKEND=auto to embed questions as the build did"
        )
    if meta.format not in READABLE_FORMATS:
        raise IndexNotBuiltError(
            f"the index in {index_dir} is of format {meta.format}, which this version cannot "
            "read; rebuild it with `assistant index --rebuild`"
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
    next build replaces its successor. A new build embedded another way (another model or
    backend) than this handle's questions is not switched to: the serving build keeps
    answering, and the refusal is logged once, until a restart with matching settings.
    """

    def __init__(
        self,
        index_dir: Path,
        embed_model: str,
        server: ChromaServer | None = None,
        *,
        embed_backend: str = "torch",
    ) -> None:
        self.index_dir = index_dir
        self.embed_model = embed_model
        self.embed_backend = embed_backend
        self.server = server
        self._snapshot: IndexSnapshot | None = None
        self._retired: IndexSnapshot | None = None
        self._refused: str | None = None  # a newer build embedded another way, not switched to
        self._lock = threading.Lock()

    @classmethod
    def of(
        cls, index_dir: Path, embedder: Embedder, server: ChromaServer | None = None
    ) -> IndexHandle:
        """The handle for questions embedded by ``embedder``: its model and backend must be the
        ones the serving build was embedded with."""
        return cls(index_dir, embedder.model_name, server, embed_backend=embedder.backend)

    def get(self) -> IndexSnapshot:
        current = read_current(self.index_dir)
        snap = self._snapshot
        if snap is not None and current in (snap.build_id, self._refused):
            return snap
        with self._lock:
            snap = self._snapshot
            if snap is None or current not in (snap.build_id, self._refused):
                try:
                    fresh = open_index(self.index_dir, self.embed_model, self.server,
                                       embed_backend=self.embed_backend)  # fmt: skip
                except IndexModelMismatchError as err:
                    if snap is None:
                        raise
                    self._refused = current
                    log.error("%s; still serving build %s", err, snap.build_id)
                    return snap
                if self._retired is not None:
                    self._retired.close()
                self._retired, self._snapshot = snap, fresh
                snap = fresh
            return snap

    def info(self) -> dict[str, Any]:
        return self.get().describe()

    def close(self) -> None:
        """Release the open snapshots (the handle opens the current build again if used)."""
        with self._lock:
            for snap in (self._retired, self._snapshot):
                if snap is not None:
                    snap.close()
            self._retired = self._snapshot = None
