"""Lexical side of retrieval: BM25 (``bm25s``) over the same chunks as the Chroma collection.

Chroma's own sparse/hybrid search only runs on hosted Chroma, so the lexical index lives beside
the vector store, in the same build folder, and is rebuilt with it.
"""

from __future__ import annotations

import json
import logging
import math
import re
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import bm25s
import numpy as np
import Stemmer

__all__ = ["LexicalIndex", "specific_terms", "tokenize"]

log = logging.getLogger(__name__)

_TOKEN = re.compile(r"(?u)\b\w\w+\b")
_STOPWORDS = frozenset(bm25s.stopwords.STOPWORDS_EN) | {
    "does", "did", "do", "can", "could", "would", "should", "may", "might", "must", "shall",
    "will", "what", "which", "who", "whom", "whose", "when", "where", "why", "how", "according",
    "guidance", "document", "tell", "please", "say", "says", "said",
}  # fmt: skip


@lru_cache(maxsize=1)
def _stemmer() -> Stemmer.Stemmer:
    return Stemmer.Stemmer("english")


#: an acronym's plural ("CCGs", "CSUs"): the stemmer leaves it alone, so the "s" goes here
_ACRONYM_PLURAL = re.compile(r"\b([A-Z]{2,})s\b")


def tokenize(text: str) -> list[str]:
    """Lower-cased, stemmed content words (stop words dropped; "CCGs" is "ccg")."""
    text = _ACRONYM_PLURAL.sub(r"\1", text)
    words = [w for w in _TOKEN.findall(text.lower()) if w not in _STOPWORDS]
    return list(_stemmer().stemWords(words))


#: a word that names something: it has a digit, a capital after its first letter (CCG, CamelCase),
#: an underscore or an inner dot (code and field names), or it is capitalised after the start of
#: the question (a proper name)
_NAMED = re.compile(r"(?u)\b\w*(?:\d|[A-Z]\w*[A-Z]|_)\w*\b|\b\w+(?:\.\w+)+\b")
_CAPITALISED = re.compile(r"(?u)(?<=[^.?!:]\s)[A-Z][a-z]+")


def specific_terms(text: str) -> list[str]:
    """The words of ``text`` that name something (names, acronyms, numbers, code and field
    names), as :func:`tokenize` stems: what a passage must mention to be about the same thing.
    Found by their form, so the rule needs no vocabulary of its own."""
    found = _NAMED.findall(text) + _CAPITALISED.findall(" " + text)
    stems = [t for word in found for t in tokenize(word)]
    return list(dict.fromkeys(stems))


class LexicalIndex:
    """BM25 over chunk texts, addressed by chunk id."""

    def __init__(self, ids: Sequence[str], model: bm25s.BM25, doc_freq: dict[str, int]) -> None:
        self.ids = list(ids)
        self._positions: dict[str, int] | None = None
        self._model = model
        self.doc_freq = doc_freq

    @classmethod
    def build(cls, ids: Sequence[str], texts: Sequence[str]) -> LexicalIndex:
        tokens = [tokenize(t) for t in texts]
        model = bm25s.BM25()
        model.index(tokens, show_progress=False)
        doc_freq: dict[str, int] = {}
        for toks in tokens:
            for tok in set(toks):
                doc_freq[tok] = doc_freq.get(tok, 0) + 1
        return cls(ids, model, doc_freq)

    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self._model.save(str(folder), show_progress=False)
        (folder / "ids.json").write_text(json.dumps(self.ids))
        (folder / "doc_freq.json").write_text(json.dumps(self.doc_freq))

    @classmethod
    def load(cls, folder: Path) -> LexicalIndex:
        model = bm25s.BM25.load(str(folder), show_progress=False)
        ids = json.loads((folder / "ids.json").read_text())
        doc_freq = json.loads((folder / "doc_freq.json").read_text())
        return cls(ids, model, doc_freq)

    def __len__(self) -> int:
        return len(self.ids)

    def positions(self) -> dict[str, int]:
        """Each chunk id's place in the index: the order the build indexed them in, which is
        document order (computed once)."""
        if self._positions is None:
            self._positions = {cid: i for i, cid in enumerate(self.ids)}
        return self._positions

    def idf(self, token: str) -> float:
        """Smoothed inverse document frequency; a word the corpus never uses gets the most."""
        n = len(self.ids)
        df = self.doc_freq.get(token, 0)
        return math.log(1.0 + (n - df + 0.5) / (df + 0.5))

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """Chunk ids with BM25 scores, best first; only chunks sharing a word with the query."""
        toks = tokenize(query)
        if not toks or not self.ids:
            return []
        known = [t for t in toks if t in self.doc_freq]
        if not known:
            return []
        # the scores of every chunk, then the top n by hand: bm25s's retrieve() took 14 ms for
        # this at 100k chunks, get_scores and a partial sort 0.7 ms
        scores = np.asarray(self._model.get_scores(known), dtype=np.float32)
        n = min(k, len(scores))
        nth = scores[np.argpartition(-scores, n - 1)[:n]].min()  # the n-th best score
        top = np.flatnonzero((scores >= nth) & (scores > 0))
        top = top[np.lexsort((top, -scores[top]))][:n]  # best first; ties by position
        return [(self.ids[int(i)], float(scores[i])) for i in top]
