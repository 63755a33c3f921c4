"""The evaluation gate: reading eval/thresholds.toml-style files and checking metrics."""

from __future__ import annotations

from pathlib import Path

import pytest

from assistant.errors import InputError
from assistant.gate import Shortfall, Thresholds, load_thresholds

ROOT = Path(__file__).resolve().parents[2]
METRICS = {"hit@5": 0.97, "mrr": 0.91, "false_refusal_rate": 0.02, "total_p95_ms": 80.0}

# issue 3's floors: the bundled gate may be stricter, never looser
ISSUE_FLOORS = {
    "hit@5": 1.0,
    "mrr": 0.9,
    "key_fact_accuracy": 0.9,
    "supported_answer_rate": 0.9,
    "refusal_precision": 0.9,
    "refusal_recall": 0.9,
}


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "gate.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_the_bundled_gate_is_no_looser_than_the_issue_floors() -> None:
    gate = load_thresholds(ROOT / "eval" / "thresholds.toml")
    for metric, floor in ISSUE_FLOORS.items():
        assert gate.minimum[metric] >= floor, metric


def test_a_metric_below_its_floor_or_above_its_ceiling_is_a_shortfall() -> None:
    gate = Thresholds(
        minimum={"hit@5": 1.0, "mrr": 0.9}, maximum={"false_refusal_rate": 0.05, "total_p95_ms": 50}
    )
    assert gate.check(METRICS) == [
        Shortfall("hit@5", 0.97, 1.0, "min"),
        Shortfall("total_p95_ms", 80.0, 50, "max"),
    ]
    assert str(gate.check(METRICS)[0]) == "hit@5 = 0.970 is below its floor 1"


def test_bounds_are_inclusive() -> None:
    assert Thresholds({"mrr": 0.91}, {"total_p95_ms": 80.0}).check(METRICS) == []


def test_an_unknown_metric_is_named() -> None:
    with pytest.raises(InputError, match="hit@50"):
        Thresholds({"hit@50": 1.0}, {}).check(METRICS)


def test_a_file_is_read(tmp_path: Path) -> None:
    gate = load_thresholds(
        _write(tmp_path, '[min]\n"hit@5" = 1\nmrr = 0.9\n[max]\ntotal_p95_ms = 500\n')
    )
    assert gate == Thresholds({"hit@5": 1.0, "mrr": 0.9}, {"total_p95_ms": 500.0})


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[min\nmrr = 1", "cannot read the gate file"),
        ("[floor]\nmrr = 1", "only \\[min\\] and \\[max\\]"),
        ("min = 3", "must be a table"),
        ('[min]\nmrr = "high"', "mrr must be a number"),
        ("[min]\nmrr = true", "mrr must be a number"),
        ("", "no thresholds"),
    ],
)
def test_a_bad_file_is_a_clear_input_error(tmp_path: Path, text: str, message: str) -> None:
    with pytest.raises(InputError, match=message):
        load_thresholds(_write(tmp_path, text))


def test_a_missing_file_is_named(tmp_path: Path) -> None:
    with pytest.raises(InputError, match=r"gate file not found: .*nope\.toml"):
        load_thresholds(tmp_path / "nope.toml")


def test_a_file_that_is_not_utf8_is_an_input_error(tmp_path: Path) -> None:
    path = tmp_path / "gate.toml"
    path.write_bytes(b"[min]\nmrr = 0.9 # \xff\xfe\n")
    with pytest.raises(InputError, match="cannot read"):
        load_thresholds(path)
