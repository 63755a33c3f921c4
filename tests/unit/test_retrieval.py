"""Hybrid retrieval over the tiny corpus with the fake embedder."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import FakeEmbedder, write_corpus
from langchain_core.documents import Document

from assistant.index import IndexHandle, build_index
from assistant.retrieval import WINDOW_CHARS, HybridRetriever, hybrid_search


@pytest.fixture
def retriever(tiny_handle: IndexHandle, fake_embedder: FakeEmbedder) -> HybridRetriever:
    return HybridRetriever(index=tiny_handle, embedder=fake_embedder, k=3)


@pytest.mark.parametrize(
    ("question", "doc_id", "section", "starts"),
    [
        (
            "How many regional boards manage the widget budget?",
            "widgets",
            "Budgets",
            "The widget budget",
        ),
        ("What are the stages of the widget cycle?", "widgets", "Stages", "The widget cycle"),
        ("Who hosts the apple archive?", "orchards", "The apple archive", "The apple archive"),
        ("When does pruning happen?", "orchards", "Pruning", "Pruning happens"),
        ("Who awards the dredging contract?", "harbours", "Dredging", "Harbour dredging"),
        ("What do lighthouse keepers inspect?", "harbours", "Lighthouses", "Lighthouse keepers"),
    ],
)
def test_top_passage_is_the_one_sharing_the_words(
    retriever: HybridRetriever, question: str, doc_id: str, section: str, starts: str
) -> None:
    top = retriever.invoke(question)[0]
    assert top.metadata["doc_id"] == doc_id
    assert top.metadata["section"] == section
    assert top.page_content.startswith(starts)
    assert top.metadata["rank"] == 1


def test_exact_ranking_of_the_top_two(retriever: HybridRetriever) -> None:
    docs = retriever.invoke("How many regional boards manage the widget budget?", k=2)
    assert [(d.metadata["doc_id"], d.metadata["section"]) for d in docs] == [
        ("widgets", "Budgets"),
        ("widgets", "Stages"),  # shares only "widget"
    ]


def test_k_as_field_and_per_call(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, retriever: HybridRetriever
) -> None:
    question = "Who hosts the apple archive?"
    assert len(retriever.invoke(question)) == 3
    assert len(retriever.invoke(question, k=2)) == 2
    assert len(retriever.invoke(question, k=5)) == 5
    assert (
        len(HybridRetriever(index=tiny_handle, embedder=fake_embedder, k=2).invoke(question)) == 2
    )
    assert len(HybridRetriever(index=tiny_handle, embedder=fake_embedder).invoke(question)) == 5
    # more than the corpus holds: every chunk once
    docs = retriever.invoke(question, k=50)
    assert len(docs) == 6
    assert len({d.id for d in docs}) == 6


def test_documents_carry_metadata(retriever: HybridRetriever) -> None:
    docs = retriever.invoke("Who hosts the apple archive?")
    assert all(isinstance(d, Document) for d in docs)
    top = docs[0]
    assert top.metadata["title"] == "Orchard archive handbook"
    assert top.metadata["chunk_id"].startswith("orchards:")
    assert top.id == top.metadata["chunk_id"]
    assert top.metadata["status"] == "historical"
    assert top.metadata["era"] == "before 2010"
    assert top.metadata["path"] == "orchards.md"
    assert "Lincoln orchard trust" in top.page_content
    assert [d.metadata["rank"] for d in docs] == [1, 2, 3]
    scores = [d.metadata["score"] for d in docs]
    assert scores == sorted(scores, reverse=True)
    assert isinstance(top.metadata["score"], float)
    assert top.metadata["dense_score"] > 0
    assert top.metadata["lexical_score"] > 0


async def test_ainvoke(retriever: HybridRetriever) -> None:
    docs = await retriever.ainvoke("When does pruning happen?")
    assert docs[0].metadata["section"] == "Pruning"


def test_search_on_a_snapshot_and_hybrid_search(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder
) -> None:
    snapshot = tiny_handle.get()
    retriever = HybridRetriever(index=snapshot, embedder=fake_embedder, k=2)
    passages = retriever.search("Who awards the dredging contract?")
    assert [p.rank for p in passages] == [1, 2]
    assert passages[0].chunk.doc.doc_id == "harbours"
    assert passages[0].dense is not None
    assert passages[0].lexical is not None
    assert passages[0].sentence is not None
    # the sentence that holds the words is closer than the passage as a whole
    assert passages[0].sentence > passages[0].dense

    vec = fake_embedder.encode(["dredging contract"])[0].tolist()
    direct = hybrid_search(snapshot, "dredging contract", vec, 1)
    assert direct[0].chunk.chunk_id == passages[0].chunk.chunk_id
    # a query with no word in the corpus still ranks, but no passage has a lexical score
    none = retriever.search("zeppelin quantum")
    assert all(p.lexical is None for p in none)


def test_a_ranked_chunk_comes_with_its_neighbours_of_the_same_section(
    tmp_path: Path, fake_embedder: FakeEmbedder
) -> None:
    paragraphs = [
        f"Paragraph {i} of the harbour notes says berth {i} was dredged in spring {2000 + i}."
        for i in range(30)
    ]
    text = (
        "# Harbour notes\n\n## Berths\n\n"
        + "\n\n".join(paragraphs)
        + "\n\n## Other\n\nA last note."
    )
    write_corpus(tmp_path / "c", {"notes.md": text})
    build_index(tmp_path / "c", tmp_path / "i", fake_embedder)
    handle = IndexHandle.of(tmp_path / "i", fake_embedder)
    try:
        question = "Which berth was dredged in spring 2014?"
        vector = fake_embedder.encode([question])[0].tolist()
        passages = hybrid_search(handle.get(), question, vector, 3)
    finally:
        handle.close()
    top = passages[0]
    assert "berth 14 was dredged" in top.chunk.text  # the chunk retrieval ranked first ...
    assert len(top.parts) > 1  # ... with its neighbours, in document order
    assert top.chunk.text == "\n".join(part.text for part in top.parts)
    assert [p.position for p in top.parts] == sorted(p.position for p in top.parts)
    assert 900 <= len(top.chunk.text) <= WINDOW_CHARS * 1.2
    assert all(p.section == "Berths" for p in top.parts)  # never across a heading
    # no chunk is in two passages
    members = [part.chunk_id for p in passages for part in p.parts]
    assert len(members) == len(set(members))
