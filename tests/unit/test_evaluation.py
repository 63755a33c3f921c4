"""Known-answer sets: loading them, matching facts, and the summary metrics."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pytest

from assistant.errors import InputError
from assistant.evaluation.cases import EvalCase, load_cases, normalise
from assistant.evaluation.run import CaseResult, evaluate, has_facts, summarise
from assistant.schema import Answer, Chunk, Citation, DocInfo, Passage, Turn

GOOD = {
    "id": "num-001",
    "question": "How many CCGs?",
    "answerable": True,
    "must": [["209"]],
    "evidence": "managed by 209 clinical commissioning groups",
    "tags": ["number"],
}


def write_lines(path: Path, lines: list[str | dict[str, Any]]) -> Path:
    path.write_text(
        "\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n",
        encoding="utf-8",
    )
    return path


# -- load_cases -----------------------------------------------------------------------------------


def test_load_cases(tmp_path: Path) -> None:
    follow_up = {
        "id": "fu-001",
        "question": "Who hosts it?",
        "answerable": True,
        "must": [["Leicestershire"]],
        "history": [{"role": "user", "content": "What is Specialised Commissioning?"}],
    }
    refuse = {"id": "oos-001", "question": "Capital of France?", "answerable": False}
    path = write_lines(tmp_path / "cases.jsonl", [GOOD, "", "   ", follow_up, refuse])
    cases = load_cases(path)
    assert [c.id for c in cases] == ["num-001", "fu-001", "oos-001"]
    assert cases[0] == EvalCase(
        id="num-001",
        question="How many CCGs?",
        answerable=True,
        must=[["209"]],
        evidence="managed by 209 clinical commissioning groups",
        tags=["number"],
    )
    assert cases[1].history == [Turn("user", "What is Specialised Commissioning?")]
    assert (cases[2].must, cases[2].evidence, cases[2].tags) == ([], "", [])


def test_the_bundled_case_set_loads() -> None:
    cases = load_cases(Path(__file__).resolve().parents[2] / "eval" / "cases.jsonl")
    assert len(cases) >= 100
    assert any(c.history for c in cases)


@pytest.mark.parametrize(
    ("line", "says"),
    [
        ("{not json", "not valid JSON"),
        ('["a list"]', "must be a JSON object"),
        (json.dumps({**GOOD, "id": 7}), "'id' must be a str"),
        (
            json.dumps({k: v for k, v in GOOD.items() if k != "question"}),
            "'question' must be a str",
        ),
        (json.dumps({**GOOD, "answerable": "yes"}), "'answerable' must be a bool"),
        (json.dumps({**GOOD, "answerable": 1}), "'answerable' must be a bool"),
        (json.dumps({**GOOD, "must": ["209"]}), "'must' must be a list of non-empty lists"),
        (json.dumps({**GOOD, "must": [[]]}), "'must' must be a list of non-empty lists"),
        (json.dumps({**GOOD, "must": [[""]]}), "'must' must be a list of non-empty lists"),
        (json.dumps({**GOOD, "history": [{"role": "bot", "content": "x"}]}), "'history'"),
        (json.dumps({**GOOD, "history": "hello"}), "'history'"),
        (json.dumps({**GOOD, "evidence": 3}), "'evidence' must be a string"),
    ],
)
def test_bad_line_is_an_input_error_naming_the_line(tmp_path: Path, line: str, says: str) -> None:
    first = {**GOOD, "id": "ok-1"}
    path = write_lines(tmp_path / "cases.jsonl", [first, "", line])
    with pytest.raises(InputError) as caught:
        load_cases(path)
    assert f"{path}:3:" in str(caught.value)
    assert says in str(caught.value)


def test_duplicate_id_names_the_second_line(tmp_path: Path) -> None:
    path = write_lines(tmp_path / "cases.jsonl", [GOOD, {**GOOD, "question": "Again?"}])
    with pytest.raises(InputError, match=r"cases\.jsonl:2: duplicate case id 'num-001'"):
        load_cases(path)


def test_missing_empty_or_undecodable_set(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="does not exist"):
        load_cases(tmp_path / "nope.jsonl")
    (tmp_path / "empty.jsonl").write_text("\n\n")
    with pytest.raises(InputError, match="no cases"):
        load_cases(tmp_path / "empty.jsonl")
    (tmp_path / "latin.jsonl").write_bytes(b'{"id": "caf\xe9"}')
    with pytest.raises(InputError, match="cannot read"):
        load_cases(tmp_path / "latin.jsonl")


# -- matching --------------------------------------------------------------------------------------


def test_normalise() -> None:
    assert normalise("  Clinical\n Commissioning\tGROUPS ") == "clinical commissioning groups"


@pytest.mark.parametrize(
    ("text", "must", "expected"),
    [
        ("Managed by 209 CCGs.", [["209"]], True),
        ("Managed by 209 CCGs.", [["210"]], False),
        ("CLINICAL Commissioning groups", [["clinical commissioning GROUPS"]], True),  # case
        ("planning,\n   agreeing  and monitoring", [["planning, agreeing and"]], True),  # spaces
        ("they agree and monitor", [["agreeing", "agree"], ["monitoring", "monitor"]], True),
        ("they agree on it", [["agreeing", "agree"], ["monitoring", "monitor"]], False),
        ("anything at all", [], True),  # nothing required
        ("", [["x"]], False),
    ],
)
def test_has_facts(text: str, must: list[list[str]], expected: bool) -> None:
    assert has_facts(text, must) is expected


# -- summary ---------------------------------------------------------------------------------------


def result(
    answerable: bool,
    gold_rank: int | None,
    *,
    refused: bool = False,
    facts_ok: bool = False,
    citations: int = 0,
    supporting: int = 0,
    total_ms: float = 0.0,
) -> CaseResult:
    case = EvalCase(id=f"c{total_ms}", question="q", answerable=answerable)
    return CaseResult(
        case=case,
        gold_rank=gold_rank,
        refused=refused,
        facts_ok=facts_ok,
        citations=citations,
        supporting_citations=supporting,
        answer="",
        retrieved=[],
        timings_ms={"total": total_ms, "retrieve": total_ms / 2},
    )


def test_summarise_hand_computed() -> None:
    results = [
        result(True, 1, facts_ok=True, citations=1, supporting=1, total_ms=10),  # A1: all good
        result(True, 3, citations=2, supporting=1, total_ms=20),  # A2: wrong facts
        result(True, None, refused=True, total_ms=30),  # A3: wrongly declined
        result(True, 7, facts_ok=True, citations=1, total_ms=40),  # A4: unsupported
        result(False, None, refused=True, total_ms=50),  # U1: rightly declined
        result(False, None, citations=1, total_ms=60),  # U2: answered
    ]
    summary = summarise(results)
    m = summary.metrics
    assert m["hit@1"] == pytest.approx(1 / 4)
    assert m["hit@3"] == pytest.approx(2 / 4)
    assert m["hit@5"] == pytest.approx(2 / 4)
    assert m["hit@10"] == pytest.approx(3 / 4)
    assert m["mrr"] == pytest.approx((1 + 1 / 3 + 0 + 1 / 7) / 4)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(4) + 1 / math.log2(8)) / 4)
    assert m["key_fact_accuracy"] == pytest.approx(2 / 4)
    assert m["citation_precision"] == pytest.approx(2 / 4)  # 2 supporting of 4 citations
    assert m["supported_answer_rate"] == pytest.approx(1 / 4)
    assert m["refusal_precision"] == pytest.approx(1 / 2)  # A3 and U1 declined; U1 rightly
    assert m["refusal_recall"] == pytest.approx(1 / 2)  # U1 of U1, U2
    assert m["false_refusal_rate"] == pytest.approx(1 / 4)
    assert m["total_p50_ms"] == pytest.approx(35.0)
    assert m["total_p95_ms"] == pytest.approx(60.0)
    assert m["retrieve_p50_ms"] == pytest.approx(17.5)
    assert m["answer_p50_ms"] == 0.0  # no case timed it
    assert summary.counts == {"cases": 6, "answerable": 4, "unanswerable": 2, "failures": 4}
    assert [r.failed for r in results] == [False, True, True, True, False, True]


def test_summarise_without_refusals_or_unanswerable_cases() -> None:
    m = summarise([result(True, 2, facts_ok=True, citations=1, supporting=1)]).metrics
    assert m["refusal_precision"] == 1.0
    assert m["refusal_recall"] == 1.0
    assert m["hit@1"] == 0.0
    assert m["hit@3"] == 1.0
    assert m["mrr"] == 0.5
    empty = summarise([])
    assert empty.counts["cases"] == 0
    assert empty.metrics["citation_precision"] == 0.0


def test_evaluate_finds_the_gold_rank_and_supporting_citations() -> None:
    info = DocInfo("d", "Doc", "d.txt")
    gold_text = "Most of the budget is managed by 209 clinical commissioning groups."
    passages = [
        Passage(Chunk("d:1", info, "", "Something unrelated.", 0), score=0.9, rank=1),
        Passage(Chunk("d:2", info, "", gold_text, 1), score=0.8, rank=2),
    ]
    case = EvalCase(
        id="num-001",
        question="How many CCGs?",
        answerable=True,
        must=[["209"]],
        evidence="managed by  209 Clinical commissioning groups",
    )
    citation = Citation(1, "d:2", "d", "Doc", "", gold_text, gold_text)
    answer = Answer(
        question=case.question,
        answer="209 CCGs [1]",
        refused=False,
        citations=[citation],
        timings_ms={"total": 5.0},
    )
    (res,) = evaluate([case], ask=lambda c: answer, search=lambda c, k: passages[:k])
    assert res.gold_rank == 2
    assert res.facts_ok is True
    assert res.citations == 1
    assert res.supporting_citations == 1
    assert res.supported is True
    assert res.failed is True  # the gold passage was not ranked first
    assert res.retrieved[1].startswith("Doc — : Most of the budget")
    assert set(res.timings_ms) == {"total", "search"}
