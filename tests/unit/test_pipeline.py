"""Answers with citations, declining, input checks and follow-ups (fake embedder, tiny corpus)."""

from __future__ import annotations

import logging
import re
from pathlib import Path

import pytest
from fakes import FakeEmbedder, always_answer, answers_above, assert_cited, body, write_corpus

from assistant.answer.calibration import FEATURES, Calibration
from assistant.answer.extractive import split_question
from assistant.conversation import clean_question, follow_up_candidates
from assistant.errors import IndexNotBuiltError, InputError
from assistant.evaluation.cases import normalise
from assistant.index import IndexHandle, IndexSnapshot, build_index
from assistant.pipeline import DECLINE_TEXT, Assistant
from assistant.schema import Turn
from assistant.settings import Settings


def test_answerable_question_is_answered_with_citations(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("How many regional boards manage the widget budget?")
    assert_cited(answer)
    assert "42 regional boards" in answer.answer
    (citation,) = answer.citations
    assert citation.doc_id == "widgets"
    assert citation.title == "Widget commissioning guide"
    assert citation.section == "Budgets"
    assert citation.status == "current"
    assert citation.era == "2015"
    assert citation.quote in citation.passage
    assert citation.quote.startswith("The widget budget is managed by 42 regional boards")
    assert answer.notices == []
    assert "historical" not in answer.answer
    assert answer.search_query == answer.question
    assert set(answer.timings_ms) == {"retrieve", "answer", "total"}
    assert 0.5 <= answer.confidence <= 1
    assert answer.passages[0].chunk.chunk_id == citation.chunk_id


def test_multi_sentence_answer_quotes_adjacent_sentences(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("Who hosts the apple archive?")
    assert_cited(answer)
    assert "Lincoln orchard trust" in body(answer)
    for c in answer.citations:
        assert c.quote in c.passage


def test_every_cited_unit_occurs_in_its_passage(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("What are the stages of the widget cycle?")
    assert_cited(answer)
    lines = body(answer).splitlines()
    assert lines[0] == "The widget cycle has three stages: [1]"
    assert lines[1:] == [
        "- Assess the needs of local residents. [1]",
        "- Plan the services that answer those needs. [1]",
        "- Review the outcomes every quarter. [1]",
    ]
    (citation,) = answer.citations
    for line in lines:
        unit = re.sub(r"^- | \[1\]$", "", line)
        assert unit in citation.passage


def test_quote_of_a_list_answer_occurs_in_the_passage(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("What are the stages of the widget cycle?")
    for c in answer.citations:
        assert normalise(c.quote) in normalise(c.passage)


def test_answer_does_not_alter_a_list_item(tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    corpus = write_corpus(
        tmp_path / "units-corpus",
        {
            "units.md": "# Support unit guide\n\n## Roles\n\n"
            "Support units carry out these functions for the boards:\n\n"
            "- Transformational functions, such as service redesign; and\n"
            "- Transactional functions, such as procurement and contract monitoring.\n"
        },
    )
    build_index(corpus, tmp_path / "units-index", fake_embedder)
    handle = IndexHandle.of(tmp_path / "units-index", fake_embedder)
    assistant = Assistant(handle, fake_embedder, calibration=always_answer())
    try:
        answer = assistant.ask("What functions do support units carry out?")
    finally:
        handle.get().close()
    assert "Transformational functions, such as service redesign" in answer.answer
    assert "; and." not in answer.answer


def test_historical_source_gets_a_note(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("When does pruning happen?")
    assert_cited(answer)
    (citation,) = answer.citations
    assert citation.status == "historical"
    assert citation.era == "before 2010"
    assert citation.note == "The orchard trusts merged into one national trust in 2012."
    (notice,) = answer.notices
    assert "historical" in notice
    assert "[1] Orchard archive handbook, before 2010" in notice
    assert citation.note in notice
    assert answer.answer.endswith("\n\n" + notice)


@pytest.mark.parametrize("question", ["", "   ", "\n\t ", "\x00\x07"])
def test_empty_question_is_an_input_error(tiny_assistant: Assistant, question: str) -> None:
    with pytest.raises(InputError, match="empty") as caught:
        tiny_assistant.ask(question)
    assert caught.value.exit_code == 2
    with pytest.raises(InputError):
        tiny_assistant.search(question)


def test_too_long_question_is_an_input_error(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, answering: Calibration
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=answering, max_question_chars=40)
    ok = "When does pruning happen in the orchard?"
    assert len(ok) == 40
    assert assistant.ask(ok).question == ok
    with pytest.raises(InputError, match="41 characters long; the limit is 40"):
        assistant.ask(ok + "x")
    # whitespace that is collapsed does not count
    assert assistant.ask("  When   does pruning happen in the orchard?  ").question == ok


def test_control_characters_are_stripped(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("Who hosts\x00 the\x1b[31m apple\x07 archive?\x7f")
    assert answer.question == "Who hosts the [31m apple archive?"
    assert not re.search(r"[\x00-\x08\x0b-\x1f\x7f]", answer.question)
    assert "Lincoln" in answer.answer
    assert clean_question("caf\u0065\u0301\tbudget\r\n", 100) == "caf\u00e9 budget"


def test_c1_control_characters_are_stripped() -> None:
    cleaned = clean_question("budget\x9b31m boards\x90", 100)
    assert not re.search("[\x80-\x9f]", cleaned)
    assert "boards" in cleaned


def test_a_follow_up_is_searched_with_the_previous_question_when_that_finds_the_answer(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=answers_above(0.3))
    history = [
        Turn("user", "What is the apple archive?"),
        Turn("assistant", "It keeps cuttings of rare heritage varieties."),
    ]
    assert assistant.ask("Who hosts it?").refused  # on its own, the evidence is too weak
    answer = assistant.ask("Who hosts it?", history)
    assert answer.question == "Who hosts it?"
    assert answer.search_query == "What is the apple archive? Who hosts it?"
    assert "Lincoln orchard trust" in answer.answer
    # a question answered on its own is searched on its own, whatever came before
    own = "Who hosts the apple archive?"
    assert assistant.ask(own, history).search_query == own


def test_an_off_topic_question_after_an_on_topic_one_is_declined(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=answers_above(0.3))
    history = [Turn("user", "What is the apple archive?"), Turn("assistant", "Cuttings.")]
    # with the previous question it would reach the apple archive's passage (0.42 > 0.3), but on
    # its own it comes no closer to the documents than the probe questions do
    answer = assistant.ask("zeppelin quantum chromodynamics", history)
    assert answer.refused
    assert answer.search_query == "zeppelin quantum chromodynamics"


def test_context_that_loses_what_the_question_names_is_not_used(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=answers_above(0.3))
    history = [Turn("user", "What is the apple archive?")]
    question = "How many widgets did Zanzibar Council buy?"  # names things no passage mentions
    assert assistant.ask(question, history).search_query == question


def test_follow_up_candidates_are_the_question_after_one_and_two_earlier_questions() -> None:
    history = [Turn("user", "A?"), Turn("assistant", "x"), Turn("user", "B?"), Turn("user", " ")]
    assert follow_up_candidates("C?", history) == ["B? C?", "A? B? C?"]
    assert follow_up_candidates("C?", []) == []


def test_standalone_question_ignores_history(tiny_assistant: Assistant) -> None:
    history = [Turn("user", "What is the apple archive?")]
    question = "When does pruning happen for veteran orchard trees?"
    assert tiny_assistant.ask(question, history).search_query == question
    assert tiny_assistant.ask("Who hosts it?").search_query == "Who hosts it?"


def test_declined_answer_has_no_citations_and_lists_the_closest_passages(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder, declining: Calibration
) -> None:
    assistant = Assistant(tiny_handle, fake_embedder, calibration=declining)
    answer = assistant.ask("How many regional boards manage the widget budget?")
    assert answer.refused is True
    assert answer.citations == []
    assert answer.notices == []
    assert answer.answer == DECLINE_TEXT
    assert answer.confidence < 1.01
    data = answer.to_json()
    assert data["refused"] is True
    assert data["citations"] == []
    closest = data["closest"]
    assert [p["rank"] for p in closest] == [1, 2, 3]
    assert closest[0]["doc_id"] == "widgets"
    assert closest[0]["text"].startswith("The widget budget")
    assert set(closest[0]) >= {"rank", "chunk_id", "doc_id", "title", "section", "text", "score"}


def test_answered_json_has_no_closest_passages(tiny_assistant: Assistant) -> None:
    data = tiny_assistant.ask("Who awards the dredging contract?").to_json()
    assert data["refused"] is False
    assert data["closest"] == []
    assert set(data) >= {"question", "answer", "refused", "citations", "timings_ms"}
    assert set(data["citations"][0]) >= {"n", "doc_id", "title", "section", "quote", "passage"}


def test_calibration_decides_on_top_dense(
    tiny_handle: IndexHandle, fake_embedder: FakeEmbedder
) -> None:
    """With weight 1 on top_dense and threshold 0.5, any question with a similar passage answers."""
    cal = Calibration(
        weights={"top_dense": 1.0}, bias=-0.5, mean={"top_dense": 0.0}, scale={"top_dense": 1.0}
    )
    assistant = Assistant(tiny_handle, fake_embedder, calibration=cal)
    close = assistant.ask("How many regional boards manage the widget budget?")
    far = assistant.ask("zeppelin quantum chromodynamics")  # no word of the corpus
    assert (close.passages[0].dense or 0.0) > 0.5
    assert not close.refused
    assert far.refused
    assert far.passages  # still retrieved, shown as closest


def test_features_are_the_calibrated_ones(tiny_assistant: Assistant) -> None:
    features = tiny_assistant.features("Who hosts the apple archive?")
    assert set(features) == set(FEATURES)
    assert features["numbers_found"] == 1.0
    assert features["specific_found"] == 1.0  # names nothing: nothing to miss
    unknown = tiny_assistant.features("zeppelin quantum")
    assert unknown["top_coverage"] < features["top_coverage"]  # read against the probes
    named = tiny_assistant.features("Who hosts the Zanzibar apple archive?")
    assert named["specific_found"] == 0.0  # "Zanzibar" is in no passage cited
    assert named["specific_missing"] == 1.0


def test_search_returns_ranked_passages(tiny_assistant: Assistant) -> None:
    passages = tiny_assistant.search("Who hosts the apple archive?", k=2)
    assert [p.rank for p in passages] == [1, 2]
    assert passages[0].chunk.doc.doc_id == "orchards"
    assert len(tiny_assistant.search("Who hosts the apple archive?")) == 5


def test_build_serves_the_new_index_on_the_next_question(
    tiny_corpus: Path, tiny_assistant: Assistant
) -> None:
    assert "Lincoln" in tiny_assistant.ask("Who hosts the apple archive?").answer
    path = tiny_corpus / "orchards.md"
    path.write_text(path.read_text().replace("Lincoln orchard trust", "Grantham cider guild"))
    report = tiny_assistant.build(tiny_corpus)
    assert report.embedded == 1
    assert "Grantham cider guild" in tiny_assistant.ask("Who hosts the apple archive?").answer


class _FixedSource:
    """A snapshot source that is not an index folder."""

    def __init__(self, snapshot: IndexSnapshot) -> None:
        self.snapshot = snapshot

    def get(self) -> IndexSnapshot:
        return self.snapshot


def test_build_needs_an_index_folder(tiny_handle: IndexHandle, fake_embedder: FakeEmbedder) -> None:
    assistant = Assistant(
        _FixedSource(tiny_handle.get()), fake_embedder, calibration=always_answer()
    )
    assert assistant.ask("When does pruning happen?").citations
    with pytest.raises(TypeError):
        assistant.build(Path("unused"))


def test_from_settings(tiny_index: Path, tmp_path: Path, fake_embedder: FakeEmbedder) -> None:
    settings = Settings(index_dir=tiny_index, embed_model="fake-hash", top_k=2)
    assistant = Assistant.from_settings(settings, fake_embedder)
    assert assistant.top_k == 2
    assert len(assistant.search("apple archive")) == 2
    with pytest.raises(IndexNotBuiltError, match="`assistant index`"):
        Assistant.from_settings(settings.with_(index_dir=tmp_path / "none"), fake_embedder)


@pytest.mark.parametrize(
    ("question", "parts"),
    [
        (
            "How far ahead can strategic commissioning plan, and how often does the cycle run?",
            ["How far ahead can strategic commissioning plan", "how often does the cycle run"],
        ),
        (
            "What is the apple archive? Who keeps its records?",
            ["What is the apple archive", "Who keeps its records"],
        ),
        ("Who hosts it?", []),
        ("Which bodies commission services nationally and regionally?", []),
    ],
)
def test_split_question(question: str, parts: list[str]) -> None:
    assert split_question(question) == parts


@pytest.mark.parametrize("enabled", [False, True])
def test_question_text_is_logged_only_when_enabled(
    tiny_assistant: Assistant, caplog: pytest.LogCaptureFixture, enabled: bool
) -> None:
    tiny_assistant.log_questions = enabled
    with caplog.at_level(logging.INFO, logger="assistant.pipeline"):
        tiny_assistant.ask("Who hosts the apple archive?")
    logged = " ".join(r.getMessage() for r in caplog.records)
    assert ("apple archive" in logged) is enabled
    assert "characters" in logged or enabled


# -- pii: the personal-data guard in the one place every shell passes through -------------------

PERSONAL = "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, jane.smith@example.nhs.uk"


def test_a_question_with_personal_data_is_refused_before_anything_is_logged_or_searched(
    tiny_assistant: Assistant, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    from assistant.errors import PersonalDataError

    tiny_assistant.log_questions = True
    searched: list[str] = []
    monkeypatch.setattr(tiny_assistant, "_evidence", lambda q, *a, **k: searched.append(q))
    spy = type("Spy", (), {"search": lambda self, q, k: searched.append(q)})()
    monkeypatch.setattr(tiny_assistant, "retriever", spy)
    with caplog.at_level(logging.DEBUG):
        for call in (
            lambda: tiny_assistant.ask(f"Who hosts the apple archive for {PERSONAL}?"),
            lambda: list(tiny_assistant.ask_stream(f"{PERSONAL}: who hosts it?")),
            lambda: tiny_assistant.search(f"apple archive {PERSONAL}"),
        ):
            with pytest.raises(PersonalDataError) as caught:
                call()
            assert caught.value.kinds == ["date of birth", "NHS number", "email address"]
            assert "943" not in str(caught.value)
    assert searched == []
    assert "943" not in caplog.text
    assert "jane" not in caplog.text.lower()


def test_earlier_turns_with_personal_data_are_refused_too(tiny_assistant: Assistant) -> None:
    from assistant.errors import PersonalDataError

    history = [Turn("user", f"About {PERSONAL}"), Turn("assistant", "I can't answer that.")]
    with pytest.raises(PersonalDataError, match="NHS number"):
        tiny_assistant.ask("Who hosts the apple archive?", history)


def test_redact_masks_then_answers(tiny_assistant: Assistant) -> None:
    tiny_assistant.pii_check = "redact"
    history = [Turn("user", f"My NHS number is 943 476 5919. {PERSONAL}")]
    answer = tiny_assistant.ask(f"Who hosts the apple archive? (for {PERSONAL})", history)
    assert_cited(answer)
    assert "Lincoln orchard trust" in body(answer)
    assert "943 476 5919" not in answer.question
    assert "943" not in answer.search_query
    assert "[NHS number]" in answer.question
    passages = tiny_assistant.search(f"apple archive {PERSONAL}")
    assert passages


def test_off_lets_personal_data_through(tiny_assistant: Assistant) -> None:
    tiny_assistant.pii_check = "off"
    answer = tiny_assistant.ask(f"Who hosts the apple archive? {PERSONAL}")
    assert "943 476 5919" in answer.question


def test_the_setting_reaches_the_assistant_and_its_twins(tiny_assistant: Assistant) -> None:
    tiny_assistant.pii_check = "redact"
    assert tiny_assistant.with_llm(None).pii_check == "redact"
    assert Assistant(tiny_assistant.index, tiny_assistant.embedder,
                     calibration=tiny_assistant.calibration).pii_check == "block"  # fmt: skip
