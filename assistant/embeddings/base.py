"""What every embedding backend is: unit vectors from texts, also as a LangChain ``Embeddings``."""

from __future__ import annotations

from abc import abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
from langchain_core.embeddings import Embeddings

__all__ = ["UnitVectorEmbeddings"]


class UnitVectorEmbeddings(Embeddings):
    """A backend's ``encode`` (unit vectors, one row per text) as LangChain's two methods."""

    model_name: str
    backend: str
    dimension: int

    @abstractmethod
    def encode(self, texts: Sequence[str]) -> np.ndarray[Any, np.dtype[np.float32]]:
        """Unit vectors, one row per text."""

    def embed_documents(self, texts: list[str]) -> list[list[float]]:
        return [list(map(float, row)) for row in self.encode(texts)]

    def embed_query(self, text: str) -> list[float]:
        return [float(x) for x in self.encode([text])[0]]
