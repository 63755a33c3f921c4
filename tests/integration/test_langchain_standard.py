"""LangChain's standard retriever tests, run on HybridRetriever over the real index."""

from __future__ import annotations

from typing import Any

import pytest
from langchain_tests.integration_tests import RetrieversIntegrationTests

from assistant.embeddings import Embedder
from assistant.index import IndexHandle
from assistant.retrieval import HybridRetriever

pytestmark = pytest.mark.slow


class TestHybridRetrieverStandard(RetrieversIntegrationTests):
    @pytest.fixture(autouse=True)
    def _real_index(self, real_handle: IndexHandle, real_embedder: Embedder) -> None:
        # the standard tests read class-level properties; they are filled per test from the
        # session fixtures, so the model loads and the corpus is indexed once per session
        self._params = {"index": real_handle, "embedder": real_embedder, "k": 4}

    @property
    def retriever_constructor(self) -> type[HybridRetriever]:
        return HybridRetriever

    @property
    def retriever_constructor_params(self) -> dict[str, Any]:
        return dict(self._params)

    @property
    def retriever_query_example(self) -> str:
        return "What are the four stages of the commissioning cycle?"

    def test_example_query_returns_at_least_three_documents(self) -> None:
        retriever = self.retriever_constructor(**self.retriever_constructor_params)
        docs = retriever.invoke(self.retriever_query_example)
        assert len(docs) >= 3
        assert "four separate stages" in docs[0].page_content
