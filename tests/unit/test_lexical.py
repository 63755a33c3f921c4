"""BM25 side: tokenizer, search, save/load."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.index.lexical import LexicalIndex, tokenize

TEXTS = {
    "a": "The widget budget is managed by 42 regional boards.",
    "b": "Regional boards publish an annual spending report.",
    "c": "The apple archive is hosted by the Lincoln orchard trust.",
    "d": "Pruning happens in late winter when orchard trees are dormant.",
}


@pytest.fixture
def index() -> LexicalIndex:
    return LexicalIndex.build(list(TEXTS), list(TEXTS.values()))


def test_tokenize_drops_stop_words_and_stems() -> None:
    tokens = tokenize("What are the stages of the commissioning cycle, according to the guidance?")
    for stop in ("what", "are", "the", "of", "according", "guidance", "to"):
        assert stop not in tokens
    assert tokens == tokenize("stage commissioned cycles")
    assert tokenize("Boards") == tokenize("board") == ["board"]
    assert tokenize("Who hosts it? How does it work?") == tokenize("host works")


def test_tokenize_edge_cases() -> None:
    assert tokenize("") == []
    assert tokenize("the of and to a") == []
    assert tokenize("A 209 b") == ["209"]  # one-letter words are not tokens
    assert tokenize("Boards") == tokenize("boards")  # lower-cased
    assert tokenize("CCGs") == tokenize("CCG") == ["ccg"]  # an acronym's plural is the acronym


def test_search_ranks_by_shared_words(index: LexicalIndex) -> None:
    hits = index.search("Which regional boards manage the widget budget?", k=4)
    assert [cid for cid, _ in hits] == ["a", "b"]
    assert hits[0][1] > hits[1][1] > 0
    assert [cid for cid, _ in index.search("orchard", k=4)] in (["c", "d"], ["d", "c"])
    assert index.search("orchard", k=1)[0][0] in {"c", "d"}
    assert len(index.search("orchard", k=1)) == 1


def test_unknown_or_empty_query_finds_nothing(index: LexicalIndex) -> None:
    assert index.search("zeppelin quantum", k=3) == []
    assert index.search("the of and", k=3) == []
    assert index.search("", k=3) == []


def test_save_load_round_trip(index: LexicalIndex, tmp_path: Path) -> None:
    folder = tmp_path / "lexical"
    index.save(folder)
    loaded = LexicalIndex.load(folder)
    assert loaded.ids == index.ids
    assert loaded.doc_freq == index.doc_freq
    assert len(loaded) == 4
    for query in ("regional boards budget", "orchard trees", "apple archive Lincoln", "nothing"):
        assert loaded.search(query, k=4) == index.search(query, k=4)


def test_idf_is_highest_for_rare_words(index: LexicalIndex) -> None:
    (board,) = tokenize("boards")
    (lincoln,) = tokenize("Lincoln")
    assert index.doc_freq[board] == 2
    assert index.doc_freq[lincoln] == 1
    assert index.idf("never-seen") > index.idf(lincoln) > index.idf(board) > 0


def test_ties_come_back_in_index_order_and_only_matching_chunks() -> None:
    texts = ["apple pie", "apple tart", "banana bread", "apple apple", "cherry", "apple pie"]
    lx = LexicalIndex.build([f"d{i}" for i in range(len(texts))], texts)
    assert [cid for cid, _ in lx.search("apple pie", 3)] == ["d0", "d5", "d3"]
    assert [cid for cid, _ in lx.search("apple", 10)] == ["d3", "d0", "d1", "d5"]  # no zeros
    assert [cid for cid, _ in lx.search("cherry", 1)] == ["d4"]
