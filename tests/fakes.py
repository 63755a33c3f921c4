"""Test doubles, small builders and checks shared by the tests.

:class:`FakeEmbedder` is a deterministic bag-of-words embedder: every content word is stemmed
by a crude suffix strip, hashed (blake2b, so the same in every process) into one of 255
dimensions, and the vector is L2-normalised. Texts sharing words are similar, texts sharing
none are orthogonal, so rankings over a small corpus are predictable.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from assistant.answer.calibration import Calibration
from assistant.schema import Answer

__all__ = [
    "TINY_CORPUS",
    "TINY_MANIFEST",
    "FakeEmbedder",
    "always_answer",
    "always_decline",
    "answers_above",
    "assert_cited",
    "body",
    "fake_stem",
    "write_corpus",
]

_MARKED = re.compile(r"(?:- )?(?:[^\[\]]+? \[(\d+)\](?: |$))+")


def body(answer: Answer) -> str:
    """The answer without its age notes."""
    return answer.answer.split("\n\nNote:")[0]


def assert_cited(answer: Answer) -> None:
    """Every line of the answer is made of sentences each ending with a marker of a citation."""
    assert not answer.refused
    numbers = {c.n for c in answer.citations}
    assert numbers == set(range(1, len(answer.citations) + 1))
    used: set[int] = set()
    for line in body(answer).splitlines():
        assert _MARKED.fullmatch(line), f"unmarked text in {line!r}"
        markers = {int(n) for n in re.findall(r" \[(\d+)\]", line)}
        assert re.sub(r"[^\[\]]+? \[\d+\] ?", "", line.removeprefix("- ")) == ""
        assert markers <= numbers
        used |= markers
    assert used == numbers  # every citation is referred to
    for c in answer.citations:
        assert all((c.title, c.doc_id, c.chunk_id, c.quote, c.passage))
        assert c.chunk_id.startswith(c.doc_id + ":")


_WORD = re.compile(r"[a-z0-9]+")
_STOP_WORDS = (
    "a an and are as at be been by can do does for from has have how in is it its many much of on "
    "or that the their them these they this those to was were what when where which who why will "
    "with"
)
_STOP = frozenset(_STOP_WORDS.split())
_SUFFIXES = ("ing", "es", "ed", "s")


def fake_stem(word: str) -> str:
    for suffix in _SUFFIXES:
        if len(word) > len(suffix) + 3 and word.endswith(suffix):
            return word[: -len(suffix)]
    return word


def _bucket(word: str, buckets: int) -> int:
    digest = hashlib.blake2b(word.encode("utf-8"), digest_size=8).digest()
    return 1 + int.from_bytes(digest, "big") % buckets


class FakeEmbedder:
    """Implements :class:`assistant.embeddings.Embedder` without any model."""

    backend = "torch"  # what an index built before backends existed records

    def __init__(self, model_name: str = "fake-hash", dimension: int = 256) -> None:
        self.model_name = model_name
        self.dimension = dimension
        self.calls = 0
        self.texts_encoded = 0

    def words(self, text: str) -> list[str]:
        return [fake_stem(w) for w in _WORD.findall(text.lower()) if w not in _STOP]

    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        self.calls += 1
        self.texts_encoded += len(texts)
        out = np.zeros((len(texts), self.dimension), dtype=np.float32)
        for row, text in enumerate(texts):
            words = self.words(text)
            if not words:  # no content word: a vector orthogonal to every word
                out[row, 0] = 1.0
                continue
            for word in words:
                out[row, _bucket(word, self.dimension - 1)] += 1.0
            out[row] /= np.linalg.norm(out[row])
        return out


def calibration(threshold: float) -> Calibration:
    """P(answer) = sigmoid(top_dense): with threshold 0.5 it answers whenever top_dense >= 0."""
    return Calibration(
        weights={"top_dense": 1.0},
        bias=0.0,
        mean={"top_dense": 0.0},
        scale={"top_dense": 1.0},
        threshold=threshold,
    )


def answers_above(top_dense: float) -> Calibration:
    """Answers when the best passage's cosine is at least ``top_dense``."""
    return Calibration(
        weights={"top_dense": 1.0}, bias=-top_dense, mean={"top_dense": 0.0},
        scale={"top_dense": 1.0},
    )  # fmt: skip


def always_answer() -> Calibration:
    return calibration(0.5)


def always_decline() -> Calibration:
    return calibration(1.01)  # a probability never reaches it


TINY_MANIFEST: dict[str, Any] = {
    "documents": [
        {
            "id": "widgets",
            "file": "widgets.md",
            "title": "Widget commissioning guide",
            "era": "2015",
            "status": "current",
        },
        {
            "id": "orchards",
            "file": "orchards.md",
            "title": "Orchard archive handbook",
            "era": "before 2010",
            "status": "historical",
            "note": "The orchard trusts merged into one national trust in 2012.",
        },
    ]
}

#: a tiny corpus with disjoint vocabularies, so the passage a question needs is obvious
TINY_CORPUS: dict[str, str] = {
    "widgets.md": """# Widget commissioning guide

## Budgets

The widget budget is managed by 42 regional boards across the country. Each board publishes \
an annual spending report for the ministry.

## Stages

The widget cycle has three stages:

- Assess the needs of local residents.
- Plan the services that answer those needs.
- Review the outcomes every quarter.
""",
    "orchards.md": """# Orchard archive handbook

## The apple archive

The apple archive keeps cuttings of rare heritage varieties from every county. It is hosted by \
the Lincoln orchard trust, which also trains volunteer grafters.

## Pruning

Pruning happens in late winter, when the trees are dormant and the sap is low. Volunteers prune \
the young trees first and the veteran trees last.
""",
    "harbours.md": """# Harbour maintenance notes

## Dredging

Harbour dredging removes silt from the shipping channel twice a decade. The dredging contract \
is awarded by the port authority after a public tender.

## Lighthouses

Lighthouse keepers inspect the lamps every evening and record faults in the keeper log.
""",
}


def write_corpus(folder: Path, files: dict[str, str | bytes] | None = None) -> Path:
    """Write ``files`` (default: the tiny corpus and its manifest) into ``folder``."""
    folder.mkdir(parents=True, exist_ok=True)
    if files is None:
        files = {**TINY_CORPUS, "manifest.json": json.dumps(TINY_MANIFEST)}
    for rel, data in files.items():
        path = folder / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data, encoding="utf-8")
    return folder
