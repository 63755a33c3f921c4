"""The bench's quality rows: the hand-checked list of cases a distractor page answers, and the
verdicts against issue 15's targets."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.evaluation.cases import load_cases
from bench.measure import distractor_answers
from bench.targets import quality_target_rows

ROOT = Path(__file__).resolve().parents[2]


def test_every_listed_case_is_an_unanswerable_case_of_the_guidance_set() -> None:
    cases = {c.id: c for c in load_cases(ROOT / "eval" / "cases.jsonl")}
    for case_id, reason in distractor_answers().items():
        assert case_id in cases, f"{case_id} is not a case of eval/cases.jsonl"
        assert not cases[case_id].answerable, f"{case_id} is answerable: nothing to leave out"
        page, _, why = reason.partition(": ")
        assert page.startswith("distractors/"), reason
        assert why.strip(), reason


def test_a_list_entry_needs_its_page_and_reason(tmp_path: Path) -> None:
    f = tmp_path / "list.toml"
    f.write_text('[[case]]\nid = "oos-004"\npage = "distractors/x.md"\nwhy = "it says so"\n')
    assert distractor_answers(f) == {"oos-004": "distractors/x.md: it says so"}
    f.write_text('[[case]]\nid = "oos-004"\n')
    with pytest.raises(KeyError):
        distractor_answers(f)
    assert distractor_answers(tmp_path / "missing.toml") == {}


def test_quality_targets_are_judged_in_their_direction() -> None:
    quality = {
        "hit@1": 0.86,
        "hit@5": 0.96,
        "key_fact_accuracy": 0.90,
        "refusal_precision": 0.95,
        "refusal_recall": 0.70,
        "false_refusal_rate": 0.04,
    }
    sizes = {
        "seed": {"status": "measured", "quality": {**quality, "hit@5": 1.0}},
        "10k": {"status": "measured", "quality": quality},
        "100k": {"status": "skipped"},
    }
    verdicts = {row[0]: row[2] for row in quality_target_rows(sizes)}
    assert verdicts == {
        "hit@1 ≥ 0.85 at 10k": "met",
        "hit@5 ≥ 0.97 at 10k": "**missed**",
        "key_fact_accuracy ≥ 0.9 at 10k": "met",
        "refusal_precision ≥ 0.9 at 10k": "met",
        "refusal_recall ≥ 0.88 at 10k": "**missed**",
        "false_refusal_rate ≤ 0.03 at 10k": "**missed**",
    }
