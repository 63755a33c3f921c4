"""Known-answer cases (``eval/*.jsonl``): the format is documented in ``eval/README.md``."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from assistant.errors import InputError
from assistant.schema import Turn

__all__ = ["EvalCase", "load_cases", "normalise"]


def normalise(text: str) -> str:
    """Case-folded, whitespace-collapsed text, for matching facts and evidence."""
    return " ".join(text.casefold().split())


@dataclass(frozen=True)
class EvalCase:
    id: str
    question: str
    answerable: bool
    must: list[list[str]] = field(default_factory=list)
    evidence: str = ""
    history: list[Turn] = field(default_factory=list)
    tags: list[str] = field(default_factory=list)


def _case(raw: Any, where: str) -> EvalCase:
    if not isinstance(raw, dict):
        raise InputError(f"{where}: a case must be a JSON object")
    for key, kind in (("id", str), ("question", str), ("answerable", bool)):
        if not isinstance(raw.get(key), kind):
            raise InputError(f"{where}: field {key!r} must be a {kind.__name__}")
    must = raw.get("must") or []
    if not (isinstance(must, list) and all(
        isinstance(g, list) and g and all(isinstance(a, str) and a for a in g) for g in must
    )):  # fmt: skip
        raise InputError(f"{where}: 'must' must be a list of non-empty lists of strings")
    history = raw.get("history") or []
    if not isinstance(history, list) or not all(
        isinstance(t, dict) and t.get("role") in ("user", "assistant")
        and isinstance(t.get("content"), str) for t in history
    ):  # fmt: skip
        raise InputError(f"{where}: 'history' must be a list of {{role, content}} turns")
    evidence = raw.get("evidence") or ""
    if not isinstance(evidence, str):
        raise InputError(f"{where}: 'evidence' must be a string")
    return EvalCase(
        id=raw["id"],
        question=raw["question"],
        answerable=raw["answerable"],
        must=[list(g) for g in must],
        evidence=evidence,
        history=[Turn(t["role"], t["content"]) for t in history],
        tags=[str(t) for t in raw.get("tags") or []],
    )


def load_cases(path: Path) -> list[EvalCase]:
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except FileNotFoundError:
        raise InputError(f"case set {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as err:
        raise InputError(f"cannot read case set {path}: {err}") from err
    cases: list[EvalCase] = []
    seen: set[str] = set()
    for no, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            raw = json.loads(line)
        except json.JSONDecodeError as err:
            raise InputError(f"{path}:{no}: not valid JSON ({err.msg})") from None
        case = _case(raw, f"{path}:{no}")
        if case.id in seen:
            raise InputError(f"{path}:{no}: duplicate case id {case.id!r}")
        seen.add(case.id)
        cases.append(case)
    if not cases:
        raise InputError(f"case set {path} has no cases")
    return cases
