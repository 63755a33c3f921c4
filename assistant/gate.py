"""The evaluation gate: metric floors and ceilings from a TOML file, checked against a run.

``eval/thresholds.toml`` holds ``[min]`` (metrics that must be at least this) and ``[max]``
(metrics that must be at most this). ``assistant eval --gate FILE`` exits with
:data:`GATE_EXIT_CODE` when the assistant's metrics fall outside them.
"""

from __future__ import annotations

import tomllib
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from assistant.errors import InputError

GATE_EXIT_CODE = 7


@dataclass(frozen=True)
class Shortfall:
    metric: str
    value: float
    bound: float
    kind: str  # "min" or "max"

    def __str__(self) -> str:
        relation = "below its floor" if self.kind == "min" else "above its ceiling"
        return f"{self.metric} = {self.value:.3f} is {relation} {self.bound:g}"


@dataclass(frozen=True)
class Thresholds:
    minimum: Mapping[str, float]
    maximum: Mapping[str, float]

    def check(self, metrics: Mapping[str, float]) -> list[Shortfall]:
        """Every metric outside its bound; an unknown metric name is an input error."""
        unknown = sorted((set(self.minimum) | set(self.maximum)) - set(metrics))
        if unknown:
            raise InputError(
                f"the gate names metrics the evaluation does not report: {', '.join(unknown)}; "
                f"known: {', '.join(sorted(metrics))}"
            )
        out = [
            Shortfall(m, metrics[m], b, "min") for m, b in self.minimum.items() if metrics[m] < b
        ]
        out += [
            Shortfall(m, metrics[m], b, "max") for m, b in self.maximum.items() if metrics[m] > b
        ]
        return out


def load_thresholds(path: Path) -> Thresholds:
    """Read ``[min]`` and ``[max]`` tables of metric = number; anything else is an input error."""
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as err:
        raise InputError(f"gate file not found: {path}") from err
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as err:
        raise InputError(f"cannot read the gate file {path}: {err}") from err
    extra = sorted(set(raw) - {"min", "max"})
    if extra:
        raise InputError(f"{path}: only [min] and [max] tables are allowed, not {', '.join(extra)}")
    tables: dict[str, dict[str, float]] = {}
    for kind in ("min", "max"):
        table = raw.get(kind, {})
        if not isinstance(table, dict):
            raise InputError(f"{path}: [{kind}] must be a table of metric = number")
        for name, value in table.items():
            if isinstance(value, bool) or not isinstance(value, int | float):
                raise InputError(f"{path}: [{kind}] {name} must be a number, not {value!r}")
        tables[kind] = {name: float(value) for name, value in table.items()}
    if not tables["min"] and not tables["max"]:
        raise InputError(f"{path}: no thresholds in [min] or [max]")
    return Thresholds(tables["min"], tables["max"])
