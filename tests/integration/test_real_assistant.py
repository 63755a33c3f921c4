"""The assistant over the repository's corpus with the bundled model."""

from __future__ import annotations

from pathlib import Path

import pytest
from fakes import assert_cited

from assistant.index import BuildReport
from assistant.pipeline import Assistant
from assistant.schema import Turn

pytestmark = pytest.mark.slow


def test_real_corpus_is_indexed_whole(real_build: tuple[Path, BuildReport]) -> None:
    _, report = real_build
    assert report.documents == 5
    assert report.skipped == []
    assert report.embedded == report.chunks > 20
    assert report.reused == report.removed == 0


def test_how_many_ccgs(real_assistant: Assistant) -> None:
    answer = real_assistant.ask("How many CCGs manage most of the NHS commissioning budget?")
    assert_cited(answer)
    assert "209" in answer.answer
    assert any(
        c.doc_id == "nhs-commissioning" and "209 clinical commissioning groups" in c.passage
        for c in answer.citations
    )
    assert answer.citations[0].quote in answer.citations[0].passage
    assert answer.notices  # the document is historical
    assert "historical" in answer.answer


def test_off_topic_question_is_declined(real_assistant: Assistant) -> None:
    answer = real_assistant.ask("What is the capital of France?")
    assert answer.refused
    assert answer.citations == []
    closest = answer.to_json()["closest"]
    assert 1 <= len(closest) <= 3
    assert all(p["text"] and p["doc_id"] for p in closest)


def test_follow_up_question(real_assistant: Assistant) -> None:
    answer = real_assistant.ask(
        "Who hosts it?", [Turn("user", "What is Specialised Commissioning?")]
    )
    assert answer.search_query == "What is Specialised Commissioning? Who hosts it?"
    assert not answer.refused
    assert "Leicestershire" in answer.answer
    assert answer.citations[0].doc_id == "four-levels"


def test_list_question_gets_the_whole_list(real_assistant: Assistant) -> None:
    answer = real_assistant.ask("What are the four stages of the commissioning cycle?")
    assert_cited(answer)
    for stage in ("Analysing", "Planning", "Securing", "Monitoring"):
        assert f"- {stage}" in answer.answer
    assert answer.citations[0].doc_id == "course-level-1"


def test_search_ranks_the_evidence_first(real_assistant: Assistant) -> None:
    passages = real_assistant.search("Which body commissions specialised services nationally?", k=3)
    assert len(passages) == 3
    assert any("NHS England commissions specialised services" in p.chunk.text for p in passages)
