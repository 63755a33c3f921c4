"""The decision to answer or decline: a logistic model fitted on evidence, not set by hand.

The features (measured by the answer stage) say how close the best passage and sentence are to
the question, how much of the question and of the things it names the cited passages mention,
how far the best passage stands out, and whether lexical and dense retrieval agree. Scores that
move with the corpus are read relative to the index's own probe questions
(:mod:`assistant.answer.probes`), so one calibration carries over to documents it was not fitted on.

Fitted with scikit-learn (standardised features, L2, classes weighted equally) by
``assistant calibrate``: on the evaluation sets of every corpus, each with the probe questions
asked of its index as further questions to decline (the packaged ``calibration.json``), or on a
site owner's own documents without hand-written cases (``assistant calibrate --corpus DIR``).
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

__all__ = ["FEATURES", "Calibration", "decision_figures", "fit"]

FEATURES = (
    "top_dense",
    "best_unit_cos",
    "max_sentence",
    "top_coverage",
    "answer_coverage",
    "cited_coverage",
    "dense_margin",
    "lexical_share",
    "specific_found",
    "specific_missing",
    "answer_type",
    "numbers_found",
)
#: the L2 penalty's inverse strength (scikit-learn's default)
DEFAULT_C = 1.0


@dataclass(frozen=True)
class Calibration:
    weights: dict[str, float]
    bias: float
    mean: dict[str, float]
    scale: dict[str, float]
    threshold: float = 0.5
    fitted_on: str = ""
    stats: dict[str, float] = field(default_factory=dict)
    #: fitted on features read relative to the index's probe questions (older files: raw)
    probe_normalised: bool = False

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
    c: float = DEFAULT_C,
    fitted_on: str = "",
    probe_normalised: bool = True,
) -> Calibration:
    """Logistic regression (scikit-learn) on standardised :data:`FEATURES`, the two classes
    weighted equally whatever their counts; the decision threshold is 0.5."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.preprocessing import StandardScaler

    if len(set(answerable)) < 2:
        raise ConfigError("calibration needs both answerable and unanswerable cases")
    x = np.array([[r.get(f, 0.0) for f in FEATURES] for r in rows], dtype=np.float64)
    y = np.array(answerable, dtype=bool)
    scaler = StandardScaler().fit(x)
    scale = np.where(scaler.scale_ > 0, scaler.scale_, 1.0)
    model = LogisticRegression(C=c, class_weight="balanced", max_iter=5000)
    model.fit((x - scaler.mean_) / scale, y)
    cal = Calibration(
        weights={f: float(v) for f, v in zip(FEATURES, model.coef_[0], strict=True)},
        bias=float(model.intercept_[0]),
        mean={f: float(v) for f, v in zip(FEATURES, scaler.mean_, strict=True)},
        scale={f: float(v) for f, v in zip(FEATURES, scale, strict=True)},
        fitted_on=fitted_on,
        probe_normalised=probe_normalised,
    )
    figures = decision_figures([cal.answers(r) for r in rows], list(answerable))
    return Calibration(**{**asdict(cal), "stats": {"cases": float(len(y)), **figures}})


def decision_figures(answered: Sequence[bool], answerable: Sequence[bool]) -> dict[str, float]:
    """Refusal precision and recall and the false-refusal rate of some decisions."""
    refused_ok = sum(not a and not ok for a, ok in zip(answered, answerable, strict=True))
    refused = sum(not a for a in answered)
    unanswerable = sum(not ok for ok in answerable)
    false_refusals = sum(not a and ok for a, ok in zip(answered, answerable, strict=True))
    return {
        "refusal_precision": refused_ok / refused if refused else 1.0,
        "refusal_recall": refused_ok / unanswerable if unanswerable else 1.0,
        "false_refusal_rate": false_refusals / max(1, len(answerable) - unanswerable),
    }
