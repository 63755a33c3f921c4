"""The chat page's formatting: escaping, highlighting, ages, sources, history and ratings."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.pipeline import Assistant
from assistant.schema import Answer, Citation, Turn
from assistant.serve.display import source_key
from assistant.serve.ui import (
    CLOSEST_TITLE,
    age_line,
    answer_body,
    answer_markdown,
    highlight,
    history_turns,
    md_text,
    plain_text,
    rated_exchange,
    render_answer,
    stream_answer,
)

HOSTILE = [
    "<script>alert(1)</script>",
    '<img src=x onerror="alert(1)">',
    "[click](javascript:alert(1))",
    "![x](http://example.org/x.png)",
    "[ref]: javascript:alert(1)",
    "`code` *bold* _it_ ~~gone~~ # heading | a | b |",
    "back\\slash & ampersand &amp; entity",
]


@pytest.mark.parametrize("text", HOSTILE)
def test_md_text_leaves_no_html_and_no_link_syntax(text: str) -> None:
    out = md_text(text)
    assert "<" not in out
    assert ">" not in out
    assert not re.search(r"(?<!\\)\][(\[:]", out)  # no unescaped "](", "][" or "]:"
    assert plain_text(out) == text  # the reader sees exactly the original


def test_citation_markers_stay_readable() -> None:
    assert md_text("Most of it goes to CCGs. [1] [2]") == "Most of it goes to CCGs. [1] [2]"


def test_highlight_marks_each_quote_and_escapes_the_rest() -> None:
    passage = "First <b>one</b>. Second sentence. Third one."
    out = highlight(passage, ["Second sentence.", "Third one.", "not there"])
    assert (
        out == "First &lt;b&gt;one&lt;/b&gt;. <mark>Second sentence.</mark> <mark>Third one.</mark>"
    )


def test_highlight_ignores_overlapping_quotes() -> None:
    assert highlight("abc def", ["abc def", "def"]) == "<mark>abc def</mark>"


def test_age_line_says_how_old_and_what_changed() -> None:
    line = age_line("before 2013", "historical", "PCTs were abolished in 2013.")
    assert "Source from before 2013 — historical guidance. PCTs were abolished in 2013." in line
    assert "Source date unknown" in age_line("", "current")


def _answer(*, refused: bool = False, search_query: str = "") -> Answer:
    cite = Citation(
        n=1,
        chunk_id="doc:0",
        doc_id="doc",
        title="Guide <i>",
        section="Levels",
        quote="CCGs commission care. [x](javascript:1)",
        passage="Intro. CCGs commission care. [x](javascript:1) Outro.",
        era="before 2013",
        status="historical",
        quotes=["CCGs commission care.", "[x](javascript:1)"],
    )
    note = "Note: this answer cites historical guidance."
    return Answer(
        question="Who commissions care?",
        answer="I can't say." if refused else f"CCGs commission care. [1]\n\n{note}",
        refused=refused,
        citations=[] if refused else [cite],
        notices=[] if refused else [note],
        search_query=search_query,
    )


def test_a_normal_answer_and_its_sources() -> None:
    answer = _answer(search_query="Which bodies? Who commissions care?")
    assert answer_body(answer) == "CCGs commission care. [1]"
    messages = render_answer(answer)
    assert [m.metadata.get("title") for m in messages] == [None, "Sources (1)"]
    text, sources = (str(m.content) for m in messages)
    key = source_key(answer)
    assert text.startswith(
        f'CCGs commission care. <a class="cite-ref" href="#src-{key}-1">[1]</a>\n\n'
        "*Note: this answer cites historical"
    )  # the marker links to its source in the Sources block
    assert f'<span id="src-{key}-1" class="source-head" tabindex="-1">' in sources
    assert "**[1] Guide &lt;i&gt; — Levels**" in sources
    assert "<mark>CCGs commission care.</mark> <mark>[x\\](javascript:1)</mark>" in sources
    assert "historical guidance" in sources
    assert "*Searched for:* Which bodies? Who commissions care?" in sources
    assert not re.search(r"<(?!/?(mark|span)\b)", sources)  # our own tags only
    assert not re.search(r"<(?!/?(a|button|span)\b)", text)


def test_a_declined_answer_looks_different() -> None:
    messages = render_answer(_answer(refused=True))
    assert 'class="declined"' in str(messages[0].content)
    assert all(m.metadata.get("title") != "Sources (0)" for m in messages)


def test_declined_answers_offer_the_closest_passages(tiny_assistant: Assistant) -> None:
    answer = tiny_assistant.ask("What do the guides say about commissioning?")
    answer = Answer(answer.question, "no", True, [], passages=answer.passages)
    messages = render_answer(answer)
    assert messages[1].metadata["title"] == CLOSEST_TITLE
    assert answer.passages[0].chunk.doc.title in str(messages[1].content)


def test_streaming_reveals_the_answer_then_adds_sources() -> None:
    answer = _answer()
    steps = list(stream_answer(answer))
    assert len(steps) >= 2
    assert all(len(s) == 1 for s in steps[:-1])
    assert len(steps[-1]) == 2
    lengths = [len(str(s[0].content)) for s in steps]
    assert lengths == sorted(lengths)


def test_history_turns_drop_sources_and_markup() -> None:
    history = [
        {"role": "user", "content": "What is *Specialised* Commissioning?"},
        {"role": "assistant", "content": "It is hosted by \\*PCT\\*. [1]", "metadata": None},
        {"role": "assistant", "content": "**[1] Guide**", "metadata": {"title": "Sources (1)"}},
        {"role": "assistant", "content": answer_markdown(_answer(refused=True))},
        {"role": "system", "content": "ignored"},
        "not a message",
    ]
    assert history_turns(history) == [
        Turn("user", "What is *Specialised* Commissioning?"),
        Turn("assistant", "It is hosted by *PCT*. [1]"),
        Turn("assistant", "I can't say."),
    ]


def test_rated_exchange_finds_the_question_of_an_answer_or_its_sources() -> None:
    history = [
        {"role": "user", "content": "First?"},
        {"role": "assistant", "content": "One. [1]"},
        {"role": "user", "content": "Second?"},
        {"role": "assistant", "content": "Two \\*x\\*. [1]"},
        {"role": "assistant", "content": "**[1]**", "metadata": {"title": "Sources (1)"}},
    ]
    expected = ("Second?", "Two *x*. [1]", [Turn("user", "First?"), Turn("assistant", "One. [1]")])
    assert rated_exchange(history, 3) == expected
    assert rated_exchange(history, 4) == expected
    assert rated_exchange(history, 0) is None  # a user message is not rated
    assert rated_exchange(history, 9) is None


# -- pii: the question box keeps a question with personal data out of the conversation ---------


def test_the_question_box_refuses_personal_data_naming_the_kinds(tmp_path: Path) -> None:
    from assistant.records.feedback import FeedbackStore
    from assistant.serve.ui import _Handlers

    def no_assistant() -> Assistant:
        raise AssertionError("the check needs no assistant")

    handlers = _Handlers(no_assistant, FeedbackStore(tmp_path))
    refused = handlers.check("Jane Smith, DOB 14/03/1962: who pays for her care?")
    assert refused["is_valid"] is False
    assert "date of birth" in refused["message"]
    assert "rephrase" in refused["message"]
    assert "1962" not in refused["message"]
    assert handlers.check("Who commissions GP services?")["is_valid"] is True
    assert _Handlers(no_assistant, FeedbackStore(tmp_path, "redact")).check(
        "NHS number 943 476 5919"
    )["is_valid"]


def test_one_linked_marker_per_run_and_a_copy_button_the_history_ignores() -> None:
    cite = Citation(
        n=1, chunk_id="d:0", doc_id="d", title="Guide", section="", quote="A.", passage="A. B."
    )  # fmt: skip
    answer = Answer("Q?", "A. [1] B. [1]\n- x [1]\n- y [1]", False, [cite])
    markdown = answer_markdown(answer)
    assert markdown.count('class="cite-ref"') == 1
    assert "A. B.\n\n- x\n- y <a" in markdown  # the list keeps its lines, one marker after it
    assert '<button type="button" class="copy-answer">' in markdown
    assert "Sources:&#10;[1] Guide</span>" in markdown  # the copy text, hidden, for the button
    shown = plain_text(markdown)
    assert shown == "A. B.\n\n- x\n- y [1]"  # history and ratings get the answer, not the button
    assert history_turns([{"role": "assistant", "content": markdown}])[0].content == shown
    streamed = [str(step[0].content) for step in stream_answer(answer)][:-1]
    assert all("[1]" not in s or s.endswith("[1]") for s in streamed)
