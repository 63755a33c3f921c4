"""The decision to answer or decline, fitted on a known-answer set rather than set by hand.

A logistic model over the evidence features the answer stage measures (how close the best
passage and sentence are to the question, how much of the question's vocabulary the corpus and
the best passage hold). ``assistant calibrate --set eval/cases.jsonl`` fits it and writes the
JSON file the package ships (``assistant/calibration.json``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from importlib import resources
from pathlib import Path

import numpy as np

from assistant.errors import ConfigError

__all__ = ["FEATURES", "Calibration", "fit"]

FEATURES = (
    "top_dense",
    "known_terms",
    "best_unit",
    "best_unit_cos",
    "top_coverage",
    "answer_coverage",
    "answer_type",
    "numbers_found",
    "asks_present",
)


@dataclass(frozen=True)
class Calibration:
    weights: dict[str, float]
    bias: float
    mean: dict[str, float]
    scale: dict[str, float]
    threshold: float = 0.5
    fitted_on: str = ""
    stats: dict[str, float] = field(default_factory=dict)

    def probability(self, features: Mapping[str, float]) -> float:
        """Probability that the guidance answers the question."""
        z = self.bias + sum(
            w * (features.get(f, 0.0) - self.mean[f]) / self.scale[f]
            for f, w in self.weights.items()
        )
        return 1.0 / (1.0 + math.exp(-max(-50.0, min(50.0, z))))

    def answers(self, features: Mapping[str, float]) -> bool:
        return self.probability(features) >= self.threshold

    def save(self, path: Path) -> None:
        path.write_text(json.dumps(asdict(self), indent=2) + "\n", encoding="utf-8")

    @classmethod
    def load(cls, path: Path | None = None) -> Calibration:
        try:
            if path is None:
                raw = resources.files("assistant").joinpath("calibration.json").read_text("utf-8")
            else:
                raw = path.read_text(encoding="utf-8")
            return cls(**json.loads(raw))
        except (OSError, ValueError, TypeError) as err:
            where = path or "the packaged calibration.json"
            raise ConfigError(f"cannot read the refusal calibration {where}: {err}") from err


def fit(
    rows: Sequence[Mapping[str, float]],
    answerable: Sequence[bool],
    *,
    l2: float = 0.1,
    steps: int = 5000,
    fitted_on: str = "",
) -> Calibration:
    """Logistic regression (standardised features, L2) by gradient descent; threshold 0.5."""
    if len(set(answerable)) < 2:
        raise ConfigError("calibration needs both answerable and unanswerable cases")
    x = np.array([[r.get(f, 0.0) for f in FEATURES] for r in rows], dtype=np.float64)
    y = np.array(answerable, dtype=np.float64)
    mean = x.mean(axis=0)
    scale = x.std(axis=0)
    scale[scale == 0] = 1.0
    xs = (x - mean) / scale
    # weight the classes equally, whatever their counts
    sample_w = np.where(y == 1, 0.5 / y.mean(), 0.5 / (1 - y.mean()))
    w = np.zeros(len(FEATURES))
    b = 0.0
    lr = 0.1
    n = len(y)
    for _ in range(steps):
        p = 1 / (1 + np.exp(-(xs @ w + b)))
        g = (p - y) * sample_w
        w -= lr * (xs.T @ g / n + l2 * w)
        b -= lr * float(g.mean())
    pred = 1 / (1 + np.exp(-(xs @ w + b))) >= 0.5
    stats = {
        "cases": float(n),
        "answer_recall": float((pred & (y == 1)).sum() / max(1, (y == 1).sum())),
        "decline_recall": float((~pred & (y == 0)).sum() / max(1, (y == 0).sum())),
    }
    return Calibration(
        weights={f: float(v) for f, v in zip(FEATURES, w, strict=True)},
        bias=float(b),
        mean={f: float(v) for f, v in zip(FEATURES, mean, strict=True)},
        scale={f: float(v) for f, v in zip(FEATURES, scale, strict=True)},
        fitted_on=fitted_on,
        stats=stats,
    )
