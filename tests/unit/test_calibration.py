"""The answer-or-decline model: fitting, applying, saving."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from assistant.answer.calibration import FEATURES, Calibration, fit
from assistant.errors import ConfigError


def separable(n: int = 40, seed: int = 7) -> tuple[list[dict[str, float]], list[bool]]:
    """Answerable cases have strong evidence, unanswerable ones weak, with some noise."""
    rng = np.random.default_rng(seed)
    rows: list[dict[str, float]] = []
    labels: list[bool] = []
    for i in range(n):
        good = i % 2 == 0
        centre = 0.75 if good else 0.25
        row = {f: float(np.clip(centre + rng.normal(0, 0.08), 0, 1)) for f in FEATURES}
        row["answer_type"] = 1.0 if good else float(i % 4 == 1)
        rows.append(row)
        labels.append(good)
    return rows, labels


def test_fit_classifies_separable_features() -> None:
    rows, labels = separable()
    cal = fit(rows, labels, fitted_on="synthetic")
    assert [cal.answers(r) for r in rows] == labels
    assert cal.stats == {
        "cases": 40.0,
        "refusal_precision": 1.0,
        "refusal_recall": 1.0,
        "false_refusal_rate": 0.0,
    }
    assert cal.probe_normalised  # fitted on features read against the index's probes
    assert cal.fitted_on == "synthetic"
    assert cal.threshold == 0.5
    assert set(cal.weights) == set(cal.mean) == set(cal.scale) == set(FEATURES)
    assert cal.weights["top_dense"] > 0  # more evidence, more likely to answer
    # new points on either side
    strong = dict.fromkeys(FEATURES, 0.8)
    weak = dict.fromkeys(FEATURES, 0.2)
    assert cal.probability(strong) > 0.9
    assert cal.probability(weak) < 0.1


def test_constant_feature_does_not_divide_by_zero() -> None:
    rows, labels = separable()
    for row in rows:
        row["numbers_found"] = 1.0
    cal = fit(rows, labels)
    assert cal.scale["numbers_found"] == 1.0
    assert all(math.isfinite(w) for w in cal.weights.values())


def test_fit_with_one_class_only_is_a_config_error() -> None:
    rows, _ = separable(6)
    with pytest.raises(ConfigError, match="both answerable and unanswerable"):
        fit(rows, [True] * 6)
    with pytest.raises(ConfigError):
        fit(rows, [False] * 6)


def test_save_load_round_trip(tmp_path: Path) -> None:
    rows, labels = separable()
    cal = fit(rows, labels, fitted_on="synthetic")
    path = tmp_path / "cal.json"
    cal.save(path)
    loaded = Calibration.load(path)
    assert loaded == cal
    assert [loaded.probability(r) for r in rows] == [cal.probability(r) for r in rows]


def test_probability_is_a_bounded_logistic() -> None:
    cal = Calibration(
        weights={"top_dense": 2.0}, bias=0.5, mean={"top_dense": 0.5}, scale={"top_dense": 0.25}
    )
    # z = 0.5 + 2 * (0.75 - 0.5) / 0.25 = 2.5
    assert cal.probability({"top_dense": 0.75}) == pytest.approx(1 / (1 + math.exp(-2.5)))
    assert cal.probability({}) == pytest.approx(1 / (1 + math.exp(-(0.5 - 4.0))))  # missing: 0
    assert cal.probability({"top_dense": 1e9}) == pytest.approx(1.0)
    assert cal.probability({"top_dense": -1e9}) == pytest.approx(0.0)


def test_packaged_calibration_loads() -> None:
    cal = Calibration.load()
    assert set(cal.weights) == set(FEATURES)
    assert 0 < cal.threshold < 1


def test_unreadable_calibration_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"missing\.json"):
        Calibration.load(tmp_path / "missing.json")
    bad = tmp_path / "bad.json"
    bad.write_text("{not json")
    with pytest.raises(ConfigError, match=r"bad\.json"):
        Calibration.load(bad)
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"weights": {}}))
    with pytest.raises(ConfigError, match=r"wrong\.json"):
        Calibration.load(wrong)
