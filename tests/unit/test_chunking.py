"""Chunking: sections from headings, lists with their introduction, no debris, stable ids."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from assistant.chunking import (
    chunk_document,
    chunk_documents,
    chunk_of_unit,
    is_debris,
    parse_unit_id,
    split_units,
    unit_id,
)
from assistant.ingest import ingest
from assistant.schema import Chunk, DocInfo, SourceDocument

REAL_CORPUS = Path(__file__).resolve().parents[2] / "corpus"
INFO = DocInfo(doc_id="guide", title="Guide title", path="guide.md")


def doc(text: str, info: DocInfo = INFO) -> SourceDocument:
    return SourceDocument(info=info, text=text, sha256="0" * 64)


@pytest.fixture(scope="module")
def real_chunks() -> list[Chunk]:
    return chunk_documents(ingest(REAL_CORPUS).documents)


SAMPLE = """# Guide title

Opening paragraph that explains what the guide is about, long enough to stand alone as
a passage of its own.

## Budgets

The budget is held by the regional boards, which publish their spending every year for
everyone to read.

## Stages

The cycle has three stages:

- Assess the needs of the local population.
- Plan the services that meet those needs.
- Review the outcomes against the plan.

## Did you know?

Boards met for the first time in 2013, in a room that is still used for their annual meeting today.

Click here to inform us.

Take Exam

Page of - Completed
"""


#: passages packed only up to this, so each paragraph of SAMPLE stays a passage of its own
SMALL = 120


def test_headings_become_sections() -> None:
    chunks = chunk_document(doc(SAMPLE), min_chars=SMALL)
    assert [(c.section, c.text.split()[:2]) for c in chunks] == [
        ("", ["Opening", "paragraph"]),
        ("Budgets", ["The", "budget"]),
        ("Stages", ["The", "cycle"]),
        ("Stages", ["Boards", "met"]),
    ]
    # the title heading (#) is not a section; headings themselves are not passage text
    assert all("#" not in c.text for c in chunks)
    # "Did you know?" labels a call-out box: the section stays the one before it
    assert chunks[-1].text.startswith("Boards met for the first time")
    assert [c.position for c in chunks] == list(range(len(chunks)))
    assert all(c.doc == INFO for c in chunks)


def test_list_stays_with_its_introduction() -> None:
    chunks = chunk_document(doc(SAMPLE), min_chars=SMALL)
    (stages,) = [c for c in chunks if "three stages" in c.text]
    assert stages.text == (
        "The cycle has three stages:\n- Assess the needs of the local population.\n"
        "- Plan the services that meet those needs.\n- Review the outcomes against the plan."
    )


def test_debris_lines_are_dropped() -> None:
    text = "\n".join(c.text for c in chunk_document(doc(SAMPLE), min_chars=SMALL))
    for debris in ("Click here", "Take Exam", "Page of", "Completed"):
        assert debris not in text


@pytest.mark.parametrize(
    "line",
    [
        "Click here to inform us.",
        "Take Exam",
        "take the exam",
        "Page of - Completed",
        "Page 3 of 7 - Completed",
        "- - Did you know? -",
        "## Useful Websites",
        "This ends the course. You can now continue to the exam.",
        "Back to top",
        "Please see the following for more information:",
    ],
)
def test_is_debris(line: str) -> None:
    assert is_debris(line)


@pytest.mark.parametrize(
    "line",
    [
        "Commissioners should click through the data to find out more about needs.",
        "The exam board sets the standard.",
        "Page 3 describes the cycle.",
    ],
)
def test_guidance_is_not_debris(line: str) -> None:
    assert not is_debris(line)


def test_real_corpus_has_no_debris_in_any_chunk(real_chunks: list[Chunk]) -> None:
    assert real_chunks
    for chunk in real_chunks:
        for debris in (
            "Click here to inform us.",
            "Take Exam",
            "Page of - Completed",
            "This ends the course",
            "Can you think of a useful website?",
            "Please see the following for more information",
        ):
            assert debris not in chunk.text, (chunk.chunk_id, debris)
        for line in chunk.text.splitlines():
            assert not is_debris(line), (chunk.chunk_id, line)


def test_real_corpus_sections_lists_and_run_in_labels(real_chunks: list[Chunk]) -> None:
    by_doc: dict[str, list[Chunk]] = {}
    for c in real_chunks:
        by_doc.setdefault(c.doc.doc_id, []).append(c)
    assert set(by_doc) == {
        "four-levels",
        "commissioning-levels",
        "nhs-commissioning",
        "guide-to-practice",
        "course-level-1",
    }
    course = by_doc["course-level-1"]
    (cycle,) = [c for c in course if "four separate stages:" in c.text]
    assert cycle.section == "What is the commissioning cycle?"
    assert cycle.text.startswith("The cycle can be broken down into four separate stages:\n- ")
    assert cycle.text.count("\n- ") == 4
    assert "- Monitoring – ongoing process" in cycle.text

    (budget,) = [c for c in by_doc["nhs-commissioning"] if "209 clinical" in c.text]
    assert budget.section == "What has changed?"

    four = {c.section: c for c in by_doc["four-levels"]}
    for label in (
        "Individual level",
        "Local level",
        "Strategic level",
        "Regional/sub-regional level",
    ):
        chunk = four[f"4 - Levels Of Commissioning › {label}"]
        assert chunk.text.startswith(f"{label} - ")


def test_run_in_label_becomes_a_sub_section() -> None:
    text = (
        "# Guide title\n\n## Levels\n\n"
        "Individual level - Commissioning at this level may be done by the individual, a family "
        "carer, or an independent broker acting for them.\n\n"
        "Communities. Local groups commission services for their neighbourhood and report back "
        "to the council every year.\n\n"
        "This paragraph has no label at all and simply continues the section with more words."
    )
    sections = [c.section for c in chunk_document(doc(text))]
    assert sections == ["Levels › Individual level", "Levels › Communities", "Levels"]
    # without a heading above, the label is the section on its own
    alone = chunk_document(doc("Local level - " + "word " * 40))
    assert alone[0].section == "Local level"


def test_chunk_ids_are_stable_and_follow_the_text() -> None:
    first = chunk_document(doc(SAMPLE), min_chars=SMALL)
    again = chunk_document(doc(SAMPLE), min_chars=SMALL)
    assert [c.chunk_id for c in first] == [c.chunk_id for c in again]
    assert len({c.chunk_id for c in first}) == len(first)
    assert all(c.chunk_id.startswith("guide:") for c in first)

    edited = chunk_document(
        doc(SAMPLE.replace("regional boards", "national boards")), min_chars=SMALL
    )
    changed = [a.chunk_id != b.chunk_id for a, b in zip(first, edited, strict=True)]
    assert changed == [False, True, False, False]


def test_chunk_id_depends_on_title_and_section_too() -> None:
    base = chunk_document(doc(SAMPLE), min_chars=SMALL)[1]
    titled = doc(SAMPLE, DocInfo("guide", "Another title", "guide.md"))
    other_title = chunk_document(titled, min_chars=SMALL)[1]
    moved = doc(SAMPLE.replace("## Budgets", "## Money"))
    other_section = chunk_document(moved, min_chars=SMALL)[1]
    assert base.text == other_title.text == other_section.text
    assert len({base.chunk_id, other_title.chunk_id, other_section.chunk_id}) == 3


def test_repeated_passages_get_distinct_ids() -> None:
    para = "The same paragraph appears twice in this document, word for word, in one section."
    other = "Something else entirely, long enough to stand."
    text = f"# Guide title\n\n## Part\n\n{para}\n\n## Other\n\n{other}\n\n## Part\n\n{para}"
    chunks = [c for c in chunk_document(doc(text)) if c.text == para]
    assert len(chunks) == 2
    assert chunks[0].chunk_id != chunks[1].chunk_id
    assert chunks[1].chunk_id == chunks[0].chunk_id + "-1"


def test_long_paragraph_is_split_under_max_chars() -> None:
    sentences = [f"Sentence {i} talks about budgets, boards and other matters." for i in range(40)]
    paragraph = " ".join(sentences)
    chunks = chunk_document(doc(f"# Guide title\n\n## Long\n\n{paragraph}"), max_chars=300)
    assert len(chunks) > 1
    assert all(len(c.text) <= 300 for c in chunks)
    assert all(c.section == "Long" for c in chunks)
    # split between sentences, and nothing lost
    assert all(c.text.endswith(".") for c in chunks)
    assert " ".join(c.text for c in chunks) == paragraph


def test_long_list_is_split_into_whole_items() -> None:
    items = [
        f"Duty {i} of the board, described in enough words to make the list long."
        for i in range(20)
    ]
    text = "# Guide title\n\n## Duties\n\n" + "\n".join(f"- {item}" for item in items)
    chunks = chunk_document(doc(text), max_chars=400)
    assert len(chunks) > 1
    assert all(len(c.text) <= 400 for c in chunks)
    for chunk in chunks:
        for line in chunk.text.splitlines():
            assert re.fullmatch(r"- Duty \d+ of the board, .*\.", line), line
    got = [line[2:] for c in chunks for line in c.text.splitlines()]
    assert got == items


def test_a_list_item_longer_than_max_chars_is_split_as_prose() -> None:
    # found on Python's own documentation: one huge list item recursed without end
    item = "- " + " ".join(f"Clause {i} of one very long item, which goes on." for i in range(60))
    text = f"# Guide title\n\n## Duties\n\n- A short item first.\n{item}"
    chunks = chunk_document(doc(text), max_chars=300)
    assert len(chunks) > 2
    assert all(len(c.text) <= 300 for c in chunks)
    assert " ".join(c.text for c in chunks).replace("\n", " ") == f"- A short item first. {item}"


def test_title_and_section_are_in_embed_text() -> None:
    chunks = chunk_document(doc(SAMPLE), min_chars=SMALL)
    budgets = chunks[1]
    assert budgets.embed_text == f"Guide title — Budgets\n\n{budgets.text}"
    assert chunks[0].embed_text == f"Guide title\n\n{chunks[0].text}"


def test_metadata_round_trip() -> None:
    info = DocInfo("d", "T", "d.txt", source="s", era="2015", status="historical", note="n")
    chunk = Chunk(chunk_id="d:1", doc=info, section="S", text="Text.", position=4)
    assert Chunk.from_metadata("d:1", "Text.", chunk.metadata()) == chunk


def test_short_navigation_blocks_are_dropped() -> None:
    chunks = chunk_document(
        doc("# Guide title\n\n## Tips\n\nGood Practice Tips\n\n## Real\n\n" + "word " * 30)
    )
    assert [c.section for c in chunks] == ["Real"]


def test_split_units_keeps_list_items_whole_and_splits_sentences() -> None:
    text = (
        "First sentence here. Second one? Third (with brackets) ends!\n"
        "- Item one. Still item one.\n"
        "- Item two\n"
        "After the list. 209 groups.\n"
        "- Second list item"
    )
    assert split_units(text) == [
        ("First sentence here.", None),
        ("Second one?", None),
        ("Third (with brackets) ends!", None),
        ("Item one. Still item one.", 1),
        ("Item two", 1),
        ("After the list.", None),
        ("209 groups.", None),
        ("Second list item", 2),
    ]


def test_split_units_does_not_split_inside_a_sentence() -> None:
    assert split_units("Costs rose by 2.5 per cent, e.g. in the north. Then fell.") == [
        ("Costs rose by 2.5 per cent, e.g. in the north.", None),
        ("Then fell.", None),
    ]
    assert split_units("") == []
    assert unit_id("doc:abc", 3) == "doc:abc#3"


def test_unit_ids_parse_back_to_their_chunk_and_position() -> None:
    assert parse_unit_id(unit_id("doc#with#hashes-3", 7)) == ("doc#with#hashes-3", 7)
    assert chunk_of_unit(unit_id("doc:abc", 0)) == "doc:abc"
    assert parse_unit_id("doc:abc#x") == ("doc:abc", None)
    assert parse_unit_id("no-position") == ("no-position", None)
