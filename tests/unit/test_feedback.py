"""The feedback store: rows, comments, bad input, and no network identity kept."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from assistant.errors import InputError
from assistant.evaluation.run import feedback_drafts
from assistant.schema import Turn
from assistant.serve.feedback import FEEDBACK_FILE, MAX_COMMENT_CHARS, FeedbackStore


def test_a_rating_and_its_comment_are_stored(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path / "data")
    history = [Turn("user", "What is it?"), Turn("assistant", "A unit. [1]")]
    row = store.add("Who hosts it?", "A PCT. [1]", -1, history)
    store.comment(row, "  Wrong host.  ")
    (stored,) = store.rows()
    assert stored["id"] == row
    assert (stored["question"], stored["answer"], stored["rating"]) == (
        "Who hosts it?",
        "A PCT. [1]",
        -1,
    )
    assert stored["comment"] == "Wrong host."
    assert json.loads(str(stored["history"])) == [
        {"role": "user", "content": "What is it?"},
        {"role": "assistant", "content": "A unit. [1]"},
    ]
    assert str(stored["created"]).endswith("+00:00")
    assert set(stored) == {"id", "created", "question", "history", "answer", "rating", "comment"}


def test_thumbs_down_rows_become_draft_cases(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    store.add("Good?", "Yes. [1]", 1)
    store.add("Bad?", "No. [1]", -1, comment="missing the date")
    (draft,) = feedback_drafts(tmp_path / FEEDBACK_FILE)
    assert draft["question"] == "Bad?"
    assert draft["comment"] == "missing the date"


@pytest.mark.parametrize("rating", [0, 2, -2])
def test_a_rating_is_one_or_minus_one(tmp_path: Path, rating: int) -> None:
    with pytest.raises(InputError, match="rating"):
        FeedbackStore(tmp_path).add("q", "a", rating)


def test_an_overlong_comment_is_refused(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    row = store.add("q", "a", 1)
    with pytest.raises(InputError, match=str(MAX_COMMENT_CHARS)):
        store.comment(row, "x" * (MAX_COMMENT_CHARS + 1))


def test_a_comment_on_an_unknown_row_is_an_input_error(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no feedback with id 99"):
        FeedbackStore(tmp_path).comment(99, "hello")


def test_an_unwritable_data_folder_is_a_clear_error(tmp_path: Path) -> None:
    blocker = tmp_path / "data"
    blocker.write_text("a file where the folder should be")
    with pytest.raises(InputError, match="cannot store feedback"):
        FeedbackStore(blocker).add("q", "a", 1)


def test_the_database_is_in_wal_mode(tmp_path: Path) -> None:
    FeedbackStore(tmp_path).add("q", "a", 1)
    with sqlite3.connect(tmp_path / FEEDBACK_FILE) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


# -- pii: feedback is checked before it is stored ------------------------------------------------

PERSONAL = "Jane Smith, DOB 14/03/1962, NHS number 943 476 5919, 07700 900123"


@pytest.mark.parametrize("where", ["question", "history", "comment"])
def test_feedback_with_personal_data_is_refused_and_nothing_stored(
    tmp_path: Path, where: str
) -> None:
    from assistant.errors import PersonalDataError

    store = FeedbackStore(tmp_path)
    question = PERSONAL if where == "question" else "Who hosts it?"
    history = [Turn("user", PERSONAL)] if where == "history" else []
    comment = PERSONAL if where == "comment" else ""
    with pytest.raises(PersonalDataError) as caught:
        store.add(question, "A PCT. [1]", 1, history, comment)
    assert caught.value.kinds == ["date of birth", "NHS number", "phone number"]
    assert "not stored" in str(caught.value)
    assert store.rows() == []


def test_a_comment_with_personal_data_is_refused(tmp_path: Path) -> None:
    from assistant.errors import PersonalDataError

    store = FeedbackStore(tmp_path)
    row = store.add("Who hosts it?", "A PCT. [1]", 1)
    with pytest.raises(PersonalDataError, match="phone number"):
        store.comment(row, "call me on 07700 900123")
    assert store.rows()[0]["comment"] == ""


def test_an_answer_quoting_a_contact_address_is_masked_not_refused(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path)
    store.add("Who do I write to?", "Write to england.contactus@nhs.net [1]", 1)
    assert store.rows()[0]["answer"] == "Write to [email address] [1]"


def test_redact_stores_feedback_masked(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, pii_check="redact")
    row = store.add(f"About {PERSONAL}?", "A PCT.", -1, [Turn("user", PERSONAL)], PERSONAL)
    store.comment(row, f"again: {PERSONAL}")
    (stored,) = store.rows()
    text = json.dumps(stored)
    for value in ("943 476 5919", "14/03/1962", "07700"):
        assert value not in text
    assert "[NHS number]" in str(stored["question"])
    assert "[NHS number]" in str(stored["comment"])
    assert "[NHS number]" in str(stored["history"])


def test_off_stores_feedback_as_given(tmp_path: Path) -> None:
    store = FeedbackStore(tmp_path, pii_check="off")
    store.add(PERSONAL, "A PCT.", 1)
    assert store.rows()[0]["question"] == PERSONAL
