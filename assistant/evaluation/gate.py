"""The evaluation gate: per-set floors (enforced) and targets (reported) from a TOML file.

``eval/thresholds.toml`` has a ``[floor.SET]`` and a ``[target.SET]`` table per evaluation set
(``SET`` as named in ``eval/sets.toml``). A floor is what CI enforces: ``assistant eval --gate``
exits with :data:`GATE_EXIT_CODE` when a set's metric falls below its floor (or, for a metric
where lower is better, rises above it). A target is where the figure should get to: the report
shows each figure's gap to it, and missing one fails nothing.

A file with plain ``[min]`` and ``[max]`` tables (the older form, handy for a set one brings)
applies those bounds to every set evaluated.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from assistant.errors import InputError

__all__ = [
    "GATE_EXIT_CODE",
    "Gap",
    "Gate",
    "Shortfall",
    "Thresholds",
    "load_thresholds",
    "lower_is_better",
]

GATE_EXIT_CODE = 7
#: a bound that applies to every set (the [min]/[max] form)
ANY_SET = "*"


def lower_is_better(metric: str) -> bool:
    """Metrics where a smaller figure is the better one: false refusals and latencies."""
    return metric == "false_refusal_rate" or metric.endswith("_ms")


@dataclass(frozen=True)
class Shortfall:
    metric: str
    value: float
    bound: float
    kind: str  # "min" or "max"
    case_set: str = ""

    def __str__(self) -> str:
        relation = "below its floor" if self.kind == "min" else "above its ceiling"
        where = f"{self.case_set}: " if self.case_set and self.case_set != ANY_SET else ""
        return f"{where}{self.metric} = {self.value:.3f} is {relation} {self.bound:g}"


@dataclass(frozen=True)
class Gap:
    """How far a figure is from its target (``gap`` > 0: still to go)."""

    metric: str
    value: float
    target: float

    @property
    def gap(self) -> float:
        diff = (
            self.value - self.target if lower_is_better(self.metric) else self.target - self.value
        )
        return max(0.0, diff)

    @property
    def met(self) -> bool:
        return self.gap <= 1e-9


@dataclass(frozen=True)
class Thresholds:
    minimum: Mapping[str, float]
    maximum: Mapping[str, float]

    def check(self, metrics: Mapping[str, float], case_set: str = "") -> list[Shortfall]:
        """Every metric outside its bound; an unknown metric name is an input error."""
        unknown = sorted((set(self.minimum) | set(self.maximum)) - set(metrics))
        if unknown:
            raise InputError(
                "the gate names metrics the evaluation does not report"
                + (f" for {case_set}" if case_set and case_set != ANY_SET else "")
                + f": {', '.join(unknown)}; known: {', '.join(sorted(metrics))}"
            )
        out = [
            Shortfall(m, metrics[m], b, "min", case_set)
            for m, b in self.minimum.items()
            if metrics[m] < b
        ]
        out += [
            Shortfall(m, metrics[m], b, "max", case_set)
            for m, b in self.maximum.items()
            if metrics[m] > b
        ]
        return out

    @classmethod
    def floors(cls, table: Mapping[str, float]) -> Thresholds:
        """Floors of a ``[floor.SET]`` table: lower-is-better metrics are ceilings."""
        return cls(
            {m: v for m, v in table.items() if not lower_is_better(m)},
            {m: v for m, v in table.items() if lower_is_better(m)},
        )


@dataclass(frozen=True)
class Gate:
    """Floors and targets by set name (:data:`ANY_SET` for bounds on every set)."""

    floors: Mapping[str, Thresholds]
    targets: Mapping[str, Mapping[str, float]] = field(default_factory=dict)

    def check(self, case_set: str, metrics: Mapping[str, float]) -> list[Shortfall]:
        out: list[Shortfall] = []
        for name in (ANY_SET, case_set):
            if name in self.floors:
                out += self.floors[name].check(metrics, name if name != ANY_SET else case_set)
        return out

    def gaps(self, case_set: str, metrics: Mapping[str, float]) -> list[Gap]:
        """Each target of ``case_set`` with the figure reached (targets it does not report are
        left out)."""
        target = self.targets.get(case_set, {})
        return [Gap(m, metrics[m], t) for m, t in target.items() if m in metrics]

    def sets(self) -> set[str]:
        return (set(self.floors) | set(self.targets)) - {ANY_SET}

    # the older single-table form, as one Thresholds
    @property
    def minimum(self) -> Mapping[str, float]:
        return self.floors[ANY_SET].minimum if ANY_SET in self.floors else {}

    @property
    def maximum(self) -> Mapping[str, float]:
        return self.floors[ANY_SET].maximum if ANY_SET in self.floors else {}


def _numbers(path: Path, where: str, table: object) -> dict[str, float]:
    if not isinstance(table, dict):
        raise InputError(f"{path}: [{where}] must be a table of metric = number")
    for name, value in table.items():
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise InputError(f"{path}: [{where}] {name} must be a number, not {value!r}")
    return {name: float(value) for name, value in table.items()}


def _per_set(path: Path, kind: str, raw: object) -> dict[str, dict[str, float]]:
    if not isinstance(raw, dict):
        raise InputError(f"{path}: [{kind}] must hold one [{kind}.SET] table per set")
    return {name: _numbers(path, f"{kind}.{name}", table) for name, table in raw.items()}


def load_thresholds(path: Path) -> Gate:
    """Read ``[floor.SET]``/``[target.SET]`` tables, or ``[min]``/``[max]`` tables; anything
    else is an input error."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(f"gate file not found: {path}") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"cannot read the gate file {path}: {err}") from err
    extra = sorted(set(raw) - {"min", "max", "floor", "target"})
    if extra:
        raise InputError(
            f"{path}: only [floor.SET], [target.SET], [min] and [max] tables are allowed, "
            f"not {', '.join(extra)}"
        )
    floors = {
        name: Thresholds.floors(table)
        for name, table in _per_set(path, "floor", raw.get("floor", {})).items()
    }
    targets = _per_set(path, "target", raw.get("target", {}))
    if "min" in raw or "max" in raw:
        floors[ANY_SET] = Thresholds(
            _numbers(path, "min", raw.get("min", {})), _numbers(path, "max", raw.get("max", {}))
        )
    if not any(t.minimum or t.maximum for t in floors.values()) and not targets:
        raise InputError(f"{path}: no thresholds in [floor.SET], [target.SET], [min] or [max]")
    return Gate(floors, targets)
