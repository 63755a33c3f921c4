"""How answers are shown: one marker per run of sentences from a source, lists kept, copy text."""

from __future__ import annotations

import json

from assistant.schema import Answer, Citation
from assistant.serve.display import (
    Block,
    Part,
    copy_text,
    display_blocks,
    display_json,
    display_text,
    source_key,
)


def _cite(n: int, title: str = "Guide", section: str = "", era: str = "before 2013") -> Citation:
    return Citation(
        n=n, chunk_id=f"doc:{n}", doc_id="doc", title=title, section=section, quote="q",
        passage="p", era=era, status="historical" if era else "current",
    )  # fmt: skip


def _answer(text: str, cites: list[Citation], *, refused: bool = False) -> Answer:
    return Answer(question="Q?", answer=text, refused=refused, citations=cites)


def _shown(text: str, cited: list[int]) -> str:
    return display_text(_answer(text, [_cite(n) for n in cited]))


def test_consecutive_sentences_from_one_source_share_one_marker() -> None:
    assert _shown("A is so. [1] B is so. [1] C is so. [1]", [1]) == "A is so. B is so. C is so. [1]"


def test_runs_of_several_sources_each_end_with_their_marker() -> None:
    text = "A. [1] B. [1] C. [2] D. [2] E. [1]"
    assert _shown(text, [1, 2]) == "A. B. [1] C. D. [2] E. [1]"


def test_a_list_from_one_source_keeps_its_lines_and_one_marker_after_it() -> None:
    text = "The stages are: [1]\n- Plan [1]\n- Buy; [1]\n- Review [1]\nThey repeat. [1]"
    assert (
        _shown(text, [1]) == "The stages are:\n\n- Plan\n- Buy;\n- Review [1]\n\nThey repeat. [1]"
    )
    blocks = display_blocks(text, [1])
    assert [b.kind for b in blocks] == ["p", "list", "p"]
    assert blocks[1].lines == ((Part("Plan"),), (Part("Buy;"),), (Part("Review", (1,)),))


def test_a_list_mixing_sources_keeps_each_items_marker() -> None:
    text = "Two kinds: [1]\n- one [1]\n- two [2]\n- three [2]"
    assert _shown(text, [1, 2]) == "Two kinds:\n\n- one [1]\n- two [2]\n- three [2]"


def test_markers_of_ten_and_more_and_groups() -> None:
    text = "A. [10] B. [10] C. [11][12] D. [11][12] E. [11, 12]"
    assert _shown(text, [10, 11, 12]) == "A. B. [10] C. D. E. [11][12]"


def test_only_the_answers_citations_are_markers() -> None:
    # [3] is not cited by this answer, and "[ref][1]" in a document is text
    text = "See note [3] here. [1] Link [ref][1] kept. [1]"
    assert _shown(text, [1]) == "See note [3] here. Link [ref][1] kept. [1]"


def test_a_marker_inside_a_sentence_keeps_the_punctuation_after_it() -> None:
    assert _shown("X [1], and Y [2].", [1, 2]) == "X [1], and Y [2]."


def test_paragraph_breaks_end_a_run() -> None:
    assert _shown("A. [1]\n\nB. [1]", [1]) == "A. [1]\n\nB. [1]"


def test_an_answer_with_no_citation_is_its_text() -> None:
    answer = _answer("The guidance says nothing on this.", [])
    assert display_text(answer) == "The guidance says nothing on this."
    assert display_blocks(answer.answer, []) == [Block("p", ((Part(answer.answer),),))]
    assert copy_text(answer) == "The guidance says nothing on this."  # no Sources line


def test_a_declined_answer_is_copied_with_its_heading_and_no_sources() -> None:
    answer = _answer("The documents do not cover this.", [], refused=True)
    assert copy_text(answer) == "Not covered by the guidance. The documents do not cover this."
    assert display_json(answer)["blocks"] == [
        {"type": "p", "parts": [{"text": "The documents do not cover this.", "cite": []}]}
    ]


def test_copy_text_has_the_notices_and_numbered_sources_in_marker_order() -> None:
    note = "Note: this answer cites historical guidance."
    answer = Answer(
        question="Q?",
        answer=f"A. [1] B. [1] C. [2]\n\n{note}",
        refused=False,
        citations=[_cite(2, "Other", era=""), _cite(1, "Guide", "Levels")],
        notices=[note],
    )
    assert copy_text(answer) == (
        f"A. B. [1] C. [2]\n\n{note}\n\nSources:\n"
        "[1] Guide — Levels (before 2013, historical)\n[2] Other"
    )


def test_display_json_is_json_and_keyed_per_answer() -> None:
    answer = _answer("A. [1]\n- x [1]\n- y [2]", [_cite(1), _cite(2)])
    out = json.loads(json.dumps(display_json(answer)))
    assert out["blocks"] == [
        {"type": "p", "parts": [{"text": "A.", "cite": []}]},  # its lead-in: one run with x
        {"type": "list", "items": [[{"text": "x", "cite": [1]}], [{"text": "y", "cite": [2]}]]},
    ]
    assert out["copy"].startswith("A.\n\n- x [1]\n- y [2]\n\nSources:\n[1] Guide")
    assert out["key"] == source_key(answer) != source_key(_answer("B. [1]", [_cite(1)]))


def test_first_markers_keep_the_citation_order() -> None:
    text = "A. [1] B. [1] C. [2] D. [1] E. [3] F. [3]"
    shown = _shown(text, [1, 2, 3])
    firsts = [shown.index(f"[{n}]") for n in (1, 2, 3)]
    assert firsts == sorted(firsts)
