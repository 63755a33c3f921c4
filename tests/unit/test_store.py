"""The Chroma stores on a real in-memory Chroma: fetching, counting, sentence hits."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any, cast

import numpy as np
import pytest
from chromadb.errors import InternalError as ChromaInternalError
from fakes import FakeEmbedder

from assistant.chunking import unit_id
from assistant.index.chroma import ChromaStore, UnitStore, ephemeral_client, release_client
from assistant.schema import Chunk, DocInfo

DOC = DocInfo(doc_id="doc", title="Doc", path="doc.md")


def chunk(i: int, text: str) -> Chunk:
    return Chunk(chunk_id=f"doc-{i}", doc=DOC, section="S", text=text, position=i)


@pytest.fixture
def client() -> Iterator[Any]:
    c = ephemeral_client()
    for col in c.list_collections():
        c.delete_collection(col.name)
    yield c
    release_client(c)


def test_get_with_embeddings_returns_text_and_vector_in_the_order_asked(
    client: Any, fake_embedder: FakeEmbedder
) -> None:
    chunks = [chunk(i, f"Harbour note {i} about ferries and tides.") for i in range(3)]
    vectors = fake_embedder.encode([c.text for c in chunks])
    store = ChromaStore(client, "guidance")
    store.add(chunks, vectors)
    got = store.get_with_embeddings(["doc-2", "missing", "doc-0"])
    assert [c.chunk_id for c, _ in got] == ["doc-2", "doc-0"]
    assert got[0][0].text == chunks[2].text
    vec = got[0][1]
    assert vec is not None
    assert np.allclose(vec, vectors[2], atol=1e-6)
    assert [c.chunk_id for c in store.get(["doc-1"])] == ["doc-1"]


def test_a_frozen_store_counts_once_a_building_one_every_time(client: Any) -> None:
    vec = np.eye(4, dtype=np.float32)
    building = ChromaStore(client, "guidance")
    building.add([chunk(0, "one")], vec[:1])
    frozen = ChromaStore(client, "guidance", frozen=True)
    assert frozen.count() == building.count() == 1
    building.add([chunk(1, "two")], vec[1:2])
    assert building.count() == 2
    assert frozen.count() == 1  # a finished build never changes: the first count stands


def test_sentences_of_a_format_1_index_are_read_by_id(client: Any) -> None:
    """Indexes of format 1 kept sentence vectors in a collection; they are read until rebuilt."""
    vec = np.eye(4, dtype=np.float32)
    ids = [unit_id("doc#with#hashes-3", 0), unit_id("plain-1", 7)]
    client.create_collection("guidance-units").add(ids=ids, embeddings=vec[:2])
    units = UnitStore(client, "guidance-units", frozen=True)
    assert units.count() == 2
    got = units.embeddings([ids[1], "plain-1#8"])
    assert list(got) == [ids[1]]
    assert np.allclose(got[ids[1]], vec[1])


class _BusyOnce:
    """A collection whose first ``modify`` finds Chroma's SQLite file busy (as a background
    write of an embedded client can make it), or fails for good with another error."""

    def __init__(self, error: str, failures: int) -> None:
        self.error, self.failures, self.calls = error, failures, 0
        self.configuration: dict[str, Any] = {"hnsw": {"ef_search": 10}}

    def modify(self, configuration: dict[str, Any]) -> None:
        self.calls += 1
        if self.calls <= self.failures:
            raise ChromaInternalError(self.error)
        self.configuration = configuration


LOCKED = "Database error: error returned from database: (code: 5) database is locked"


def test_a_busy_chroma_file_is_waited_for_and_the_write_goes_through(client: Any) -> None:
    store = ChromaStore(client, "guidance")
    busy = _BusyOnce(LOCKED, failures=2)
    store.collection = cast(Any, busy)
    store.set_search_ef(64)
    assert busy.calls == 3
    assert store.search_ef() == 64
    store.set_search_ef(64)  # unchanged: not written again
    assert busy.calls == 3


def test_other_chroma_errors_are_not_retried(client: Any) -> None:
    store = ChromaStore(client, "guidance")
    broken = _BusyOnce("Database error: disk I/O error", failures=5)
    store.collection = cast(Any, broken)
    with pytest.raises(ChromaInternalError, match="disk I/O"):
        store.set_search_ef(64)
    assert broken.calls == 1
