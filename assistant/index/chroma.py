"""Store stage: the one module that imports ``chromadb``.

:class:`ChromaStore` wraps one Chroma collection of chunks (cosine space). It takes a ready-made
client, so the same code runs on an embedded persistent store, an in-memory one (tests) or a
Chroma server.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ParamSpec, TypeVar, cast

import chromadb
import httpx
import numpy as np
import tenacity
from chromadb.api import ClientAPI
from chromadb.config import Settings as ChromaSettings
from chromadb.errors import InternalError as ChromaInternalError

from assistant.errors import StoreUnavailableError
from assistant.schema import Chunk

if TYPE_CHECKING:
    from chromadb.api.client import Client
    from chromadb.api.models.Collection import Collection
    from chromadb.api.types import Include, PyEmbedding

__all__ = [
    "STORE_IO_ERRORS",
    "ChromaServer",
    "ChromaStore",
    "ClientAPI",
    "UnitStore",
    "copy_collection",
    "delete_collections",
    "ephemeral_client",
    "heartbeat",
    "persistent_client",
    "release_client",
    "server_client",
]

log = logging.getLogger(__name__)


def _chroma_settings() -> ChromaSettings:
    """Fresh settings for each client: chromadb writes the client's kind, path and server into
    the object it is given, so one shared object would turn every later client into the first."""
    return ChromaSettings(anonymized_telemetry=False, allow_reset=False)


#: Chroma rejects very large batches; stay well below its limit
_BATCH = 2000
#: what Chroma raises when its files cannot be written or read (a full disk, a read-only folder):
#: not an OSError, so callers that handle I/O failures catch these too
STORE_IO_ERRORS: tuple[type[Exception], ...] = (ChromaInternalError,)


_P = ParamSpec("_P")
_R = TypeVar("_R")


@dataclass(frozen=True)
class ChromaServer:
    """A Chroma server (``chroma run``) that holds the collections instead of the index folder."""

    host: str
    port: int

    def __str__(self) -> str:
        return f"{self.host}:{self.port}"


def _unavailable(server: object, err: Exception) -> StoreUnavailableError:
    return StoreUnavailableError(
        f"the Chroma server{f' at {server}' if server else ''} is not reachable ({err}); "
        "answers resume when it is back"
    )


def _locked(err: BaseException) -> bool:
    """Chroma's own SQLite file was busy: an embedded client's background work (applying its
    write log) holding the lock at the moment of a write. It passes; the write can be tried
    again (every write here is idempotent: set, delete, or add of the same ids and vectors)."""
    return isinstance(err, ChromaInternalError) and "database is locked" in str(err)


#: a busy SQLite file is tried again for up to ~10 s, then its error stands
_retry_when_locked = tenacity.retry(
    retry=tenacity.retry_if_exception(_locked),
    stop=tenacity.stop_after_delay(10),
    wait=tenacity.wait_exponential(multiplier=0.05, max=2),
    before_sleep=tenacity.before_sleep_log(log, logging.INFO),
    reraise=True,
)


def _server_errors(method: Callable[_P, _R]) -> Callable[_P, _R]:
    """A Chroma server going away (a transport error) becomes :class:`StoreUnavailableError`;
    an embedded store's busy SQLite file is waited for (:func:`_locked`)."""
    retried = _retry_when_locked(method)

    @functools.wraps(method)
    def guarded(*args: _P.args, **kwargs: _P.kwargs) -> _R:
        try:
            return retried(*args, **kwargs)
        except httpx.TransportError as err:
            raise _unavailable("", err) from err

    return guarded


_T = TypeVar("_T")


def _guarded(cls: type[_T]) -> type[_T]:
    """Every method of ``cls`` turns a lost Chroma server into :class:`StoreUnavailableError`."""
    for name, member in list(vars(cls).items()):
        if callable(member) and (not name.startswith("_") or name == "__init__"):
            setattr(cls, name, _server_errors(member))
    return cls


def server_client(server: ChromaServer) -> ClientAPI:
    try:
        return chromadb.HttpClient(host=server.host, port=server.port, settings=_chroma_settings())
    except (ValueError, httpx.HTTPError) as err:  # chromadb says "Could not connect" as ValueError
        raise _unavailable(server, err) from err


def heartbeat(client: ClientAPI, server: ChromaServer) -> None:
    """Raise :class:`StoreUnavailableError` unless the server answers."""
    try:
        client.heartbeat()
    except (ValueError, httpx.HTTPError) as err:
        raise _unavailable(server, err) from err


@_server_errors
def copy_collection(
    client: ClientAPI,
    source: str,
    target: str,
    into: ClientAPI | None = None,
    progress: Callable[[int], None] | None = None,
) -> int:
    """Copy every record (ids, vectors, texts, metadata) of ``source`` into a new ``target``
    collection (of ``into``, another client, when given), page by page, without re-embedding;
    returns the count. ``progress`` is told how many are copied after each page."""
    src = client.get_collection(source)
    dst = (into or client).get_or_create_collection(target, metadata={"hnsw:space": "cosine"})
    copied = 0
    while True:
        page = src.get(
            limit=_BATCH, offset=copied, include=["embeddings", "documents", "metadatas"]
        )
        if not page["ids"]:
            return copied
        dst.add(
            ids=page["ids"],
            embeddings=cast(Any, page["embeddings"]),
            documents=page["documents"],
            metadatas=page["metadatas"],
        )
        copied += len(page["ids"])
        if progress:
            progress(copied)


def delete_collections(client: ClientAPI, names: Sequence[str]) -> None:
    """Delete these collections where they exist (a failed or pruned build's)."""
    existing = {c.name for c in client.list_collections()}
    for name in names:
        if name in existing:
            client.delete_collection(name)


def persistent_client(path: Path) -> ClientAPI:
    return chromadb.PersistentClient(path=str(path), settings=_chroma_settings())


def ephemeral_client() -> ClientAPI:
    return chromadb.EphemeralClient(settings=_chroma_settings())


def release_client(client: ClientAPI) -> None:
    """Let go of a client's files and connections (Chroma shares one system per path)."""
    # ClientAPI does not declare close(); the clients chromadb makes are all Clients
    cast("Client", client).close()


def _embeddings_by_id(
    collection: Collection, ids: Sequence[str]
) -> dict[str, np.ndarray[Any, Any]]:
    """The stored embeddings of ``ids`` (those that exist), by id."""
    if not ids:
        return {}
    got = collection.get(ids=list(ids), include=["embeddings"])
    vecs = got["embeddings"]
    if vecs is None:
        return {}
    return {cid: np.asarray(v, dtype=np.float32) for cid, v in zip(got["ids"], vecs, strict=True)}


@_guarded
class _Counted:
    """A collection's size, asked of Chroma each time, or once when the collection is frozen
    (a finished build's: it never changes, and each count is a round trip)."""

    collection: Collection
    frozen: bool
    _size: int | None = None

    def count(self) -> int:
        if self.frozen and self._size is not None:
            return self._size
        size = int(self.collection.count())
        if self.frozen:
            self._size = size
        return size


@_guarded
class ChromaStore(_Counted):
    def __init__(
        self, client: ClientAPI, collection: str = "guidance", *, frozen: bool = False
    ) -> None:
        if not 3 <= len(collection) <= 512:
            raise ValueError("Chroma collection names need 3-512 characters")
        self.client = client
        self.frozen = frozen
        self.collection = client.get_or_create_collection(
            collection, metadata={"hnsw:space": "cosine"}
        )

    def set_search_ef(self, ef: int) -> None:
        """How many neighbours the vector index explores per query (HNSW ``ef_search``; kept
        with the collection, so it applies to every reader of it, this build's and later)."""
        if self.search_ef() != ef:  # a copied build's collection has it already: no write
            self.collection.modify(configuration={"hnsw": {"ef_search": ef}})

    def search_ef(self) -> int | None:
        hnsw = (self.collection.configuration or {}).get("hnsw") or {}
        ef = hnsw.get("ef_search")
        return int(ef) if ef is not None else None

    def ids(self) -> set[str]:
        out: set[str] = set()
        for offset in range(0, self.count(), _BATCH):
            got = self.collection.get(limit=_BATCH, offset=offset, include=[])
            out.update(got["ids"])
        return out

    def metadatas(self) -> Iterator[tuple[str, dict[str, Any]]]:
        for offset in range(0, self.count(), _BATCH):
            got = self.collection.get(limit=_BATCH, offset=offset, include=["metadatas"])
            metas = got["metadatas"] or []
            for cid, meta in zip(got["ids"], metas, strict=True):
                yield cid, dict(meta or {})

    def add(self, chunks: Sequence[Chunk], embeddings: np.ndarray[Any, Any]) -> None:
        for start in range(0, len(chunks), _BATCH):
            part = chunks[start : start + _BATCH]
            self.collection.add(
                ids=[c.chunk_id for c in part],
                embeddings=embeddings[start : start + _BATCH],
                documents=[c.text for c in part],
                metadatas=[cast(Any, c.metadata()) for c in part],
            )

    def update_metadata(self, chunks: Sequence[Chunk]) -> None:
        for start in range(0, len(chunks), _BATCH):
            part = chunks[start : start + _BATCH]
            self.collection.update(
                ids=[c.chunk_id for c in part], metadatas=[cast(Any, c.metadata()) for c in part]
            )

    def delete(self, ids: Sequence[str]) -> None:
        for start in range(0, len(ids), _BATCH):
            self.collection.delete(ids=list(ids[start : start + _BATCH]))

    def get(self, ids: Sequence[str]) -> list[Chunk]:
        return [c for c, _ in self.get_with_embeddings(ids, vectors=False)]

    def get_with_embeddings(
        self, ids: Sequence[str], *, vectors: bool = True
    ) -> list[tuple[Chunk, np.ndarray[Any, Any] | None]]:
        """The chunks of ``ids`` that exist, in that order, each with its stored embedding
        (one round trip for both; None when ``vectors`` is False)."""
        if not ids:
            return []
        fields: Include = ["documents", "metadatas"]
        if vectors:
            fields = [*fields, "embeddings"]
        got = self.collection.get(ids=list(ids), include=fields)
        docs = got["documents"] or []
        metas = got["metadatas"] or []
        embs: Any = got["embeddings"]
        if not vectors or embs is None:
            embs = [None] * len(got["ids"])
        by_id = {
            cid: (
                Chunk.from_metadata(cid, text, dict(meta or {})),
                None if vec is None else np.asarray(vec, dtype=np.float32),
            )
            for cid, text, meta, vec in zip(got["ids"], docs, metas, embs, strict=True)
        }
        return [by_id[i] for i in ids if i in by_id]

    def query(self, embedding: Sequence[float], k: int) -> list[tuple[Chunk, float]]:
        """The ``k`` nearest chunks with their cosine similarity, best first."""
        n = min(k, self.count())
        if n <= 0:
            return []
        query: list[PyEmbedding] = [list(embedding)]
        res = self.collection.query(
            query_embeddings=query,
            n_results=n,
            include=["documents", "metadatas", "distances"],
        )
        ids = res["ids"][0]
        docs = (res["documents"] or [[]])[0]
        metas = (res["metadatas"] or [[]])[0]
        dists = (res["distances"] or [[]])[0]
        return [
            (Chunk.from_metadata(cid, text, dict(meta or {})), 1.0 - float(dist))
            for cid, text, meta, dist in zip(ids, docs, metas, dists, strict=True)
        ]

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        return _embeddings_by_id(self.collection, ids)


@_guarded
class UnitStore(_Counted):
    """The sentences (units) of the chunks, in the second collection that indexes of format 1
    kept them in: read until the next build moves them to :mod:`assistant.index.sentences`."""

    def __init__(
        self, client: ClientAPI, collection: str = "guidance-units", *, frozen: bool = False
    ) -> None:
        self.frozen = frozen
        self.collection = client.get_or_create_collection(
            collection, metadata={"hnsw:space": "cosine"}
        )

    def embeddings(self, ids: Sequence[str]) -> dict[str, np.ndarray[Any, Any]]:
        return _embeddings_by_id(self.collection, ids)
