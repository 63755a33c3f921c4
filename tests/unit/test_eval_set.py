"""Checks the known-answer evaluation set (eval/cases.jsonl) against the corpus.

Independent of the assistant package: it only reads eval/*.jsonl and corpus/*.txt.
Set EVAL_CASES to validate another file in the same format; the size and coverage
checks then are skipped (they describe the bundled set only).
"""

from __future__ import annotations

import json
import os
import re
from collections import Counter
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CORPUS_DIR = ROOT / "corpus"
DEFAULT_CASES = ROOT / "eval" / "cases.jsonl"
CASES_PATH = Path(os.environ.get("EVAL_CASES", DEFAULT_CASES)).resolve()
IS_DEFAULT_SET = DEFAULT_CASES.resolve() == CASES_PATH

DOC_IDS = {
    "four-levels": "four-levels-of-nhs-commissioning.txt",
    "commissioning-levels": "commissioning-levels.txt",
    "nhs-commissioning": "nhs-commissioning.txt",
    "guide-to-practice": "guide-to-commissioning-practice.txt",
    "course-level-1": "commissioning-course-level-1.txt",
}
TOPIC_TAGS = {
    "definition",
    "number",
    "date",
    "list",
    "comparison",
    "multi-passage",
    "follow-up",
    "who",
    "level",
    "cycle",
    "procurement",
    "off-topic",
    "not-in-corpus",
    "false-premise",
    "injection",
}
UNANSWERABLE_KINDS = {"off-topic", "not-in-corpus", "false-premise", "injection"}
ALLOWED_TAGS = TOPIC_TAGS | set(DOC_IDS)
REQUIRED = {
    "id": str,
    "question": str,
    "answerable": bool,
    "must": list,
    "evidence": str,
    "tags": list,
}


def norm(text: str) -> str:
    """Matching rule of the set: case-insensitive, runs of whitespace collapsed."""
    return re.sub(r"\s+", " ", text).strip().lower()


def _load_lines() -> list[tuple[int, str]]:
    lines = CASES_PATH.read_text(encoding="utf-8").splitlines()
    return [(n, line) for n, line in enumerate(lines, 1) if line.strip()]


def _load_cases() -> list[dict]:
    return [json.loads(line) for _, line in _load_lines()]


CASES = _load_cases()
CORPUS = {
    path.name: norm(path.read_text(encoding="utf-8")) for path in sorted(CORPUS_DIR.glob("*.txt"))
}
ALL_TEXT = "\n".join(CORPUS.values())
ANSWERABLE = [c for c in CASES if c.get("answerable") is True]
UNANSWERABLE = [c for c in CASES if c.get("answerable") is False]


def ids(cases: list[dict]) -> list[str]:
    return [str(c.get("id")) for c in cases]


def test_corpus_documents_present():
    assert set(DOC_IDS.values()) <= set(CORPUS), "corpus/*.txt is missing a document"


def test_every_line_parses_as_object():
    for n, line in _load_lines():
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as exc:  # pragma: no cover - failure path
            pytest.fail(f"line {n} is not valid JSON: {exc}")
        assert isinstance(obj, dict), f"line {n} is not a JSON object"


def test_ids_unique():
    dupes = [i for i, k in Counter(ids(CASES)).items() if k > 1]
    assert not dupes, f"duplicate ids: {dupes}"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_required_fields_and_types(case):
    for field, typ in REQUIRED.items():
        assert field in case, f"missing field {field!r}"
        assert isinstance(case[field], typ), f"{field!r} should be {typ.__name__}"
    assert case["id"].strip()
    assert case["question"].strip()
    unknown = set(case) - set(REQUIRED) - {"history"}
    assert not unknown, f"unknown fields: {unknown}"
    assert case["tags"]
    assert all(isinstance(t, str) for t in case["tags"])
    bad = set(case["tags"]) - ALLOWED_TAGS
    assert not bad, f"unknown tags: {bad}"
    for group in case["must"]:
        assert isinstance(group, list), "each must group is a list"
        assert group, "each must group is non-empty"
        for alt in group:
            assert isinstance(alt, str), "must alternatives are strings"
            assert alt.strip(), "must alternatives are non-empty"
            assert len(alt) <= 60, f"must alternative too long: {alt!r}"


@pytest.mark.parametrize("case", CASES, ids=ids(CASES))
def test_answerable_vs_unanswerable_shape(case):
    if case["answerable"]:
        assert case["must"], "answerable case needs must groups"
        assert case["evidence"].strip(), "answerable case needs evidence"
        doc_tags = [t for t in case["tags"] if t in DOC_IDS]
        assert len(doc_tags) == 1, f"answerable case needs exactly one document tag, got {doc_tags}"
        assert not set(case["tags"]) & UNANSWERABLE_KINDS
    else:
        assert case["must"] == [], "unanswerable case must have must == []"
        assert case["evidence"] == "", "unanswerable case must have evidence == ''"
        assert set(case["tags"]) & UNANSWERABLE_KINDS, "unanswerable case needs a kind tag"
        assert not set(case["tags"]) & set(DOC_IDS)


@pytest.mark.parametrize("case", ANSWERABLE, ids=ids(ANSWERABLE))
def test_evidence_occurs_in_exactly_one_document(case):
    evidence = norm(case["evidence"])
    assert 20 <= len(evidence) <= 120, f"evidence length {len(evidence)} outside 20-120"
    docs = [name for name, text in CORPUS.items() if evidence in text]
    assert len(docs) == 1, f"evidence found in {docs or 'no document'}"
    assert CORPUS[docs[0]].count(evidence) == 1, "evidence occurs more than once in its document"
    doc_tag = next(t for t in case["tags"] if t in DOC_IDS)
    assert DOC_IDS[doc_tag] == docs[0], f"document tag {doc_tag} but evidence is in {docs[0]}"


@pytest.mark.parametrize("case", ANSWERABLE, ids=ids(ANSWERABLE))
def test_every_must_group_occurs_in_corpus(case):
    for group in case["must"]:
        assert any(norm(alt) in ALL_TEXT for alt in group), (
            f"no alternative of {group} occurs in the corpus"
        )


@pytest.mark.parametrize(
    "case", [c for c in CASES if "history" in c], ids=ids([c for c in CASES if "history" in c])
)
def test_history_turns(case):
    history = case["history"]
    assert isinstance(history, list), "history must be a list"
    assert history, "history must be non-empty"
    for turn in history:
        assert isinstance(turn, dict)
        assert set(turn) == {"role", "content"}
        assert turn["role"] in {"user", "assistant"}
        assert isinstance(turn["content"], str)
        assert turn["content"].strip()
    assert history[0]["role"] == "user"


def test_follow_up_tag_matches_history():
    for case in CASES:
        if "follow-up" in case["tags"]:
            assert case.get("history"), f"{case['id']}: follow-up case without history"


# ---- size and coverage of the bundled set -----------------------------------------------------

bundled_only = pytest.mark.skipif(
    not IS_DEFAULT_SET, reason="coverage checks apply to eval/cases.jsonl only"
)


@bundled_only
def test_at_least_100_cases():
    assert len(CASES) >= 100


@bundled_only
def test_at_least_25_unanswerable():
    assert len(UNANSWERABLE) >= 25


@bundled_only
@pytest.mark.parametrize("doc_id", sorted(DOC_IDS))
def test_each_document_has_8_answerable_cases(doc_id):
    count = sum(1 for c in ANSWERABLE if doc_id in c["tags"])
    assert count >= 8, f"{doc_id}: only {count} answerable cases"


@bundled_only
def test_at_least_8_follow_ups_with_history():
    follow_ups = [c for c in CASES if "follow-up" in c["tags"] and c.get("history")]
    assert len(follow_ups) >= 8
